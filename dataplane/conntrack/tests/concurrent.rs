//! Workers inserting, looking up, touching and changing state while a
//! control thread reclaims: lookups never return a connection other than
//! the one asked for, server counters stay exact, nothing leaks.
//!
//! Time is a logical tick the reclaimer advances; no assertion depends on
//! the wall clock or on how the threads happen to interleave.

use pylon_conntrack::{initial_state, is_active, ConnInfo, Dir, State, Table, TcpFlags, Timeouts};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64};
use std::thread;

const WORKERS: u32 = 4;
const OPS: u32 = 500_000;
const KEYS: u32 = 1024;
const CAPACITY: u32 = 2048;
const TCP: u8 = 6;
const UDP: u8 = 17;
const VIPS: [u32; 2] = [0xCB00_7101, 0xCB00_7102];
const SERVERS: usize = 8;

/// Short timeouts in ticks of the reclaimer's logical clock.
fn timeouts() -> Timeouts {
    Timeouts {
        tcp_established: 40,
        tcp_syn: 20,
        tcp_fin_wait: 15,
        tcp_close_wait: 15,
        tcp_last_ack: 10,
        tcp_time_wait: 10,
        tcp_close: 5,
        udp: 20,
    }
}

/// xorshift64*: deterministic per-thread randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() >> 33) as u32 % n
    }
}

/// Flow `k` of worker `w`: 64 clients x 16 ports x 2 VIPs per worker, so
/// every client port is shared by two VIPs. Every other field is a
/// function of the key, so any returned entry can be checked completely.
fn flow(w: u32, k: u32, proto: u8, state: State) -> ConnInfo {
    let client_ip = 0x0A00_0000 | w << 16 | (k % 64);
    let client_port = 1000 + ((k / 64) % 16) as u16;
    let vip = VIPS[(k / 1024) as usize % 2];
    expected(client_ip, client_port, proto, vip, state)
}

fn expected(client_ip: u32, client_port: u16, proto: u8, vip: u32, state: State) -> ConnInfo {
    ConnInfo {
        client_ip,
        client_port,
        vip,
        vport: 80,
        rip: 0x0A10_0000 ^ client_ip.rotate_left(7) ^ vip,
        rport: client_port ^ 0x5555,
        proto,
        state,
        service: (vip & 0xF) as u16,
        server: ((client_ip ^ u32::from(client_port)) as usize % SERVERS) as u16,
    }
}

/// The entry fields that do not change during a connection's life.
fn same_flow(a: &ConnInfo, b: &ConnInfo) -> bool {
    ConnInfo {
        state: State::Close,
        ..*a
    } == ConnInfo {
        state: State::Close,
        ..*b
    }
}

/// An entry reported by expiry must be a flow this test could have made.
fn check_known(c: &ConnInfo) {
    let want = expected(c.client_ip, c.client_port, c.proto, c.vip, c.state);
    assert!(same_flow(c, &want), "unknown connection {c:?}");
}

#[test]
fn lookups_never_return_another_connection() {
    let t = Table::new(CAPACITY, timeouts()).expect("capacity");
    let clock = AtomicU32::new(0);
    let done = AtomicBool::new(false);
    let inserted = AtomicU64::new(0);
    let expired = AtomicU64::new(0);
    let full = AtomicU64::new(0);
    let hits = AtomicU64::new(0);
    thread::scope(|s| {
        let reaper = s.spawn(|| {
            while !done.load(Relaxed) {
                let now = clock.fetch_add(1, Relaxed) + 1;
                let n = t.reclaim(now, 256, |c| {
                    check_known(c);
                    assert_eq!(c.state, State::Udp);
                });
                expired.fetch_add(u64::from(n), Relaxed);
                thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (t, clock, inserted, full, hits) = (&t, &clock, &inserted, &full, &hits);
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ u64::from(w + 1) << 32);
                    for _ in 0..OPS {
                        // Own flows or the next worker's (shared entries).
                        let owner = if rng.below(4) == 0 {
                            (w + 1) % WORKERS
                        } else {
                            w
                        };
                        let k = rng.below(KEYS * 2);
                        let want = flow(owner, k, UDP, State::Udp);
                        let now = clock.load(Relaxed);
                        let found = if rng.below(2) == 0 {
                            t.lookup_forward(want.client_ip, want.client_port, UDP, want.vip, 80)
                        } else {
                            t.lookup_reply(
                                want.client_ip,
                                want.client_port,
                                UDP,
                                want.rip,
                                want.rport,
                            )
                        };
                        match found {
                            Some((r, got)) => {
                                assert_eq!(got, want, "asked for {want:?}");
                                t.touch(r, now);
                                hits.fetch_add(1, Relaxed);
                            }
                            None if owner == w => match t.insert(&want, now) {
                                Ok(_) => {
                                    inserted.fetch_add(1, Relaxed);
                                }
                                Err(_) => {
                                    full.fetch_add(1, Relaxed);
                                }
                            },
                            None => {}
                        }
                        // A key that no worker ever inserts must miss.
                        let stranger = flow(WORKERS + w, k, UDP, State::Udp);
                        assert_eq!(
                            t.lookup_forward(
                                stranger.client_ip,
                                stranger.client_port,
                                UDP,
                                stranger.vip,
                                80
                            ),
                            None
                        );
                    }
                })
            })
            .collect();
        for h in workers {
            h.join().expect("worker");
        }
        done.store(true, Relaxed);
        reaper.join().expect("reaper");
    });
    // Everything expires once the clock passes every timeout.
    let now = clock.load(Relaxed) + 1000;
    let n = t.reclaim(now, CAPACITY, check_known);
    expired.fetch_add(u64::from(n), Relaxed);
    assert_eq!(t.len(), 0);
    assert_eq!(inserted.load(Relaxed), expired.load(Relaxed));
    println!(
        "inserted {} expired {} full {} hits {}",
        inserted.load(Relaxed),
        expired.load(Relaxed),
        full.load(Relaxed),
        hits.load(Relaxed)
    );
    // No entry leaked: the whole capacity is usable again.
    for i in 0..CAPACITY {
        t.insert(&flow(i % WORKERS, i / WORKERS, UDP, State::Udp), now)
            .expect("free entry");
    }
    assert!(t.insert(&flow(9, 9, TCP, State::SynRecv), now).is_err());
}

