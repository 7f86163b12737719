//! Two Pylon appliances in NAT mode behind VRRP, for the sync tests: the
//! client side and the server side are each one L2 segment, both
//! appliances sit on both, and the real servers' default gateway is a VRRP
//! VIP on the server side, so the replies follow whichever appliance is
//! MASTER. A management link between the two lb namespaces carries the
//! sync datagrams.
//!
//! ```text
//!   client ns 10.0.1.2/24            switch ns               rsN ns
//!      eth0 --veth-- swcli  [brc]  [brs] swrs1..3 --veth-- eth0 10.0.2.1N/24
//!                    swca  swcb    swsa  swsb                gw 10.0.2.1 (VIP)
//!                     |      |      |     |
//!   A ns: lbcli 10.0.1.1  lbsrv 10.0.2.2      B ns: lbcli 10.0.1.3  lbsrv 10.0.2.3
//!         sync0 10.0.9.1 ------------veth------------ sync0 10.0.9.2
//!   [[vrrp]] 51 on "client": VIP 10.0.1.100;  [[vrrp]] 52 on "servers": VIP 10.0.2.1
//!   service 10.0.1.100:80 -> rs1..3:8080 (nat, wlc 1/2/3)
//! ```
//!
//! Namespaces are `<prefix>-<pid>-<n>-<role>` like [`crate::Topology`]'s
//! (so [`crate::cleanup_stale`] removes leftovers) and are deleted on drop.
//! The lb namespaces' kernels have no address on pylon's ports; only
//! `sync0` is theirs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::process::{self, detach_child, ip, ns_command, run_checked, ScratchDir};
use crate::pylon::{file_prefix_for, Forwarding, Network, PortSpec, PylonOptions, PylonProcess};
use crate::topology::{cleanup_stale, python, CLIENT_ADDR, HTTP_PORT, SERVER_ADDRS, VIP};

const HTTPD_PY: &str = include_str!("../scripts/httpd.py");

/// The client-side VRRP instance (the service VIP).
pub const CLIENT_VRID: u8 = 51;
/// The server-side VRRP instance (the real servers' gateway).
pub const SERVER_VRID: u8 = 52;
/// The real servers' default gateway: [`SERVER_VRID`]'s VIP.
pub const SERVER_GATEWAY: &str = "10.0.2.1";
/// The sync interface in both lb namespaces.
pub const SYNC_IF: &str = "sync0";

/// One of the two appliances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    /// Its address on the management (sync) link.
    pub fn sync_addr(self) -> &'static str {
        match self {
            Side::A => "10.0.9.1",
            Side::B => "10.0.9.2",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn network(self) -> &'static Network {
        match self {
            Side::A => &A_NETWORK,
            Side::B => &B_NETWORK,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::A => "lba",
            Side::B => "lbb",
        }
    }
}

const A_NETWORK: Network = Network {
    ports: &[
        PortSpec {
            name: "client",
            iface: "lbcli",
            address: "10.0.1.1/24",
        },
        PortSpec {
            name: "servers",
            iface: "lbsrv",
            address: "10.0.2.2/24",
        },
    ],
    forwarding: Forwarding::Nat,
    servers: SERVER_ADDRS,
    server_port: HTTP_PORT,
};

const B_NETWORK: Network = Network {
    ports: &[
        PortSpec {
            name: "client",
            iface: "lbcli",
            address: "10.0.1.3/24",
        },
        PortSpec {
            name: "servers",
            iface: "lbsrv",
            address: "10.0.2.3/24",
        },
    ],
    forwarding: Forwarding::Nat,
    servers: SERVER_ADDRS,
    server_port: HTTP_PORT,
};

/// The namespaces, bridges and HTTP servers; dropping it removes them.
pub struct NatPair {
    id: String,
    client_ns: String,
    switch_ns: String,
    servers: Vec<String>,
    created: Vec<String>,
    http: Vec<Child>,
    scratch: ScratchDir,
}

