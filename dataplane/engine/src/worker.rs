//! The poll-mode loop of a worker lcore (DPDK l3fwd's shape): RX bursts
//! from every port, per-packet decisions, buffered TX drained at the end of
//! every round, and an optional back-off when idle.

use crate::counters::{DropReason, WorkerCounters};
use crate::forward::{Forwarder, FrameBuf, Verdict};
use crossbeam_queue::ArrayQueue;
use pylon_dpdk::{Burst, Mbuf, RxQueue, TxQueue};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

impl FrameBuf for Mbuf {
    fn frame(&mut self) -> &mut [u8] {
        self.data_mut()
    }

    fn prepend(&mut self, n: usize) -> bool {
        u16::try_from(n).is_ok_and(|n| Mbuf::prepend(self, n))
    }

    fn truncate(&mut self, len: usize) {
        let excess = self.data().len().saturating_sub(len);
        if let Ok(n) = u16::try_from(excess) {
            self.trim(n);
        }
    }
}

/// A frame for the control lcore and the port it came in on.
pub struct ToControl {
    pub mbuf: Mbuf,
    pub port: usize,
}

/// Ring from the workers to the control lcore.
pub type ControlRing = ArrayQueue<ToControl>;

/// Sleep after this many consecutive empty polls: on a VM or a shared
/// 2-core machine a spinning worker would starve everything else.
#[derive(Clone, Copy, Debug)]
pub struct IdleBackoff {
    /// 0 disables the back-off (pure poll mode).
    pub polls: u32,
    pub sleep: Duration,
}

/// TX buffers are flushed when they reach this many packets, and at the
/// end of every poll round.
const TX_FLUSH: usize = 32;

pub struct Worker {
    fwd: Forwarder,
    counters: Arc<WorkerCounters>,
    /// One RX queue per port; `None` where this lcore polls no queue.
    rx: Vec<Option<RxQueue>>,
    tx: Vec<TxQueue>,
    tx_bufs: Vec<Burst>,
    rx_buf: Burst,
    burst: usize,
    to_control: Arc<ControlRing>,
    idle: IdleBackoff,
    empty_polls: u32,
}

impl Worker {
    pub fn new(
        fwd: Forwarder,
        counters: Arc<WorkerCounters>,
        rx: Vec<Option<RxQueue>>,
        tx: Vec<TxQueue>,
        burst: usize,
        to_control: Arc<ControlRing>,
        idle: IdleBackoff,
    ) -> Worker {
        let tx_bufs = tx.iter().map(|_| Burst::new()).collect();
        Worker {
            fwd,
            counters,
            rx,
            tx,
            tx_bufs,
            rx_buf: Burst::new(),
            burst,
            to_control,
            idle,
            empty_polls: 0,
        }
    }

    pub fn counters(&self) -> &Arc<WorkerCounters> {
        &self.counters
    }

    /// Runs until `stop` is set, then drains its TX buffers.
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let got = self.poll_once();
            self.back_off(got);
        }
        self.flush();
    }

    /// Sleeps after `idle.polls` empty rounds in a row.
    pub fn back_off(&mut self, got: usize) {
        if got > 0 || self.idle.polls == 0 {
            self.empty_polls = 0;
            return;
        }
        self.empty_polls += 1;
        if self.empty_polls >= self.idle.polls {
            std::thread::sleep(self.idle.sleep);
        }
    }

    /// One round over every port; returns the number of packets received.
    pub fn poll_once(&mut self) -> usize {
        let shared = Arc::clone(self.fwd.shared());
        let snap = shared.snapshot.load();
        let neigh = shared.neighbors.load();
        let now = shared.clock.now_ms();
        self.fwd.sync(&snap);
        let mut total = 0;
        for port in 0..self.rx.len() {
            let Some(rxq) = self.rx[port].as_mut() else {
                continue;
            };
            let n = rxq.rx_burst_max(&mut self.rx_buf, self.burst);
            total += n;
            if n > 0 {
                self.fwd.prefetch(&snap, self.rx_buf.frames());
            }
            let mut batch = std::mem::replace(&mut self.rx_buf, Burst::new());
            for mut mbuf in batch.drain() {
                let verdict = if mbuf.is_contiguous() {
                    self.fwd.process(&snap, &neigh, now, &mut mbuf, port)
                } else {
                    Verdict::Drop(DropReason::MultiSegment)
                };
                let c = &self.counters;
                match verdict {
                    Verdict::Forward(out) => {
                        WorkerCounters::add(&c.forward_packets, 1);
                        self.send(out, mbuf);
                    }
                    Verdict::Reply(out) => {
                        WorkerCounters::add(&c.reply_packets, 1);
                        self.send(out, mbuf);
                    }
                    Verdict::Refused(out) => {
                        c.count_drop(DropReason::NoRealServer);
                        WorkerCounters::add(&c.rst_sent, 1);
                        self.send(out, mbuf);
                    }
                    Verdict::TooBig(out) => {
                        c.count_drop(DropReason::TooBig);
                        WorkerCounters::add(&c.icmp_sent, 1);
                        self.send(out, mbuf);
                    }
                    Verdict::Control => self.hand_to_control(mbuf, port),
                    Verdict::Drop(reason) => self.counters.count_drop(reason),
                }
            }
            self.rx_buf = batch;
        }
        self.fwd.flush_events();
        WorkerCounters::add(&self.counters.rx_packets, total as u64);
        let polls = if total == 0 {
            &self.counters.idle_polls
        } else {
            &self.counters.busy_polls
        };
        WorkerCounters::add(polls, 1);
        self.flush();
        total
    }

    fn hand_to_control(&mut self, mbuf: Mbuf, port: usize) {
        match self.to_control.push(ToControl { mbuf, port }) {
            Ok(()) => WorkerCounters::add(&self.counters.to_control, 1),
            Err(_) => self.counters.count_drop(DropReason::ControlRingFull),
        }
    }

    /// Queues `mbuf` for transmission on `port`.
    pub fn send(&mut self, port: usize, mbuf: Mbuf) {
        let Some(buf) = self.tx_bufs.get_mut(port) else {
            self.counters.count_drop(DropReason::TxFull);
            return;
        };
        if buf.push(mbuf).is_err() {
            self.counters.count_drop(DropReason::TxFull);
            return;
        }
        if buf.len() >= TX_FLUSH {
            self.flush_port(port);
        }
    }

    /// Transmits everything buffered; what the NIC does not take is
    /// dropped (and counted) rather than delaying the next round.
    pub fn flush(&mut self) {
        for port in 0..self.tx_bufs.len() {
            if !self.tx_bufs[port].is_empty() {
                self.flush_port(port);
            }
        }
    }

    fn flush_port(&mut self, port: usize) {
        let buf = &mut self.tx_bufs[port];
        let sent = self.tx[port].tx_burst(buf);
        WorkerCounters::add(&self.counters.tx_packets, sent as u64);
        for _unsent in buf.drain() {
            self.counters.count_drop(DropReason::TxFull);
        }
    }
}
