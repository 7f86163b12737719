//! The end-to-end test networks, built from network namespaces with iproute2.
//!
//! [`Topology::new`], the routed network of NAT forwarding:
//!
//! ```text
//!   client ns                lb ns (pylon)               switch ns            rsN ns
//!  +-----------+          +-----------------+          +----------+        +-------------+
//!  | eth0      |--veth----| lbcli    lbsrv  |--veth----| swlb     |        |             |
//!  | 10.0.1.2  |          | (no IPs: DPDK   |          |   br0    |--veth--| eth0        |
//!  | gw .1.1   |          |  af_packet)     |          | swrs1..3 |        | 10.0.2.1N   |
//!  +-----------+          +-----------------+          +----------+        | gw 10.0.2.1 |
//!                                                                          +-------------+
//! ```
//!
//! [`Topology::with_management`] adds to it what health checks need: a
//! management veth from the lb namespace to the same bridge, `mgmt`
//! 10.0.2.250/24, through which the lb namespace's kernel (where pylon's
//! health checks run) reaches the real servers on-link, and a sorry server
//! 10.0.2.20 in a namespace of its own:
//!
//! ```text
//!   lb ns: mgmt 10.0.2.250/24 --veth-- swmgmt (br0)      sorry ns: eth0 10.0.2.20
//!   arp_ignore=1, arp_announce=2                          gw 10.0.2.1, HTTP "sorry"
//! ```
//!
//! [`Topology::lan`], one L2 segment for DSR and tunnel forwarding: the
//! client, pylon's single port and the real servers share a bridge, and the
//! servers answer the client directly, never through pylon:
//!
//! ```text
//!   client ns             switch ns              rsN ns
//!  +-----------+        +----------+          +--------------------------+
//!  | eth0      |--veth--| swcli    |          | eth0 10.0.1.1N           |
//!  | 10.0.1.2  |        |   br0    |--veth----| VIP 10.0.1.100/32 on lo  |
//!  +-----------+        | swrs1..3 |          |  (dsr) or on tun0 fed by |
//!                       |   swlb   |          |  ipip_decap.py (tunnel)  |
//!   lb ns (pylon)       +----+-----+          | arp_ignore=1             |
//!  +-----------------+       |                | arp_announce=2           |
//!  | lblan (no IPs)  |--veth-+                +--------------------------+
//!  +-----------------+   pylon: 10.0.1.1/24, VIP 10.0.1.100:80 -> rsN:80
//! ```
//!
//! Every namespace is named `<prefix>-<pid>-<n>-<role>` so that concurrent
//! runs never collide and leftovers of a crashed run can be found
//! ([`cleanup_stale`]). Interfaces are created directly inside their
//! namespaces, so their short fixed names never clash either. The kernel in
//! the lb namespace stays silent on pylon's interfaces (no addresses there,
//! IPv6 off): every frame on them is for pylon. Its only address is the
//! management one, answered in ARP only on `mgmt`. IPv6 is off everywhere, and the client and server ends have
//! TX checksum offload off, because a veth with it on hands af_packet readers
//! TCP segments whose checksum holds only the pseudo-header sum.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::client::ClientResult;
use crate::process::{self, detach_child, ip, ns_command, run_checked, ScratchDir};
use crate::pylon::{Forwarding, Network, PortSpec, PylonOptions, PylonProcess};

/// The client's address; pylon's client-side port is [`LB_CLIENT_ADDR`].
pub const CLIENT_ADDR: &str = "10.0.1.2";
/// Pylon's address (with prefix length) on the client-side port.
pub const LB_CLIENT_ADDR: &str = "10.0.1.1/24";
/// Pylon's address (with prefix length) on the server-side port.
pub const LB_SERVER_ADDR: &str = "10.0.2.1/24";
/// The virtual service address.
pub const VIP: &str = "10.0.1.100";
/// The virtual service port.
pub const VIP_PORT: u16 = 80;
/// The real servers' addresses, `rs1`, `rs2`, `rs3`.
pub const SERVER_ADDRS: [&str; 3] = ["10.0.2.11", "10.0.2.12", "10.0.2.13"];
/// The port the real servers' HTTP servers listen on.
pub const HTTP_PORT: u16 = 8080;
/// The client's interface, in the client namespace.
pub const CLIENT_IF: &str = "eth0";
/// Each real server's interface, in its namespace.
pub const SERVER_IF: &str = "eth0";
/// Pylon's client-side interface, in the lb namespace.
pub const LB_CLIENT_IF: &str = "lbcli";
/// Pylon's server-side interface, in the lb namespace.
pub const LB_SERVER_IF: &str = "lbsrv";
/// Pylon's only interface in a [`Topology::lan`], in the lb namespace.
pub const LB_LAN_IF: &str = "lblan";
/// The real servers' addresses in a [`Topology::lan`], on the client's
/// subnet.
pub const LAN_SERVER_ADDRS: [&str; 3] = ["10.0.1.11", "10.0.1.12", "10.0.1.13"];
/// The TUN device that `ipip_decap.py` feeds on a tunnel real server.
pub const TUN_IF: &str = "tun0";
/// The name of pylon's port in a [`Topology::lan`] configuration.
pub const LAN_PORT: &str = "lan";
/// The management interface of a [`Topology::with_management`], in the lb
/// namespace: the kernel's own, next to pylon's af_packet ports.
pub const MGMT_IF: &str = "mgmt";
/// The management address on [`MGMT_IF`]: on the real servers' subnet (so
/// they answer health checks on-link, not through pylon) and used by no
/// one else.
pub const MGMT_ADDR: &str = "10.0.2.250";
/// The sorry server's address in a [`Topology::with_management`]: on the
/// real servers' subnet, not a real server. It listens on [`HTTP_PORT`]
/// and answers with its name, [`SORRY_NAME`].
pub const SORRY_ADDR: &str = "10.0.2.20";
/// The sorry server's name, namespace suffix and HTTP body.
pub const SORRY_NAME: &str = "sorry";

