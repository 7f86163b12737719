//! `pylon-demo [--mode nat|dsr|tunnel]`: Pylon balancing real HTTP traffic,
//! on one machine.
//!
//! Builds the namespace topology (a client, pylon, three real servers behind
//! a bridge; for `dsr` and `tunnel` all on one L2 segment, the servers
//! holding the VIP), starts an HTTP server on each real server (weights 1,
//! 2, 3) and pylon (one worker, idle back-off on), sends 600 requests to the
//! VIP and prints which server answered how many, and which way the replies
//! went: through pylon (NAT) or straight to the client (DSR, tunnel). Then
//! keeps everything up for the user's own requests until Ctrl-C, or for
//! `DEMO_SECONDS` seconds when that is set and not empty. Everything is
//! removed on the way out. The mode is `--mode`, else `$MODE` when set and
//! not empty, else `nat`. Must run as root.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pktgen_tests::{server_weights, vip_url, Forwarding, PylonOptions, ReplyPath, Topology};

const REQUESTS: usize = 600;
const USAGE: &str = "usage: pylon-demo [--mode nat|dsr|tunnel]  (or MODE=nat|dsr|tunnel)";

/// The forwarding mode from the command line, else `$MODE`, else NAT.
fn mode() -> Result<Forwarding> {
    let mut args = std::env::args().skip(1);
    let mut mode = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--mode" => args.next().context(USAGE)?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => match arg.strip_prefix("--mode=") {
                Some(value) => value.to_owned(),
                None => bail!("unknown argument {arg:?}\n{USAGE}"),
            },
        };
        mode = Some(value);
    }
    let mode = match mode {
        Some(mode) => mode,
        // Unset or empty (`make demo` passes `MODE=` through): NAT.
        None => std::env::var("MODE")
            .ok()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "nat".to_owned()),
    };
    mode.trim().parse()
}

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
    let forwarding = mode()?;
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
    let mut topo = match forwarding {
        Forwarding::Nat => {
            println!("building the topology (network namespaces, veths, a bridge)...");
            Topology::new("pdemo")?
        }
        Forwarding::Dsr | Forwarding::Tunnel => {
            println!(
                "building the topology (network namespaces, veths, one bridge for the client, \
                 pylon and the real servers; the servers hold the VIP {})...",
                match forwarding {
                    Forwarding::Dsr => "on lo",
                    _ => "on tun0, fed by a userspace IP-in-IP decapsulator",
                }
            );
            Topology::lan("pdemo", forwarding)?
        }
    };
    topo.start_http_servers()?;
    let options = PylonOptions::default();
    println!(
        "starting {} (1 worker, {} scheduler, {forwarding} forwarding) in namespace {}...",
        pylon_bin.display(),
        options.scheduler,
        topo.lb_ns()
    );
    let mut pylon = topo.run_pylon(&topo.pylon_config(&options))?;

    let url = vip_url();
    println!("sending {REQUESTS} requests to {url}, one connection each...\n");
    let (result, path) = ReplyPath::measure(&topo, &mut pylon, REQUESTS as u64, || {
        topo.run_client(REQUESTS, &url)
    })?;
    print!("{}", result.split_report(&server_weights(&options)));
    println!();
    print!("{}", path.report());
    match forwarding {
        Forwarding::Nat => println!(
            "NAT: the replies came back through pylon (reply_packets = {})",
            path.reply_packets
        ),
        Forwarding::Dsr | Forwarding::Tunnel => match path.check_direct() {
            Ok(()) => println!(
                "the replies bypassed pylon: reply_packets = 0, and its port received \
                 {} frames while the real servers sent {} straight to the client",
                path.port_ipackets, path.servers_sent
            ),
            Err(e) => println!("the replies did NOT bypass pylon: {e:#}"),
        },
    }

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
