//! The control-socket protocol, version 1.
//!
//! One JSON object per line (`\n`-terminated, UTF-8) in each direction over
//! a Unix stream socket. A client may send several requests on one
//! connection, one after the other; each gets exactly one response, in
//! order, carrying the request's `id`:
//!
//! ```text
//! > {"v":1,"id":7,"cmd":{"op":"list","stats":true}}
//! < {"v":1,"id":7,"ok":true,"data":{"table_size":1048576,...}}
//! > {"v":1,"id":8,"cmd":{"op":"del_service","name":"nope"}}
//! < {"v":1,"id":8,"ok":false,"error":{"code":"not_found","message":"no service named nope"}}
//! ```
//!
//! A request line is at most [`MAX_LINE`] bytes, newline excluded; a longer
//! one is answered with `too_large` and the connection is closed (the rest
//! of the line cannot be told from the next request). Every other mistake
//! is answered and the connection stays usable: bad JSON or a bad field is
//! `bad_request` (with serde's message), another `v` than [`VERSION`] is
//! `unsupported_version`, an `op` nobody knows is `unknown_command`. When
//! the request's `id` could not be read the response's `id` is `null`.
//! Blank lines are ignored.
//!
//! Which `data` each command answers with is listed at [`Command`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;
/// Longest request line, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// Where the daemon listens unless its configuration says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/pylon/pylon.sock";
/// Entries `conns` returns unless the request says otherwise.
pub const DEFAULT_CONNS_LIMIT: u32 = 100;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Protocol version, [`VERSION`].
    pub v: u32,
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    /// What to do.
    pub cmd: Command,
}

impl Request {
    /// A request of this crate's version.
    pub fn new(id: u64, cmd: Command) -> Request {
        Request {
            v: VERSION,
            id,
            cmd,
        }
    }

    /// The request as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        line(self)
    }
}

/// A command, tagged by `op` in JSON: `{"op":"del_service","name":"web"}`.
///
/// Services are named by their `name` (`[[services]] name`), real servers
/// by their service, address and port. Where a server's `port` is optional
/// it matches any port of that address; a command that must name exactly
/// one server fails with `ambiguous` when that matches several.
///
/// | op | data of the response |
/// | --- | --- |
/// | `list` | [`ListData`] |
/// | `conns` | [`ConnsData`] |
/// | `add_service`, `edit_service`, `del_service`, `add_server`, `edit_server`, `del_server` | [`ChangesData`] |
/// | `drain` | [`DrainData`] |
/// | `vrrp` | [`VrrpData`] |
/// | `health` | [`HealthData`] |
/// | `workers` | [`WorkersData`] |
/// | `reload` | [`ReloadData`] |
/// | `diff` | [`DiffData`] |
/// | `sync` | [`SyncData`] |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Services and their real servers (`ipvsadm -Ln`); `stats` adds the
    /// counters, `rate` the rates; `service` keeps only that service.
    List {
        #[serde(default)]
        stats: bool,
        #[serde(default)]
        rate: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
    /// Connection-table entries matching every filter given, at most
    /// `limit` of them (`ipvsadm -Lnc`).
    Conns {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<Endpoint>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<Endpoint>,
        #[serde(default = "default_conns_limit")]
        limit: u32,
    },
    /// A new virtual service, at first without real servers.
    AddService {
        name: String,
        protocol: Protocol,
        vip: Ipv4Addr,
        port: u16,
        #[serde(default)]
        scheduler: Scheduler,
        #[serde(default)]
        forwarding: Forwarding,
    },
    /// Changes a service's scheduler or forwarding; absent fields stay.
    EditService {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduler: Option<Scheduler>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarding: Option<Forwarding>,
    },
    /// Removes a service; its connections are drained, not cut.
    DelService { name: String },
    /// Adds a real server. `port` defaults to the service's port.
    /// `forwarding` is per service in Pylon; when given, it must be the
    /// service's (ipvsadm's `-m`/`-g`/`-i` on `-a`).
    AddServer {
        service: String,
        address: Ipv4Addr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default = "default_weight")]
        weight: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarding: Option<Forwarding>,
    },
    /// Sets a real server's weight (0 = quiesced).
    EditServer {
        service: String,
        address: Ipv4Addr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        weight: u16,
    },
    /// Removes a real server; its connections are drained, not cut.
    DelServer {
        service: String,
        address: Ipv4Addr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// Sets the weight of every matching real server to 0 (of every
    /// service when `service` is absent, any port when `port` is). The
    /// client follows the connections falling with `list` or `conns`.
    Drain {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        address: Ipv4Addr,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// VRRP instances.
    Vrrp,
    /// Health-check state of every real server.
    Health,
    /// Per-worker and per-port counters.
    Workers,
    /// Reloads the configuration file (as SIGHUP does).
    Reload,
    /// How the running configuration differs from the file.
    Diff,
    /// Connection and configuration sync with the other appliances.
    Sync,
}

fn default_conns_limit() -> u32 {
    DEFAULT_CONNS_LIMIT
}

fn default_weight() -> u16 {
    1
}

impl Command {
    /// Every `op`, in declaration order.
    pub const NAMES: [&'static str; 15] = [
        "list",
        "conns",
        "add_service",
        "edit_service",
        "del_service",
        "add_server",
        "edit_server",
        "del_server",
        "drain",
        "vrrp",
        "health",
        "workers",
        "reload",
        "diff",
        "sync",
    ];

    /// This command's `op`.
    pub fn name(&self) -> &'static str {
        let i = match self {
            Command::List { .. } => 0,
            Command::Conns { .. } => 1,
            Command::AddService { .. } => 2,
            Command::EditService { .. } => 3,
            Command::DelService { .. } => 4,
            Command::AddServer { .. } => 5,
            Command::EditServer { .. } => 6,
            Command::DelServer { .. } => 7,
            Command::Drain { .. } => 8,
            Command::Vrrp => 9,
            Command::Health => 10,
            Command::Workers => 11,
            Command::Reload => 12,
            Command::Diff => 13,
            Command::Sync => 14,
        };
        Self::NAMES[i]
    }
}

