//! Every server's tracker, the scheduler and the counters: the sans-IO core
//! that the engine drives.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::{CheckResult, ServerCheck, ServerHealth, ServerKey, State, Tracker, Transition};

/// The golden ratio's fractional part: the first check of the k-th server
/// added starts `frac(k * PHI) * interval` after it is added. Any number of
/// consecutive k spread almost evenly over the interval (the three-gap
/// theorem), and servers added by a reload fall between the others.
const PHI_FRACTION: f64 = 0.618_033_988_749_894_9;

/// One run of a check: which server and which of its runs. Results of runs
/// that are no longer expected (the server was removed, or the run timed
/// out and another began) are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId {
    server: u64,
    run: u64,
}

impl RunId {
    /// The run of a check outside any monitor (`check_once`).
    pub(crate) fn single() -> RunId {
        RunId {
            server: u64::MAX,
            run: 0,
        }
    }
}

/// A check that is due: run `check` and report its result with `run`.
#[derive(Debug, Clone)]
pub struct Due {
    /// Identifies this run in [`Monitor::started`] and [`Monitor::record`].
    pub run: RunId,
    /// When it was scheduled to start.
    pub scheduled: Instant,
    /// The server and its check.
    pub check: Arc<ServerCheck>,
}

/// A histogram of how late checks started after their scheduled time:
/// 100 us buckets up to 100 ms, beyond that only the count and the maximum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLag {
    buckets: Vec<u64>,
    over: u64,
    count: u64,
    max: Duration,
}

impl StartLag {
    /// Width of a bucket.
    pub const BUCKET: Duration = Duration::from_micros(100);
    const BUCKETS: usize = 1000;

    fn new() -> StartLag {
        StartLag {
            buckets: vec![0; Self::BUCKETS],
            over: 0,
            count: 0,
            max: Duration::ZERO,
        }
    }

    /// Counts one start `lag` after its scheduled time.
    pub fn record(&mut self, lag: Duration) {
        let index = lag.as_micros() / Self::BUCKET.as_micros();
        match usize::try_from(index)
            .ok()
            .and_then(|i| self.buckets.get_mut(i))
        {
            Some(bucket) => *bucket += 1,
            None => self.over += 1,
        }
        self.count += 1;
        self.max = self.max.max(lag);
    }

    /// Starts counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The latest start.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Starts later than `lag`, at the buckets' resolution: those in
    /// buckets that begin at or after `lag`, rounded up to a bucket edge.
    pub fn later_than(&self, lag: Duration) -> u64 {
        let first = lag.as_micros().div_ceil(Self::BUCKET.as_micros());
        let skip = usize::try_from(first).unwrap_or(usize::MAX);
        self.buckets.iter().skip(skip).sum::<u64>() + self.over
    }

    /// The lag that `percent` % of the starts did not exceed, rounded up to
    /// a bucket's upper edge (and never above the maximum); zero before any
    /// start.
    pub fn percentile(&self, percent: f64) -> Duration {
        let share = percent.clamp(0.0, 100.0) / 100.0;
        // A rank within 1..=count; the float is at most `count`.
        let rank = ((share * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket;
            if seen >= rank {
                let edge = Self::BUCKET * (index as u32 + 1);
                return edge.min(self.max);
            }
        }
        self.max
    }
}

/// The running check of a server.
#[derive(Debug, Clone, Copy)]
struct Running {
    run: u64,
    scheduled: Instant,
    started: Instant,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    check: Arc<ServerCheck>,
    tracker: Tracker,
    /// Generation of the schedule; heap items of older ones are stale.
    generation: u64,
    running: Option<Running>,
    runs: u64,
    checks_failed: u64,
    checks_run: u64,
    transitions: u64,
    skipped: u64,
    last_check: Option<Instant>,
    last_duration: Option<Duration>,
    last_start_lag: Option<Duration>,
}

/// The health of a set of servers, and when each one's next check is due.
///
/// Sans-IO, in the quinn-proto style: it never reads a clock and does no
/// I/O. Its driver asks [`poll_due`](Monitor::poll_due) for checks due by
/// `now`, runs them, says when each really [`started`](Monitor::started)
/// and [`record`](Monitor::record)s each result, which returns the state
/// change it causes, if any; [`next_due`](Monitor::next_due) tells how long
/// the driver may sleep.
///
/// Scheduling: each server's checks start on a fixed grid, `interval`
/// apart, from a first start spread over the first interval (see
/// `PHI_FRACTION`) so that 500 servers with the same interval do not fire
/// at once. The grid does not move when a check is late or slow, so
/// lateness never accumulates. A slot that comes while the previous check
/// still runs is skipped (counted in `skipped`), as are slots missed while
/// the driver was stalled for more than an interval.
#[derive(Debug)]
pub struct Monitor {
    anchor: Instant,
    wall: SystemTime,
    entries: Vec<Entry>,
    index: HashMap<u64, usize>,
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    next_id: u64,
    spread: u64,
    lag: StartLag,
}

impl Monitor {
    /// An empty monitor; `now` and `wall` are the same moment on the
    /// monotonic and the wall clock, to report wall times.
    pub fn new(now: Instant, wall: SystemTime) -> Monitor {
        Monitor {
            anchor: now,
            wall,
            entries: Vec::new(),
            index: HashMap::new(),
            heap: BinaryHeap::new(),
            next_id: 0,
            spread: 0,
            lag: StartLag::new(),
        }
    }

