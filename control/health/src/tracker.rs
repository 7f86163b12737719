//! The rise/fall state machine of one server.

use std::time::Instant;

use crate::{CheckResult, State};

/// The health state of one server, keepalived's and HAProxy's rise/fall
/// rule: an up server goes down after `fall` failed checks in a row, a down
/// server comes up after `rise` successful checks in a row. A success ends
/// a run of failures and a failure ends a run of successes. Each change is
/// returned once, by the [`record`](Tracker::record) call that causes it.
///
/// Sans-IO: it keeps no clock; `now` comes with every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    rise: u32,
    fall: u32,
    state: State,
    successes: u32,
    failures: u32,
    last_result: Option<CheckResult>,
    last_change: Instant,
}

impl Tracker {
    /// A server in state `initial` since `now`; `rise` and `fall` below 1
    /// count as 1.
    pub fn new(initial: State, rise: u32, fall: u32, now: Instant) -> Tracker {
        Tracker {
            rise: rise.max(1),
            fall: fall.max(1),
            state: initial,
            successes: 0,
            failures: 0,
            last_result: None,
            last_change: now,
        }
    }

    /// Records the result of a check completed at `now`; returns
    /// `Some((old, new))` when it changes the state.
    pub fn record(&mut self, result: CheckResult, now: Instant) -> Option<(State, State)> {
        if result.passed() {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        self.last_result = Some(result);
        let new = match self.state {
            State::Up if self.failures >= self.fall => State::Down,
            State::Down if self.successes >= self.rise => State::Up,
            same => same,
        };
        if new == self.state {
            return None;
        }
        let old = self.state;
        self.state = new;
        self.last_change = now;
        Some((old, new))
    }

    /// Keeps the state but takes new thresholds (a reload changed them);
    /// the runs counted so far start again.
    pub fn set_thresholds(&mut self, rise: u32, fall: u32) {
        self.rise = rise.max(1);
        self.fall = fall.max(1);
        self.successes = 0;
        self.failures = 0;
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Consecutive successes up to now.
    pub fn successes(&self) -> u32 {
        self.successes
    }

    /// Consecutive failures up to now.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The rise threshold.
    pub fn rise(&self) -> u32 {
        self.rise
    }

    /// The fall threshold.
    pub fn fall(&self) -> u32 {
        self.fall
    }

    /// The last recorded result.
    pub fn last_result(&self) -> Option<&CheckResult> {
        self.last_result.as_ref()
    }

    /// When the state last changed (or the tracker was made).
    pub fn last_change(&self) -> Instant {
        self.last_change
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Reason;

    const FAIL: CheckResult = CheckResult::Fail(Reason::Timeout);

    /// A fake clock: `tick(n)` is n seconds after the start.
    struct Clock(Instant);
    impl Clock {
        fn tick(&self, n: u64) -> Instant {
            self.0 + Duration::from_secs(n)
        }
    }

    fn clock() -> Clock {
        Clock(Instant::now())
    }

    #[test]
    fn falls_after_fall_consecutive_failures() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Up, 2, 3, clock.tick(0));
        assert_eq!(tracker.record(FAIL, clock.tick(1)), None);
        assert_eq!(tracker.record(FAIL, clock.tick(2)), None);
        assert_eq!(tracker.failures(), 2);
        assert_eq!(
            tracker.record(FAIL, clock.tick(3)),
            Some((State::Up, State::Down))
        );
        assert_eq!(tracker.state(), State::Down);
        assert_eq!(tracker.last_change(), clock.tick(3));
        assert_eq!(tracker.last_result(), Some(&FAIL));
    }

    #[test]
    fn rises_after_rise_consecutive_successes() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Down, 2, 3, clock.tick(0));
        assert_eq!(tracker.record(CheckResult::Pass, clock.tick(1)), None);
        assert_eq!(tracker.successes(), 1);
        assert_eq!(
            tracker.record(CheckResult::Pass, clock.tick(2)),
            Some((State::Down, State::Up))
        );
        assert_eq!(tracker.last_change(), clock.tick(2));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Up, 2, 3, clock.tick(0));
        tracker.record(FAIL, clock.tick(1));
        tracker.record(FAIL, clock.tick(2));
        assert_eq!(tracker.record(CheckResult::Pass, clock.tick(3)), None);
        assert_eq!((tracker.successes(), tracker.failures()), (1, 0));
        tracker.record(FAIL, clock.tick(4));
        assert_eq!(tracker.record(FAIL, clock.tick(5)), None);
        assert_eq!(tracker.state(), State::Up);
        assert_eq!(
            tracker.record(FAIL, clock.tick(6)),
            Some((State::Up, State::Down))
        );
    }

    #[test]
    fn a_failure_resets_the_success_count() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Down, 3, 1, clock.tick(0));
        tracker.record(CheckResult::Pass, clock.tick(1));
        tracker.record(CheckResult::Pass, clock.tick(2));
        assert_eq!(tracker.record(FAIL, clock.tick(3)), None);
        assert_eq!((tracker.successes(), tracker.failures()), (0, 1));
        tracker.record(CheckResult::Pass, clock.tick(4));
        tracker.record(CheckResult::Pass, clock.tick(5));
        assert_eq!(tracker.state(), State::Down);
        assert_eq!(
            tracker.record(CheckResult::Pass, clock.tick(6)),
            Some((State::Down, State::Up))
        );
    }

    #[test]
    fn initial_state_holds_until_the_threshold() {
        let clock = clock();
        let mut up = Tracker::new(State::Up, 2, 2, clock.tick(0));
        assert_eq!(up.state(), State::Up);
        assert_eq!(up.record(CheckResult::Pass, clock.tick(1)), None);
        assert_eq!(up.state(), State::Up);
        let mut down = Tracker::new(State::Down, 2, 2, clock.tick(0));
        assert_eq!(down.state(), State::Down);
        assert_eq!(down.record(FAIL, clock.tick(1)), None);
        assert_eq!(down.record(FAIL, clock.tick(2)), None);
        assert_eq!(down.state(), State::Down);
        assert_eq!(down.last_change(), clock.tick(0));
    }

    #[test]
    fn transitions_are_reported_once() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Up, 1, 1, clock.tick(0));
        let changes: Vec<_> = [FAIL, FAIL, FAIL, CheckResult::Pass, CheckResult::Pass]
            .into_iter()
            .enumerate()
            .filter_map(|(i, result)| tracker.record(result, clock.tick(i as u64 + 1)))
            .collect();
        assert_eq!(
            changes,
            [(State::Up, State::Down), (State::Down, State::Up)]
        );
        assert_eq!(tracker.last_change(), clock.tick(4));
    }

    #[test]
    fn zero_thresholds_count_as_one() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Up, 0, 0, clock.tick(0));
        assert_eq!((tracker.rise(), tracker.fall()), (1, 1));
        assert_eq!(
            tracker.record(FAIL, clock.tick(1)),
            Some((State::Up, State::Down))
        );
    }

    #[test]
    fn new_thresholds_restart_the_runs() {
        let clock = clock();
        let mut tracker = Tracker::new(State::Up, 2, 3, clock.tick(0));
        tracker.record(FAIL, clock.tick(1));
        tracker.record(FAIL, clock.tick(2));
        tracker.set_thresholds(2, 2);
        assert_eq!(tracker.failures(), 0);
        assert_eq!(tracker.record(FAIL, clock.tick(3)), None);
        assert_eq!(
            tracker.record(FAIL, clock.tick(4)),
            Some((State::Up, State::Down))
        );
    }
}
