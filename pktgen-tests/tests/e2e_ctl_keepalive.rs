//! End to end, live operation with long-lived connections (issue 7):
//! keep-alive HTTP/1.1 connections (`scripts/keepalive.py`, a request on
//! each every 100 ms) through the VIP
//!
//! - carry on across `pylonctl reload` that removes one server, reweights
//!   one, keeps one unchanged and adds a fourth (every connection, also
//!   those on the removed server, which is drained and not cut, keeps
//!   answering, no error, no reset);
//! - `pylonctl drain` on a server they use: the progress lines show its
//!   ActiveConn falling as the clients close, it exits 0 once none is left
//!   and not before, no new connection reaches the server meanwhile;
//!   `--inactive` also waits for the closed connections' TIME_WAIT entries;
//!   a drain whose connections stay open exits 3 after `--timeout`.
//!
//! Needs root, `target/release/pylon` and `target/release/pylonctl`.

use anyhow::{bail, ensure, Context, Result};
use pktgen_tests::process::{self, detach_child, ns_command, unique_id, wait_for};
use pktgen_tests::topology::{python, VIP, VIP_PORT};
use pktgen_tests::{e2e_lock, preflight, pylonctl_binary, vip_url, PylonOptions, Topology};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KEEPALIVE_PY: &str = include_str!("../scripts/keepalive.py");
/// Seconds between two requests on one keep-alive connection.
const INTERVAL: f64 = 0.1;

/// The socket and config file of the topology's one pylon.
fn paths(topo: &Topology) -> Result<(PathBuf, PathBuf)> {
    let config = fs::read_dir(topo.dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("pylon-"))
        })
        .context("no pylon config in the scratch directory")?;
    Ok((topo.dir().join("stats.sock"), config))
}

/// `pylonctl ARGS --socket SOCKET` in the lb namespace, not yet run.
fn ctl_command(topo: &Topology, socket: &Path, args: &[&str]) -> Result<Command> {
    let mut cmd = ns_command(topo.lb_ns(), pylonctl_binary()?);
    cmd.args(args).arg("--socket").arg(socket);
    Ok(cmd)
}

/// Runs pylonctl in the lb namespace; returns its output whatever the exit.
fn ctl(topo: &Topology, socket: &Path, args: &[&str]) -> Result<Output> {
    Ok(ctl_command(topo, socket, args)?
        .stdin(Stdio::null())
        .output()?)
}

fn ok_json(topo: &Topology, socket: &Path, args: &[&str]) -> Result<Value> {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ctl(topo, socket, &a)?;
    ensure!(
        out.status.success(),
        "pylonctl {a:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("pylonctl {a:?}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// A server's entry in `list --json`.
fn server<'a>(list: &'a Value, addr: &str) -> Option<&'a Value> {
    list["services"][0]["servers"]
        .as_array()?
        .iter()
        .find(|s| s["address"] == addr)
}

/// `(active, inactive, weight, conns)` of a server in `list --stats --json`.
fn counts(list: &Value, addr: &str) -> Result<(u64, u64, u64, u64)> {
    let s = server(list, addr).with_context(|| format!("{addr} not listed: {list:#}"))?;
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Ok((
        n(&s["active"]),
        n(&s["inactive"]),
        n(&s["weight"]),
        n(&s["stats"]["conns"]),
    ))
}

/// CLOCK_MONOTONIC in seconds: the clock `keepalive.py` stamps with
/// (`time.monotonic()`).
fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// One connection in `keepalive.py`'s report.
#[derive(Debug, Deserialize)]
struct KaConn {
    ok: u64,
    first_ok: Option<f64>,
    last_ok: Option<f64>,
    error: Option<String>,
    server: Option<String>,
    max_latency: f64,
}

impl KaConn {
    fn reset(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.contains("Reset") || e.contains("Broken"))
    }
}

#[derive(Debug, Deserialize)]
struct KaRun {
    opened: usize,
    conns: Vec<KaConn>,
}

impl KaRun {
    /// Connections per answering server.
    fn by_server(&self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::new();
        for c in &self.conns {
            let name = c.server.clone().unwrap_or_else(|| "-".to_owned());
            *map.entry(name).or_insert(0) += 1;
        }
        map
    }

