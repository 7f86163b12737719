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
    // With each the fewest packets its phases send however the timed
    // phase goes (it ends on the clock, after at least one full cycle of
    // established packets; a loaded machine may open few new flows in it).
    let scenarios = [
        ("baseline", 2_000, Kind::Baseline, 8_000),
        ("nat_established", 2_000, Kind::NatEstablished, 14_000),
        (
            "nat_new",
            0,
            Kind::NatNew {
                max_flows: 4_000,
                sync: false,
            },
            3,
        ),
        (
            "nat_new_sync",
            0,
            Kind::NatNew {
                max_flows: 4_000,
                sync: true,
            },
            3,
        ),
        ("dsr_established", 2_000, Kind::DsrEstablished, 8_000),
        ("mixed", 2_000, Kind::Mixed { max_new: 1_000 }, 14_000),
    ];
    for (name, flows, kind, fewest) in scenarios {
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
            outcome.sent >= fewest && outcome.sent == outcome.received,
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
