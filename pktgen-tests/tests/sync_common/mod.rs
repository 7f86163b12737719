//! What the sync end-to-end tests share (`e2e_sync.rs` on the NAT pair,
//! `e2e_sync_dsr.rs` on the DSR pair): the long-lived keep-alive clients
//! (`scripts/keepalive.py`), the failover and fail-back scenario, and
//! reading the `"sync"` stats.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use pktgen_tests::process::{self, detach_child, ns_command, run_checked, unique_id, wait_for};
use pktgen_tests::topology::{python, VIP, VIP_PORT};
use pktgen_tests::PylonProcess;
use serde::Deserialize;
use serde_json::Value;

const KEEPALIVE_PY: &str = include_str!("../../scripts/keepalive.py");

/// The sync interface in both lb namespaces.
pub const SYNC_IF: &str = "sync0";
/// The sync port on both appliances.
pub const SYNC_PORT: u16 = 8848;
/// The shared key (HMAC-SHA256), hex.
pub const KEY: &str = "5e1f00d5c0ffee0123456789abcdef00112233445566778899aabbccddeeff00";
/// Long-lived connections through the VIP.
pub const CONNECTIONS: usize = 120;

/// What the failover scenario needs of a two-appliance network.
pub trait Pair {
    /// "DSR" or "NAT", for the report.
    fn mode(&self) -> &'static str;
    /// Starts appliance A (`a = true`) or B at `priority`, with `[sync]`.
    fn start(&self, a: bool, priority: u8) -> Result<PylonProcess>;
    fn client_ns(&self) -> &str;
    fn dir(&self) -> PathBuf;

