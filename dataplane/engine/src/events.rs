//! Connection events for the sync thread (`pylon-sync`): what a worker
//! tells the standby about, without waiting for anyone.
//!
//! A worker that creates a connection or changes its state pushes one
//! fixed-size [`ConnEvent`] into its own bounded lock-free queue (one
//! crossbeam `ArrayQueue` per worker, so producers never contend); the
//! control lcore pushes expiries into its own. The sync thread drains them.
//! A push never blocks and never allocates: when the queue is full the
//! event is dropped and [`EventQueue::overflowed`] is raised, and the sync
//! thread repairs the loss with a full table transfer (the IPVS sync
//! daemon drops sync messages under pressure the same way, without the
//! repair). Without `[sync]` there are no queues and the cost is one
//! `Option` check per new connection or state change.

use crossbeam_queue::ArrayQueue;
use pylon_conntrack::ConnInfo;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// What happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Created (scheduled to a real server) by a worker.
    New,
    /// Its TCP state changed; the event carries the new state.
    State,
    /// It expired or was replaced.
    Expire,
}

/// One event: the connection as it is after the change (32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnEvent {
    pub kind: EventKind,
    pub conn: ConnInfo,
}

/// A single worker's event queue.
pub struct EventQueue {
    queue: ArrayQueue<ConnEvent>,
    overflowed: AtomicBool,
}

impl EventQueue {
    /// `capacity` events (at least 1).
    pub fn new(capacity: usize) -> EventQueue {
        EventQueue {
            queue: ArrayQueue::new(capacity.max(1)),
            overflowed: AtomicBool::new(false),
        }
    }

    /// Non-blocking: a full queue drops the event and raises the flag.
    pub fn push(&self, kind: EventKind, conn: &ConnInfo) {
        if self.queue.push(ConnEvent { kind, conn: *conn }).is_err() {
            self.overflowed.store(true, Relaxed);
        }
    }

    pub fn pop(&self) -> Option<ConnEvent> {
        self.queue.pop()
    }

    /// True once since the last call if an event was dropped.
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Relaxed)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_conntrack::State;

    fn conn(port: u16) -> ConnInfo {
        ConnInfo {
            client_ip: 1,
            client_port: port,
            vip: 2,
            vport: 80,
            rip: 3,
            rport: 80,
            proto: 6,
            state: State::SynRecv,
            service: 0,
            server: 0,
        }
    }

    #[test]
    fn a_full_queue_drops_and_flags_without_blocking() {
        let q = EventQueue::new(2);
        q.push(EventKind::New, &conn(1));
        q.push(EventKind::State, &conn(2));
        assert!(!q.take_overflow());
        q.push(EventKind::Expire, &conn(3));
        assert!(q.take_overflow());
        assert!(!q.take_overflow(), "the flag is taken once");
        assert_eq!(q.pop().map(|e| e.conn.client_port), Some(1));
        assert_eq!(q.pop().map(|e| e.kind), Some(EventKind::State));
        assert!(q.pop().is_none());
    }

    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<ConnEvent>() <= 32);
    }
}
