//! `pylon-bench`: the benchmark behind `make bench`.
//!
//! ```text
//! pylon-bench [--quick] [--rounds N] [--sync-pairs N] [--seconds S] [--wrk-seconds S]
//!             [--servers nginx|python] [--skip-pktgen] [--skip-real]
//!             [--only NAME[:FLOWS][,...]] [--out DIR]
//! ```
//!
//! 1. Packet rates: runs itself as `pylon-bench pktgen` (a child process,
//!    because DPDK's EAL initialises once per process and pins its threads)
//!    to measure every scenario of `pktgen::scenario::standard` `--rounds`
//!    times, keeping each scenario's best round; then `--sync-pairs` times
//!    (default 25) the two scenarios of `scenario::sync_pair`, `nat_new`
//!    without and with connection sync back to back, for the sync target.
//! 2. Real traffic: Pylon and HAProxy side by side with `wrk` (see
//!    `bench::real`).
//! 3. Writes `DIR/results.json` and `DIR/mpps.svg` (DIR defaults to
//!    `target/bench`) and prints the table.
//!
//! `pylon-bench fastpath [--flows N] [--packets N]` runs Pylon's per-packet
//! code alone on plain buffers (no DPDK, no root), for profilers such as
//! `valgrind --tool=callgrind` (see `pktgen::fastpath`).
//!
//! Needs root. Takes the end-to-end lock, so no namespace test runs
//! meanwhile. Ctrl-C or SIGTERM stops it cleanly: namespaces, processes and
//! DPDK runtime directories are removed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pktgen_tests::bench::real::{self, Servers};
use pktgen_tests::bench::report::{best_rounds, svg, Machine, Results};
use pktgen_tests::pktgen::{fastpath, scenario, Outcome, Rig, Settings};
use pktgen_tests::process::{self, pid_alive, require_root, warn};
use pktgen_tests::pylon::dpdk_runtime_dir;

/// Set in the child so it does not take the lock its parent holds.
const LOCKED_ENV: &str = "PYLON_BENCH_LOCKED";
/// DPDK file prefix of a `pylon-bench pktgen` process: this plus its pid.
const PREFIX: &str = "pylon-bench-";

