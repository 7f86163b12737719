//! The VRRP instances of this appliance (RFC 5798), driven by the control
//! loop: advertisements in, timers, actions out (adverts, gratuitous ARPs,
//! state changes that move VIPs and virtual MACs in and out of the
//! published snapshot, notify commands).

use crate::pool::Ownership;
use pylon_vrrp::config::Vrrp as VrrpConfig;
use pylon_vrrp::wire;
use pylon_vrrp::{Action, Instance, State, Tracking};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::process::{Child, Command};
use tracing::{info, warn};

/// A frame the control loop must transmit.
pub struct Outgoing {
    pub port: usize,
    pub frame: Vec<u8>,
}

struct Member {
    cfg: VrrpConfig,
    port: usize,
    instance: Instance,
    tracking: Tracking,
}

/// Every instance, plus the notify commands still running.
pub struct Vrrp {
    members: Vec<Member>,
    children: Vec<Child>,
}

#[derive(Debug, thiserror::Error)]
#[error("vrrp[{index}]: {problem}")]
pub struct VrrpError {
    index: usize,
    problem: String,
}

/// Largest frame an instance writes: Ethernet + IPv4 + VRRP with 255
/// addresses (RFC 5798 §5.2.5 caps the count at 255).
const MAX_FRAME: usize = 14 + 20 + 8 + 255 * 4 + 8;

impl Vrrp {
    /// `port_of(name)` gives a port's index and address.
    pub fn new(
        cfgs: &[VrrpConfig],
        port_of: impl Fn(&str) -> Option<(usize, Ipv4Addr)>,
    ) -> Result<Vrrp, VrrpError> {
        let mut members = Vec::new();
        for (index, cfg) in cfgs.iter().enumerate() {
            let (port, primary) = port_of(&cfg.port).ok_or_else(|| VrrpError {
                index,
                problem: format!("no port `{}`", cfg.port),
            })?;
            let instance = Instance::new(cfg.instance_config(primary)).map_err(|e| VrrpError {
                index,
                problem: e.to_string(),
            })?;
            members.push(Member {
                cfg: cfg.clone(),
                port,
                instance,
                tracking: Tracking::default(),
            });
        }
        Ok(Vrrp {
            members,
            children: Vec::new(),
        })
    }

    /// (port, virtual MAC) of every instance: the MAC filters to open.
    pub fn virtual_macs(&self) -> Vec<(usize, [u8; 6])> {
        self.members
            .iter()
            .map(|m| (m.port, m.instance.virtual_mac()))
            .collect()
    }

    pub fn startup(&mut self, now: u64) {
        for m in &mut self.members {
            m.instance.startup(now);
        }
    }

    pub fn shutdown(&mut self, now: u64) {
        for m in &mut self.members {
            m.instance.shutdown(now);
        }
    }

    /// An IPv4 VRRP packet (from the IP header on) received on `port`.
    pub fn receive(&mut self, now: u64, port: usize, ip: &[u8]) {
        let Some(vrid) = wire::peek_vrid(ip) else {
            return;
        };
        let Some(m) = self
            .members
            .iter_mut()
            .find(|m| m.port == port && m.cfg.vrid == vrid)
        else {
            return;
        };
        if let Err(reject) = m.instance.receive(now, ip) {
            tracing::debug!(vrid, reason = reject.name(), "VRRP advertisement rejected");
        }
    }

    /// Fires due timers.
    pub fn on_timer(&mut self, now: u64) {
        for m in &mut self.members {
            if m.instance.poll_timeout().is_some_and(|t| t <= now) {
                m.instance.on_timer(now);
            }
        }
    }

    /// Re-evaluates tracked ports and services. While `sync_pending` (this
    /// appliance has not received a peer's connection table yet, see
    /// `control/sync/PROTOCOL.md`) every instance runs at priority 1, the
    /// lowest, so it never preempts a master whose connections it lacks;
    /// with no master at all it still takes over (RFC 5798 §6.4.2). A
    /// fault still wins; the address owner (255) is never lowered.
    pub fn track(
        &mut self,
        now: u64,
        port_up: impl Fn(&str) -> bool,
        service_up: impl Fn(&str) -> bool,
        sync_pending: bool,
    ) {
        for m in &mut self.members {
            let mut t = m.cfg.tracking(&port_up, &service_up);
            if sync_pending {
                // Clamped to 1 by the instance (254 + 254 < 512).
                t.priority_delta = t.priority_delta.min(0) - 512;
            }
            if t != m.tracking {
                m.tracking = t;
                m.instance.set_tracking(now, t);
            }
        }
    }

