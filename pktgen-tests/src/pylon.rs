//! Driving the `pylon` daemon: its configuration for a test topology, the
//! running process (stats on SIGUSR1, clean stop on SIGTERM) and the
//! reading of its stats JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use crate::process::{self, detach_child, ns_command};
use crate::topology::{VIP, VIP_PORT};

/// How long pylon may take from start to its first stats file.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long pylon may take to rewrite its stats file after SIGUSR1.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long pylon may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Drop reasons that normal traffic on a test network produces and that do
/// not mean a packet of a client's connection was lost.
pub const HARMLESS_DROPS: [&str; 3] = ["not_ipv4", "other_host", "not_for_service"];

/// The DPDK `--file-prefix` used for a test id.
pub fn file_prefix_for(id: &str) -> String {
    format!("pylon-e2e-{id}")
}

/// Where DPDK keeps the runtime files of a file prefix.
pub fn dpdk_runtime_dir(file_prefix: &str) -> PathBuf {
    Path::new("/var/run/dpdk").join(file_prefix)
}

/// How a service forwards to its real servers (the config's `forwarding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// Destination NAT; the replies come back through pylon.
    Nat,
    /// L2 direct routing: only the destination MAC changes; the real
    /// servers hold the VIP and answer the client directly.
    Dsr,
    /// IP-in-IP to the real servers, which answer the client directly.
    Tunnel,
}

impl Forwarding {
    /// The config value: `nat`, `dsr` or `tunnel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Nat => "nat",
            Forwarding::Dsr => "dsr",
            Forwarding::Tunnel => "tunnel",
        }
    }
}

impl std::str::FromStr for Forwarding {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Forwarding> {
        match s {
            "nat" => Ok(Forwarding::Nat),
            "dsr" => Ok(Forwarding::Dsr),
            "tunnel" => Ok(Forwarding::Tunnel),
            _ => bail!("unknown forwarding mode {s:?}: expected nat, dsr or tunnel"),
        }
    }
}

impl std::fmt::Display for Forwarding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One pylon port of a generated configuration.
#[derive(Debug, Clone, Copy)]
pub struct PortSpec {
    /// `ports[].name`.
    pub name: &'static str,
    /// The interface of the lb namespace its `net_af_packet` device uses.
    pub iface: &'static str,
    /// `ports[].address`, with the prefix length.
    pub address: &'static str,
}

/// What a generated configuration serves: pylon's ports and the one
/// service `web` on VIP:80 over three real servers.
#[derive(Debug, Clone, Copy)]
pub struct Network {
    /// Pylon's ports, in order.
    pub ports: &'static [PortSpec],
    /// The service's forwarding method.
    pub forwarding: Forwarding,
    /// The real servers' addresses (rs1, rs2, rs3).
    pub servers: [&'static str; 3],
    /// The port the real servers listen on.
    pub server_port: u16,
}

/// The `[services.health]` table of a generated configuration: every real
/// server gets this check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthOptions {
    /// `icmp`, `tcp`, `http` or `exec`.
    pub kind: String,
    /// Seconds between the starts of two checks of a server.
    pub interval: f64,
    /// Seconds a check may take.
    pub timeout: f64,
    /// Successes in a row that bring a down server up.
    pub rise: u32,
    /// Failures in a row that bring an up server down.
    pub fall: u32,
}

impl HealthOptions {
    /// A check of `kind` with these timings.
    pub fn new(kind: &str, interval: f64, timeout: f64, rise: u32, fall: u32) -> HealthOptions {
        HealthOptions {
            kind: kind.to_owned(),
            interval,
            timeout,
            rise,
            fall,
        }
    }

    /// The latest a failure is noticed: the first failing check starts at
    /// most one interval after the failure, the `fall`-th one `fall - 1`
    /// intervals later, and it ends at most `timeout` after its start.
    pub fn detection_bound(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.fall) * self.interval + self.timeout)
    }

    /// The latest a recovery is noticed, as the issue states it: `rise`
    /// intervals (the `rise`-th successful check starts by then; a
    /// successful check itself takes a round trip).
    pub fn recovery_bound(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.rise) * self.interval)
    }
}

