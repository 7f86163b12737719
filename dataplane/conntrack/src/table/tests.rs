use super::*;
// TCP flag combinations shared with the state-machine tests.
use crate::state::tests::{ACK, FIN_ACK, RST, SYN, SYN_ACK};
use crate::state::{initial_state, is_active};
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Distinct small timeouts so each state's own value is what fires.
fn test_timeouts() -> Timeouts {
    Timeouts {
        tcp_established: 8000,
        tcp_syn: 3000,
        tcp_fin_wait: 4000,
        tcp_close_wait: 2500,
        tcp_last_ack: 2000,
        tcp_time_wait: 5000,
        tcp_close: 1000,
        udp: 6000,
    }
}

fn table(capacity: u32) -> Table {
    Table::new(capacity, test_timeouts()).expect("valid capacity")
}

const CLIENT: u32 = 0xC633_6401; // 198.51.100.1
const VIP: u32 = 0xCB00_7101; // 203.0.113.1
const VIP2: u32 = 0xCB00_7102;
const RIP: u32 = 0x0A00_000B; // 10.0.0.11
const RIP2: u32 = 0x0A00_000C;

fn tcp_conn(client_port: u16, vip: u32, rip: u32) -> ConnInfo {
    ConnInfo {
        client_ip: CLIENT,
        client_port,
        vip,
        vport: 80,
        rip,
        rport: 8080,
        proto: TCP,
        state: State::SynRecv,
        service: 3,
        server: 7,
    }
}

fn udp_conn(client_port: u16) -> ConnInfo {
    ConnInfo {
        proto: UDP,
        state: State::Udp,
        vport: 53,
        rport: 53,
        ..tcp_conn(client_port, VIP, RIP)
    }
}

fn fwd(t: &Table, c: &ConnInfo) -> Option<(ConnRef, ConnInfo)> {
    t.lookup_forward(c.client_ip, c.client_port, c.proto, c.vip, c.vport)
}

fn rev(t: &Table, c: &ConnInfo) -> Option<(ConnRef, ConnInfo)> {
    t.lookup_reply(c.client_ip, c.client_port, c.proto, c.rip, c.rport)
}

fn state_of_conn(t: &Table, c: &ConnInfo) -> State {
    fwd(t, c).expect("tracked").1.state
}

/// Expired connections collected by a reclaim run over the whole table.
fn reclaim_all(t: &Table, now: u32) -> Vec<ConnInfo> {
    let mut gone = Vec::new();
    t.reclaim(now, t.capacity(), |c| gone.push(*c));
    gone
}

#[test]
fn new_validates_capacity() {
    assert_eq!(
        Table::new(0, Timeouts::default()).err(),
        Some(Error::ZeroCapacity)
    );
    assert_eq!(
        Table::new(MAX_CAPACITY + 1, Timeouts::default()).err(),
        Some(Error::TooLarge(MAX_CAPACITY + 1))
    );
    let t = table(1);
    assert_eq!(t.capacity(), 1);
    assert!(t.is_empty());
    assert_eq!(t.timeouts(), &test_timeouts());
}

#[test]
fn insert_and_lookup_both_directions() {
    let t = table(16);
    let c = tcp_conn(40000, VIP, RIP);
    let r = t.insert(&c, 5).expect("room");
    assert_eq!(t.len(), 1);
    assert_eq!(fwd(&t, &c), Some((r, c)));
    assert_eq!(rev(&t, &c), Some((r, c)));
    // Any other field of the key or of the verified leg misses.
    assert_eq!(t.lookup_forward(CLIENT, 40000, TCP, VIP2, 80), None);
    assert_eq!(t.lookup_forward(CLIENT, 40000, TCP, VIP, 81), None);
    assert_eq!(t.lookup_forward(CLIENT, 40000, UDP, VIP, 80), None);
    assert_eq!(t.lookup_forward(CLIENT, 40001, TCP, VIP, 80), None);
    assert_eq!(t.lookup_forward(CLIENT + 1, 40000, TCP, VIP, 80), None);
    assert_eq!(t.lookup_reply(CLIENT, 40000, TCP, RIP2, 8080), None);
    assert_eq!(t.lookup_reply(CLIENT, 40000, TCP, RIP, 8081), None);
    assert_eq!(t.lookup_reply(CLIENT, 40000, UDP, RIP, 8080), None);
    // The forward leg's VIP is not a real server and vice versa.
    assert_eq!(t.lookup_reply(CLIENT, 40000, TCP, VIP, 80), None);
    assert_eq!(t.lookup_forward(CLIENT, 40000, TCP, RIP, 8080), None);
}