/// An address with an optional port: a filter, or a server whose port may
/// be left to the service. Text form `10.0.0.1` or `10.0.0.1:8080`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Endpoint {
    /// Whether `addr` is this address and, when a port is given, this port.
    pub fn matches(&self, addr: SocketAddrV4) -> bool {
        *addr.ip() == self.address && self.port.map_or(true, |p| p == addr.port())
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(a) = s.parse::<SocketAddrV4>() {
            return Ok(Endpoint {
                address: *a.ip(),
                port: Some(a.port()),
            });
        }
        s.parse::<Ipv4Addr>()
            .map(|address| Endpoint {
                address,
                port: None,
            })
            .map_err(|_| format!("`{s}` is not an IPv4 address or ADDRESS:PORT"))
    }
}

/// `tcp` or `udp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// ipvsadm's column: `TCP`, `UDP`.
    pub fn upper(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// The IPVS schedulers Pylon has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    Rr,
    Wrr,
    Lc,
    #[default]
    Wlc,
}

impl Scheduler {
    /// The scheduler's name, as in the configuration and ipvsadm.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Rr => "rr",
            Scheduler::Wrr => "wrr",
            Scheduler::Lc => "lc",
            Scheduler::Wlc => "wlc",
        }
    }
}

/// How packets reach the real servers: `nat` (ipvsadm `-m`, Masq), `dsr`
/// (`-g`, Route) or `tunnel` (`-i`, Tunnel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forwarding {
    #[default]
    Nat,
    Dsr,
    Tunnel,
}

impl Forwarding {
    /// The configuration's name.
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Nat => "nat",
            Forwarding::Dsr => "dsr",
            Forwarding::Tunnel => "tunnel",
        }
    }

    /// ipvsadm's `Forward` column: `Masq`, `Route`, `Tunnel`.
    pub fn ipvsadm(self) -> &'static str {
        match self {
            Forwarding::Nat => "Masq",
            Forwarding::Dsr => "Route",
            Forwarding::Tunnel => "Tunnel",
        }
    }
}

/// A real server's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Checked and passing: it has its weight.
    Up,
    /// Checked and failing: effective weight 0.
    Down,
    /// No health check configured: taken as up.
    Unchecked,
}

impl Health {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unchecked => "unchecked",
        }
    }

    /// Whether the server may be given new connections (1 in metrics).
    pub fn serving(self) -> bool {
        !matches!(self, Health::Down)
    }
}

