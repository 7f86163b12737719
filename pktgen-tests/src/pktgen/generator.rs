//! The generator lcore: builds each phase's packets, sends them into the
//! worker through ring ports, receives what comes out, checks it and keeps
//! the books.
//!
//! Everything here runs on a DPDK worker lcore, where a panic aborts the
//! process, so nothing panics: lookups use `get`, problems become
//! [`Report::errors`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use pylon_dataplane::counters::{DropReason, WorkerCounters};
use pylon_dpdk::{tsc, tsc_hz, Burst, Mbuf, Mempool, RxQueue, TxQueue};

use super::flows::{self, Stride};
use super::frames::{
    self, Step, Templates, FRAME_LEN, ROUTER_MAC, SERVERS, SERVER_MACS, TTL, WORKER_MACS,
};

/// A flow whose real server is not known yet.
pub const UNKNOWN: u8 = u8::MAX;

/// Most packets between the generator's TX and RX at any time: below the
/// rings' capacity, so the worker never finds its output ring full
/// because the generator fell behind. Deep enough (about 5 ms of a
/// worker's rate) that the worker keeps busy while the scheduler gives the
/// generator's CPU to another thread for a time slice: the sync threads
/// of `nat_new_sync` share it, as a control core would on a 2-CPU machine.
/// With 1,024, that scenario's worker found its rings empty for about a
/// tenth of the measurement (2.2 million idle polls, against 150,000 now
/// and a few hundred without sync).
const IN_FLIGHT: u64 = 16384;
/// Packets built per round.
const BURST: usize = 32;
/// Received mbufs kept for reuse as the next packets (no allocation and
/// free per packet).
const STASH: usize = 4096;
/// A phase with nothing sent or received for this long has lost packets.
const STALL: Duration = Duration::from_secs(2);
/// A timed phase's rate is also taken over windows this long (the machine
/// may be shared: a window in which another process ran shows it).
pub const WINDOW: Duration = Duration::from_millis(100);
/// Error messages kept verbatim; the rest are only counted.
const KEEP_ERRORS: usize = 10;

/// How the worker is expected to have changed each packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Pylon with NAT: client packets to a real server's address and port
    /// and MAC, replies from the VIP to the router's MAC, TTL - 1.
    Nat,
    /// Pylon with direct routing: client packets unchanged but for the
    /// real server's MAC; no replies.
    Dsr,
    /// The MAC-swap forwarder: every packet unchanged but for swapped MACs.
    Swap,
}

/// One phase of a scenario.
#[derive(Clone, Debug)]
pub enum Phase {
    /// `step` once on every flow so far, in order, every packet fully
    /// checked; done when all are accounted for.
    Pass(Step),
    /// Reads the process's resident memory (after the setup passes have
    /// filled the connection table).
    Rss,
    /// The measured phase.
    Timed(Timed),
}

/// The measured phase: established traffic, new connections, or a mix.
#[derive(Clone, Debug)]
pub struct Timed {
    /// Steps sent in turn, each cycling over the established flows (those
    /// that exist when the phase starts) in scattered order, the later
    /// steps of a flow a fraction of a cycle after the earlier ones; empty
    /// for none.
    pub steps: Vec<Step>,
    /// Every `new_every`-th packet opens a new flow instead (0: never;
    /// 1: every packet).
    pub new_every: u32,
    /// New flows stop at this flow number (the table's capacity).
    pub max_flows: u32,
    /// The phase lasts at least this long, and at least one full cycle over
    /// the established flows, unless the new flows run out first.
    pub duration: Duration,
    /// Every `sample`-th received packet is fully checked (headers,
    /// checksums, payload); every packet is checked for its flow and real
    /// server.
    pub sample: u32,
}

/// What one phase did.
#[derive(Clone, Debug, Default)]
pub struct PhaseReport {
    /// `pass Open`, `timed`, ...
    pub name: String,
    pub sent: u64,
    pub received: u64,
    /// From the first packet sent to the last one received.
    pub seconds: f64,
    /// Flows opened in this phase.
    pub new_flows: u32,
    /// Receive rate in each [`WINDOW`] of a timed phase, in packets per
    /// second.
    pub windows: Vec<f64>,
    /// The worker's polls in this phase that found packets.
    pub worker_busy_polls: u64,
}

