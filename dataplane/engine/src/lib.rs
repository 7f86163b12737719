//! Pylon's forwarding engine.
//!
//! Workers read three things without locks: the connection table
//! (`pylon-conntrack`), the published [`snapshot::Snapshot`] of services and
//! ports, and the [`neighbor::Neighbors`] map; the control lcore writes the
//! latter two by swapping whole snapshots. [`forward`] holds the per-packet
//! logic on plain byte slices; [`worker`] drives it from DPDK queues.

pub mod counters;
pub mod events;
pub mod forward;
pub mod icmp;
pub mod neighbor;
pub mod shared;
pub mod snapshot;
pub mod worker;
