//! Two Pylon appliances sharing the VIP through VRRP on one L2 segment: the
//! DSR LAN of [`Topology::lan`] plus a second lb namespace for appliance B,
//! and a prober that measures how long clients go without an answer while
//! the VIP moves. keepalived can stand in for appliance B
//! ([`VrrpPair::start_keepalived`]).
//!
//! ```text
//!   client ns              switch ns               rsN ns
//!  +-----------+        +------------+         +-------------------------+
//!  | eth0      |--veth--| swcli      |         | eth0 10.0.1.1N/24       |
//!  | 10.0.1.2  |        |    br0     |--veth---| VIP 10.0.1.100/32 on lo |
//!  +-----------+        | swrs1..3   |         | arp_ignore/announce     |
//!                       | swlb swlbb |         +-------------------------+
//!   A: <id>-lb ns       +--+------+--+        B: <id B>-lb ns
//!  +----------------+      |      |        +----------------+
//!  | lblan (no IPs) |------+      +--------| lblan (no IPs) |
//!  +----------------+                      +----------------+
//!   pylon A 10.0.1.1/24                     pylon B 10.0.1.3/24
//!   [[vrrp]] vrid 51, VIP 10.0.1.100, advert_int 0.1 s, DSR to rs1..rs3:80
//! ```
//!
//! Appliance B has an id of its own (`<prefix>-<pid>-<n>`): its namespace,
//! scratch directory and DPDK file prefix follow it, so
//! [`crate::cleanup_stale`] removes B's leftovers as it does A's. The two
//! daemons share the two CPUs the other way round (A: control lcore on CPU
//! 0, worker on 1; B: control on 1, worker on 0), both with idle back-off.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::process::{self, detach_child, ip, ns_command, run_checked, ScratchDir};
use crate::pylon::{file_prefix_for, Forwarding, Network, PortSpec, PylonOptions, PylonProcess};
use crate::topology::{
    python, remove_namespace, sysctls, Topology, CLIENT_IF, LAN_PORT, LAN_SERVER_ADDRS, LB_LAN_IF,
    VIP, VIP_PORT,
};

/// The VRID of the pair's instance.
pub const VRID: u8 = 51;
/// Its advertisement interval, centiseconds (`advert_int = 0.1`).
pub const ADVERT_INT_CS: u16 = 10;
/// Appliance A's port address.
pub const A_ADDR: &str = "10.0.1.1";
/// Appliance B's port address.
pub const B_ADDR: &str = "10.0.1.3";
/// The virtual MAC of [`VRID`], `00:00:5e:00:01:33`.
pub const VIRTUAL_MAC: &str = "00:00:5e:00:01:33";
/// The second VIP of [`VrrpPair::config_two_vips`] (service `web2`,
/// port 80); the real servers hold it on `lo` as they hold the first.
pub const VIP2: &str = "10.0.1.101";
/// The VRID of [`VIP2`].
pub const VRID2: u8 = 52;
/// The virtual MAC of [`VRID2`].
pub const VIRTUAL_MAC2: &str = "00:00:5e:00:01:34";
/// The bridge port of A's veth (the name [`Topology::lan`] gives it).
const SWITCH_PORT_A: &str = "swlb";
/// The bridge port of B's veth.
const SWITCH_PORT_B: &str = "swlbb";

const PROBE_PY: &str = include_str!("../scripts/probe.py");
const HTTPD_PY: &str = include_str!("../scripts/httpd.py");

/// The body of the HTTP server next to keepalived: answers through the VIP
/// that carry it came from keepalived's host, not through pylon.
pub const KEEPALIVED_HTTP_NAME: &str = "keepalived";

/// keepalived's log lines about advertisements it rejects (keepalived
/// 2.2's `vrrp_check_packet` and friends): none may appear for pylon's.
pub const KEEPALIVED_PACKET_ERRORS: [&str; 13] = [
    "Invalid VRRPv",
    "vrrp packet too",
    "invalid TTL",
    "TTL/HL",
    "wrong version",
    "Invalid packet type",
    "unexpected ip number count",
    "ip_tot_len mismatch",
    "VIPs but received",
    "not present in MASTER advert",
    "interval mismatch",
    "Invalid auth type",
    "icast packet",
];

/// B's network: the LAN's one port with B's address.
const B_NETWORK: Network = Network {
    ports: &[PortSpec {
        name: LAN_PORT,
        iface: LB_LAN_IF,
        address: "10.0.1.3/24",
    }],
    forwarding: Forwarding::Dsr,
    servers: LAN_SERVER_ADDRS,
    server_port: VIP_PORT,
};

/// One of the two appliances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appliance {
    /// 10.0.1.1, the LAN topology's own lb namespace.
    A,
    /// 10.0.1.3, the second lb namespace.
    B,
}