#[test]
fn same_client_port_to_two_vips_is_disambiguated() {
    let t = table(16);
    let a = tcp_conn(40000, VIP, RIP);
    let b = tcp_conn(40000, VIP2, RIP2);
    let ra = t.insert(&a, 0).expect("room");
    let rb = t.insert(&b, 0).expect("room");
    assert_ne!(ra, rb);
    assert_eq!(fwd(&t, &a), Some((ra, a)));
    assert_eq!(fwd(&t, &b), Some((rb, b)));
    assert_eq!(rev(&t, &a), Some((ra, a)));
    assert_eq!(rev(&t, &b), Some((rb, b)));
    assert!(t.expire(ra, |_| {}));
    assert_eq!(fwd(&t, &a), None);
    assert_eq!(rev(&t, &a), None);
    assert_eq!(fwd(&t, &b), Some((rb, b)));
    assert_eq!(rev(&t, &b), Some((rb, b)));
}

#[test]
fn tcp_and_udp_on_the_same_port_are_separate() {
    let t = table(16);
    let tc = ConnInfo {
        vport: 53,
        rport: 53,
        ..tcp_conn(5353, VIP, RIP)
    };
    let uc = udp_conn(5353);
    let rt = t.insert(&tc, 0).expect("room");
    let ru = t.insert(&uc, 0).expect("room");
    assert_eq!(fwd(&t, &tc), Some((rt, tc)));
    assert_eq!(fwd(&t, &uc), Some((ru, uc)));
    assert_eq!(rev(&t, &uc), Some((ru, uc)));
}

#[test]
fn tcp_lifecycle_seen_from_both_sides() {
    let t = table(16);
    let c = ConnInfo {
        state: initial_state(Dir::Original, SYN),
        ..tcp_conn(40000, VIP, RIP)
    };
    assert_eq!(c.state, State::SynRecv);
    let r = t.insert(&c, 0).expect("room");
    let steps = [
        (Dir::Reply, SYN_ACK, None),
        (
            Dir::Original,
            ACK,
            Some((State::SynRecv, State::Established)),
        ),
        (Dir::Reply, ACK, None),
        (
            Dir::Original,
            FIN_ACK,
            Some((State::Established, State::CloseWait)),
        ),
        (Dir::Reply, ACK, None),
        (
            Dir::Reply,
            FIN_ACK,
            Some((State::CloseWait, State::TimeWait)),
        ),
        (Dir::Original, ACK, None),
    ];
    for (now, (dir, flags, want)) in (1..).zip(steps) {
        assert_eq!(t.on_tcp(r, dir, flags, now), want, "{dir:?} {flags:?}");
    }
    assert_eq!(state_of_conn(&t, &c), State::TimeWait);
    // Every segment refreshed the entry.
    let mut idle = Vec::new();
    t.for_each(7, |_, i| idle.push(i));
    assert_eq!(idle, [0]);
}

#[test]
fn rst_closes_from_either_side() {
    for dir in [Dir::Original, Dir::Reply] {
        let t = table(4);
        let c = ConnInfo {
            state: State::Established,
            ..tcp_conn(40000, VIP, RIP)
        };
        let r = t.insert(&c, 0).expect("room");
        assert_eq!(
            t.on_tcp(r, dir, RST, 1),
            Some((State::Established, State::Close))
        );
        assert_eq!(state_of_conn(&t, &c), State::Close);
        assert!(!is_active(State::Close));
        // Close lasts tcp_close (1 s) idle.
        assert!(reclaim_all(&t, 1001).is_empty());
        let gone = reclaim_all(&t, 1002);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].state, State::Close);
    }
}

#[test]
fn udp_entries_ignore_tcp_flags_but_are_touched() {
    let t = table(4);
    let c = udp_conn(5353);
    let r = t.insert(&c, 0).expect("room");
    assert_eq!(t.on_tcp(r, Dir::Original, RST, 4000), None);
    assert_eq!(state_of_conn(&t, &c), State::Udp);
    assert!(reclaim_all(&t, 10_000).is_empty());
    assert_eq!(reclaim_all(&t, 10_001).len(), 1);
}

