//! `pylon --config FILE`: the load-balancer daemon.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Pylon: a DPDK layer-4 load balancer (NAT, weighted least-connection).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); see configs/README.md.
    #[arg(short, long)]
    config: PathBuf,
    /// Validate the configuration and exit without starting the dataplane.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A bad config is reported before anything touches DPDK.
    let cfg = match pylon_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pylon: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("{}: ok", args.config.display());
        return ExitCode::SUCCESS;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.control.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match pylon_control::app::run(&cfg, &args.config).context("pylon") {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
