//! The published configuration the workers forward by: an immutable
//! snapshot swapped atomically (RCU style) and loaded once per burst.

use pylon_conntrack::Dir;
use pylon_sched::Kind;
use rustc_hash::{FxHashMap, FxHashSet};

/// A data port as the fast path sees it.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub name: String,
    pub mac: [u8; 6],
    pub addr: u32,
    pub mask: u32,
    pub gateway: Option<u32>,
    /// IP MTU of the link.
    pub mtu: u16,
}

impl PortInfo {
    pub fn on_link(&self, ip: u32) -> bool {
        ip & self.mask == self.addr & self.mask
    }
}

/// A real server of a service.
#[derive(Clone, Debug)]
pub struct Server {
    /// Global id: index into the shared per-server counters, stable for
    /// the server's lifetime so connection entries can refer to it.
    pub id: u16,
    pub addr: u32,
    pub port: u16,
    /// Effective weight (0 = quiesced: no new connections).
    pub weight: u32,
}

/// How a service reaches its real servers (ipvsadm `-m`, `-g`, `-i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Nat,
    Dsr,
    Tunnel,
}

impl Mode {
    /// How a client->server packet counts for the TCP state machine: with
    /// DSR and tunnel the replies bypass Pylon, so the connection is
    /// tracked from the client side alone (IPVS's INPUT_ONLY table).
    pub fn original_dir(self) -> Dir {
        match self {
            Mode::Nat => Dir::Original,
            Mode::Dsr | Mode::Tunnel => Dir::OriginalOnly,
        }
    }
}

/// A virtual service.
#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub vip: u32,
    pub port: u16,
    pub proto: u8,
    pub scheduler: Kind,
    pub mode: Mode,
    pub servers: Vec<Server>,
    /// Takes new connections when no real server can (all down or
    /// quiesced); without one they are refused.
    pub sorry: Option<Server>,
}

/// Everything a worker needs to forward, immutable once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bumped on every publication so workers rebuild their scheduler state.
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    pub services: Vec<Service>,
    by_key: FxHashMap<(u32, u16, u8), usize>,
    local: FxHashSet<u32>,
}

impl Snapshot {
    pub fn new(generation: u64, ports: Vec<PortInfo>, services: Vec<Service>) -> Snapshot {
        let by_key = services
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.vip, s.port, s.proto), i))
            .collect();
        let local = ports
            .iter()
            .map(|p| p.addr)
            .chain(services.iter().map(|s| s.vip))
            .collect();
        Snapshot {
            generation,
            ports,
            services,
            by_key,
            local,
        }
    }

    /// The service at VIP:port/proto, with its index.
    pub fn service(&self, vip: u32, port: u16, proto: u8) -> Option<(usize, &Service)> {
        let &i = self.by_key.get(&(vip, port, proto))?;
        Some((i, &self.services[i]))
    }

    /// True for the appliance's own addresses: port addresses and VIPs.
    pub fn is_local(&self, ip: u32) -> bool {
        self.local.contains(&ip)
    }

    /// True if `ip` is a VIP of some service.
    pub fn is_vip(&self, ip: u32) -> bool {
        self.services.iter().any(|s| s.vip == ip)
    }

    /// Output port and next hop for `dst`: a connected subnet first, then
    /// the port with the default gateway.
    pub fn route(&self, dst: u32) -> Option<(usize, u32)> {
        if let Some(i) = self.ports.iter().position(|p| p.on_link(dst)) {
            return Some((i, dst));
        }
        self.ports
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.gateway.map(|g| (i, g)))
    }
}
