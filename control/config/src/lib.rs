//! Pylon's configuration: the TOML schema, its defaults, its validation and
//! the EAL argument vector derived from it.
//!
//! `configs/README.md` at the top of the workspace documents every key.
//! [`Config::load`] reads, parses and validates a file; a [`Config`] that it
//! returns has passed every rule, so the daemon can start the dataplane from
//! it without further checks. Each error names the file, the key path
//! (`services[1].servers[0].weight`) and the problem.
//!
//! Durations (`[timeouts]`, `[neighbors]`) are whole seconds in `u32`, as in
//! the file; `idle_sleep_us` is microseconds.

mod de;
mod lcores;
mod validate;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
pub use pylon_health::{HealthCheck, HealthCheckConfig, HealthControl};
/// `[sync]`, defined with the protocol in `pylon-sync`.
pub use pylon_sync::config::Sync as SyncConfig;
use serde::Deserialize;

/// A validated configuration, as returned by [`Config::load`] and
/// [`Config::parse`]. (Deserializing it directly skips the rules between
/// keys; use those two.)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[eal]`: DPDK environment.
    #[serde(default)]
    pub eal: Eal,
    /// `[dataplane]`: workers, rings and the connection table.
    #[serde(default)]
    pub dataplane: Dataplane,
    /// `[timeouts]`: connection idle timeouts per state.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// `[neighbors]`: ARP cache timers.
    #[serde(default)]
    pub neighbors: Neighbors,
    /// `[control]`: control-plane settings.
    #[serde(default)]
    pub control: Control,
    /// `[[ports]]`: data ports, in DPDK port order.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// `[[services]]`: virtual services.
    #[serde(default)]
    pub services: Vec<Service>,
    /// `[[vrrp]]`: VRRP instances (keepalived's `vrrp_instance`).
    #[serde(default)]
    pub vrrp: Vec<pylon_vrrp::config::Vrrp>,
    /// `[sync]`: connection and configuration sync with the other
    /// appliances; none without it.
    #[serde(default)]
    pub sync: Option<SyncConfig>,
}

/// `[eal]`: arguments of `rte_eal_init` and the packet buffer pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Eal {
    /// `--file-prefix`; the runtime directory `/var/run/dpdk/<prefix>` is
    /// removed on exit.
    #[serde(deserialize_with = "de::file_prefix")]
    pub file_prefix: String,
    /// `--main-lcore`: the control lcore.
    #[serde(deserialize_with = "de::ranged::<_, u32, 0, 127>")]
    pub main_lcore: u32,
    /// `--lcores` mapping; `None` passes `-l <main,workers...>` instead.
    pub lcores: Option<String>,
    /// `-m`: megabytes of memory to preallocate.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 1048576>")]
    pub memory_mb: u32,
    /// `--no-huge`: use ordinary pages (VMs, tests).
    pub no_huge: bool,
    /// Extra EAL arguments, passed verbatim after all others.
    pub args: Vec<String>,
    /// Number of mbufs in the packet pool.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 4294967295>")]
    pub mbufs: u32,
    /// Per-lcore mempool cache size.
    #[serde(deserialize_with = "de::ranged::<_, u32, 0, 512>")]
    pub mbuf_cache: u32,
}

impl Default for Eal {
    fn default() -> Self {
        Eal {
            file_prefix: "pylon".to_owned(),
            main_lcore: 0,
            lcores: None,
            memory_mb: 512,
            no_huge: false,
            args: Vec::new(),
            mbufs: 8191,
            mbuf_cache: 256,
        }
    }
}

/// `[dataplane]`: worker lcores and their queues.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Dataplane {
    /// Worker lcore ids; worker `i` polls RX queue `i` of every port.
    pub workers: Vec<u32>,
    /// Packets per RX burst.
    #[serde(deserialize_with = "de::ranged::<_, u16, 1, 64>")]
    pub burst: u16,
    /// RX descriptors per queue.
    #[serde(deserialize_with = "de::ring_size")]
    pub rx_desc: u16,
    /// TX descriptors per queue.
    #[serde(deserialize_with = "de::ring_size")]
    pub tx_desc: u16,
    /// Connection table capacity (entries).
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2147483648>")]
    pub conn_capacity: u32,
    /// Empty polls before a worker sleeps; 0 never sleeps.
    pub idle_polls: u32,
    /// Sleep length of an idle worker, in microseconds.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 100000>")]
    pub idle_sleep_us: u32,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            workers: vec![1],
            burst: 32,
            rx_desc: 1024,
            tx_desc: 1024,
            conn_capacity: 1 << 20,
            idle_polls: 0,
            idle_sleep_us: 100,
        }
    }
}

