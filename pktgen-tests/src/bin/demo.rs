//! `pylon-demo`: Pylon balancing real HTTP traffic, on one machine.
//!
//! Builds the namespace topology (a client, pylon, three real servers behind
//! a bridge), starts an HTTP server on each real server (weights 1, 2, 3)
//! and pylon (one worker, idle back-off on), sends 600 requests to the VIP
//! and prints which server answered how many. Then keeps everything up for
//! the user's own requests until Ctrl-C, or for `DEMO_SECONDS` seconds when
//! that is set and not empty. Everything is removed on the way out. Must run as root.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pktgen_tests::{server_weights, vip_url, PylonOptions, Topology};

const REQUESTS: usize = 600;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pylon-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    // Unset or empty (`make demo` passes `DEMO_SECONDS=` through): until Ctrl-C.
    let run_for = match std::env::var("DEMO_SECONDS") {
        Ok(s) if !s.trim().is_empty() => {
            Some(Duration::from_secs(s.trim().parse().with_context(
                || format!("DEMO_SECONDS={s:?} is not a number of seconds"),
            )?))
        }
        _ => None,
    };

    pktgen_tests::require_root()?;
    let pylon_bin = pktgen_tests::pylon_binary()?;
    println!("building the topology (network namespaces, veths, a bridge)...");
    let mut topo = Topology::new("pdemo")?;
    topo.start_http_servers()?;
    let options = PylonOptions::default();
    println!(
        "starting {} (1 worker, {} scheduler) in namespace {}...",
        pylon_bin.display(),
        options.scheduler,
        topo.lb_ns()
    );
    let mut pylon = topo.run_pylon(&topo.pylon_config(&options))?;

    let url = vip_url();
    println!("sending {REQUESTS} requests to {url}, one connection each...\n");
    let result = topo.run_client(REQUESTS, &url)?;
    print!("{}", result.split_report(&server_weights(&options)));

    let stats = pylon.stats()?;
    println!(
        "\npylon: {} packets in, {} out, {} live connections",
        pktgen_tests::worker_total(&stats, "rx_packets"),
        pktgen_tests::worker_total(&stats, "tx_packets"),
        stats["conns"]["live"]
    );

    println!("\ntry it yourself:");
    println!("  ip netns exec {} curl {url}", topo.client_ns());
    match run_for {
        Some(d) => println!(
            "\nserving for {} s (DEMO_SECONDS), or until Ctrl-C...",
            d.as_secs()
        ),
        None => println!("\nserving until Ctrl-C..."),
    }
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && run_for.map_or(true, |d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(100));
    }

    println!("stopping pylon and removing the topology...");
    let status = pylon.stop()?;
    drop(pylon);
    drop(topo);
    println!("pylon exited with {status}; cleaned up.");
    Ok(())
}
