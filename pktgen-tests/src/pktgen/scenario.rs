//! The benchmark scenarios: what the worker is, what the generator sends,
//! and what comes out of a run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use pylon_conntrack::{Table, Timeouts};
use pylon_dataplane::counters::{DropReason, WorkerCounters};
use pylon_dataplane::forward::Forwarder as PylonForwarder;
use pylon_dataplane::neighbor::NeighborMap;
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::{Mode, PortInfo, Server, Service, Snapshot};
use pylon_dataplane::worker::{ControlRing, IdleBackoff, Worker};
use pylon_sched::Kind as Scheduler;
use serde::{Deserialize, Serialize};

use super::flows::{Proto, MAX_FLOWS};
use super::frames::{self, Step};
use super::generator::{rss_bytes, Expect, Generator, Phase, PhaseReport, Timed, UNKNOWN};
use super::rig::{Forwarder, MacSwap, Rig};
use super::sync_pair::{backup_snapshot, SyncPair};

/// What a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The MAC-swap forwarder instead of Pylon, on established traffic.
    Baseline,
    /// NAT, established flows: client data and server replies in turn.
    NatEstablished,
    /// NAT, every packet opens a new connection (scheduling + insertion),
    /// up to `max_flows` of them; with `sync`, the forwarder reports them
    /// to a sync thread sending them to a backup (see [`super::sync_pair`]).
    NatNew { max_flows: u32, sync: bool },
    /// Direct routing, established flows (client data only: replies
    /// bypass the load balancer).
    DsrEstablished,
    /// NAT, nine packets of established flows for each new connection,
    /// up to `max_new` new ones.
    Mixed { max_new: u32 },
}

/// One scenario: a name, the flows set up before the measurement, and what
/// it measures.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub flows: u32,
    pub kind: Kind,
}

/// Run-wide settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Minimum length of each measured phase.
    pub duration: Duration,
    /// In the measured phase, every `sample`-th packet is fully checked.
    pub sample: u32,
}

/// The scenarios of `make bench`; `quick` shrinks them to seconds in all
/// (for tests and trial runs).
pub fn standard(quick: bool) -> Vec<Scenario> {
    let n = |full: u32, small: u32| if quick { small } else { full };
    let established = |flows| Scenario {
        name: "nat_established",
        flows,
        kind: Kind::NatEstablished,
    };
    vec![
        Scenario {
            name: "baseline",
            flows: n(1_000_000, 10_000),
            kind: Kind::Baseline,
        },
        established(1_000),
        established(n(100_000, 10_000)),
        established(n(1_000_000, 50_000)),
        established(n(10_000_000, 100_000)),
        Scenario {
            name: "nat_new",
            flows: 0,
            kind: Kind::NatNew {
                max_flows: n(4_000_000, 200_000),
                sync: false,
            },
        },
        Scenario {
            name: "nat_new_sync",
            flows: 0,
            kind: Kind::NatNew {
                max_flows: n(4_000_000, 200_000),
                sync: true,
            },
        },
        Scenario {
            name: "dsr_established",
            flows: n(1_000_000, 50_000),
            kind: Kind::DsrEstablished,
        },
        Scenario {
            name: "mixed",
            flows: n(1_000_000, 50_000),
            kind: Kind::Mixed {
                max_new: n(1_000_000, 50_000),
            },
        },
    ]
}

/// `nat_new` without and with connection sync, small enough (1M new
/// connections, a second or two each) to run many times back to back for
/// the sync target: this machine's speed drifts over seconds, and two runs
/// a second apart see the same speed far more often than two runs of the
/// full table half a minute apart.
pub fn sync_pair(quick: bool) -> [Scenario; 2] {
    let max_flows = if quick { 100_000 } else { 1_000_000 };
    [
        Scenario {
            name: "nat_new_pair",
            flows: 0,
            kind: Kind::NatNew {
                max_flows,
                sync: false,
            },
        },
        Scenario {
            name: "nat_new_sync_pair",
            flows: 0,
            kind: Kind::NatNew {
                max_flows,
                sync: true,
            },
        },
    ]
}