/// `[timeouts]`: idle timeouts of a connection in each state, in seconds
/// (1..=2_000_000; defaults as in IPVS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Established TCP connection.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_established: u32,
    /// After the client's SYN, until the handshake completes.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_syn: u32,
    /// After a FIN from the client.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_fin_wait: u32,
    /// After a FIN from the server.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_close_wait: u32,
    /// After both FINs, until the last ACK.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_last_ack: u32,
    /// After the last ACK of a closing connection.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_time_wait: u32,
    /// After a RST.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub tcp_close: u32,
    /// UDP flow since its last packet.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 2000000>")]
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: 900,
            tcp_syn: 60,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp: 300,
        }
    }
}

/// `[neighbors]`: ARP cache timers, in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Neighbors {
    /// Seconds between ARP refreshes of a known neighbor.
    #[serde(deserialize_with = "de::ranged::<_, u32, 1, 86400>")]
    pub refresh: u32,
    /// Seconds without an answer before an entry is dropped; > `refresh`.
    #[serde(deserialize_with = "de::ranged::<_, u32, 2, 86400>")]
    pub expiry: u32,
}

impl Default for Neighbors {
    fn default() -> Self {
        Neighbors {
            refresh: 30,
            expiry: 90,
        }
    }
}

/// `[control]`: control-plane settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// Where SIGUSR1 dumps the counters as JSON.
    pub stats_file: PathBuf,
    /// `tracing` filter directive, like `info` or `pylon=debug,warn`.
    pub log: String,
    /// Source address of every health check (the management address).
    pub health_source: Option<Ipv4Addr>,
    /// Interface every health check leaves through (`SO_BINDTODEVICE`),
    /// the management interface.
    pub health_interface: Option<String>,
    /// The control socket `pylonctl` talks to (a Unix socket, mode 0600).
    pub socket: PathBuf,
    /// Where the Prometheus endpoint listens (`ip:port` on the management
    /// network); none: no endpoint.
    pub metrics: Option<SocketAddr>,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            stats_file: PathBuf::from("/run/pylon/stats.json"),
            log: "info".to_owned(),
            health_source: None,
            health_interface: None,
            socket: PathBuf::from("/run/pylon/pylon.sock"),
            metrics: None,
        }
    }
}

impl Control {
    /// The `[control]` keys the health checks use.
    pub fn health(&self) -> HealthControl {
        HealthControl {
            source: self.health_source,
            interface: self.health_interface.clone(),
        }
    }
}

/// `[[ports]]`: a data port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// `[a-zA-Z0-9_-]{1,32}`, unique.
    #[serde(deserialize_with = "de::name")]
    pub name: String,
    /// A DPDK vdev spec (`net_af_packet0,iface=lb-c`) or a PCI address with
    /// optional device arguments (`0000:01:00.0`), PCI hex in lowercase.
    #[serde(deserialize_with = "de::device")]
    pub device: String,
    /// The port's own address and the prefix length of its connected subnet
    /// (`10.0.1.1/24`; `addr()` is the host address, `trunc()` the subnet).
    #[serde(deserialize_with = "de::interface")]
    pub address: Ipv4Net,
    /// Default gateway reached through this port (at most one port has one).
    #[serde(default, deserialize_with = "de::opt_unicast")]
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU of the link: tunnel mode answers packets that no longer fit
    /// after encapsulation with ICMP fragmentation-needed.
    #[serde(
        default = "default_mtu",
        deserialize_with = "de::ranged::<_, u16, 576, 9000>"
    )]
    pub mtu: u16,
}

fn default_mtu() -> u16 {
    1500
}

impl Port {
    /// The device name as DPDK registers it: the vdev spec up to the first
    /// `,` (`net_af_packet0`), or the PCI address (`0000:01:00.0`).
    pub fn dpdk_name(&self) -> &str {
        self.device
            .split_once(',')
            .map_or(self.device.as_str(), |(name, _)| name)
    }

    /// Whether the device is a PCI address (else a vdev).
    pub fn is_pci(&self) -> bool {
        !self.device.starts_with("net_")
    }
}