#[test]
fn each_state_expires_after_its_own_timeout() {
    let states = [
        State::Established,
        State::SynSent,
        State::SynRecv,
        State::FinWait,
        State::TimeWait,
        State::Close,
        State::CloseWait,
        State::LastAck,
        State::Udp,
    ];
    for state in states {
        // Start just below the wrap of the u32 tick clock.
        let t0 = u32::MAX - 1500;
        let t = table(8);
        let c = ConnInfo {
            state,
            ..tcp_conn(1000, VIP, RIP)
        };
        t.insert(&c, t0).expect("room");
        let timeout = test_timeouts().for_state(state);
        assert!(
            reclaim_all(&t, t0.wrapping_add(timeout)).is_empty(),
            "{state}"
        );
        assert_eq!(t.len(), 1);
        assert_eq!(
            reclaim_all(&t, t0.wrapping_add(timeout + 1)),
            [c],
            "{state}"
        );
        assert_eq!(t.len(), 0);
        assert_eq!(fwd(&t, &c), None);
    }
}

#[test]
fn state_change_switches_the_timeout() {
    let t = table(4);
    let c = ConnInfo {
        state: State::Established,
        ..tcp_conn(1000, VIP, RIP)
    };
    let r = t.insert(&c, 0).expect("room");
    assert_eq!(
        t.on_tcp(r, Dir::Reply, FIN_ACK, 100),
        Some((State::Established, State::FinWait))
    );
    // FIN_WAIT lasts 4 s, not ESTABLISHED's 8 s.
    assert!(reclaim_all(&t, 4100).is_empty());
    assert_eq!(reclaim_all(&t, 4101)[0].state, State::FinWait);
}

#[test]
fn touch_postpones_expiry_and_stale_clock_reads_do_not_expire() {
    let t = table(4);
    let c = udp_conn(1);
    let r = t.insert(&c, 0).expect("room");
    t.touch(r, 5000);
    assert!(reclaim_all(&t, 6001).is_empty());
    // A worker's clock read slightly ahead of the reaper's: idle is 0.
    t.touch(r, 20_000);
    assert!(reclaim_all(&t, 19_000).is_empty());
    assert_eq!(reclaim_all(&t, 26_001).len(), 1);
}

#[test]
fn stale_refs_are_ignored() {
    let t = table(1);
    let a = ConnInfo {
        state: State::Established,
        ..tcp_conn(1, VIP, RIP)
    };
    let ra = t.insert(&a, 0).expect("room");
    let mut seen = None;
    assert!(t.expire(ra, |c| seen = Some(*c)));
    assert_eq!(seen, Some(a));
    assert!(!t.expire(ra, |_| panic!("expired twice")));
    assert_eq!(t.on_tcp(ra, Dir::Original, RST, 1), None);
    // The single entry is reused by another connection.
    let b = ConnInfo {
        state: State::Established,
        ..tcp_conn(2, VIP2, RIP2)
    };
    let rb = t.insert(&b, 10).expect("reused");
    assert_ne!(ra, rb);
    t.touch(ra, 9999);
    assert_eq!(t.on_tcp(ra, Dir::Original, RST, 9999), None);
    assert!(!t.expire(ra, |_| panic!("stale expire")));
    assert_eq!(fwd(&t, &b), Some((rb, b)));
    let mut idle = Vec::new();
    t.for_each(110, |_, i| idle.push(i));
    assert_eq!(idle, [100]);
    // A handle from a bigger table does not panic.
    let big = table(64);
    let mut far = None;
    for port in 0..64 {
        far = Some(big.insert(&tcp_conn(port, VIP, RIP), 0).expect("room"));
    }
    let far = far.expect("inserted");
    t.touch(far, 1);
    assert_eq!(t.on_tcp(far, Dir::Original, RST, 1), None);
    assert!(!t.expire(far, |_| {}));
    assert_eq!(fwd(&t, &b), Some((rb, b)));
}

#[test]
fn fill_to_capacity_then_reuse_after_reclaim() {
    const C: u32 = 1000;
    let t = table(C);
    let conns: Vec<ConnInfo> = (0..C)
        .map(|i| ConnInfo {
            client_ip: CLIENT + i / 100,
            state: State::Established,
            ..tcp_conn(1024 + (i % 100) as u16, VIP, RIP)
        })
        .collect();
    for c in &conns {
        t.insert(c, 0).expect("room");
    }
    assert_eq!(t.len(), C);
    assert_eq!(t.insert(&udp_conn(9), 0), Err(Full));
    assert_eq!(t.len(), C);
    for c in &conns {
        assert_eq!(fwd(&t, c).map(|x| x.1), Some(*c));
        assert_eq!(rev(&t, c).map(|x| x.1), Some(*c));
    }
    // Nothing is idle long enough yet.
    assert_eq!(t.reclaim(8000, C, |_| {}), 0);
    let gone = reclaim_all(&t, 8001);
    assert_eq!(gone.len(), C as usize);
    assert_eq!(
        gone.iter().collect::<HashSet<_>>(),
        conns.iter().collect::<HashSet<_>>()
    );
    assert!(t.is_empty());
    for c in &conns {
        assert_eq!(fwd(&t, c), None);
    }
    // Every entry is usable again.
    for c in &conns {
        t.insert(&ConnInfo { vip: VIP2, ..*c }, 9000)
            .expect("reusable");
    }
    assert_eq!(t.len(), C);
    assert_eq!(t.insert(&udp_conn(9), 9000), Err(Full));
}