impl Appliance {
    /// Its port address.
    pub fn addr(self) -> &'static str {
        match self {
            Appliance::A => A_ADDR,
            Appliance::B => B_ADDR,
        }
    }
}

/// The `[[vrrp]]` table an appliance gets.
#[derive(Debug, Clone, Copy)]
pub struct VrrpOptions {
    /// `priority`.
    pub priority: u8,
    /// `preempt`.
    pub preempt: bool,
}

impl VrrpOptions {
    /// The TOML of the instance: [`VRID`] on the LAN port, VIP
    /// 10.0.1.100, [`ADVERT_INT_CS`], this priority and preempt mode.
    pub fn to_toml(self) -> String {
        self.instance_toml(VRID, VIP)
    }

    /// [`VrrpOptions::to_toml`] for another VRID and VIP.
    pub fn instance_toml(self, vrid: u8, vip: &str) -> String {
        format!(
            "\n[[vrrp]]\nvrid = {vrid}\npriority = {}\nadvert_int = {}\npreempt = {}\n\
             port = \"{LAN_PORT}\"\nvips = [\"{vip}\"]\n",
            self.priority,
            f64::from(ADVERT_INT_CS) / 100.0,
            self.preempt
        )
    }
}

/// Master_Down_Interval of RFC 5798 §6.1 in milliseconds, for a backup of
/// `priority` with a master advertising every `adver_int_cs` centiseconds:
/// `3 * Master_Adver_Interval + Skew_Time`.
pub fn master_down_interval_ms(priority: u8, adver_int_cs: u16) -> f64 {
    3.0 * f64::from(adver_int_cs) * 10.0 + skew_time_ms(priority, adver_int_cs)
}

/// Skew_Time of RFC 5798 §6.1 in milliseconds:
/// `((256 - priority) * Master_Adver_Interval) / 256`.
pub fn skew_time_ms(priority: u8, adver_int_cs: u16) -> f64 {
    (256.0 - f64::from(priority)) * f64::from(adver_int_cs) * 10.0 / 256.0
}

/// The pair's network: a [`Topology::lan`] in DSR mode with its HTTP
/// servers running, plus appliance B's namespace. Dropping it removes
/// everything, B's namespace first.
pub struct VrrpPair {
    b_ns: String,
    b_id: String,
    b_scratch: ScratchDir,
    topo: Topology,
}