/// `[[services]]`: a virtual service (VIP, port, protocol).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "ServiceFile")]
pub struct Service {
    /// `[a-zA-Z0-9_-]{1,32}`, unique.
    pub name: String,
    /// Virtual IP address.
    pub vip: Ipv4Addr,
    /// Virtual port, 1..=65535.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    /// How a new connection picks its real server (default `wlc`).
    pub scheduler: Scheduler,
    /// How packets reach the real server (default `nat`).
    pub forwarding: Forwarding,
    /// Real servers, at least one.
    pub servers: Vec<Server>,
    /// `[services.health]`: the check every server gets by default.
    pub health: Option<HealthCheckConfig>,
    /// `[services.sorry]`: takes new connections while every real server
    /// is down or quiesced.
    pub sorry: Option<Sorry>,
}

/// `[services.sorry]`: the sorry server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sorry {
    pub address: Ipv4Addr,
    /// The service port when not given.
    pub port: u16,
}

/// `[[services.servers]]`: a real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The server's unicast address, reachable from a port.
    pub address: Ipv4Addr,
    /// 1..=65535; the service port when not given.
    pub port: u16,
    /// 0..=65535; 0 = quiesced (no new connections).
    pub weight: u16,
    /// The server's `health = { ... }` overrides, as written.
    pub health: Option<HealthCheckConfig>,
    /// The resolved check of this server (service defaults under its
    /// overrides, `[control]` source and interface); `None`: not checked.
    pub check: Option<HealthCheck>,
}

/// A service as written: a server's port defaults to the service's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    #[serde(deserialize_with = "de::name")]
    name: String,
    #[serde(deserialize_with = "de::unicast")]
    vip: Ipv4Addr,
    #[serde(deserialize_with = "de::ranged::<_, u16, 1, 65535>")]
    port: u16,
    protocol: Protocol,
    #[serde(default)]
    scheduler: Scheduler,
    #[serde(default)]
    forwarding: Forwarding,
    #[serde(default)]
    servers: Vec<ServerFile>,
    #[serde(default)]
    health: Option<HealthCheckConfig>,
    #[serde(default)]
    sorry: Option<SorryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SorryFile {
    #[serde(deserialize_with = "de::unicast")]
    address: Ipv4Addr,
    #[serde(default, deserialize_with = "de::opt_port")]
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(deserialize_with = "de::unicast")]
    address: Ipv4Addr,
    #[serde(default, deserialize_with = "de::opt_port")]
    port: Option<u16>,
    #[serde(
        default = "default_weight",
        deserialize_with = "de::ranged::<_, u16, 0, 65535>"
    )]
    weight: u16,
    #[serde(default)]
    health: Option<HealthCheckConfig>,
}

fn default_weight() -> u16 {
    1
}

impl From<ServiceFile> for Service {
    fn from(file: ServiceFile) -> Self {
        let servers = file
            .servers
            .into_iter()
            .map(|server| Server {
                address: server.address,
                port: server.port.unwrap_or(file.port),
                weight: server.weight,
                health: server.health,
                check: None,
            })
            .collect();
        Service {
            name: file.name,
            vip: file.vip,
            port: file.port,
            protocol: file.protocol,
            scheduler: file.scheduler,
            forwarding: file.forwarding,
            servers,
            health: file.health,
            sorry: file.sorry.map(|s| Sorry {
                address: s.address,
                port: s.port.unwrap_or(file.port),
            }),
        }
    }
}

/// Transport protocol of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `tcp`
    Tcp,
    /// `udp`
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Real-server scheduler, named as in ipvsadm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    #[default]
    Wlc,
}

impl fmt::Display for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
        })
    }
}

/// Forwarding method of a service (ipvsadm's `-m`, `-g`, `-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Forwarding {
    /// Destination NAT: the real servers route replies back through Pylon.
    #[default]
    Nat,
    /// Direct routing: only the destination MAC changes; the real server
    /// holds the VIP itself and answers the client directly.
    Dsr,
    /// IP-in-IP (RFC 2003) to the real server, which decapsulates and
    /// answers the client directly.
    Tunnel,
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forwarding::Nat => "nat",
            Forwarding::Dsr => "dsr",
            Forwarding::Tunnel => "tunnel",
        })
    }
}

