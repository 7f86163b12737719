//! The protocol core of one appliance, sans-IO in the manner of
//! quinn-proto: datagrams and milliseconds go in ([`Endpoint::handle`],
//! [`Endpoint::handle_timeout`]), datagrams and events come out
//! ([`Endpoint::poll_transmit`], [`Endpoint::poll_event`]). It opens no
//! socket and reads no clock, so every rule below is tested on a fake clock.
//!
//! Semantics follow the IPVS sync daemon (net/netfilter/ipvs/ip_vs_sync.c):
//! the side that forwards a connection sends its creation, state changes
//! and expiry, batched into datagrams ("sync buffers"); the other side
//! installs them into its own table with the state they carry, maps them
//! to its own real servers by address, and lets its own timers run. What
//! IPVS lacks and this adds: sessions and sequence numbers (loss is
//! detected and repaired by a full table transfer), an HMAC on every
//! datagram, replay protection, a rate bound, and configuration digests.

use crate::digest::ServiceDesc;
use crate::window::Window;
use crate::wire::{
    self, ConnKey, Digest, Header, Key, Message, Reject, ResyncReason, SyncConn, MAX_CHUNK,
    MAX_UPDATES,
};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;

/// Longest an update waits for more to share its datagram.
pub const BATCH_DELAY_MS: u64 = 10;
/// An unanswered resync request is repeated this often.
pub const RESYNC_RETRY_MS: u64 = 1000;
/// Configuration digests are sent this often.
pub const DIGEST_INTERVAL_MS: u64 = 2000;
/// An incoming transfer with no chunk for this long is abandoned and asked
/// for again.
pub const TRANSFER_STALL_MS: u64 = 3000;
/// Updates waiting for the rate bound beyond this many are not kept: the
/// peers get a full transfer instead (see [`Endpoint::push_update`]).
pub const MAX_PENDING: usize = 1 << 16;
/// A peer whose configuration still differs gets our services pushed again
/// this often (when we push at all).
pub const PUSH_INTERVAL_MS: u64 = 10_000;
/// Most parts a pushed configuration may have (about 88 KB of text, some
/// 2,500 real servers): more is refused, so a peer cannot make us buffer
/// without bound.
pub const MAX_PUSH_PARTS: u16 = 64;
/// However a startup sync goes, it stops holding the appliance back after
/// this long (a peer that answers but never completes a transfer must not
/// keep it out of service forever).
pub const STARTUP_MAX_MS: u64 = 60_000;

/// What the endpoint needs to know about its surroundings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The other appliances' sync sockets; a peer's index in this list is
    /// its id in events.
    pub peers: Vec<SocketAddr>,
    /// Datagrams per second, all peers together (token bucket, bursts of
    /// up to a tenth of a second).
    pub max_rate: u32,
    /// With no authenticated datagram from any peer for this long after
    /// start, there is nobody to sync from: the startup sync is over.
    pub startup_timeout_ms: u64,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub peer: usize,
    pub to: SocketAddr,
    pub datagram: Vec<u8>,
}

/// What the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Install, update or remove a connection (by its `kind`).
    Conn { peer: usize, conn: SyncConn },
    /// The peer wants our table: walk it and pass the rows to
    /// [`Endpoint::send_table`]. With reason [`ResyncReason::Startup`] the
    /// peer has just started and gets every connection we hold (a master
    /// that restarts before its backup took over gets its connections back
    /// from the backup); otherwise it lost updates, which carry only the
    /// connections of services we serve, and gets just those.
    TableRequested { peer: usize, reason: ResyncReason },
    /// A full transfer from the peer arrived complete.
    TransferComplete { peer: usize, entries: u32 },
    /// We asked the peer for a full transfer.
    ResyncRequested { peer: usize, reason: ResyncReason },
    /// The peer's configuration digest now equals ours, or now differs.
    Config {
        peer: usize,
        matches: bool,
        theirs: Digest,
    },
    /// The peer pushed its running services (complete, and matching the
    /// digest it carried); whether to apply them is the caller's call.
    ConfigPushed {
        peer: usize,
        services: Vec<ServiceDesc>,
    },
    /// A configuration push from the peer was unusable: its text did not
    /// match its digest, did not parse, or had too many parts.
    ConfigPushRefused { peer: usize, reason: String },
}