    fn script(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.dir().join(name);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// CLOCK_MONOTONIC in seconds as Python's `time.monotonic()` reads it: the
/// clock `keepalive.py` stamps its answers with.
pub fn monotonic_s() -> Result<f64> {
    let out = run_checked(
        std::process::Command::new(python()).args(["-c", "import time; print(time.monotonic())"]),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("time.monotonic() printed {text:?}"))
}

/// SIGKILLs a daemon (no priority-0 advertisement, no cleanup), reaps it
/// and removes the DPDK runtime directory it left.
pub fn kill_hard(pylon: &mut PylonProcess) -> Result<()> {
    process::send_signal(pylon.pid(), libc::SIGKILL)?;
    let status = pylon.stop()?;
    ensure!(!status.success(), "pylon exited 0 although SIGKILLed");
    let runtime = pylon.runtime_dir();
    if runtime.exists() {
        fs::remove_dir_all(&runtime).with_context(|| format!("removing {}", runtime.display()))?;
    }
    Ok(())
}

pub fn in_state(stats: &Value, state: &str) -> bool {
    stats["vrrp"]
        .as_array()
        .is_some_and(|v| !v.is_empty() && v.iter().all(|i| i["state"] == state))
}

pub fn wait_state(pylon: &mut PylonProcess, state: &str, timeout: Duration) -> Result<Value> {
    let stats = pylon.stats_until(timeout, |s| in_state(s, state))?;
    ensure!(
        in_state(&stats, state),
        "not {state} within {timeout:?}: {}\n--- log ---\n{}",
        stats["vrrp"],
        pylon.log()
    );
    Ok(stats)
}

pub fn sync_counter(stats: &Value, key: &str) -> u64 {
    stats["sync"][key].as_u64().unwrap_or(0)
}

/// A running `keepalive.py`.
pub struct Clients {
    child: Child,
    stop_file: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

#[derive(Debug, Deserialize)]
pub struct ConnRun {
    ok: u64,
    last_ok: Option<f64>,
    error: Option<String>,
    error_at: Option<f64>,
    server: Option<String>,
    max_latency: f64,
}

#[derive(Debug, Deserialize)]
pub struct ClientsRun {
    connections: usize,
    opened: usize,
    requests: u64,
    conns: Vec<ConnRun>,
}

impl Clients {
    pub fn start(sp: &dyn Pair) -> Result<Clients> {
        let script = sp.script("keepalive.py", KEEPALIVE_PY)?;
        let n = unique_id("ka");
        let dir = sp.dir();
        let stop_file = dir.join(format!("{n}.stop"));
        let ready = dir.join(format!("{n}.ready"));
        let out = dir.join(format!("{n}.json"));
        let err = dir.join(format!("{n}.err"));
        let mut cmd = ns_command(sp.client_ns(), python());
        cmd.arg(&script)
            .args(["--host", VIP, "--port", &VIP_PORT.to_string()])
            .args(["--connections", &CONNECTIONS.to_string()])
            .args(["--interval", "0.1", "--timeout", "10"])
            .arg("--stop-file")
            .arg(&stop_file)
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out)?)
            .stderr(fs::File::create(&err)?);
        let child = detach_child(&mut cmd)
            .spawn()
            .context("starting keepalive.py")?;
        let mut clients = Clients {
            child,
            stop_file,
            out,
            err,
        };
        wait_for(Duration::from_secs(30), || {
            if let Some(status) = clients.child.try_wait()? {
                bail!("keepalive.py exited ({status}): {}", clients.stderr());
            }
            Ok(ready.exists().then_some(()))
        })
        .context("waiting for every connection's first answer")?;
        Ok(clients)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn finish(mut self) -> Result<ClientsRun> {
        fs::write(&self.stop_file, "stop\n")?;
        let status = process::wait_timeout(&mut self.child, Duration::from_secs(30))?
            .context("keepalive.py did not stop")?;
        ensure!(
            status.success(),
            "keepalive.py failed ({status}): {}",
            self.stderr()
        );
        let text = fs::read(&self.out)?;
        serde_json::from_slice(&text).with_context(|| {
            format!(
                "keepalive.py printed no JSON: {}{}",
                String::from_utf8_lossy(&text),
                self.stderr()
            )
        })
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping keepalive.py: {e:#}"));
        }
    }
}

/// Connections that never failed and still got answers `settle` seconds
/// after `event`.
pub fn survivors(run: &ClientsRun, event: f64, settle: f64) -> usize {
    run.conns
        .iter()
        .filter(|c| c.error.is_none() && c.last_ok.is_some_and(|t| t > event + settle))
        .count()
}

pub fn failures_between(run: &ClientsRun, from: f64, to: f64) -> Vec<String> {
    run.conns
        .iter()
        .filter(|c| c.error_at.is_some_and(|t| t >= from && t < to))
        .map(|c| {
            format!(
                "{} after {} answers (server {:?})",
                c.error.as_deref().unwrap_or("?"),
                c.ok,
                c.server
            )
        })
        .collect()
}

/// The log without the terminal colour sequences tracing adds.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until `pylon` holds at least `n` live connections.
pub fn wait_conns(pylon: &mut PylonProcess, n: u64, timeout: Duration) -> Result<Value> {
    let stats = pylon.stats_until(timeout, |s| s["conns"]["live"].as_u64() >= Some(n))?;
    ensure!(
        stats["conns"]["live"].as_u64() >= Some(n),
        "fewer than {n} connections: {}\nsync: {}",
        stats["conns"],
        stats["sync"]
    );
    Ok(stats)
}

/// A (200) master, B (100) backup, both preempting; the clients'
/// connections through A; SIGKILL A; B takes over; A restarts, syncs,
/// preempts. Prints the survivors; fails below 99 %.
pub fn failover_and_failback(sp: &dyn Pair) -> Result<()> {
    let mut a = sp.start(true, 200)?;
    wait_state(&mut a, "MASTER", Duration::from_secs(15))?;
    let mut b = sp.start(false, 100)?;
    wait_state(&mut b, "BACKUP", Duration::from_secs(15))?;
    let stats = b.stats_until(Duration::from_secs(10), |s| {
        s["sync"]["startup_pending"] == false
    })?;
    ensure!(
        stats["sync"]["startup_pending"] == false,
        "B never finished its startup sync: {}",
        stats["sync"]
    );

    let clients = Clients::start(sp)?;
    let started = monotonic_s()?;
    eprintln!("{CONNECTIONS} keep-alive connections up through A");
    // Every connection is on B too, installed from A's updates.
    let on_b = wait_conns(&mut b, CONNECTIONS as u64, Duration::from_secs(10))?;
    eprintln!(
        "B holds {} connections (installed {}, servers {:?})",
        on_b["conns"]["live"],
        sync_counter(&on_b, "installed"),
        pktgen_tests::server_conns(&on_b)
    );
    std::thread::sleep(Duration::from_secs(2));

    // Failover: A dies without a word.
    let killed = monotonic_s()?;
    kill_hard(&mut a)?;
    let t = Instant::now();
    wait_state(&mut b, "MASTER", Duration::from_secs(10))?;
    eprintln!("B is MASTER {:?} after A was killed", t.elapsed());
    std::thread::sleep(Duration::from_secs(4));

    // Fail-back: A returns, must take B's table before it preempts.
    let restarted = monotonic_s()?;
    let mut a = sp.start(true, 200)?;
    let stats = wait_state(&mut a, "MASTER", Duration::from_secs(30))?;
    let back = monotonic_s()?;
    eprintln!(
        "A is MASTER again {:.2} s after its restart; sync: {}",
        back - restarted,
        stats["sync"]
    );
    ensure!(
        sync_counter(&stats, "transfers_completed") >= 1
            && sync_counter(&stats, "installed") >= CONNECTIONS as u64,
        "A took over without B's table: {}",
        stats["sync"]
    );
    let log = strip_ansi(&a.log());
    let table_at = log
        .find("sync: full table received")
        .context("A never logged the full table")?;
    let master_at = log
        .find("to=MASTER")
        .context("A never logged becoming MASTER")?;
    ensure!(
        table_at < master_at,
        "A became MASTER before it had B's table:\n{log}"
    );
    wait_state(&mut b, "BACKUP", Duration::from_secs(10))?;
    std::thread::sleep(Duration::from_secs(4));

    let run = clients.finish()?;
    let ended = monotonic_s()?;
    ensure!(
        run.connections == CONNECTIONS && run.opened == CONNECTIONS,
        "{} of {} connections opened",
        run.opened,
        run.connections
    );
    let after_failover = CONNECTIONS
        - failures_between(&run, killed, restarted).len()
        - failures_between(&run, started - 60.0, killed).len();
    let survived = survivors(&run, back, 2.0);
    let worst = run.conns.iter().map(|c| c.max_latency).fold(0.0, f64::max);
    println!(
        "sync failover ({}): {after_failover}/{CONNECTIONS} connections carried on through the \
         SIGKILL of the master; {survived}/{CONNECTIONS} through the fail-back as well \
         ({} requests in {:.1} s, slowest answer {:.2} s)",
        sp.mode(),
        run.requests,
        ended - started,
        worst
    );
    for f in failures_between(&run, started - 60.0, ended + 1.0) {
        println!("  failed: {f}");
    }
    let needed = (CONNECTIONS * 99).div_ceil(100);
    ensure!(
        after_failover >= needed && survived >= needed,
        "fewer than 99 % of the connections survived: {after_failover} after the failover, \
         {survived} after the fail-back (need {needed})"
    );
    ensure!(
        sync_counter(&stats, "installed") >= CONNECTIONS as u64,
        "A's installed count: {}",
        stats["sync"]
    );
    // The clients closed their connections through A: the state changes
    // reach B, whose copies leave ActiveConn.
    let closed = b.stats_until(Duration::from_secs(10), |s| active_conns(s) == 0)?;
    ensure!(
        active_conns(&closed) == 0,
        "B still counts active connections after the clients closed: {:?}\nsync: {}",
        pktgen_tests::server_conns(&closed),
        closed["sync"]
    );
    println!(
        "B after the clients closed (ActiveConn, InActConn): {:?}",
        pktgen_tests::server_conns(&closed)
    );
    // Nothing was forged, replayed or mangled in this run.
    let a_end = a.stats()?;
    for (who, s) in [("A", &a_end), ("B", &closed)] {
        for reason in [
            "bad_mac",
            "replay",
            "out_of_order",
            "truncated",
            "malformed",
        ] {
            let n = s["sync"]["drops"][reason].as_u64();
            ensure!(
                n == Some(0),
                "{who} dropped {n:?} as {reason}: {}",
                s["sync"]
            );
        }
    }
    a.stop_cleanly()?;
    b.stop_cleanly()?;
    Ok(())
}

/// ActiveConn summed over the real servers of a stats dump.
fn active_conns(stats: &Value) -> u64 {
    pktgen_tests::server_conns(stats)
        .values()
        .map(|(active, _)| active)
        .sum()
}