/// The outcome of one scenario.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub name: String,
    /// Flows set up before the measurement, plus those it opened.
    pub flows: u32,
    /// The rate of the measured phase, in million packets per second: the
    /// 90th percentile of its 100 ms windows (see [`Outcome::windows`]).
    pub mpps: f64,
    /// The median window, and packets over seconds of the whole phase.
    pub mpps_median: f64,
    pub mpps_mean: f64,
    /// Mpps in each 100 ms window of the measured phase. On a shared or
    /// virtual machine the CPU speed drifts; the windows show it.
    pub windows: Vec<f64>,
    /// Packets forwarded in the measured phase, and how long it took.
    pub packets: u64,
    pub seconds: f64,
    /// New connections opened in the measured phase.
    pub new_flows: u32,
    /// Packets per worker poll that found some in the measured phase: up
    /// to 64 (a burst of 32 from each port) when the worker is the
    /// bottleneck. (Polls that find nothing say little: an empty poll
    /// costs a few nanoseconds, so a busy worker still makes many.)
    pub packets_per_busy_poll: f64,
    /// Connection table capacity (entries), and the bytes it holds.
    pub table_capacity: Option<u32>,
    pub table_bytes: Option<usize>,
    /// Growth of the process's resident memory from before the table was
    /// made to after the setup passes had filled it, per flow (NAT
    /// established scenarios).
    pub rss_bytes_per_conn: Option<f64>,
    /// Generator totals over every phase.
    pub sent: u64,
    pub received: u64,
    /// Worker drops by reason (only those that happened).
    pub drops: BTreeMap<String, u64>,
    /// Packets the worker handed to its control ring.
    pub to_control: u64,
    pub full_checks: u64,
    pub error_count: u64,
    pub errors: Vec<String>,
    /// Flows per real server (rs1, rs2, rs3; weights 1, 2, 3).
    pub split: Option<[u64; 3]>,
    /// With connection sync: the master's and the backup's sync stats.
    #[serde(default)]
    pub sync: Option<serde_json::Value>,
    /// sent == received + drops + to_control, the worker's own counters
    /// agree, and no check failed.
    pub verified: bool,
    pub phases: Vec<PhaseSummary>,
}

/// One phase of an [`Outcome`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub name: String,
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
    pub mpps: f64,
}

impl From<&PhaseReport> for PhaseSummary {
    fn from(p: &PhaseReport) -> PhaseSummary {
        PhaseSummary {
            name: p.name.clone(),
            sent: p.sent,
            received: p.received,
            seconds: p.seconds,
            mpps: mpps(p.received, p.seconds),
        }
    }
}

/// The `q` quantile (0..=1) of `values`, by nearest rank; 0 for none.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n => sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1],
    }
}

fn mpps(packets: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        packets as f64 / seconds / 1e6
    } else {
        0.0
    }
}

/// The published snapshot of the benchmark network: the two ports, a TCP
/// service (wlc) and a UDP service (wrr), each over three real servers
/// with weights 1, 2, 3, forwarding by `mode`.
pub fn snapshot(mode: Mode) -> Snapshot {
    let ports = vec![
        PortInfo {
            name: "client".into(),
            mac: frames::WORKER_MACS[0],
            addr: frames::CLIENT_PORT_ADDR,
            mask: frames::MASK,
            gateway: Some(frames::ROUTER_IP),
            mtu: 1500,
            vmacs: Vec::new(),
        },
        PortInfo {
            name: "servers".into(),
            mac: frames::WORKER_MACS[1],
            addr: frames::SERVER_PORT_ADDR,
            mask: frames::MASK,
            gateway: None,
            mtu: 1500,
            vmacs: Vec::new(),
        },
    ];
    let service = |name: &str, proto: Proto, scheduler, first_id: u16| {
        let (vip, vport) = frames::service(proto);
        let port = if mode == Mode::Nat {
            frames::nat_port(proto)
        } else {
            vport
        };
        Service {
            name: name.into(),
            vip,
            port: vport,
            proto: proto.number(),
            scheduler,
            mode,
            servers: (0..frames::SERVERS.len())
                .map(|i| Server {
                    id: first_id + i as u16,
                    addr: frames::SERVERS[i],
                    port,
                    weight: frames::WEIGHTS[i],
                })
                .collect(),
            sorry: None,
            active: true,
        }
    };
    let services = vec![
        service("tcp", Proto::Tcp, Scheduler::Wlc, 0),
        service("udp", Proto::Udp, Scheduler::Wrr, 3),
    ];
    Snapshot::new(1, ports, services, Vec::new())
}