#[test]
fn reclaim_scans_incrementally_and_wraps() {
    let t = table(100);
    for port in 0..100 {
        t.insert(&udp_conn(port), 0).expect("room");
    }
    let now = 6001;
    assert_eq!(t.reclaim(now, 30, |_| {}), 30);
    assert_eq!(t.reclaim(now, 30, |_| {}), 30);
    assert_eq!(t.reclaim(now, 30, |_| {}), 30);
    assert_eq!(t.len(), 10);
    // Wraps past the end: 10 left at the end, the start is already empty.
    assert_eq!(t.reclaim(now, 30, |_| {}), 10);
    assert_eq!(t.reclaim(now, 1000, |_| {}), 0);
    assert!(t.is_empty());
}

#[test]
fn for_each_sees_every_live_connection() {
    let t = table(32);
    let mut want = HashMap::new();
    for port in 0..20u16 {
        let c = udp_conn(port);
        t.insert(&c, u32::from(port)).expect("room");
        want.insert(c, 100 - u32::from(port));
    }
    let mut got = HashMap::new();
    t.for_each(100, |c, idle| {
        got.insert(*c, idle);
    });
    assert_eq!(got, want);
}

#[test]
fn expire_where_takes_out_only_the_matching_connections() {
    let t = table(64);
    for port in 0..20u16 {
        let mut c = udp_conn(port);
        c.server = port % 2;
        t.insert(&c, 0).expect("room");
    }
    let mut seen = Vec::new();
    assert_eq!(
        t.expire_where(|c| c.server == 1, |c| seen.push(c.client_port)),
        10
    );
    seen.sort_unstable();
    assert_eq!(seen, (0..20).filter(|p| p % 2 == 1).collect::<Vec<_>>());
    assert_eq!(t.len(), 10);
    t.for_each(0, |c, _| assert_eq!(c.server, 0));
}

/// `n` client ports whose UDP flows from `client_ip` have home `bucket`.
fn ports_homed_at(t: &Table, client_ip: u32, bucket: u64, n: usize) -> Vec<u16> {
    let ports: Vec<u16> = (0..=u16::MAX)
        .filter(|&p| t.hash(client_ip, p, UDP) & t.mask == bucket)
        .take(n)
        .collect();
    assert_eq!(ports.len(), n);
    ports
}

/// Buckets of the first `n` probe steps of a key.
fn sequence(t: &Table, p: Probe, n: u64) -> Vec<u64> {
    (0..n).map(|d| (p.home + d * p.step) & t.mask).collect()
}

