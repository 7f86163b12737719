//! The control lcore of the Pylon appliance: ARP responder and resolver,
//! ICMP, timers and stats, plus start-up and shutdown of the dataplane.

pub mod app;
pub mod ctl;
pub mod health;
pub mod neighbors;
pub mod pool;
pub mod slowpath;
pub mod stats;
pub mod sync;
pub mod vrrp;