    fn summary(&self) -> String {
        let mut per: BTreeMap<String, (u64, u64, u64, u64, f64)> = BTreeMap::new();
        for c in &self.conns {
            let e = per
                .entry(c.server.clone().unwrap_or_else(|| "-".to_owned()))
                .or_default();
            e.0 += 1;
            e.1 += c.ok;
            e.2 += u64::from(c.error.is_some());
            e.3 += u64::from(c.reset());
            e.4 = e.4.max(c.max_latency);
        }
        per.iter()
            .map(|(s, (n, ok, failed, reset, lat))| {
                format!(
                    "{s}: {n} conns, {ok} requests ok, {failed} failed, {reset} reset, max latency {:.0} ms",
                    lat * 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Fails unless every connection opened, never failed and was still
    /// answered after `until` - 0.5 s (it ran to its end), with about one
    /// answer per interval between its first and last answer.
    fn check_all_carried_on(&self, until: f64) -> Result<()> {
        ensure!(
            self.opened == self.conns.len(),
            "{} of {} connections opened: {}",
            self.opened,
            self.conns.len(),
            self.summary()
        );
        for (i, c) in self.conns.iter().enumerate() {
            ensure!(
                c.error.is_none(),
                "connection {i} to {:?} failed after {} answers (reset: {}): {:?}; {}",
                c.server,
                c.ok,
                c.reset(),
                c.error,
                self.summary()
            );
            let (first, last) = (c.first_ok.unwrap_or(0.0), c.last_ok.unwrap_or(0.0));
            ensure!(
                last >= until - 0.5,
                "connection {i} to {:?}: last answer {:.2} s before the end",
                c.server,
                until - last
            );
            // At one request per interval at most; a stalled connection
            // answers far fewer.
            let expected = (last - first) / INTERVAL;
            ensure!(
                c.ok as f64 >= expected * 0.5 && c.ok as f64 <= expected + 2.0,
                "connection {i} to {:?}: {} answers in {:.1} s",
                c.server,
                c.ok,
                last - first
            );
        }
        Ok(())
    }
}

/// A running `keepalive.py` in the client namespace: `n` keep-alive
/// connections to the VIP, open until [`KeepAlive::finish`].
struct KeepAlive {
    child: Child,
    stop_file: PathBuf,
    out: PathBuf,
    err: PathBuf,
}

impl KeepAlive {
    /// Starts it and waits until every connection has had its first answer.
    fn start(topo: &Topology, n: usize) -> Result<KeepAlive> {
        let dir = topo.dir();
        let script = dir.join("keepalive.py");
        if !script.exists() {
            fs::write(&script, KEEPALIVE_PY)?;
        }
        let id = unique_id("ka");
        let stop_file = dir.join(format!("{id}.stop"));
        let ready = dir.join(format!("{id}.ready"));
        let out = dir.join(format!("{id}.json"));
        let err = dir.join(format!("{id}.err"));
        let mut cmd = ns_command(topo.client_ns(), python());
        cmd.arg(&script)
            .args(["--host", VIP, "--port", &VIP_PORT.to_string()])
            .args(["--connections", &n.to_string()])
            .args(["--interval", &INTERVAL.to_string(), "--timeout", "5"])
            .args(["--max-seconds", "90"])
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
        let mut ka = KeepAlive {
            child,
            stop_file,
            out,
            err,
        };
        wait_for(Duration::from_secs(20), || {
            if let Some(status) = ka.child.try_wait()? {
                bail!("keepalive.py exited ({status}): {}", ka.stderr());
            }
            Ok(ready.exists().then_some(()))
        })
        .context("waiting for every keep-alive connection's first answer")?;
        Ok(ka)
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// Makes it close its connections, waits for it and returns its report
    /// and the (monotonic) time the close was asked for.
    fn finish(mut self) -> Result<(KaRun, f64)> {
        let at = monotonic();
        fs::write(&self.stop_file, "stop\n")?;
        let status = process::wait_timeout(&mut self.child, Duration::from_secs(15))?
            .context("keepalive.py did not stop")?;
        ensure!(
            status.success(),
            "keepalive.py failed ({status}): {}",
            self.stderr()
        );
        let text = fs::read(&self.out)?;
        let run = serde_json::from_slice(&text).with_context(|| {
            format!(
                "keepalive.py printed no JSON: {}{}",
                String::from_utf8_lossy(&text),
                self.stderr()
            )
        })?;
        Ok((run, at))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping keepalive.py: {e:#}"));
        }
    }
}

/// Polls `list` until the servers' active connections sum to `n`; returns
/// the active count per server address.
fn wait_active(
    topo: &Topology,
    sock: &Path,
    addrs: &[&str],
    n: u64,
) -> Result<BTreeMap<String, u64>> {
    let mut last = BTreeMap::new();
    let found = wait_for(Duration::from_secs(5), || {
        let list = ok_json(topo, sock, &["list", "--stats"])?;
        last = addrs
            .iter()
            .map(|a| Ok((a.to_string(), counts(&list, a)?.0)))
            .collect::<Result<_>>()?;
        Ok((last.values().sum::<u64>() == n).then(|| last.clone()))
    });
    found.with_context(|| format!("active connections {last:?}, expected {n} in all"))
}

#[test]
fn keepalive_connections_survive_reload() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    // The management topology for its fourth HTTP server (10.0.2.20,
    // answering "sorry"), which the reload adds as a real server.
    let mut topo = Topology::with_management("pkar")?;
    topo.start_http_servers()?;
    let options = PylonOptions::new(1, "wlc");
    let text = topo.pylon_config(&options);
    let rs1 = "\n[[services.servers]]\naddress = \"10.0.2.11\"\nport = 8080\nweight = 1\n";
    let rs2 = "\n[[services.servers]]\naddress = \"10.0.2.12\"\nport = 8080\nweight = 2\n";
    let rs3 = "\n[[services.servers]]\naddress = \"10.0.2.13\"\nport = 8080\nweight = 3\n";
    ensure!(
        text.contains(rs1) && text.contains(rs2) && text.contains(rs3),
        "unexpected config:\n{text}"
    );
    let mut pylon = topo.run_pylon(&text)?;
    let (sock, config) = paths(&topo)?;
    topo.run_client(30, &vip_url())?.check_all_ok(30)?;

    const N: usize = 24;
    let clients = KeepAlive::start(&topo, N)?;
    let addrs = ["10.0.2.11", "10.0.2.12", "10.0.2.13"];
    let active = wait_active(&topo, &sock, &addrs, N as u64)?;
    eprintln!("keep-alive connections per server before the reload: {active:?}");
    ensure!(
        active.values().all(|&n| n > 0),
        "wlc 1/2/3 left a server without keep-alive connections: {active:?}"
    );
    let before = ok_json(&topo, &sock, &["list", "--stats"])?;
    std::thread::sleep(Duration::from_millis(1000));

    // Remove rs1, reweight rs2, keep rs3, add 10.0.2.20.
    let new = text
        .replace(rs1, "")
        .replace(rs2, &rs2.replace("weight = 2", "weight = 4"))
        + "\n[[services.servers]]\naddress = \"10.0.2.20\"\nport = 8080\nweight = 2\n";
    fs::write(&config, new)?;
    let reload = ok_json(&topo, &sock, &["reload"])?;
    let reloaded_at = monotonic();
    eprintln!("reload: {reload:#}");
    let changes = reload["changes"].as_array().map_or(0, Vec::len);
    ensure!(changes == 3, "expected 3 changes: {reload:#}");

    let after = ok_json(&topo, &sock, &["list", "--stats"])?;
    // The removed server is drained, not cut: listed with weight 0 and its
    // connections; the others keep theirs and their counters.
    let (rs1_active, _, rs1_weight, _) = counts(&after, "10.0.2.11")?;
    ensure!(
        rs1_weight == 0 && rs1_active == active["10.0.2.11"],
        "removed rs1: weight {rs1_weight}, active {rs1_active} (had {}): {after:#}",
        active["10.0.2.11"]
    );
    for (addr, weight) in [("10.0.2.12", 4), ("10.0.2.13", 3)] {
        let (a, _, w, conns) = counts(&after, addr)?;
        let (_, _, _, conns_before) = counts(&before, addr)?;
        ensure!(
            w == weight && a == active[addr] && conns >= conns_before,
            "{addr}: weight {w} (want {weight}), active {a} (had {}), conns {conns} (had {conns_before})",
            active[addr]
        );
    }
    ensure!(
        counts(&after, "10.0.2.20")?.2 == 2,
        "10.0.2.20 not added: {after:#}"
    );

    // New connections meanwhile: never rs1, some to the added server.
    let short = topo.run_client(100, &vip_url())?;
    short.check_all_ok(100)?;
    ensure!(
        !short.by_server.contains_key("rs1") && short.by_server.contains_key("sorry"),
        "new connections after the reload: {:?}",
        short.by_server
    );
    let remaining = 2.5 - (monotonic() - reloaded_at);
    if remaining > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(remaining));
    }
    let (run, closed_at) = clients.finish()?;
    eprintln!(
        "keep-alive across the reload: {}; {:.1} s after it",
        run.summary(),
        closed_at - reloaded_at
    );
    // Every connection, whichever server it is on (removed, reweighted or
    // unchanged), answered every request until it closed.
    run.check_all_carried_on(closed_at)?;
    let by_server = run.by_server();
    for (name, addr) in [
        ("rs1", "10.0.2.11"),
        ("rs2", "10.0.2.12"),
        ("rs3", "10.0.2.13"),
    ] {
        ensure!(
            by_server.get(name).copied().unwrap_or(0) == active[addr],
            "{name}: {by_server:?} connections answered, {} active in pylon",
            active[addr]
        );
    }
    for c in &run.conns {
        let first = c.first_ok.unwrap_or(f64::MAX);
        let last = c.last_ok.unwrap_or(0.0);
        ensure!(
            first < reloaded_at - 0.5 && last > reloaded_at + 2.0,
            "a connection to {:?} did not span the reload ({first:.2} .. {last:.2}, reload {reloaded_at:.2})",
            c.server
        );
    }

    // rs1's connections are closed: it has no active one left (TIME_WAIT
    // entries linger as InActConn until they expire, then it is removed).
    wait_for(Duration::from_secs(5), || {
        let list = ok_json(&topo, &sock, &["list"])?;
        Ok(server(&list, "10.0.2.11")
            .is_none_or(|s| s["active"] == 0)
            .then_some(()))
    })
    .context("rs1 kept active connections after they closed")?;
    pylon.stop_cleanly()
}

/// A running `pylonctl drain` whose stdout lines are timestamped as they
/// come.
struct Drain {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    seen: Vec<(Instant, String)>,
}

impl Drain {
    fn start(topo: &Topology, sock: &Path, args: &[&str]) -> Result<Drain> {
        let mut cmd = ctl_command(topo, sock, args)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = detach_child(&mut cmd)
            .spawn()
            .context("starting pylonctl drain")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Ok(Drain {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Waits up to `timeout` for a progress line with `active` active
    /// connections; returns the line.
    fn wait_active(&mut self, active: u64, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, line)) = self
                .seen
                .iter()
                .find(|(_, l)| progress(l).is_some_and(|(a, _)| a == active))
            {
                return Ok(line.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => bail!(
                    "no progress line with {active} active within {timeout:?}: {:?}",
                    self.text()
                ),
            }
        }
    }

    fn running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Waits for it to exit; returns the exit code, every stdout line and
    /// its stderr.
    fn wait(mut self, timeout: Duration) -> Result<(i32, Vec<String>, String)> {
        let status = process::wait_timeout(&mut self.child, timeout)?
            .with_context(|| format!("pylonctl drain still running: {:?}", self.text()))?;
        // The reader thread ends at EOF; collect the rest.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr)?;
        }
        let code = status.code().context("pylonctl drain killed")?;
        Ok((code, self.text(), stderr))
    }

    fn text(&self) -> Vec<String> {
        self.seen.iter().map(|(_, l)| l.clone()).collect()
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(2)) {
            process::warn(format_args!("stopping pylonctl drain: {e:#}"));
        }
    }
}

/// `(active, inactive)` of a progress line: `draining 10.0.2.13:8080 (web):
/// 5 active, 3 inactive connections, 1.5s`.
fn progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("draining ")?;
    let (_, counts) = rest.rsplit_once("): ")?;
    let mut words = counts.split_whitespace();
    let active = words.next()?.parse().ok()?;
    (words.next()? == "active,").then_some(())?;
    let inactive = words.next()?.parse().ok()?;
    Some((active, inactive))
}

