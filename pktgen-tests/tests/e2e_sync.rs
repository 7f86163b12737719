//! End to end, connection sync between two appliances in NAT mode (issue
//! 8), on [`NatPair`]: A (priority 200) and B (100), both preempting, share
//! the VIP 10.0.1.100 (VRID 51) and the real servers' gateway 10.0.2.1
//! (VRID 52); a management link carries the sync datagrams
//! (`[sync]` on 10.0.9.1/2:8848, one shared key).
//!
//! - `nat_failover_and_failback_keep_connections`: 120 keep-alive HTTP
//!   connections through the VIP, one request every 100 ms each; A (master)
//!   is SIGKILLed, B takes over with A's connections; A comes back, waits
//!   for B's full table (held at priority 1), then preempts. At least 99 %
//!   of the connections must carry on through both moves without a reset
//!   or a failed request; the exact numbers are printed.
//! - `forged_replayed_and_truncated_sync_datagrams_install_nothing`:
//!   `sync_inject.py` replays a captured datagram of B's, truncates one and
//!   forges connection updates with a wrong key; A counts each under its
//!   reason and installs nothing.
//! - `configuration_differences_are_reported_on_both_sides`: a weight
//!   changed with pylonctl on A makes `pylonctl sync` on both appliances
//!   report the peer's configuration as different (exit status 4) and both
//!   logs say so; changing it back makes them agree again.
//! - `a_pushed_configuration_is_applied_on_the_backup`: with
//!   `push_config` on A and `accept_config` on B, A's sorry server (in
//!   A's file only), a weight changed and a server deleted on A reach B's
//!   running configuration by themselves.
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`).

mod sync_common;

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use pktgen_tests::nat_pair::{NatPair, Side};
use pktgen_tests::process::{ns_command, pylonctl_binary, run_checked};
use pktgen_tests::topology::{python, CLIENT_ADDR, SERVER_ADDRS, VIP};
use pktgen_tests::{e2e_lock, preflight, PylonProcess};
use serde_json::Value;
use sync_common::{failover_and_failback, sync_counter, wait_state, Pair, KEY, SYNC_IF, SYNC_PORT};

const SYNC_INJECT_PY: &str = include_str!("../scripts/sync_inject.py");

impl Pair for NatPair {
    fn mode(&self) -> &'static str {
        "NAT"
    }

    fn start(&self, a: bool, priority: u8) -> Result<PylonProcess> {
        let side = if a { Side::A } else { Side::B };
        NatPair::start(self, side, &self.config(side, priority, KEY)?)
    }

    fn client_ns(&self) -> &str {
        NatPair::client_ns(self)
    }

    fn dir(&self) -> PathBuf {
        NatPair::dir(self).to_owned()
    }
}

/// A (priority 200) up as MASTER, then B (100) as BACKUP.
fn master_and_backup(sp: &NatPair) -> Result<(PylonProcess, PylonProcess)> {
    let mut a = Pair::start(sp, true, 200)?;
    wait_state(&mut a, "MASTER", Duration::from_secs(15))?;
    let mut b = Pair::start(sp, false, 100)?;
    wait_state(&mut b, "BACKUP", Duration::from_secs(15))?;
    Ok((a, b))
}

/// A drop counter of the `"sync"` stats.
fn sync_drop(stats: &Value, reason: &str) -> u64 {
    stats["sync"]["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn nat_failover_and_failback_keep_connections() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    failover_and_failback(&NatPair::new("esyncnat")?)
}

#[test]
fn forged_replayed_and_truncated_sync_datagrams_install_nothing() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let sp = NatPair::new("esyncinj")?;
    let (mut a, mut b) = master_and_backup(&sp)?;
    // A has adopted B's session (its startup transfer request answered).
    let before = a.stats_until(Duration::from_secs(10), |s| {
        s["sync"]["peers"][0]["adopted"] == true
    })?;
    ensure!(
        before["sync"]["peers"][0]["adopted"] == true,
        "A never adopted B's session: {}",
        before["sync"]
    );
    let script = sp.script("sync_inject.py", SYNC_INJECT_PY)?;
    let out = run_checked(
        ns_command(&sp.ns(Side::B), python())
            .arg(&script)
            .args(["--iface", SYNC_IF, "--peer-ip", Side::B.sync_addr()])
            .args(["--port", &SYNC_PORT.to_string()])
            .args(["--replays", "5", "--truncated", "3", "--forged", "5"])
            .args(["--client-ip", CLIENT_ADDR, "--vip", VIP])
            .args(["--rip", SERVER_ADDRS[0]]),
    )?;
    let injected: Value =
        serde_json::from_slice(&out.stdout).context("sync_inject.py printed no JSON")?;
    eprintln!("injected: {injected}");
    let after = a.stats_until(Duration::from_secs(5), |s| {
        sync_drop(s, "bad_mac") >= sync_drop(&before, "bad_mac") + 5
            && sync_drop(s, "replay") >= sync_drop(&before, "replay") + 5
            && sync_drop(s, "truncated") >= sync_drop(&before, "truncated") + 3
    })?;
    for (reason, n) in [("replay", 5), ("truncated", 3), ("bad_mac", 5)] {
        let delta = sync_drop(&after, reason) - sync_drop(&before, reason);
        println!("sync datagrams dropped as {reason}: {delta} (injected {n})");
        ensure!(
            delta == n,
            "{reason}: {delta} counted, {n} injected: {}",
            after["sync"]
        );
    }
    for key in ["installed", "updated", "expired"] {
        ensure!(
            sync_counter(&after, key) == sync_counter(&before, key),
            "A {key} something: {} -> {}",
            before["sync"],
            after["sync"]
        );
    }
    ensure!(
        after["conns"]["live"] == before["conns"]["live"],
        "A's table changed: {} -> {}",
        before["conns"],
        after["conns"]
    );
    println!(
        "A's table: {} connections before and after; installed {} before and after",
        before["conns"]["live"],
        sync_counter(&after, "installed")
    );
    a.stop_cleanly()?;
    b.stop_cleanly()?;
    Ok(())
}

/// `pylonctl ARGS` against one side's daemon; its output whatever the exit.
fn ctl(sp: &NatPair, side: Side, args: &[&str]) -> Result<Output> {
    Ok(ns_command(&sp.ns(side), pylonctl_binary()?)
        .args(args)
        .arg("--socket")
        .arg(sp.socket(side))
        .output()?)
}

/// Polls `pylonctl --json sync` on `side` until its peer's configuration
/// is reported `same` (`want` true) or `differs`; returns the last answer
/// and pylonctl's exit status.
fn wait_config(sp: &NatPair, side: Side, want: bool) -> Result<(Value, i32)> {
    // Digests go out every 2 s.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let out = ctl(sp, side, &["--json", "sync"])?;
        let data: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "pylonctl sync printed no JSON: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        if data["peers"][0]["config_in_sync"] == want {
            return Ok((data, out.status.code().unwrap_or(-1)));
        }
        ensure!(
            Instant::now() < deadline,
            "{}: peer config never {}: {data:#}",
            side.name(),
            if want { "same" } else { "differs" }
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn configuration_differences_are_reported_on_both_sides() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let sp = NatPair::new("esynccfg")?;
    let (mut a, mut b) = master_and_backup(&sp)?;
    for side in [Side::A, Side::B] {
        let (data, status) = wait_config(&sp, side, true)?;
        ensure!(status == 0, "{}: exit {status} while in sync", side.name());
        ensure!(
            data["config"]["servers"] == 3 && data["peers"][0]["config"] == data["config"],
            "{}: {data:#}",
            side.name()
        );
    }
    let text = ctl(&sp, Side::A, &["sync"])?;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    println!("pylonctl sync on A, in sync:\n{text}");
    ensure!(text.contains("same"), "{text}");

    let rs1 = format!("{}:8080", SERVER_ADDRS[0]);
    let edit = |weight: &str| -> Result<()> {
        let out = ctl(
            &sp,
            Side::A,
            &[
                "edit",
                "server",
                "--service",
                "web",
                "-r",
                &rs1,
                "-w",
                weight,
            ],
        )?;
        ensure!(
            out.status.success(),
            "edit server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    edit("9")?;
    let started = Instant::now();
    for side in [Side::A, Side::B] {
        let (data, status) = wait_config(&sp, side, false)?;
        ensure!(
            status == 4,
            "{}: exit {status} with a differing peer",
            side.name()
        );
        ensure!(data["config_in_sync"] == false, "{data:#}");
    }
    println!(
        "weight changed on A: both sides report the difference after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let text = ctl(&sp, Side::B, &["sync"])?;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    println!("pylonctl sync on B, differing:\n{text}");
    ensure!(text.contains("differs"), "{text}");
    for (name, p) in [("A", &a), ("B", &b)] {
        ensure!(
            p.log().contains("configuration differs from the peer's"),
            "{name}'s log does not report the difference:\n{}",
            p.log()
        );
    }
    edit("1")?;
    for side in [Side::A, Side::B] {
        wait_config(&sp, side, true)?;
    }
    a.stop_cleanly()?;
    b.stop_cleanly()?;
    Ok(())
}

/// `pylonctl --json ARGS` on `side`, which must succeed.
fn ctl_json(sp: &NatPair, side: Side, args: &[&str]) -> Result<Value> {
    let out = ctl(sp, side, &[&["--json"], args].concat())?;
    ensure!(
        out.status.success(),
        "pylonctl {args:?} on {}: {}",
        side.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The weight of each real server of service `web`, as `list` shows them.
fn weights(sp: &NatPair, side: Side) -> Result<Vec<(String, u64)>> {
    let list = ctl_json(sp, side, &["list"])?;
    let servers = list["services"][0]["servers"]
        .as_array()
        .context("list has no servers")?;
    Ok(servers
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap_or("?").to_owned(),
                s["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect())
}

/// `config` with a sorry server for its (first) service.
fn with_sorry(config: &str, (address, port): (&str, u16)) -> Result<String> {
    let mut table: toml::Table = config.parse().context("generated config")?;
    let service = table
        .get_mut("services")
        .and_then(|s| s.as_array_mut()?.first_mut()?.as_table_mut())
        .context("generated config has no service")?;
    let mut sorry = toml::Table::new();
    sorry.insert("address".into(), address.into());
    sorry.insert("port".into(), i64::from(port).into());
    service.insert("sorry".into(), sorry.into());
    Ok(toml::to_string(&table)?)
}

#[test]
fn a_pushed_configuration_is_applied_on_the_backup() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let sp = NatPair::new("esyncpush")?;
    let config = |side, priority, key: &str| -> Result<String> {
        Ok(sp.config(side, priority, KEY)? + key + " = true\n")
    };
    let sorry = (SERVER_ADDRS[2], 8081);
    let a_config = with_sorry(&config(Side::A, 200, "push_config")?, sorry)?;
    let mut a = NatPair::start(&sp, Side::A, &a_config)?;
    wait_state(&mut a, "MASTER", Duration::from_secs(15))?;
    let mut b = NatPair::start(&sp, Side::B, &config(Side::B, 100, "accept_config")?)?;
    wait_state(&mut b, "BACKUP", Duration::from_secs(15))?;
    wait_config(&sp, Side::B, true)?;
    let before = weights(&sp, Side::B)?;
    ensure!(before.len() == 3, "B runs {before:?}");

    let rs1 = format!("{}:8080", SERVER_ADDRS[0]);
    let rs3 = format!("{}:8080", SERVER_ADDRS[2]);
    ctl_json(
        &sp,
        Side::A,
        &["edit", "server", "--service", "web", "-r", &rs1, "-w", "9"],
    )?;
    ctl_json(
        &sp,
        Side::A,
        &["del", "server", "--service", "web", "-r", &rs3],
    )?;
    let started = Instant::now();
    let want = vec![
        (SERVER_ADDRS[0].to_owned(), 9),
        (SERVER_ADDRS[1].to_owned(), before[1].1),
    ];
    let mut now = weights(&sp, Side::B)?;
    while now != want {
        ensure!(
            started.elapsed() < Duration::from_secs(8),
            "B still runs {now:?}, A pushed {want:?}\n--- B's log ---\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
        now = weights(&sp, Side::B)?;
    }
    println!(
        "A's change reached B's running configuration in {:.1} s: {now:?}",
        started.elapsed().as_secs_f64()
    );
    let (data, status) = wait_config(&sp, Side::B, true)?;
    ensure!(
        status == 0 && data["pushes_received"].as_u64() >= Some(1),
        "{data:#}"
    );
    let diff = ctl_json(&sp, Side::B, &["diff"])?;
    let paths: Vec<&str> = diff["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["path"].as_str())
        .collect();
    let sorry_pushed = diff["changes"].as_array().into_iter().flatten().any(|c| {
        c["path"] == "services[web].sorry" && c["new"] == format!("{}:{}", sorry.0, sorry.1)
    });
    ensure!(
        paths.iter().any(|p| p.ends_with(".weight")) && sorry_pushed && paths.len() == 3,
        "B's diff against its file: {diff:#}"
    );
    ensure!(
        b.log()
            .contains("applied the configuration the peer pushed"),
        "{}",
        b.log()
    );
    a.stop_cleanly()?;
    b.stop_cleanly()?;
    Ok(())
}
