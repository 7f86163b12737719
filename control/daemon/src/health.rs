//! The health checks of the configured real servers, run by
//! `pylon-health`'s engine on its own thread; transitions reach the control
//! loop over a channel, so the pool and the snapshot have one owner.

use pylon_config::Config;
use pylon_health::{
    Engine, EngineError, OnDown, ServerCheck, ServerHealth, ServerKey, State, Transition,
};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::mpsc::{channel, Receiver, Sender};

/// The running checks (absent when no server has one).
pub struct Health {
    engine: Option<Engine>,
    transitions: Receiver<Transition>,
    /// For an engine started later (a reload adds the first check).
    sender: Sender<Transition>,
    /// Servers whose connections are expired when they go down.
    expire_on_down: HashSet<ServerKey>,
}

fn checks(cfg: &Config) -> Vec<ServerCheck> {
    cfg.services
        .iter()
        .flat_map(|svc| {
            svc.servers.iter().filter_map(|s| {
                Some(ServerCheck {
                    key: ServerKey {
                        service: svc.name.clone(),
                        address: s.address,
                        port: s.port,
                    },
                    check: s.check.clone()?,
                })
            })
        })
        .collect()
}

/// A server's state before its first result: its check's `initial`, or up
/// when it has no check.
pub fn initially_up(cfg: &Config, service: &str, addr: Ipv4Addr, port: u16) -> bool {
    cfg.services
        .iter()
        .filter(|s| s.name == service)
        .flat_map(|s| &s.servers)
        .find(|s| s.address == addr && s.port == port)
        .and_then(|s| s.check.as_ref())
        .is_none_or(|c| c.initial == State::Up)
}

impl Health {
    pub fn start(cfg: &Config) -> Result<Health, EngineError> {
        let servers = checks(cfg);
        let expire_on_down = servers
            .iter()
            .filter(|s| s.check.on_down == OnDown::Expire)
            .map(|s| s.key.clone())
            .collect();
        let (sender, transitions) = channel();
        let mut health = Health {
            engine: None,
            transitions,
            sender,
            expire_on_down,
        };
        if !servers.is_empty() {
            health.engine = Some(health.engine_for(servers)?);
        }
        Ok(health)
    }

    fn engine_for(&self, servers: Vec<ServerCheck>) -> Result<Engine, EngineError> {
        let tx = self.sender.clone();
        Engine::start(servers, move |t| {
            // The receiver lives as long as the engine: send cannot fail
            // before shutdown, and a late transition is moot then.
            let _ = tx.send(t);
        })
    }

    /// Checks what `cfg` says (a reload): servers checked before keep
    /// their state and counters, new ones start from their `initial`.
    pub fn reconfigure(&mut self, cfg: &Config) -> Result<(), EngineError> {
        let servers = checks(cfg);
        self.expire_on_down = servers
            .iter()
            .filter(|s| s.check.on_down == OnDown::Expire)
            .map(|s| s.key.clone())
            .collect();
        match &self.engine {
            Some(engine) => engine.set_servers(servers),
            None if servers.is_empty() => {}
            None => self.engine = Some(self.engine_for(servers)?),
        }
        Ok(())
    }

    pub fn next_transition(&self) -> Option<Transition> {
        self.transitions.try_recv().ok()
    }

    pub fn expires_on_down(&self, key: &ServerKey) -> bool {
        self.expire_on_down.contains(key)
    }

    /// State, last result, last change and counters of every checked
    /// server: what the stats dump and the CLI show.
    pub fn snapshot(&self) -> Vec<ServerHealth> {
        self.engine
            .as_ref()
            .map(Engine::snapshot)
            .unwrap_or_default()
    }
}
