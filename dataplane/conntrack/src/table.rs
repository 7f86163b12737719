//! The lock-free table itself: entries, index, free list, expiry.

use crate::state::{next_state, Dir, State, TcpFlags, Timeouts};
use crossbeam_utils::CachePadded;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::mem::{size_of, size_of_val};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8};

/// Largest capacity [`Table::new`] accepts: entry numbers + 1 must fit the
/// 32 low bits of an index slot and of the free-list head.
pub const MAX_CAPACITY: u32 = 1 << 31;

/// Slots per index bucket: 8 × 8 B = one cache line.
const SLOTS: usize = 8;
/// Buckets an insert may try: the home bucket and 15 more along the key's
/// probe sequence (see [`Probe`]).
const MAX_PROBES: u64 = 16;
/// Position of the state byte in `w2`.
const STATE_SHIFT: u32 = 32;
/// State byte of a retired entry (not a valid [`State`]): makes any
/// state-change CAS racing with expiry fail.
const DEAD: u64 = 0xFF << STATE_SHIFT;
/// Low 32 bits: entry number + 1 (0 = empty slot / end of the free list).
const LOW: u64 = 0xFFFF_FFFF;

/// One connection, 32 bytes of atomics (see the crate documentation).
///
/// - `w0`: client_ip(32) | client_port(16) | vport(16); while the entry is
///   free, the next free entry + 1.
/// - `w1`: vip(32) | rip(32).
/// - `w2`: rport(16) | proto(8) | state(8) | service(16) | server(16).
/// - `last_seen`: millisecond tick of the last packet (wrapping).
/// - `version`: seqlock; odd = free or being written, even = live.
#[repr(C, align(32))]
struct Entry {
    w0: AtomicU64,
    w1: AtomicU64,
    w2: AtomicU64,
    last_seen: AtomicU32,
    version: AtomicU32,
}

const _: () = assert!(size_of::<Entry>() == 32);

/// A consistent copy of a live entry.
struct Snapshot {
    version: u32,
    w0: u64,
    w1: u64,
    w2: u64,
    last_seen: u32,
}

enum Read {
    Free,
    Torn,
    Live(Snapshot),
}

impl Entry {
    fn free(next: u64) -> Entry {
        Entry {
            w0: AtomicU64::new(next),
            w1: AtomicU64::new(0),
            w2: AtomicU64::new(DEAD),
            last_seen: AtomicU32::new(0),
            version: AtomicU32::new(1),
        }
    }

    /// The seqlock read side: version (Acquire), fields, Acquire fence,
    /// version again. Equal even versions prove the fields belong to one
    /// incarnation, because every writer makes the version odd and issues
    /// a Release fence before touching the fields.
    fn read_once(&self) -> Read {
        let v1 = self.version.load(Acquire);
        if v1 & 1 == 1 {
            return Read::Free;
        }
        let w0 = self.w0.load(Relaxed);
        let w1 = self.w1.load(Relaxed);
        let w2 = self.w2.load(Relaxed);
        let last_seen = self.last_seen.load(Relaxed);
        fence(Acquire);
        if self.version.load(Relaxed) != v1 {
            return Read::Torn;
        }
        Read::Live(Snapshot {
            version: v1,
            w0,
            w1,
            w2,
            last_seen,
        })
    }

    /// A consistent copy, retrying a torn read once (the entry was being
    /// expired or reused; a second change in a row means it is gone).
    fn read(&self) -> Option<Snapshot> {
        for _ in 0..2 {
            match self.read_once() {
                Read::Free => return None,
                Read::Torn => continue,
                Read::Live(s) => return Some(s),
            }
        }
        None
    }
}

/// One cache line of index slots.
#[repr(C, align(64))]
#[derive(Default)]
struct Bucket([AtomicU64; SLOTS]);