/// The routed network of [`Topology::new`]: a client-side and a server-side
/// port, NAT to real servers on 10.0.2.0/24 listening on 8080.
pub const NAT_NETWORK: Network = Network {
    ports: &[
        PortSpec {
            name: "client",
            iface: LB_CLIENT_IF,
            address: LB_CLIENT_ADDR,
        },
        PortSpec {
            name: "servers",
            iface: LB_SERVER_IF,
            address: LB_SERVER_ADDR,
        },
    ],
    forwarding: Forwarding::Nat,
    servers: SERVER_ADDRS,
    server_port: HTTP_PORT,
};

/// The network of [`Topology::lan`] in a forwarding mode: one port, real
/// servers on the client's subnet listening on the VIP's port (no NAT).
pub const fn lan_network(forwarding: Forwarding) -> Network {
    Network {
        ports: &[PortSpec {
            name: LAN_PORT,
            iface: LB_LAN_IF,
            address: LB_CLIENT_ADDR,
        }],
        forwarding,
        servers: LAN_SERVER_ADDRS,
        server_port: VIP_PORT,
    }
}

/// The VIP's URL, `http://10.0.1.100/`.
pub fn vip_url() -> String {
    if VIP_PORT == 80 {
        format!("http://{VIP}/")
    } else {
        format!("http://{VIP}:{VIP_PORT}/")
    }
}

const HTTPD_PY: &str = include_str!("../scripts/httpd.py");
const CLIENT_PY: &str = include_str!("../scripts/client.py");
const INJECT_PY: &str = include_str!("../scripts/inject.py");
const IPIP_DECAP_PY: &str = include_str!("../scripts/ipip_decap.py");
const IPIP_PING_PY: &str = include_str!("../scripts/ipip_ping.py");
const TOO_BIG_PY: &str = include_str!("../scripts/too_big.py");

/// How long a started HTTP server or decapsulator may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Overall time budget of one `run_client` call (requests not sent by then
/// count as failed).
const CLIENT_DEADLINE_S: u32 = 45;

/// One real server of the topology.
#[derive(Debug, Clone)]
pub struct RealServer {
    /// `rs1`, `rs2`, `rs3`: also the body its HTTP server answers with.
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// Its address, e.g. `10.0.2.11`.
    pub addr: &'static str,
}

/// The namespaces, veths and bridge of one test, and every process started
/// in them. Dropping it kills those processes and deletes the namespaces
/// (which destroys the veths), also while a failing test unwinds.
pub struct Topology {
    id: String,
    network: Network,
    client_ns: String,
    lb_ns: String,
    switch_ns: String,
    servers: Vec<RealServer>,
    /// The sorry server of a [`Topology::with_management`].
    sorry: Option<RealServer>,
    /// Whether the lb namespace has the management interface.
    management: bool,
    /// The running HTTP servers, by server name.
    http_servers: Vec<(String, Child)>,
    decapsulators: Vec<Child>,
    created: Vec<String>,
    // Last: removed after the namespaces and processes that use it.
    scratch: ScratchDir,
}

impl Topology {
    /// Builds the routed NAT topology with namespaces named
    /// `<prefix>-<pid>-<n>-*`, after removing the leftovers of earlier
    /// crashed runs with the same prefix. `prefix` must be short,
    /// alphanumeric, and not contain `-`.
    pub fn new(prefix: &str) -> Result<Topology> {
        Topology::create(prefix, NAT_NETWORK, false)
    }

