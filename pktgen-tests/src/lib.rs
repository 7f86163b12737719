//! End-to-end harness for Pylon.
//!
//! Builds a test network out of Linux network namespaces ([`Topology`]:
//! routed for NAT, one L2 segment for DSR and tunnel forwarding),
//! runs real HTTP servers and clients in it (Python 3 stdlib scripts in
//! `scripts/`, compiled into this crate), starts the `pylon` daemon on DPDK
//! `net_af_packet` ports in the load balancer's namespace ([`PylonProcess`])
//! and reads its stats; [`ReplyPath`] shows which way the replies went;
//! [`LoadClient`] keeps requests running while a test fails and restores
//! real servers.
//! Everything it creates is uniquely named and removed
//! on drop, also when a test panics; [`cleanup_stale`] removes what a killed
//! run left behind.
//!
//! Needs root, iproute2, ethtool and python3. The end-to-end tests take
//! [`e2e_lock`] so that only one of them drives traffic at a time.

pub mod bench;
pub mod client;
pub mod load;
pub mod nat_pair;
pub mod pktgen;
pub mod process;
pub mod pylon;
pub mod reply_path;
pub mod topology;
pub mod vrrp_pair;

pub use client::ClientResult;
pub use load::{LoadClient, LoadOptions, Outcome, Request, Requests};
pub use process::{
    e2e_lock, preflight, pylon_binary, pylonctl_binary, require_root, unique_id, E2eLock,
    ScratchDir,
};
pub use pylon::{
    dpdk_runtime_dir, drop_counter, drops, file_prefix_for, harmful_drops, health_state,
    port_counter, run_to_exit, server_conns, server_health, server_weight, wall_time,
    worker_counter, worker_total, Forwarding, HealthOptions, Network, PortSpec, PylonExit,
    PylonOptions, PylonProcess, HARMLESS_DROPS,
};
pub use reply_path::ReplyPath;
pub use topology::{cleanup_stale, vip_url, RealServer, Topology};
pub use vrrp_pair::{Appliance, VrrpOptions, VrrpPair};

/// The weights `(server name, weight)` a [`PylonOptions`] gives rs1..rs3.
pub fn server_weights(options: &PylonOptions) -> Vec<(&'static str, u32)> {
    ["rs1", "rs2", "rs3"]
        .into_iter()
        .zip(options.weights)
        .collect()
}
