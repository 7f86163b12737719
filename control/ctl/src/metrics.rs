//! The Prometheus endpoint: a small HTTP/1.1 server answering `GET
//! /metrics` with the text exposition format 0.0.4, and the helpers that
//! render metric families correctly so the daemon only supplies values.
//!
//! ```
//! use pylon_ctl::metrics::Exposition;
//! let mut e = Exposition::new();
//! e.counter("pylon_service_connections_total", "Connections scheduled to the service.")
//!     .sample(&[("service", "web")], 12u64);
//! assert_eq!(
//!     e.render(),
//!     "# HELP pylon_service_connections_total Connections scheduled to the service.\n\
//!      ## TYPE pylon_service_connections_total counter\n\
//!      pylon_service_connections_total{service=\"web\"} 12\n"
//! );
//! ```
//!
//! [`pylon`] renders every family Pylon exports from the answers the
//! control socket gives ([`ListData`] with stats, [`WorkersData`],
//! [`VrrpData`], [`SyncData`]), so `pylonctl` and the metrics always
//! agree.

use crate::proto::{ListData, SyncData, VrrpData, VrrpState, WorkersData};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Longest request head (request line and headers) accepted.
pub const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; more get 503.
const MAX_CONNECTIONS: usize = 8;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever goes up (restarts reset it); name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A sample's value: integers are written exactly, floats as Go's
/// `ParseFloat` reads them (`NaN`, `+Inf`, `-Inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i128),
    Float(f64),
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::Int(i128::from(v))
            }
        }
    )*};
}
int_value!(u8, u16, u32, u64, i8, i16, i32, i64);

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as i128)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(i128::from(v))
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) if x.is_nan() => f.write_str("NaN"),
            Value::Float(x) if x == f64::INFINITY => f.write_str("+Inf"),
            Value::Float(x) if x == f64::NEG_INFINITY => f.write_str("-Inf"),
            Value::Float(x) => write!(f, "{x}"),
        }
    }
}

/// Makes `name` a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) by
/// replacing every other character with `_`.
pub fn metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// Makes `name` a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, colon: bool) -> String {
    let mut out: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let ok = c.is_ascii_alphabetic()
                || c == '_'
                || (colon && c == ':')
                || (i > 0 && c.is_ascii_digit());
            if ok {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// A label value with `\`, `"` and line feeds escaped.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text with `\` and line feeds escaped.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: Kind,
    samples: String,
}

/// A scrape being written: families in the order first named, each with
/// its HELP and TYPE line once and all its samples together.
#[derive(Debug, Default)]
pub struct Exposition {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

/// Adds samples to one family; from [`Exposition::counter`] and
/// [`Exposition::gauge`].
#[derive(Debug)]
pub struct FamilyWriter<'a> {
    family: &'a mut Family,
}

impl FamilyWriter<'_> {
    /// One sample. Label names are made valid, values escaped. A label
    /// set given twice makes two samples; do not.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Into<Value>) -> &mut Self {
        let out = &mut self.family.samples;
        out.push_str(&self.family.name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}=\"{}\"", label_name(k), escape_label_value(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", value.into());
        self
    }
}

impl Exposition {
    /// An empty scrape.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// The counter family `name` (made valid by [`metric_name`]); a name
    /// used before continues that family, keeping its help and type.
    pub fn counter(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, Kind::Counter)
    }

    /// The gauge family `name`.
    pub fn gauge(&mut self, name: &str, help: &str) -> FamilyWriter<'_> {
        self.family(name, help, Kind::Gauge)
    }

    fn family(&mut self, name: &str, help: &str, kind: Kind) -> FamilyWriter<'_> {
        let name = metric_name(name);
        let i = match self.index.get(&name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.clone(),
                    help: escape_help(help),
                    kind,
                    samples: String::new(),
                });
                self.index.insert(name, self.families.len() - 1);
                self.families.len() - 1
            }
        };
        FamilyWriter {
            family: &mut self.families[i],
        }
    }

    /// The text; families without samples are left out.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in self.families.iter().filter(|f| !f.samples.is_empty()) {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
            out.push_str(&f.samples);
        }
        out
    }
}