/// Per-server ActiveConn / InActConn kept the way the engine keeps them.
struct Counters {
    active: Vec<AtomicI64>,
    inactive: Vec<AtomicI64>,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            active: (0..SERVERS).map(|_| AtomicI64::new(0)).collect(),
            inactive: (0..SERVERS).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    fn of(&self, server: u16, state: State) -> &AtomicI64 {
        let s = usize::from(server);
        if is_active(state) {
            &self.active[s]
        } else {
            &self.inactive[s]
        }
    }

    fn opened(&self, c: &ConnInfo) {
        self.of(c.server, c.state).fetch_add(1, Relaxed);
    }

    fn moved(&self, server: u16, old: State, new: State) {
        self.of(server, old).fetch_sub(1, Relaxed);
        self.of(server, new).fetch_add(1, Relaxed);
    }

    fn closed(&self, c: &ConnInfo) {
        self.of(c.server, c.state).fetch_sub(1, Relaxed);
    }
}

#[test]
fn racing_state_changes_and_expiry_keep_counters_exact() {
    let t = Table::new(CAPACITY, timeouts()).expect("capacity");
    let counters = Counters::new();
    let clock = AtomicU32::new(0);
    let done = AtomicBool::new(false);
    let changes = AtomicU64::new(0);
    thread::scope(|s| {
        let reaper = s.spawn(|| {
            while !done.load(Relaxed) {
                let now = clock.fetch_add(1, Relaxed) + 1;
                t.reclaim(now, 256, |c| {
                    check_known(c);
                    counters.closed(c);
                });
                thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (t, clock, counters, changes) = (&t, &clock, &counters, &changes);
                s.spawn(move || {
                    let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ u64::from(w + 1) << 40);
                    for _ in 0..OPS {
                        // Client-side segments on own flows, server-side
                        // ones on the next worker's: the same entries see
                        // state changes from two threads at once.
                        let (owner, dir) = if rng.below(2) == 0 {
                            (w, Dir::Original)
                        } else {
                            ((w + 1) % WORKERS, Dir::Reply)
                        };
                        let k = rng.below(KEYS / 4);
                        let want = flow(owner, k, TCP, State::SynRecv);
                        let now = clock.load(Relaxed);
                        let flags = TcpFlags::from_bits(rng.below(0x20) as u8);
                        let found = match dir {
                            Dir::Original => t.lookup_forward(
                                want.client_ip,
                                want.client_port,
                                TCP,
                                want.vip,
                                80,
                            ),
                            _ => t.lookup_reply(
                                want.client_ip,
                                want.client_port,
                                TCP,
                                want.rip,
                                want.rport,
                            ),
                        };
                        match found {
                            Some((r, got)) => {
                                assert!(same_flow(&got, &want), "asked for {want:?}, got {got:?}");
                                let reuse = flags.syn
                                    && !flags.ack
                                    && matches!(got.state, State::TimeWait | State::Close);
                                if dir == Dir::Original && reuse {
                                    t.expire(r, |c| counters.closed(c));
                                } else if let Some((old, new)) = t.on_tcp(r, dir, flags, now) {
                                    counters.moved(got.server, old, new);
                                    changes.fetch_add(1, Relaxed);
                                }
                            }
                            None if dir == Dir::Original => {
                                let info = ConnInfo {
                                    state: initial_state(
                                        Dir::Original,
                                        TcpFlags {
                                            syn: true,
                                            ..TcpFlags::default()
                                        },
                                    ),
                                    ..want
                                };
                                if t.insert(&info, now).is_ok() {
                                    counters.opened(&info);
                                }
                            }
                            None => {}
                        }
                    }
                })
            })
            .collect();
        for h in workers {
            h.join().expect("worker");
        }
        done.store(true, Relaxed);
        reaper.join().expect("reaper");
    });
    assert!(changes.load(Relaxed) > 0);
    t.reclaim(clock.load(Relaxed) + 1000, CAPACITY, |c| counters.closed(c));
    assert_eq!(t.len(), 0);
    for s in 0..SERVERS {
        assert_eq!(counters.active[s].load(Relaxed), 0, "server {s} active");
        assert_eq!(counters.inactive[s].load(Relaxed), 0, "server {s} inactive");
    }
}