/// Where a key may live in the index: probe step `d` is bucket
/// `home + d * step` (modulo the power-of-two bucket count) with an odd
/// `step` taken from the tag, so the first `nbuckets` steps are distinct.
///
/// Double hashing rather than spilling into the next buckets: keys that
/// share a home bucket spill to different places, so no clusters form. In
/// a simulation of a full table at 80 % slot load (the worst case of the
/// sizing rule) with connections constantly replaced, spilling into the 3
/// following buckets refused 3.4 % of inserts, and refusals began at 57 %
/// of capacity; this sequence, capped at 16 buckets, refused none, with
/// lookups reading 1.4 bucket lines on a hit and 4.3 on a miss (1.04 and
/// 1.6 at capacity 2^20, 50 % slot load).
#[derive(Clone, Copy)]
struct Probe {
    home: u64,
    step: u64,
    /// Hash bits 32..64, stored in the slot's high half.
    tag: u64,
}

/// Everything a worker needs to forward a packet of a connection, decoded
/// from one consistent read of its entry. Addresses are IPv4 in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnInfo {
    pub client_ip: u32,
    pub client_port: u16,
    pub vip: u32,
    pub vport: u16,
    /// Real server address and port.
    pub rip: u32,
    pub rport: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub state: State,
    /// Service index in the published snapshot.
    pub service: u16,
    /// Global real-server id (index of its counters).
    pub server: u16,
}

impl ConnInfo {
    fn pack(&self) -> [u64; 3] {
        [
            u64::from(self.client_ip) << 32
                | u64::from(self.client_port) << 16
                | u64::from(self.vport),
            u64::from(self.vip) << 32 | u64::from(self.rip),
            u64::from(self.rport) << 48
                | u64::from(self.proto) << 40
                | u64::from(self.state as u8) << STATE_SHIFT
                | u64::from(self.service) << 16
                | u64::from(self.server),
        ]
    }

    /// `None` for a retired entry's sealed state byte.
    fn unpack(w0: u64, w1: u64, w2: u64) -> Option<ConnInfo> {
        Some(ConnInfo {
            client_ip: (w0 >> 32) as u32,
            client_port: (w0 >> 16) as u16,
            vport: w0 as u16,
            vip: (w1 >> 32) as u32,
            rip: w1 as u32,
            rport: (w2 >> 48) as u16,
            proto: proto_of(w2),
            state: state_of(w2)?,
            service: (w2 >> 16) as u16,
            server: w2 as u16,
        })
    }
}

fn proto_of(w2: u64) -> u8 {
    (w2 >> 40) as u8
}

fn state_of(w2: u64) -> Option<State> {
    State::from_u8((w2 >> STATE_SHIFT) as u8)
}

/// `w2` with its state byte replaced.
fn with_state(w2: u64, state: State) -> u64 {
    w2 & !(0xFF << STATE_SHIFT) | u64::from(state as u8) << STATE_SHIFT
}

/// Milliseconds from `last` to `now` on the wrapping tick clock. A `last`
/// slightly ahead of `now` (a worker read the clock later than the reaper)
/// counts as 0, not as 49 days.
fn idle(now: u32, last: u32) -> u32 {
    let d = now.wrapping_sub(last);
    if d > i32::MAX as u32 {
        0
    } else {
        d
    }
}

/// Handle to one incarnation of a live entry, returned by lookups and
/// [`Table::insert`]. Operations through a stale handle (the connection
/// expired, the entry may hold another connection now) are ignored. Only
/// meaningful for the table that returned it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    idx: u32,
    version: u32,
}

/// The table has no free entry, or the index has no free slot within the
/// 16 buckets a connection may live in (at the ≤ 80 % slot load the sizing
/// guarantees, practically never).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection table full")]
pub struct Full;

/// Invalid [`Table::new`] arguments (the configuration validates them
/// first; this keeps a bad value from reaching an allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("connection table capacity must be at least 1")]
    ZeroCapacity,
    #[error("connection table capacity {0} exceeds the maximum of 2^31")]
    TooLarge(u32),
}

/// Free-list head and connection count: written by every insert and
/// expiry, so kept on their own cache line away from the read-mostly
/// fields every lookup reads.
struct FreeList {
    /// Treiber stack head: ABA tag (32) | free entry + 1 (32).
    free_head: AtomicU64,
    len: AtomicU32,
}