#[derive(Debug)]
struct Args {
    pktgen_child: bool,
    fastpath: bool,
    flows: u32,
    packets: u64,
    json: Option<PathBuf>,
    quick: bool,
    rounds: u32,
    /// Back-to-back pairs of `nat_new` without and with sync.
    sync_pairs: u32,
    seconds: f64,
    wrk_seconds: u32,
    servers: Servers,
    skip_pktgen: bool,
    skip_real: bool,
    /// Only the scenarios with these names (and flows before the
    /// measurement); all when empty.
    only: Vec<(String, Option<u32>)>,
    out: PathBuf,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        pktgen_child: false,
        fastpath: false,
        flows: 1_000_000,
        packets: 4_000_000,
        json: None,
        quick: false,
        rounds: 3,
        sync_pairs: 25,
        seconds: 3.0,
        wrk_seconds: 10,
        servers: Servers::Nginx,
        skip_pktgen: false,
        skip_real: false,
        only: Vec::new(),
        out: PathBuf::from("target/bench"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "pktgen" => args.pktgen_child = true,
            "fastpath" => args.fastpath = true,
            "--flows" => args.flows = value()?.parse().context("--flows")?,
            "--packets" => args.packets = value()?.parse().context("--packets")?,
            "--json" => args.json = Some(PathBuf::from(value()?)),
            "--quick" => args.quick = true,
            "--rounds" => args.rounds = value()?.parse().context("--rounds")?,
            "--sync-pairs" => args.sync_pairs = value()?.parse().context("--sync-pairs")?,
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--wrk-seconds" => args.wrk_seconds = value()?.parse().context("--wrk-seconds")?,
            "--servers" => {
                args.servers = match value()?.as_str() {
                    "nginx" => Servers::Nginx,
                    "python" => Servers::Python,
                    other => bail!("--servers {other}: expected nginx or python"),
                }
            }
            "--skip-pktgen" => args.skip_pktgen = true,
            "--skip-real" => args.skip_real = true,
            "--only" => {
                for v in value()?.split(',') {
                    args.only.push(match v.split_once(':') {
                        Some((name, flows)) => {
                            (name.to_owned(), Some(flows.parse().context("--only")?))
                        }
                        None => (v.to_owned(), None),
                    });
                }
            }
            "--out" => args.out = PathBuf::from(value()?),
            "-h" | "--help" => {
                println!(
                    "usage: pylon-bench [--quick] [--rounds N] [--sync-pairs N] [--seconds S] [--wrk-seconds S] \
                     [--servers nginx|python] [--skip-pktgen] [--skip-real] [--only NAME[:FLOWS][,...]] \
                     [--out DIR]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (see --help)"),
        }
    }
    if args.quick {
        args.seconds = args.seconds.min(1.0);
        args.wrk_seconds = args.wrk_seconds.min(3);
        args.rounds = 1;
        args.sync_pairs = args.sync_pairs.min(3);
    }
    if args.rounds == 0 || args.seconds <= 0.0 || args.wrk_seconds == 0 {
        bail!("--rounds, --seconds and --wrk-seconds must be positive");
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            warn(format_args!("pylon-bench: {e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Ok(false): the run finished but something did not verify.
fn run() -> Result<bool> {
    let args = parse_args()?;
    if args.fastpath {
        let run = fastpath::run(args.flows, args.packets)?;
        println!(
            "{} flows: {} packets in {:.3} s, {:.1} ns per packet ({:.2} Mpps on one core, \
             frame building included)",
            run.flows,
            run.packets,
            run.seconds,
            run.seconds * 1e9 / run.packets as f64,
            run.packets as f64 / run.seconds / 1e6
        );
        return Ok(true);
    }
    require_root()?;
    let _lock = if std::env::var_os(LOCKED_ENV).is_some() {
        None
    } else {
        Some(process::e2e_lock()?)
    };
    if args.pktgen_child {
        return pktgen_child(&args).map(|()| true);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("signal handler")?;
    }
    remove_stale_runtime_dirs()?;
    if !args.skip_real {
        // Root, the pylon binary, ip, ethtool, python3; wrk, HAProxy and
        // nginx are checked when they start.
        process::preflight()?;
    }
    let machine = Machine::probe();
    eprintln!(
        "machine: {}; load {}",
        machine.describe(),
        machine.load_at_start
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let started = Instant::now();
    let rounds = if args.skip_pktgen {
        Vec::new()
    } else {
        run_pktgen_child(&args, &stop)?
    };
    eprintln!("packet rates measured in {:?}", started.elapsed());
    let real_settings = real::Settings {
        servers: args.servers,
        seconds: args.wrk_seconds,
        threads: 2,
        connections: 64,
        rounds: args.rounds,
    };
    let real_traffic = if args.skip_real {
        Vec::new()
    } else {
        if stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        real::run(&real_settings, &stop)?
    };
    let settings = serde_json::json!({
        "rounds": args.rounds,
        "seconds_per_measurement": args.seconds,
        "window_ms": 100,
        "full_check_sample": 64,
        "quick": args.quick,
        "real_traffic": real_settings,
        "duration_s": started.elapsed().as_secs_f64().round(),
    });
    let results = Results::new(machine, best_rounds(&rounds), real_traffic, settings);
    let json_path = args.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = args.out.join("mpps.svg");
    std::fs::write(&svg_path, svg(&results))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    println!("{}", results.table());
    println!(
        "wrote {} and {} in {:.0?}",
        json_path.display(),
        svg_path.display(),
        started.elapsed()
    );
    Ok(results.all_verified())
}

/// Runs `pylon-bench pktgen` and reads its rounds back.
fn run_pktgen_child(args: &Args, stop: &AtomicBool) -> Result<Vec<Vec<Outcome>>> {
    let json = args.out.join("pktgen-rounds.json");
    // This very binary, even if a build has replaced the file meanwhile.
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("pktgen")
        .arg("--json")
        .arg(&json)
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--sync-pairs", &args.sync_pairs.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .env(LOCKED_ENV, "1")
        // A fixed mmap threshold: every large allocation (connection
        // tables) is its own mapping, returned to the kernel when freed,
        // so the next scenario's VmRSS growth is its own table's, not
        // memory glibc kept from the last one.
        .env("MALLOC_MMAP_THRESHOLD_", "131072");
    if args.quick {
        cmd.arg("--quick");
    }
    if !args.only.is_empty() {
        let only: Vec<String> = args
            .only
            .iter()
            .map(|(name, flows)| flows.map_or(name.clone(), |f| format!("{name}:{f}")))
            .collect();
        cmd.args(["--only", &only.join(",")]);
    }
    let mut child = cmd.spawn().context("starting pylon-bench pktgen")?;
    let prefix = format!("{PREFIX}{}", child.id());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Ok(status);
        }
        if stop.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            break Err(anyhow::anyhow!("interrupted"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // A child that died (a panic on an lcore aborts) leaves its EAL
    // runtime directory behind.
    let runtime = dpdk_runtime_dir(&prefix);
    if runtime.exists() {
        std::fs::remove_dir_all(&runtime)
            .with_context(|| format!("removing {}", runtime.display()))?;
    }
    let status = status?;
    if !status.success() {
        bail!("pylon-bench pktgen failed ({status})");
    }
    let text =
        std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))
}

/// The child: every scenario, `rounds` times, into `--json`.
fn pktgen_child(args: &Args) -> Result<()> {
    let json = args.json.as_deref().context("pktgen needs --json")?;
    let rig = Rig::new(&format!("{PREFIX}{}", std::process::id()))?;
    let settings = Settings {
        duration: Duration::from_secs_f64(args.seconds),
        sample: 64,
    };
    let wanted = |sc: &scenario::Scenario| {
        args.only.is_empty()
            || args
                .only
                .iter()
                .any(|(name, flows)| sc.name == name && flows.map_or(true, |f| f == sc.flows))
    };
    let run = |label: String, scenarios: Vec<scenario::Scenario>| -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::new();
        for sc in scenarios.into_iter().filter(wanted) {
            let started = Instant::now();
            let o = scenario::run(&rig, &sc, &settings)
                .with_context(|| format!("{} with {} flows", sc.name, sc.flows))?;
            eprintln!(
                "{label}: {:<17} {:>9} flows {:7.3} Mpps (median {:.3}, {:.0} per poll) {} in {:.1?}",
                o.name,
                o.flows,
                o.mpps,
                o.mpps_median,
                o.packets_per_busy_poll,
                if o.verified { "verified" } else { "NOT VERIFIED" },
                started.elapsed()
            );
            for e in &o.errors {
                eprintln!("    {e}");
            }
            outcomes.push(o);
        }
        Ok(outcomes)
    };
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        rounds.push(run(
            format!("round {round}"),
            scenario::standard(args.quick),
        )?);
    }
    // Each pair is a "round" of its own two scenarios: `best_rounds`
    // keeps every pair's rates in order, which the sync target pairs up.
    // Every other pair runs sync first, so that whatever the second run
    // of a pair gains or loses by coming second falls on both sides.
    for pair in 1..=args.sync_pairs {
        let mut both = scenario::sync_pair(args.quick);
        if pair % 2 == 0 {
            both.reverse();
        }
        rounds.push(run(format!("pair {pair}"), both.into())?);
    }
    write_json(json, &rounds)
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string(value)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Removes `/var/run/dpdk/pylon-bench-<pid>` of runs that are gone.
fn remove_stale_runtime_dirs() -> Result<()> {
    let Ok(entries) = std::fs::read_dir("/var/run/dpdk") else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !pid_alive(pid) {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
}
