//! VRRP for Pylon: the protocol core of the active/backup pair, sans-IO in
//! the manner of quinn-proto. Events and time go in, actions come out; the
//! crate opens no socket and reads no clock.
//!
//! - [`wire`]: VRRPv3 (RFC 5798, updated by RFC 9568) and VRRPv2 (RFC 3768)
//!   advertisements, their IPv4 and Ethernet envelope, gratuitous ARP.
//! - [`rx`]: the receive checks of RFC 5798 §7.1, as strict as keepalived's.
//! - [`instance`]: the Initialize/Backup/Master state machine of RFC 5798
//!   §6, plus keepalived's FAULT for tracking.
//! - [`config`]: the `[[vrrp]]` tables of the configuration file.
//!
//! # Driving an instance
//!
//! One [`Instance`] per configured VRID and port. The caller (the control
//! lcore) passes milliseconds of a monotonic clock as `now`:
//!
//! 1. [`Instance::startup`] once the port is up.
//! 2. For every IPv4 frame with protocol 112 from the port: strip the
//!    Ethernet header ([`wire::ethernet_payload`]), pick the instance by
//!    [`wire::peek_vrid`] (no instance: count [`wire::Reject::Vrid`]), and
//!    call [`Instance::receive`].
//! 3. Call [`Instance::on_timer`] when [`Instance::poll_timeout`] passes.
//! 4. After each call, drain [`Instance::poll_action`]: build frames with
//!    [`Instance::write_advert`] (one per [`Instance::destinations`]) and
//!    [`Instance::write_garp`] (per VIP, `count` times), and apply
//!    [`Action::StateChange`] to the ARP responder and the dataplane
//!    ([`Instance::owns_vips`]).
//! 5. [`Instance::set_tracking`] when a tracked port or service changes
//!    ([`config::Vrrp::tracking`]); [`Instance::shutdown`] on exit, then
//!    send the priority-0 advertisement it asks for.

#![forbid(unsafe_code)]

pub mod config;
pub mod instance;
pub mod rx;
pub mod wire;

pub use instance::{
    master_down_interval, skew_time, Action, Instance, InstanceConfig, InvalidConfig, MasterInfo,
    Reason, State, Stats, Status, Tracking,
};
pub use wire::{Advert, Reject, Version};
