//! Live operation of Pylon: the control socket and its protocol
//! ([`proto`]), the server the daemon runs ([`server`]) and the client
//! `pylonctl` uses ([`client`]), the text layouts of `pylonctl`
//! ([`render`]) and the Prometheus endpoint ([`metrics`]).
//!
//! How the daemon drives it: [`Server::start`] binds the socket and
//! returns a [`Requests`] channel end; the control loop calls
//! [`Requests::serve`] (or [`Requests::try_next`] and [`Pending::reply`])
//! once per iteration, which never blocks. The loop answers each
//! [`Command`] with the matching data type of [`proto`] serialised by
//! [`proto::to_data`], or a [`CtlError`].

#![forbid(unsafe_code)]

pub mod client;
pub mod metrics;
pub mod proto;
pub mod render;
pub mod server;

pub use client::{Client, ClientError};
pub use proto::{Command, CtlError, ErrorCode, Request, Response};
pub use server::{Handler, Pending, Requests, Server, ServerError, ServerOptions};