/// What went wrong, in a word a script can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not a request object, or a field is missing or wrong.
    BadRequest,
    /// The request line is longer than [`MAX_LINE`]; the connection closes.
    TooLarge,
    /// `v` is not [`VERSION`].
    UnsupportedVersion,
    /// `cmd.op` names no command.
    UnknownCommand,
    /// The daemon did not answer in time.
    Timeout,
    /// Too many clients, or too many requests queued.
    Busy,
    /// The service or server named does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// A server given without a port matches several servers.
    Ambiguous,
    /// The request is well-formed but breaks a rule (a reload's rejected
    /// configuration: `file: key: problem`).
    Invalid,
    /// The feature is not configured (no VRRP instance, no health checks).
    Unavailable,
    /// The daemon is stopping.
    ShuttingDown,
    /// A bug or an unexpected failure in the daemon.
    Internal,
    /// A code this client does not know (a newer daemon's).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code's word.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Busy => "busy",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Ambiguous => "ambiguous",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error answer: a code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code})")]
pub struct CtlError {
    pub code: ErrorCode,
    pub message: String,
}

impl CtlError {
    /// An error with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> CtlError {
        CtlError {
            code,
            message: message.into(),
        }
    }

    /// `not_found`.
    pub fn not_found(message: impl Into<String>) -> CtlError {
        CtlError::new(ErrorCode::NotFound, message)
    }

    /// `already_exists`.
    pub fn already_exists(message: impl Into<String>) -> CtlError {
        CtlError::new(ErrorCode::AlreadyExists, message)
    }

    /// `invalid`.
    pub fn invalid(message: impl Into<String>) -> CtlError {
        CtlError::new(ErrorCode::Invalid, message)
    }

    /// `internal`.
    pub fn internal(message: impl Into<String>) -> CtlError {
        CtlError::new(ErrorCode::Internal, message)
    }
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version, [`VERSION`].
    pub v: u32,
    /// The request's id, `null` when it could not be read.
    pub id: Option<u64>,
    /// Whether `data` (true) or `error` (false) follows.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CtlError>,
}

impl Response {
    /// The answer to request `id`.
    pub fn new(id: Option<u64>, result: Result<Value, CtlError>) -> Response {
        match result {
            Ok(data) => Response {
                v: VERSION,
                id,
                ok: true,
                data: Some(data),
                error: None,
            },
            Err(e) => Response {
                v: VERSION,
                id,
                ok: false,
                data: None,
                error: Some(e),
            },
        }
    }

    /// The data, or the error; a response that is neither is `internal`.
    pub fn into_result(self) -> Result<Value, CtlError> {
        match (self.ok, self.data, self.error) {
            (true, data, _) => Ok(data.unwrap_or(Value::Null)),
            (false, _, Some(e)) => Err(e),
            (false, _, None) => Err(CtlError::internal("error response without an error")),
        }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        line(self)
    }
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these types cannot fail: every map key is a string.
    let mut v = serde_json::to_vec(value).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Serialises a command's answer for [`Response::new`].
pub fn to_data<T: Serialize>(data: &T) -> Result<Value, CtlError> {
    serde_json::to_value(data).map_err(|e| CtlError::internal(format!("serialising: {e}")))
}

/// A request line that cannot be served, with the id to answer it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: Option<u64>,
    pub error: CtlError,
}

/// Parses one request line (without its newline). Never panics.
pub fn parse_request(line: &[u8]) -> Result<Request, Rejection> {
    let reject = |id, code, message: String| Rejection {
        id,
        error: CtlError::new(code, message),
    };
    if line.len() > MAX_LINE {
        return Err(reject(
            None,
            ErrorCode::TooLarge,
            format!("request longer than {MAX_LINE} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| reject(None, ErrorCode::BadRequest, format!("invalid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(reject(
            None,
            ErrorCode::BadRequest,
            "a request is a JSON object".into(),
        ));
    };
    let id = match obj.get("id") {
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            reject(
                None,
                ErrorCode::BadRequest,
                "`id` must be an integer 0..=18446744073709551615".into(),
            )
        })?),
        None => None,
    };
    match obj.get("v") {
        None => {
            return Err(reject(
                id,
                ErrorCode::BadRequest,
                "missing field `v` (the protocol version)".into(),
            ))
        }
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(reject(
                id,
                ErrorCode::UnsupportedVersion,
                format!("protocol version {v} is not supported; this daemon speaks {VERSION}"),
            ))
        }
    }
    if let Some(op) = obj
        .get("cmd")
        .and_then(|c| c.get("op"))
        .and_then(Value::as_str)
    {
        if !Command::NAMES.contains(&op) {
            return Err(reject(
                id,
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command `{}`; expected one of {}",
                    op.escape_debug(),
                    Command::NAMES.join(", ")
                ),
            ));
        }
    }
    // `id` was checked above; the rest is serde's to judge.
    if id.is_none() {
        obj.remove("id");
    }
    serde_json::from_value(Value::Object(obj))
        .map_err(|e| reject(id, ErrorCode::BadRequest, e.to_string()))
}

