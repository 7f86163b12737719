//! Connection events for the sync thread (`pylon-sync`): what a worker
//! tells the standby about, without waiting for anyone.
//!
//! A worker that creates a connection or changes its state appends one
//! fixed-size [`ConnEvent`] to a batch of its own ([`EventSink`], no
//! atomics); a full batch, and at the end of every poll round whatever is
//! in it, is pushed into the worker's bounded lock-free queue (one
//! crossbeam `ArrayQueue` per worker, so producers never contend). One push
//! per [`BATCH`] events keeps the cache lines the worker shares with the
//! sync thread to a minimum: with one worker opening connections back to
//! back (SYN and ACK, two events each) and a thread draining the queue,
//! a push per event cost about 40 % of the worker's rate on a 2-core
//! machine, a push per batch stayed within the run-to-run noise. The
//! control lcore pushes expiries into its own queue. The sync thread
//! drains them all.
//!
//! A push never blocks and never allocates: when the queue is full the
//! batch is dropped and [`EventQueue::take_overflow`] reports it, and the
//! sync thread repairs the loss with a full table transfer (the IPVS sync
//! daemon drops sync messages under pressure the same way, without the
//! repair). Without `[sync]` there are no queues and the cost is one
//! `Option` check per new connection or state change.

use crossbeam_queue::ArrayQueue;
use pylon_conntrack::{ConnInfo, State};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// Events per batch: 16 × 32 bytes, eight cache lines.
pub const BATCH: usize = 16;

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

/// What unused batch slots hold.
const EMPTY: ConnEvent = ConnEvent {
    kind: EventKind::Expire,
    conn: ConnInfo {
        client_ip: 0,
        client_port: 0,
        vip: 0,
        vport: 0,
        rip: 0,
        rport: 0,
        proto: 0,
        state: State::Close,
        service: 0,
        server: 0,
    },
};

/// Up to [`BATCH`] events, in the order they happened.
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    len: usize,
    events: [ConnEvent; BATCH],
}

impl Batch {
    const fn new() -> Batch {
        Batch {
            len: 0,
            events: [EMPTY; BATCH],
        }
    }

    pub fn events(&self) -> &[ConnEvent] {
        &self.events[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One worker's queue, shared with the sync thread.
pub struct EventQueue {
    queue: ArrayQueue<Batch>,
    overflowed: AtomicBool,
}

impl EventQueue {
    /// Room for about `capacity` events (whole batches, at least one).
    pub fn new(capacity: usize) -> EventQueue {
        EventQueue {
            queue: ArrayQueue::new(capacity.div_ceil(BATCH).max(1)),
            overflowed: AtomicBool::new(false),
        }
    }

    /// Non-blocking: a full queue drops the batch and raises the flag.
    pub fn push_batch(&self, batch: Batch) {
        if self.queue.push(batch).is_err() {
            self.overflowed.store(true, Relaxed);
        }
    }

    /// One event on its own (the control lcore's rare expiries).
    pub fn push(&self, kind: EventKind, conn: &ConnInfo) {
        let mut b = Batch::new();
        b.events[0] = ConnEvent { kind, conn: *conn };
        b.len = 1;
        self.push_batch(b);
    }

    pub fn pop(&self) -> Option<Batch> {
        self.queue.pop()
    }

    /// True once since the last call if a batch was dropped.
    pub fn take_overflow(&self) -> bool {
        self.overflowed.swap(false, Relaxed)
    }
}

/// A worker's end of its queue: events gathered into a batch of its own.
pub struct EventSink {
    queue: Arc<EventQueue>,
    batch: Batch,
}

impl EventSink {
    pub fn new(queue: Arc<EventQueue>) -> EventSink {
        EventSink {
            queue,
            batch: Batch::new(),
        }
    }

    /// Appends an event; a full batch goes to the queue.
    pub fn report(&mut self, kind: EventKind, conn: &ConnInfo) {
        self.batch.events[self.batch.len] = ConnEvent { kind, conn: *conn };
        self.batch.len += 1;
        if self.batch.len == BATCH {
            self.flush();
        }
    }

    /// Hands what was gathered to the queue (end of a poll round).
    pub fn flush(&mut self) {
        if self.batch.len > 0 {
            self.queue.push_batch(self.batch);
            self.batch.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(port: u16) -> ConnInfo {
        ConnInfo {
            client_port: port,
            state: State::SynRecv,
            ..EMPTY.conn
        }
    }

    fn ports(q: &EventQueue) -> Vec<u16> {
        std::iter::from_fn(|| q.pop())
            .flat_map(|b| b.events().to_vec())
            .map(|e| e.conn.client_port)
            .collect()
    }

    #[test]
    fn events_travel_in_batches_and_in_order() {
        let q = Arc::new(EventQueue::new(64));
        let mut sink = EventSink::new(Arc::clone(&q));
        for p in 0..20 {
            sink.report(EventKind::New, &conn(p));
        }
        // One full batch went at once; the rest waits for the flush.
        let first = q.pop().expect("a full batch");
        assert_eq!(first.len(), BATCH);
        assert!(q.pop().is_none());
        sink.flush();
        sink.flush();
        let rest = q.pop().expect("the partial batch");
        assert_eq!(rest.events().len(), 4);
        assert_eq!(rest.events()[3].conn.client_port, 19);
        assert!(q.pop().is_none(), "an empty batch is never pushed");
    }

    #[test]
    fn a_full_queue_drops_and_flags_without_blocking() {
        let q = Arc::new(EventQueue::new(BATCH));
        q.push(EventKind::New, &conn(1));
        assert!(!q.take_overflow());
        q.push(EventKind::Expire, &conn(2));
        assert!(q.take_overflow());
        assert!(!q.take_overflow(), "the flag is taken once");
        assert_eq!(ports(&q), vec![1]);
    }

    #[test]
    fn events_stay_small() {
        assert!(std::mem::size_of::<ConnEvent>() <= 32);
    }
}