impl VrrpPair {
    /// Builds the LAN topology (namespaces `<prefix>-<pid>-<n>-*`), starts
    /// its HTTP servers and adds B's namespace with a veth on the bridge.
    pub fn new(prefix: &str) -> Result<VrrpPair> {
        let mut topo = Topology::lan(prefix, Forwarding::Dsr)?;
        topo.start_http_servers()?;
        let b_id = process::unique_id(prefix);
        let b_scratch = ScratchDir::new(&b_id)?;
        let b_ns = format!("{b_id}-lb");
        ip(&["netns", "add", &b_ns])?;
        // From here on, dropping the pair removes the namespace.
        let pair = VrrpPair {
            b_ns,
            b_id,
            b_scratch,
            topo,
        };
        let ns = &pair.b_ns;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        sysctls(
            ns,
            &[
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
            ],
        )?;
        let switch = pair.topo.switch_ns();
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            "name",
            LB_LAN_IF,
            "type",
            "veth",
            "peer",
            "name",
            SWITCH_PORT_B,
            "netns",
            switch,
        ])?;
        ip(&[
            "-n",
            switch,
            "link",
            "set",
            SWITCH_PORT_B,
            "master",
            "br0",
            "up",
        ])?;
        ip(&["-n", ns, "link", "set", LB_LAN_IF, "up"])?;
        for server in pair.topo.servers() {
            ip(&[
                "-n",
                &server.ns,
                "addr",
                "add",
                &format!("{VIP2}/32"),
                "dev",
                "lo",
            ])?;
        }
        Ok(pair)
    }

    /// The underlying LAN topology (client, A's namespace, switch, real
    /// servers).
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The namespace an appliance runs in.
    pub fn ns(&self, which: Appliance) -> &str {
        match which {
            Appliance::A => self.topo.lb_ns(),
            Appliance::B => &self.b_ns,
        }
    }

    fn dir(&self, which: Appliance) -> PathBuf {
        match which {
            Appliance::A => self.topo.dir().to_owned(),
            Appliance::B => self.b_scratch.path().to_owned(),
        }
    }

    /// The configuration of an appliance: the LAN's DSR service (one
    /// worker, wlc 1/2/3) on its own address, file prefix, stats file and
    /// CPU mapping, plus the `[[vrrp]]` table of `vrrp`.
    pub fn config(&self, which: Appliance, vrrp: VrrpOptions) -> Result<String> {
        Ok(toml::to_string(&self.base_config(which)?)? + &vrrp.to_toml())
    }

    /// [`VrrpPair::config`] with two VIPs: the service `web2` on [`VIP2`]:80
    /// (DSR to the same servers) besides `web`, the instance of [`VRID`]
    /// (VIP 10.0.1.100) with `first`, and the instance of [`VRID2`]
    /// ([`VIP2`]) with `second`.
    pub fn config_two_vips(
        &self,
        which: Appliance,
        first: VrrpOptions,
        second: VrrpOptions,
    ) -> Result<String> {
        let mut config = self.base_config(which)?;
        let services = config
            .get_mut("services")
            .and_then(toml::Value::as_array_mut)
            .context("generated config has no [[services]]")?;
        let mut web2 = services
            .first()
            .and_then(toml::Value::as_table)
            .context("generated config has no service")?
            .clone();
        web2.insert("name".to_owned(), toml::Value::String("web2".to_owned()));
        web2.insert("vip".to_owned(), toml::Value::String(VIP2.to_owned()));
        services.push(toml::Value::Table(web2));
        Ok(toml::to_string(&config)?
            + &first.instance_toml(VRID, VIP)
            + &second.instance_toml(VRID2, VIP2))
    }

    /// The generated configuration of an appliance without `[[vrrp]]`.
    fn base_config(&self, which: Appliance) -> Result<toml::Table> {
        let options = PylonOptions::new(1, "wlc");
        let text = match which {
            Appliance::A => self.topo.pylon_config(&options),
            Appliance::B => options.to_toml(
                &file_prefix_for(&self.b_id),
                &self.b_scratch.path().join("stats.json"),
                &B_NETWORK,
            ),
        };
        let mut config: toml::Table = text.parse().context("generated config")?;
        let lcores = match (which, options.lcores().as_str()) {
            (Appliance::B, "0@0,1@1") => "0@1,1@0".to_owned(),
            (_, lcores) => lcores.to_owned(),
        };
        config
            .get_mut("eal")
            .and_then(toml::Value::as_table_mut)
            .context("generated config has no [eal]")?
            .insert("lcores".to_owned(), toml::Value::String(lcores));
        Ok(config)
    }

    /// Starts an appliance's daemon with `config` and waits for its first
    /// stats file.
    pub fn start(&self, which: Appliance, config: &str) -> Result<PylonProcess> {
        PylonProcess::start(Some(self.ns(which)), &self.dir(which), config)
    }

    /// Sets the bridge port of an appliance's veth down (`up = false`: its
    /// link is cut, it hears and reaches nobody) or up again.
    pub fn set_link(&self, which: Appliance, up: bool) -> Result<()> {
        let port = match which {
            Appliance::A => SWITCH_PORT_A,
            Appliance::B => SWITCH_PORT_B,
        };
        let state = if up { "up" } else { "down" };
        ip(&["-n", self.topo.switch_ns(), "link", "set", port, state])
    }

    /// Which appliance's bridge port the bridge has learnt `mac` on, if
    /// either.
    pub fn bridge_port_of(&self, mac: &str) -> Result<Option<Appliance>> {
        let out = run_checked(
            ns_command(self.topo.switch_ns(), "bridge").args(["fdb", "show", "br", "br0"]),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some(mac) {
                continue;
            }
            match words.skip_while(|w| *w != "dev").nth(1) {
                Some(SWITCH_PORT_A) => return Ok(Some(Appliance::A)),
                Some(SWITCH_PORT_B) => return Ok(Some(Appliance::B)),
                _ => {}
            }
        }
        Ok(None)
    }

    /// The MAC address the client's ARP cache holds for `vip`, if any.
    pub fn client_mac_of(&self, vip: &str) -> Result<Option<String>> {
        let out = run_checked(
            ns_command(self.topo.client_ns(), "ip").args(["neigh", "show", vip, "dev", CLIENT_IF]),
        )?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_owned))
    }

    /// Starts keepalived in B's namespace in B's place: B's interface gets
    /// B's address (keepalived runs on the kernel's stack), keepalived runs
    /// the VRRP instance of the pair ([`VRID`], VRRPv3, the VIP, advert_int
    /// 0.1 s, preempting) at `priority`, and an HTTP server answering
    /// [`KEEPALIVED_HTTP_NAME`] on port 80 serves the VIP while keepalived
    /// holds it. keepalived, run this way, adds the VIP to the interface and
    /// announces it with the interface's own MAC.
    pub fn start_keepalived(&self, priority: u8) -> Result<Keepalived> {
        let ns = &self.b_ns;
        ip(&[
            "-n",
            ns,
            "addr",
            "replace",
            &format!("{B_ADDR}/24"),
            "dev",
            LB_LAN_IF,
        ])?;
        run_checked(ns_command(ns, "ethtool").args(["-K", LB_LAN_IF, "tx", "off"]))?;
        let dir = self.b_scratch.path();
        let n = process::unique_id("keepalived");
        let config = dir.join(format!("{n}.conf"));
        fs::write(
            &config,
            format!(
                "global_defs {{\n    router_id {n}\n    vrrp_version 3\n}}\n\n\
                 vrrp_instance VI_{VRID} {{\n    state BACKUP\n    interface {LB_LAN_IF}\n    \
                 virtual_router_id {VRID}\n    priority {priority}\n    advert_int {}\n    \
                 virtual_ipaddress {{\n        {VIP}/32\n    }}\n}}\n",
                f64::from(ADVERT_INT_CS) / 100.0
            ),
        )?;
        let http = {
            let script = dir.join("httpd.py");
            fs::write(&script, HTTPD_PY)?;
            let ready = dir.join(format!("{n}-http.ready"));
            let mut cmd = ns_command(ns, python());
            cmd.arg(&script)
                .args([
                    "--name",
                    KEEPALIVED_HTTP_NAME,
                    "--port",
                    &VIP_PORT.to_string(),
                ])
                .arg("--ready-file")
                .arg(&ready);
            spawn_ready(&mut cmd, &ready, &dir.join(format!("{n}-http.log")))
                .context("the HTTP server next to keepalived")?
        };
        let log_path = dir.join(format!("{n}.log"));
        let log = fs::File::create(&log_path)?;
        let mut cmd = ns_command(ns, "keepalived");
        // No fork, VRRP only, log to the console (our log file), not syslog.
        cmd.args([
            "--dont-fork",
            "--vrrp",
            "--log-console",
            "--log-detail",
            "--no-syslog",
        ])
        .arg("--use-file")
        .arg(&config)
        .arg("--pid")
        .arg(dir.join(format!("{n}.pid")))
        .arg("--vrrp_pid")
        .arg(dir.join(format!("{n}-vrrp.pid")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        let daemon = detach_child(&mut cmd)
            .spawn()
            .context("starting keepalived (Debian package `keepalived`)")?;
        Ok(Keepalived {
            daemon,
            http,
            log_path,
            stopped: false,
        })
    }

    /// Starts `tcpdump` on the client's interface, recording every VRRP
    /// advertisement on the segment (the bridge floods them to every port)
    /// until [`AdvertCapture::finish`].
    pub fn capture_adverts(&self) -> Result<AdvertCapture> {
        let dir = self.b_scratch.path();
        let n = process::unique_id("tcpdump");
        let out_path = dir.join(format!("{n}.txt"));
        let err_path = dir.join(format!("{n}.err"));
        let mut cmd = ns_command(self.topo.client_ns(), "tcpdump");
        // -tt: seconds since the epoch; -l: line-buffered; proto 112 only.
        cmd.args(["-i", CLIENT_IF, "-n", "-tt", "-l", "ip proto 112"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path)?)
            .stderr(fs::File::create(&err_path)?);
        let child = detach_child(&mut cmd)
            .spawn()
            .context("starting tcpdump (Debian package `tcpdump`)")?;
        let mut capture = AdvertCapture {
            child,
            out_path,
            err_path,
        };
        process::wait_for(Duration::from_secs(10), || {
            if let Some(status) = capture.child.try_wait()? {
                bail!("tcpdump exited ({status}): {}", capture.stderr());
            }
            Ok(capture.stderr().contains("listening on").then_some(()))
        })
        .context("waiting for tcpdump")?;
        Ok(capture)
    }

    /// Starts `probe.py` in the client namespace: a request to `vip`:80
    /// every `interval`, each with `timeout`, until [`Probe::finish`].
    pub fn start_probe(&self, vip: &str, interval: Duration, timeout: Duration) -> Result<Probe> {
        let dir = self.b_scratch.path();
        let script = dir.join("probe.py");
        fs::write(&script, PROBE_PY).with_context(|| format!("writing {}", script.display()))?;
        let n = process::unique_id("probe");
        let stop_file = dir.join(format!("{n}.stop"));
        let ready = dir.join(format!("{n}.ready"));
        let out_path = dir.join(format!("{n}.json"));
        let err_path = dir.join(format!("{n}.err"));
        let mut cmd = ns_command(self.topo.client_ns(), python());
        cmd.arg(&script)
            .args(["--url", &format!("http://{vip}:{VIP_PORT}/")])
            .args(["--interval", &interval.as_secs_f64().to_string()])
            .args(["--timeout", &timeout.as_secs_f64().to_string()])
            .arg("--stop-file")
            .arg(&stop_file)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path)?)
            .stderr(fs::File::create(&err_path)?);
        let child = detach_child(&mut cmd)
            .spawn()
            .context("starting probe.py")?;
        let mut probe = Probe {
            child,
            stop_file,
            out_path,
            err_path,
        };
        process::wait_for(Duration::from_secs(10), || {
            if let Some(status) = probe.child.try_wait()? {
                bail!("probe.py exited ({status}): {}", probe.stderr());
            }
            Ok(ready.exists().then_some(()))
        })
        .context("waiting for probe.py")?;
        Ok(probe)
    }
}

