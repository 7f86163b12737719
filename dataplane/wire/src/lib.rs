//! Wire formats for Pylon's fast path.
//!
//! The fast path parses each frame once into a [`frame::Frame`] summary of
//! offsets and fields, then rewrites it in place. This is hand-written rather
//! than built on smoltcp's views because the worker needs one pass that also
//! walks an 802.1Q tag, classifies every malformation into a drop reason, and
//! keeps offsets for in-place rewrites; smoltcp is used on the control side
//! (ARP, ICMP) where building packets matters more than cycles.

pub mod checksum;
pub mod ethernet;
pub mod frame;
pub mod ipip;
pub mod rewrite;

pub use frame::{parse, Frame, Ipv4Summary, ParseError};
