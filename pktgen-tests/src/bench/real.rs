//! Real TCP traffic side by side: `wrk` in the client namespace against the
//! VIP, through Pylon (NAT, one worker) and through HAProxy in the same lb
//! namespace, to the same three real servers.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;

use crate::process::{self, detach_child, ns_command, run_checked};
use crate::pylon::{harmful_drops, PylonOptions};
use crate::topology::{
    Topology, HTTP_PORT, LB_CLIENT_IF, LB_SERVER_ADDR, LB_SERVER_IF, SERVER_ADDRS, VIP, VIP_PORT,
};

/// The HTTP servers behind both balancers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Servers {
    /// nginx (Debian's package), one worker process per real server,
    /// answering every request with a fixed body from memory.
    Nginx,
    /// The harness's Python `ThreadingHTTPServer` (`scripts/httpd.py`).
    Python,
}

/// How the real-traffic comparison runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Settings {
    pub servers: Servers,
    /// Seconds of each measured `wrk` run (after a 2-second warm-up run).
    pub seconds: u32,
    /// `wrk -t` and `-c`.
    pub threads: u32,
    pub connections: u32,
    /// Each balancer and connection mode is measured this many times, in
    /// turn; the best run by requests per second is kept.
    pub rounds: u32,
}

/// One `wrk` run.
#[derive(Clone, Debug, Serialize)]
pub struct RealResult {
    /// `pylon` or `haproxy`.
    pub balancer: String,
    /// `close` (a new connection per request, `Connection: close`) or
    /// `keepalive`.
    pub mode: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Socket errors (connect, read, write, timeout) and non-2xx answers.
    pub errors: u64,
    /// Requests per second of every round, in order.
    pub rounds_rps: Vec<f64>,
}

/// What `wrk --latency` printed that matters here.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrkOutput {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub errors: u64,
}

/// Parses `wrk --latency` output.
pub fn parse_wrk(text: &str) -> Result<WrkOutput> {
    let mut out = WrkOutput {
        rps: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => out.p50_ms = duration_ms(v)?,
            ["99%", v] => out.p99_ms = duration_ms(v)?,
            ["Requests/sec:", v] => out.rps = v.parse().context("Requests/sec")?,
            [n, "requests", "in", ..] => out.requests = n.parse().context("requests")?,
            ["Socket", "errors:", rest @ ..] => {
                for value in rest.iter().skip(1).step_by(2) {
                    out.errors += value
                        .trim_end_matches(',')
                        .parse::<u64>()
                        .context("socket errors")?;
                }
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => {
                out.errors += n.parse::<u64>().context("non-2xx")?
            }
            _ => {}
        }
    }
    ensure!(
        out.rps.is_finite() && out.p50_ms.is_finite() && out.p99_ms.is_finite(),
        "wrk printed no rate or latency distribution:\n{text}"
    );
    Ok(out)
}

/// `1.23ms`, `456.78us`, `1.02s`, `2.00m` in milliseconds.
fn duration_ms(v: &str) -> Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {v:?}"))?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("latency {v:?}"))?;
    let scale = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => bail!("unknown unit in {v:?}"),
    };
    Ok(number * scale)
}

/// A long-running helper in a namespace, stopped on drop.
struct Helper {
    what: String,
    child: Child,
}

impl Helper {
    /// Starts `cmd` (a command made with `ns_command`) with its output in
    /// `log`, and waits until something listens on `listen` (`ADDR:PORT`, or
    /// `*:PORT`) in namespace `ns`.
    fn start(what: &str, mut cmd: Command, log: &Path, ns: &str, listen: &str) -> Result<Helper> {
        let file = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = detach_child(&mut cmd)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let mut helper = Helper {
            what: what.to_owned(),
            child,
        };
        let waited = process::wait_for(Duration::from_secs(10), || {
            if let Some(status) = helper.child.try_wait()? {
                bail!(
                    "{what} exited ({status}): {}",
                    fs::read_to_string(log).unwrap_or_default()
                );
            }
            Ok(listening(ns, listen)?.then_some(()))
        });
        waited.with_context(|| format!("waiting for {what} to listen on {listen}"))?;
        Ok(helper)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Err(e) = process::terminate(&mut self.child, Duration::from_secs(3)) {
            process::warn(format_args!("stopping {}: {e:#}", self.what));
        }
    }
}

