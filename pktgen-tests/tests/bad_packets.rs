//! End to end, hostile input: with pylon running (one worker), the client
//! namespace sends crafted malformed frames (`scripts/inject.py`) to pylon's
//! MAC, aimed at the VIP. Each kind must be counted under its drop reason,
//! and pylon must go on serving: 200 good requests afterwards all succeed,
//! and it still exits 0.
//!
//! IPv4 fragments are a special case on `net_af_packet` ports: DPDK 22.11's
//! af_packet PMD joins every queue's socket to a `PACKET_FANOUT` group with
//! `PACKET_FANOUT_FLAG_DEFRAG` (hard-coded in `rte_eth_af_packet.c`), so the
//! lb namespace's kernel takes fragments for reassembly before they reach any
//! ring, and pylon never sees them. Every fragment must therefore show up
//! either in pylon's `fragment` counter or in that kernel's `ReasmReqds`.
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

    let lb = topo.lb_ns().to_owned();
    let reasm_before = topo.ip_snmp(&lb, "ReasmReqds")?;
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

    // First fragments + later fragments: counted by pylon, or taken by the
    // kernel's af_packet defragmentation (see the top of this file).
    let fragments = 2 * EACH as u64;
    let counted = drops(&stats).get("fragment").copied().unwrap_or(0);
    let taken_by_kernel = topo.ip_snmp(&lb, "ReasmReqds")? - reasm_before;
    ensure!(
        counted + taken_by_kernel >= fragments,
        "{fragments} fragments sent: pylon counted {counted}, the lb kernel took {taken_by_kernel}"
    );
    eprintln!("fragments: pylon counted {counted}, the lb kernel took {taken_by_kernel}");

    let result = topo.run_client(200, &vip_url())?;
    result.check_all_ok(200)?;

    // Nothing beyond the injected frames was dropped for a reason that
    // means lost traffic.
    let stats = pylon.stats()?;
    let unexpected: BTreeMap<String, u64> = harmful_drops(&stats)
        .into_iter()
        .filter(|(reason, _)| reason != "fragment" && !expected().contains_key(reason.as_str()))
        .collect();
    ensure!(
        unexpected.is_empty(),
        "pylon dropped packets of good traffic: {unexpected:?}\nstats: {stats:#}"
    );

    pylon.stop_cleanly()
}