impl Drop for VrrpPair {
    fn drop(&mut self) {
        if let Err(e) = remove_namespace(&self.b_ns) {
            process::warn(format_args!("vrrp pair: {e:#}"));
        }
    }
}

/// Spawns a helper (see [`detach_child`]) with its output in `log` and
/// waits up to 10 s for it to write `ready`; stops it and fails, with its
/// log, if it exits or does not get ready.
fn spawn_ready(cmd: &mut Command, ready: &Path, log: &Path) -> Result<Child> {
    let log_file = fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let mut child = detach_child(cmd).spawn()?;
    let waited = process::wait_for(Duration::from_secs(10), || {
        if let Some(status) = child.try_wait()? {
            bail!(
                "exited ({status}): {}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        Ok(ready.exists().then_some(()))
    });
    if let Err(e) = waited {
        if let Err(stop) = process::terminate(&mut child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping a helper: {stop:#}"));
        }
        return Err(e);
    }
    Ok(child)
}

/// keepalived standing in for appliance B, with the HTTP server that
/// answers for the VIP while it holds it. Dropping it stops both.
pub struct Keepalived {
    daemon: Child,
    http: Child,
    log_path: PathBuf,
    stopped: bool,
}

impl Keepalived {
    /// Everything keepalived logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The state its last `Entering <STATE> STATE` line names.
    pub fn state(&self) -> Option<String> {
        let log = self.log();
        let state = log
            .lines()
            .rev()
            .find_map(|line| line.split("Entering ").nth(1)?.split(" STATE").next())?;
        Some(state.to_owned())
    }

    /// Waits up to `timeout` for keepalived to enter `state`.
    pub fn wait_state(&mut self, state: &str, timeout: Duration) -> Result<()> {
        process::wait_for(timeout, || {
            if let Some(status) = self.daemon.try_wait()? {
                bail!("keepalived exited ({status}):\n{}", self.log());
            }
            Ok((self.state().as_deref() == Some(state)).then_some(()))
        })
        .with_context(|| {
            format!(
                "keepalived did not enter {state} (last: {:?}):\n{}",
                self.state(),
                self.log()
            )
        })
    }

    /// The lines in which keepalived rejected an advertisement
    /// ([`KEEPALIVED_PACKET_ERRORS`]).
    pub fn packet_errors(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| KEEPALIVED_PACKET_ERRORS.iter().any(|e| line.contains(e)))
            .map(str::to_owned)
            .collect()
    }

    /// Stops keepalived (SIGTERM: a MASTER resigns with priority 0 and
    /// removes the VIP) and its HTTP server; fails unless keepalived exits
    /// 0 within 10 s.
    pub fn stop(&mut self) -> Result<()> {
        self.stopped = true;
        process::terminate(&mut self.http, Duration::from_secs(2))?;
        let status = process::terminate(&mut self.daemon, Duration::from_secs(10))?;
        ensure!(
            status.success(),
            "keepalived exited with {status}:\n{}",
            self.log()
        );
        Ok(())
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        for (what, child) in [
            ("keepalived", &mut self.daemon),
            ("its HTTP server", &mut self.http),
        ] {
            if let Err(e) = process::terminate(child, Duration::from_secs(5)) {
                process::warn(format_args!("stopping {what}: {e:#}"));
            }
        }
        if !self.stopped || std::thread::panicking() {
            process::warn(format_args!("--- keepalived log ---\n{}", self.log()));
        }
    }
}

/// A running `tcpdump` of VRRP advertisements; dropping it stops it.
pub struct AdvertCapture {
    child: Child,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl AdvertCapture {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.err_path).unwrap_or_default()
    }

    /// Stops the capture and returns the advertisements it saw.
    pub fn finish(mut self) -> Result<Vec<Advert>> {
        process::send_signal(self.child.id(), libc::SIGINT)?;
        process::wait_timeout(&mut self.child, Duration::from_secs(5))?
            .context("tcpdump did not stop on SIGINT")?;
        let text = fs::read_to_string(&self.out_path)?;
        Ok(text.lines().filter_map(Advert::parse).collect())
    }
}

impl Drop for AdvertCapture {
    fn drop(&mut self) {
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping tcpdump: {e:#}"));
        }
    }
}

/// One VRRP advertisement as tcpdump prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct Advert {
    /// Seconds since the epoch.
    pub time: f64,
    /// The sender's address.
    pub src: String,
    /// Its VRID.
    pub vrid: u8,
    /// Its priority (0: the sender resigns).
    pub priority: u8,
}