    /// [`Topology::new`] plus what health checks need: the management
    /// interface [`MGMT_IF`] ([`MGMT_ADDR`]/24) of the lb namespace on the
    /// servers' bridge, and a sorry server ([`SORRY_ADDR`], namespace
    /// `<id>-sorry`), whose HTTP server [`Topology::start_http_servers`]
    /// starts with the others. The lb namespace answers ARP for the
    /// management address only on [`MGMT_IF`] (`arp_ignore=1`) and uses it
    /// only there (`arp_announce=2`), so the real servers send their answers
    /// to the checks to that interface, never to pylon's port on the same
    /// bridge.
    pub fn with_management(prefix: &str) -> Result<Topology> {
        Topology::create(prefix, NAT_NETWORK, true)
    }

    /// Builds the one-segment topology for `forwarding` (DSR or tunnel; NAT
    /// needs the routed [`Topology::new`]): the client (10.0.1.2/24), pylon's
    /// one port and the real servers 10.0.1.11-13/24 on one bridge. Each real
    /// server holds the VIP, on `lo` for DSR and on a TUN device fed by
    /// `ipip_decap.py` for tunnel, and does not answer ARP for it
    /// (`arp_ignore=1`, `arp_announce=2`), so the client reaches the VIP
    /// through pylon while the replies go straight back to it.
    pub fn lan(prefix: &str, forwarding: Forwarding) -> Result<Topology> {
        ensure!(
            forwarding != Forwarding::Nat,
            "NAT needs the routed topology (Topology::new): on one segment the \
             real servers would answer the client directly"
        );
        Topology::create(prefix, lan_network(forwarding), false)
    }

    fn create(prefix: &str, network: Network, management: bool) -> Result<Topology> {
        process::require_root()?;
        ensure!(
            !prefix.is_empty()
                && prefix.len() <= 12
                && prefix.chars().all(|c| c.is_ascii_alphanumeric()),
            "topology prefix {prefix:?} must be 1-12 ASCII letters or digits"
        );
        cleanup_stale(prefix)?;
        let id = process::unique_id(prefix);
        let scratch = ScratchDir::new(&id)?;
        let servers = network
            .servers
            .iter()
            .enumerate()
            .map(|(i, &addr)| RealServer {
                name: format!("rs{}", i + 1),
                ns: format!("{id}-rs{}", i + 1),
                addr,
            })
            .collect();
        let sorry = management.then(|| RealServer {
            name: SORRY_NAME.to_owned(),
            ns: format!("{id}-{SORRY_NAME}"),
            addr: SORRY_ADDR,
        });
        let mut topo = Topology {
            client_ns: format!("{id}-client"),
            lb_ns: format!("{id}-lb"),
            switch_ns: format!("{id}-switch"),
            id,
            network,
            servers,
            sorry,
            management,
            scratch,
            http_servers: Vec::new(),
            decapsulators: Vec::new(),
            created: Vec::new(),
        };
        // On error the half-built topology is dropped, which removes it.
        match network.forwarding {
            Forwarding::Nat => topo.build_routed()?,
            Forwarding::Dsr | Forwarding::Tunnel => topo.build_lan()?,
        }
        Ok(topo)
    }

    /// Creates every namespace and the switch's bridge.
    fn build_namespaces(&mut self) -> Result<()> {
        let mut all = vec![
            self.client_ns.clone(),
            self.lb_ns.clone(),
            self.switch_ns.clone(),
        ];
        all.extend(self.http_hosts().map(|s| s.ns.clone()));
        for ns in &all {
            ip(&["netns", "add", ns])?;
            self.created.push(ns.clone());
            self.quiet_namespace(ns)?;
        }
        // No multicast snooping: a snooping bridge joins 224.0.0.106 and
        // sends IGMP reports (with the Router Alert IP option) at moments no
        // test controls.
        let switch = &self.switch_ns;
        ip_line(&format!(
            "-n {switch} link add name br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0"
        ))?;
        ip_line(&format!("-n {switch} link set br0 up"))
    }

    /// A veth from `iface` in `ns` to port `sw_if` of the switch's bridge.
    fn bridge_port(&self, ns: &str, iface: &str, sw_if: &str) -> Result<()> {
        let switch = &self.switch_ns;
        ip_line(&format!(
            "-n {ns} link add name {iface} type veth peer name {sw_if} netns {switch}"
        ))?;
        ip_line(&format!("-n {switch} link set {sw_if} master br0 up"))
    }