/// Counters for the stats dump.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub datagrams_received: u64,
    /// Connection updates queued for sending.
    pub updates_queued: u64,
    /// Entries received in accepted datagrams (updates and transfer rows).
    pub entries_received: u64,
    /// Sequence numbers skipped by accepted datagrams: datagrams lost.
    pub lost: u64,
    /// Full transfers we asked for.
    pub resyncs_requested: u64,
    /// Full transfers we sent, and received complete.
    pub transfers_sent: u64,
    pub transfers_completed: u64,
    /// Updates that found the pending queue full (each forces a resync).
    pub overflows: u64,
    /// Configurations we pushed (each to one peer), and pushes received
    /// complete and usable, or refused.
    pub pushes_sent: u64,
    pub pushes_received: u64,
    pub pushes_refused: u64,
    /// Rejected datagrams by [`Reject::index`].
    pub rejected: [u64; Reject::ALL.len()],
}

#[derive(Clone, Copy, Debug)]
struct RxSession {
    session: u64,
    window: Window,
}

/// A resync request of ours, outstanding until a transfer starts.
#[derive(Clone, Copy, Debug)]
struct Request {
    nonce: u64,
    reason: ResyncReason,
    sent_at: Option<u64>,
}

#[derive(Debug)]
struct Incoming {
    transfer: u32,
    next_chunk: u32,
    received: u32,
    /// Connections an update told us about since the transfer started: a
    /// transfer row is older than any update sent after it began, so it
    /// must not undo one.
    touched: HashSet<ConnKey>,
    last_progress: u64,
}

/// A configuration push being received.
#[derive(Debug)]
struct IncomingPush {
    push: u32,
    digest: [u8; wire::DIGEST_LEN],
    parts: Vec<Option<Vec<u8>>>,
}

#[derive(Debug)]
struct Outgoing {
    nonce: u64,
    transfer: u32,
    rows: Vec<SyncConn>,
    pos: usize,
    chunk: u32,
    started: bool,
}

#[derive(Debug)]
struct Peer {
    addr: SocketAddr,
    /// Sequence number of the last datagram sent to this peer.
    tx_seq: u64,
    rx: Option<RxSession>,
    request: Option<Request>,
    incoming: Option<Incoming>,
    outgoing: Option<Outgoing>,
    /// Nonce of a table request handed to the caller and not yet answered
    /// with [`Endpoint::send_table`].
    awaiting_table: Option<u64>,
    /// Updates were lost on our side while a transfer to this peer was
    /// running: another transfer follows it (instead of restarting it, so
    /// that a sender losing updates all the time still completes one and
    /// walks its table once per transfer, not once per loss).
    again: bool,
    config_match: Option<bool>,
    /// The digest it sent last.
    their_digest: Option<Digest>,
    /// When we may push our configuration to it next.
    next_push_at: u64,
    push: Option<IncomingPush>,
}

/// One appliance's end of the sync protocol, towards all its peers.
#[derive(Debug)]
pub struct Endpoint {
    key: Key,
    session: u64,
    rng: u64,
    max_rate: u32,
    /// Token bucket in thousandths of a datagram.
    tokens: u64,
    refilled_at: u64,
    peers: Vec<Peer>,
    pending: VecDeque<SyncConn>,
    pending_since: Option<u64>,
    /// Small messages waiting for tokens, before updates and chunks.
    outbox: VecDeque<(usize, Message)>,
    next_peer: usize,
    /// Whether a transfer chunk goes before the next queued message.
    chunk_turn: bool,
    events: VecDeque<Event>,
    stats: Stats,
    local_digest: Option<Digest>,
    /// Our running services as canonical text, when we push them.
    push_text: Option<String>,
    next_push: u32,
    next_digest_at: u64,
    started_at: u64,
    startup_timeout: u64,
    heard_from_peer: bool,
    startup_done: bool,
    next_transfer: u32,
}

