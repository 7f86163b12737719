//! The control plane's model of the services and real servers: what the
//! configuration says, plus what health checks (and later the operator)
//! changed. Every change is published to the workers as a new snapshot.

use pylon_config::{Config, Forwarding, Protocol, Scheduler as SchedKind};
use pylon_dataplane::snapshot::{Mode, PortInfo, Server, Service, Snapshot};
use pylon_sched::Kind;
use pylon_wire::frame::{PROTO_TCP, PROTO_UDP};
use std::net::Ipv4Addr;

/// A real server (or a sorry server) as the control plane tracks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolServer {
    /// Global id: the index of its counters, stable while it exists.
    pub id: u16,
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Configured weight.
    pub weight: u32,
    /// Health: a down server keeps its weight but gets no new connections.
    pub up: bool,
}

impl PoolServer {
    /// The weight the schedulers see (0 while down: quiesced, as IPVS).
    pub fn effective_weight(&self) -> u32 {
        if self.up {
            self.weight
        } else {
            0
        }
    }

    fn to_snapshot(&self) -> Server {
        Server {
            id: self.id,
            addr: u32::from(self.addr),
            port: self.port,
            weight: self.effective_weight(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PoolService {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
    pub scheduler: Kind,
    pub mode: Mode,
    pub servers: Vec<PoolServer>,
    pub sorry: Option<PoolServer>,
}

#[derive(Debug, thiserror::Error)]
#[error("more than 65535 real servers")]
pub struct TooManyServers;

/// Which addresses and virtual MACs the VRRP instances own right now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Every address some VRRP instance manages.
    pub managed: Vec<Ipv4Addr>,
    /// Addresses of MASTER instances, with their virtual MAC.
    pub owned: Vec<(Ipv4Addr, [u8; 6])>,
    /// (port index, virtual MAC) of MASTER instances.
    pub vmacs: Vec<(usize, [u8; 6])>,
}

impl Ownership {
    /// True if traffic to `vip` is ours to forward: it is not under VRRP,
    /// or its instance is MASTER here.
    pub fn serves(&self, vip: Ipv4Addr) -> bool {
        !self.managed.contains(&vip) || self.owned.iter().any(|(ip, _)| *ip == vip)
    }
}

/// Services and servers, and the generation of the last snapshot.
#[derive(Debug)]
pub struct Pool {
    generation: u64,
    next_id: u16,
    pub services: Vec<PoolService>,
}

pub fn kind(s: SchedKind) -> Kind {
    match s {
        SchedKind::Rr => Kind::Rr,
        SchedKind::Wrr => Kind::Wrr,
        SchedKind::Lc => Kind::Lc,
        SchedKind::Wlc => Kind::Wlc,
    }
}

pub fn mode(f: Forwarding) -> Mode {
    match f {
        Forwarding::Nat => Mode::Nat,
        Forwarding::Dsr => Mode::Dsr,
        Forwarding::Tunnel => Mode::Tunnel,
    }
}

impl Pool {
    /// The pool the configuration describes; `initially_up` tells whether
    /// a server counts as up before its first health result.
    pub fn from_config(
        cfg: &Config,
        initially_up: impl Fn(&str, Ipv4Addr, u16) -> bool,
    ) -> Result<Pool, TooManyServers> {
        let mut pool = Pool {
            generation: 0,
            next_id: 0,
            services: Vec::new(),
        };
        for svc in &cfg.services {
            let mut servers = Vec::new();
            for s in &svc.servers {
                let up = initially_up(&svc.name, s.address, s.port);
                servers.push(pool.server(s.address, s.port, u32::from(s.weight), up)?);
            }
            let sorry = match &svc.sorry {
                Some(s) => Some(pool.server(s.address, s.port, 1, true)?),
                None => None,
            };
            pool.services.push(PoolService {
                name: svc.name.clone(),
                vip: svc.vip,
                port: svc.port,
                proto: match svc.protocol {
                    Protocol::Tcp => PROTO_TCP,
                    Protocol::Udp => PROTO_UDP,
                },
                scheduler: kind(svc.scheduler),
                mode: mode(svc.forwarding),
                servers,
                sorry,
            });
        }
        Ok(pool)
    }

    fn server(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        weight: u32,
        up: bool,
    ) -> Result<PoolServer, TooManyServers> {
        let id = self.next_id;
        self.next_id = id.checked_add(1).ok_or(TooManyServers)?;
        Ok(PoolServer {
            id,
            addr,
            port,
            weight,
            up,
        })
    }

    /// Number of server ids handed out (sizes the per-server counters).
    pub fn ids_used(&self) -> usize {
        usize::from(self.next_id)
    }

    /// Marks a server up or down; returns it if that changed anything.
    pub fn set_up(
        &mut self,
        service: &str,
        addr: Ipv4Addr,
        port: u16,
        up: bool,
    ) -> Option<&PoolServer> {
        let svc = self.services.iter_mut().find(|s| s.name == service)?;
        let server = svc
            .servers
            .iter_mut()
            .find(|s| s.addr == addr && s.port == port)?;
        if server.up == up {
            return None;
        }
        server.up = up;
        Some(server)
    }

    /// A new snapshot for the workers (next generation), with the VRRP
    /// ownership of addresses and virtual MACs.
    pub fn snapshot(&mut self, ports: &[PortInfo], vrrp: &Ownership) -> Snapshot {
        self.generation += 1;
        let ports = ports
            .iter()
            .enumerate()
            .map(|(i, p)| PortInfo {
                vmacs: vrrp
                    .vmacs
                    .iter()
                    .filter(|(port, _)| *port == i)
                    .map(|(_, m)| *m)
                    .collect(),
                ..p.clone()
            })
            .collect();
        let services = self
            .services
            .iter()
            .map(|s| Service {
                name: s.name.clone(),
                vip: u32::from(s.vip),
                port: s.port,
                proto: s.proto,
                scheduler: s.scheduler,
                mode: s.mode,
                servers: s.servers.iter().map(PoolServer::to_snapshot).collect(),
                sorry: s.sorry.as_ref().map(PoolServer::to_snapshot),
                active: vrrp.serves(s.vip),
            })
            .collect();
        let owned = vrrp
            .owned
            .iter()
            .map(|&(ip, mac)| (u32::from(ip), Some(mac)))
            .collect();
        Snapshot::new(self.generation, ports, services, owned)
    }
}

impl PoolService {
    /// True while some real server can take new connections.
    pub fn has_healthy_server(&self) -> bool {
        self.servers.iter().any(|s| s.effective_weight() > 0)
    }
}