/// What the generator did and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub phases: Vec<PhaseReport>,
    pub sent: u64,
    pub received: u64,
    /// Packets checked completely.
    pub full_checks: u64,
    /// Flows at the end.
    pub flows: u32,
    /// Problems found (wrong packet, lost packet, ...), and the first few.
    pub error_count: u64,
    pub errors: Vec<String>,
    /// Resident memory at the [`Phase::Rss`] point, in bytes.
    pub rss_bytes: Option<u64>,
    /// Flows per real server (rs1, rs2, rs3), when the worker schedules.
    pub split: Option<[u64; 3]>,
}

/// One side of the generator: the port wired to one worker port.
pub struct GenPort {
    pub rx: RxQueue,
    pub tx: TxQueue,
    out: Burst,
}

impl GenPort {
    pub fn new(rx: RxQueue, tx: TxQueue) -> GenPort {
        GenPort {
            rx,
            tx,
            out: Burst::new(),
        }
    }
}

/// The generator's state. Port 0 faces the worker's client-side port, port
/// 1 its server-side port.
pub struct Generator {
    pool: Mempool,
    ports: [GenPort; 2],
    worker: Arc<WorkerCounters>,
    expect: Expect,
    phases: Vec<Phase>,
    /// Flows numbered `0..flows` exist.
    flows: u32,
    /// Per flow, the index of its real server, or [`UNKNOWN`].
    servers: Vec<u8>,
    stash: Vec<Mbuf>,
    templates: Templates,
    /// Packets the worker dropped or handed to control, as last read.
    lost: u64,
    received_since_full: u32,
    last_rx: u64,
    report: Report,
}

/// Where the next packet comes from.
enum Source {
    Pass {
        step: Step,
        order: Stride,
        left: u32,
    },
    Timed {
        timed: Timed,
        /// One scattered order per step, each a fraction of a cycle ahead
        /// of the next: a flow's reply comes half a cycle after its data,
        /// as replies come an RTT later, with other flows' packets in
        /// between, not back to back with the request.
        orders: Vec<Stride>,
        established: bool,
        /// Established packets sent, and how many make a full cycle.
        sent: u64,
        cycle: u64,
        count: u64,
        deadline: u64,
        done: bool,
    },
}

impl Source {
    fn timed(timed: Timed, flows: u32, now: u64) -> Source {
        let established = flows > 0 && !timed.steps.is_empty();
        let cycle = u64::from(flows) * timed.steps.len() as u64;
        let deadline = now + (timed.duration.as_secs_f64() * tsc_hz() as f64) as u64;
        let steps = timed.steps.len() as u64;
        let orders = (0..steps)
            .map(|i| Stride::scattered_from(flows, (u64::from(flows) * (steps - i) / steps) as u32))
            .collect();
        Source::Timed {
            orders,
            established,
            sent: 0,
            cycle,
            count: 0,
            deadline,
            done: !established && timed.new_every == 0,
            timed,
        }
    }

    /// Ends a timed phase once it is long enough.
    fn tick(&mut self, now: u64) {
        if let Source::Timed {
            sent,
            cycle,
            deadline,
            done,
            ..
        } = self
        {
            if now >= *deadline && *sent >= *cycle {
                *done = true;
            }
        }
    }

    /// The next packet's flow and step; `None` when the phase has sent all.
    fn next(&mut self, flows: &mut u32) -> Option<(u32, Step)> {
        match self {
            Source::Pass { step, order, left } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                Some((order.next_flow(), *step))
            }
            Source::Timed {
                timed,
                orders,
                established,
                sent,
                count,
                done,
                ..
            } => {
                if *done {
                    return None;
                }
                *count += 1;
                let every = u64::from(timed.new_every);
                if every > 0 && (!*established || *count % every == 0) {
                    if *flows >= timed.max_flows {
                        *done = true;
                        return None;
                    }
                    *flows += 1;
                    return Some((*flows - 1, Step::Open));
                }
                let i = (*sent % timed.steps.len() as u64) as usize;
                *sent += 1;
                let flow = orders.get_mut(i)?.next_flow();
                timed.steps.get(i).map(|&step| (flow, step))
            }
        }
    }
}

