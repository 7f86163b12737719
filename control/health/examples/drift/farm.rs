//! A farm of local TCP listeners checked by the engine, and the start-lag
//! ("drift") measurement of `cargo run --release -p pylon-health --example
//! drift` and of the `drift` test.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use pylon_health::{Engine, HealthCheck, Probe, ServerCheck, ServerKey};

/// What a run measured.
pub struct Measurement {
    pub servers: usize,
    pub interval: Duration,
    pub elapsed: Duration,
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub transitions: u64,
    pub never_checked: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// Starts later than 5 % of the interval.
    pub late: u64,
    /// CPU time of the engine thread, if /proc tells.
    pub engine_cpu: Option<Duration>,
}

impl Measurement {
    pub fn print(&self) {
        let percent = |lag: Duration| 100.0 * lag.as_secs_f64() / self.interval.as_secs_f64();
        let seconds = self.elapsed.as_secs_f64();
        println!(
            "{} tcp checks at a {:.3} s interval for {:.1} s: {} started, {} completed, \
             {} failed, {} slots skipped, {} transitions, {} servers never checked",
            self.servers,
            self.interval.as_secs_f64(),
            seconds,
            self.started,
            self.completed,
            self.failed,
            self.skipped,
            self.transitions,
            self.never_checked,
        );
        for (name, lag) in [
            ("p50", self.p50),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("max", self.max),
        ] {
            println!(
                "start drift {name:>5}: {:8.3} ms = {:6.3} % of the interval",
                lag.as_secs_f64() * 1000.0,
                percent(lag)
            );
        }
        println!(
            "starts later than 5 % of the interval: {} of {}",
            self.late, self.started
        );
        match self.engine_cpu {
            Some(cpu) => println!(
                "engine thread CPU: {:.3} s in {seconds:.1} s = {:.1} % of one core",
                cpu.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / seconds
            ),
            None => println!("engine thread CPU: not available"),
        }
    }
}

/// The address of listener `n`: 127.0.1.1, 127.0.1.2, ... 250 per /24.
fn address(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1 + (n / 250) as u8, 1 + (n % 250) as u8)
}

/// Runs `servers` TCP checks at `interval` against as many local listeners
/// for `duration`, and measures.
pub fn run(servers: usize, interval: Duration, duration: Duration) -> io::Result<Measurement> {
    let mut poll = Poll::new()?;
    let mut listeners = Vec::with_capacity(servers);
    let mut checks = Vec::with_capacity(servers);
    for n in 0..servers {
        let mut listener = TcpListener::bind(SocketAddr::from((address(n), 0)))?;
        poll.registry()
            .register(&mut listener, Token(n), Interest::READABLE)?;
        let mut check = HealthCheck::new(Probe::Tcp {
            send: None,
            expect: None,
        });
        check.interval = interval;
        check.timeout = interval / 2;
        checks.push(ServerCheck {
            key: ServerKey {
                service: "drift".to_owned(),
                address: address(n),
                port: listener.local_addr()?.port(),
            },
            check,
        });
        listeners.push(listener);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acceptor = thread::spawn({
        let stop = Arc::clone(&stop);
        move || -> io::Result<()> {
            let mut events = Events::with_capacity(1024);
            while !stop.load(Ordering::Relaxed) {
                poll.poll(&mut events, Some(Duration::from_millis(50)))?;
                for event in &events {
                    let listener = &listeners[event.token().0];
                    while listener.accept().is_ok() {}
                }
            }
            Ok(())
        }
    });
    let transitions = Arc::new(AtomicU64::new(0));
    let engine = Engine::start(checks, {
        let transitions = Arc::clone(&transitions);
        move |_| {
            transitions.fetch_add(1, Ordering::Relaxed);
        }
    })
    .map_err(io::Error::other)?;
    let begin = Instant::now();
    thread::sleep(duration);
    let elapsed = begin.elapsed();
    let engine_cpu = engine_cpu();
    let lag = engine.start_lag();
    let snapshot = engine.snapshot();
    drop(engine);
    stop.store(true, Ordering::Relaxed);
    acceptor
        .join()
        .map_err(|_| io::Error::other("acceptor panicked"))??;
    Ok(Measurement {
        servers,
        interval,
        elapsed,
        started: lag.count(),
        completed: snapshot.iter().map(|h| h.checks_run).sum(),
        failed: snapshot.iter().map(|h| h.checks_failed).sum(),
        skipped: snapshot.iter().map(|h| h.skipped).sum(),
        transitions: transitions.load(Ordering::Relaxed),
        never_checked: snapshot.iter().filter(|h| h.checks_run == 0).count(),
        p50: lag.percentile(50.0),
        p99: lag.percentile(99.0),
        p999: lag.percentile(99.9),
        max: lag.max(),
        late: lag.later_than(interval / 20),
        engine_cpu,
    })
}

/// User plus system CPU time of the thread named `pylon-health`, from
/// `/proc/self/task/*/stat` (fields 14 and 15, in USER_HZ = 100 ticks).
fn engine_cpu() -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != "pylon-health" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the command name, which ends with the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
        // utime and stime are fields 14 and 15, that is 11 and 12 after ')'.
        let total = ticks(11)? + ticks(12)?;
        return Some(Duration::from_millis(total * 10));
    }
    None
}