#[test]
fn spills_follow_the_probe_sequence_and_full_sequences_refuse() {
    // 256 entries -> 64 buckets of 8; a key may use 16 of them.
    let t = table(256);
    assert_eq!(t.buckets.len(), 64);
    assert_eq!(t.probes, 16);
    let target = udp_conn(7);
    let p = t.probe(t.hash(CLIENT, 7, UDP));
    let seq = sequence(&t, p, 16);
    assert_eq!(seq.iter().collect::<HashSet<_>>().len(), 16);
    // Fill every bucket of the target's sequence with 8 flows homed there.
    let mut fillers = Vec::new();
    for &b in &seq {
        for port in ports_homed_at(&t, CLIENT + 1, b, 8) {
            let c = ConnInfo {
                client_ip: CLIENT + 1,
                ..udp_conn(port)
            };
            fillers.push((t.insert(&c, 0).expect("room"), c));
        }
    }
    assert_eq!(t.len(), 128);
    assert!(t.reach.iter().all(|r| r.load(Relaxed) == 0));
    // No slot left anywhere on the target's sequence although half the
    // entries are free; the entry goes back to the free list.
    assert_eq!(t.insert(&target, 0), Err(Full));
    assert_eq!(t.len(), 128);
    assert_eq!(fwd(&t, &target), None);
    // Flows sharing the full home bucket spill along their own sequences
    // and are still found; the home bucket's reach records how far.
    let spill_ip = CLIENT + 2;
    let spilled: Vec<ConnInfo> = (0..=u16::MAX)
        .filter(|&port| {
            let q = t.probe(t.hash(spill_ip, port, UDP));
            q.home == p.home && q.step & t.mask != p.step & t.mask
        })
        .take(8)
        .map(|port| ConnInfo {
            client_ip: spill_ip,
            ..udp_conn(port)
        })
        .collect();
    assert_eq!(spilled.len(), 8);
    let refs: Vec<ConnRef> = spilled
        .iter()
        .map(|c| t.insert(c, 0).expect("spills"))
        .collect();
    assert!(t.reach[p.home as usize].load(Relaxed) >= 1);
    for (r, c) in refs.iter().zip(&spilled) {
        assert_eq!(fwd(&t, c), Some((*r, *c)));
        assert_eq!(rev(&t, c), Some((*r, *c)));
    }
    for (r, c) in refs.iter().zip(&spilled) {
        assert!(t.expire(*r, |_| {}));
        assert_eq!(fwd(&t, c), None);
    }
    for (r, c) in &fillers {
        assert_eq!(fwd(&t, c), Some((*r, *c)));
    }
    // Freeing one slot of the home bucket makes room for the target.
    let (r0, c0) = fillers[0];
    assert!(t.expire(r0, |_| {}));
    assert_eq!(fwd(&t, &c0), None);
    let rt = t.insert(&target, 0).expect("freed slot");
    assert_eq!(fwd(&t, &target), Some((rt, target)));
    // Every entry is still usable: fill the rest with flows homed outside
    // the full sequence, at most 3 per bucket.
    let rest: Vec<u64> = (0..64).filter(|b| !seq.contains(b)).collect();
    for (i, &b) in rest.iter().cycle().enumerate() {
        if t.len() == 256 {
            break;
        }
        let ip = CLIENT + 3 + (i / rest.len()) as u32;
        let port = ports_homed_at(&t, ip, b, 1)[0];
        t.insert(
            &ConnInfo {
                client_ip: ip,
                ..udp_conn(port)
            },
            0,
        )
        .expect("entries left");
    }
    assert_eq!(t.insert(&udp_conn(9), 0), Err(Full));
}

#[test]
fn memory_per_connection() {
    let t = Table::new(1 << 20, Timeouts::default()).expect("valid capacity");
    let bytes = t.memory_bytes();
    let per_conn = bytes as f64 / f64::from(t.capacity());
    println!(
        "capacity {}: {bytes} bytes, {per_conn:.2} B/connection",
        t.capacity()
    );
    // 32 B entry + 16 B of index slots + reach bytes + header.
    assert!(bytes >= 48 << 20);
    assert!(bytes <= 64 << 20);
    assert_eq!(t.buckets.len(), 1 << 18);
}

#[derive(Clone, Debug)]
enum Op {
    Insert(usize, State),
    Forward(usize),
    Reply(usize),
    Touch(usize),
    Tcp(usize, Dir, u8),
    Expire(usize),
    Advance(u32),
    Reclaim,
}

/// 2 clients x 3 ports x 2 protocols x 2 VIPs = 24 flows; the real server
/// follows from the VIP so reply keys are unique too.
fn flow(k: usize, state: State) -> ConnInfo {
    let proto = if k & 1 == 0 { TCP } else { UDP };
    let vip = if k & 2 == 0 { VIP } else { VIP2 };
    ConnInfo {
        client_ip: CLIENT + (k / 12) as u32,
        client_port: 1000 + ((k / 4) % 3) as u16,
        vip,
        vport: 80,
        rip: vip ^ 0xFF00_0000,
        rport: 8080,
        proto,
        state: if proto == UDP { State::Udp } else { state },
        service: k as u16,
        server: (k % 5) as u16,
    }
}

fn any_op() -> impl Strategy<Value = Op> {
    let k = 0usize..24;
    let state = prop::sample::select(vec![
        State::SynRecv,
        State::Established,
        State::TimeWait,
        State::SynSent,
        State::CloseWait,
    ]);
    let dir = prop::sample::select(vec![Dir::Original, Dir::Reply, Dir::OriginalOnly]);
    prop_oneof![
        4 => (k.clone(), state).prop_map(|(k, s)| Op::Insert(k, s)),
        2 => k.clone().prop_map(Op::Forward),
        2 => k.clone().prop_map(Op::Reply),
        1 => k.clone().prop_map(Op::Touch),
        3 => (k.clone(), dir, any::<u8>()).prop_map(|(k, d, f)| Op::Tcp(k, d, f)),
        1 => k.prop_map(Op::Expire),
        2 => (0u32..5000).prop_map(Op::Advance),
        1 => Just(Op::Reclaim),
    ]
}

