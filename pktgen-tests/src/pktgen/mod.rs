//! A DPDK packet generator that drives Pylon's real worker loop in one
//! process, for `make bench` (testing ladder step 5).
//!
//! [`rig::Rig`] initialises the EAL and wires four ring ports in two
//! pairs: the generator lcore plays the clients (behind a router) and the
//! three real servers; the worker lcore runs Pylon's
//! [`Worker`](pylon_dataplane::worker::Worker) over a real
//! [`Snapshot`](pylon_dataplane::snapshot::Snapshot), connection table and
//! neighbor map (published directly: there is no control lcore), or, for
//! the baseline, a bare MAC-swap forwarder. [`generator`] sends each
//! phase's packets, checks every packet that comes back (flow, real server
//! and its stickiness always; headers, checksums and payload on every
//! packet of the setup and verification passes and on a sample in the
//! measured phase) and keeps the books: every packet sent is received or
//! counted by the worker as dropped. [`scenario`] lists what `make bench`
//! measures; [`sync_pair`] adds connection sync to a scenario; [`fastpath`] runs the worker's per-packet code alone, for
//! profilers.

pub mod fastpath;
pub mod flows;
pub mod frames;
pub mod generator;
pub mod rig;
pub mod scenario;
pub mod sync_pair;

pub use rig::Rig;
pub use scenario::{Outcome, Scenario, Settings};