#[test]
fn drain_waits_for_keepalive_connections() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::new("pkdr")?;
    topo.start_http_servers()?;
    // A short TIME_WAIT, so that `drain --inactive` can finish.
    let config =
        topo.pylon_config(&PylonOptions::new(1, "wlc")) + "\n[timeouts]\ntcp_time_wait = 6\n";
    let mut pylon = topo.run_pylon(&config)?;
    let (sock, _) = paths(&topo)?;
    topo.run_client(30, &vip_url())?.check_all_ok(30)?;
    let addrs = ["10.0.2.11", "10.0.2.12", "10.0.2.13"];
    let rs3 = "10.0.2.13";

    // Two groups of keep-alive connections, closed one after the other.
    let group_a = KeepAlive::start(&topo, 10)?;
    let k_a = wait_active(&topo, &sock, &addrs, 10)?[rs3];
    let group_b = KeepAlive::start(&topo, 10)?;
    let k = wait_active(&topo, &sock, &addrs, 20)?[rs3];
    let k_b = k - k_a;
    eprintln!("keep-alive connections on rs3: {k_a} + {k_b}");
    ensure!(
        k_a > 0 && k_b > 0,
        "wlc 1/2/3 gave rs3 {k_a} + {k_b} keep-alive connections"
    );
    let before = ok_json(&topo, &sock, &["list", "--stats"])?;
    let (_, _, _, rs3_conns) = counts(&before, rs3)?;

    let drain_started = monotonic();
    let mut drain = Drain::start(&topo, &sock, &["drain", rs3, "--timeout", "40"])?;
    let first = drain.wait_active(k, Duration::from_secs(5))?;
    eprintln!("drain: {first}");
    // Meanwhile new connections go to rs1 and rs2 only.
    let short = topo.run_client(60, &vip_url())?;
    short.check_all_ok(60)?;
    ensure!(
        !short.by_server.contains_key("rs3"),
        "new connections reached the draining rs3: {:?}",
        short.by_server
    );
    let list = ok_json(&topo, &sock, &["list"])?;
    let (active, _, weight, _) = counts(&list, rs3)?;
    ensure!(weight == 0 && active == k, "rs3 draining: {list:#}");
    ensure!(drain.running()?, "drain ended with {k} connections open");

    // Group A closes 2 s into the drain: the drain shows k_b left and goes
    // on.
    let wait = drain_started + 2.0 - monotonic();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
    let (run_a, a_closed) = group_a.finish()?;
    let line = drain.wait_active(k_b, Duration::from_secs(3))?;
    eprintln!("drain: {line}");
    std::thread::sleep(Duration::from_millis(1200));
    ensure!(
        drain.running()?,
        "drain ended with {k_b} connections open: {:?}",
        drain.text()
    );
    // Group B closes: the drain ends, exit 0.
    let (run_b, b_closed) = group_b.finish()?;
    let (code, lines, stderr) = drain.wait(Duration::from_secs(5))?;
    eprintln!("drain output:\n{}", lines.join("\n"));
    ensure!(code == 0, "drain exited {code}: {stderr}");
    let shown: Vec<(u64, u64)> = lines.iter().filter_map(|l| progress(l)).collect();
    ensure!(
        shown.first().map(|p| p.0) == Some(k)
            && shown.windows(2).all(|w| w[0].0 >= w[1].0 && w[0] != w[1])
            && shown.iter().any(|p| p.0 == k_b)
            && shown.last().map(|p| p.0) == Some(0),
        "progress lines do not show {k} -> {k_b} -> 0 active, one per change: {lines:?}"
    );
    ensure!(
        lines
            .last()
            .is_some_and(|l| l.starts_with(&format!("drained {rs3}:8080 (web) in "))),
        "no final line: {lines:?}"
    );
    // The closed connections are inactive (closing, TIME_WAIT) at the end.
    let (_, inactive_left) = *shown.last().context("no progress line")?;
    ensure!(
        inactive_left >= k_b,
        "{inactive_left} inactive connections left on rs3 right after {k_b} closed"
    );

    // The drained server's connections were not cut, and no new one
    // reached it during the drain.
    for (name, run, closed) in [("A", &run_a, a_closed), ("B", &run_b, b_closed)] {
        eprintln!("group {name}: {}", run.summary());
        run.check_all_carried_on(closed)?;
        for c in run
            .conns
            .iter()
            .filter(|c| c.server.as_deref() == Some("rs3"))
        {
            ensure!(
                c.last_ok.unwrap_or(0.0) > drain_started + 1.5,
                "group {name}: an rs3 connection stopped answering once the drain began"
            );
        }
    }
    let rs3_by_clients = run_a.by_server().get("rs3").copied().unwrap_or(0)
        + run_b.by_server().get("rs3").copied().unwrap_or(0);
    ensure!(
        rs3_by_clients == k,
        "clients saw {rs3_by_clients} rs3 connections, pylon {k}"
    );
    let after = ok_json(&topo, &sock, &["list", "--stats"])?;
    let (_, _, _, rs3_conns_after) = counts(&after, rs3)?;
    ensure!(
        rs3_conns_after == rs3_conns,
        "rs3 got {} new connections while draining",
        rs3_conns_after - rs3_conns
    );

    // --inactive also waits for the TIME_WAIT entries (6 s here).
    let inactive = ok_json(
        &topo,
        &sock,
        &["drain", rs3, "--inactive", "--timeout", "20"],
    )?;
    eprintln!("drain --inactive: {inactive}");
    ensure!(
        inactive["drained"] == true && inactive["active"] == 0 && inactive["inactive"] == 0,
        "{inactive:#}"
    );
    let waited = inactive["elapsed_secs"].as_f64().unwrap_or(0.0);
    ensure!(
        waited >= 1.0,
        "drain --inactive did not wait for the {inactive_left} closing connections: {inactive:#}"
    );

    // Connections that stay open: the drain gives up after --timeout with
    // exit 3, and leaves them alone.
    let group_c = KeepAlive::start(&topo, 10)?;
    let active = wait_active(&topo, &sock, &addrs, 10)?;
    let rs2 = "10.0.2.12";
    ensure!(
        active[rs3] == 0 && active[rs2] > 0,
        "new keep-alive connections: {active:?}"
    );
    let t = Instant::now();
    let r = ctl(&topo, &sock, &["drain", rs2, "--timeout", "2"])?;
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&r.stderr);
    eprintln!("drain --timeout 2: {:?} in {took:?}: {stderr}", r.status);
    ensure!(
        r.status.code() == Some(3),
        "drain --timeout 2 with open connections: {r:?}"
    );
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "drain --timeout 2 took {took:?}"
    );
    ensure!(
        stderr.contains(&format!(
            "drain timed out after 2 s: {} active",
            active[rs2]
        )),
        "{stderr}"
    );
    let r = ctl(&topo, &sock, &["drain", rs2, "--timeout", "1", "--json"])?;
    ensure!(
        r.status.code() == Some(3),
        "drain --json --timeout 1: {r:?}"
    );
    let doc: Value = serde_json::from_slice(&r.stdout)?;
    ensure!(doc["error"]["code"] == "drain_timeout", "{doc:#}");
    std::thread::sleep(Duration::from_millis(500));
    let (run_c, closed_c) = group_c.finish()?;
    eprintln!("group C: {}", run_c.summary());
    run_c.check_all_carried_on(closed_c)?;
    ensure!(
        run_c.by_server().get("rs2").copied().unwrap_or(0) == active[rs2],
        "group C: {:?}, pylon {active:?}",
        run_c.by_server()
    );
    pylon.stop_cleanly()
}