    fn build_routed(&mut self) -> Result<()> {
        self.build_namespaces()?;
        let (client, lb) = (&self.client_ns, &self.lb_ns);
        // Client <-> lb, lb <-> switch <-> real servers.
        ip_line(&format!(
            "-n {client} link add name {CLIENT_IF} type veth peer name {LB_CLIENT_IF} netns {lb}"
        ))?;
        self.bridge_port(lb, LB_SERVER_IF, "swlb")?;
        for server in self.http_hosts() {
            self.bridge_port(&server.ns, SERVER_IF, &format!("sw{}", server.name))?;
        }

        // lb: the ports are up, with no addresses.
        ip_line(&format!("-n {lb} link set {LB_CLIENT_IF} up"))?;
        ip_line(&format!("-n {lb} link set {LB_SERVER_IF} up"))?;

        let lb_client_gw = strip_prefix_len(LB_CLIENT_ADDR);
        let lb_server_gw = strip_prefix_len(LB_SERVER_ADDR);
        self.host_interface(
            client,
            CLIENT_IF,
            &format!("{CLIENT_ADDR}/24"),
            Some(lb_client_gw),
        )?;
        for server in self.http_hosts() {
            let addr = format!("{}/24", server.addr);
            self.host_interface(&server.ns, SERVER_IF, &addr, Some(lb_server_gw))?;
        }
        if self.management {
            self.build_management()?;
        }
        Ok(())
    }

    /// The management interface of [`Topology::with_management`] (the sorry
    /// server's namespace is built with the real servers').
    fn build_management(&self) -> Result<()> {
        let lb = self.lb_ns.clone();
        // Before the address exists: ARP for it only on its interface, and
        // it as the source of ARP requests only there. Without this the
        // kernel would also answer on pylon's lbsrv (same bridge), and the
        // servers could send their answers to pylon's MAC.
        sysctls(
            &lb,
            &[
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
            ],
        )?;
        self.bridge_port(&lb, MGMT_IF, "swmgmt")?;
        self.host_interface(&lb, MGMT_IF, &format!("{MGMT_ADDR}/24"), None)
    }

    fn build_lan(&mut self) -> Result<()> {
        self.build_namespaces()?;
        let (client, lb) = (&self.client_ns, &self.lb_ns);
        self.bridge_port(client, CLIENT_IF, "swcli")?;
        self.bridge_port(lb, LB_LAN_IF, "swlb")?;
        for server in &self.servers {
            self.bridge_port(&server.ns, SERVER_IF, &format!("sw{}", server.name))?;
        }
        ip_line(&format!("-n {lb} link set {LB_LAN_IF} up"))?;
        // Everything is on-link: no default routes.
        self.host_interface(client, CLIENT_IF, &format!("{CLIENT_ADDR}/24"), None)?;
        for server in self.servers.clone() {
            let addr = format!("{}/24", server.addr);
            self.host_interface(&server.ns, SERVER_IF, &addr, None)?;
            self.real_server_for_vip(&server)?;
        }
        Ok(())
    }