/// Packet, byte and connection counters since the service or server was
/// added (ipvsadm `--stats`). `in` is client to server, `out` the replies
/// that pass through Pylon (none in `dsr` and `tunnel`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Per-second rates of the same counters (ipvsadm `--rate`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    pub in_bps: u64,
    pub out_bps: u64,
}

/// Answer to `list`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListData {
    /// Connection-table capacity (ipvsadm's `size=`).
    pub table_size: u64,
    /// Connections in the table now.
    pub connections: u64,
    pub services: Vec<ServiceInfo>,
}

/// A virtual service in [`ListData`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub protocol: Protocol,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub scheduler: Scheduler,
    pub forwarding: Forwarding,
    /// Present when `list` asked for `stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Counters>,
    /// Present when `list` asked for `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rates>,
    pub servers: Vec<ServerInfo>,
}

impl ServiceInfo {
    /// `VIP:PORT`.
    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.vip, self.port)
    }
}

/// A real server in [`ServiceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub address: Ipv4Addr,
    pub port: u16,
    /// The service's forwarding (ipvsadm shows it per server).
    pub forwarding: Forwarding,
    /// The configured weight.
    pub weight: u32,
    /// The weight the scheduler uses: 0 while the server is down.
    pub effective_weight: u32,
    pub health: Health,
    /// Established connections (ActiveConn).
    pub active: u64,
    /// Other connections (InActConn: handshakes, closing, UDP).
    pub inactive: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Counters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rates>,
}

impl ServerInfo {
    /// `ADDRESS:PORT`.
    pub fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.address, self.port)
    }
}

/// Answer to `conns`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnsData {
    /// Entries that matched, also those beyond the limit.
    pub matched: u64,
    /// Whether more matched than are listed.
    pub truncated: bool,
    pub conns: Vec<ConnInfo>,
}

/// A connection-table entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    pub service: String,
    pub protocol: Protocol,
    /// IPVS state name: `ESTABLISHED`, `SYN_RECV`, `FIN_WAIT`,
    /// `TIME_WAIT`, `CLOSE`, `CLOSE_WAIT`, `LAST_ACK`, `UDP`.
    pub state: String,
    /// Milliseconds until the entry expires without traffic.
    pub expires_ms: u64,
    pub client: SocketAddrV4,
    /// VIP:port.
    pub virtual_addr: SocketAddrV4,
    pub server: SocketAddrV4,
}

/// A change made or found: the thing's path, its value before and after
/// (`None` where it did not exist). Paths name services and servers:
/// `services[web].servers[10.0.1.2:80].weight`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Answer to `add_*`, `edit_*` and `del_*`: what changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesData {
    pub changes: Vec<Change>,
}

/// Answer to `drain`: the servers now at weight 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainData {
    pub servers: Vec<DrainedServer>,
}

/// One drained server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainedServer {
    pub service: String,
    pub address: Ipv4Addr,
    pub port: u16,
    /// Its weight before the drain.
    pub previous_weight: u32,
}

/// Answer to `reload`: the file and what the reload changed (`old` is the
/// running value before, `new` the file's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadData {
    pub file: String,
    pub changes: Vec<Change>,
}

/// Answer to `diff`: runtime drift, `old` is the file's value and `new`
/// the running one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffData {
    pub file: String,
    pub changes: Vec<Change>,
}

/// Answer to `health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthData {
    pub servers: Vec<HealthInfo>,
}

/// The health of one real server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    pub service: String,
    pub address: Ipv4Addr,
    pub port: u16,
    pub state: Health,
    /// The check's kind (`tcp`, `http`, `icmp`, `exec`), none if unchecked.
    pub check: Option<String>,
    /// `ok` or why the last check failed (`timeout`, `refused`, ...).
    pub last_result: Option<String>,
    /// When the state last changed, seconds since the Unix epoch.
    pub last_change: Option<u64>,
    /// Why it is in this state (`3 checks failed: refused`).
    pub reason: Option<String>,
    /// Consecutive passed checks.
    pub successes: u32,
    /// Consecutive failed checks.
    pub failures: u32,
}