/// Services and real servers: table use, counters when `list` carries
/// stats, connections, weights and health.
pub fn add_services(e: &mut Exposition, list: &ListData) {
    e.gauge(
        "pylon_connection_table_entries",
        "Connections in the connection table.",
    )
    .sample(&[], list.connections);
    e.gauge(
        "pylon_connection_table_size",
        "Capacity of the connection table.",
    )
    .sample(&[], list.table_size);
    for svc in &list.services {
        let s = [("service", svc.name.as_str())];
        if let Some(st) = &svc.stats {
            e.counter(
                "pylon_service_connections_total",
                "Connections scheduled to the service.",
            )
            .sample(&s, st.conns);
            traffic(
                e,
                "service",
                &s,
                st.in_packets,
                st.out_packets,
                st.in_bytes,
                st.out_bytes,
            );
        }
        for srv in &svc.servers {
            let addr = srv.addr().to_string();
            let l = [("service", svc.name.as_str()), ("server", addr.as_str())];
            if let Some(st) = &srv.stats {
                e.counter(
                    "pylon_server_connections_total",
                    "Connections scheduled to the real server.",
                )
                .sample(&l, st.conns);
                traffic(
                    e,
                    "server",
                    &l,
                    st.in_packets,
                    st.out_packets,
                    st.in_bytes,
                    st.out_bytes,
                );
            }
            e.gauge(
                "pylon_server_active_connections",
                "Established connections to the real server (ActiveConn).",
            )
            .sample(&l, srv.active);
            e.gauge(
                "pylon_server_inactive_connections",
                "Other connections to the real server (InActConn).",
            )
            .sample(&l, srv.inactive);
            e.gauge(
                "pylon_server_weight",
                "Configured weight of the real server.",
            )
            .sample(&l, srv.weight);
            e.gauge(
                "pylon_server_effective_weight",
                "Weight the scheduler uses (0 while down).",
            )
            .sample(&l, srv.effective_weight);
            e.gauge(
                "pylon_server_health",
                "1 if the real server passes its health check or has none, 0 if down.",
            )
            .sample(&l, srv.health.serving());
        }
    }
}

fn traffic(
    e: &mut Exposition,
    what: &str,
    labels: &[(&str, &str)],
    in_packets: u64,
    out_packets: u64,
    in_bytes: u64,
    out_bytes: u64,
) {
    let with = |dir| {
        let mut l = labels.to_vec();
        l.push(("direction", dir));
        l
    };
    let packets = format!("pylon_{what}_packets_total");
    let packets_help =
        format!("Packets forwarded for the {what}: in = from clients, out = replies.");
    let bytes = format!("pylon_{what}_bytes_total");
    let bytes_help = format!("Bytes forwarded for the {what}: in = from clients, out = replies.");
    e.counter(&packets, &packets_help)
        .sample(&with("in"), in_packets)
        .sample(&with("out"), out_packets);
    e.counter(&bytes, &bytes_help)
        .sample(&with("in"), in_bytes)
        .sample(&with("out"), out_bytes);
}

/// VRRP: the state as one 0/1 series per state, and the priority.
pub fn add_vrrp(e: &mut Exposition, vrrp: &VrrpData) {
    for i in &vrrp.instances {
        let vrid = i.vrid.to_string();
        for s in VrrpState::ALL {
            e.gauge(
                "pylon_vrrp_state",
                "1 for the VRRP instance's current state, 0 for the others.",
            )
            .sample(
                &[
                    ("instance", i.name.as_str()),
                    ("vrid", vrid.as_str()),
                    ("state", s.name()),
                ],
                s == i.state,
            );
        }
        e.gauge(
            "pylon_vrrp_priority",
            "Effective VRRP priority (after tracking).",
        )
        .sample(
            &[("instance", i.name.as_str()), ("vrid", vrid.as_str())],
            i.effective_priority,
        );
    }
}

