//! End to end, NAT forwarding: a client in its namespace sends real HTTP
//! requests (one TCP connection each) to the VIP; pylon, on af_packet ports
//! in the lb namespace, spreads them over three real HTTP servers with
//! weights 1, 2 and 3. Every request must succeed, the split must follow the
//! scheduler, pylon must drop nothing that matters, and it must exit 0 on
//! SIGTERM leaving no DPDK runtime files.
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`). The tests take a
//! machine-wide lock, so they run one at a time even without
//! `--test-threads=1`.

use anyhow::{ensure, Result};
use pktgen_tests::{
    e2e_lock, harmful_drops, preflight, server_conns, server_weights, vip_url, worker_total,
    PylonOptions, Topology,
};

/// Relative tolerance of each server's share: |share - expected| <= 10% of expected.
const TOLERANCE: f64 = 0.10;

/// Runs `requests` requests through a pylon with these options and checks
/// them against `expected` (server name, relative share).
fn balance(options: PylonOptions, requests: usize, expected: &[(&str, u32)]) -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::new("pe2e")?;
    topo.start_http_servers()?;
    let mut pylon = topo.run_pylon(&topo.pylon_config(&options))?;

    let result = topo.run_client(requests, &vip_url())?;
    eprintln!(
        "{} workers, {}, {requests} requests:\n{}",
        options.workers,
        options.scheduler,
        result.split_report(expected)
    );
    result.check_all_ok(requests as u64)?;
    result.check_weights(expected, TOLERANCE)?;

    let stats = pylon.stats()?;
    let harmful = harmful_drops(&stats);
    ensure!(
        harmful.is_empty(),
        "pylon dropped packets: {harmful:?}\nstats: {stats:#}"
    );
    // A connection is at least SYN, ACK, request, FIN from the client and
    // SYN-ACK, response+FIN from the server.
    let rx = worker_total(&stats, "rx_packets");
    ensure!(
        rx >= 6 * requests as u64,
        "pylon's workers received only {rx} packets for {requests} connections: {stats:#}"
    );
    let conns = server_conns(&stats);
    ensure!(
        conns.len() == 3,
        "stats list servers {conns:?}, expected the three real servers"
    );
    eprintln!("server conns (active, inactive): {conns:?}");

    pylon.stop_cleanly()
}

#[test]
fn nat_wlc_one_worker() -> Result<()> {
    let options = PylonOptions::new(1, "wlc");
    let weights = server_weights(&options);
    balance(options, 1200, &weights)
}

#[test]
fn nat_wlc_two_workers() -> Result<()> {
    let options = PylonOptions::new(2, "wlc");
    let weights = server_weights(&options);
    balance(options, 1200, &weights)
}

#[test]
fn nat_wrr_one_worker() -> Result<()> {
    let options = PylonOptions::new(1, "wrr");
    let weights = server_weights(&options);
    balance(options, 300, &weights)
}

#[test]
fn nat_rr_ignores_weights() -> Result<()> {
    // Weights stay 1/2/3 in the config; round robin must not look at them.
    balance(
        PylonOptions::new(1, "rr"),
        300,
        &[("rs1", 1), ("rs2", 1), ("rs3", 1)],
    )
}
