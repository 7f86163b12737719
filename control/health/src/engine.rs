//! The engine: one thread that runs every check on schedule.
//!
//! # Design: one poll loop, not a thread pool
//!
//! A check spends nearly all its life waiting (for a SYN-ACK, a response,
//! a timeout), so the engine waits for all of them at once: one thread owns
//! a `mio` poll (epoll) on which every TCP and HTTP probe is a
//! non-blocking socket and every ICMP probe an entry in a shared raw
//! socket. Each turn of the loop starts the checks that are due, then
//! sleeps in `epoll_wait` until the next check is due, the next probe times
//! out, or a socket has news.
//!
//! Why not a pool of threads doing blocking checks: a blocking check holds
//! its thread for up to its timeout, so 500 servers at a 1 s interval with
//! some of them black-holed need hundreds of threads to stay on schedule,
//! and a pool sized for the good days falls behind exactly when servers
//! fail. In the loop a hanging probe costs a file descriptor and a heap
//! entry, the schedule stays exact (starts are late only by epoll's 1 ms
//! timer granularity and the loop's own work), and the whole engine is one
//! mostly sleeping thread that never competes with the workers.
//!
//! `exec` is the exception: fork/exec and waiting for a child are
//! blocking, so each run of a command gets a short-lived thread of its own,
//! which reports through a channel and wakes the loop. A server has at
//! most one check running, so there are at most as many such threads as
//! servers with an `exec` check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use mio::Waker;

use crate::monitor::RunId;
use crate::probe::Prober;
use crate::{CheckResult, Monitor, Reason, ServerCheck, ServerHealth, StartLag, Transition};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The epoll instance or its waker.
    #[error("cannot create the health-check poll: {0}")]
    Poll(#[source] std::io::Error),
    /// The engine thread.
    #[error("cannot start the health-check thread: {0}")]
    Thread(#[source] std::io::Error),
}

struct Shared {
    monitor: Mutex<Monitor>,
    stop: AtomicBool,
}

impl Shared {
    fn monitor(&self) -> MutexGuard<'_, Monitor> {
        // The monitor stays consistent even if a holder panicked: every
        // method leaves it whole before anything can panic.
        self.monitor.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running health checks of a set of servers.
///
/// [`start`](Engine::start) spawns the engine's thread (named
/// `pylon-health`); dropping the engine stops it. Every method takes
/// `&self`, so the daemon can share one engine (in an `Arc`) between its
/// reload logic and the CLI server.
pub struct Engine {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts checking `servers`. `on_transition` is called on the
    /// engine's thread for every state change, after it was logged; it must
    /// be quick (publish a snapshot, send on a channel), since checks wait
    /// while it runs.
    ///
    /// The thread inherits the CPU affinity of the caller: start the engine
    /// from a thread that is not pinned to a worker lcore.
    pub fn start<F>(servers: Vec<ServerCheck>, on_transition: F) -> Result<Engine, EngineError>
    where
        F: FnMut(Transition) + Send + 'static,
    {
        let prober = Prober::new().map_err(EngineError::Poll)?;
        let waker = prober.waker();
        tracing::info!(servers = servers.len(), "starting health checks");
        let now = Instant::now();
        let mut monitor = Monitor::new(now, SystemTime::now());
        monitor.set_servers(servers, now);
        let shared = Arc::new(Shared {
            monitor: Mutex::new(monitor),
            stop: AtomicBool::new(false),
        });
        let thread = thread::Builder::new()
            .name("pylon-health".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, prober, on_transition)
            })
            .map_err(EngineError::Thread)?;
        Ok(Engine {
            shared,
            waker,
            thread: Some(thread),
        })
    }

    /// The state, last result, last change time and counters of every
    /// server, in the order they were given: what the CLI shows.
    pub fn snapshot(&self) -> Vec<ServerHealth> {
        self.shared.monitor().snapshot()
    }

    /// Replaces the set of servers (a reload): servers already checked keep
    /// their state and counters (see [`Monitor::set_servers`]).
    pub fn set_servers(&self, servers: Vec<ServerCheck>) {
        self.shared.monitor().set_servers(servers, Instant::now());
        self.wake();
    }

    /// How late checks started after their scheduled time, since the
    /// start.
    pub fn start_lag(&self) -> StartLag {
        self.shared.monitor().start_lag().clone()
    }

    fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!(error = %e, "cannot wake the health-check engine");
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.wake();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the health-check thread panicked");
            }
        }
    }
}

/// The engine's loop.
fn run<F: FnMut(Transition)>(shared: &Shared, mut prober: Prober, mut on_transition: F) {
    while !shared.stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let due: Vec<_> = {
            let mut monitor = shared.monitor();
            std::iter::from_fn(|| monitor.poll_due(now)).collect()
        };
        let mut started = Vec::with_capacity(due.len());
        for due in &due {
            prober.start(due.run, &due.check);
            started.push((due.run, Instant::now()));
        }
        let next = {
            let mut monitor = shared.monitor();
            for (run, at) in started {
                monitor.started(run, at);
            }
            monitor.next_due()
        };
        let results = match prober.wait(next) {
            Ok(results) => results,
            Err(e) => {
                tracing::error!(error = %e, "health-check poll failed");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if results.is_empty() {
            continue;
        }
        let transitions: Vec<Transition> = {
            let mut monitor = shared.monitor();
            results
                .into_iter()
                .filter_map(|(run, result, at)| monitor.record(run, result, at))
                .collect()
        };
        transitions.into_iter().for_each(&mut on_transition);
    }
}

/// Runs one check of `server` now and waits for its result (at most its
/// timeout, a little more for `exec`): the same code as the engine's, for
/// tests and for trying a check by hand.
pub fn check_once(server: &ServerCheck) -> CheckResult {
    let mut prober = match Prober::new() {
        Ok(prober) => prober,
        Err(e) => return Reason::Io(format!("cannot create a poll: {e}")).into(),
    };
    let run = RunId::single();
    prober.start(run, server);
    loop {
        match prober.wait(None) {
            Ok(results) => {
                if let Some((_, result, _)) = results.into_iter().find(|(r, ..)| *r == run) {
                    return result;
                }
            }
            Err(e) => return Reason::Io(format!("poll: {e}")).into(),
        }
    }
}
