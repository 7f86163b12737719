//! Integration tests over real sockets: the control-socket server with a
//! test-side control loop, the `pylonctl` binary against it, and the
//! metrics endpoint read back by Prometheus text parsers.

mod cli;
mod common;
mod metrics;
mod socket;