impl Generator {
    /// A generator over these ports, for a worker with these counters;
    /// flows `0..flows` exist, and `servers` has one entry per flow the
    /// scenario may reach ([`UNKNOWN`], or the real server when the worker
    /// does not schedule).
    pub fn new(
        pool: Mempool,
        ports: [GenPort; 2],
        worker: Arc<WorkerCounters>,
        expect: Expect,
        flows: u32,
        servers: Vec<u8>,
        phases: Vec<Phase>,
    ) -> Generator {
        Generator {
            pool,
            ports,
            worker,
            expect,
            phases,
            flows,
            servers,
            stash: Vec::with_capacity(STASH),
            templates: Templates::new(),
            lost: 0,
            received_since_full: 0,
            last_rx: 0,
            report: Report::default(),
        }
    }

    /// Runs every phase and returns the report; stops early when a phase
    /// stalls (packets lost).
    pub fn run(mut self) -> Report {
        let phases = std::mem::take(&mut self.phases);
        for phase in phases {
            let done = match phase {
                Phase::Pass(step) => {
                    let source = Source::Pass {
                        step,
                        order: Stride::sequential(self.flows),
                        left: self.flows,
                    };
                    self.drive(format!("pass {step:?}"), source, 1, false)
                }
                Phase::Rss => {
                    self.report.rss_bytes = rss_bytes();
                    true
                }
                Phase::Timed(timed) => {
                    let sample = timed.sample.max(1);
                    let source = Source::timed(timed, self.flows, tsc());
                    self.drive("timed".to_owned(), source, sample, true)
                }
            };
            if !done {
                break;
            }
        }
        self.report.flows = self.flows;
        if self.expect != Expect::Swap {
            let mut split = [0; 3];
            for &s in self.servers.iter().take(self.flows as usize) {
                if let Some(n) = split.get_mut(usize::from(s)) {
                    *n += 1;
                }
            }
            self.report.split = Some(split);
        }
        self.report
    }

    fn error(&mut self, message: impl FnOnce() -> String) {
        self.report.error_count += 1;
        if self.report.errors.len() < KEEP_ERRORS {
            self.report.errors.push(message());
        }
    }

    /// Packets the worker dropped (any reason) or handed to its control
    /// ring: sent, but never coming back.
    fn worker_lost(&self) -> u64 {
        let w = &self.worker;
        DropReason::ALL.iter().map(|&r| w.drops(r)).sum::<u64>() + w.to_control.load(Relaxed)
    }

    /// Sends `source`'s packets and receives until all are accounted for,
    /// taking the rate per [`WINDOW`] if `windowed`. Returns false when
    /// the phase stalled.
    fn drive(&mut self, name: String, mut source: Source, sample: u32, windowed: bool) -> bool {
        let (sent0, received0, flows0) = (self.report.sent, self.report.received, self.flows);
        let busy0 = WorkerCounters::get(&self.worker.busy_polls);
        let hz = tsc_hz() as f64;
        let start = tsc();
        self.last_rx = start;
        let stall = (STALL.as_secs_f64() * hz) as u64;
        let window = (WINDOW.as_secs_f64() * hz) as u64;
        let mut windows = Vec::new();
        let (mut window_start, mut window_received) = (start, received0);
        let mut last_progress = start;
        let mut more = true;
        let ok = loop {
            let mut progress = self.receive(sample) > 0;
            if more {
                source.tick(tsc());
                more = self.fill(&mut source);
            }
            progress |= self.transmit() > 0;
            let now = tsc();
            if progress {
                last_progress = now;
            }
            if windowed && more && now - window_start >= window {
                let packets = self.report.received - window_received;
                windows.push(packets as f64 * hz / (now - window_start) as f64);
                (window_start, window_received) = (now, self.report.received);
            }
            if !more && self.ports.iter().all(|p| p.out.is_empty()) {
                self.lost = self.worker_lost();
                if self.report.sent == self.report.received + self.lost {
                    break true;
                }
            }
            if now - last_progress > stall {
                self.lost = self.worker_lost();
                let missing = self.in_flight(0);
                self.error(|| format!("{name}: stalled with {missing} packets unaccounted for"));
                break false;
            }
        };
        let busy = WorkerCounters::get(&self.worker.busy_polls);
        self.report.phases.push(PhaseReport {
            name,
            sent: self.report.sent - sent0,
            received: self.report.received - received0,
            seconds: self.last_rx.saturating_sub(start) as f64 / tsc_hz() as f64,
            new_flows: self.flows - flows0,
            windows,
            worker_busy_polls: busy - busy0,
        });
        ok
    }

