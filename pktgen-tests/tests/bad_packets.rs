//! End to end, hostile input: with pylon running (one worker), the client
//! namespace sends crafted malformed frames (`scripts/inject.py`) to pylon's
//! MAC, aimed at the VIP. Each kind must be counted under its drop reason,
//! and pylon must go on serving: 200 good requests afterwards all succeed,
//! and it still exits 0.
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Result};
use pktgen_tests::{drops, e2e_lock, harmful_drops, preflight, vip_url, PylonOptions, Topology};
use serde_json::Value;

/// Frames of each kind.
const EACH: usize = 5;

/// Drop reason -> the least it must count after the injection.
fn expected() -> BTreeMap<&'static str, u64> {
    let each = EACH as u64;
    BTreeMap::from([
        // truncated IPv4 header + TCP data offset 4
        ("bad_header", 2 * each),
        ("ip_options", each),
        // first fragment + later fragment
        ("fragment", 2 * each),
        ("bad_ip_checksum", each),
        ("ttl_expired", each),
        ("bad_tcp_flags", each),
        ("not_ipv4", each),
    ])
}

fn shortfall(stats: &Value) -> BTreeMap<&'static str, (u64, u64)> {
    let got = drops(stats);
    expected()
        .into_iter()
        .filter_map(|(reason, least)| {
            let n = got.get(reason).copied().unwrap_or(0);
            (n < least).then_some((reason, (n, least)))
        })
        .collect()
}

#[test]
fn malformed_frames_are_counted_and_dropped() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::new("pe2e")?;
    topo.start_http_servers()?;
    let mut pylon = topo.run_pylon(&topo.pylon_config(&PylonOptions::new(1, "wlc")))?;

    let sent = topo.inject_bad_frames(EACH)?;
    eprintln!("injected: {sent}");
    ensure!(
        sent["frames"].as_u64() == Some(9 * EACH as u64),
        "inject.py sent {sent}"
    );

    // The frames are in flight for a moment: poll until the counters show
    // them (or give up and report what they show).
    let stats = pylon.stats_until(Duration::from_secs(5), |s| shortfall(s).is_empty())?;
    let missing = shortfall(&stats);
    ensure!(
        missing.is_empty(),
        "drop counters short (reason: (got, expected at least)): {missing:?}\nall drops: {:?}",
        drops(&stats)
    );
    eprintln!("drops after injection: {:?}", drops(&stats));

    let result = topo.run_client(200, &vip_url())?;
    result.check_all_ok(200)?;

    // Nothing beyond the injected frames was dropped for a reason that
    // means lost traffic.
    let stats = pylon.stats()?;
    let unexpected: BTreeMap<String, u64> = harmful_drops(&stats)
        .into_iter()
        .filter(|(reason, _)| !expected().contains_key(reason.as_str()))
        .collect();
    ensure!(
        unexpected.is_empty(),
        "pylon dropped packets of good traffic: {unexpected:?}\nstats: {stats:#}"
    );

    pylon.stop_cleanly()
}
