//! End to end, connection sync between two appliances in DSR mode (issue
//! 8), on the VRRP pair of [`pktgen_tests::vrrp_pair`] (A priority 200, B
//! priority 100, both preempting, VIP 10.0.1.100 on VRID 51) plus a
//! management link between their namespaces for the sync datagrams:
//!
//! ```text
//!   A ns: sync0 10.0.9.1/24 --veth-- sync0 10.0.9.2/24 :B ns
//!   [sync] listen = "<own>:8848", peers = ["<other>:8848"], shared key
//! ```
//!
//! The scenario is `sync_common::failover_and_failback`: 120 keep-alive
//! HTTP connections, SIGKILL of the master, fail-back with preemption after
//! the full sync; at least 99 % must carry on, the numbers are printed.
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`).

mod sync_common;

use std::path::PathBuf;

use anyhow::Result;
use pktgen_tests::process::{ip, ns_command, run_checked};
use pktgen_tests::vrrp_pair::{Appliance, VrrpOptions, VrrpPair};
use pktgen_tests::{e2e_lock, preflight, PylonProcess};
use sync_common::{failover_and_failback, Pair, KEY, SYNC_IF, SYNC_PORT};

fn sync_addr(which: Appliance) -> &'static str {
    match which {
        Appliance::A => "10.0.9.1",
        Appliance::B => "10.0.9.2",
    }
}

fn other(which: Appliance) -> Appliance {
    match which {
        Appliance::A => Appliance::B,
        Appliance::B => Appliance::A,
    }
}

/// The DSR pair of [`VrrpPair`] with the sync link between A's and B's
/// namespaces.
struct DsrPair {
    pair: VrrpPair,
}

impl DsrPair {
    fn new(prefix: &str) -> Result<DsrPair> {
        let pair = VrrpPair::new(prefix)?;
        let (a, b) = (pair.ns(Appliance::A), pair.ns(Appliance::B));
        ip(&[
            "-n", a, "link", "add", "name", SYNC_IF, "type", "veth", "peer", "name", SYNC_IF,
            "netns", b,
        ])?;
        for which in [Appliance::A, Appliance::B] {
            let ns = pair.ns(which);
            let addr = format!("{}/24", sync_addr(which));
            ip(&["-n", ns, "addr", "add", &addr, "dev", SYNC_IF])?;
            ip(&["-n", ns, "link", "set", SYNC_IF, "up"])?;
            // Full UDP checksums on the wire, so a captured frame sent
            // again is accepted by the receiving kernel.
            run_checked(ns_command(ns, "ethtool").args(["-K", SYNC_IF, "tx", "off"]))?;
        }
        Ok(DsrPair { pair })
    }

    fn config(&self, which: Appliance, priority: u8) -> Result<String> {
        let base = self.pair.config(
            which,
            VrrpOptions {
                priority,
                preempt: true,
            },
        )?;
        Ok(format!(
            "{base}\n[sync]\nlisten = \"{}:{SYNC_PORT}\"\npeers = [\"{}:{SYNC_PORT}\"]\n\
             key = \"{KEY}\"\ninterface = \"{SYNC_IF}\"\nstartup_timeout = 3\n",
            sync_addr(which),
            sync_addr(other(which)),
        ))
    }
}

impl Pair for DsrPair {
    fn mode(&self) -> &'static str {
        "DSR"
    }

    fn start(&self, a: bool, priority: u8) -> Result<PylonProcess> {
        let which = if a { Appliance::A } else { Appliance::B };
        self.pair.start(which, &self.config(which, priority)?)
    }

    fn client_ns(&self) -> &str {
        self.pair.topology().client_ns()
    }

    fn dir(&self) -> PathBuf {
        self.pair.topology().dir().to_owned()
    }
}

#[test]
fn dsr_failover_and_failback_keep_connections() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    failover_and_failback(&DsrPair::new("esyncdsr")?)
}