impl Advert {
    /// Parses a line such as `1700000000.123456 IP 10.0.1.1 > 224.0.0.18:
    /// VRRPv3, Advertisement, vrid 51, prio 200, intvl 10cs, length 12`.
    pub fn parse(line: &str) -> Option<Advert> {
        let mut words = line.split_whitespace();
        let time = words.next()?.parse().ok()?;
        if words.next()? != "IP" {
            return None;
        }
        let src = words.next()?.to_owned();
        let field = |name: &str| -> Option<u8> {
            let rest = line.split(&format!(" {name} ")).nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        Some(Advert {
            time,
            src,
            vrid: field("vrid")?,
            priority: field("prio")?,
        })
    }
}

/// The longest time two routers advertised `vrid` as MASTER at once: each
/// sender's advertisements (priority 0 left out) are grouped into runs
/// whose gaps are under three intervals (a MASTER sends one every
/// interval, a BACKUP none), and the longest overlap of two senders' runs
/// is returned.
pub fn longest_dual_master(adverts: &[Advert], vrid: u8, adver_int_cs: u16) -> Duration {
    let max_gap = 3.0 * f64::from(adver_int_cs) / 100.0;
    let mut runs: Vec<(&str, f64, f64)> = Vec::new();
    for advert in adverts.iter().filter(|a| a.vrid == vrid && a.priority > 0) {
        let open = runs
            .iter_mut()
            .rev()
            .find(|(src, _, _)| *src == advert.src)
            .filter(|(_, _, end)| advert.time - *end < max_gap);
        match open {
            Some(run) => run.2 = advert.time,
            None => runs.push((&advert.src, advert.time, advert.time)),
        }
    }
    let mut longest = 0.0f64;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if a.0 != b.0 {
                longest = longest.max(a.2.min(b.2) - a.1.max(b.1));
            }
        }
    }
    Duration::from_secs_f64(longest.max(0.0))
}