struct Live {
    r: ConnRef,
    info: ConnInfo,
    last: u32,
}

proptest! {
    /// The table against a HashMap model, single-threaded. With 16 entries
    /// and 4 buckets every slot is reachable from every key, so an insert
    /// fails exactly when all entries are taken.
    #[test]
    fn behaves_like_a_map(ops in prop::collection::vec(any_op(), 1..200)) {
        let t = table(16);
        let mut model: HashMap<usize, Live> = HashMap::new();
        let mut now = u32::MAX - 10_000;
        for op in ops {
            match op {
                Op::Insert(k, s) => {
                    if model.contains_key(&k) {
                        continue;
                    }
                    let info = flow(k, s);
                    match t.insert(&info, now) {
                        Ok(r) => {
                            prop_assert!(model.len() < 16);
                            model.insert(k, Live { r, info, last: now });
                        }
                        Err(Full) => prop_assert_eq!(model.len(), 16),
                    }
                }
                Op::Forward(k) => {
                    let want = model.get(&k).map(|l| (l.r, l.info));
                    prop_assert_eq!(fwd(&t, &flow(k, State::SynRecv)), want);
                }
                Op::Reply(k) => {
                    let want = model.get(&k).map(|l| (l.r, l.info));
                    prop_assert_eq!(rev(&t, &flow(k, State::SynRecv)), want);
                }
                Op::Touch(k) => {
                    if let Some(l) = model.get_mut(&k) {
                        t.touch(l.r, now);
                        l.last = now;
                    }
                }
                Op::Tcp(k, dir, bits) => {
                    if let Some(l) = model.get_mut(&k) {
                        let flags = TcpFlags::from_bits(bits);
                        let old = l.info.state;
                        let new = next_state(old, dir, flags);
                        let want = (new != old).then_some((old, new));
                        prop_assert_eq!(t.on_tcp(l.r, dir, flags, now), want);
                        l.info.state = new;
                        l.last = now;
                    }
                }
                Op::Expire(k) => {
                    if let Some(l) = model.remove(&k) {
                        let mut seen = None;
                        prop_assert!(t.expire(l.r, |c| seen = Some(*c)));
                        prop_assert_eq!(seen, Some(l.info));
                        let again = t.expire(l.r, |_| ());
                        prop_assert!(!again);
                    }
                }
                Op::Advance(dt) => now = now.wrapping_add(dt),
                Op::Reclaim => {
                    let timeouts = test_timeouts();
                    let due: HashSet<ConnInfo> = model
                        .values()
                        .filter(|l| now.wrapping_sub(l.last) > timeouts.for_state(l.info.state))
                        .map(|l| l.info)
                        .collect();
                    let gone: HashSet<ConnInfo> = reclaim_all(&t, now).into_iter().collect();
                    prop_assert_eq!(&gone, &due);
                    model.retain(|_, l| !due.contains(&l.info));
                }
            }
            prop_assert_eq!(t.len() as usize, model.len());
        }
        let mut listed = HashSet::new();
        t.for_each(now, |c, _| {
            listed.insert(*c);
        });
        let want: HashSet<ConnInfo> = model.values().map(|l| l.info).collect();
        prop_assert_eq!(listed, want);
    }
}

#[test]
fn set_state_reports_the_old_state_once_and_restarts_the_timer() {
    let t = table(8);
    let c = tcp_conn(1000, VIP, RIP);
    let r = t.insert(&c, 0).expect("room");
    assert_eq!(
        t.set_state(r, State::Established, 7000),
        Some(State::SynRecv)
    );
    assert_eq!(state_of_conn(&t, &c), State::Established);
    assert_eq!(t.set_state(r, State::Established, 7000), None);
    // Seen at 7000: established (8000 ms) still live at 14000.
    assert!(reclaim_all(&t, 14_000).is_empty());
    assert!(t.expire(r, |_| {}));
    assert_eq!(t.set_state(r, State::Close, 0), None, "stale handle");
    assert_eq!(State::try_from(16), Ok(State::Udp));
    assert_eq!(State::try_from(0), Err(0));
}