impl NatPair {
    /// Builds the network and starts the three HTTP servers. `prefix`:
    /// 1-12 ASCII letters or digits.
    pub fn new(prefix: &str) -> Result<NatPair> {
        process::require_root()?;
        ensure!(
            !prefix.is_empty()
                && prefix.len() <= 12
                && prefix.chars().all(|c| c.is_ascii_alphanumeric()),
            "prefix {prefix:?} must be 1-12 ASCII letters or digits"
        );
        cleanup_stale(prefix)?;
        let id = process::unique_id(prefix);
        let scratch = ScratchDir::new(&id)?;
        let mut pair = NatPair {
            client_ns: format!("{id}-client"),
            switch_ns: format!("{id}-switch"),
            servers: (1..=3).map(|i| format!("{id}-rs{i}")).collect(),
            id,
            created: Vec::new(),
            http: Vec::new(),
            scratch,
        };
        pair.build()?;
        for i in 0..3 {
            pair.start_http(i)?;
        }
        Ok(pair)
    }

    /// The namespace of an appliance.
    pub fn ns(&self, side: Side) -> String {
        format!("{}-{}", self.id, side.name())
    }

    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }

    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    fn add_ns(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        sysctl(ns, "net.ipv6.conf.all.disable_ipv6", "1")?;
        sysctl(ns, "net.ipv6.conf.default.disable_ipv6", "1")
    }

    /// A veth from `iface` in `ns` to `sw_if` on bridge `br`.
    fn bridge_port(&self, ns: &str, iface: &str, br: &str, sw_if: &str) -> Result<()> {
        let sw = &self.switch_ns;
        ip(&[
            "-n", ns, "link", "add", "name", iface, "type", "veth", "peer", "name", sw_if, "netns",
            sw,
        ])?;
        ip(&["-n", sw, "link", "set", sw_if, "master", br, "up"])?;
        ip(&["-n", ns, "link", "set", iface, "up"])
    }

    fn build(&mut self) -> Result<()> {
        let (client, switch) = (self.client_ns.clone(), self.switch_ns.clone());
        let (a, b) = (self.ns(Side::A), self.ns(Side::B));
        for ns in [&client, &switch, &a, &b]
            .into_iter()
            .cloned()
            .chain(self.servers.clone())
            .collect::<Vec<_>>()
        {
            self.add_ns(&ns)?;
        }
        for br in ["brc", "brs"] {
            ip(&[
                "-n",
                &switch,
                "link",
                "add",
                "name",
                br,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                "mcast_snooping",
                "0",
            ])?;
            ip(&["-n", &switch, "link", "set", br, "up"])?;
        }
        self.bridge_port(&client, "eth0", "brc", "swcli")?;
        host(&client, "eth0", &format!("{CLIENT_ADDR}/24"), None)?;
        for (ns, tag) in [(&a, "a"), (&b, "b")] {
            self.bridge_port(ns, "lbcli", "brc", &format!("swc{tag}"))?;
            self.bridge_port(ns, "lbsrv", "brs", &format!("sws{tag}"))?;
        }
        for (i, ns) in self.servers.clone().iter().enumerate() {
            self.bridge_port(ns, "eth0", "brs", &format!("swrs{}", i + 1))?;
            host(
                ns,
                "eth0",
                &format!("{}/24", SERVER_ADDRS[i]),
                Some(SERVER_GATEWAY),
            )?;
        }
        ip(&[
            "-n", &a, "link", "add", "name", SYNC_IF, "type", "veth", "peer", "name", SYNC_IF,
            "netns", &b,
        ])?;
        for side in [Side::A, Side::B] {
            let ns = self.ns(side);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", side.sync_addr()),
                "dev",
                SYNC_IF,
            ])?;
            ip(&["-n", &ns, "link", "set", SYNC_IF, "up"])?;
            run_checked(ns_command(&ns, "ethtool").args(["-K", SYNC_IF, "tx", "off"]))?;
        }
        Ok(())
    }

    fn start_http(&mut self, i: usize) -> Result<()> {
        let script = self.dir().join("httpd.py");
        if !script.exists() {
            fs::write(&script, HTTPD_PY)?;
        }
        let name = format!("rs{}", i + 1);
        let ready = self.dir().join(format!("{name}.ready"));
        let log = self.dir().join(format!("{name}.log"));
        let mut cmd = ns_command(&self.servers[i], python());
        cmd.arg(&script)
            .args(["--name", &name, "--port", &HTTP_PORT.to_string()])
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log)?)
            .stderr(fs::File::create(&log)?);
        let mut child = detach_child(&mut cmd)
            .spawn()
            .with_context(|| format!("starting the HTTP server of {name}"))?;
        let waited = process::wait_for(Duration::from_secs(10), || {
            if let Some(status) = child.try_wait()? {
                bail!("the HTTP server of {name} exited ({status})");
            }
            Ok(ready.exists().then_some(()))
        });
        self.http.push(child);
        waited.map(|_| ())
    }

    /// The configuration of an appliance: both ports, the NAT service
    /// (one worker, wlc 1/2/3), both VRRP instances at `priority` with
    /// preemption and adverts every 100 ms, and `[sync]` towards the other
    /// appliance with `key`.
    pub fn config(&self, side: Side, priority: u8, key: &str) -> Result<String> {
        let options = PylonOptions::new(1, "wlc");
        let dir = self.side_dir(side)?;
        let text = options.to_toml(
            &file_prefix_for(&format!("{}-{}", self.id, side.name())),
            &dir.join("stats.json"),
            side.network(),
        );
        let mut config: toml::Table = text.parse().context("generated config")?;
        // The two daemons share the CPUs the other way round.
        let lcores = match (side, options.lcores().as_str()) {
            (Side::B, "0@0,1@1") => "0@1,1@0".to_owned(),
            (_, lcores) => lcores.to_owned(),
        };
        config
            .get_mut("eal")
            .and_then(toml::Value::as_table_mut)
            .context("generated config has no [eal]")?
            .insert("lcores".to_owned(), toml::Value::String(lcores));
        let mut text = toml::to_string(&config)?;
        for (vrid, port, vip) in [
            (CLIENT_VRID, "client", VIP),
            (SERVER_VRID, "servers", SERVER_GATEWAY),
        ] {
            text.push_str(&format!(
                "\n[[vrrp]]\nvrid = {vrid}\npriority = {priority}\nadvert_int = 0.1\n\
                 preempt = true\nport = \"{port}\"\nvips = [\"{vip}\"]\n"
            ));
        }
        text.push_str(&format!(
            "\n[sync]\nlisten = \"{}:8848\"\npeers = [\"{}:8848\"]\nkey = \"{key}\"\n\
             interface = \"{SYNC_IF}\"\nstartup_timeout = 3\n",
            side.sync_addr(),
            side.other().sync_addr()
        ));
        Ok(text)
    }

    fn side_dir(&self, side: Side) -> Result<PathBuf> {
        let dir = self.dir().join(side.name());
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The control socket of a side's daemon (next to its stats file).
    pub fn socket(&self, side: Side) -> PathBuf {
        self.dir().join(side.name()).join("stats.sock")
    }

    /// Starts an appliance with `config` in its namespace.
    pub fn start(&self, side: Side, config: &str) -> Result<PylonProcess> {
        PylonProcess::start(Some(&self.ns(side)), &self.side_dir(side)?, config)
    }
}

