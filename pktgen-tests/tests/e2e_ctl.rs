//! End to end, live operation: `pylonctl` against a running pylon in the
//! NAT topology (every command in text and JSON, runtime changes, drain),
//! the control socket fed garbage, truncated and oversized requests while
//! traffic flows, a bad reload rejected, a reload under steady traffic that
//! adds a server, removes one and changes a weight, and the metrics
//! endpoint scraped from the lb namespace and parsed as Prometheus text.
//!
//! Needs root, `target/release/pylon` and `target/release/pylonctl`.

use anyhow::{bail, ensure, Context, Result};
use pktgen_tests::{e2e_lock, preflight, pylonctl_binary, vip_url, PylonOptions, Topology};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const METRICS: &str = "127.0.0.1:9464";

/// The socket and config file of the topology's one pylon.
fn paths(topo: &Topology) -> Result<(PathBuf, PathBuf)> {
    let config = std::fs::read_dir(topo.dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension().is_some_and(|x| x == "toml")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("pylon-"))
        })
        .context("no pylon config in the scratch directory")?;
    Ok((topo.dir().join("stats.sock"), config))
}

/// `list`'s services without the connection counts, which change by
/// themselves as earlier connections expire.
fn configured(list: &Value) -> Value {
    let mut services = list["services"].clone();
    for server in services
        .as_array_mut()
        .into_iter()
        .flatten()
        .filter_map(|s| s["servers"].as_array_mut())
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        server.remove("active");
        server.remove("inactive");
    }
    services
}

/// Runs pylonctl in the lb namespace; returns its output whatever the exit.
fn ctl(topo: &Topology, socket: &Path, args: &[&str]) -> Result<Output> {
    Ok(Command::new("ip")
        .args(["netns", "exec", topo.lb_ns()])
        .arg(pylonctl_binary()?)
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()?)
}

fn ok_text(topo: &Topology, socket: &Path, args: &[&str]) -> Result<String> {
    let out = ctl(topo, socket, args)?;
    ensure!(
        out.status.success(),
        "pylonctl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ok_json(topo: &Topology, socket: &Path, args: &[&str]) -> Result<Value> {
    let mut a = args.to_vec();
    a.push("--json");
    let text = ok_text(topo, socket, &a)?;
    serde_json::from_str(&text).with_context(|| format!("pylonctl {args:?} --json: {text}"))
}

fn config_with_metrics(topo: &Topology, options: &PylonOptions) -> String {
    topo.pylon_config(options).replacen(
        "[control]\n",
        &format!("[control]\nmetrics = \"{METRICS}\"\n"),
        1,
    )
}

/// A server's entry in `list --json`.
fn server<'a>(list: &'a Value, addr: &str) -> Option<&'a Value> {
    list["services"][0]["servers"]
        .as_array()?
        .iter()
        .find(|s| s["address"] == addr)
}