    /// Sets the servers to check, at `now`. A server whose key was already
    /// there keeps its state, counters and running check; if its check
    /// changed it takes the new thresholds (its runs start again) and, if
    /// the interval changed, a new schedule. A new server starts in its
    /// check's initial state. Servers not in `servers` are dropped, and the
    /// results of their running checks ignored. Of two servers with the
    /// same key, the first counts.
    pub fn set_servers(&mut self, servers: Vec<ServerCheck>, now: Instant) {
        let mut old: HashMap<ServerKey, Entry> = self
            .entries
            .drain(..)
            .map(|entry| (entry.check.key.clone(), entry))
            .collect();
        let mut seen = HashSet::new();
        for server in servers {
            if !seen.insert(server.key.clone()) {
                continue;
            }
            let entry = match old.remove(&server.key) {
                Some(mut entry) => {
                    if entry.check.check != server.check {
                        let check = &server.check;
                        entry.tracker.set_thresholds(check.rise, check.fall);
                        if entry.check.check.interval != check.interval {
                            entry.generation += 1;
                            let first = self.first_start(now, check.interval);
                            self.heap.push(Reverse((first, entry.id, entry.generation)));
                        }
                        entry.check = Arc::new(server);
                    }
                    entry
                }
                None => {
                    let check = &server.check;
                    let id = self.next_id;
                    self.next_id += 1;
                    let first = self.first_start(now, check.interval);
                    self.heap.push(Reverse((first, id, 0)));
                    Entry {
                        id,
                        tracker: Tracker::new(check.initial, check.rise, check.fall, now),
                        check: Arc::new(server),
                        generation: 0,
                        running: None,
                        runs: 0,
                        checks_failed: 0,
                        checks_run: 0,
                        transitions: 0,
                        skipped: 0,
                        last_check: None,
                        last_duration: None,
                        last_start_lag: None,
                    }
                }
            };
            self.entries.push(entry);
        }
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(position, entry)| (entry.id, position))
            .collect();
    }

    fn first_start(&mut self, now: Instant, interval: Duration) -> Instant {
        let fraction = (self.spread as f64 * PHI_FRACTION).fract();
        self.spread += 1;
        now + interval.mul_f64(fraction)
    }

    /// Number of servers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no server.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the heap item `(id, generation)` still schedules a server.
    fn live(&self, id: u64, generation: u64) -> Option<usize> {
        self.index
            .get(&id)
            .copied()
            .filter(|&position| self.entries[position].generation == generation)
    }