/// Workers (packets, drops by reason, idle share) and ports.
pub fn add_workers(e: &mut Exposition, data: &WorkersData) {
    for w in &data.workers {
        let lcore = w.lcore.to_string();
        let l = [("worker", lcore.as_str())];
        e.counter(
            "pylon_worker_rx_packets_total",
            "Packets received by the worker.",
        )
        .sample(&l, w.rx_packets);
        e.counter(
            "pylon_worker_tx_packets_total",
            "Packets sent by the worker.",
        )
        .sample(&l, w.tx_packets);
        e.counter(
            "pylon_worker_to_control_packets_total",
            "Packets the worker handed to the control lcore.",
        )
        .sample(&l, w.to_control);
        e.gauge(
            "pylon_worker_idle_ratio",
            "Share of the worker's polls that found no packet.",
        )
        .sample(&l, w.idle_share);
        for (reason, &n) in &w.drops {
            e.counter(
                "pylon_worker_drops_total",
                "Packets the worker dropped, by reason.",
            )
            .sample(
                &[("worker", lcore.as_str()), ("reason", reason.as_str())],
                n,
            );
        }
    }
    for p in &data.ports {
        let l = [("port", p.name.as_str())];
        let counters: [(&str, &str, u64); 8] = [
            (
                "pylon_port_rx_packets_total",
                "Packets received on the port.",
                p.rx_packets,
            ),
            (
                "pylon_port_tx_packets_total",
                "Packets sent on the port.",
                p.tx_packets,
            ),
            (
                "pylon_port_rx_bytes_total",
                "Bytes received on the port.",
                p.rx_bytes,
            ),
            (
                "pylon_port_tx_bytes_total",
                "Bytes sent on the port.",
                p.tx_bytes,
            ),
            (
                "pylon_port_imissed_total",
                "Packets the NIC dropped for a full RX queue.",
                p.imissed,
            ),
            (
                "pylon_port_ierrors_total",
                "Erroneous received packets.",
                p.ierrors,
            ),
            (
                "pylon_port_oerrors_total",
                "Failed transmissions.",
                p.oerrors,
            ),
            (
                "pylon_port_rx_nombuf_total",
                "Receive failures for want of an mbuf.",
                p.rx_nombuf,
            ),
        ];
        for (name, help, v) in counters {
            e.counter(name, help).sample(&l, v);
        }
        e.gauge("pylon_port_link_up", "1 if the port's link is up.")
            .sample(&l, p.link_up);
    }
}

/// Every Pylon family, from the control socket's answers.
pub fn pylon(list: &ListData, workers: &WorkersData, vrrp: &VrrpData, sync: &SyncData) -> String {
    let mut e = Exposition::new();
    add_services(&mut e, list);
    add_vrrp(&mut e, vrrp);
    add_workers(&mut e, workers);
    add_sync(&mut e, sync);
    e.render()
}

/// Connection sync (nothing without `[sync]`): whether the startup sync
/// still holds VRRP back, each peer's configuration against ours (alert
/// on 0: a failover would change the services), the counters and the
/// dropped datagrams by reason.
pub fn add_sync(e: &mut Exposition, sync: &SyncData) {
    if !sync.configured {
        return;
    }
    e.gauge(
        "pylon_sync_startup_pending",
        "1 while the startup sync holds VRRP at priority 1.",
    )
    .sample(&[], sync.startup_pending);
    for p in &sync.peers {
        let peer = [("peer", p.address.as_str())];
        e.gauge(
            "pylon_sync_peer_adopted",
            "1 when the peer's sync session is received.",
        )
        .sample(&peer, p.adopted);
        if let Some(same) = p.config_in_sync {
            e.gauge(
                "pylon_sync_peer_config_in_sync",
                "1 when the peer's services, servers and weights digest equals ours.",
            )
            .sample(&peer, same);
        }
    }
    for (name, &v) in &sync.counters {
        e.counter(
            &format!("pylon_sync_{name}_total"),
            "Connection sync counter (see pylonctl sync).",
        )
        .sample(&[], v);
    }
    let mut dropped = e.counter(
        "pylon_sync_datagrams_dropped_total",
        "Received sync datagrams dropped, by reason.",
    );
    for (reason, &v) in &sync.drops {
        dropped.sample(&[("reason", reason.as_str())], v);
    }
}