/// Whether a TCP socket listens on `addr` (`ADDR:PORT` or `*:PORT`) in `ns`.
fn listening(ns: &str, addr: &str) -> Result<bool> {
    let out = run_checked(ns_command(ns, "ss").args(["-Htln"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .any(|local| local == addr || (addr.starts_with("*:") && local.ends_with(&addr[1..]))))
}

fn sysctls(topo: &Topology, ns: &str, settings: &[(&str, &str)]) -> Result<()> {
    for (key, value) in settings {
        topo.exec(ns, "sysctl", &["-q", "-w", &format!("{key}={value}")])?;
    }
    Ok(())
}

/// Starts nginx in every real server's namespace: one worker process, no
/// logs, the server's name as a fixed body, long keep-alive.
fn start_nginx(topo: &Topology) -> Result<Vec<Helper>> {
    let mut helpers = Vec::new();
    for server in topo.servers() {
        let dir = topo.dir().join(format!("nginx-{}", server.name));
        fs::create_dir_all(&dir)?;
        let d = dir.display();
        let conf = format!(
            "# {name}: one worker, everything from memory, nothing logged.\n\
             worker_processes 1;\n\
             daemon off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   client_body_temp_path {d}/body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   keepalive_requests 1000000;\n\
             \x20   keepalive_timeout 60s;\n\
             \x20   server {{\n\
             \x20       listen {HTTP_PORT} backlog=4096 reuseport;\n\
             \x20       location / {{ default_type text/plain; return 200 \"{name}\\n\"; }}\n\
             \x20   }}\n\
             }}\n",
            name = server.name,
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf)?;
        let mut cmd = ns_command(&server.ns, "nginx");
        cmd.arg("-p").arg(&dir).arg("-c").arg(&conf_path);
        let what = format!("nginx on {}", server.name);
        helpers.push(Helper::start(
            &what,
            cmd,
            &dir.join("stdout.log"),
            &server.ns,
            &format!("*:{HTTP_PORT}"),
        )?);
    }
    Ok(helpers)
}

/// The HAProxy configuration: the Debian package's HAProxy 2.6 as an L4
/// proxy for the same service as Pylon.
pub fn haproxy_config(dir: &Path) -> String {
    let mut text = format!(
        "# HAProxy as the L4 balancer Pylon is compared with, tuned for this\n\
         # benchmark:\n\
         # - nbthread 1: one thread, as Pylon has one worker; the second core\n\
         #   is left to wrk, the real servers and the kernel, which do the\n\
         #   same work for both balancers.\n\
         # - maxconn 8000: never the limit (wrk holds 64 connections), and\n\
         #   within the 20000 descriptors a process may open here.\n\
         # - mode tcp: a layer-4 proxy, no HTTP parsing; balance leastconn\n\
         #   with weights 1/2/3 is Pylon's wlc.\n\
         # - no logging; timeouts generous enough never to cut a request.\n\
         global\n\
         \x20   nbthread 1\n\
         \x20   maxconn 8000\n\
         \x20   pidfile {}/haproxy.pid\n\
         \n\
         defaults\n\
         \x20   mode tcp\n\
         \x20   maxconn 8000\n\
         \x20   timeout connect 5s\n\
         \x20   timeout client 30s\n\
         \x20   timeout server 30s\n\
         \n\
         frontend vip\n\
         \x20   bind {VIP}:{VIP_PORT} backlog 4096\n\
         \x20   default_backend servers\n\
         \n\
         backend servers\n\
         \x20   balance leastconn\n",
        dir.display()
    );
    for (i, (addr, weight)) in SERVER_ADDRS.iter().zip([1, 2, 3]).enumerate() {
        let _ = writeln!(
            text,
            "    server rs{} {addr}:{HTTP_PORT} weight {weight}",
            i + 1
        );
    }
    text
}

/// Runs wrk in the client namespace; `close` adds `Connection: close`.
fn wrk(topo: &Topology, settings: &Settings, seconds: u32, close: bool) -> Result<WrkOutput> {
    let mut cmd = ns_command(topo.client_ns(), "wrk");
    cmd.args(["-t", &settings.threads.to_string()])
        .args(["-c", &settings.connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--latency", "--timeout", "5s"]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://{VIP}:{VIP_PORT}/"));
    let out = run_checked(&mut cmd)?;
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

/// A balancer under test, running.
enum Running {
    Pylon(Box<crate::pylon::PylonProcess>),
    Haproxy(Helper),
}

fn start_balancer(topo: &Topology, balancer: &str) -> Result<Running> {
    let lb = topo.lb_ns();
    if balancer == "pylon" {
        let options = PylonOptions {
            conn_capacity: 1 << 17,
            log: "warn".to_owned(),
            ..PylonOptions::new(1, "wlc")
        };
        // The harness's idle back-off stays on (64 empty polls, then a
        // 100 us sleep): it applies to pylon's control lcore too, and with
        // pure polling pylon would spin both of this machine's cores,
        // starving wrk and the real servers. Under load the worker's
        // queues are rarely empty 64 times in a row.
        let pylon = topo.run_pylon(&topo.pylon_config(&options))?;
        return Ok(Running::Pylon(Box::new(pylon)));
    }
    ip(
        lb,
        &["addr", "add", &format!("{VIP}/24"), "dev", LB_CLIENT_IF],
    )?;
    ip(lb, &["addr", "add", LB_SERVER_ADDR, "dev", LB_SERVER_IF])?;
    let conf = topo.dir().join("haproxy.cfg");
    fs::write(&conf, haproxy_config(topo.dir()))?;
    let mut cmd = ns_command(lb, "haproxy");
    cmd.arg("-f").arg(&conf).arg("-db");
    let helper = Helper::start(
        "haproxy",
        cmd,
        &topo.dir().join("haproxy.log"),
        lb,
        &format!("{VIP}:{VIP_PORT}"),
    )?;
    Ok(Running::Haproxy(helper))
}

fn stop_balancer(topo: &Topology, running: Running) -> Result<()> {
    match running {
        Running::Pylon(mut pylon) => {
            let stats = pylon.stats()?;
            let harmful = harmful_drops(&stats);
            if !harmful.is_empty() {
                process::warn(format_args!("pylon dropped packets: {harmful:?}"));
            }
            pylon.stop_cleanly()
        }
        Running::Haproxy(helper) => {
            drop(helper);
            let lb = topo.lb_ns();
            ip(lb, &["addr", "flush", "dev", LB_CLIENT_IF])?;
            ip(lb, &["addr", "flush", "dev", LB_SERVER_IF])
        }
    }
}

fn ip(ns: &str, args: &[&str]) -> Result<()> {
    run_checked(Command::new("ip").arg("-n").arg(ns).args(args)).map(drop)
}

/// Builds the NAT topology, starts the real servers, and measures both
/// balancers with short and with persistent connections. The caller holds
/// the end-to-end lock and has run the harness's preflight. Gives up
/// between two runs of wrk once `stop` is set (everything started is
/// stopped and removed on the way out).
pub fn run(settings: &Settings, stop: &AtomicBool) -> Result<Vec<RealResult>> {
    let mut topo = Topology::new("pbench")?;
    // Short connections: every client port is reused within seconds, the
    // servers keep TIME_WAIT (they close first) and take a new SYN on it
    // by its timestamp; HAProxy's own connections to the servers need the
    // same room.
    let wide_ports = [
        ("net.ipv4.ip_local_port_range", "1024 65535"),
        ("net.ipv4.tcp_tw_reuse", "1"),
    ];
    sysctls(&topo, topo.client_ns(), &wide_ports)?;
    sysctls(&topo, topo.lb_ns(), &wide_ports)?;
    let backlog = [
        ("net.core.somaxconn", "4096"),
        ("net.ipv4.tcp_max_syn_backlog", "4096"),
    ];
    for server in topo.servers().to_vec() {
        sysctls(&topo, &server.ns, &backlog)?;
    }
    sysctls(&topo, topo.lb_ns(), &backlog)?;
    let _nginx = match settings.servers {
        Servers::Nginx => start_nginx(&topo)?,
        Servers::Python => {
            topo.start_http_servers()?;
            Vec::new()
        }
    };

    let mut results: Vec<RealResult> = Vec::new();
    for round in 0..settings.rounds {
        for balancer in ["pylon", "haproxy"] {
            let started = Instant::now();
            let running = start_balancer(&topo, balancer)?;
            let mut measured = Vec::new();
            for (mode, close) in [("close", true), ("keepalive", false)] {
                if stop.load(Ordering::Relaxed) {
                    bail!("interrupted");
                }
                wrk(&topo, settings, 2, close).with_context(|| format!("{balancer} warm-up"))?;
                let out = wrk(&topo, settings, settings.seconds, close)
                    .with_context(|| format!("{balancer}, {mode}"))?;
                eprintln!(
                    "round {}: {balancer:>7} {mode:>9}: {:9.0} req/s  p50 {:6.2} ms  p99 {:6.2} ms  errors {}",
                    round + 1,
                    out.rps,
                    out.p50_ms,
                    out.p99_ms,
                    out.errors
                );
                measured.push((mode, out));
            }
            stop_balancer(&topo, running)?;
            for (mode, out) in measured {
                merge(&mut results, balancer, mode, out);
            }
            eprintln!(
                "{balancer}: round {} took {:?}",
                round + 1,
                started.elapsed()
            );
        }
    }
    Ok(results)
}

/// Keeps the best run by requests per second for a balancer and mode.
fn merge(results: &mut Vec<RealResult>, balancer: &str, mode: &str, out: WrkOutput) {
    let fresh = RealResult {
        balancer: balancer.to_owned(),
        mode: mode.to_owned(),
        rps: out.rps,
        p50_ms: out.p50_ms,
        p99_ms: out.p99_ms,
        requests: out.requests,
        errors: out.errors,
        rounds_rps: vec![out.rps],
    };
    match results
        .iter_mut()
        .find(|r| r.balancer == balancer && r.mode == mode)
    {
        None => results.push(fresh),
        Some(best) => {
            let mut rounds = std::mem::take(&mut best.rounds_rps);
            rounds.push(out.rps);
            if out.rps > best.rps {
                *best = fresh;
            }
            best.rounds_rps = rounds;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://10.0.1.100:80/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10ms    1.03ms  40.12ms   91.07%
    Req/Sec    15.40k     1.21k   18.01k    70.50%
  Latency Distribution
     50%    1.95ms
     75%    2.31ms
     90%    2.80ms
     99%  812.00us
  306450 requests in 10.00s, 44.13MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 1
Requests/sec:  30642.51
Transfer/sec:      4.41MB
";

    #[test]
    fn wrk_output() {
        let out = parse_wrk(WRK).expect("parses");
        assert_eq!(out.requests, 306_450);
        assert_eq!(out.errors, 6);
        assert!((out.rps - 30642.51).abs() < 1e-6);
        assert!((out.p50_ms - 1.95).abs() < 1e-9);
        assert!((out.p99_ms - 0.812).abs() < 1e-9);
        assert!(parse_wrk("nothing").is_err());
        assert!((duration_ms("1.50s").expect("s") - 1500.0).abs() < 1e-9);
    }

    #[test]
    fn haproxy_config_names_every_server() {
        let text = haproxy_config(Path::new("/tmp/x"));
        assert!(text.contains("mode tcp") && text.contains("balance leastconn"));
        assert!(text.contains("server rs3 10.0.2.13:8080 weight 3"));
    }
}