/// SIGKILLs a daemon (no priority-0 advertisement, no cleanup), reaps it,
/// and removes the DPDK runtime directory it could not remove itself.
pub fn kill_hard(pylon: &mut PylonProcess) -> Result<()> {
    process::send_signal(pylon.pid(), libc::SIGKILL)?;
    let status = pylon.stop()?;
    ensure!(
        !status.success(),
        "pylon exited 0 although it was SIGKILLed"
    );
    let runtime = pylon.runtime_dir();
    if runtime.exists() {
        fs::remove_dir_all(&runtime).with_context(|| format!("removing {}", runtime.display()))?;
    }
    Ok(())
}

/// The VRRP entry of a stats dump for [`VRID`].
#[derive(Debug, Clone, Deserialize)]
pub struct VrrpStatus {
    /// `MASTER`, `BACKUP`, `FAULT` or `INIT`.
    pub state: String,
    /// Why it entered that state.
    pub reason: Option<String>,
    /// The current master's address, as this appliance knows it.
    pub master: Option<String>,
    /// The priority in effect.
    pub priority: u8,
}

/// The status of [`VRID`] in a stats dump.
pub fn vrrp_status(stats: &Value) -> Result<VrrpStatus> {
    vrid_status(stats, VRID)
}

/// The status of `vrid` in a stats dump.
pub fn vrid_status(stats: &Value, vrid: u8) -> Result<VrrpStatus> {
    let entry = stats["vrrp"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["vrid"] == vrid)
        .with_context(|| format!("the stats have no VRID {vrid}: {}", stats["vrrp"]))?;
    serde_json::from_value(entry.clone()).with_context(|| format!("VRRP entry {entry}"))
}

/// Whether a stats dump shows [`VRID`] in `state`.
pub fn in_state(stats: &Value, state: &str) -> bool {
    vrrp_status(stats).is_ok_and(|s| s.state == state)
}

/// CLOCK_MONOTONIC in seconds: the clock `probe.py` stamps its requests
/// with (Python's `time.monotonic()`), so events here and requests there
/// are on one time line.
pub fn monotonic_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given and nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A running `probe.py`; dropping it stops it.
pub struct Probe {
    child: Child,
    stop_file: PathBuf,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Probe {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.err_path).unwrap_or_default()
    }

    /// Stops the prober, waits for the requests in flight and returns every
    /// attempt.
    pub fn finish(mut self) -> Result<ProbeRun> {
        fs::write(&self.stop_file, "stop\n")?;
        let status = process::wait_timeout(&mut self.child, Duration::from_secs(10))?
            .context("probe.py did not stop within 10 s")?;
        ensure!(
            status.success(),
            "probe.py failed ({status}): {}",
            self.stderr()
        );
        let text = fs::read(&self.out_path)?;
        serde_json::from_slice(&text).with_context(|| {
            format!(
                "probe.py printed no JSON: {}{}",
                String::from_utf8_lossy(&text),
                self.stderr()
            )
        })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping probe.py: {e:#}"));
        }
    }
}