/// The neighbors a control lcore would have resolved: the router and the
/// real servers.
pub fn neighbors() -> NeighborMap {
    let mut map = NeighborMap::default();
    map.insert(frames::ROUTER_IP, frames::ROUTER_MAC);
    for (ip, mac) in frames::SERVERS.iter().zip(frames::SERVER_MACS) {
        map.insert(*ip, mac);
    }
    map
}

/// Runs one scenario on the rig.
pub fn run(rig: &Rig, scenario: &Scenario, settings: &Settings) -> Result<Outcome> {
    let flows = scenario.flows;
    let timed = |steps: Vec<Step>, new_every: u32, max_flows: u32| {
        Phase::Timed(Timed {
            steps,
            new_every,
            max_flows,
            duration: settings.duration,
            sample: settings.sample,
        })
    };
    let established = || timed(vec![Step::Data, Step::DataReply], 0, flows);
    let nat_setup = [Step::Open, Step::OpenReply, Step::Ack].map(Phase::Pass);
    let nat_close = [Step::Fin, Step::FinReply].map(Phase::Pass);
    let (expect, mode, max_flows, phases): (_, _, u32, Vec<Phase>) = match scenario.kind {
        Kind::Baseline => (
            Expect::Swap,
            None,
            flows,
            vec![
                established(),
                Phase::Pass(Step::Data),
                Phase::Pass(Step::DataReply),
            ],
        ),
        Kind::NatEstablished => (
            Expect::Nat,
            Some(Mode::Nat),
            flows,
            [&nat_setup[..], &[Phase::Rss, established()], &nat_close].concat(),
        ),
        Kind::NatNew { max_flows, .. } => (
            Expect::Nat,
            Some(Mode::Nat),
            max_flows,
            [&[timed(Vec::new(), 1, max_flows)][..], &nat_close].concat(),
        ),
        Kind::DsrEstablished => (
            Expect::Dsr,
            Some(Mode::Dsr),
            flows,
            vec![
                Phase::Pass(Step::Open),
                Phase::Pass(Step::Ack),
                timed(vec![Step::Data], 0, flows),
                Phase::Pass(Step::Fin),
            ],
        ),
        Kind::Mixed { max_new } => {
            let max_flows = flows.saturating_add(max_new);
            (
                Expect::Nat,
                Some(Mode::Nat),
                max_flows,
                [
                    &nat_setup[..],
                    &[timed(vec![Step::Data, Step::DataReply], 10, max_flows)],
                    &nat_close,
                ]
                .concat(),
            )
        }
    };
    anyhow::ensure!(max_flows <= MAX_FLOWS, "{max_flows} flows is too many");

    let left = rig.flush()?;
    anyhow::ensure!(left == 0, "{left} packets were left in the rings");
    // Touched now (not zero pages), so that the growth measured below is
    // the connection table's.
    let mut servers = vec![UNKNOWN; max_flows as usize];
    if expect == Expect::Swap {
        for (f, s) in servers.iter_mut().enumerate() {
            *s = (f % frames::SERVERS.len()) as u8;
        }
    }
    let rss_before = rss_bytes().context("reading VmRSS")?;

    let counters = Arc::new(WorkerCounters::default());
    let (rx, tx) = rig.worker_queues()?;
    let sync = matches!(scenario.kind, Kind::NatNew { sync: true, .. });
    let mut sync_pair = None;
    let (forwarder, table) = match mode {
        None => (
            Forwarder::Swap(Box::new(MacSwap::new(rx, tx, Arc::clone(&counters)))),
            None,
        ),
        Some(mode) => {
            let table = Table::new(max_flows.max(1), Timeouts::default())?;
            let shared = Arc::new(Shared::new(snapshot(mode), table, 6));
            shared.neighbors.publish(neighbors());
            let mut fwd = PylonForwarder::new(Arc::clone(&shared));
            if sync {
                let pair = SyncPair::start(&shared, backup_snapshot(mode), max_flows)?;
                fwd = fwd.with_events(pair.queue());
                sync_pair = Some(pair);
            }
            let worker = Worker::new(
                fwd,
                Arc::clone(&counters),
                rx.into_iter().map(Some).collect(),
                tx.into(),
                32,
                Arc::new(ControlRing::new(64)),
                // Pure poll mode: the worker has its own CPU.
                IdleBackoff {
                    polls: 0,
                    sleep: Duration::ZERO,
                },
            );
            (Forwarder::Pylon(Box::new(worker)), Some(shared))
        }
    };
    let generator = Generator::new(
        rig.pool().clone(),
        rig.gen_ports()?,
        Arc::clone(&counters),
        expect,
        flows,
        servers,
        phases,
    );
    let report = rig.run(forwarder, generator)?;
    let sync_report = sync_pair.map(|p| p.finish(u64::from(report.flows)));

    let drops: BTreeMap<String, u64> = DropReason::ALL
        .iter()
        .map(|&r| (r.name().to_owned(), counters.drops(r)))
        .filter(|&(_, n)| n > 0)
        .collect();
    let dropped: u64 = drops.values().sum();
    let to_control = WorkerCounters::get(&counters.to_control);
    let worker_rx = WorkerCounters::get(&counters.rx_packets);
    let worker_tx = WorkerCounters::get(&counters.tx_packets);
    let mut errors = report.errors.clone();
    let sync_errors = sync_report.as_ref().map_or(0, |r| r.errors.len());
    errors.extend(sync_report.iter().flat_map(|r| r.errors.iter().cloned()));
    let books = report.sent == report.received + dropped + to_control
        && worker_rx == report.sent
        && worker_tx == report.received;
    if !books {
        errors.push(format!(
            "books do not balance: generator sent {} received {}, worker rx {} tx {} dropped {dropped} to control {to_control}",
            report.sent, report.received, worker_rx, worker_tx
        ));
    }
    let measured = report
        .phases
        .iter()
        .find(|p| p.name == "timed")
        .cloned()
        .unwrap_or_default();
    let set_up = scenario.flows;
    let rss_bytes_per_conn = match (report.rss_bytes, set_up) {
        (Some(after), n) if n > 0 => Some(after.saturating_sub(rss_before) as f64 / f64::from(n)),
        _ => None,
    };
    let windows: Vec<f64> = measured.windows.iter().map(|pps| pps / 1e6).collect();
    let mean = mpps(measured.received, measured.seconds);
    Ok(Outcome {
        name: scenario.name.to_owned(),
        flows: report.flows,
        // A phase too short for a window (a quick run) has only its mean.
        mpps: if windows.is_empty() {
            mean
        } else {
            quantile(&windows, 0.9)
        },
        mpps_median: if windows.is_empty() {
            mean
        } else {
            quantile(&windows, 0.5)
        },
        mpps_mean: mean,
        windows,
        packets: measured.received,
        seconds: measured.seconds,
        new_flows: measured.new_flows,
        packets_per_busy_poll: measured.received as f64 / measured.worker_busy_polls.max(1) as f64,
        table_capacity: table.as_ref().map(|s| s.conns.capacity()),
        table_bytes: table.as_ref().map(|s| s.conns.memory_bytes()),
        rss_bytes_per_conn,
        sent: report.sent,
        received: report.received,
        drops,
        to_control,
        full_checks: report.full_checks,
        error_count: report.error_count + u64::from(!books) + sync_errors as u64,
        verified: books && report.error_count == 0 && sync_errors == 0,
        errors,
        split: report.split,
        sync: sync_report.map(|r| r.stats),
        phases: report.phases.iter().map(PhaseSummary::from).collect(),
    })
}
