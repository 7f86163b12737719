//! Pylon's per-packet path without DPDK, for profilers: the same snapshot,
//! connection table and frames as the `nat_established` scenario, fed to
//! [`Forwarder::process`](pylon_dataplane::forward::Forwarder::process) as
//! plain byte buffers on one thread. `pylon-bench fastpath` runs it, e.g.
//! under `valgrind --tool=callgrind`, where a DPDK process with its ring
//! ports and lcores would mostly profile the generator and the rings.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use pylon_conntrack::{Table, Timeouts};
use pylon_dataplane::forward::{Forwarder, Verdict};
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::Mode;

use super::flows::Stride;
use super::frames::{self, Step, FRAME_LEN};
use super::scenario::{neighbors, snapshot};

/// What a run did.
#[derive(Clone, Copy, Debug)]
pub struct FastpathRun {
    pub flows: u32,
    /// Packets of the measured loop, and its length in seconds.
    pub packets: u64,
    pub seconds: f64,
}

/// Opens `flows` NAT flows (SYN, SYN-ACK, ACK each), then forwards
/// `packets` established packets (client data and server replies in turn,
/// each cycling over the flows in scattered order, a flow's reply half a
/// cycle after its data) and times that loop.
pub fn run(flows: u32, packets: u64) -> Result<FastpathRun> {
    let table = Table::new(flows.max(1), Timeouts::default())?;
    let shared = Arc::new(Shared::new(snapshot(Mode::Nat), table, 6));
    shared.neighbors.publish(neighbors());
    let mut fwd = Forwarder::new(Arc::clone(&shared));
    let snap = shared.snapshot.load();
    let neigh = shared.neighbors.load();
    fwd.sync(&snap);
    let mut servers = vec![0u8; flows as usize];
    let mut frame = vec![0u8; FRAME_LEN];
    let templates = frames::Templates::new();
    // The worker reads the clock once per burst.
    let mut now = shared.clock.now_ms();
    let mut sent = 0u64;
    let mut send = |fwd: &mut Forwarder, flow: u32, step: Step, servers: &mut [u8]| -> Verdict {
        sent += 1;
        if sent % 32 == 0 {
            now = shared.clock.now_ms();
        }
        let server = servers[flow as usize];
        let p = frames::packet(flow, step, usize::from(server), true);
        frame.resize(FRAME_LEN, 0);
        templates.write(&mut frame, flow, step, &p);
        let port = usize::from(step.from_server());
        let verdict = fwd.process(&snap, &neigh, now, &mut frame, port);
        if step == Step::Open {
            if let Some(a) = frames::addresses(&frame) {
                let s = frames::SERVERS.iter().position(|&ip| ip == a.dst);
                servers[flow as usize] = s.unwrap_or(0) as u8;
            }
        }
        verdict
    };
    for step in [Step::Open, Step::OpenReply, Step::Ack] {
        let mut order = Stride::sequential(flows);
        for _ in 0..flows {
            let verdict = send(&mut fwd, order.next_flow(), step, &mut servers);
            ensure!(
                matches!(verdict, Verdict::Forward(_) | Verdict::Reply(_)),
                "{step:?}: {verdict:?}"
            );
        }
    }
    // As the generator's measured phase: a flow's reply half a cycle after
    // its data.
    let mut data = Stride::scattered(flows);
    let mut replies = Stride::scattered_from(flows, flows / 2);
    let started = Instant::now();
    for i in 0..packets {
        let (flow, step) = if i % 2 == 0 {
            (data.next_flow(), Step::Data)
        } else {
            (replies.next_flow(), Step::DataReply)
        };
        let verdict = send(&mut fwd, flow, step, &mut servers);
        ensure!(
            matches!(verdict, Verdict::Forward(_) | Verdict::Reply(_)),
            "{step:?}: {verdict:?}"
        );
    }
    Ok(FastpathRun {
        flows,
        packets,
        seconds: started.elapsed().as_secs_f64(),
    })
}
