//! Pylon's thin safe wrapper over DPDK 22.11.
//!
//! This crate and `dpdk-sys` are the only places in Pylon that contain
//! `unsafe`; every other crate drives DPDK through the types here:
//!
//! - [`Eal`]: the Environment Abstraction Layer, initialised once per process.
//! - [`launch`] / [`wait_lcore`]: run Rust closures on worker lcores.
//! - [`Mempool`], [`Mbuf`], [`Burst`]: packet buffers and fixed-size bursts.
//! - [`Port`], [`RxQueue`], [`TxQueue`]: ethdev ports and their queues.
//! - [`Ring`]: rings of mbufs that wire ports back to back in one process
//!   ([`Port::from_rings`]).
//!
//! # Lifetimes of DPDK objects
//!
//! DPDK forbids every call after `rte_eal_cleanup`, forbids freeing a
//! mempool whose mbufs are still in use, and forbids reconfiguring a port
//! whose queues are being polled. Rust lifetimes would make the API
//! unusable for worker lcores (which need `'static` closures), so the
//! wrapper counts instead:
//!
//! - every [`Mempool`], [`Port`], queue handle and launched closure holds a
//!   reference on the EAL; dropping [`Eal`] runs `rte_eal_cleanup` only when
//!   none is left, and otherwise leaves the EAL to the process exit;
//! - a mempool is freed when its last handle goes and none of its mbufs is
//!   in use, and otherwise leaked (see [`Mempool`]);
//! - a configured port keeps its receive mempool alive until it is closed;
//! - a port refuses `configure`/`start`/`stop`/`close` while any of its queue
//!   handles exists, and each queue has at most one handle.
//!
//! Leaking is always the fallback because it is safe and only happens at
//! teardown, when the process is about to exit anyway.

mod eal;
mod error;
mod mbuf;
mod port;
mod ring;

pub use eal::{
    launch, lcore_id, main_lcore, pause, tsc, tsc_hz, wait_lcore, worker_lcores, Eal, LCORE_ID_ANY,
};
pub use error::{Error, Result};
pub use mbuf::{Burst, Drain, Mbuf, Mempool, BURST_SIZE, DEFAULT_DATA_ROOM, RX_BURST_SIZE};
pub use port::{Port, PortConf, PortInfo, PortStats, RxQueue, TxQueue};
pub use ring::Ring;
