//! IPVS real-server schedulers: round robin (`rr`), weighted round robin
//! (`wrr`), least connection (`lc`) and weighted least connection (`wlc`).
//!
//! The algorithms are those of Linux IPVS (`net/netfilter/ipvs/ip_vs_rr.c`,
//! `ip_vs_wrr.c`, `ip_vs_lc.c`, `ip_vs_wlc.c`), decision for decision, so an
//! operator moving a service from ipvsadm/keepalived sees the same
//! distribution and the same meaning of "weight 0 = quiesced" (existing
//! connections keep flowing, no new ones are scheduled).
//!
//! Two deliberate differences from the kernel:
//! - A [`Scheduler`] is built for one set of weights. IPVS recomputes the wrr
//!   gcd / maximum weight when a destination changes
//!   (`ip_vs_wrr_dest_changed`); Pylon publishes a new service snapshot
//!   instead and every worker builds fresh schedulers from it.
//! - There is no `IP_VS_DEST_F_OVERLOAD` flag (upper connection threshold):
//!   weight 0 is the only way to keep a server out of scheduling.
//!
//! rr/wrr positions live in the worker-local [`Scheduler`] (one per worker
//! per service), so the per-packet path touches no shared writable state;
//! lc/wlc read the [`ServerStats`] counters every worker updates. With N
//! workers, rr/wrr therefore interleave N independent sequences: the shares
//! still match the weights, the exact global order does not.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Per-real-server connection counters shared by all workers: IPVS's
/// ActiveConn / InActConn (`dest->activeconns`, `dest->inactconns`), read by
/// lc and wlc and shown by the CLI.
///
/// The type itself is aligned to 128 bytes so that every `[ServerStats]`,
/// whoever allocates it, gives each server its own cache lines: workers bump
/// different servers' counters concurrently and would false-share a packed
/// array. 128 rather than 64 because x86_64's adjacent-line prefetcher pulls
/// lines in pairs; it is the same padding `crossbeam_utils::CachePadded`
/// applies there, without making callers wrap the elements.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ServerStats {
    /// Connections in an active state (IPVS ActiveConn).
    pub active: AtomicU32,
    /// Connections in any other state (IPVS InActConn).
    pub inactive: AtomicU32,
}

/// Estimated load of a server: `active * 256 + inactive`.
///
/// This is IPVS's `ip_vs_dest_conn_overhead()` (include/net/ip_vs.h): an
/// active connection is assumed to cost 256 times an inactive one. Computed
/// in `u64`, so no counter value can overflow it.
pub fn overhead(s: &ServerStats) -> u64 {
    (u64::from(s.active.load(Relaxed)) << 8) + u64::from(s.inactive.load(Relaxed))
}

/// A scheduling algorithm, named as ipvsadm names it (`-s rr|wrr|lc|wlc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Round robin (ip_vs_rr.c): weights matter only as 0 / non-0.
    Rr,
    /// Weighted round robin (ip_vs_wrr.c).
    Wrr,
    /// Least connection (ip_vs_lc.c): weights matter only as 0 / non-0.
    Lc,
    /// Weighted least connection (ip_vs_wlc.c), the IPVS default.
    Wlc,
}

impl Kind {
    /// The ipvsadm name: `rr`, `wrr`, `lc` or `wlc`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rr => "rr",
            Kind::Wrr => "wrr",
            Kind::Lc => "lc",
            Kind::Wlc => "wlc",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scheduler name that is not one of `rr`, `wrr`, `lc`, `wlc`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheduler {0:?}: expected rr, wrr, lc or wlc")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Exactly the lowercase ipvsadm names, so a configuration reads the
    /// same here as in keepalived's `lb_algo`.
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        match s {
            "rr" => Ok(Kind::Rr),
            "wrr" => Ok(Kind::Wrr),
            "lc" => Ok(Kind::Lc),
            "wlc" => Ok(Kind::Wlc),
            _ => Err(UnknownKind(s.to_owned())),
        }
    }
}

/// One real server as a scheduler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Global server id: the index of its counters in the `stats` slice
    /// given to [`Scheduler::pick`].
    pub id: u16,
    /// Effective weight; 0 = quiesced (never picked, as in IPVS).
    pub weight: u32,
}

/// Scheduler instance for one service on one worker.
///
/// rr/wrr state is worker-local so no atomics are contended on the packet
/// path; lc/wlc read the shared counters.
#[derive(Clone, Debug)]
pub struct Scheduler {
    servers: Vec<Candidate>,
    algo: Algo,
}

#[derive(Clone, Debug)]
enum Algo {
    /// `svc->sched_data` of ip_vs_rr.c: the last server picked, `None` for
    /// the list head (nothing picked yet).
    Rr {
        last: Option<usize>,
    },
    Wrr(WrrMark),
    Lc,
    Wlc,
}

/// `struct ip_vs_wrr_mark` of ip_vs_wrr.c.
#[derive(Clone, Debug)]
struct WrrMark {
    /// Current list position (`cl`); `None` is the list head.
    cl: Option<usize>,
    /// Current weight (`cw`).
    cw: i64,
    /// Maximum weight minus (gcd - 1) (`mw`); 0 when every weight is 0.
    mw: i64,
    /// Decreasing interval: the gcd of the non-zero weights (`di`).
    di: i64,
}