/// splitmix64: nonces from the caller's random seed, no dependency.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Endpoint {
    /// An endpoint starting at `now` with a session id and nonces drawn
    /// from `seed` (give it 64 bits from the OS: a predictable session id
    /// is harmless, a repeated one after a restart is not). A resync
    /// request to every peer is due at once: an appliance that starts
    /// always asks for the tables of the others.
    pub fn new(config: Config, key: Key, seed: u64, now: u64) -> Endpoint {
        let mut rng = seed;
        let session = splitmix(&mut rng).max(1);
        let mut e = Endpoint {
            key,
            session,
            rng,
            max_rate: config.max_rate.max(1),
            tokens: 0,
            refilled_at: now,
            peers: config
                .peers
                .iter()
                .map(|&addr| Peer {
                    addr,
                    tx_seq: 0,
                    rx: None,
                    request: None,
                    incoming: None,
                    outgoing: None,
                    awaiting_table: None,
                    again: false,
                    config_match: None,
                    their_digest: None,
                    next_push_at: 0,
                    push: None,
                })
                .collect(),
            pending: VecDeque::new(),
            pending_since: None,
            outbox: VecDeque::new(),
            next_peer: 0,
            chunk_turn: false,
            events: VecDeque::new(),
            stats: Stats::default(),
            local_digest: None,
            push_text: None,
            next_push: 1,
            next_digest_at: now,
            started_at: now,
            startup_timeout: config.startup_timeout_ms,
            heard_from_peer: false,
            startup_done: config.peers.is_empty(),
            next_transfer: 1,
        };
        e.tokens = e.burst();
        for i in 0..e.peers.len() {
            e.request_resync(i, ResyncReason::Startup);
        }
        e
    }

    /// Bucket size: a tenth of a second of the rate, at least 16 datagrams.
    fn burst(&self) -> u64 {
        u64::from(self.max_rate / 10).max(16) * 1000
    }

    pub fn session(&self) -> u64 {
        self.session
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    pub fn peer_addr(&self, peer: usize) -> Option<SocketAddr> {
        self.peers.get(peer).map(|p| p.addr)
    }

    /// Whether a session of the peer has been adopted (we receive from it).
    pub fn peer_adopted(&self, peer: usize) -> bool {
        self.peers.get(peer).is_some_and(|p| p.rx.is_some())
    }

    /// True until the first full transfer from a peer completed, or no
    /// peer said anything for `startup_timeout_ms`, or [`STARTUP_MAX_MS`]
    /// passed. While true the appliance must not take over by preemption
    /// (safe fail-back): it would forward without the connections.
    pub fn startup_pending(&self) -> bool {
        !self.startup_done
    }

    /// The peer's last configuration digest, and whether it equals ours
    /// (`None` until both are known).
    pub fn peer_config(&self, peer: usize) -> (Option<Digest>, Option<bool>) {
        self.peers
            .get(peer)
            .map_or((None, None), |p| (p.their_digest, p.config_match))
    }

    /// Pushes `text` (the canonical text of our running services, see
    /// [`crate::digest::canonical`]) to every peer whose digest differs
    /// from ours, and again every [`PUSH_INTERVAL_MS`] while it does;
    /// `None` stops pushing. The caller decides when this appliance's
    /// configuration is the one to spread (`push_config`, and serving).
    pub fn set_push_text(&mut self, text: Option<String>) {
        if text != self.push_text {
            for p in &mut self.peers {
                p.next_push_at = 0;
            }
        }
        self.push_text = text;
    }

    /// Our configuration digest, once set.
    pub fn local_digest(&self) -> Option<Digest> {
        self.local_digest
    }

    /// `None` before any peer sent its digest; otherwise whether every
    /// peer that did has ours.
    pub fn config_in_sync(&self) -> Option<bool> {
        let known: Vec<bool> = self.peers.iter().filter_map(|p| p.config_match).collect();
        (!known.is_empty()).then(|| known.iter().all(|&m| m))
    }

    /// Sets the digest of our running configuration; it is sent to every
    /// peer at once and then every [`DIGEST_INTERVAL_MS`].
    pub fn set_local_digest(&mut self, now: u64, digest: Digest) {
        if self.local_digest == Some(digest) {
            return;
        }
        self.local_digest = Some(digest);
        self.next_digest_at = now;
        // Matches are against the new digest from the next peer digest on.
        for p in &mut self.peers {
            p.config_match = None;
        }
    }

    /// Queues a connection change for every peer. Never blocks: beyond
    /// [`MAX_PENDING`] waiting updates the change is dropped and every
    /// peer gets a full transfer instead, which carries the current state
    /// of everything (IPVS drops sync buffers the same way when its queue
    /// is full, without the repair).
    pub fn push_update(&mut self, now: u64, conn: SyncConn) {
        if self.peers.is_empty() {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.stats.overflows += 1;
            self.pending.clear();
            self.pending_since = None;
            self.resync_all();
            return;
        }
        self.stats.updates_queued += 1;
        self.pending_since.get_or_insert(now);
        self.pending.push_back(conn);
    }

    /// True while every peer is owed a full transfer that has not been
    /// read yet: any update now would only precede rows that carry the
    /// same or a newer state, so the caller may leave its events unread
    /// until it walks its table (and then drop what it left: it is older
    /// than the walk). This is what keeps an appliance opening connections
    /// faster than `max_rate` allows to sync cheap: one table walk per
    /// transfer instead of converting every event.
    pub fn updates_superseded(&self) -> bool {
        !self.peers.is_empty()
            && self
                .peers
                .iter()
                .all(|p| p.again || p.awaiting_table.is_some())
    }

    /// Offers every peer a full transfer (updates were lost on our side:
    /// a worker's event queue overflowed, or the pending queue did). The
    /// caller answers the [`Event::TableRequested`] events. A peer with a
    /// transfer running gets the new one when that one ends.
    pub fn resync_all(&mut self) {
        for peer in 0..self.peers.len() {
            let p = &mut self.peers[peer];
            if p.awaiting_table.is_some() {
                continue;
            }
            if p.outgoing.is_some() {
                p.again = true;
                continue;
            }
            self.offer_table(peer);
        }
    }

    /// Asks the caller for our table for `peer`, unasked by it (nonce 0):
    /// updates to it were lost on our side.
    fn offer_table(&mut self, peer: usize) {
        self.peers[peer].awaiting_table = Some(0);
        self.events.push_back(Event::TableRequested {
            peer,
            reason: ResyncReason::Gap,
        });
    }

    /// Starts a full transfer of `rows` (the caller's table, each with
    /// kind [`wire::Kind::Snapshot`]) to `peer`, replacing one in
    /// progress. Sent in the background: chunks go out only with tokens
    /// left after updates.
    ///
    /// Updates still waiting are sent first (they are older than `rows`,
    /// which the caller has just read from its table, so they must not
    /// arrive after the transfer's start and mask its rows).
    pub fn send_table(&mut self, peer: usize, rows: Vec<SyncConn>) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(MAX_UPDATES);
            let batch: Vec<SyncConn> = self.pending.drain(..n).collect();
            for p in 0..self.peers.len() {
                self.outbox.push_back((p, Message::Updates(batch.clone())));
            }
        }
        self.pending_since = None;
        let transfer = self.next_transfer;
        self.next_transfer = self.next_transfer.wrapping_add(1).max(1);
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let nonce = p.awaiting_table.take().unwrap_or(0);
        // This table carries whatever was lost before it was read.
        p.again = false;
        p.outgoing = Some(Outgoing {
            nonce,
            transfer,
            rows,
            pos: 0,
            chunk: 0,
            started: false,
        });
    }

    /// Sends `rows` (kind [`wire::Kind::Refresh`]: the connections that
    /// carried packets since the last refresh) to every peer as a transfer
    /// of its own, in the background like a full one. A peer that has a
    /// transfer running or asked for one is skipped: that one carries
    /// everything anyway.
    pub fn send_refresh(&mut self, rows: Vec<SyncConn>) {
        for peer in 0..self.peers.len() {
            let p = &self.peers[peer];
            if p.outgoing.is_none() && p.awaiting_table.is_none() {
                self.send_table(peer, rows.clone());
            }
        }
    }

    fn request_resync(&mut self, peer: usize, reason: ResyncReason) {
        // Until our startup sync is over every request asks for a whole
        // table, whatever went wrong with the last one (see
        // [`Event::TableRequested`]).
        let reason = if self.startup_done {
            reason
        } else {
            ResyncReason::Startup
        };
        let nonce = splitmix(&mut self.rng);
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        if p.request.is_some() {
            return;
        }
        p.request = Some(Request {
            nonce,
            reason,
            sent_at: None,
        });
        self.stats.resyncs_requested += 1;
        self.events
            .push_back(Event::ResyncRequested { peer, reason });
    }

    fn reject(&mut self, r: Reject) -> Result<(), Reject> {
        self.stats.rejected[r.index()] += 1;
        Err(r)
    }

    /// A datagram received from `from`. Rejections are counted and
    /// returned for logging; nothing of a rejected datagram is acted on.
    pub fn handle(&mut self, now: u64, from: SocketAddr, datagram: &[u8]) -> Result<(), Reject> {
        self.stats.datagrams_received += 1;
        let Some(i) = self.peers.iter().position(|p| p.addr == from) else {
            return self.reject(Reject::UnknownPeer);
        };
        let (h, msg) = match wire::decode(&self.key, datagram) {
            Ok(d) => d,
            Err(r) => return self.reject(r),
        };
        // Authentic (possibly replayed): someone holding the key is alive.
        self.heard_from_peer = true;
        match self.peers[i].rx {
            Some(mut rx) if rx.session == h.session => {
                if let Err(r) = rx.window.check(h.seq) {
                    return self.reject(r);
                }
                let lost = rx.window.accept(h.seq);
                self.peers[i].rx = Some(rx);
                if lost > 0 {
                    self.stats.lost += lost;
                    self.request_resync(i, ResyncReason::Gap);
                }
            }
            rx => {
                // A session is adopted only by the start of a transfer that
                // answers our outstanding request: a fresh nonce no replay
                // can carry.
                let answers = matches!(
                    (&msg, self.peers[i].request),
                    (Message::FullStart { nonce, .. }, Some(req)) if *nonce == req.nonce
                );
                if !answers {
                    let reason = if rx.is_none() {
                        ResyncReason::Startup
                    } else {
                        ResyncReason::NewSession
                    };
                    self.request_resync(i, reason);
                    // A resync request is the one message honoured from a
                    // session not adopted yet: two appliances that both
                    // start would otherwise wait for each other forever.
                    // A replayed one can only make us send our current
                    // table, whose start the requester ignores (its nonce
                    // is stale); it cannot restart a running transfer.
                    if matches!(msg, Message::ResyncRequest { .. }) {
                        if self.peers[i].outgoing.is_none() {
                            self.dispatch(now, i, msg);
                        }
                        return Ok(());
                    }
                    return self.reject(Reject::UnknownSession);
                }
                self.peers[i].rx = Some(RxSession {
                    session: h.session,
                    window: Window::starting_at(h.seq),
                });
            }
        }
        self.dispatch(now, i, msg);
        Ok(())
    }

    fn dispatch(&mut self, now: u64, peer: usize, msg: Message) {
        let p = &mut self.peers[peer];
        match msg {
            Message::Updates(conns) => {
                self.stats.entries_received += conns.len() as u64;
                for conn in conns {
                    if let Some(inc) = &mut p.incoming {
                        inc.touched.insert(conn.key());
                    }
                    self.events.push_back(Event::Conn { peer, conn });
                }
            }
            Message::FullStart { transfer, .. } => {
                p.request = None;
                p.incoming = Some(Incoming {
                    transfer,
                    next_chunk: 0,
                    received: 0,
                    touched: HashSet::new(),
                    last_progress: now,
                });
            }
            Message::FullChunk {
                transfer,
                chunk,
                conns,
            } => {
                let Some(inc) = p.incoming.as_mut().filter(|i| i.transfer == transfer) else {
                    // The rest of a transfer that was superseded.
                    return;
                };
                if chunk != inc.next_chunk {
                    p.incoming = None;
                    self.request_resync(peer, ResyncReason::Gap);
                    return;
                }
                inc.next_chunk += 1;
                inc.received = inc.received.saturating_add(conns.len() as u32);
                inc.last_progress = now;
                self.stats.entries_received += conns.len() as u64;
                for conn in conns {
                    if !inc.touched.contains(&conn.key()) {
                        self.events.push_back(Event::Conn { peer, conn });
                    }
                }
            }
            Message::FullEnd {
                transfer,
                chunks,
                entries,
            } => {
                let Some(inc) = p.incoming.take().filter(|i| i.transfer == transfer) else {
                    return;
                };
                if inc.next_chunk == chunks && inc.received == entries {
                    self.stats.transfers_completed += 1;
                    self.startup_done = true;
                    self.events
                        .push_back(Event::TransferComplete { peer, entries });
                } else {
                    self.request_resync(peer, ResyncReason::Gap);
                }
            }
            Message::ResyncRequest { nonce, reason } => {
                let running = p.outgoing.as_ref().is_some_and(|o| o.nonce == nonce);
                if !running && p.awaiting_table != Some(nonce) {
                    p.awaiting_table = Some(nonce);
                    self.events
                        .push_back(Event::TableRequested { peer, reason });
                }
            }
            Message::ConfigPush {
                push,
                index,
                count,
                digest,
                text,
            } => self.push_part(peer, push, index, count, digest, text),
            Message::ConfigDigest(theirs) => {
                p.their_digest = Some(theirs);
                let Some(ours) = self.local_digest else {
                    return;
                };
                let matches = ours == theirs;
                if p.config_match != Some(matches) {
                    p.config_match = Some(matches);
                    self.events.push_back(Event::Config {
                        peer,
                        matches,
                        theirs,
                    });
                }
            }
        }
    }

    /// Runs the timers due at `now`: resync requests (first and repeated),
    /// stalled incoming transfers, digests, the end of the startup sync.
    pub fn handle_timeout(&mut self, now: u64) {
        for i in 0..self.peers.len() {
            let stalled = self.peers[i]
                .incoming
                .as_ref()
                .is_some_and(|inc| now.saturating_sub(inc.last_progress) >= TRANSFER_STALL_MS);
            if stalled {
                self.peers[i].incoming = None;
                self.request_resync(i, ResyncReason::Stalled);
            }
            let p = &mut self.peers[i];
            if let Some(req) = &mut p.request {
                if !matches!(req.sent_at, Some(t) if now.saturating_sub(t) < RESYNC_RETRY_MS) {
                    req.sent_at = Some(now);
                    let msg = Message::ResyncRequest {
                        nonce: req.nonce,
                        reason: req.reason,
                    };
                    self.outbox.push_back((i, msg));
                }
            }
        }
        self.push_config(now);
        if let Some(d) = self.local_digest {
            if now >= self.next_digest_at {
                self.next_digest_at = now + DIGEST_INTERVAL_MS;
                for i in 0..self.peers.len() {
                    self.outbox.push_back((i, Message::ConfigDigest(d)));
                }
            }
        }
        if !self.startup_done {
            let waited = now.saturating_sub(self.started_at);
            if (waited >= self.startup_timeout && !self.heard_from_peer) || waited >= STARTUP_MAX_MS
            {
                self.startup_done = true;
            }
        }
    }

    /// Our services, in parts, to the peers whose digest differs.
    fn push_config(&mut self, now: u64) {
        let (Some(text), Some(d)) = (&self.push_text, self.local_digest) else {
            return;
        };
        let due = |p: &Peer| p.config_match == Some(false) && now >= p.next_push_at;
        if !self.peers.iter().any(due) {
            return;
        }
        let parts: Vec<&[u8]> = text.as_bytes().chunks(wire::MAX_PUSH_TEXT).collect();
        let Ok(count) = u16::try_from(parts.len().max(1)) else {
            return;
        };
        if count > MAX_PUSH_PARTS {
            return;
        }
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            if !due(p) {
                continue;
            }
            p.next_push_at = now + PUSH_INTERVAL_MS;
            let push = self.next_push;
            self.next_push = self.next_push.wrapping_add(1);
            self.stats.pushes_sent += 1;
            for index in 0..count {
                let text = parts
                    .get(usize::from(index))
                    .map_or(Vec::new(), |t| t.to_vec());
                self.outbox.push_back((
                    i,
                    Message::ConfigPush {
                        push,
                        index,
                        count,
                        digest: d.hash,
                        text,
                    },
                ));
            }
        }
    }

    /// One part of a peer's push; the whole when it is complete.
    fn push_part(
        &mut self,
        peer: usize,
        push: u32,
        index: u16,
        count: u16,
        digest: [u8; wire::DIGEST_LEN],
        text: Vec<u8>,
    ) {
        let refuse = |e: &mut Endpoint, reason: String| {
            e.stats.pushes_refused += 1;
            e.events
                .push_back(Event::ConfigPushRefused { peer, reason });
        };
        if count > MAX_PUSH_PARTS {
            return refuse(self, format!("{count} parts, at most {MAX_PUSH_PARTS}"));
        }
        let p = &mut self.peers[peer];
        let fresh = p.push.as_ref().map_or(true, |i| {
            i.push != push || i.digest != digest || i.parts.len() != usize::from(count)
        });
        if fresh {
            p.push = Some(IncomingPush {
                push,
                digest,
                parts: vec![None; usize::from(count)],
            });
        }
        let Some(inc) = p.push.as_mut() else {
            return;
        };
        inc.parts[usize::from(index)] = Some(text);
        if inc.parts.iter().any(Option::is_none) {
            return;
        }
        let whole: Vec<u8> = inc.parts.iter().flatten().flatten().copied().collect();
        p.push = None;
        if <sha2::Sha256 as sha2::Digest>::digest(&whole).as_slice() != digest {
            return refuse(self, "its text does not match its digest".into());
        }
        let parsed = std::str::from_utf8(&whole)
            .map_err(|e| e.to_string())
            .and_then(crate::digest::parse_canonical);
        match parsed {
            Ok(services) => {
                self.stats.pushes_received += 1;
                self.events
                    .push_back(Event::ConfigPushed { peer, services });
            }
            Err(e) => refuse(self, e),
        }
    }

    /// When [`Endpoint::handle_timeout`] or [`Endpoint::poll_transmit`]
    /// next has something to do (at the latest).
    pub fn poll_timeout(&self) -> u64 {
        let mut t = self.next_digest_at.max(self.refilled_at);
        if let Some(since) = self.pending_since {
            t = t.min(since + BATCH_DELAY_MS);
        }
        for p in &self.peers {
            if let Some(req) = &p.request {
                t = t.min(req.sent_at.map_or(0, |s| s + RESYNC_RETRY_MS));
            }
            if let Some(inc) = &p.incoming {
                t = t.min(inc.last_progress + TRANSFER_STALL_MS);
            }
            if p.outgoing.is_some() {
                t = t.min(self.refilled_at + 1);
            }
        }
        if !self.outbox.is_empty() {
            t = t.min(self.refilled_at + 1);
        }
        if !self.startup_done {
            t = t.min(self.started_at + self.startup_timeout);
        }
        t
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.refilled_at);
        self.refilled_at = now.max(self.refilled_at);
        self.tokens = (self.tokens + elapsed * u64::from(self.max_rate)).min(self.burst());
    }

    /// The next datagram to send now, if the rate bound allows one: queued
    /// control messages and batched updates (to every peer) in order, and
    /// full-transfer chunks (peers taking turns) alternating with them
    /// while both wait, so that neither starves the other when the rate
    /// bound is reached.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Transmit> {
        self.refill(now);
        if self.tokens < 1000 {
            return None;
        }
        let (peer, msg) = self.next_message(now)?;
        self.tokens -= 1000;
        let p = &mut self.peers[peer];
        p.tx_seq += 1;
        let header = Header {
            session: self.session,
            seq: p.tx_seq,
        };
        let datagram = wire::encode(&self.key, header, &msg);
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += datagram.len() as u64;
        Some(Transmit {
            peer,
            to: p.addr,
            datagram,
        })
    }

    fn next_message(&mut self, now: u64) -> Option<(usize, Message)> {
        if self.chunk_turn {
            if let Some(m) = self.next_chunk() {
                self.chunk_turn = false;
                return Some(m);
            }
        }
        if self.outbox.is_empty() {
            self.batch_updates(now);
        }
        match self.outbox.pop_front() {
            Some(m) => {
                self.chunk_turn = true;
                Some(m)
            }
            None => self.next_chunk(),
        }
    }

    /// Moves one batch of updates to the outbox, once per peer, when the
    /// batch is full or has waited [`BATCH_DELAY_MS`].
    fn batch_updates(&mut self, now: u64) {
        let Some(since) = self.pending_since else {
            return;
        };
        if self.pending.len() < MAX_UPDATES && now.saturating_sub(since) < BATCH_DELAY_MS {
            return;
        }
        let n = self.pending.len().min(MAX_UPDATES);
        let batch: Vec<SyncConn> = self.pending.drain(..n).collect();
        self.pending_since = (!self.pending.is_empty()).then_some(now);
        for peer in 0..self.peers.len() {
            self.outbox
                .push_back((peer, Message::Updates(batch.clone())));
        }
    }

    /// The next message of some outgoing transfer, peers in turn.
    fn next_chunk(&mut self) -> Option<(usize, Message)> {
        let n = self.peers.len();
        for k in 0..n {
            let peer = (self.next_peer + k) % n;
            let Some(out) = self.peers[peer].outgoing.as_mut() else {
                continue;
            };
            self.next_peer = (peer + 1) % n;
            let msg = if !out.started {
                out.started = true;
                Message::FullStart {
                    nonce: out.nonce,
                    transfer: out.transfer,
                    entries: out.rows.len() as u32,
                }
            } else if out.pos < out.rows.len() {
                let end = (out.pos + MAX_CHUNK).min(out.rows.len());
                let conns = out.rows[out.pos..end].to_vec();
                out.pos = end;
                out.chunk += 1;
                Message::FullChunk {
                    transfer: out.transfer,
                    chunk: out.chunk - 1,
                    conns,
                }
            } else {
                let msg = Message::FullEnd {
                    transfer: out.transfer,
                    chunks: out.chunk,
                    entries: out.rows.len() as u32,
                };
                let p = &mut self.peers[peer];
                p.outgoing = None;
                self.stats.transfers_sent += 1;
                if std::mem::take(&mut p.again) {
                    self.offer_table(peer);
                }
                msg
            };
            return Some((peer, msg));
        }
        None
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
