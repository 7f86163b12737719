//! State shared by every worker and the control lcore.

use crate::neighbor::Neighbors;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use pylon_conntrack::Table;
use pylon_sched::ServerStats;
use std::time::Instant;

/// Millisecond ticks since start, wrapping at 2^32 (49 days): the
/// connection table compares them with wrapping arithmetic.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Read once per burst: `Instant::now` goes through the vDSO, no syscall.
    pub fn now_ms(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }

    /// Milliseconds since start without wrapping, for timers that outlive
    /// 49 days (VRRP).
    pub fn now_ms64(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub neighbors: Neighbors,
    pub conns: Table,
    /// ActiveConn / InActConn per real server, by global server id.
    pub servers: Box<[ServerStats]>,
    pub clock: Clock,
}

impl Shared {
    pub fn new(snapshot: Snapshot, conns: Table, max_servers: usize) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            neighbors: Neighbors::new(1024),
            conns,
            servers: (0..max_servers).map(|_| ServerStats::default()).collect(),
            clock: Clock::new(),
        }
    }
}