/// keepalived's VRRP states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    Init,
    Backup,
    Master,
    Fault,
}

impl VrrpState {
    /// Every state, for exposing one as a set of 0/1 series.
    pub const ALL: [VrrpState; 4] = [
        VrrpState::Init,
        VrrpState::Backup,
        VrrpState::Master,
        VrrpState::Fault,
    ];

    /// keepalived's name.
    pub fn name(self) -> &'static str {
        match self {
            VrrpState::Init => "INIT",
            VrrpState::Backup => "BACKUP",
            VrrpState::Master => "MASTER",
            VrrpState::Fault => "FAULT",
        }
    }
}

/// Answer to `vrrp`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpData {
    pub instances: Vec<VrrpInfo>,
}

/// One VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpInfo {
    pub name: String,
    pub vrid: u8,
    /// The data port it runs on.
    pub port: String,
    pub state: VrrpState,
    /// Configured priority.
    pub priority: u8,
    /// Priority after tracking.
    pub effective_priority: u8,
    /// Advertisement interval, milliseconds.
    pub advert_int_ms: u32,
    pub preempt: bool,
    pub vips: Vec<Ipv4Addr>,
    /// The master's address, when known and not us.
    pub master: Option<Ipv4Addr>,
    /// When the state last changed, seconds since the Unix epoch.
    pub last_change: Option<u64>,
    /// Why (`master_down`, `preempted`, ...).
    pub reason: Option<String>,
}

/// Answer to `sync` (and the `"sync"` section of the stats file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncData {
    /// False when the configuration has no `[sync]`; nothing else is set.
    pub configured: bool,
    /// Our session id (hex), new at every start.
    pub session: String,
    /// Our sync socket's address.
    pub listen: String,
    /// True until a peer's full table arrived (or none answered): VRRP is
    /// held at priority 1 meanwhile, so this appliance does not preempt.
    pub startup_pending: bool,
    /// Digest of our running services, servers and weights.
    pub config: Option<ConfigDigest>,
    /// `None` before any peer sent its digest; otherwise whether every
    /// peer that did has ours.
    pub config_in_sync: Option<bool>,
    pub peers: Vec<SyncPeer>,
    /// Counters (datagrams, entries, transfers, what was installed and
    /// what could not be), by name.
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
    /// Received datagrams dropped, by reason (`bad_mac`, `replay`, ...),
    /// every reason listed.
    pub drops: BTreeMap<String, u64>,
}

/// What a configuration digest covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDigest {
    /// The first 16 hex digits of the SHA-256.
    pub digest: String,
    pub services: u16,
    pub servers: u16,
}

/// One peer of the sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPeer {
    pub address: String,
    /// Whether we receive its session.
    pub adopted: bool,
    /// Its configuration's digest, once it sent one.
    pub config: Option<ConfigDigest>,
    /// Whether its digest equals ours (`None`: not known yet).
    pub config_in_sync: Option<bool>,
}

/// Answer to `workers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkersData {
    pub workers: Vec<WorkerInfo>,
    pub ports: Vec<PortInfo>,
}

/// A forwarding worker, or the control lcore's own forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Worker,
    Control,
}

/// Counters of one lcore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub lcore: u32,
    pub role: Role,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Packets handed to the control lcore (ARP, ICMP to us, ...).
    pub to_control: u64,
    pub idle_polls: u64,
    pub busy_polls: u64,
    /// Share of polls that found nothing, 0.0..=1.0, over the daemon's
    /// measuring window.
    pub idle_share: f64,
    /// Drops by reason (`no_connection`, `table_full`, ...), every reason
    /// listed.
    pub drops: BTreeMap<String, u64>,
}

