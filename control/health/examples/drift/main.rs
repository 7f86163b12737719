//! Start-time drift of the health-check engine: N TCP checks at an interval
//! against N local listeners (127.0.1.1, 127.0.1.2, ... each on its own
//! port), for some seconds; prints p50/p99/max of how late checks started
//! after their scheduled time, as a share of the interval.
//!
//! `cargo run --release -p pylon-health --example drift [servers] [interval_s] [seconds]`
//! (defaults: 500 1.0 10).

mod farm;

use std::time::Duration;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: f64| -> f64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .filter(|v: &f64| v.is_finite() && *v > 0.0)
            .unwrap_or(default)
    };
    let servers = arg(0, 500.0) as usize;
    let interval = Duration::from_secs_f64(arg(1, 1.0));
    let seconds = Duration::from_secs_f64(arg(2, 10.0));
    farm::run(servers, interval, seconds)?.print();
    Ok(())
}