/// What to put in a generated pylon configuration.
#[derive(Debug, Clone)]
pub struct PylonOptions {
    /// Worker lcores (1 or more). They share core 1 with each other; the
    /// main lcore is on core 0.
    pub workers: usize,
    /// `rr`, `wrr`, `lc` or `wlc`.
    pub scheduler: String,
    /// The weights of rs1, rs2, rs3.
    pub weights: [u32; 3],
    /// Connection table capacity.
    pub conn_capacity: u32,
    /// pylon's log level.
    pub log: String,
    /// The service's `[services.health]` table, if its servers are checked.
    pub health: Option<HealthOptions>,
    /// `control.health_source`.
    pub health_source: Option<String>,
    /// `control.health_interface`.
    pub health_interface: Option<String>,
    /// The service's `[services.sorry]` server, address and port.
    pub sorry: Option<(String, u16)>,
}

impl Default for PylonOptions {
    fn default() -> Self {
        PylonOptions {
            workers: 1,
            scheduler: "wlc".to_owned(),
            weights: [1, 2, 3],
            conn_capacity: 65536,
            log: "info".to_owned(),
            health: None,
            health_source: None,
            health_interface: None,
            sorry: None,
        }
    }
}

impl PylonOptions {
    /// Default options with this many workers and this scheduler.
    pub fn new(workers: usize, scheduler: &str) -> PylonOptions {
        PylonOptions {
            workers,
            scheduler: scheduler.to_owned(),
            ..PylonOptions::default()
        }
    }

    /// The `lcores` EAL mapping: lcore 0 on core 0, every worker on core 1
    /// (or 0 on a one-core machine), e.g. `0@0,1@1,2@1`.
    pub fn lcores(&self) -> String {
        let worker_core =
            usize::from(std::thread::available_parallelism().map_or(1, |n| n.get()) > 1);
        let mut map = "0@0".to_owned();
        for worker in 1..=self.workers {
            let _ = write!(map, ",{worker}@{worker_core}");
        }
        map
    }