    /// What a DSR or tunnel real server needs to accept packets for the VIP
    /// without claiming the VIP on the wire.
    fn real_server_for_vip(&mut self, server: &RealServer) -> Result<()> {
        let ns = &server.ns;
        // Never answer ARP for the VIP (arp_ignore=1: only for addresses of
        // the interface the request came in on), never use it as the source
        // of our own ARP requests (arp_announce=2). The client must learn
        // pylon's MAC for the VIP, not a real server's.
        sysctls(
            ns,
            &[
                ("net.ipv4.conf.all.arp_ignore", "1"),
                (&format!("net.ipv4.conf.{SERVER_IF}.arp_ignore"), "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
                (&format!("net.ipv4.conf.{SERVER_IF}.arp_announce"), "2"),
            ],
        )?;
        match self.network.forwarding {
            Forwarding::Dsr => ip(&["-n", ns, "addr", "add", &format!("{VIP}/32"), "dev", "lo"]),
            Forwarding::Tunnel => self.start_decapsulator(server),
            Forwarding::Nat => bail!("a NAT real server does not hold the VIP"),
        }
    }

    /// Starts `ipip_decap.py` on a tunnel real server: it creates [`TUN_IF`]
    /// with the VIP and feeds it the inner packets of the IP-in-IP packets
    /// the server receives (the stand-in for the kernel's ipip device, which
    /// the test kernel lacks). The inner packets come from the client, which
    /// the server reaches through eth0, not tun0: reverse-path filtering
    /// must be off (`rp_filter=0`, the effective value being the larger of
    /// `all` and the interface's). `accept_local` is not needed, the
    /// sources are never local addresses.
    fn start_decapsulator(&mut self, server: &RealServer) -> Result<()> {
        let ns = &server.ns;
        // tun0 does not exist yet and inherits `default`.
        sysctls(
            ns,
            &[
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                (&format!("net.ipv4.conf.{SERVER_IF}.rp_filter"), "0"),
            ],
        )?;
        let script = self.script("ipip_decap.py", IPIP_DECAP_PY)?;
        let name = format!("{}-decap", server.name);
        let ready = self.scratch.path().join(format!("{name}.ready"));
        let log = self.scratch.path().join(format!("{name}.log"));
        let mut cmd = ns_command(ns, python());
        cmd.arg(&script)
            .args(["--tun", TUN_IF, "--address", &format!("{VIP}/32")])
            .arg("--ready-file")
            .arg(&ready);
        let child = spawn_ready(
            &mut cmd,
            &ready,
            &log,
            &format!("ipip_decap.py on {}", server.name),
        )?;
        self.decapsulators.push(child);
        let rp_filter = self.exec(
            ns,
            "sysctl",
            &["-n", &format!("net.ipv4.conf.{TUN_IF}.rp_filter")],
        )?;
        ensure!(
            String::from_utf8_lossy(&rp_filter.stdout).trim() == "0",
            "{TUN_IF} on {} has rp_filter {}",
            server.name,
            String::from_utf8_lossy(&rp_filter.stdout).trim()
        );
        Ok(())
    }

    /// Loopback up, IPv6 off (no router solicitations, MLD or DAD on the
    /// wire), for every namespace before its interfaces exist, so that they
    /// inherit the defaults.
    fn quiet_namespace(&self, ns: &str) -> Result<()> {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        sysctls(
            ns,
            &[
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
            ],
        )
    }

    /// An address, a default route (when given) and checksum offload off on
    /// a host end.
    fn host_interface(
        &self,
        ns: &str,
        iface: &str,
        addr: &str,
        gateway: Option<&str>,
    ) -> Result<()> {
        ip(&["-n", ns, "addr", "add", addr, "dev", iface])?;
        ip(&["-n", ns, "link", "set", iface, "up"])?;
        if let Some(gateway) = gateway {
            ip(&[
                "-n", ns, "route", "add", "default", "via", gateway, "dev", iface,
            ])?;
        }
        run_checked(ns_command(ns, "ethtool").args(["-K", iface, "tx", "off"]))?;
        Ok(())
    }

    /// The unique id, `<prefix>-<pid>-<n>`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The client's namespace.
    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }

    /// The namespace pylon runs in.
    pub fn lb_ns(&self) -> &str {
        &self.lb_ns
    }

    /// The namespace of the bridge joining pylon and the real servers.
    pub fn switch_ns(&self) -> &str {
        &self.switch_ns
    }

    /// The real servers, `rs1`..`rs3`.
    pub fn servers(&self) -> &[RealServer] {
        &self.servers
    }

    /// The sorry server of a [`Topology::with_management`].
    pub fn sorry_server(&self) -> Option<&RealServer> {
        self.sorry.as_ref()
    }

    /// Whether the lb namespace has the management interface [`MGMT_IF`].
    pub fn has_management(&self) -> bool {
        self.management
    }

