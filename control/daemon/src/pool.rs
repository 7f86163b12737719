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
    /// Deleted (by `pylonctl del` or a reload) and draining: no new
    /// connections; removed, and its id freed, once its connections are
    /// gone.
    pub removing: bool,
}

impl PoolServer {
    /// The weight the schedulers see (0 while down: quiesced, as IPVS).
    pub fn effective_weight(&self) -> u32 {
        if self.up && !self.removing {
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
    /// Deleted and draining: still published (so its connections keep
    /// flowing) but without servers to schedule; removed once every
    /// connection is gone.
    pub removing: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("more than {slots} real servers (the dataplane has {slots} server slots)")]
pub struct TooManyServers {
    pub slots: usize,
}

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
#[derive(Debug, Clone)]
pub struct Pool {
    generation: u64,
    next_id: u16,
    /// Ids of removed servers, handed out again before new ones.
    free_ids: Vec<u16>,
    /// Ids no service lists any more (a replaced sorry server) whose
    /// connections may still be open, with their service: freed once idle.
    retired: Vec<(String, u16)>,
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
            free_ids: Vec::new(),
            retired: Vec::new(),
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
                removing: false,
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
        self.next_id = id.checked_add(1).ok_or(TooManyServers {
            slots: usize::from(u16::MAX),
        })?;
        Ok(PoolServer {
            id,
            addr,
            port,
            weight,
            up,
            removing: false,
        })
    }

    /// A server with an id below `slots` (the dataplane's per-server
    /// counters), a freed one first.
    pub fn new_server(
        &mut self,
        addr: Ipv4Addr,
        port: u16,
        weight: u32,
        up: bool,
        slots: usize,
    ) -> Result<PoolServer, TooManyServers> {
        if let Some(id) = self.free_ids.pop() {
            return Ok(PoolServer {
                id,
                addr,
                port,
                weight,
                up,
                removing: false,
            });
        }
        if usize::from(self.next_id) >= slots {
            return Err(TooManyServers { slots });
        }
        self.server(addr, port, weight, up)
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&PoolService> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service called `name`, to change it.
    pub fn service_mut(&mut self, name: &str) -> Option<&mut PoolService> {
        self.services.iter_mut().find(|s| s.name == name)
    }

    /// Takes a sorry server (replaced or of a removed service) out of
    /// service; its id is freed once its connections are gone.
    pub fn retire(&mut self, service: &str, server: PoolServer) {
        self.retired.push((service.to_owned(), server.id));
    }

    /// Ids retired from `service` and not freed yet.
    pub fn retired_ids<'a>(&'a self, service: &'a str) -> impl Iterator<Item = u16> + 'a {
        self.retired
            .iter()
            .filter(move |(s, _)| s == service)
            .map(|(_, id)| *id)
    }

    /// Removes deleted servers and services whose connections are all
    /// gone (`idle(id)`), freeing their ids. Returns the freed ids with
    /// their service, and whether a service left the snapshot.
    pub fn reap(&mut self, idle: impl Fn(u16) -> bool) -> (Vec<(String, u16)>, bool) {
        let mut freed = Vec::new();
        for svc in &mut self.services {
            svc.servers.retain(|s| {
                let gone = s.removing && idle(s.id);
                if gone {
                    freed.push((svc.name.clone(), s.id));
                }
                !gone
            });
        }
        self.retired.retain(|(service, id)| {
            let gone = idle(*id);
            if gone {
                freed.push((service.clone(), *id));
            }
            !gone
        });
        let before = self.services.len();
        let retired = &self.retired;
        self.services.retain(|s| {
            !(s.removing && s.servers.is_empty() && !retired.iter().any(|(n, _)| *n == s.name))
        });
        let dropped = self.services.len() != before;
        self.free_ids.extend(freed.iter().map(|(_, id)| *id));
        (freed, dropped)
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
                // A deleted server's connections keep their real server
                // (the entry holds it); the schedulers never see it.
                servers: s
                    .servers
                    .iter()
                    .filter(|r| !r.removing)
                    .map(PoolServer::to_snapshot)
                    .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        let mut p = Pool {
            generation: 0,
            next_id: 0,
            free_ids: Vec::new(),
            retired: Vec::new(),
            services: Vec::new(),
        };
        let a = p
            .new_server(Ipv4Addr::new(10, 0, 2, 1), 80, 1, true, 8)
            .unwrap();
        let b = p
            .new_server(Ipv4Addr::new(10, 0, 2, 2), 80, 2, true, 8)
            .unwrap();
        p.services.push(PoolService {
            name: "web".into(),
            vip: Ipv4Addr::new(10, 0, 1, 100),
            port: 80,
            proto: PROTO_TCP,
            scheduler: Kind::Wlc,
            mode: Mode::Nat,
            servers: vec![a, b],
            sorry: None,
            removing: false,
        });
        p
    }

    #[test]
    fn removing_servers_leave_the_snapshot_and_their_ids_are_reused_once_idle() {
        let mut p = pool();
        p.service_mut("web").unwrap().servers[0].removing = true;
        let snap = p.snapshot(&[], &Ownership::default());
        assert_eq!(snap.services[0].servers.len(), 1);
        assert_eq!(snap.services[0].servers[0].id, 1);
        // Still busy: kept, id reserved.
        assert_eq!(p.reap(|_| false), (vec![], false));
        assert_eq!(p.service("web").unwrap().servers.len(), 2);
        let fresh = p
            .new_server(Ipv4Addr::new(10, 0, 2, 3), 80, 1, true, 8)
            .unwrap();
        assert_eq!(fresh.id, 2);
        assert_eq!(p.reap(|_| true), (vec![("web".into(), 0)], false));
        let again = p
            .new_server(Ipv4Addr::new(10, 0, 2, 4), 80, 1, true, 8)
            .unwrap();
        assert_eq!(again.id, 0);
    }

    #[test]
    fn a_removed_service_stays_published_until_its_connections_are_gone() {
        let mut p = pool();
        let svc = p.service_mut("web").unwrap();
        svc.removing = true;
        svc.servers.iter_mut().for_each(|s| s.removing = true);
        let snap = p.snapshot(&[], &Ownership::default());
        assert_eq!(snap.services.len(), 1);
        assert!(snap.services[0].servers.is_empty());
        let (freed, dropped) = p.reap(|id| id == 1);
        assert_eq!((freed.len(), dropped), (1, false));
        let (freed, dropped) = p.reap(|_| true);
        assert_eq!((freed.len(), dropped), (1, true));
        assert!(p.services.is_empty());
    }

    #[test]
    fn ids_stop_at_the_counter_slots() {
        let mut p = pool();
        for _ in 2..8 {
            p.new_server(Ipv4Addr::new(10, 0, 2, 9), 80, 1, true, 8)
                .unwrap();
        }
        assert!(p
            .new_server(Ipv4Addr::new(10, 0, 2, 9), 80, 1, true, 8)
            .is_err());
    }
}