/// The HTTP endpoint; dropping it stops it.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    listener: TcpListener,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks one) and answers each scrape with
    /// what `render` returns, called on the scrape's own thread.
    pub fn start<F>(addr: SocketAddr, render: F) -> io::Result<MetricsServer>
    where
        F: Fn() -> String + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let accepting = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(render);
        let thread = thread::Builder::new()
            .name("pylon-metrics".into())
            .spawn(move || accept_loop(&accepting, &thread_stop, &render))?;
        Ok(MetricsServer {
            stop,
            listener,
            addr,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept (EINVAL on Linux); the connect covers
        // any other outcome.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Render = Arc<dyn Fn() -> String + Send + Sync>;

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, render: &Render) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok((mut stream, _)) = accepted else {
            // Out of descriptors or memory: let some scrapes finish.
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(
                &mut stream,
                503,
                "Service Unavailable",
                "too many scrapes\n",
                &[],
            );
            continue;
        }
        let render = Arc::clone(render);
        let conn_active = Arc::clone(&active);
        let spawned = thread::Builder::new()
            .name("pylon-metrics-conn".into())
            .spawn(move || {
                serve(stream, render.as_ref());
                conn_active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> io::Result<()> {
    respond_head(stream, code, reason, body, extra, true)
}

fn respond_head(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    body: &str,
    extra: &[(&str, &str)],
    with_body: bool,
) -> io::Result<()> {
    let content_type = if code == 200 {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

/// What the request head says, or the status to refuse it with.
enum Head {
    Metrics { head_only: bool },
    Refuse(u16, &'static str, &'static str),
}

/// Reads the request head: until the blank line, at most [`MAX_REQUEST`]
/// bytes, within [`READ_TIMEOUT`].
fn read_head(stream: &mut TcpStream) -> Head {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
        if let Some(end) = end {
            return parse_head(&buf[..end]);
        }
        if buf.len() > MAX_REQUEST {
            return Head::Refuse(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Head::Refuse(408, "Request Timeout", "request timeout\n");
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Head::Refuse(400, "Bad Request", "incomplete request\n"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Head::Refuse(408, "Request Timeout", "request timeout\n"),
        }
    }
}

fn parse_head(head: &[u8]) -> Head {
    let bad = Head::Refuse(400, "Bad Request", "bad request\n");
    let Ok(head) = std::str::from_utf8(head) else {
        return bad;
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Head::Refuse(505, "HTTP Version Not Supported", "HTTP/1.x only\n");
    }
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return Head::Refuse(404, "Not Found", "not found; metrics are at /metrics\n");
    }
    match method {
        "GET" => Head::Metrics { head_only: false },
        "HEAD" => Head::Metrics { head_only: true },
        _ => Head::Refuse(405, "Method Not Allowed", "GET or HEAD only\n"),
    }
}

fn serve(mut stream: TcpStream, render: &(dyn Fn() -> String + Send + Sync)) {
    let _ = match read_head(&mut stream) {
        Head::Metrics { head_only } => {
            respond_head(&mut stream, 200, "OK", &render(), &[], !head_only)
        }
        Head::Refuse(405, reason, body) => {
            respond(&mut stream, 405, reason, body, &[("Allow", "GET, HEAD")])
        }
        Head::Refuse(code, reason, body) => respond(&mut stream, code, reason, body, &[]),
    };
    let _ = stream.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid() {
        assert_eq!(metric_name("pylon:x_total"), "pylon:x_total");
        assert_eq!(metric_name("9lives-x"), "_lives_x");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(label_name(""), "_");
    }

    #[test]
    fn values_render_as_go_parses_them() {
        assert_eq!(Value::from(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Value::from(true).to_string(), "1");
        assert_eq!(Value::from(0.25).to_string(), "0.25");
        assert_eq!(Value::from(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::from(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::from(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\"c\nd"), "a\\\\b\"c\\nd");
    }

    #[test]
    fn families_stay_together_and_empty_ones_are_left_out() {
        let mut e = Exposition::new();
        e.counter("a_total", "A.").sample(&[("x", "1")], 1u64);
        e.gauge("b", "B.").sample(&[], 2u64);
        e.gauge("empty", "Nothing.");
        e.counter("a_total", "ignored").sample(&[("x", "2")], 3u64);
        assert_eq!(
            e.render(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"2\"} 3\n\
             # HELP b B.\n# TYPE b gauge\nb 2\n"
        );
    }

    #[test]
    fn request_heads() {
        assert!(matches!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Head::Metrics { head_only: false }
        ));
        assert!(matches!(
            parse_head(b"HEAD /metrics?x=1 HTTP/1.0"),
            Head::Metrics { head_only: true }
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1"),
            Head::Refuse(404, ..)
        ));
        assert!(matches!(
            parse_head(b"POST /metrics HTTP/1.1"),
            Head::Refuse(405, ..)
        ));
        assert!(matches!(parse_head(b"GET /metrics"), Head::Refuse(400, ..)));
        assert!(matches!(
            parse_head(b"GET /metrics HTTP/2"),
            Head::Refuse(505, ..)
        ));
        assert!(matches!(parse_head(b"\xff\xfe"), Head::Refuse(400, ..)));
    }
}
