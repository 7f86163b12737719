//! End to end, DSR (L2 direct routing): the client, pylon's one port and
//! three real servers share one L2 segment ([`pktgen_tests::Topology::lan`]).
//! Pylon only rewrites the destination MAC of the client's packets to a real
//! server's; the servers hold the VIP on `lo` (with `arp_ignore=1`,
//! `arp_announce=2`) and answer the client directly. 1,200 real HTTP
//! requests through the VIP must all succeed, split 1/2/3 within 10 %, and
//! the replies must not pass through pylon (see `common::direct_return`).
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`).

mod common;

use anyhow::Result;
use pktgen_tests::Forwarding;

#[test]
fn dsr_wlc_one_worker() -> Result<()> {
    common::direct_return(Forwarding::Dsr, 1, 1200)
}

#[test]
fn dsr_wlc_two_workers() -> Result<()> {
    common::direct_return(Forwarding::Dsr, 2, 1200)
}