    /// Packets sent or queued and not yet received or lost in the worker.
    /// (Saturating: packets left over from an earlier scenario would make
    /// more arrive than were sent; they are reported as foreign flows.)
    fn in_flight(&self, queued: u64) -> u64 {
        (self.report.sent + queued).saturating_sub(self.report.received + self.lost)
    }

    /// Builds up to a burst of packets; false once the source is spent.
    fn fill(&mut self, source: &mut Source) -> bool {
        let nat = self.expect != Expect::Dsr;
        for _ in 0..BURST {
            if self.ports.iter().any(|p| p.out.is_full()) {
                return true;
            }
            let queued: u64 = self.ports.iter().map(|p| p.out.len() as u64).sum();
            let mut in_flight = self.in_flight(queued);
            if in_flight >= IN_FLIGHT {
                self.lost = self.worker_lost();
                in_flight = self.in_flight(queued);
                if in_flight >= IN_FLIGHT {
                    return true;
                }
            }
            let Some(mut mbuf) = self.stash.pop().or_else(|| Mbuf::alloc(&self.pool)) else {
                // Every mbuf is in flight; some will come back.
                return true;
            };
            let Some((flow, step)) = source.next(&mut self.flows) else {
                self.stash.push(mbuf);
                return false;
            };
            let server = self.servers.get(flow as usize).copied().unwrap_or(UNKNOWN);
            if step.from_server() && server == UNKNOWN {
                self.stash.push(mbuf);
                self.error(|| format!("flow {flow}: no real server known to answer {step:?}"));
                continue;
            }
            if mbuf.data().len() != FRAME_LEN && !mbuf.set_len(FRAME_LEN as u16) {
                self.error(|| "an mbuf cannot hold a 60-byte frame".to_owned());
                return false;
            }
            let p = frames::packet(flow, step, usize::from(server), nat);
            self.templates.write(mbuf.data_mut(), flow, step, &p);
            let port = usize::from(step.from_server());
            // Room was checked above.
            let _ = self.ports[port].out.push(mbuf);
        }
        true
    }

    /// Hands the built packets to the rings; returns how many they took.
    fn transmit(&mut self) -> u64 {
        let mut sent = 0;
        for port in &mut self.ports {
            if !port.out.is_empty() {
                sent += port.tx.tx_burst(&mut port.out) as u64;
            }
        }
        self.report.sent += sent;
        sent
    }

    /// Receives and checks a burst from each port; returns how many.
    fn receive(&mut self, sample: u32) -> usize {
        let mut total = 0;
        for port in 0..2 {
            let mut burst = Burst::new();
            total += self.ports[port].rx.rx_burst(&mut burst);
            for mbuf in burst.drain() {
                self.received_since_full += 1;
                let full = self.received_since_full >= sample;
                if full {
                    self.received_since_full = 0;
                    self.report.full_checks += 1;
                }
                self.inspect(port, mbuf.data(), full);
                if self.stash.len() < STASH {
                    self.stash.push(mbuf);
                }
            }
        }
        if total > 0 {
            self.report.received += total as u64;
            self.last_rx = tsc();
        }
        total
    }

