//! Pylon's health-check engine: is each real server alive, and when does
//! that change?
//!
//! Four checkers, from the network's depth to the operator's own:
//!
//! - `icmp`: an ICMP echo request, answered by an echo reply with the same
//!   identifier, sequence number and data (RFC 792);
//! - `tcp`: a TCP connect, optionally sending bytes and expecting bytes in
//!   the answer;
//! - `http`: an HTTP/1.1 `GET` of a path, expecting a status code in a range
//!   and optionally a substring of the body (RFC 9110, RFC 9112);
//! - `exec`: an operator command whose exit status 0 means healthy, killed
//!   at its timeout (keepalived's `MISC_CHECK`).
//!
//! The crate has three layers, in the sans-IO style of the rest of Pylon:
//!
//! 1. [`Tracker`]: the rise/fall state machine of one server, driven by
//!    `(result, now)` events, returning the transitions;
//! 2. [`Monitor`]: every server's tracker plus the scheduler (which check
//!    is due when, start times spread over the interval) and the counters
//!    behind [`ServerHealth`]; it has no clock and does no I/O, so tests
//!    drive it with a fake clock;
//! 3. [`Engine`]: one thread that runs the checks on schedule with
//!    non-blocking sockets, feeds their results to a [`Monitor`] and hands
//!    every [`Transition`] to a callback. [`check_once`] runs a single check
//!    with the same code, blocking.
//!
//! [`config`] holds the TOML schema of the `health` tables and the merge of
//! per-service defaults with per-server overrides into a [`HealthCheck`].

pub mod config;
mod engine;
mod exec;
mod http;
mod icmp;
mod monitor;
mod probe;
mod tracker;

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use config::{
    HealthCheck, HealthCheckConfig, HealthConfigError, HealthControl, OnDown, Origin, Probe,
    StatusRange,
};
pub use engine::{check_once, Engine, EngineError};
pub use monitor::{Due, Monitor, RunId, StartLag};
pub use tracker::Tracker;

/// Which real server a check is about: the service it belongs to and the
/// server's address and port in that service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ServerKey {
    /// The service's name (`[[services]] name`).
    pub service: String,
    /// The real server's address.
    pub address: Ipv4Addr,
    /// The real server's port (the service's port unless the server sets
    /// its own); checks use it unless the check overrides the port.
    pub port: u16,
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.service, self.address, self.port)
    }
}

/// The kind of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// ICMP echo request/reply (RFC 792).
    Icmp,
    /// TCP connect, optional send/expect.
    Tcp,
    /// HTTP `GET` (RFC 9110).
    Http,
    /// An operator command.
    Exec,
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckKind::Icmp => "icmp",
            CheckKind::Tcp => "tcp",
            CheckKind::Http => "http",
            CheckKind::Exec => "exec",
        })
    }
}

/// Whether a server takes new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Healthy: the server has its configured weight.
    Up,
    /// Failed: effective weight 0, no new connections.
    Down,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Up => "up",
            State::Down => "down",
        })
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No answer (or no complete answer) within the timeout.
    Timeout,
    /// The TCP connection was refused (RST in answer to the SYN).
    Refused,
    /// The host or network is unreachable (an ICMP error, or no route).
    Unreachable,
    /// The server reset the connection after it was established.
    Reset,
    /// The server closed the connection before the check was complete.
    Closed,
    /// The HTTP status code is not in the expected range.
    Status(u16),
    /// The HTTP body does not contain the expected text.
    BodyMismatch,
    /// The TCP answer does not contain the expected bytes.
    ExpectMismatch,
    /// The answer is not a well-formed HTTP response.
    BadResponse(String),
    /// The command exited with this non-zero status.
    ExitCode(i32),
    /// The command was killed by this signal (not by our timeout).
    Signal(i32),
    /// A local error (socket, bind, spawn ...).
    Io(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Timeout => f.write_str("timeout"),
            Reason::Refused => f.write_str("connection refused"),
            Reason::Unreachable => f.write_str("unreachable"),
            Reason::Reset => f.write_str("connection reset"),
            Reason::Closed => f.write_str("connection closed early"),
            Reason::Status(code) => write!(f, "status {code}"),
            Reason::BodyMismatch => f.write_str("body mismatch"),
            Reason::ExpectMismatch => f.write_str("expect mismatch"),
            Reason::BadResponse(what) => write!(f, "bad response: {what}"),
            Reason::ExitCode(code) => write!(f, "exit code {code}"),
            Reason::Signal(signal) => write!(f, "killed by signal {signal}"),
            Reason::Io(what) => write!(f, "local error: {what}"),
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// The server answered as expected.
    Pass,
    /// It did not.
    Fail(Reason),
}

impl CheckResult {
    /// Whether the check passed.
    pub fn passed(&self) -> bool {
        matches!(self, CheckResult::Pass)
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Pass => f.write_str("ok"),
            CheckResult::Fail(reason) => reason.fmt(f),
        }
    }
}

impl From<Reason> for CheckResult {
    fn from(reason: Reason) -> Self {
        CheckResult::Fail(reason)
    }
}

/// A change of a server's state, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Transition {
    /// The server.
    pub key: ServerKey,
    /// The kind of its check.
    pub kind: CheckKind,
    /// The state before.
    pub old: State,
    /// The state now.
    pub new: State,
    /// The result of the check that completed the rise or the fall.
    pub reason: CheckResult,
    /// When it happened.
    pub at: SystemTime,
}

/// One server to check: who it is and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCheck {
    /// The server; checks go to `key.address`.
    pub key: ServerKey,
    /// The resolved check (see [`config::resolve`]).
    pub check: HealthCheck,
}

impl ServerCheck {
    /// The port the check connects to: the check's `port` override, else
    /// the server's port.
    pub fn target_port(&self) -> u16 {
        self.check.port.unwrap_or(self.key.port)
    }
}

/// What the CLI shows for one server: the answer of [`Engine::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerHealth {
    /// The server.
    pub key: ServerKey,
    /// Its check's kind.
    pub kind: CheckKind,
    /// Its current state.
    pub state: State,
    /// The result of its last completed check; `None` before the first.
    pub last_result: Option<CheckResult>,
    /// When the last check completed.
    pub last_check: Option<SystemTime>,
    /// How long the last check took.
    pub last_duration: Option<Duration>,
    /// When the state last changed (or the server was added, with its
    /// initial state).
    pub last_change: SystemTime,
    /// Consecutive successful checks up to now.
    pub successes: u32,
    /// Consecutive failed checks up to now.
    pub failures: u32,
    /// The rise threshold of its check.
    pub rise: u32,
    /// The fall threshold of its check.
    pub fall: u32,
    /// Checks completed since the server was added.
    pub checks_run: u64,
    /// Of those, the failed ones.
    pub checks_failed: u64,
    /// State changes since the server was added.
    pub transitions: u64,
    /// Scheduled checks skipped because the previous one was still running.
    pub skipped: u64,
    /// How late (after its scheduled time) the last check started.
    pub last_start_lag: Option<Duration>,
    /// Whether a check is running now.
    pub in_progress: bool,
}