impl Drop for NatPair {
    fn drop(&mut self) {
        for child in &mut self.http {
            if let Err(e) = process::terminate(child, Duration::from_secs(2)) {
                process::warn(format_args!("nat pair {}: {e:#}", self.id));
            }
        }
        for ns in self.created.iter().rev() {
            let pids = Command::new("ip").args(["netns", "pids", ns]).output();
            if let Ok(out) = pids {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<u32>() {
                        // It may have exited meanwhile.
                        let _ = process::send_signal(pid, libc::SIGKILL);
                    }
                }
            }
            if let Err(e) = ip(&["netns", "del", ns]) {
                process::warn(format_args!("nat pair {}: {e:#}", self.id));
            }
        }
    }
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    run_checked(ns_command(ns, "sysctl").args(["-q", "-w", &format!("{key}={value}")]))?;
    Ok(())
}

/// Address, optional default route and TX checksum offload off on a host
/// end (see [`crate::topology`] on veth offloads).
fn host(ns: &str, iface: &str, addr: &str, gateway: Option<&str>) -> Result<()> {
    ip(&["-n", ns, "addr", "add", addr, "dev", iface])?;
    ip(&["-n", ns, "link", "set", iface, "up"])?;
    if let Some(gw) = gateway {
        ip(&["-n", ns, "route", "add", "default", "via", gw, "dev", iface])?;
    }
    run_checked(ns_command(ns, "ethtool").args(["-K", iface, "tx", "off"]))?;
    Ok(())
}