    /// Checks one received frame: always its flow and real server, and
    /// with `full` everything else.
    fn inspect(&mut self, port: usize, frame: &[u8], full: bool) {
        let Some(a) = frames::addresses(frame) else {
            self.error(|| format!("port {port}: runt frame of {} bytes", frame.len()));
            return;
        };
        let to_servers = port == 1;
        let (cip, cport) = if to_servers {
            (a.src, a.sport)
        } else {
            (a.dst, a.dport)
        };
        let Some(flow) = flows::flow_of(cip, cport).filter(|&f| f < self.flows) else {
            self.error(|| format!("port {port}: not one of our flows: {a:?}"));
            return;
        };
        let proto = flows::proto(flow);
        let (vip, vport) = frames::service(proto);
        let known = self.servers.get(flow as usize).copied().unwrap_or(UNKNOWN);
        // (expected destination MAC, source MAC, TTL), and the real server
        // the packet shows.
        let (dst_mac, src_mac, ttl, server) = match (self.expect, to_servers) {
            (Expect::Nat, true) => {
                let s = SERVERS.iter().position(|&ip| ip == a.dst);
                if a.dport != frames::nat_port(proto) {
                    self.error(|| format!("flow {flow}: NAT to port {}", a.dport));
                }
                let mac = s.map_or([0; 6], |s| SERVER_MACS[s]);
                (mac, WORKER_MACS[1], TTL - 1, s)
            }
            (Expect::Dsr, true) => {
                if (a.dst, a.dport) != (vip, vport) {
                    self.error(|| format!("flow {flow}: DSR rewrote the destination: {a:?}"));
                }
                let s = SERVER_MACS.iter().position(|&m| m == a.dst_mac);
                (a.dst_mac, WORKER_MACS[1], TTL, s)
            }
            (Expect::Swap, true) => {
                if (a.dst, a.dport) != (vip, vport) {
                    self.error(|| format!("flow {flow}: swap changed the destination: {a:?}"));
                }
                (ROUTER_MAC, WORKER_MACS[0], TTL, None)
            }
            (Expect::Nat, false) => {
                if (a.src, a.sport) != (vip, vport) {
                    self.error(|| format!("flow {flow}: reply not from the VIP: {a:?}"));
                }
                (ROUTER_MAC, WORKER_MACS[0], TTL - 1, None)
            }
            (Expect::Swap, false) => {
                let s = usize::from(known).min(SERVERS.len() - 1);
                if (a.src, a.sport) != (SERVERS[s], frames::nat_port(proto)) {
                    self.error(|| format!("flow {flow}: swap changed the source: {a:?}"));
                }
                (SERVER_MACS[s], WORKER_MACS[1], TTL, None)
            }
            (Expect::Dsr, false) => {
                self.error(|| format!("flow {flow}: a reply came through with DSR: {a:?}"));
                return;
            }
        };
        if to_servers && self.expect != Expect::Swap {
            let Some(s) = server else {
                self.error(|| format!("flow {flow}: not sent to a real server: {a:?}"));
                return;
            };
            if known == UNKNOWN {
                if let Some(slot) = self.servers.get_mut(flow as usize) {
                    *slot = s as u8;
                }
            } else if usize::from(known) != s {
                self.error(|| format!("flow {flow}: moved from rs{} to rs{}", known + 1, s + 1));
            }
        }
        if a.dst_mac != dst_mac {
            self.error(|| format!("flow {flow}: destination MAC {:x?}", a.dst_mac));
        }
        if !full {
            return;
        }
        match frames::check(frame) {
            Err(e) => self.error(|| format!("flow {flow}: {e}")),
            Ok(c) => {
                if c.flow != flow || c.step.from_server() == to_servers {
                    self.error(|| format!("flow {flow}: payload of flow {} {:?}", c.flow, c.step));
                }
                if c.src_mac != src_mac || c.ttl != ttl {
                    self.error(|| {
                        format!(
                            "flow {flow}: source MAC {:x?} TTL {}, expected {src_mac:x?} {ttl}",
                            c.src_mac, c.ttl
                        )
                    });
                }
            }
        }
    }
}

/// The process's resident memory (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}