/// Sends raw bytes to the socket from the lb namespace and returns every
/// answer line.
fn raw(topo: &Topology, socket: &Path, payload_py: &str) -> Result<Vec<Value>> {
    let script = format!(
        "import socket,sys\n\
         s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
         s.settimeout(10)\n\
         s.connect({:?})\n\
         s.sendall({payload_py})\n\
         s.shutdown(socket.SHUT_WR)\n\
         b=b''\n\
         while True:\n\
         \x20   d=s.recv(65536)\n\
         \x20   if not d: break\n\
         \x20   b+=d\n\
         sys.stdout.write(b.decode())\n",
        socket.display().to_string()
    );
    let out = topo.exec(topo.lb_ns(), "python3", &["-c", &script])?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("answer {l:?}")))
        .collect()
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn every_command_garbage_bad_reload_and_metrics() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::new("pctl")?;
    topo.start_http_servers()?;
    let options = PylonOptions::new(1, "wlc");
    let mut pylon = topo.run_pylon(&config_with_metrics(&topo, &options))?;
    let (sock, config) = paths(&topo)?;
    topo.run_client(60, &vip_url())?.check_all_ok(60)?;

    // list, text and JSON.
    let text = ok_text(&topo, &sock, &["list"])?;
    ensure!(
        text.contains("Virtual Server (size=")
            && text.contains("Prot LocalAddress:Port Scheduler Flags"),
        "{text}"
    );
    ensure!(text.contains("-> RemoteAddress:Port"), "{text}");
    let list = ok_json(&topo, &sock, &["list"])?;
    ensure!(list["services"][0]["name"] == "web", "{list:#}");
    ensure!(
        list["services"][0]["servers"]
            .as_array()
            .map_or(0, Vec::len)
            == 3,
        "{list:#}"
    );
    let stats = ok_json(&topo, &sock, &["list", "--stats"])?;
    let conns = stats["services"][0]["stats"]["conns"].as_u64().unwrap_or(0);
    ensure!(conns >= 60, "service conns {conns}: {stats:#}");
    ensure!(
        stats["services"][0]["stats"]["out_packets"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{stats:#}"
    );
    ensure!(ok_text(&topo, &sock, &["list", "--stats"])?.contains("InPkts"));
    ensure!(ok_text(&topo, &sock, &["list", "--rate"])?.contains("CPS"));
    ok_json(&topo, &sock, &["list", "--rate"])?["services"][0]["rate"]
        .as_object()
        .context("no rate")?;
    // The other read-only commands.
    for cmd in [
        &["conns"][..],
        &["health"],
        &["vrrp"],
        &["workers"],
        &["diff"],
    ] {
        ok_text(&topo, &sock, cmd)?;
        ok_json(&topo, &sock, cmd)?;
    }
    let workers = ok_json(&topo, &sock, &["workers"])?;
    ensure!(
        workers["workers"].as_array().map_or(0, Vec::len) == 2,
        "{workers:#}"
    );
    ensure!(
        workers["ports"].as_array().map_or(0, Vec::len) == 2,
        "{workers:#}"
    );
    let diff = ok_json(&topo, &sock, &["diff"])?;
    ensure!(
        diff["changes"].as_array().is_some_and(Vec::is_empty),
        "{diff:#}"
    );

    // Runtime changes, reported as drift.
    ok_json(
        &topo,
        &sock,
        &[
            "edit",
            "server",
            "--service",
            "web",
            "-r",
            "10.0.2.11:8080",
            "-w",
            "5",
        ],
    )?;
    let drift = ok_json(&topo, &sock, &["diff"])?;
    ensure!(
        drift["changes"][0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(".weight")),
        "{drift:#}"
    );
    let drained = ok_json(&topo, &sock, &["drain", "10.0.2.12", "--no-wait"])?;
    ensure!(drained["servers"][0]["port"] == 8080, "{drained:#}");
    let list = ok_json(&topo, &sock, &["list"])?;
    ensure!(
        server(&list, "10.0.2.12").is_some_and(|s| s["weight"] == 0),
        "{list:#}"
    );
    ok_json(
        &topo,
        &sock,
        &["del", "server", "--service", "web", "-r", "10.0.2.13:8080"],
    )?;
    ok_json(
        &topo,
        &sock,
        &[
            "add",
            "server",
            "--service",
            "web",
            "-r",
            "10.0.2.13:8080",
            "-w",
            "2",
        ],
    )?;
    let r = ctl(
        &topo,
        &sock,
        &["del", "server", "--service", "nope", "-r", "10.0.2.13"],
    )?;
    ensure!(
        r.status.code() == Some(1),
        "del of an unknown service: {r:?}"
    );
    ok_text(
        &topo,
        &sock,
        &["add", "service", "extra", "-t", "10.0.1.100:81"],
    )?;
    ok_text(&topo, &sock, &["del", "service", "extra"])?;
    // Back to the file.
    let reload = ok_json(&topo, &sock, &["reload"])?;
    ensure!(
        !reload["changes"].as_array().is_some_and(Vec::is_empty),
        "{reload:#}"
    );
    ensure!(ok_json(&topo, &sock, &["diff"])?["changes"]
        .as_array()
        .is_some_and(Vec::is_empty));

    // A bad file is rejected with file, key and problem; nothing changes.
    // (Once the deleted service, without connections, has been reaped.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let list = ok_json(&topo, &sock, &["list"])?;
        let names: Vec<&str> = list["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["name"].as_str())
            .collect();
        if names == ["web"] {
            break list;
        }
        ensure!(
            Instant::now() < deadline,
            "deleted service never reaped: {list:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let good = std::fs::read_to_string(&config)?;
    std::fs::write(&config, good.replace("weight = 2", "weight = -2"))?;
    let r = ctl(&topo, &sock, &["reload"])?;
    let err = String::from_utf8_lossy(&r.stderr);
    ensure!(r.status.code() == Some(1), "bad reload accepted: {r:?}");
    ensure!(
        err.contains(&config.display().to_string()) && err.contains("weight"),
        "{err}"
    );
    std::fs::write(&config, good.replace("memory_mb = 256", "memory_mb = 512"))?;
    let r = ctl(&topo, &sock, &["reload"])?;
    ensure!(String::from_utf8_lossy(&r.stderr).contains("eal"), "{r:?}");
    std::fs::write(&config, &good)?;
    let after = ok_json(&topo, &sock, &["list"])?;
    ensure!(
        configured(&after) == configured(&before),
        "a rejected reload changed the services:\n{before:#}\n{after:#}"
    );

    // Garbage, truncated and oversized requests while traffic flows.
    let answers = raw(&topo, &sock, "b'not json\\n{\"v\":1,\"id\":3,\"cmd\":{\"op\":\"nope\"}}\\n{\"v\":9,\"id\":4,\"cmd\":{\"op\":\"list\"}}\\n{\"v\":1,\"id\":5,\"cmd\":{\"op\":\"li'")?;
    let codes: Vec<&str> = answers.iter().map(error_code).collect();
    ensure!(
        codes
            == [
                "bad_request",
                "unknown_command",
                "unsupported_version",
                "bad_request"
            ],
        "{answers:?}"
    );
    let answers = raw(&topo, &sock, "b'x'*70000+b'\\n'")?;
    ensure!(
        answers.len() == 1 && error_code(&answers[0]) == "too_large",
        "{answers:?}"
    );
    topo.run_client(100, &vip_url())?.check_all_ok(100)?;

    // Metrics, scraped in the lb namespace and parsed; the control loop
    // refreshes them every second, so until they count the connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, scrape) = loop {
        let out = topo.exec(
            topo.lb_ns(),
            "curl",
            &["-sf", &format!("http://{METRICS}/metrics")],
        )?;
        let text = String::from_utf8(out.stdout)?;
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).context("metrics do not parse")?;
        let conns: f64 = scrape
            .samples
            .iter()
            .filter(|s| s.metric == "pylon_server_connections_total")
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum();
        if conns >= 160.0 {
            break (text, scrape);
        }
        ensure!(
            Instant::now() < deadline,
            "pylon_server_connections_total sums to {conns}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for family in [
        "pylon_worker_drops_total",
        "pylon_port_rx_packets_total",
        "pylon_server_health",
    ] {
        ensure!(
            scrape.samples.iter().any(|s| s.metric == family),
            "no {family}:\n{text}"
        );
    }
    pylon.stop_cleanly()?;
    ensure!(!sock.exists(), "the socket outlived the daemon");
    Ok(())
}

#[test]
fn reload_under_steady_traffic() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::new("prld")?;
    topo.start_http_servers()?;
    // rs1 and rs2 to begin with; the reload removes rs1, adds rs3 and
    // changes rs2's weight.
    let options = PylonOptions::new(1, "wlc");
    let text = topo.pylon_config(&options);
    let rs3 = "\n[[services.servers]]\naddress = \"10.0.2.13\"\nport = 8080\nweight = 3\n";
    let rs1 = "\n[[services.servers]]\naddress = \"10.0.2.11\"\nport = 8080\nweight = 1\n";
    ensure!(
        text.contains(rs1) && text.contains(rs3),
        "unexpected config:\n{text}"
    );
    let mut pylon = topo.run_pylon(&text.replace(rs3, ""))?;
    let (sock, config) = paths(&topo)?;
    topo.run_client(30, &vip_url())?.check_all_ok(30)?;
    let before = ok_json(&topo, &sock, &["list", "--stats"])?;
    let rs2_before = server(&before, "10.0.2.12").context("rs2")?["stats"]["conns"]
        .as_u64()
        .unwrap_or(0);
    ensure!(server(&before, "10.0.2.13").is_none());

    let requests = 1500;
    let result = std::thread::scope(|s| -> Result<_> {
        let client = s.spawn(|| topo.run_client(requests, &vip_url()));
        std::thread::sleep(Duration::from_millis(1500));
        let new = text.replace(rs1, "").replace("weight = 2", "weight = 4");
        std::fs::write(&config, new)?;
        let reload = ok_json(&topo, &sock, &["reload"])?;
        eprintln!("reload: {reload:#}");
        let paths: Vec<&str> = reload["changes"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["path"].as_str()).collect())
            .unwrap_or_default();
        ensure!(paths.len() == 3, "changes {paths:?}");
        let after = ok_json(&topo, &sock, &["list", "--stats"])?;
        let rs2 = server(&after, "10.0.2.12").context("rs2")?;
        ensure!(rs2["weight"] == 4, "{after:#}");
        let rs2_now = rs2["stats"]["conns"].as_u64().unwrap_or(0);
        ensure!(
            rs2_now >= rs2_before,
            "rs2 lost its counters: {rs2_now} < {rs2_before}"
        );
        match client.join() {
            Ok(r) => r,
            Err(_) => bail!("client thread panicked"),
        }
    })?;
    eprintln!(
        "{} ok, {} failed in {:.1} s: {:?}",
        result.ok, result.failed, result.elapsed_s, result.by_server
    );
    result.check_all_ok(requests as u64)?;
    ensure!(
        result.by_server.get("rs3").copied().unwrap_or(0) > 0,
        "rs3 got no traffic"
    );
    ensure!(
        result.elapsed_s >= 2.0,
        "the traffic was not steady over seconds"
    );
    // rs1 took no new connections after the reload and is removed once
    // its connections are gone.
    let after = topo.run_client(200, &vip_url())?;
    after.check_all_ok(200)?;
    ensure!(
        !after.by_server.contains_key("rs1"),
        "rs1 still scheduled: {:?}",
        after.by_server
    );
    // Its connections finish (TIME_WAIT entries linger as InActConn, as in
    // IPVS): no established connection is left on it.
    let mut idle = false;
    for _ in 0..100 {
        let list = ok_json(&topo, &sock, &["list"])?;
        match server(&list, "10.0.2.11") {
            None => idle = true,
            Some(s) => {
                ensure!(s["weight"] == 0, "rs1 still weighted: {list:#}");
                idle = s["active"] == 0;
            }
        }
        if idle {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(idle, "rs1 kept active connections");
    pylon.stop_cleanly()
}