impl WorkerInfo {
    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.values().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// Counters of one DPDK port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    pub name: String,
    pub link_up: bool,
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets the NIC dropped because the RX queue was full.
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    /// RX failures for want of an mbuf.
    pub rx_nombuf: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn all_commands() -> Vec<Command> {
        let a = Ipv4Addr::new(10, 0, 1, 2);
        vec![
            Command::List {
                stats: true,
                rate: false,
                service: Some("web".into()),
            },
            Command::Conns {
                service: None,
                server: Some(Endpoint {
                    address: a,
                    port: Some(80),
                }),
                client: None,
                limit: 5,
            },
            Command::AddService {
                name: "web".into(),
                protocol: Protocol::Tcp,
                vip: Ipv4Addr::new(192, 0, 2, 10),
                port: 80,
                scheduler: Scheduler::Wrr,
                forwarding: Forwarding::Dsr,
            },
            Command::EditService {
                name: "web".into(),
                scheduler: Some(Scheduler::Rr),
                forwarding: None,
            },
            Command::DelService { name: "web".into() },
            Command::AddServer {
                service: "web".into(),
                address: a,
                port: None,
                weight: 3,
                forwarding: Some(Forwarding::Nat),
            },
            Command::EditServer {
                service: "web".into(),
                address: a,
                port: Some(8080),
                weight: 0,
            },
            Command::DelServer {
                service: "web".into(),
                address: a,
                port: None,
            },
            Command::Drain {
                service: None,
                address: a,
                port: None,
            },
            Command::Vrrp,
            Command::Health,
            Command::Workers,
            Command::Reload,
            Command::Diff,
            Command::Sync,
        ]
    }

