//! The sync thread: drives a `pylon-sync` [`Endpoint`] over a UDP socket on
//! the management side (an ordinary thread, not an lcore), so that the
//! other appliances hold copies of the connections this one forwards, and
//! this one holds theirs (IPVS's master and backup sync daemons in one).
//!
//! - Out: the workers' [`EventQueue`]s (new connections, state changes) and
//!   the control lcore's (expiries) are drained here, turned into wire
//!   entries for services this appliance serves (VRRP MASTER, or no VRRP),
//!   and batched by the endpoint. Table requests are answered with a walk
//!   of the table (`Table::for_each`); every `refresh` seconds the
//!   connections that carried packets are sent again.
//! - In: received connections are installed into the shared table with
//!   their synced state, mapped onto this appliance's own service and real
//!   server by address, and counted on that server (ActiveConn/InActConn),
//!   as IPVS's `ip_vs_proc_conn` does; expiries remove them.
//! - The startup flag ([`Sync::startup_pending`]) holds the VRRP
//!   instances at priority 1 until the first full table arrived (see
//!   `control/sync/PROTOCOL.md`, "Safe fail-back").

use crate::pool::Pool;
use pylon_config::SyncConfig;
use pylon_conntrack::{is_active, ConnInfo};
use pylon_ctl::proto::{ConfigDigest, SyncData, SyncPeer};
use pylon_dataplane::events::{EventKind, EventQueue};
use pylon_dataplane::forward::release;
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::{Mode, Snapshot};
use pylon_sync::digest::{canonical, digest, ServiceDesc};
use pylon_sync::{Config, Digest, Endpoint, Event, Key, Kind, Reject, ResyncReason, SyncConn};
use serde_json::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Longest the thread sleeps in `recv`: bounds how long a worker event
/// waits before it is batched (the endpoint's own batching adds 10 ms).
const POLL_MS: u64 = 5;
/// How often the stats shown in the dump are refreshed.
const PUBLISH_MS: u64 = 100;
/// Datagrams read per loop round at most.
const RECV_BATCH: usize = 256;
/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`):
/// room for a burst of peer datagrams while the thread walks the table.
const RCVBUF: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync: socket on {addr}: {source}")]
    Socket {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("sync: {0}")]
    Key(#[from] pylon_sync::wire::ShortKey),
    #[error("sync: thread: {0}")]
    Thread(std::io::Error),
}

/// What the control loop shares with the sync thread.
struct Common {
    stop: AtomicBool,
    startup_pending: AtomicBool,
    config: Mutex<Option<LocalConfig>>,
    pushed: Mutex<Option<(SocketAddr, Vec<ServiceDesc>)>>,
    status: Mutex<SyncData>,
}

/// Our running configuration as the peers see it.
#[derive(Clone)]
struct LocalConfig {
    digest: Digest,
    /// Its canonical text, what a push carries.
    text: String,
}

/// The running sync thread; stopped and joined on drop.
pub struct Sync {
    common: Arc<Common>,
    /// The control lcore's own queue, for expiries it decides.
    control_queue: Arc<EventQueue>,
    thread: Option<JoinHandle<()>>,
}

/// Counters of what the receiving side did with entries.
#[derive(Default)]
struct Installed {
    installed: u64,
    updated: u64,
    expired: u64,
    unknown_service: u64,
    unknown_server: u64,
    mode_mismatch: u64,
    table_full: u64,
    updates_dropped_not_served: u64,
}

fn wire_mode(m: Mode) -> pylon_sync::Mode {
    match m {
        Mode::Nat => pylon_sync::Mode::Nat,
        Mode::Dsr => pylon_sync::Mode::Dsr,
        Mode::Tunnel => pylon_sync::Mode::Tunnel,
    }
}

/// The inverse of [`wire_mode`].
pub fn local_mode(m: pylon_sync::Mode) -> Mode {
    match m {
        pylon_sync::Mode::Nat => Mode::Nat,
        pylon_sync::Mode::Dsr => Mode::Dsr,
        pylon_sync::Mode::Tunnel => Mode::Tunnel,
    }
}

/// The pool's services, real servers and configured weights as the
/// digest sees them (deleted ones still draining are gone already).
pub fn pool_services(pool: &Pool) -> Vec<ServiceDesc> {
    pool.services
        .iter()
        .filter(|s| !s.removing)
        .map(|s| ServiceDesc {
            name: s.name.clone(),
            vip: s.vip,
            port: s.port,
            proto: s.proto,
            scheduler: s.scheduler.name().to_owned(),
            mode: wire_mode(s.mode),
            servers: s
                .servers
                .iter()
                .filter(|r| !r.removing)
                .map(|r| (r.addr, r.port, r.weight))
                .collect(),
            sorry: s.sorry.as_ref().map(|r| (r.addr, r.port)),
        })
        .collect()
}

/// 64 random bits from the kernel for the session id and nonces.
fn seed() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_ne_bytes(b),
        Err(e) => {
            warn!("sync: /dev/urandom: {e}; seeding from the clock");
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        }
    }
}

fn bind(cfg: &SyncConfig) -> Result<UdpSocket, SyncError> {
    let err = |source| SyncError::Socket {
        addr: cfg.listen,
        source,
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if let Some(dev) = &cfg.interface {
        socket.bind_device(Some(dev.as_bytes())).map_err(err)?;
    }
    // Best effort: a smaller buffer only means more resyncs under load.
    if let Err(e) = socket.set_recv_buffer_size(RCVBUF) {
        debug!("sync: SO_RCVBUF: {e}");
    }
    socket.bind(&SockAddr::from(cfg.listen)).map_err(err)?;
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(POLL_MS)))
        .map_err(err)?;
    Ok(socket)
}

impl Sync {
    /// Binds the socket and starts the thread. `queues` are the workers'
    /// (and the control lcore's Forwarder's) event queues; `control_queue`
    /// is among them.
    pub fn start(
        cfg: &SyncConfig,
        shared: Arc<Shared>,
        queues: Vec<Arc<EventQueue>>,
        control_queue: Arc<EventQueue>,
    ) -> Result<Sync, SyncError> {
        let key = Key::new(&cfg.key.0)?;
        let socket = bind(cfg)?;
        let now = shared.clock.now_ms64();
        let endpoint = Endpoint::new(
            Config {
                peers: cfg.peers.clone(),
                max_rate: cfg.max_rate,
                startup_timeout_ms: u64::from(cfg.startup_timeout) * 1000,
            },
            key,
            seed(),
            now,
        );
        info!(
            listen = %cfg.listen,
            peers = ?cfg.peers,
            session = format!("{:016x}", endpoint.session()),
            "sync: started; waiting for a peer's table before taking over by preemption"
        );
        let common = Arc::new(Common {
            stop: AtomicBool::new(false),
            startup_pending: AtomicBool::new(true),
            config: Mutex::new(None),
            pushed: Mutex::new(None),
            status: Mutex::new(SyncData {
                configured: true,
                listen: cfg.listen.to_string(),
                startup_pending: true,
                ..SyncData::default()
            }),
        });
        let mut runner = Runner {
            endpoint,
            socket,
            shared,
            queues,
            common: Arc::clone(&common),
            refresh_ms: u64::from(cfg.refresh) * 1000,
            next_refresh: now + u64::from(cfg.refresh) * 1000,
            installed: Installed::default(),
            last_publish: 0,
            digest: None,
            queue_overflows: 0,
            listen: cfg.listen,
            push_config: cfg.push_config,
            accept_config: cfg.accept_config,
            pushing: false,
        };
        let thread = std::thread::Builder::new()
            .name("pylon-sync".into())
            .spawn(move || runner.run())
            .map_err(SyncError::Thread)?;
        Ok(Sync {
            common,
            control_queue,
            thread: Some(thread),
        })
    }

    /// An expiry decided on the control lcore (idle timeout, a failed
    /// server's connections), reported like the workers' events.
    pub fn expired(&self, conn: &ConnInfo) {
        self.control_queue.push(EventKind::Expire, conn);
    }

    /// True until this appliance has received a peer's full table (or
    /// none answered): its VRRP instances must not preempt meanwhile.
    pub fn startup_pending(&self) -> bool {
        self.common.startup_pending.load(Relaxed)
    }

    /// Our running configuration changed: its digest for the peers.
    pub fn set_config(&self, services: &[ServiceDesc]) {
        let local = LocalConfig {
            digest: digest(services),
            text: canonical(services),
        };
        *self
            .common
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(local);
    }

    /// A configuration a peer pushed and `accept_config` lets us apply:
    /// the peer's address and its services. Taken once.
    pub fn take_pushed(&self) -> Option<(SocketAddr, Vec<ServiceDesc>)> {
        self.common
            .pushed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// What `pylonctl sync` shows.
    pub fn status(&self) -> SyncData {
        self.common
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The `"sync"` section of the stats dump.
    pub fn status_json(&self) -> Value {
        serde_json::to_value(self.status()).unwrap_or(Value::Null)
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.common.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("sync: the thread panicked");
            }
        }
    }
}

struct Runner {
    endpoint: Endpoint,
    socket: UdpSocket,
    shared: Arc<Shared>,
    queues: Vec<Arc<EventQueue>>,
    common: Arc<Common>,
    refresh_ms: u64,
    next_refresh: u64,
    installed: Installed,
    last_publish: u64,
    digest: Option<Digest>,
    /// Times a worker's event queue was found full.
    queue_overflows: u64,
    listen: SocketAddr,
    push_config: bool,
    accept_config: bool,
    /// Whether the endpoint has our text to push.
    pushing: bool,
}

impl Runner {
    fn run(&mut self) {
        let mut buf = vec![0u8; 65536];
        while !self.common.stop.load(Relaxed) {
            if self.receive(&mut buf) {
                self.receive_queued(&mut buf);
            }
            let now = self.shared.clock.now_ms64();
            self.drain_queues(now);
            self.check_config(now);
            if now >= self.next_refresh {
                self.next_refresh = now + self.refresh_ms;
                self.refresh();
            }
            self.endpoint.handle_timeout(now);
            self.handle_events();
            self.common
                .startup_pending
                .store(self.endpoint.startup_pending(), Relaxed);
            while let Some(t) = self.endpoint.poll_transmit(now) {
                if let Err(e) = self.socket.send_to(&t.datagram, t.to) {
                    debug!("sync: send to {}: {e}", t.to);
                }
            }
            if now.saturating_sub(self.last_publish) >= PUBLISH_MS {
                self.last_publish = now;
                self.publish();
            }
        }
        self.publish();
    }

    /// One datagram, waiting up to [`POLL_MS`]; false when none came.
    fn receive(&mut self, buf: &mut [u8]) -> bool {
        match self.socket.recv_from(buf) {
            Ok((n, from)) => {
                let now = self.shared.clock.now_ms64();
                if let Err(r) = self.endpoint.handle(now, from, &buf[..n]) {
                    log_reject(r, from);
                }
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => {
                debug!("sync: recv: {e}");
                false
            }
        }
    }

    /// Up to [`RECV_BATCH`] more datagrams that are already queued: a
    /// loop round per datagram would let the socket buffer overflow while
    /// a peer sends a table, and every datagram lost costs a resync.
    fn receive_queued(&mut self, buf: &mut [u8]) {
        if let Err(e) = self.socket.set_nonblocking(true) {
            debug!("sync: {e}");
            return;
        }
        for _ in 0..RECV_BATCH {
            if !self.receive(buf) {
                break;
            }
        }
        if let Err(e) = self.socket.set_nonblocking(false) {
            warn!("sync: socket back to blocking: {e}");
        }
    }

    /// Our configuration's digest for the peers, and with `push_config`
    /// its text while we serve something.
    fn check_config(&mut self, now: u64) {
        let pushing = self.push_config && self.shared.snapshot.load().serves_any();
        let config = self
            .common
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(local) = config.as_ref() else {
            return;
        };
        let changed = Some(local.digest) != self.digest;
        if changed {
            self.digest = Some(local.digest);
            self.endpoint.set_local_digest(now, local.digest);
        }
        if changed || pushing != self.pushing {
            self.pushing = pushing;
            self.endpoint
                .set_push_text(pushing.then(|| local.text.clone()));
        }
    }

    /// The workers' events, as updates for the services we serve. While
    /// every peer is owed a table walk they stay in the queues (see
    /// [`Endpoint::updates_superseded`]): the workers keep going, a full
    /// queue only raises its flag again.
    fn drain_queues(&mut self, now: u64) {
        let snap = self.shared.snapshot.load();
        for q in &self.queues {
            if q.take_overflow() {
                self.queue_overflows += 1;
                if !self.endpoint.updates_superseded() {
                    warn!("sync: a worker's event queue overflowed; sending full tables");
                }
                self.endpoint.resync_all();
            }
            if self.endpoint.updates_superseded() {
                continue;
            }
            while let Some(batch) = q.pop() {
                for ev in batch.events() {
                    let kind = match ev.kind {
                        EventKind::New => Kind::New,
                        EventKind::State => Kind::State,
                        EventKind::Expire => Kind::Expire,
                    };
                    match to_wire(&snap, &ev.conn, kind, 0, true) {
                        Some(c) => self.endpoint.push_update(now, c),
                        None => self.installed.updates_dropped_not_served += 1,
                    }
                }
            }
        }
    }

    /// Connections that carried packets in the last period, again.
    fn refresh(&mut self) {
        let snap = self.shared.snapshot.load();
        let mut rows = Vec::new();
        let window = u32::try_from(self.refresh_ms).unwrap_or(u32::MAX);
        let now = self.shared.clock.now_ms();
        self.shared.conns.for_each(now, |c, idle| {
            if idle < window {
                rows.extend(to_wire(&snap, c, Kind::Refresh, idle, true));
            }
        });
        if !rows.is_empty() {
            self.endpoint.send_refresh(rows);
        }
    }

    fn handle_events(&mut self) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                Event::Conn { conn, .. } => install(&self.shared, &mut self.installed, &conn),
                Event::TableRequested { peer, reason } => {
                    if self.endpoint.updates_superseded() {
                        // Older than the walk below, which carries them.
                        for q in &self.queues {
                            while q.pop().is_some() {}
                        }
                    }
                    let snap = self.shared.snapshot.load();
                    let mut rows = Vec::with_capacity(self.shared.conns.len() as usize);
                    let now = self.shared.clock.now_ms();
                    let served_only = reason != ResyncReason::Startup;
                    self.shared.conns.for_each(now, |c, idle| {
                        rows.extend(to_wire(&snap, c, Kind::Snapshot, idle, served_only));
                    });
                    info!(
                        peer = %self.peer(peer),
                        reason = reason.name(),
                        entries = rows.len(),
                        "sync: sending the full table"
                    );
                    self.endpoint.send_table(peer, rows);
                }
                Event::TransferComplete { peer, entries } => {
                    info!(peer = %self.peer(peer), entries, "sync: full table received");
                }
                Event::ResyncRequested { peer, reason } => {
                    info!(peer = %self.peer(peer), reason = reason.name(), "sync: asking for the full table");
                }
                Event::Config {
                    peer,
                    matches,
                    theirs,
                } => {
                    if matches {
                        info!(peer = %self.peer(peer), "sync: configuration in sync with the peer");
                    } else {
                        warn!(
                            peer = %self.peer(peer),
                            their_services = theirs.services,
                            their_servers = theirs.servers,
                            our_services = self.digest.map(|d| d.services),
                            our_servers = self.digest.map(|d| d.servers),
                            "sync: configuration differs from the peer's"
                        );
                    }
                }
                Event::ConfigPushed { peer, services } => {
                    let from = self.peer(peer);
                    if !self.accept_config {
                        info!(peer = %from, "sync: configuration pushed by the peer ignored (accept_config is off)");
                    } else if let Some(addr) = self.endpoint.peer_addr(peer) {
                        info!(peer = %from, services = services.len(), "sync: configuration pushed by the peer");
                        *self
                            .common
                            .pushed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some((addr, services));
                    }
                }
                Event::ConfigPushRefused { peer, reason } => {
                    warn!(peer = %self.peer(peer), %reason, "sync: configuration push refused");
                }
            }
        }
    }

    fn peer(&self, peer: usize) -> String {
        self.endpoint
            .peer_addr(peer)
            .map_or_else(|| "?".to_owned(), |a| a.to_string())
    }

    fn publish(&self) {
        let s = self.endpoint.stats();
        let n = &self.installed;
        let peers = (0..self.endpoint.peers())
            .map(|i| {
                let (theirs, matches) = self.endpoint.peer_config(i);
                SyncPeer {
                    address: self.peer(i),
                    adopted: self.endpoint.peer_adopted(i),
                    config: theirs.map(config_digest),
                    config_in_sync: matches,
                }
            })
            .collect();
        let counters = [
            ("datagrams_sent", s.datagrams_sent),
            ("bytes_sent", s.bytes_sent),
            ("datagrams_received", s.datagrams_received),
            ("updates_queued", s.updates_queued),
            ("entries_received", s.entries_received),
            ("lost", s.lost),
            ("resyncs_requested", s.resyncs_requested),
            ("transfers_sent", s.transfers_sent),
            ("transfers_completed", s.transfers_completed),
            ("overflows", s.overflows),
            ("pushes_sent", s.pushes_sent),
            ("pushes_received", s.pushes_received),
            ("pushes_refused", s.pushes_refused),
            ("queue_overflows", self.queue_overflows),
            ("installed", n.installed),
            ("updated", n.updated),
            ("expired", n.expired),
            ("unknown_service", n.unknown_service),
            ("unknown_server", n.unknown_server),
            ("mode_mismatch", n.mode_mismatch),
            ("table_full", n.table_full),
            ("not_served", n.updates_dropped_not_served),
        ];
        let status = SyncData {
            configured: true,
            session: format!("{:016x}", self.endpoint.session()),
            listen: self.listen.to_string(),
            startup_pending: self.endpoint.startup_pending(),
            config: self.endpoint.local_digest().map(config_digest),
            config_in_sync: self.endpoint.config_in_sync(),
            peers,
            counters: counters.iter().map(|&(k, v)| (k.to_owned(), v)).collect(),
            drops: Reject::ALL
                .iter()
                .map(|r| (r.name().to_owned(), s.rejected[r.index()]))
                .collect(),
        };
        *self
            .common
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = status;
    }
}

fn config_digest(d: Digest) -> ConfigDigest {
    ConfigDigest {
        digest: d.hash[..8].iter().map(|b| format!("{b:02x}")).collect(),
        services: d.services,
        servers: d.servers,
    }
}

/// A received entry into our own table (IPVS `ip_vs_proc_conn`): mapped
/// onto our service and real server by address, inserted (or its state
/// set, or replaced when it points at another server), counted on the
/// server; an expiry removes it.
fn install(shared: &Shared, n: &mut Installed, c: &SyncConn) {
    let snap = shared.snapshot.load();
    let Some((idx, svc)) = snap.service(c.vip, c.vport, c.proto) else {
        n.unknown_service += 1;
        return;
    };
    if wire_mode(svc.mode) != c.mode {
        n.mode_mismatch += 1;
        return;
    }
    let Some(server) = svc
        .servers
        .iter()
        .chain(svc.sorry.iter())
        .find(|s| s.addr == c.rip && s.port == c.rport)
    else {
        n.unknown_server += 1;
        return;
    };
    let conns = &shared.conns;
    let servers = &shared.servers;
    let seen = shared.clock.now_ms().wrapping_sub(c.idle_ms);
    let existing = conns.lookup_forward(c.client_ip, c.client_port, c.proto, c.vip, c.vport);
    if c.kind == Kind::Expire {
        if let Some((r, _)) = existing {
            if conns.expire(r, |gone| release(servers, gone)) {
                n.expired += 1;
            }
        }
        return;
    }
    if let Some((r, old)) = existing {
        if old.rip == c.rip && old.rport == c.rport {
            if let Some(prev) = conns.set_state(r, c.state, seen) {
                if is_active(prev) != is_active(c.state) {
                    if let Some(st) = servers.get(usize::from(old.server)) {
                        let (from, to) = if is_active(c.state) {
                            (&st.inactive, &st.active)
                        } else {
                            (&st.active, &st.inactive)
                        };
                        from.fetch_sub(1, Relaxed);
                        to.fetch_add(1, Relaxed);
                    }
                }
            } else {
                conns.touch(r, seen);
            }
            n.updated += 1;
            return;
        }
        // Another real server here: the peer's entry wins.
        conns.expire(r, |gone| release(servers, gone));
    }
    let info = ConnInfo {
        client_ip: c.client_ip,
        client_port: c.client_port,
        vip: c.vip,
        vport: c.vport,
        rip: c.rip,
        rport: c.rport,
        proto: c.proto,
        state: c.state,
        service: idx as u16,
        server: server.id,
    };
    if conns.insert(&info, seen).is_err() {
        n.table_full += 1;
        return;
    }
    if let Some(st) = servers.get(usize::from(server.id)) {
        let counter = if is_active(c.state) {
            &st.active
        } else {
            &st.inactive
        };
        counter.fetch_add(1, Relaxed);
    }
    n.installed += 1;
}

fn log_reject(r: Reject, from: SocketAddr) {
    match r {
        // Expected after a restart of either side: not worth a warning.
        Reject::UnknownSession => debug!(%from, "sync: datagram from an unknown session"),
        _ => warn!(%from, reason = r.name(), "sync: datagram dropped"),
    }
}

/// A table connection as a wire entry. With `served_only`, `None` for
/// services this appliance does not serve right now (a VRRP backup sends
/// no updates); always `None` when the service is gone.
fn to_wire(
    snap: &Snapshot,
    c: &ConnInfo,
    kind: Kind,
    idle_ms: u32,
    served_only: bool,
) -> Option<SyncConn> {
    let svc = snap
        .services
        .get(usize::from(c.service))
        .filter(|s| s.vip == c.vip && s.port == c.vport && s.proto == c.proto)
        .or_else(|| snap.service(c.vip, c.vport, c.proto).map(|(_, s)| s))?;
    if served_only && !svc.active {
        return None;
    }
    Some(SyncConn {
        client_ip: c.client_ip,
        client_port: c.client_port,
        vip: c.vip,
        vport: c.vport,
        rip: c.rip,
        rport: c.rport,
        proto: c.proto,
        state: c.state,
        mode: wire_mode(svc.mode),
        kind,
        idle_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_conntrack::{State, Table, Timeouts};
    use pylon_dataplane::snapshot::{Server, Service};
    use pylon_sched::Kind as Sched;
    use std::sync::atomic::Ordering::Relaxed;

    const VIP: u32 = 0x0A00_0164;
    const RS1: u32 = 0x0A00_020B;
    const RS2: u32 = 0x0A00_020C;

    /// One NAT service 10.0.1.100:80 over rs1 (id 4) and rs2 (id 9):
    /// ids differ from the sender's on purpose.
    fn shared(active: bool) -> Shared {
        let servers = vec![
            Server {
                id: 4,
                addr: RS1,
                port: 8080,
                weight: 1,
            },
            Server {
                id: 9,
                addr: RS2,
                port: 8080,
                weight: 1,
            },
        ];
        let svc = Service {
            name: "web".into(),
            vip: VIP,
            port: 80,
            proto: 6,
            scheduler: Sched::Wlc,
            mode: Mode::Nat,
            servers,
            sorry: None,
            active,
        };
        let snap = Snapshot::new(1, vec![], vec![svc], vec![]);
        Shared::new(snap, Table::new(64, Timeouts::default()).unwrap(), 16)
    }

    fn conn(port: u16, state: State, kind: Kind) -> SyncConn {
        SyncConn {
            client_ip: 0x0A00_0102,
            client_port: port,
            vip: VIP,
            vport: 80,
            rip: RS1,
            rport: 8080,
            proto: 6,
            state,
            mode: pylon_sync::Mode::Nat,
            kind,
            idle_ms: 0,
        }
    }

    fn counts(s: &Shared, id: usize) -> (u32, u32) {
        let st = &s.servers[id];
        (st.active.load(Relaxed), st.inactive.load(Relaxed))
    }

    fn lookup(s: &Shared, port: u16) -> Option<ConnInfo> {
        s.conns
            .lookup_forward(0x0A00_0102, port, 6, VIP, 80)
            .map(|(_, c)| c)
    }

    #[test]
    fn installs_on_our_own_server_ids_and_follows_state_changes() {
        let s = shared(false);
        let mut n = Installed::default();
        install(&s, &mut n, &conn(1000, State::SynRecv, Kind::New));
        let c = lookup(&s, 1000).expect("installed");
        assert_eq!((c.server, c.service, c.state), (4, 0, State::SynRecv));
        assert_eq!(counts(&s, 4), (1, 0));
        install(&s, &mut n, &conn(1000, State::Established, Kind::State));
        install(&s, &mut n, &conn(1000, State::CloseWait, Kind::State));
        assert_eq!(lookup(&s, 1000).unwrap().state, State::CloseWait);
        assert_eq!(counts(&s, 4), (0, 1), "closing moved it to InActConn");
        install(&s, &mut n, &conn(1000, State::CloseWait, Kind::Expire));
        assert!(lookup(&s, 1000).is_none());
        assert_eq!(counts(&s, 4), (0, 0));
        assert_eq!((n.installed, n.updated, n.expired), (1, 2, 1));
        assert!(s.conns.is_empty());
    }

    #[test]
    fn another_server_replaces_the_entry() {
        let s = shared(false);
        let mut n = Installed::default();
        install(&s, &mut n, &conn(7, State::Established, Kind::Snapshot));
        let moved = SyncConn {
            rip: RS2,
            ..conn(7, State::Established, Kind::New)
        };
        install(&s, &mut n, &moved);
        assert_eq!(lookup(&s, 7).unwrap().server, 9);
        assert_eq!(counts(&s, 4), (0, 0));
        assert_eq!(counts(&s, 9), (1, 0));
        assert_eq!(s.conns.len(), 1);
    }

    #[test]
    fn unknown_services_servers_and_modes_are_skipped() {
        let s = shared(false);
        let mut n = Installed::default();
        install(
            &s,
            &mut n,
            &SyncConn {
                vport: 81,
                ..conn(1, State::Established, Kind::New)
            },
        );
        install(
            &s,
            &mut n,
            &SyncConn {
                rip: 0x0A00_0299,
                ..conn(2, State::Established, Kind::New)
            },
        );
        install(
            &s,
            &mut n,
            &SyncConn {
                mode: pylon_sync::Mode::Dsr,
                ..conn(3, State::Established, Kind::New)
            },
        );
        assert_eq!(
            (n.unknown_service, n.unknown_server, n.mode_mismatch),
            (1, 1, 1)
        );
        assert!(s.conns.is_empty());
    }

    #[test]
    fn idle_time_carries_over() {
        let s = shared(false);
        let mut n = Installed::default();
        std::thread::sleep(Duration::from_millis(20));
        let old = SyncConn {
            idle_ms: 15,
            ..conn(5, State::Established, Kind::Snapshot)
        };
        install(&s, &mut n, &old);
        let mut idle = None;
        s.conns.for_each(s.clock.now_ms(), |_, i| idle = Some(i));
        assert!(idle.is_some_and(|i| (15..1000).contains(&i)), "{idle:?}");
    }

    #[test]
    fn only_served_services_are_sent_as_updates() {
        let info = ConnInfo {
            client_ip: 1,
            client_port: 2,
            vip: VIP,
            vport: 80,
            rip: RS1,
            rport: 8080,
            proto: 6,
            state: State::Established,
            service: 0,
            server: 4,
        };
        let backup = shared(false);
        let master = shared(true);
        assert!(to_wire(&backup.snapshot.load(), &info, Kind::New, 0, true).is_none());
        let row = to_wire(&backup.snapshot.load(), &info, Kind::Snapshot, 9, false).unwrap();
        assert_eq!((row.idle_ms, row.mode), (9, pylon_sync::Mode::Nat));
        let up = to_wire(&master.snapshot.load(), &info, Kind::New, 0, true).unwrap();
        assert_eq!((up.rip, up.rport, up.kind), (RS1, 8080, Kind::New));
    }

    #[test]
    fn digests_follow_configured_weights_not_health() {
        let cfg = pylon_config::Config::parse(
            "[[ports]]\nname = \"p\"\ndevice = \"net_tap0\"\naddress = \"10.0.2.1/24\"\n\
             [[services]]\nname = \"web\"\nvip = \"10.0.1.100\"\nport = 80\nprotocol = \"tcp\"\n\
             [[services.servers]]\naddress = \"10.0.2.11\"\nweight = 2\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let mut pool = Pool::from_config(&cfg, |_, _, _| true).unwrap();
        let d = digest(&pool_services(&pool));
        pool.set_up("web", std::net::Ipv4Addr::new(10, 0, 2, 11), 80, false);
        assert_eq!(
            digest(&pool_services(&pool)),
            d,
            "health is no configuration"
        );
        pool.services[0].servers[0].weight = 3;
        assert_ne!(digest(&pool_services(&pool)), d);
    }
}
