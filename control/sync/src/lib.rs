//! Connection and configuration sync between Pylon appliances: the hot
//! standby's copy of the master's connection table, so that a failover
//! keeps established connections (Linux IPVS's sync daemon, with
//! authentication, loss repair and a rate bound added).
//!
//! - [`wire`]: the datagram format, byte by byte, and its HMAC-SHA256
//!   (`PROTOCOL.md` in this crate's directory is the prose reference).
//! - [`window`]: the anti-replay window of a session.
//! - [`endpoint`]: the sans-IO protocol core (quinn-proto style): bytes and
//!   milliseconds in, bytes and events out.
//! - [`digest`]: the configuration digest two appliances compare.
//! - [`config`]: the `[sync]` table of the configuration file.
//!
//! The daemon (`pylon-control`) drives an [`Endpoint`] from a management
//! thread: it feeds it the workers' connection events and the datagrams of
//! its UDP socket, sends what it returns, and installs received
//! connections into its own table.

#![forbid(unsafe_code)]

pub mod config;
pub mod digest;
pub mod endpoint;
pub mod window;
pub mod wire;

pub use endpoint::{Config, Endpoint, Event, Stats, Transmit};
pub use wire::{Digest, Key, Kind, Mode, Reject, ResyncReason, SyncConn};