    /// Drains every instance's actions: frames to send, and whether the
    /// ownership of addresses changed (the caller republishes).
    pub fn actions(
        &mut self,
        neighbor_mac: impl Fn(Ipv4Addr) -> Option<[u8; 6]>,
    ) -> (Vec<Outgoing>, bool) {
        let mut out = Vec::new();
        let mut changed = false;
        for m in &mut self.members {
            while let Some(action) = m.instance.poll_action() {
                match action {
                    Action::SendAdvert { priority } => {
                        for dst in m.instance.destinations().to_vec() {
                            let mac = if dst == wire::MULTICAST_GROUP {
                                Some(wire::MULTICAST_MAC)
                            } else {
                                neighbor_mac(dst)
                            };
                            let Some(mac) = mac else { continue };
                            let mut frame = vec![0u8; MAX_FRAME];
                            match m.instance.write_advert(priority, dst, mac, &mut frame) {
                                Ok(len) => {
                                    frame.truncate(len.max(60));
                                    out.push(Outgoing {
                                        port: m.port,
                                        frame,
                                    });
                                }
                                Err(e) => warn!(vrid = m.cfg.vrid, "advertisement not built: {e}"),
                            }
                        }
                    }
                    Action::SendGarp { count } => {
                        for _ in 0..count {
                            for &vip in &m.cfg.vips {
                                let mut frame = vec![0u8; 60];
                                if m.instance.write_garp(vip, &mut frame).is_ok() {
                                    out.push(Outgoing {
                                        port: m.port,
                                        frame,
                                    });
                                }
                            }
                        }
                    }
                    Action::StateChange { from, to, reason } => {
                        info!(vrid = m.cfg.vrid, port = %m.cfg.port, %from, %to, %reason, "VRRP state change");
                        changed = true;
                        let command = match to {
                            State::Master => &m.cfg.notify_master,
                            State::Backup => &m.cfg.notify_backup,
                            State::Fault => &m.cfg.notify_fault,
                            _ => &None,
                        };
                        if let Some(cmd) = command {
                            // Run in the background like keepalived's notify
                            // scripts; the state is passed as arguments too.
                            match Command::new("/bin/sh")
                                .args([
                                    "-c",
                                    cmd,
                                    "pylon-notify",
                                    to.name(),
                                    &m.cfg.vrid.to_string(),
                                ])
                                .spawn()
                            {
                                Ok(child) => self.children.push(child),
                                Err(e) => {
                                    warn!(vrid = m.cfg.vrid, "notify command failed to start: {e}")
                                }
                            }
                        }
                    }
                }
            }
        }
        // Reap finished notify commands so none is left a zombie.
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        (out, changed)
    }

    /// What the snapshot must know: managed and owned addresses, MACs.
    pub fn ownership(&self) -> Ownership {
        let mut o = Ownership::default();
        for m in &self.members {
            o.managed.extend(&m.cfg.vips);
            if m.instance.owns_vips() {
                let mac = m.instance.virtual_mac();
                o.owned.extend(m.cfg.vips.iter().map(|&ip| (ip, mac)));
                o.vmacs.push((m.port, mac));
            }
        }
        o
    }

    /// State per instance, for the stats dump and the CLI.
    pub fn status_json(&self) -> Value {
        Value::Array(
            self.members
                .iter()
                .map(|m| {
                    let st = m.instance.status();
                    json!({
                        "vrid": m.cfg.vrid,
                        "port": m.cfg.port,
                        "state": st.state.name(),
                        "reason": st.since.map(|(_, r)| r.to_string()),
                        "since_ms": st.since.map(|(t, _)| t),
                        "priority": st.priority,
                        "configured_priority": m.cfg.priority,
                        "master": st.master.map(|mi| mi.address.to_string()),
                        "vips": m.cfg.vips.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }

    /// Every instance as `pylonctl vrrp` shows it; `now` is the clock's
    /// milliseconds, the instances' time base.
    pub fn info(&self, now: u64) -> Vec<pylon_ctl::proto::VrrpInfo> {
        use pylon_ctl::proto::{VrrpInfo, VrrpState};
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let st = m.instance.status();
                VrrpInfo {
                    name: format!("vrrp[{i}]"),
                    vrid: m.cfg.vrid,
                    port: m.cfg.port.clone(),
                    state: match st.state {
                        State::Initialize => VrrpState::Init,
                        State::Backup => VrrpState::Backup,
                        State::Master => VrrpState::Master,
                        State::Fault => VrrpState::Fault,
                    },
                    priority: m.cfg.priority,
                    effective_priority: st.priority,
                    advert_int_ms: u32::from(m.cfg.advert_int_cs) * 10,
                    preempt: m.cfg.preempt,
                    vips: m.cfg.vips.clone(),
                    master: st.master.map(|mi| mi.address),
                    last_change: st
                        .since
                        .map(|(t, _)| epoch.saturating_sub(now.saturating_sub(t)) / 1000),
                    reason: st.since.map(|(_, r)| r.to_string()),
                }
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}
