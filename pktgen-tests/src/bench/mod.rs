//! `make bench`: the packet-rate scenarios ([`crate::pktgen`]), the real
//! traffic comparison with HAProxy ([`real`]), and the results they make
//! ([`report`]).

pub mod real;
pub mod report;