    /// The configuration as TOML for `network`: its ports (af_packet on
    /// lb-namespace interfaces) and one service `web` on VIP:80, forwarding
    /// to rs1..rs3 with this scheduler and these weights.
    pub fn to_toml(&self, file_prefix: &str, stats_file: &Path, network: &Network) -> String {
        let workers: Vec<String> = (1..=self.workers).map(|w| w.to_string()).collect();
        let mut text = format!(
            "[eal]\n\
             file_prefix = {}\n\
             main_lcore = 0\n\
             lcores = {}\n\
             no_huge = true\n\
             memory_mb = 256\n\
             \n\
             [dataplane]\n\
             workers = [{}]\n\
             idle_polls = 64\n\
             idle_sleep_us = 100\n\
             conn_capacity = {}\n\
             \n\
             [control]\n\
             stats_file = {}\n\
             socket = {}\n\
             log = {}\n",
            toml_str(file_prefix),
            toml_str(&self.lcores()),
            workers.join(", "),
            self.conn_capacity,
            toml_str(&stats_file.to_string_lossy()),
            // Next to the stats file: every pylon of a test has its own.
            toml_str(&stats_file.with_extension("sock").to_string_lossy()),
            toml_str(&self.log),
        );
        if let Some(source) = &self.health_source {
            let _ = writeln!(text, "health_source = {}", toml_str(source));
        }
        if let Some(interface) = &self.health_interface {
            let _ = writeln!(text, "health_interface = {}", toml_str(interface));
        }
        for (index, port) in network.ports.iter().enumerate() {
            let _ = write!(
                text,
                "\n[[ports]]\nname = \"{}\"\ndevice = \"net_af_packet{index},iface={}\"\naddress = \"{}\"\n",
                port.name, port.iface, port.address
            );
        }
        let _ = write!(
            text,
            "\n[[services]]\n\
             name = \"web\"\n\
             vip = \"{VIP}\"\n\
             port = {VIP_PORT}\n\
             protocol = \"tcp\"\n\
             scheduler = {}\n\
             forwarding = \"{}\"\n",
            toml_str(&self.scheduler),
            network.forwarding,
        );
        if let Some(health) = &self.health {
            let _ = write!(
                text,
                "\n[services.health]\n\
                 kind = {}\n\
                 interval = {}\n\
                 timeout = {}\n\
                 rise = {}\n\
                 fall = {}\n",
                toml_str(&health.kind),
                toml::Value::Float(health.interval),
                toml::Value::Float(health.timeout),
                health.rise,
                health.fall,
            );
        }
        if let Some((address, port)) = &self.sorry {
            let _ = write!(
                text,
                "\n[services.sorry]\naddress = {}\nport = {port}\n",
                toml_str(address)
            );
        }
        for (addr, weight) in network.servers.iter().zip(self.weights) {
            let _ = write!(
                text,
                "\n[[services.servers]]\naddress = \"{addr}\"\nport = {}\nweight = {weight}\n",
                network.server_port
            );
        }
        text
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The file prefix and stats file a configuration names.
fn config_paths(config_text: &str) -> Result<(String, PathBuf)> {
    let config: toml::Value = config_text
        .parse()
        .context("the pylon config is not valid TOML")?;
    let prefix = config
        .get("eal")
        .and_then(|eal| eal.get("file_prefix"))
        .and_then(toml::Value::as_str)
        .context("the pylon config has no eal.file_prefix")?;
    let stats = config
        .get("control")
        .and_then(|control| control.get("stats_file"))
        .and_then(toml::Value::as_str)
        .context("the pylon config has no control.stats_file")?;
    Ok((prefix.to_owned(), PathBuf::from(stats)))
}

static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

/// A running `pylon`. Dropping it stops it (SIGTERM, then SIGKILL) and, when
/// it was not stopped before or the thread is panicking, prints the end of
/// its log to stderr.
pub struct PylonProcess {
    child: Child,
    exit: Option<ExitStatus>,
    config_path: PathBuf,
    log_path: PathBuf,
    stats_path: PathBuf,
    file_prefix: String,
}

impl PylonProcess {
    /// Writes `config_text` into `dir`, starts `pylon --config FILE` (inside
    /// network namespace `ns` when given) with its output in a log file in
    /// `dir`, and waits up to [`START_TIMEOUT`] for the stats file the
    /// configuration names.
    pub fn start(ns: Option<&str>, dir: &Path, config_text: &str) -> Result<PylonProcess> {
        PylonProcess::start_binary(&process::pylon_binary()?, ns, dir, config_text)
    }

    /// [`PylonProcess::start`] with another binary that keeps the same
    /// contract (the harness tests itself with a stand-in).
    pub fn start_binary(
        binary: &Path,
        ns: Option<&str>,
        dir: &Path,
        config_text: &str,
    ) -> Result<PylonProcess> {
        let (file_prefix, stats_path) = config_paths(config_text)?;
        let run = NEXT_RUN.fetch_add(1, Ordering::Relaxed);
        let config_path = dir.join(format!("pylon-{run}.toml"));
        let log_path = dir.join(format!("pylon-{run}.log"));
        fs::write(&config_path, config_text)
            .with_context(|| format!("writing {}", config_path.display()))?;
        if stats_path.exists() {
            fs::remove_file(&stats_path)
                .with_context(|| format!("removing the old {}", stats_path.display()))?;
        }
        let log = fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut cmd = match ns {
            Some(ns) => ns_command(ns, binary),
            None => Command::new(binary),
        };
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = detach_child(&mut cmd)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut pylon = PylonProcess {
            child,
            exit: None,
            config_path,
            log_path,
            stats_path,
            file_prefix,
        };
        let started = Instant::now();
        process::wait_for(START_TIMEOUT, || {
            pylon.check_running()?;
            Ok(pylon.read_stats().ok())
        })
        .map_err(|e| {
            anyhow!(
                "pylon did not write {} within {START_TIMEOUT:?}: {e:#}\n--- pylon log ---\n{}",
                pylon.stats_path.display(),
                pylon.log()
            )
        })?;
        eprintln!(
            "pylon (pid {}) up after {:?}",
            pylon.pid(),
            started.elapsed()
        );
        Ok(pylon)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/var/run/dpdk/<file prefix>`, which must be gone after a clean exit.
    pub fn runtime_dir(&self) -> PathBuf {
        dpdk_runtime_dir(&self.file_prefix)
    }

    /// Everything it logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.exit {
            bail!("pylon already exited ({status})");
        }
        if let Some(status) = self.child.try_wait()? {
            self.exit = Some(status);
            bail!(
                "pylon --config {} exited ({status})\n--- pylon log ---\n{}",
                self.config_path.display(),
                self.log()
            );
        }
        Ok(())
    }

    fn read_stats(&self) -> Result<Value> {
        let text = fs::read(&self.stats_path)?;
        serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", self.stats_path.display()))
    }

    /// Fresh stats: sends SIGUSR1 and waits (up to [`STATS_TIMEOUT`]) until
    /// the stats file has been replaced.
    pub fn stats(&mut self) -> Result<Value> {
        self.check_running()?;
        let identity = |path: &Path| {
            fs::metadata(path)
                .ok()
                .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()))
        };
        let before = identity(&self.stats_path);
        let before_text = fs::read(&self.stats_path).ok();
        process::send_signal(self.pid(), libc::SIGUSR1)?;
        process::wait_for(STATS_TIMEOUT, || {
            self.check_running()?;
            if identity(&self.stats_path) == before
                && fs::read(&self.stats_path).ok() == before_text
            {
                return Ok(None);
            }
            Ok(self.read_stats().ok())
        })
        .with_context(|| {
            format!(
                "pylon did not rewrite {} after SIGUSR1",
                self.stats_path.display()
            )
        })
    }

    /// Polls [`PylonProcess::stats`] until `done` holds, for up to `timeout`;
    /// returns the last stats either way (the caller asserts on them, with
    /// the numbers in its message).
    pub fn stats_until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats()?;
            if done(&stats) || Instant::now() >= deadline {
                return Ok(stats);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops it: SIGTERM, up to [`STOP_TIMEOUT`] to exit, then SIGKILL.
    /// Returns how it exited (the first time; later calls repeat it).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.exit {
            return Ok(status);
        }
        if let Some(status) = self.child.try_wait()? {
            self.exit = Some(status);
            return Ok(status);
        }
        process::send_signal(self.pid(), libc::SIGTERM)?;
        let status = match process::wait_timeout(&mut self.child, STOP_TIMEOUT)? {
            Some(status) => status,
            None => {
                process::warn(format_args!(
                    "pylon ignored SIGTERM for {STOP_TIMEOUT:?}: SIGKILL"
                ));
                self.child.kill()?;
                self.child.wait()?
            }
        };
        self.exit = Some(status);
        Ok(status)
    }

    /// Stops it and fails unless it exited 0 and removed its DPDK runtime
    /// directory.
    pub fn stop_cleanly(&mut self) -> Result<()> {
        let status = self.stop()?;
        ensure!(
            status.success(),
            "pylon exited with {status} after SIGTERM\n--- pylon log ---\n{}",
            self.log()
        );
        let runtime = self.runtime_dir();
        ensure!(
            !runtime.exists(),
            "pylon exited but left {} behind",
            runtime.display()
        );
        Ok(())
    }
}

impl Drop for PylonProcess {
    fn drop(&mut self) {
        let killed = self.exit.is_none();
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(5)) {
            process::warn(format_args!("stopping pylon: {e:#}"));
        }
        // Still running at drop: the caller bailed out before stopping it,
        // most likely a failed test, which wants to see what pylon said.
        if killed || std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            process::warn(format_args!(
                "--- pylon log (last {} lines) ---",
                tail.len()
            ));
            for line in tail.iter().rev() {
                process::warn(format_args!("{line}"));
            }
        }
        let runtime = self.runtime_dir();
        if killed && runtime.exists() {
            if let Err(e) = fs::remove_dir_all(&runtime) {
                process::warn(format_args!("removing {}: {e}", runtime.display()));
            }
        }
    }
}

/// How a pylon run that was expected to exit by itself ended.
#[derive(Debug)]
pub struct PylonExit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs `pylon --config CONFIG ARGS` in the current namespace and waits up
/// to `timeout` for it to exit by itself (a configuration it must reject, or
/// `--check`); kills it and fails if it is still running then. Its stderr
/// goes to `stderr_path`.
pub fn run_to_exit(
    config: &Path,
    args: &[&str],
    stderr_path: &Path,
    timeout: Duration,
) -> Result<PylonExit> {
    let binary = process::pylon_binary()?;
    let stderr_file = fs::File::create(stderr_path)
        .with_context(|| format!("creating {}", stderr_path.display()))?;
    let started = Instant::now();
    let mut child = detach_child(
        Command::new(&binary)
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_file),
    )
    .spawn()
    .with_context(|| format!("starting {}", binary.display()))?;
    let status = process::wait_timeout(&mut child, timeout)?;
    let elapsed = started.elapsed();
    let Some(status) = status else {
        process::terminate(&mut child, Duration::from_secs(5))?;
        bail!(
            "pylon --config {} still ran after {timeout:?}; stderr:\n{}",
            config.display(),
            fs::read_to_string(stderr_path).unwrap_or_default()
        );
    };
    let stderr = fs::read_to_string(stderr_path)
        .with_context(|| format!("reading {}", stderr_path.display()))?;
    Ok(PylonExit {
        status,
        stderr,
        elapsed,
    })
}

/// Numeric field of a JSON object, 0 when missing.
fn number(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// The drop counters summed over every entry of `workers` (the control
/// lcore may be one of them).
pub fn drops(stats: &Value) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for worker in stats["workers"].as_array().into_iter().flatten() {
        for (reason, count) in worker["drops"].as_object().into_iter().flatten() {
            *total.entry(reason.clone()).or_insert(0) += count.as_u64().unwrap_or(0);
        }
    }
    total
}

/// The non-zero drop counters other than [`HARMLESS_DROPS`].
pub fn harmful_drops(stats: &Value) -> BTreeMap<String, u64> {
    drops(stats)
        .into_iter()
        .filter(|(reason, count)| *count > 0 && !HARMLESS_DROPS.contains(&reason.as_str()))
        .collect()
}

/// A per-worker counter (`rx_packets`, `tx_packets`, `to_control`) summed
/// over workers.
pub fn worker_total(stats: &Value, key: &str) -> u64 {
    stats["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|worker| number(worker, key))
        .sum()
}

/// A per-worker counter summed over every entry of `workers`, failing when
/// there are no entries or one lacks the counter: a daemon that does not
/// count something must not pass for one that counted zero.
pub fn worker_counter(stats: &Value, key: &str) -> Result<u64> {
    let workers = stats["workers"]
        .as_array()
        .filter(|workers| !workers.is_empty())
        .context("the stats have no workers")?;
    workers.iter().try_fold(0, |sum, worker| {
        let n = worker[key].as_u64().with_context(|| {
            format!(
                "worker {} has no counter {key:?}: {worker}",
                worker["lcore"]
            )
        })?;
        Ok(sum + n)
    })
}

/// A drop reason summed over every entry of `workers`, failing (as
/// [`worker_counter`] does) when an entry does not list it.
pub fn drop_counter(stats: &Value, reason: &str) -> Result<u64> {
    let workers = stats["workers"]
        .as_array()
        .filter(|workers| !workers.is_empty())
        .context("the stats have no workers")?;
    workers.iter().try_fold(0, |sum, worker| {
        let n = worker["drops"][reason].as_u64().with_context(|| {
            format!(
                "worker {} has no drop reason {reason:?}: {}",
                worker["lcore"], worker["drops"]
            )
        })?;
        Ok(sum + n)
    })
}

/// A DPDK counter (`ipackets`, `opackets`, ...) of the port named `port`.
pub fn port_counter(stats: &Value, port: &str, key: &str) -> Result<u64> {
    let entry = stats["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|entry| entry["name"] == port)
        .with_context(|| format!("the stats list no port {port:?}: {}", stats["ports"]))?;
    entry[key]
        .as_u64()
        .with_context(|| format!("port {port:?} has no counter {key:?}: {entry}"))
}

/// The `health` entry (a `ServerHealth`) of the real server at `address`.
pub fn server_health<'a>(stats: &'a Value, address: &str) -> Option<&'a Value> {
    stats["health"]
        .as_array()?
        .iter()
        .find(|entry| entry["key"]["address"] == address)
}

/// The health state (`"up"`, `"down"`) of the real server at `address`.
pub fn health_state<'a>(stats: &'a Value, address: &str) -> Option<&'a str> {
    server_health(stats, address)?["state"].as_str()
}

/// The wall-clock time of a serialized `SystemTime`
/// (`{"secs_since_epoch": s, "nanos_since_epoch": n}`), such as a health
/// entry's `last_change`.
pub fn wall_time(value: &Value) -> Option<SystemTime> {
    let secs = value["secs_since_epoch"].as_u64()?;
    let nanos = u32::try_from(value["nanos_since_epoch"].as_u64()?).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// The effective weight (0 while down) the `servers` entry of the real
/// server at `address` shows.
pub fn server_weight(stats: &Value, address: &str) -> Option<u64> {
    stats["servers"]
        .as_array()?
        .iter()
        .find(|server| server["address"] == address)?["weight"]
        .as_u64()
}

/// The `servers` entries as `address -> (active, inactive)`.
pub fn server_conns(stats: &Value) -> BTreeMap<String, (u64, u64)> {
    stats["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|server| {
            let addr = server["address"].as_str().unwrap_or("?").to_owned();
            (addr, (number(server, "active"), number(server, "inactive")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{lan_network, NAT_NETWORK};
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "uptime_ms": 10,
            "workers": [
                {"lcore": 1, "rx_packets": 10, "tx_packets": 9,
                 "drops": {"not_ipv4": 2, "no_neighbor": 1, "fragment": 0}},
                {"lcore": 2, "rx_packets": 5, "tx_packets": 5,
                 "drops": {"not_ipv4": 1, "fragment": 3}},
                {"lcore": 0, "to_control": 4}
            ],
            "servers": [{"service": "web", "address": "10.0.2.11", "port": 8080,
                         "weight": 1, "active": 1, "inactive": 7}]
        })
    }

    #[test]
    fn drops_are_summed_over_workers() {
        let d = drops(&sample());
        assert_eq!(d["not_ipv4"], 3);
        assert_eq!(d["fragment"], 3);
        assert_eq!(d["no_neighbor"], 1);
    }

    #[test]
    fn harmless_and_zero_drops_are_left_out() {
        let harmful = harmful_drops(&sample());
        assert_eq!(
            harmful.into_iter().collect::<Vec<_>>(),
            vec![("fragment".to_owned(), 3), ("no_neighbor".to_owned(), 1)]
        );
    }

    #[test]
    fn worker_totals_and_server_conns() {
        assert_eq!(worker_total(&sample(), "rx_packets"), 15);
        assert_eq!(worker_total(&sample(), "to_control"), 4);
        assert_eq!(server_conns(&sample())["10.0.2.11"], (1, 7));
    }

    #[test]
    fn generated_config_is_toml_with_the_contract_keys() {
        let text = PylonOptions::new(2, "wrr").to_toml(
            "pylon-e2e-x-1-0",
            Path::new("/tmp/x/stats.json"),
            &NAT_NETWORK,
        );
        let config: toml::Value = text.parse().expect("valid TOML");
        assert_eq!(
            config["eal"]["file_prefix"].as_str(),
            Some("pylon-e2e-x-1-0")
        );
        assert!(config["eal"]["lcores"]
            .as_str()
            .unwrap()
            .starts_with("0@0,1@"));
        assert_eq!(config["dataplane"]["workers"].as_array().unwrap().len(), 2);
        assert_eq!(config["services"][0]["scheduler"].as_str(), Some("wrr"));
        let weights: Vec<i64> = config["services"][0]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["weight"].as_integer().unwrap())
            .collect();
        assert_eq!(weights, vec![1, 2, 3]);
        let (prefix, stats) = config_paths(&text).unwrap();
        assert_eq!(prefix, "pylon-e2e-x-1-0");
        assert_eq!(stats, Path::new("/tmp/x/stats.json"));
    }

    #[test]
    fn strict_counters_fail_when_a_worker_lacks_them() {
        let stats = json!({
            "workers": [
                {"lcore": 1, "forward_packets": 7, "reply_packets": 0,
                 "drops": {"too_big": 2}},
                {"lcore": 0, "forward_packets": 1, "drops": {"too_big": 0}}
            ],
            "ports": [{"name": "lan", "ipackets": 12}]
        });
        assert_eq!(worker_counter(&stats, "forward_packets").unwrap(), 8);
        let err = worker_counter(&stats, "reply_packets").unwrap_err();
        assert!(err.to_string().contains("worker 0"), "{err}");
        assert_eq!(drop_counter(&stats, "too_big").unwrap(), 2);
        assert!(drop_counter(&stats, "no_neighbor").is_err());
        assert!(worker_counter(&json!({"workers": []}), "rx_packets").is_err());
        assert_eq!(port_counter(&stats, "lan", "ipackets").unwrap(), 12);
        assert!(port_counter(&stats, "lan", "opackets").is_err());
        assert!(port_counter(&stats, "client", "ipackets").is_err());
    }

    #[test]
    fn health_sorry_and_management_keys_are_generated_when_asked() {
        let plain = PylonOptions::default().to_toml("p", Path::new("/tmp/s.json"), &NAT_NETWORK);
        let plain: toml::Value = plain.parse().expect("valid TOML");
        assert!(plain["control"].get("health_source").is_none());
        assert!(plain["services"][0].get("health").is_none());
        assert!(plain["services"][0].get("sorry").is_none());

        let options = PylonOptions {
            health: Some(HealthOptions::new("http", 0.5, 0.4, 2, 3)),
            health_source: Some("10.0.2.250".to_owned()),
            health_interface: Some("mgmt".to_owned()),
            sorry: Some(("10.0.2.20".to_owned(), 8080)),
            ..PylonOptions::default()
        };
        let text = options.to_toml("p", Path::new("/tmp/s.json"), &NAT_NETWORK);
        let config: toml::Value = text.parse().expect("valid TOML");
        assert_eq!(
            config["control"]["health_source"].as_str(),
            Some("10.0.2.250")
        );
        assert_eq!(config["control"]["health_interface"].as_str(), Some("mgmt"));
        let service = &config["services"][0];
        let health = &service["health"];
        assert_eq!(health["kind"].as_str(), Some("http"));
        assert_eq!(health["interval"].as_float(), Some(0.5));
        assert_eq!(health["timeout"].as_float(), Some(0.4));
        assert_eq!(health["rise"].as_integer(), Some(2));
        assert_eq!(health["fall"].as_integer(), Some(3));
        assert_eq!(service["sorry"]["address"].as_str(), Some("10.0.2.20"));
        assert_eq!(service["sorry"]["port"].as_integer(), Some(8080));
        assert_eq!(service["servers"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn health_bounds() {
        let health = HealthOptions::new("tcp", 0.5, 0.4, 2, 3);
        assert_eq!(health.detection_bound(), Duration::from_millis(1900));
        assert_eq!(health.recovery_bound(), Duration::from_millis(1000));
    }

    #[test]
    fn health_entries_and_weights_are_found_by_address() {
        let stats = json!({
            "servers": [
                {"service": "web", "address": "10.0.2.11", "port": 8080, "weight": 0},
                {"service": "web", "address": "10.0.2.12", "port": 8080, "weight": 2}
            ],
            "health": [
                {"key": {"service": "web", "address": "10.0.2.11", "port": 8080},
                 "state": "down",
                 "last_change": {"secs_since_epoch": 1_700_000_000u64, "nanos_since_epoch": 5}}
            ]
        });
        assert_eq!(health_state(&stats, "10.0.2.11"), Some("down"));
        assert_eq!(health_state(&stats, "10.0.2.12"), None);
        assert_eq!(server_weight(&stats, "10.0.2.11"), Some(0));
        assert_eq!(server_weight(&stats, "10.0.2.12"), Some(2));
        assert_eq!(server_weight(&stats, "10.0.2.13"), None);
        let change = server_health(&stats, "10.0.2.11").unwrap();
        assert_eq!(
            wall_time(&change["last_change"]),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        assert_eq!(wall_time(&json!("soon")), None);
    }

    #[test]
    fn forwarding_modes_round_trip() {
        for mode in [Forwarding::Nat, Forwarding::Dsr, Forwarding::Tunnel] {
            assert_eq!(mode.as_str().parse::<Forwarding>().unwrap(), mode);
        }
        assert!("masq".parse::<Forwarding>().is_err());
    }

    #[test]
    fn generated_lan_config_has_one_port_and_the_mode() {
        let lan = lan_network(Forwarding::Tunnel);
        let text = PylonOptions::default().to_toml("p", Path::new("/tmp/s.json"), &lan);
        let config: toml::Value = text.parse().expect("valid TOML");
        let ports = config["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            ports[0]["device"].as_str(),
            Some("net_af_packet0,iface=lblan")
        );
        assert_eq!(ports[0]["address"].as_str(), Some("10.0.1.1/24"));
        let service = &config["services"][0];
        assert_eq!(service["forwarding"].as_str(), Some("tunnel"));
        assert_eq!(service["port"].as_integer(), Some(80));
        for server in service["servers"].as_array().unwrap() {
            assert_eq!(server["port"].as_integer(), Some(80));
        }
    }

    #[test]
    fn lcores_put_workers_after_the_main_lcore() {
        let one = PylonOptions::new(1, "wlc").lcores();
        let two = PylonOptions::new(2, "wlc").lcores();
        assert!(one == "0@0,1@1" || one == "0@0,1@0", "{one}");
        assert!(two == "0@0,1@1,2@1" || two == "0@0,1@0,2@0", "{two}");
    }
}