    /// The link-layer address the neighbor table of namespace `ns` holds
    /// for `addr` (`ip neigh`), if it has a usable one.
    pub fn neighbor_mac(&self, ns: &str, addr: &str) -> Result<Option<String>> {
        let out = self.exec(ns, "ip", &["-4", "neigh", "show", addr])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|&w| w == "lladdr")?;
            let mac = words.next()?;
            (!line.contains("FAILED") && !line.contains("INCOMPLETE")).then(|| mac.to_owned())
        }))
    }

    /// This topology's scratch directory (`$TMPDIR/<id>`): configs, logs,
    /// the stats file and the scripts. Removed on drop.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The DPDK file prefix for a pylon in this topology.
    pub fn file_prefix(&self) -> String {
        crate::pylon::file_prefix_for(&self.id)
    }

    /// What pylon serves here: its ports, the forwarding mode, the real
    /// servers and their port.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The MAC address of pylon's port facing the client (its af_packet
    /// port uses the interface's address).
    pub fn pylon_mac(&self) -> Result<String> {
        self.lb_mac(self.network.ports[0].iface)
    }

    /// A counter of `/sys/class/net/IFACE/statistics` (`rx_packets`,
    /// `tx_packets`, ...) of an interface in a namespace of this topology.
    pub fn iface_counter(&self, ns: &str, iface: &str, counter: &str) -> Result<u64> {
        let out = self.exec(
            ns,
            "cat",
            &[&format!("/sys/class/net/{iface}/statistics/{counter}")],
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .with_context(|| format!("{counter} of {iface} in {ns}: {text:?}"))
    }

    /// A `/sys/class/net` counter of `iface` summed over the real servers.
    pub fn servers_counter(&self, iface: &str, counter: &str) -> Result<u64> {
        self.servers
            .iter()
            .map(|server| self.iface_counter(&server.ns, iface, counter))
            .sum()
    }

    /// The MAC address of a real server's interface.
    pub fn server_mac(&self, server: &RealServer) -> Result<String> {
        let out = self.exec(
            &server.ns,
            "cat",
            &[&format!("/sys/class/net/{SERVER_IF}/address")],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// The MAC address of an interface of the lb namespace (the address
    /// pylon's af_packet port uses).
    pub fn lb_mac(&self, iface: &str) -> Result<String> {
        let out = run_checked(
            ns_command(&self.lb_ns, "cat").arg(format!("/sys/class/net/{iface}/address")),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs a program inside a namespace of this topology and waits for it.
    pub fn exec(&self, ns: &str, program: &str, args: &[&str]) -> Result<Output> {
        run_checked(ns_command(ns, program).args(args))
    }

    fn script(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.scratch.path().join(name);
        if !path.exists() {
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(path)
    }

    /// Starts the HTTP server of every real server, and of the sorry server
    /// when there is one (body = its name; port 8080 in the routed topology,
    /// the VIP's port 80 on a LAN, bound to 0.0.0.0 so that it takes
    /// connections to the VIP) and waits until each is listening.
    pub fn start_http_servers(&mut self) -> Result<()> {
        ensure!(self.http_servers.is_empty(), "the HTTP servers already run");
        for server in self.http_hosts().cloned().collect::<Vec<_>>() {
            self.spawn_http_server(&server)?;
        }
        Ok(())
    }

    /// Starts the HTTP server of real server `index` (0 = rs1) again after
    /// [`Topology::stop_http_server`], and waits until it listens.
    pub fn start_http_server(&mut self, index: usize) -> Result<()> {
        let server = self.server(index)?.clone();
        ensure!(
            !self
                .http_servers
                .iter()
                .any(|(name, _)| *name == server.name),
            "the HTTP server of {} already runs",
            server.name
        );
        self.spawn_http_server(&server)
    }

    /// Stops the HTTP server of real server `index` (0 = rs1): its port is
    /// closed, so connections to it are refused.
    pub fn stop_http_server(&mut self, index: usize) -> Result<()> {
        let name = self.server(index)?.name.clone();
        let at = self
            .http_servers
            .iter()
            .position(|(n, _)| *n == name)
            .with_context(|| format!("the HTTP server of {name} does not run"))?;
        let (_, mut child) = self.http_servers.remove(at);
        process::terminate(&mut child, Duration::from_secs(2))
            .with_context(|| format!("stopping the HTTP server of {name}"))?;
        Ok(())
    }

    fn spawn_http_server(&mut self, server: &RealServer) -> Result<()> {
        let script = self.script("httpd.py", HTTPD_PY)?;
        let port = self.network.server_port.to_string();
        let ready = self.scratch.path().join(format!("{}.ready", server.name));
        // A restart must not take the last run's file for readiness.
        if ready.exists() {
            fs::remove_file(&ready).with_context(|| format!("removing {}", ready.display()))?;
        }
        let log = self.scratch.path().join(format!("{}.log", server.name));
        let mut cmd = ns_command(&server.ns, python());
        cmd.arg(&script)
            .args(["--name", &server.name, "--port", &port])
            .arg("--status-file")
            .arg(self.status_file(&server.name))
            .arg("--ready-file")
            .arg(&ready);
        let what = format!("the HTTP server of {}", server.name);
        let child = spawn_ready(&mut cmd, &ready, &log, &what)?;
        self.http_servers.push((server.name.clone(), child));
        Ok(())
    }

    /// Brings real server `index`'s interface (0 = rs1) down or up. Down,
    /// the server is cut off: neither health checks nor forwarded traffic
    /// reach it. Up again, its address is back and so is its default route
    /// (the kernel removes a route whose interface goes down).
    pub fn set_server_link(&self, index: usize, up: bool) -> Result<()> {
        let server = self.server(index)?;
        let ns = &server.ns;
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            SERVER_IF,
            if up { "up" } else { "down" },
        ])?;
        if up && self.network.forwarding == Forwarding::Nat {
            let gateway = strip_prefix_len(LB_SERVER_ADDR);
            ip(&[
                "-n", ns, "route", "replace", "default", "via", gateway, "dev", SERVER_IF,
            ])?;
        }
        Ok(())
    }

    fn server(&self, index: usize) -> Result<&RealServer> {
        self.servers
            .get(index)
            .with_context(|| format!("no real server {index}"))
    }

    /// The namespaces that run an HTTP server: the real servers, then the
    /// sorry server when there is one.
    fn http_hosts(&self) -> impl Iterator<Item = &RealServer> {
        self.servers.iter().chain(&self.sorry)
    }

    fn status_file(&self, server: &str) -> PathBuf {
        self.scratch.path().join(format!("{server}.status"))
    }

    /// Makes real server `index` (0 = rs1) answer with `status` from now on.
    pub fn set_http_status(&self, index: usize, status: u16) -> Result<()> {
        let server = self.server(index)?;
        let path = self.status_file(&server.name);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, format!("{status}\n"))?;
        fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// The TOML configuration of a pylon that serves this topology.
    pub fn pylon_config(&self, options: &PylonOptions) -> String {
        options.to_toml(
            &self.file_prefix(),
            &self.scratch.path().join("stats.json"),
            &self.network,
        )
    }

    /// Starts `pylon --config <file with config_text>` in the lb namespace
    /// and waits until it has written its stats file. See [`PylonProcess`].
    pub fn run_pylon(&self, config_text: &str) -> Result<PylonProcess> {
        PylonProcess::start(Some(&self.lb_ns), self.scratch.path(), config_text)
    }

    /// Runs `client.py` in the client namespace: `n_requests` sequential
    /// HTTP/1.1 GETs of `url`, each on a new connection with a 2 s timeout.
    pub fn run_client(&self, n_requests: usize, url: &str) -> Result<ClientResult> {
        self.run_client_from(&self.client_ns, n_requests, url)
    }

    /// [`Topology::run_client`] from any namespace of the topology (a real
    /// server's, to reach the others through the bridge without pylon).
    pub fn run_client_from(&self, ns: &str, n_requests: usize, url: &str) -> Result<ClientResult> {
        let script = self.script("client.py", CLIENT_PY)?;
        let out = run_checked(
            ns_command(ns, python())
                .arg(&script)
                .args(["--count", &n_requests.to_string(), "--url", url])
                .args([
                    "--timeout",
                    "2",
                    "--deadline",
                    &CLIENT_DEADLINE_S.to_string(),
                ]),
        )?;
        ClientResult::parse(&out.stdout)
    }

    /// Runs `ipip_ping.py` in the client namespace: `count` ICMP echo
    /// requests to the VIP, encapsulated in IP-in-IP to `server` as pylon's
    /// tunnel mode does, checking a tunnel real server without pylon.
    /// Returns the script's summary, `{"sent": n, "replies": n, "errors": [..]}`.
    pub fn ipip_ping(&self, server: &RealServer, count: usize) -> Result<Value> {
        let script = self.script("ipip_ping.py", IPIP_PING_PY)?;
        let out = run_checked(
            ns_command(&self.client_ns, python())
                .arg(&script)
                .args(["--src", CLIENT_ADDR, "--vip", VIP, "--server", server.addr])
                .args(["--count", &count.to_string()]),
        )?;
        serde_json::from_slice(&out.stdout).context("ipip_ping.py printed no JSON")
    }

    /// Runs `too_big.py` in the client namespace: one TCP SYN to VIP:80 with
    /// DF set and payload up to an IP total length of `total_length`, sent
    /// to pylon's MAC, and the ICMP error or SYN-ACK that answers it within
    /// `timeout`. Returns the script's JSON (see the script).
    pub fn df_probe(&self, total_length: u16, timeout: Duration) -> Result<Value> {
        let script = self.script("too_big.py", TOO_BIG_PY)?;
        let mac = self.pylon_mac()?;
        let out = run_checked(
            ns_command(&self.client_ns, python())
                .arg(&script)
                .args(["--iface", CLIENT_IF, "--dst-mac", &mac])
                .args(["--src-ip", CLIENT_ADDR, "--dst-ip", VIP])
                .args(["--dst-port", &VIP_PORT.to_string()])
                .args(["--total-length", &total_length.to_string()])
                .args(["--timeout", &timeout.as_secs_f64().to_string()]),
        )?;
        serde_json::from_slice(&out.stdout).context("too_big.py printed no JSON")
    }

    /// Runs `inject.py` in the client namespace: `count` crafted bad frames
    /// of each kind, sent to pylon's client-side MAC and aimed at the VIP.
    /// Returns the script's summary, `{"sent": {kind: n}, "frames": n}`.
    pub fn inject_bad_frames(&self, count: usize) -> Result<Value> {
        let script = self.script("inject.py", INJECT_PY)?;
        let mac = self.pylon_mac()?;
        let out = run_checked(
            ns_command(&self.client_ns, python())
                .arg(&script)
                .args([
                    "--iface",
                    CLIENT_IF,
                    "--dst-mac",
                    &mac,
                    "--src-ip",
                    CLIENT_ADDR,
                    "--dst-ip",
                    VIP,
                ])
                .args([
                    "--dst-port",
                    &VIP_PORT.to_string(),
                    "--count",
                    &count.to_string(),
                ]),
        )?;
        serde_json::from_slice(&out.stdout).context("inject.py printed no JSON")
    }

    /// A counter of the `Ip:` lines of `/proc/net/snmp` in a namespace of
    /// this topology (e.g. `ReasmReqds`: IPv4 fragments the kernel there took
    /// for reassembly).
    pub fn ip_snmp(&self, ns: &str, field: &str) -> Result<u64> {
        let out = self.exec(ns, "cat", &["/proc/net/snmp"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut ip_lines = text.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = ip_lines
            .next()
            .zip(ip_lines.next())
            .context("no Ip: lines in /proc/net/snmp")?;
        let index = names
            .split_whitespace()
            .position(|name| name == field)
            .with_context(|| format!("no {field} in /proc/net/snmp"))?;
        let value = values
            .split_whitespace()
            .nth(index)
            .with_context(|| format!("no value for {field} in /proc/net/snmp"))?;
        value
            .parse()
            .with_context(|| format!("{field} = {value:?}"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for (_, child) in &mut self.http_servers {
            if let Err(e) = process::terminate(child, Duration::from_secs(2)) {
                process::warn(format_args!(
                    "topology {}: stopping an HTTP server: {e:#}",
                    self.id
                ));
            }
        }
        for child in &mut self.decapsulators {
            if let Err(e) = process::terminate(child, Duration::from_secs(2)) {
                process::warn(format_args!(
                    "topology {}: stopping a decapsulator: {e:#}",
                    self.id
                ));
            }
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = remove_namespace(ns) {
                process::warn(format_args!("topology {}: {e:#}", self.id));
            }
        }
    }
}

/// The Python interpreter: `$PYTHON`, else `python3` from `PATH`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Spawns a long-running helper (see [`detach_child`]) with its output in
/// `log`, and waits up to [`READY_TIMEOUT`] for it to write `ready`; stops
/// it again and fails, with its log, when it exits or does not get ready.
fn spawn_ready(cmd: &mut Command, ready: &Path, log: &Path, what: &str) -> Result<Child> {
    let log_file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let mut child = detach_child(cmd)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let waited = process::wait_for(READY_TIMEOUT, || {
        if ready.exists() {
            return Ok(Some(()));
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(None)
    });
    if let Err(e) = waited {
        if let Err(stop) = process::terminate(&mut child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping {what}: {stop:#}"));
        }
        return Err(e.context(format!("waiting for {what} to be ready")));
    }
    Ok(child)
}

/// Sets sysctls (`key`, `value`) inside namespace `ns`.
pub(crate) fn sysctls(ns: &str, settings: &[(&str, &str)]) -> Result<()> {
    for (key, value) in settings {
        run_checked(ns_command(ns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))?;
    }
    Ok(())
}

/// Runs `ip` with the whitespace-separated arguments of `args` (names and
/// addresses here never contain spaces).
fn ip_line(args: &str) -> Result<()> {
    ip(&args.split_whitespace().collect::<Vec<_>>())
}

fn strip_prefix_len(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// Kills every process still inside `ns`, then deletes it.
pub(crate) fn remove_namespace(ns: &str) -> Result<()> {
    let pids = Command::new("ip").args(["netns", "pids", ns]).output()?;
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<u32>() {
            // The process may have exited in the meantime.
            let _ = process::send_signal(pid, libc::SIGKILL);
        }
    }
    ip(&["netns", "del", ns]).with_context(|| format!("deleting namespace {ns}"))
}

/// Removes what an earlier run with the same `prefix` left behind when it
/// died without cleaning up: its namespaces (and the processes and veths in
/// them), scratch directory and DPDK runtime directory. Only runs whose
/// process is gone are touched, so concurrent runs are safe. Returns the
/// namespaces it removed.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>> {
    let me = std::process::id();
    let stale_id = |name: &str| -> Option<String> {
        let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
        let mut parts = rest.splitn(3, '-');
        let pid: u32 = parts.next()?.parse().ok()?;
        let n: u32 = parts.next()?.parse().ok()?;
        (pid != me && !process::pid_alive(pid)).then(|| format!("{prefix}-{pid}-{n}"))
    };

    let list = run_checked(Command::new("ip").args(["netns", "list"]))?;
    let mut removed = Vec::new();
    let mut ids = Vec::new();
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
    {
        if let Some(id) = stale_id(name) {
            remove_namespace(name)?;
            removed.push(name.to_owned());
            ids.push(id);
        }
    }
    for entry in fs::read_dir(std::env::temp_dir())?.flatten() {
        if let Some(id) = entry.file_name().to_str().and_then(stale_id) {
            ids.push(id);
        }
    }
    for id in ids {
        for dir in [
            std::env::temp_dir().join(&id),
            crate::pylon::dpdk_runtime_dir(&crate::pylon::file_prefix_for(&id)),
        ] {
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }
    Ok(removed)
}