    #[test]
    fn every_command_round_trips_and_is_named() {
        let cmds = all_commands();
        assert_eq!(cmds.len(), Command::NAMES.len());
        for (i, cmd) in cmds.into_iter().enumerate() {
            let req = Request::new(i as u64, cmd);
            let line = req.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            let v: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["cmd"]["op"], req.cmd.name());
            assert_eq!(req.cmd.name(), Command::NAMES[i]);
            assert_eq!(parse_request(&line[..line.len() - 1]), Ok(req));
        }
    }

    #[test]
    fn wire_form_is_stable() {
        let req = Request::new(
            7,
            Command::List {
                stats: true,
                rate: false,
                service: None,
            },
        );
        assert_eq!(
            String::from_utf8(req.to_line()).unwrap(),
            "{\"v\":1,\"id\":7,\"cmd\":{\"op\":\"list\",\"stats\":true,\"rate\":false}}\n"
        );
        let ok = Response::new(Some(7), Ok(json!({"a": 1})));
        assert_eq!(
            String::from_utf8(ok.to_line()).unwrap(),
            "{\"v\":1,\"id\":7,\"ok\":true,\"data\":{\"a\":1}}\n"
        );
        let err = Response::new(None, Err(CtlError::not_found("no service named x")));
        assert_eq!(
            String::from_utf8(err.to_line()).unwrap(),
            "{\"v\":1,\"id\":null,\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"no service named x\"}}\n"
        );
    }

    #[test]
    fn defaults_apply() {
        let r = parse_request(br#"{"v":1,"id":1,"cmd":{"op":"list"}}"#).unwrap();
        assert_eq!(
            r.cmd,
            Command::List {
                stats: false,
                rate: false,
                service: None
            }
        );
        let r = parse_request(br#"{"v":1,"id":1,"cmd":{"op":"conns"}}"#).unwrap();
        assert!(matches!(r.cmd, Command::Conns { limit: 100, .. }));
        let r = parse_request(
            br#"{"v":1,"id":1,"cmd":{"op":"add_server","service":"s","address":"10.0.0.1"}}"#,
        )
        .unwrap();
        assert!(matches!(
            r.cmd,
            Command::AddServer {
                weight: 1,
                port: None,
                ..
            }
        ));
    }

    fn rejected(line: &[u8]) -> Rejection {
        parse_request(line).unwrap_err()
    }

    #[test]
    fn errors_have_the_right_codes() {
        let r = rejected(b"{not json");
        assert_eq!((r.id, r.error.code), (None, ErrorCode::BadRequest));
        assert!(
            r.error.message.contains("invalid JSON"),
            "{}",
            r.error.message
        );
        let r = rejected(b"[1,2]");
        assert_eq!(r.error.code, ErrorCode::BadRequest);
        let r = rejected(br#"{"v":2,"id":5,"cmd":{"op":"list"}}"#);
        assert_eq!(
            (r.id, r.error.code),
            (Some(5), ErrorCode::UnsupportedVersion)
        );
        let r = rejected(br#"{"v":"1","id":5,"cmd":{"op":"list"}}"#);
        assert_eq!(r.error.code, ErrorCode::UnsupportedVersion);
        let r = rejected(br#"{"v":1,"id":6,"cmd":{"op":"frobnicate"}}"#);
        assert_eq!((r.id, r.error.code), (Some(6), ErrorCode::UnknownCommand));
        assert!(r.error.message.contains("frobnicate"));
        let r = rejected(br#"{"v":1,"id":-1,"cmd":{"op":"list"}}"#);
        assert_eq!((r.id, r.error.code), (None, ErrorCode::BadRequest));
        let r = rejected(br#"{"v":1,"cmd":{"op":"list"}}"#);
        assert_eq!((r.id, r.error.code), (None, ErrorCode::BadRequest));
        assert!(r.error.message.contains("`id`"), "{}", r.error.message);
        let r = rejected(br#"{"id":3,"cmd":{"op":"list"}}"#);
        assert_eq!((r.id, r.error.code), (Some(3), ErrorCode::BadRequest));
        let r = rejected(br#"{"v":1,"id":3,"cmd":{"op":"list","stats":1}}"#);
        assert_eq!((r.id, r.error.code), (Some(3), ErrorCode::BadRequest));
        let r = rejected(br#"{"v":1,"id":3,"cmd":{"op":"list","statz":true}}"#);
        assert!(r.error.message.contains("statz"), "{}", r.error.message);
        let r = rejected(br#"{"v":1,"id":3,"cmd":{"op":"list"},"extra":0}"#);
        assert!(r.error.message.contains("extra"), "{}", r.error.message);
        let r = rejected(
            br#"{"v":1,"id":3,"cmd":{"op":"edit_server","service":"s","address":"10.0.0.1","weight":70000}}"#,
        );
        assert_eq!(r.error.code, ErrorCode::BadRequest);
        let r = rejected(br#"{"v":1,"id":3,"cmd":{"op":"drain","address":"10.0.0.256"}}"#);
        assert_eq!(r.error.code, ErrorCode::BadRequest);
        let r = rejected(b"{\"v\":1,\"id\":3,\"cmd\":{\"op\":\"del_service\",\"name\":\"\xff\"}}");
        assert_eq!(r.error.code, ErrorCode::BadRequest);
        let mut big = vec![b' '; MAX_LINE + 1];
        big[0] = b'{';
        assert_eq!(rejected(&big).error.code, ErrorCode::TooLarge);
    }

    #[test]
    fn unknown_error_codes_are_other() {
        let r: Response = serde_json::from_str(
            r#"{"v":1,"id":1,"ok":false,"error":{"code":"new_thing","message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(r.into_result().unwrap_err().code, ErrorCode::Other);
    }

    #[test]
    fn error_code_names_match_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::TooLarge,
            ErrorCode::UnsupportedVersion,
            ErrorCode::UnknownCommand,
            ErrorCode::Timeout,
            ErrorCode::Busy,
            ErrorCode::NotFound,
            ErrorCode::AlreadyExists,
            ErrorCode::Ambiguous,
            ErrorCode::Invalid,
            ErrorCode::Unavailable,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.name()));
        }
    }

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "10.0.0.1:80".parse::<Endpoint>(),
            Ok(Endpoint {
                address: Ipv4Addr::new(10, 0, 0, 1),
                port: Some(80)
            })
        );
        assert_eq!("10.0.0.1".parse::<Endpoint>().unwrap().port, None);
        assert!("10.0.0.1:99999".parse::<Endpoint>().is_err());
        assert!("web".parse::<Endpoint>().is_err());
        let e: Endpoint = "10.0.0.1".parse().unwrap();
        assert!(e.matches("10.0.0.1:8080".parse().unwrap()));
        assert!(!e.matches("10.0.0.2:8080".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn parser_never_panics_on_near_requests(
            op in prop::sample::select(Command::NAMES.to_vec()),
            key in "[a-z_]{1,10}",
            val in prop_oneof![
                Just(json!(null)), Just(json!(true)), Just(json!(-1)), Just(json!(1.5)),
                Just(json!(u64::MAX)), Just(json!("10.0.0.1")), Just(json!([])), Just(json!({})),
                ".{0,20}".prop_map(Value::String),
            ],
            v in prop_oneof![Just(json!(1)), Just(json!(0)), Just(json!(null))],
        ) {
            let req = json!({"v": v, "id": 1, "cmd": {"op": op, key: val}});
            let _ = parse_request(req.to_string().as_bytes());
        }
    }
}