impl WrrMark {
    /// `ip_vs_wrr_init_svc`: `di = gcd`, `mw = max - (di - 1)`, `cw = mw`,
    /// position at the list head.
    fn new(servers: &[Candidate]) -> WrrMark {
        let di = i64::from(
            servers
                .iter()
                .map(|c| c.weight)
                .filter(|&w| w > 0)
                .reduce(gcd)
                .unwrap_or(1),
        );
        let max = servers.iter().map(|c| c.weight).max().unwrap_or(0);
        let mw = i64::from(max) - (di - 1);
        WrrMark {
            cl: None,
            cw: mw,
            mw,
            di,
        }
    }

    /// `ip_vs_wrr_schedule`: continue after the last pick looking for a
    /// server with `weight >= cw`; at the end of the list lower `cw` by the
    /// gcd (back to `mw` once it drops to 0 or below) and rescan from the
    /// head.
    ///
    /// IPVS also stops with an error after a full pass at `cw <= di`; that
    /// exit only triggers when overloaded servers are skipped. Without an
    /// overload flag it cannot: once `cw <= di` every non-zero weight (a
    /// multiple of `di`) qualifies, and after a reset to `mw` the heaviest
    /// server (`max = mw + di - 1 >= mw`) does. So with `mw > 0` this loop
    /// returns within one cycle.
    fn pick(&mut self, servers: &[Candidate]) -> Option<usize> {
        if self.mw <= 0 {
            return None;
        }
        let mut pos = self.cl;
        loop {
            let start = pos.map_or(0, |i| i + 1);
            if let Some(i) =
                (start..servers.len()).find(|&i| i64::from(servers[i].weight) >= self.cw)
            {
                self.cl = Some(i);
                return Some(i);
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
            }
        }
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Scheduler {
    /// A scheduler over `servers` in this order (the order matters, as the
    /// destination list order does in IPVS: ties go to the first server).
    pub fn new(kind: Kind, servers: Vec<Candidate>) -> Scheduler {
        let algo = match kind {
            Kind::Rr => Algo::Rr { last: None },
            Kind::Wrr => Algo::Wrr(WrrMark::new(&servers)),
            Kind::Lc => Algo::Lc,
            Kind::Wlc => Algo::Wlc,
        };
        Scheduler { servers, algo }
    }

    pub fn kind(&self) -> Kind {
        match self.algo {
            Algo::Rr { .. } => Kind::Rr,
            Algo::Wrr(_) => Kind::Wrr,
            Algo::Lc => Kind::Lc,
            Algo::Wlc => Kind::Wlc,
        }
    }

    pub fn servers(&self) -> &[Candidate] {
        &self.servers
    }

    /// Picks the server for a new connection: an index into
    /// [`servers`](Self::servers), or `None` when no server has weight > 0.
    ///
    /// `stats` is indexed by [`Candidate::id`]; only lc and wlc read it. A
    /// candidate whose id has no counters there is never picked by lc/wlc
    /// (a mismatched snapshot must not make a worker panic).
    pub fn pick(&mut self, stats: &[ServerStats]) -> Option<usize> {
        match &mut self.algo {
            Algo::Rr { last } => pick_rr(&self.servers, last),
            Algo::Wrr(mark) => mark.pick(&self.servers),
            Algo::Lc => pick_lc(&self.servers, stats),
            Algo::Wlc => pick_wlc(&self.servers, stats),
        }
    }
}

/// `ip_vs_rr_schedule`: the first server with weight > 0 after the last
/// pick, wrapping around and ending with the last pick itself.
fn pick_rr(servers: &[Candidate], last: &mut Option<usize>) -> Option<usize> {
    let n = servers.len();
    let start = last.map_or(0, |l| l + 1);
    let found = (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| servers[i].weight > 0)?;
    *last = Some(found);
    Some(found)
}

/// `ip_vs_lc_schedule`: the lowest [`overhead`] among servers with
/// weight > 0 (the weight value itself is ignored); the first one wins ties.
fn pick_lc(servers: &[Candidate], stats: &[ServerStats]) -> Option<usize> {
    let mut least: Option<(usize, u64)> = None;
    for (i, c) in servers.iter().enumerate() {
        if c.weight == 0 {
            continue;
        }
        let Some(s) = stats.get(usize::from(c.id)) else {
            continue;
        };
        let doh = overhead(s);
        if least.map_or(true, |(_, loh)| doh < loh) {
            least = Some((i, doh));
        }
    }
    least.map(|(i, _)| i)
}

/// `ip_vs_wlc_schedule`: the lowest `overhead / weight`, compared without
/// division as `loh * dwt > doh * lwt`, starting from the first server with
/// weight > 0 and replacing it only on a strictly lower load (first wins
/// ties). A later weight-0 server is never chosen because `loh * 0 > x` is
/// false, exactly as in the kernel.
///
/// IPVS multiplies in `s64`; here the products are `u128` because a `u64`
/// overhead (up to ~2^40) times a `u32` weight does not fit in 64 bits.
fn pick_wlc(servers: &[Candidate], stats: &[ServerStats]) -> Option<usize> {
    let mut known = servers.iter().enumerate().filter_map(|(i, c)| {
        stats
            .get(usize::from(c.id))
            .map(|s| (i, c.weight, overhead(s)))
    });
    let (mut least, mut lwt, mut loh) = known.by_ref().find(|&(_, w, _)| w > 0)?;
    for (i, dwt, doh) in known {
        if u128::from(loh) * u128::from(dwt) > u128::from(doh) * u128::from(lwt) {
            (least, lwt, loh) = (i, dwt, doh);
        }
    }
    Some(least)
}

#[cfg(test)]
mod tests;