    /// When the next check is due (maybe already); `None` without servers.
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(&Reverse((due, id, generation))) = self.heap.peek() {
            if self.live(id, generation).is_some() {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    /// The next check due by `now`, if any; call until `None`. Its server
    /// counts as running until its result is recorded.
    pub fn poll_due(&mut self, now: Instant) -> Option<Due> {
        while let Some(&Reverse((due, id, generation))) = self.heap.peek() {
            if due > now {
                return None;
            }
            self.heap.pop();
            let Some(position) = self.live(id, generation) else {
                continue;
            };
            let entry = &mut self.entries[position];
            let interval = entry.check.check.interval.max(Duration::from_micros(1));
            // Next slot on the grid after `now`; the ones in between are
            // missed.
            let behind = now.saturating_duration_since(due).as_nanos() / interval.as_nanos();
            let missed = u64::try_from(behind).unwrap_or(u64::MAX);
            let step = u32::try_from(behind.saturating_add(1)).unwrap_or(u32::MAX);
            let next = interval
                .checked_mul(step)
                .and_then(|ahead| due.checked_add(ahead))
                .unwrap_or(now + interval);
            self.heap.push(Reverse((next, id, generation)));
            entry.skipped = entry.skipped.saturating_add(missed);
            if entry.running.is_some() {
                entry.skipped += 1;
                continue;
            }
            entry.runs += 1;
            entry.running = Some(Running {
                run: entry.runs,
                scheduled: due,
                started: now,
            });
            return Some(Due {
                run: RunId {
                    server: id,
                    run: entry.runs,
                },
                scheduled: due,
                check: Arc::clone(&entry.check),
            });
        }
        None
    }

    fn running(&mut self, run: RunId) -> Option<(&mut Entry, Running)> {
        let position = *self.index.get(&run.server)?;
        let entry = &mut self.entries[position];
        let running = entry.running.filter(|r| r.run == run.run)?;
        Some((entry, running))
    }

    /// Says when the check `run` really started (its probe was sent), to
    /// measure its start lag and duration.
    pub fn started(&mut self, run: RunId, at: Instant) {
        let Some((entry, running)) = self.running(run) else {
            return;
        };
        let lag = at.saturating_duration_since(running.scheduled);
        entry.running = Some(Running {
            started: at,
            ..running
        });
        entry.last_start_lag = Some(lag);
        self.lag.record(lag);
    }

    /// Records the result of `run`, completed at `now`; returns the state
    /// change it causes, if any, after logging it. Results of runs not
    /// expected any more are ignored.
    pub fn record(&mut self, run: RunId, result: CheckResult, now: Instant) -> Option<Transition> {
        let wall = self.wall_time(now);
        let (entry, running) = self.running(run)?;
        entry.running = None;
        entry.checks_run += 1;
        if !result.passed() {
            entry.checks_failed += 1;
        }
        entry.last_check = Some(now);
        entry.last_duration = Some(now.saturating_duration_since(running.started));
        let key = &entry.check.key;
        let kind = entry.check.check.kind();
        tracing::debug!(server = %key, check = %kind, result = %result, "health check");
        let (old, new) = entry.tracker.record(result.clone(), now)?;
        entry.transitions += 1;
        match new {
            State::Down => tracing::warn!(
                server = %key, check = %kind, reason = %result,
                failures = entry.tracker.failures(), "real server down"
            ),
            State::Up => tracing::info!(
                server = %key, check = %kind, reason = %result,
                successes = entry.tracker.successes(), "real server up"
            ),
        }
        Some(Transition {
            key: key.clone(),
            kind,
            old,
            new,
            reason: result,
            at: wall,
        })
    }

    /// The start lag of every check started so far.
    pub fn start_lag(&self) -> &StartLag {
        &self.lag
    }

    /// The state of every server, in the order given to
    /// [`set_servers`](Monitor::set_servers).
    pub fn snapshot(&self) -> Vec<ServerHealth> {
        self.entries
            .iter()
            .map(|entry| ServerHealth {
                key: entry.check.key.clone(),
                kind: entry.check.check.kind(),
                state: entry.tracker.state(),
                last_result: entry.tracker.last_result().cloned(),
                last_check: entry.last_check.map(|at| self.wall_time(at)),
                last_duration: entry.last_duration,
                last_change: self.wall_time(entry.tracker.last_change()),
                successes: entry.tracker.successes(),
                failures: entry.tracker.failures(),
                rise: entry.tracker.rise(),
                fall: entry.tracker.fall(),
                checks_run: entry.checks_run,
                checks_failed: entry.checks_failed,
                transitions: entry.transitions,
                skipped: entry.skipped,
                last_start_lag: entry.last_start_lag,
                in_progress: entry.running.is_some(),
            })
            .collect()
    }

    /// `at` on the wall clock.
    fn wall_time(&self, at: Instant) -> SystemTime {
        let moved = if at >= self.anchor {
            self.wall.checked_add(at - self.anchor)
        } else {
            self.wall.checked_sub(self.anchor - at)
        };
        moved.unwrap_or(self.wall)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{CheckKind, HealthCheck, Probe, Reason};

    fn server(n: u8, interval_ms: u64) -> ServerCheck {
        let mut check = HealthCheck::new(Probe::Tcp {
            send: None,
            expect: None,
        });
        check.interval = Duration::from_millis(interval_ms);
        check.timeout = check.interval / 2;
        ServerCheck {
            key: ServerKey {
                service: "web".to_owned(),
                address: Ipv4Addr::new(10, 0, 2, n),
                port: 80,
            },
            check,
        }
    }

    fn start(monitor: &mut Monitor, now: Instant) -> Vec<Due> {
        let due: Vec<Due> = std::iter::from_fn(|| monitor.poll_due(now)).collect();
        for d in &due {
            monitor.started(d.run, now);
        }
        due
    }

    #[test]
    fn first_starts_are_spread_over_the_interval() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers((0..100).map(|n| server(n, 1000)).collect(), t0);
        let mut firsts = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_secs(1) {
            for due in start(&mut monitor, now) {
                firsts.push(due.scheduled - t0);
            }
            now += Duration::from_millis(1);
        }
        assert_eq!(firsts.len(), 100);
        firsts.sort();
        // Evenly spread: no two of 100 starts within 1 ms, no gap over 30 ms.
        for pair in firsts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(1), "gap {gap:?}");
            assert!(gap <= Duration::from_millis(30), "gap {gap:?}");
        }
    }