/// The shared connection table. See the crate documentation for the
/// design; all methods take `&self` and never block.
pub struct Table {
    entries: Box<[Entry]>,
    buckets: Box<[Bucket]>,
    /// Per bucket, the furthest probe step at which a connection homed there
    /// was ever placed (0 = all in the home bucket): how far lookups of
    /// keys homed there must look. Only grows; shrinking it safely would
    /// need to rule out a racing insert.
    reach: Box<[AtomicU8]>,
    mask: u64,
    probes: u64,
    seed: [u64; 2],
    capacity: u32,
    timeouts: Timeouts,
    free: CachePadded<FreeList>,
    /// Next entry [`Table::reclaim`] looks at.
    cursor: CachePadded<AtomicU32>,
}

impl Table {
    /// Allocates everything up front: no allocation happens afterwards.
    /// `capacity` must be 1..=[`MAX_CAPACITY`].
    pub fn new(capacity: u32, timeouts: Timeouts) -> Result<Table, Error> {
        if capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        if capacity > MAX_CAPACITY {
            return Err(Error::TooLarge(capacity));
        }
        // capacity * 1.25 slots, 8 per bucket, rounded up to a power of two.
        let nbuckets = (u64::from(capacity) * 5).div_ceil(32).next_power_of_two();
        let entries = (0..capacity)
            .map(|i| {
                Entry::free(if i + 1 < capacity {
                    u64::from(i) + 2
                } else {
                    0
                })
            })
            .collect();
        let buckets = (0..nbuckets).map(|_| Bucket::default()).collect();
        let reach = (0..nbuckets).map(|_| AtomicU8::new(0)).collect();
        // std's RandomState is seeded from the OS once per thread and
        // perturbed per instance: enough to keep clients from aiming at a
        // bucket without another dependency.
        let seed = [
            RandomState::new().hash_one(0x5eed_u64),
            RandomState::new().hash_one(0x5eed_u64),
        ];
        Ok(Table {
            entries,
            buckets,
            reach,
            mask: nbuckets - 1,
            probes: MAX_PROBES.min(nbuckets),
            seed,
            capacity,
            timeouts,
            free: CachePadded::new(FreeList {
                free_head: AtomicU64::new(1),
                len: AtomicU32::new(0),
            }),
            cursor: CachePadded::new(AtomicU32::new(0)),
        })
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Live connections (including ones being inserted right now).
    pub fn len(&self) -> u32 {
        self.free.len.load(Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Bytes held by the table: entries, index buckets, reach bytes and
    /// the table header (whose padded line holds the free-list head), from
    /// the actual allocations.
    pub fn memory_bytes(&self) -> usize {
        size_of_val(&*self.entries)
            + size_of_val(&*self.buckets)
            + size_of_val(&*self.reach)
            + size_of::<Table>()
    }

    /// Keyed hash of the client side of a flow (murmur3's fmix64 finaliser
    /// with the table's random seed folded in twice). Not a cryptographic
    /// PRF, but without the seed a client cannot tell which keys collide.
    /// Low bits pick the bucket, high 32 bits are the slot tag.
    fn hash(&self, client_ip: u32, client_port: u16, proto: u8) -> u64 {
        let k = u64::from(client_ip) << 24 | u64::from(client_port) << 8 | u64::from(proto);
        let mut x = k ^ self.seed[0];
        x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= self.seed[1];
        x = (x ^ (x >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }

    fn probe(&self, h: u64) -> Probe {
        Probe {
            home: h & self.mask,
            step: (h >> 32) | 1,
            tag: h >> 32,
        }
    }

    /// Bucket of probe step `d`.
    fn bucket(&self, p: Probe, d: u64) -> &Bucket {
        &self.buckets[(p.home.wrapping_add(d.wrapping_mul(p.step)) & self.mask) as usize]
    }

    /// The last probe step at which a key homed like `p` may sit.
    fn reach(&self, p: Probe) -> u64 {
        u64::from(self.reach[p.home as usize].load(Relaxed))
    }

    /// Looks for a key hashed to `h`: its home bucket, then (only if some
    /// insert ever spilled from there) the further steps of its sequence.
    /// Returns the first live entry whose consistent copy satisfies
    /// `matches(w0, w1, w2)`.
    fn find(&self, h: u64, matches: impl Fn(u64, u64, u64) -> bool) -> Option<(ConnRef, ConnInfo)> {
        let p = self.probe(h);
        self.scan(self.bucket(p, 0), p.tag, &matches).or_else(|| {
            (1..=self.reach(p)).find_map(|d| self.scan(self.bucket(p, d), p.tag, &matches))
        })
    }

    /// One bucket of [`find`](Self::find): slots with the right tag, then a
    /// seqlock read and verification of the entry they point to.
    fn scan(
        &self,
        bucket: &Bucket,
        tag: u64,
        matches: &impl Fn(u64, u64, u64) -> bool,
    ) -> Option<(ConnRef, ConnInfo)> {
        bucket.0.iter().find_map(|slot| {
            let v = slot.load(Acquire);
            if v >> 32 != tag || v & LOW == 0 {
                return None;
            }
            let idx = (v & LOW) as u32 - 1;
            let s = self.entries[idx as usize].read()?;
            if !matches(s.w0, s.w1, s.w2) {
                return None;
            }
            let info = ConnInfo::unpack(s.w0, s.w1, s.w2)?;
            Some((
                ConnRef {
                    idx,
                    version: s.version,
                },
                info,
            ))
        })
    }

    /// Starts loading the index bucket where the connection keyed by the
    /// client side of a flow would be (the key of
    /// [`lookup_forward`](Self::lookup_forward) and
    /// [`lookup_reply`](Self::lookup_reply)), and returns the key's hash
    /// for [`prefetch_entries`](Self::prefetch_entries). A worker does this
    /// for a whole RX burst before processing it, so the misses of
    /// different packets overlap instead of coming one after the other
    /// (VPP's load balancer works the same way).
    pub fn prefetch_bucket(&self, client_ip: u32, client_port: u16, proto: u8) -> u64 {
        let h = self.hash(client_ip, client_port, proto);
        prefetch(self.bucket(self.probe(h), 0));
        h
    }

    /// Starts loading the entries the home bucket of `h` (from
    /// [`prefetch_bucket`](Self::prefetch_bucket), whose line should have
    /// arrived meanwhile) points at with the key's tag: the second
    /// dependent miss of a lookup.
    pub fn prefetch_entries(&self, h: u64) {
        let p = self.probe(h);
        for slot in &self.bucket(p, 0).0 {
            let v = slot.load(Relaxed);
            if v >> 32 == p.tag && v & LOW != 0 {
                if let Some(e) = self.entries.get(((v & LOW) - 1) as usize) {
                    prefetch(e);
                }
            }
        }
    }

    /// The connection of a client -> VIP packet: key (source address, source
    /// port, protocol), verified against the VIP and virtual port.
    pub fn lookup_forward(
        &self,
        client_ip: u32,
        client_port: u16,
        proto: u8,
        vip: u32,
        vport: u16,
    ) -> Option<(ConnRef, ConnInfo)> {
        let w0 = u64::from(client_ip) << 32 | u64::from(client_port) << 16 | u64::from(vport);
        self.find(self.hash(client_ip, client_port, proto), |e0, e1, e2| {
            e0 == w0 && (e1 >> 32) as u32 == vip && proto_of(e2) == proto
        })
    }

    /// The connection of a real server -> client reply: key (destination
    /// address, destination port, protocol), verified against the real
    /// server's address and port.
    pub fn lookup_reply(
        &self,
        client_ip: u32,
        client_port: u16,
        proto: u8,
        rip: u32,
        rport: u16,
    ) -> Option<(ConnRef, ConnInfo)> {
        let client = u64::from(client_ip) << 16 | u64::from(client_port);
        self.find(self.hash(client_ip, client_port, proto), |e0, e1, e2| {
            e0 >> 16 == client
                && e1 as u32 == rip
                && (e2 >> 48) as u16 == rport
                && proto_of(e2) == proto
        })
    }

    /// Adds a connection, last seen at `now`. The caller looks it up first:
    /// the table does not reject duplicates (RSS keeps one flow's forward
    /// packets on one worker, so two workers do not race to create it).
    ///
    /// The entry is written while its version is still odd, then its index
    /// slot is claimed, and only then is the version made even: until that
    /// last store, readers that reach it through the slot skip it, and an
    /// insert that finds no slot can return the entry to the free list
    /// without anyone having seen it.
    pub fn insert(&self, info: &ConnInfo, now: u32) -> Result<ConnRef, Full> {
        let idx = self.pop_free().ok_or(Full)?;
        let e = &self.entries[idx as usize];
        let odd = e.version.load(Relaxed);
        // Seqlock write side: the version went odd when the entry was
        // retired (or built); this fence orders that before the field
        // stores for any reader that sees one of them.
        fence(Release);
        let [w0, w1, w2] = info.pack();
        e.w0.store(w0, Relaxed);
        e.w1.store(w1, Relaxed);
        e.w2.store(w2, Relaxed);
        e.last_seen.store(now, Relaxed);
        if !self.claim_slot(self.hash(info.client_ip, info.client_port, info.proto), idx) {
            self.push_free(idx);
            return Err(Full);
        }
        self.free.len.fetch_add(1, Relaxed);
        let version = odd.wrapping_add(1);
        e.version.store(version, Release);
        Ok(ConnRef { idx, version })
    }

    /// Puts `idx + 1` with the tag of `h` into the first free slot along
    /// the key's probe sequence, raising the home bucket's reach before
    /// taking a slot beyond it so lookups know to follow.
    fn claim_slot(&self, h: u64, idx: u32) -> bool {
        let p = self.probe(h);
        let val = p.tag << 32 | (u64::from(idx) + 1);
        for d in 0..self.probes {
            for slot in &self.bucket(p, d).0 {
                if slot.load(Relaxed) != 0 {
                    continue;
                }
                if self.reach(p) < d {
                    self.reach[p.home as usize].fetch_max(d as u8, Relaxed);
                }
                if slot.compare_exchange(0, val, AcqRel, Relaxed).is_ok() {
                    return true;
                }
            }
        }
        false
    }

    /// Clears the index slot of entry `idx` holding the key in `w0`/`w2`.
    /// Exactly one slot refers to a live entry, and it is removed before
    /// the entry goes back on the free list.
    fn unlink(&self, idx: u32, w0: u64, w2: u64) {
        let p = self.probe(self.hash((w0 >> 32) as u32, (w0 >> 16) as u16, proto_of(w2)));
        let val = p.tag << 32 | (u64::from(idx) + 1);
        for d in 0..=self.reach(p) {
            for slot in &self.bucket(p, d).0 {
                if slot.compare_exchange(val, 0, AcqRel, Relaxed).is_ok() {
                    return;
                }
            }
        }
    }

    /// Pops a free entry (Treiber stack; the tag defeats ABA: a head that
    /// was popped and pushed back in between has another tag).
    fn pop_free(&self) -> Option<u32> {
        let head = &self.free.free_head;
        let mut cur = head.load(Acquire);
        loop {
            let first = cur & LOW;
            if first == 0 {
                return None;
            }
            // May read a link that is already stale if another thread pops
            // `first` meanwhile; the CAS then fails on the changed tag.
            let next = self.entries[(first - 1) as usize].w0.load(Relaxed) & LOW;
            let new = ((cur >> 32).wrapping_add(1) << 32) | next;
            match head.compare_exchange_weak(cur, new, Acquire, Acquire) {
                Ok(_) => return Some((first - 1) as u32),
                Err(actual) => cur = actual,
            }
        }
    }

    /// Pushes a retired entry (version odd) on the free stack.
    fn push_free(&self, idx: u32) {
        let head = &self.free.free_head;
        let link = &self.entries[idx as usize].w0;
        let mut cur = head.load(Relaxed);
        loop {
            link.store(cur & LOW, Relaxed);
            let new = ((cur >> 32).wrapping_add(1) << 32) | (u64::from(idx) + 1);
            match head.compare_exchange_weak(cur, new, Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Records a packet at `now`. Stores only when the tick changed, so a
    /// busy flow dirties the entry's cache line at most once per tick.
    pub fn touch(&self, r: ConnRef, now: u32) {
        let Some(e) = self.entries.get(r.idx as usize) else {
            return;
        };
        if e.version.load(Relaxed) == r.version && e.last_seen.load(Relaxed) != now {
            e.last_seen.store(now, Relaxed);
        }
    }

    /// Feeds a TCP segment to the connection's state machine (IPVS
    /// `set_tcp_state`, see [`next_state`]) and records it at `now`.
    ///
    /// Returns `Some((old, new))` when the state changed so the caller can
    /// move the connection between its server's active and inactive
    /// counters (see [`is_active`](crate::is_active)); it should do so right
    /// away. Every change is reported to exactly one caller, and expiry
    /// reports the state the entry had when it was sealed, so the counters
    /// stay exact under any interleaving: the state byte changes by CAS,
    /// and expiry seals it before reading it.
    ///
    /// The version check before the CAS makes a stale handle harmless in
    /// all but one interleaving: the entry expires and is reused between
    /// the check and the CAS by a connection whose rport, protocol, state,
    /// service and server are all equal. The transition then lands on that
    /// connection, and the counters stay exact since it is reported for
    /// the same server.
    pub fn on_tcp(
        &self,
        r: ConnRef,
        dir: Dir,
        flags: TcpFlags,
        now: u32,
    ) -> Option<(State, State)> {
        let e = self.entries.get(r.idx as usize)?;
        self.touch(r, now);
        let mut w2 = e.w2.load(Acquire);
        loop {
            if e.version.load(Acquire) != r.version {
                return None;
            }
            let old = state_of(w2)?;
            let new = next_state(old, dir, flags);
            if new == old {
                return None;
            }
            match e
                .w2
                .compare_exchange_weak(w2, with_state(w2, new), AcqRel, Acquire)
            {
                Ok(_) => return Some((old, new)),
                Err(actual) => w2 = actual,
            }
        }
    }

    /// Sets the state of a connection to `state` outright, as a backup does
    /// with the state a sync message carries (IPVS `ip_vs_proc_conn` updates
    /// a synced connection's state the same way), and records `seen` as its
    /// last packet. Returns the previous state when it changed, so the
    /// caller can move the connection between its server's active and
    /// inactive counters; `None` when unchanged or the handle is stale.
    pub fn set_state(&self, r: ConnRef, state: State, seen: u32) -> Option<State> {
        let e = self.entries.get(r.idx as usize)?;
        if e.version.load(Acquire) != r.version {
            return None;
        }
        e.last_seen.store(seen, Relaxed);
        let mut w2 = e.w2.load(Acquire);
        loop {
            if e.version.load(Acquire) != r.version {
                return None;
            }
            let old = state_of(w2)?;
            if old == state {
                return None;
            }
            match e
                .w2
                .compare_exchange_weak(w2, with_state(w2, state), AcqRel, Acquire)
            {
                Ok(_) => return Some(old),
                Err(actual) => w2 = actual,
            }
        }
    }

    /// Expires one connection now (e.g. a SYN reusing the client port of a
    /// TIME_WAIT or CLOSE connection, as IPVS's `conn_reuse_mode`). Calls
    /// `on_expire` with its final state and returns true, or returns false
    /// when the handle is stale (someone else expired it first).
    pub fn expire(&self, r: ConnRef, on_expire: impl FnOnce(&ConnInfo)) -> bool {
        r.idx < self.capacity && self.retire(r.idx, r.version, on_expire)
    }

    /// Takes entry `idx` out of service if it is still at `version`: seal
    /// (version odd, state byte DEAD), unlink from the index, report,
    /// free. Whoever wins the version CAS does all of it, exactly once.
    fn retire(&self, idx: u32, version: u32, on_expire: impl FnOnce(&ConnInfo)) -> bool {
        let e = &self.entries[idx as usize];
        if e.version
            .compare_exchange(version, version.wrapping_add(1), AcqRel, Relaxed)
            .is_err()
        {
            return false;
        }
        // Seqlock write side for the stores below (w2 seal, free link).
        fence(Release);
        let w2 = e.w2.fetch_or(DEAD, AcqRel);
        let w0 = e.w0.load(Relaxed);
        let w1 = e.w1.load(Relaxed);
        self.unlink(idx, w0, w2);
        if let Some(info) = ConnInfo::unpack(w0, w1, w2) {
            on_expire(&info);
        }
        self.free.len.fetch_sub(1, Relaxed);
        self.push_free(idx);
        true
    }

    /// Expires connections idle for longer than their state's timeout,
    /// looking at up to `max_scan` entries from where the previous call
    /// stopped (wrapping around the table). Returns how many expired.
    ///
    /// Meant for one control thread calling it periodically, e.g.
    /// `capacity / 1000` entries every millisecond for a full sweep per
    /// second. `on_expire` sees each expired connection in the state it
    /// expired in, so the caller can take it off its server's counters.
    /// Concurrent callers are safe (each entry expires once) but scan the
    /// same entries.
    pub fn reclaim(&self, now: u32, max_scan: u32, mut on_expire: impl FnMut(&ConnInfo)) -> u32 {
        let mut i = self.cursor.load(Relaxed) % self.capacity;
        let mut expired = 0;
        for _ in 0..max_scan.min(self.capacity) {
            let e = &self.entries[i as usize];
            let version = e.version.load(Acquire);
            if version & 1 == 0 {
                // Not a consistent read: if the entry changes incarnation
                // in between, the version CAS in `retire` fails.
                let state = state_of(e.w2.load(Relaxed));
                let last = e.last_seen.load(Relaxed);
                if let Some(state) = state {
                    if idle(now, last) > self.timeouts.for_state(state)
                        && self.retire(i, version, &mut on_expire)
                    {
                        expired += 1;
                    }
                }
            }
            i += 1;
            if i == self.capacity {
                i = 0;
            }
        }
        self.cursor.store(i, Relaxed);
        expired
    }

    /// Expires every live connection for which `pred` holds (e.g. all
    /// connections of a real server that failed its health check, when the
    /// operator asked for that), walking the whole entry array; returns how
    /// many expired. Workers keep running: an entry changing meanwhile is
    /// either expired in its new incarnation's place or skipped.
    pub fn expire_where(
        &self,
        pred: impl Fn(&ConnInfo) -> bool,
        mut on_expire: impl FnMut(&ConnInfo),
    ) -> u32 {
        let mut expired = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let Some(snap) = e.read() else { continue };
            let Some(info) = ConnInfo::unpack(snap.w0, snap.w1, snap.w2) else {
                continue;
            };
            if pred(&info) && self.retire(i as u32, snap.version, &mut on_expire) {
                expired += 1;
            }
        }
        expired
    }

    /// Calls `f` with a consistent copy of every live connection and its
    /// idle time at `now` in milliseconds (for the CLI; walks the whole
    /// entry array).
    pub fn for_each(&self, now: u32, mut f: impl FnMut(&ConnInfo, u32)) {
        for e in self.entries.iter() {
            if let Some(s) = e.read() {
                if let Some(info) = ConnInfo::unpack(s.w0, s.w1, s.w2) {
                    f(&info, idle(now, s.last_seen));
                }
            }
        }
    }
}

/// A cache hint for the line holding `x` (`prefetcht0`); nothing where
/// the target has no such instruction.
#[inline(always)]
fn prefetch<T>(x: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(x);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = x;
}

#[cfg(test)]
mod tests;
