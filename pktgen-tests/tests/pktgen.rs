//! The packet generator against Pylon's real worker loop through ring
//! ports (testing ladder step 2): small runs of every kind of scenario in
//! which every packet sent must come back rewritten as the forwarding mode
//! says, fully checked, or be counted by the worker as dropped; with sync,
//! every connection must reach the backup's table. Rates are
//! printed, never asserted.
//!
//! One test, because DPDK's EAL initialises once per process. Needs root.

use std::time::Duration;

use anyhow::{ensure, Result};
use pktgen_tests::pktgen::scenario::{self, Kind, Scenario, Settings};
use pktgen_tests::pktgen::Rig;
use pktgen_tests::{e2e_lock, require_root};

#[test]
fn every_packet_is_accounted_for() -> Result<()> {
    require_root()?;
    // The generator and the worker each spin a core while they run.
    let _lock = e2e_lock()?;
    let rig = Rig::new(&format!("pylon-pktgen-test-{}", std::process::id()))?;
    let settings = Settings {
        duration: Duration::from_millis(50),
        // Every packet fully checked, in the measured phase too.
        sample: 1,
    };
    let scenarios = [
        ("baseline", 2_000, Kind::Baseline),
        ("nat_established", 2_000, Kind::NatEstablished),
        (
            "nat_new",
            0,
            Kind::NatNew {
                max_flows: 4_000,
                sync: false,
            },
        ),
        (
            "nat_new_sync",
            0,
            Kind::NatNew {
                max_flows: 4_000,
                sync: true,
            },
        ),
        ("dsr_established", 2_000, Kind::DsrEstablished),
        ("mixed", 2_000, Kind::Mixed { max_new: 1_000 }),
    ];
    for (name, flows, kind) in scenarios {
        let outcome = scenario::run(&rig, &Scenario { name, flows, kind }, &settings)?;
        eprintln!(
            "{name}: {} packets sent, {} received, {:.2} Mpps, split {:?}",
            outcome.sent, outcome.received, outcome.mpps, outcome.split
        );
        ensure!(
            outcome.verified && outcome.error_count == 0,
            "{name}: {:?}",
            outcome.errors
        );
        ensure!(
            outcome.drops.is_empty() && outcome.to_control == 0,
            "{name}: the worker dropped {:?}",
            outcome.drops
        );
        ensure!(
            outcome.sent >= 10_000 && outcome.sent == outcome.received,
            "{name}: sent {} received {}",
            outcome.sent,
            outcome.received
        );
        ensure!(
            outcome.full_checks == outcome.received,
            "{name}: {} of {} packets fully checked",
            outcome.full_checks,
            outcome.received
        );
        if let Some(sync) = &outcome.sync {
            // Few enough for the queue and the rate bound: every
            // connection reached the backup's table, once.
            let installed = sync["backup"]["installed"].as_u64();
            ensure!(
                installed == Some(u64::from(outcome.flows)),
                "{name}: the backup installed {installed:?} of {} connections: {sync}",
                outcome.flows
            );
        }
        if let Some(split) = outcome.split {
            // Every flow reached one of the three real servers.
            ensure!(
                u64::from(outcome.flows) == split.iter().sum::<u64>(),
                "{name}: split {split:?} of {} flows",
                outcome.flows
            );
        }
    }
    Ok(())
}