    #[test]
    fn checks_run_every_interval_on_a_fixed_grid() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers(vec![server(1, 500)], t0);
        let first = monitor.next_due().unwrap();
        assert_eq!(first, t0, "the first server starts at once");
        let mut starts = Vec::new();
        for step in 0..20u32 {
            // A driver 7 ms late every time, with 3 ms checks.
            let now = t0 + Duration::from_millis(250) * step + Duration::from_millis(7);
            for due in start(&mut monitor, now) {
                starts.push(due.scheduled);
                let done = now + Duration::from_millis(3);
                assert_eq!(monitor.record(due.run, CheckResult::Pass, done), None);
            }
        }
        let expected: Vec<Instant> = (0..10)
            .map(|k| t0 + Duration::from_millis(500) * k)
            .collect();
        assert_eq!(starts, expected);
        let health = &monitor.snapshot()[0];
        assert_eq!(health.checks_run, 10);
        assert_eq!(health.last_start_lag, Some(Duration::from_millis(7)));
        assert_eq!(health.last_duration, Some(Duration::from_millis(3)));
        assert_eq!(monitor.start_lag().count(), 10);
        assert_eq!(monitor.start_lag().max(), Duration::from_millis(7));
    }

    #[test]
    fn a_running_check_skips_the_next_slot() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers(vec![server(1, 100)], t0);
        let due = start(&mut monitor, t0);
        assert_eq!(due.len(), 1);
        assert!(start(&mut monitor, t0 + Duration::from_millis(100)).is_empty());
        assert!(monitor.snapshot()[0].in_progress);
        monitor.record(
            due[0].run,
            CheckResult::Fail(Reason::Timeout),
            t0 + Duration::from_millis(150),
        );
        assert_eq!(monitor.next_due(), Some(t0 + Duration::from_millis(200)));
        let health = &monitor.snapshot()[0];
        assert_eq!((health.skipped, health.checks_failed), (1, 1));
        assert!(!health.in_progress);
    }

    #[test]
    fn a_stalled_driver_skips_missed_slots_instead_of_bursting() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers(vec![server(1, 100)], t0);
        let late = t0 + Duration::from_millis(350);
        let due = start(&mut monitor, late);
        assert_eq!(due.len(), 1);
        assert_eq!(monitor.next_due(), Some(t0 + Duration::from_millis(400)));
        assert_eq!(monitor.snapshot()[0].skipped, 3);
        assert_eq!(
            monitor.snapshot()[0].last_start_lag,
            Some(Duration::from_millis(350))
        );
    }

    #[test]
    fn results_drive_transitions_with_wall_times() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut monitor = Monitor::new(t0, wall);
        monitor.set_servers(vec![server(1, 100)], t0);
        let mut transitions = Vec::new();
        for step in 0..6u32 {
            let now = t0 + Duration::from_millis(100) * step;
            for due in start(&mut monitor, now) {
                let result = CheckResult::Fail(Reason::Status(503));
                transitions.extend(monitor.record(due.run, result, now + Duration::from_millis(1)));
            }
        }
        assert_eq!(transitions.len(), 1, "{transitions:?}");
        let down = &transitions[0];
        assert_eq!((down.old, down.new), (State::Up, State::Down));
        assert_eq!(down.kind, CheckKind::Tcp);
        assert_eq!(down.reason, CheckResult::Fail(Reason::Status(503)));
        assert_eq!(down.at, wall + Duration::from_millis(201));
        let health = &monitor.snapshot()[0];
        assert_eq!(health.state, State::Down);
        assert_eq!(health.last_change, wall + Duration::from_millis(201));
        assert_eq!(
            (health.failures, health.transitions, health.checks_run),
            (6, 1, 6)
        );
    }

    #[test]
    fn stale_results_are_ignored() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers(vec![server(1, 100)], t0);
        let due = start(&mut monitor, t0);
        monitor.record(due[0].run, CheckResult::Pass, t0);
        assert_eq!(monitor.record(due[0].run, CheckResult::Pass, t0), None);
        assert_eq!(monitor.snapshot()[0].checks_run, 1);
        let next = start(&mut monitor, t0 + Duration::from_millis(100));
        monitor.set_servers(Vec::new(), t0 + Duration::from_millis(101));
        assert_eq!(
            monitor.record(
                next[0].run,
                CheckResult::Pass,
                t0 + Duration::from_millis(102)
            ),
            None
        );
        assert!(monitor.is_empty());
        assert_eq!(monitor.next_due(), None);
    }

    #[test]
    fn reload_keeps_state_of_known_servers() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        let mut one = server(1, 100);
        one.check.fall = 1;
        monitor.set_servers(vec![one.clone()], t0);
        let due = start(&mut monitor, t0);
        let down = monitor.record(due[0].run, CheckResult::Fail(Reason::Refused), t0);
        assert_eq!(down.map(|t| t.new), Some(State::Down));
        // Same server with another rise, plus a new server that starts down.
        one.check.rise = 5;
        let mut two = server(2, 100);
        two.check.initial = State::Down;
        monitor.set_servers(vec![two, one], t0 + Duration::from_millis(10));
        let health = monitor.snapshot();
        assert_eq!(health.len(), 2);
        assert_eq!(health[0].key.address, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!((health[0].state, health[0].checks_run), (State::Down, 0));
        assert_eq!(health[1].state, State::Down);
        assert_eq!((health[1].rise, health[1].checks_run), (5, 1));
        // The kept server's schedule did not move: due at t0 + 100 ms.
        let due = start(&mut monitor, t0 + Duration::from_millis(100));
        assert!(due
            .iter()
            .any(|d| d.check.key.address == Ipv4Addr::new(10, 0, 2, 1)));
    }

    #[test]
    fn reload_with_a_new_interval_reschedules() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers(vec![server(1, 100)], t0);
        start(&mut monitor, t0);
        monitor.set_servers(vec![server(1, 1000)], t0 + Duration::from_millis(50));
        // The old 100 ms grid is gone; the new first start is within 1 s.
        let next = monitor.next_due().unwrap();
        assert!(next >= t0 + Duration::from_millis(50));
        assert!(next <= t0 + Duration::from_millis(1050));
        let before_next = next - Duration::from_micros(1);
        assert!(monitor.poll_due(before_next).is_none());
    }

    #[test]
    fn duplicate_keys_count_once() {
        let t0 = Instant::now();
        let mut monitor = Monitor::new(t0, SystemTime::UNIX_EPOCH);
        monitor.set_servers(vec![server(1, 100), server(1, 200)], t0);
        assert_eq!(monitor.len(), 1);
    }

    #[test]
    fn lag_percentiles() {
        let mut lag = StartLag::new();
        assert_eq!(lag.percentile(50.0), Duration::ZERO);
        for us in 1..=100u64 {
            lag.record(Duration::from_micros(us * 10));
        }
        lag.record(Duration::from_secs(2));
        assert_eq!(lag.count(), 101);
        assert_eq!(lag.percentile(50.0), Duration::from_micros(600));
        assert_eq!(lag.percentile(99.0), Duration::from_micros(1100));
        assert_eq!(lag.percentile(100.0), Duration::from_secs(2));
        assert_eq!(lag.max(), Duration::from_secs(2));
        assert_eq!(lag.later_than(Duration::from_micros(900)), 12);
        assert_eq!(lag.later_than(Duration::from_micros(850)), 12);
        assert_eq!(lag.later_than(Duration::ZERO), 101);
        assert_eq!(lag.later_than(Duration::from_secs(1)), 1);
    }
}
