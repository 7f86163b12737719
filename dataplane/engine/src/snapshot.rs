//! The published configuration the workers forward by: an immutable
//! snapshot swapped atomically (RCU style) and loaded once per burst.

use pylon_conntrack::Dir;
use pylon_sched::Kind;
use rustc_hash::FxHashMap;

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
    /// VRRP virtual MACs of the instances that are MASTER on this port:
    /// frames to them are ours; frames to a backup instance's are not.
    pub vmacs: Vec<[u8; 6]>,
}

impl PortInfo {
    pub fn on_link(&self, ip: u32) -> bool {
        ip & self.mask == self.addr & self.mask
    }

    /// True if a frame to `mac` is for this port.
    pub fn accepts(&self, mac: [u8; 6]) -> bool {
        mac == self.mac || pylon_wire::ethernet::is_group(mac) || self.vmacs.contains(&mac)
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
    /// False while the VIP belongs to a VRRP instance that is not MASTER:
    /// a backup drops the VIP's traffic.
    pub active: bool,
}

/// Everything a worker needs to forward, immutable once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bumped on every publication so workers rebuild their scheduler state.
    pub generation: u64,
    pub ports: Vec<PortInfo>,
    pub services: Vec<Service>,
    by_key: FxHashMap<(u32, u16, u8), usize>,
    /// Our addresses, each with the MAC ARP announces for it (`None`: the
    /// port's own MAC).
    local: FxHashMap<u32, Option<[u8; 6]>>,
}

impl Snapshot {
    /// `owned` are addresses the appliance answers for besides its port
    /// addresses and active VIPs (VRRP addresses of MASTER instances that
    /// no service uses, such as the real servers' gateway), each with the
    /// MAC to announce (`None`: the port's own). Service VIPs of MASTER
    /// instances are listed there too, for their virtual MAC.
    pub fn new(
        generation: u64,
        ports: Vec<PortInfo>,
        services: Vec<Service>,
        owned: Vec<(u32, Option<[u8; 6]>)>,
    ) -> Snapshot {
        let by_key = services
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.vip, s.port, s.proto), i))
            .collect();
        let mut local: FxHashMap<u32, Option<[u8; 6]>> = ports
            .iter()
            .map(|p| (p.addr, None))
            .chain(services.iter().filter(|s| s.active).map(|s| (s.vip, None)))
            .collect();
        local.extend(owned);
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

    /// Whether this appliance serves any service now (VRRP MASTER for its
    /// VIP, or the VIP under no VRRP instance).
    pub fn serves_any(&self) -> bool {
        self.services.iter().any(|s| s.active)
    }

    /// True for the appliance's own addresses: port addresses, active VIPs
    /// and the VRRP addresses of MASTER instances.
    pub fn is_local(&self, ip: u32) -> bool {
        self.local.contains_key(&ip)
    }

    /// The MAC ARP announces for one of our addresses: a virtual MAC for
    /// VRRP addresses, else `None` (the port's own).
    pub fn arp_mac(&self, ip: u32) -> Option<[u8; 6]> {
        self.local.get(&ip).copied().flatten()
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
