//! The anti-replay window of one adopted session: the sliding bitmap of
//! IPsec ESP (RFC 4303 §3.4.3), 64 sequence numbers wide.
//!
//! IPVS's sync daemon has no such check (its messages carry no sequence
//! numbers at all); here a replayed datagram is rejected even with a valid
//! MAC, and a jump ahead is a gap that makes the receiver ask for a resync.

use crate::wire::Reject;

/// Width of the window: sequence numbers this far behind the newest one
/// can still be told apart as late (out of order) or repeated (replay).
pub const WIDTH: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Newest sequence number accepted.
    highest: u64,
    /// Bit `i` set: `highest - i` was accepted (bit 0 is `highest`).
    seen: u64,
}

impl Window {
    /// A window whose first accepted datagram is `seq` (the session's
    /// adoption point).
    pub fn starting_at(seq: u64) -> Window {
        Window {
            highest: seq,
            seen: 1,
        }
    }

    /// Whether `seq` may be accepted, without recording it.
    pub fn check(&self, seq: u64) -> Result<(), Reject> {
        if seq > self.highest {
            return Ok(());
        }
        let behind = self.highest - seq;
        if behind >= WIDTH || self.seen >> behind & 1 == 1 {
            Err(Reject::Replay)
        } else {
            Err(Reject::OutOfOrder)
        }
    }

    /// Records `seq` (which passed [`Window::check`], so it is ahead of the
    /// newest); returns how many sequence numbers were skipped.
    pub fn accept(&mut self, seq: u64) -> u64 {
        let ahead = seq.saturating_sub(self.highest);
        self.seen = if ahead >= WIDTH {
            1
        } else {
            self.seen << ahead | 1
        };
        self.highest = seq.max(self.highest);
        ahead.saturating_sub(1)
    }

    pub fn highest(&self) -> u64 {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_sequence_has_no_gaps() {
        let mut w = Window::starting_at(10);
        for s in 11..200 {
            assert_eq!(w.check(s), Ok(()));
            assert_eq!(w.accept(s), 0);
        }
        assert_eq!(w.highest(), 199);
    }

    #[test]
    fn repeats_are_replays() {
        let mut w = Window::starting_at(5);
        w.accept(6);
        assert_eq!(w.check(6), Err(Reject::Replay));
        assert_eq!(w.check(5), Err(Reject::Replay));
        assert_eq!(w.check(7), Ok(()));
    }

    #[test]
    fn a_jump_is_a_gap_and_the_skipped_ones_are_late() {
        let mut w = Window::starting_at(1);
        assert_eq!(w.accept(5), 3);
        assert_eq!(w.check(3), Err(Reject::OutOfOrder));
        assert_eq!(w.check(5), Err(Reject::Replay));
        assert_eq!(w.check(1), Err(Reject::Replay));
    }

    #[test]
    fn older_than_the_window_is_a_replay() {
        let mut w = Window::starting_at(1);
        assert_eq!(w.accept(1000), 998);
        assert_eq!(w.check(1000 - WIDTH), Err(Reject::Replay));
        assert_eq!(w.check(1000 - WIDTH + 1), Err(Reject::OutOfOrder));
    }

    #[test]
    fn seen_bits_slide_with_the_window() {
        let mut w = Window::starting_at(100);
        w.accept(102);
        w.accept(110);
        assert_eq!(w.check(100), Err(Reject::Replay));
        assert_eq!(w.check(101), Err(Reject::OutOfOrder));
        assert_eq!(w.check(102), Err(Reject::Replay));
        assert_eq!(w.check(109), Err(Reject::OutOfOrder));
    }
}