/// One request of a probe run.
#[derive(Debug, Clone, Deserialize)]
pub struct Attempt {
    /// When it started (monotonic seconds).
    pub start: f64,
    /// When it ended: answered, failed or timed out.
    pub end: f64,
    /// Answered with status 200.
    pub ok: bool,
    /// The answering real server, or the error.
    pub what: String,
}

/// Every request of a probe run, by start time.
#[derive(Debug, Clone, Deserialize)]
pub struct ProbeRun {
    /// The requests.
    pub attempts: Vec<Attempt>,
}

impl ProbeRun {
    fn answer_times(&self) -> Vec<f64> {
        let mut ends: Vec<f64> = self
            .attempts
            .iter()
            .filter(|a| a.ok)
            .map(|a| a.end)
            .collect();
        ends.sort_by(f64::total_cmp);
        ends
    }

    /// The time without answers that `event` (monotonic seconds) caused:
    /// the longest gap between consecutive answers from the last answer
    /// before it until `until` (the next event, or infinity). Not merely
    /// the gap to the first answer after it: a request sent just before
    /// the event may still be answered just after it, and the outage
    /// follows. Fails when there is no answer before the event or none
    /// between it and `until`.
    pub fn gap_across(&self, event: f64, until: f64) -> Result<Duration> {
        let ends = self.answer_times();
        let before = ends.iter().any(|&t| t <= event);
        let after = ends.iter().any(|&t| t > event && t <= until);
        ensure!(
            before && after,
            "no answer {} the event at {event:.3}:\n{}",
            if before { "after" } else { "before" },
            self.report(event)
        );
        Ok(self.longest_gap(event, until))
    }

    /// The longest time without answers from the last answer before `from`
    /// on.
    pub fn longest_gap_after(&self, from: f64) -> Duration {
        self.longest_gap(from, f64::INFINITY)
    }

    /// The longest gap between consecutive answers from the last answer
    /// before `from` to the last one before `until`.
    fn longest_gap(&self, from: f64, until: f64) -> Duration {
        let ends = self.answer_times();
        let start = ends.partition_point(|&t| t <= from).saturating_sub(1);
        let end = ends.partition_point(|&t| t <= until);
        ends[start..end.max(start)]
            .windows(2)
            .map(|w| Duration::from_secs_f64(w[1] - w[0]))
            .max()
            .unwrap_or_default()
    }

    /// (answered, failed) among the requests started in `from..to`.
    pub fn count_between(&self, from: f64, to: f64) -> (usize, usize) {
        let window = self
            .attempts
            .iter()
            .filter(|a| a.start >= from && a.start < to);
        let (ok, failed): (Vec<&Attempt>, Vec<&Attempt>) = window.partition(|a| a.ok);
        (ok.len(), failed.len())
    }

    /// Who answered the requests started in `from..to` (real server names,
    /// [`KEEPALIVED_HTTP_NAME`]).
    pub fn servers_between(&self, from: f64, to: f64) -> BTreeSet<String> {
        self.attempts
            .iter()
            .filter(|a| a.ok && a.start >= from && a.start < to)
            .map(|a| a.what.clone())
            .collect()
    }

