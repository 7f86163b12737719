//! What the DSR and tunnel end-to-end tests share.

use anyhow::{ensure, Result};
use pktgen_tests::{
    e2e_lock, harmful_drops, preflight, server_conns, server_weights, vip_url, Forwarding,
    PylonOptions, ReplyPath, Topology,
};

/// Relative tolerance of each server's share: |share - expected| <= 10% of expected.
const TOLERANCE: f64 = 0.10;

/// Runs `requests` HTTP requests (one connection each) through a pylon with
/// `workers` workers (wlc, weights 1/2/3) on a [`Topology::lan`] in
/// `forwarding` mode. Every request must succeed, the split must follow the
/// weights within 10 %, the replies must bypass pylon
/// ([`ReplyPath::check_direct`]), pylon must drop nothing that matters and
/// exit 0 on SIGTERM leaving no DPDK runtime files.
pub fn direct_return(forwarding: Forwarding, workers: usize, requests: usize) -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::lan("pdirect", forwarding)?;
    topo.start_http_servers()?;
    let options = PylonOptions::new(workers, "wlc");
    let mut pylon = topo.run_pylon(&topo.pylon_config(&options))?;

    let (result, path) = ReplyPath::measure(&topo, &mut pylon, requests as u64, || {
        topo.run_client(requests, &vip_url())
    })?;
    let weights = server_weights(&options);
    eprintln!(
        "{forwarding}, {workers} workers, wlc, {requests} requests:\n{}{}",
        result.split_report(&weights),
        path.report()
    );
    result.check_all_ok(requests as u64)?;
    result.check_weights(&weights, TOLERANCE)?;
    path.check_direct()?;

    let stats = pylon.stats()?;
    let harmful = harmful_drops(&stats);
    ensure!(
        harmful.is_empty(),
        "pylon dropped packets: {harmful:?}\nstats: {stats:#}"
    );
    let conns = server_conns(&stats);
    ensure!(
        conns.len() == 3,
        "stats list servers {conns:?}, expected the three real servers"
    );
    eprintln!("server conns (active, inactive): {conns:?}");

    pylon.stop_cleanly()
}