impl<'de> Deserialize<'de> for Forwarding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(d)?;
        match text.as_str() {
            "nat" => Ok(Forwarding::Nat),
            "dsr" => Ok(Forwarding::Dsr),
            "tunnel" => Ok(Forwarding::Tunnel),
            _ => Err(D::Error::custom(format!(
                "unknown forwarding method `{text}`; valid values: `nat`, `dsr`, `tunnel`"
            ))),
        }
    }
}

/// A configuration error: the file, the key path in it (empty when the
/// problem concerns the whole file) and what is wrong. Displayed as
/// `file: key: problem`, or `file: problem` when the key is empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}", key_prefix(key))]
pub struct ConfigError {
    /// The file (the `origin` given to [`Config::parse`]).
    pub file: PathBuf,
    /// Key path such as `services[1].servers[0].weight`; empty for the
    /// whole file.
    pub key: String,
    /// What is wrong, with toml's line and column where known.
    pub problem: String,
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            problem: e.to_string(),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates `text`; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let error = |(key, problem)| ConfigError {
            file: origin.to_owned(),
            key,
            problem,
        };
        let config: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let key = e.path().to_string();
                error(syntax_problem(key, &e.into_inner(), text))
            })?;
        let mut config = config;
        validate::check(&config).map_err(|invalid| error((invalid.key, invalid.problem)))?;
        validate::health_checks(&mut config)
            .map_err(|invalid| error((invalid.key, invalid.problem)))?;
        Ok(config)
    }

    /// The argument vector for `rte_eal_init`: `program`, `--file-prefix`,
    /// `-l` (or `--lcores`), `--main-lcore`, `-m`, `--no-huge` if set,
    /// `--no-telemetry`, `--no-pci` when no port is a PCI device, `--vdev`
    /// for each vdev port, `-a` for each PCI port, then `eal.args`.
    pub fn eal_args(&self, program: &str) -> Vec<String> {
        let eal = &self.eal;
        let mut args = vec![
            program.to_owned(),
            "--file-prefix".to_owned(),
            eal.file_prefix.clone(),
        ];
        match &eal.lcores {
            Some(map) => args.extend(["--lcores".to_owned(), map.clone()]),
            None => {
                let list: Vec<String> = std::iter::once(eal.main_lcore)
                    .chain(self.dataplane.workers.iter().copied())
                    .map(|id| id.to_string())
                    .collect();
                args.extend(["-l".to_owned(), list.join(",")]);
            }
        }
        args.extend([
            "--main-lcore".to_owned(),
            eal.main_lcore.to_string(),
            "-m".to_owned(),
            eal.memory_mb.to_string(),
        ]);
        if eal.no_huge {
            args.push("--no-huge".to_owned());
        }
        args.push("--no-telemetry".to_owned());
        if !self.ports.iter().any(Port::is_pci) {
            args.push("--no-pci".to_owned());
        }
        for port in &self.ports {
            let flag = if port.is_pci() { "-a" } else { "--vdev" };
            args.extend([flag.to_owned(), port.device.clone()]);
        }
        args.extend(eal.args.iter().cloned());
        args
    }

    /// Where a packet for `ip` leaves: the port whose connected subnet holds
    /// `ip` with `ip` as next hop, else the port with the gateway and the
    /// gateway as next hop, else `None`.
    pub fn port_for(&self, ip: Ipv4Addr) -> Option<(usize, Ipv4Addr)> {
        if let Some(index) = self
            .ports
            .iter()
            .position(|port| port.address.contains(&ip))
        {
            return Some((index, ip));
        }
        self.ports
            .iter()
            .enumerate()
            .find_map(|(index, port)| port.gateway.map(|gateway| (index, gateway)))
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// The key and problem text of an error from the TOML parser or a field
/// deserializer, with toml's position appended.
fn syntax_problem(key: String, error: &toml::de::Error, text: &str) -> (String, String) {
    let message = error.message().trim_end().replace('\n', "; ");
    let mut key = if key == "." { String::new() } else { key };
    let mut problem = match message.strip_prefix("unknown field ") {
        Some(rest) => format!(
            "unknown key {}",
            rest.replacen(", expected", "; expected", 1)
        ),
        None => message,
    };
    if let Some(rest) = problem.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        key = if key.is_empty() {
            field.to_owned()
        } else {
            format!("{key}.{field}")
        };
        problem = "required key is missing".to_owned();
    }
    if let Some(span) = error.span() {
        let mut start = span.start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, tail)| tail)
            .chars()
            .count()
            + 1;
        problem = format!("{problem} (line {line}, column {column})");
    }
    (key, problem)
}