    /// A summary around `event`: totals, and the requests that failed, with
    /// times relative to it.
    pub fn report(&self, event: f64) -> String {
        let failed: Vec<String> = self
            .attempts
            .iter()
            .filter(|a| !a.ok)
            .take(20)
            .map(|a| {
                format!(
                    "  {:+.3}..{:+.3} s: {}",
                    a.start - event,
                    a.end - event,
                    a.what
                )
            })
            .collect();
        format!(
            "{} requests, {} answered; failures (first 20, relative to the event):\n{}",
            self.attempts.len(),
            self.attempts.iter().filter(|a| a.ok).count(),
            failed.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(attempts: &[(f64, f64, bool)]) -> ProbeRun {
        ProbeRun {
            attempts: attempts
                .iter()
                .map(|&(start, end, ok)| Attempt {
                    start,
                    end,
                    ok,
                    what: if ok { "rs1" } else { "timeout" }.to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn rfc_intervals_for_the_pair() {
        // Priority 100 at 10 cs: 300 ms + 156 * 100 / 256 ms.
        assert!((master_down_interval_ms(100, 10) - 360.9375).abs() < 1e-9);
        assert!((skew_time_ms(200, 10) - 21.875).abs() < 1e-9);
    }

    #[test]
    fn gaps_are_measured_between_answers() {
        let probe = run(&[
            (0.00, 0.01, true),
            (0.02, 0.03, true),
            (0.04, 0.34, false),
            (0.06, 0.36, false),
            (0.08, 0.45, true),
            (0.10, 0.11, true),
        ]);
        // Answers end at 0.01, 0.03, 0.11, 0.45: the one at 0.11 (sent just
        // before the event) does not hide the outage after it.
        let gap = probe.gap_across(0.05, f64::INFINITY).unwrap();
        assert!((gap.as_secs_f64() - 0.34).abs() < 1e-9, "{gap:?}");
        let gap = probe.gap_across(0.05, 0.2).unwrap();
        assert!((gap.as_secs_f64() - 0.08).abs() < 1e-9, "{gap:?}");
        let longest = probe.longest_gap_after(0.0);
        assert!((longest.as_secs_f64() - 0.34).abs() < 1e-9, "{longest:?}");
        assert_eq!(probe.count_between(0.03, 0.09), (1, 2));
        assert!(probe.gap_across(0.5, f64::INFINITY).is_err());
        assert!(probe.gap_across(0.2, 0.3).is_err());
        assert!(probe.gap_across(0.0, 1.0).is_err());
        assert!(probe.report(0.05).contains("6 requests, 4 answered"));
    }

    fn advert(time: f64, src: &str, priority: u8) -> Advert {
        Advert {
            time,
            src: src.to_owned(),
            vrid: 51,
            priority,
        }
    }

    #[test]
    fn tcpdump_lines_are_parsed() {
        let line = "1700000000.123456 IP 10.0.1.1 > 224.0.0.18: VRRPv3, Advertisement, \
                    vrid 51, prio 200, intvl 10cs, length 12";
        assert_eq!(
            Advert::parse(line),
            Some(advert(1_700_000_000.123_456, "10.0.1.1", 200))
        );
        assert_eq!(Advert::parse("tcpdump: listening on eth0"), None);
    }

    #[test]
    fn dual_mastership_is_the_overlap_of_advert_runs() {
        let mut adverts: Vec<Advert> = (0..10)
            .map(|i| advert(f64::from(i) * 0.1, "a", 200))
            .collect();
        // b masters from 0.95 s on; a's last advert is at 0.9 s.
        adverts.extend((0..5).map(|i| advert(0.95 + f64::from(i) * 0.1, "b", 100)));
        assert_eq!(longest_dual_master(&adverts, 51, 10), Duration::ZERO);
        // a goes on until 1.2 s: 0.25 s with two masters.
        adverts.extend((10..13).map(|i| advert(f64::from(i) * 0.1, "a", 200)));
        adverts.sort_by(|x, y| x.time.total_cmp(&y.time));
        let both = longest_dual_master(&adverts, 51, 10).as_secs_f64();
        assert!((both - 0.25).abs() < 1e-9, "{both}");
        // Priority 0 and other VRIDs do not count; a silence of 0.3 s ends a run.
        let resign = [
            advert(0.0, "a", 200),
            advert(0.5, "b", 100),
            advert(0.6, "a", 0),
        ];
        assert_eq!(longest_dual_master(&resign, 51, 10), Duration::ZERO);
        let split = [
            advert(0.0, "a", 200),
            advert(0.4, "a", 200),
            advert(0.2, "b", 100),
        ];
        assert_eq!(longest_dual_master(&split, 51, 10), Duration::ZERO);
        assert_eq!(longest_dual_master(&adverts, 52, 10), Duration::ZERO);
    }

    #[test]
    fn vrrp_table_is_valid_toml() {
        let text = VrrpOptions {
            priority: 200,
            preempt: false,
        }
        .to_toml();
        let table: toml::Table = text.parse().unwrap();
        let vrrp = &table["vrrp"][0];
        assert_eq!(vrrp["vrid"].as_integer(), Some(51));
        assert_eq!(vrrp["advert_int"].as_float(), Some(0.1));
        assert_eq!(vrrp["preempt"].as_bool(), Some(false));
        assert_eq!(vrrp["vips"][0].as_str(), Some(VIP));
    }

    #[test]
    fn status_is_read_from_the_stats() {
        let stats = serde_json::json!({"vrrp": [{"vrid": 51, "port": "lan", "state": "MASTER",
            "reason": "startup", "since_ms": 5, "priority": 200, "configured_priority": 200,
            "master": "10.0.1.1", "vips": ["10.0.1.100"]}]});
        let status = vrrp_status(&stats).unwrap();
        assert_eq!(status.master.as_deref(), Some("10.0.1.1"));
        assert!(in_state(&stats, "MASTER"));
        assert!(!in_state(&serde_json::json!({"vrrp": []}), "MASTER"));
    }
}
