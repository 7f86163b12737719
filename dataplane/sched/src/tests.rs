use super::*;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

/// Candidates with ids 0.. and the given weights.
fn cands(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| Candidate {
            id: i as u16,
            weight,
        })
        .collect()
}

/// Counters with the given (active, inactive) per server id.
fn stats(counts: &[(u32, u32)]) -> Vec<ServerStats> {
    counts
        .iter()
        .map(|&(a, i)| ServerStats {
            active: AtomicU32::new(a),
            inactive: AtomicU32::new(i),
        })
        .collect()
}

fn picks(s: &mut Scheduler, st: &[ServerStats], n: usize) -> Vec<usize> {
    (0..n).map(|_| s.pick(st).expect("a server")).collect()
}

fn counts(seq: &[usize], servers: usize) -> Vec<usize> {
    let mut c = vec![0; servers];
    for &i in seq {
        c[i] += 1;
    }
    c
}

#[test]
fn kind_names_round_trip() {
    for k in [Kind::Rr, Kind::Wrr, Kind::Lc, Kind::Wlc] {
        assert_eq!(k.to_string().parse::<Kind>(), Ok(k));
    }
    assert_eq!("wlc".parse::<Kind>(), Ok(Kind::Wlc));
    let err = "WLC".parse::<Kind>().unwrap_err();
    assert_eq!(err, UnknownKind("WLC".into()));
    assert!(err.to_string().contains("rr, wrr, lc or wlc"));
    assert!("sh".parse::<Kind>().is_err());
    assert!("".parse::<Kind>().is_err());
    assert_eq!(Scheduler::new(Kind::Lc, cands(&[1])).kind(), Kind::Lc);
    assert_eq!(Scheduler::new(Kind::Wrr, cands(&[1])).kind(), Kind::Wrr);
}

#[test]
fn stats_are_cache_padded() {
    assert!(std::mem::align_of::<ServerStats>() >= 64);
    let arr = stats(&[(0, 0), (0, 0)]);
    let a = &arr[0] as *const ServerStats as usize;
    let b = &arr[1] as *const ServerStats as usize;
    assert!(b - a >= 64);
}

#[test]
fn overhead_is_active_times_256_plus_inactive() {
    let s = stats(&[(3, 7), (u32::MAX, u32::MAX)]);
    assert_eq!(overhead(&s[0]), 3 * 256 + 7);
    assert_eq!(overhead(&s[1]), u64::from(u32::MAX) * 257);
}

#[test]
fn rr_continues_after_last_pick_and_skips_weight_zero() {
    let mut s = Scheduler::new(Kind::Rr, cands(&[1, 0, 3, 0]));
    assert_eq!(picks(&mut s, &[], 5), [0, 2, 0, 2, 0]);
    let mut s = Scheduler::new(Kind::Rr, cands(&[0, 0, 5]));
    assert_eq!(picks(&mut s, &[], 3), [2, 2, 2]);
    assert_eq!(s.servers(), cands(&[0, 0, 5]).as_slice());
}

#[test]
fn rr_none_without_usable_server() {
    assert_eq!(Scheduler::new(Kind::Rr, vec![]).pick(&[]), None);
    assert_eq!(Scheduler::new(Kind::Rr, cands(&[0, 0])).pick(&[]), None);
}

#[test]
fn rr_shares_are_equal_among_non_zero_weights() {
    for weights in [&[1, 2, 3][..], &[0, 5, 1, 0, 9], &[1], &[4, 0]] {
        let mut s = Scheduler::new(Kind::Rr, cands(weights));
        let c = counts(&picks(&mut s, &[], 10_000), weights.len());
        let live = weights.iter().filter(|&&w| w > 0).count();
        for (i, &w) in weights.iter().enumerate() {
            if w == 0 {
                assert_eq!(c[i], 0, "weight 0 picked: {weights:?}");
            } else {
                assert!(c[i].abs_diff(10_000 / live) <= 1, "{weights:?}: {c:?}");
            }
        }
    }
}

/// ip_vs_wrr.c by hand for weights A=4, B=3, C=2: gcd 1, mw = cw = 4.
/// cw=4: A | cw=3: A B | cw=2: A B C | cw=1: A B C | cw=0 -> 4: A ...
#[test]
fn wrr_sequence_matches_ipvs_by_hand() {
    let mut s = Scheduler::new(Kind::Wrr, cands(&[4, 3, 2]));
    let (a, b, c) = (0, 1, 2);
    let cycle = [a, a, b, a, b, c, a, b, c];
    let seq = picks(&mut s, &[], 27);
    assert_eq!(seq[..9], cycle);
    assert_eq!(seq[9..18], cycle);
    assert_eq!(seq[18..], cycle);
}

/// Weights 4, 2, 6: gcd (di) 2, mw = 6 - (2 - 1) = 5.
/// cw=5: C | cw=3: A C | cw=1: A B C | cw=-1 -> 5: C ...
#[test]
fn wrr_sequence_with_gcd_matches_ipvs_by_hand() {
    let mut s = Scheduler::new(Kind::Wrr, cands(&[4, 2, 6]));
    assert_eq!(picks(&mut s, &[], 12), [2, 0, 2, 0, 1, 2, 2, 0, 2, 0, 1, 2]);
}

/// Weights 0, 1, 0, 2: gcd 1, mw 2. cw=2: #3 | cw=1: #1 #3 | reset ...
#[test]
fn wrr_sequence_skips_weight_zero() {
    let mut s = Scheduler::new(Kind::Wrr, cands(&[0, 1, 0, 2]));
    assert_eq!(picks(&mut s, &[], 6), [3, 1, 3, 3, 1, 3]);
}

#[test]
fn wrr_none_without_usable_server() {
    assert_eq!(Scheduler::new(Kind::Wrr, vec![]).pick(&[]), None);
    assert_eq!(Scheduler::new(Kind::Wrr, cands(&[0, 0, 0])).pick(&[]), None);
}

#[test]
fn wrr_shares_match_weights() {
    let sets: [&[u32]; 6] = [
        &[1, 2, 3],
        &[5, 1],
        &[0, 2, 3, 0, 1],
        &[100, 1],
        &[7, 7, 7],
        &[6, 4, 0, 10],
    ];
    for weights in sets {
        let mut s = Scheduler::new(Kind::Wrr, cands(weights));
        let n = 10_000;
        let c = counts(&picks(&mut s, &[], n), weights.len());
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        let cycle = weights.iter().map(|&w| w / g).sum::<u32>() as usize;
        let full = n / cycle;
        for (i, &w) in weights.iter().enumerate() {
            let per_cycle = (w / g) as usize;
            // Full cycles give exactly w/g each; the partial one at most w/g.
            assert!(
                c[i] >= full * per_cycle && c[i] <= (full + 1) * per_cycle,
                "{weights:?}: {c:?}"
            );
        }
    }
}

#[test]
fn lc_picks_lowest_overhead_first_wins_ties() {
    let mut s = Scheduler::new(Kind::Lc, cands(&[1, 1, 1]));
    // 256, 300, 256: servers 0 and 2 tie, the first wins.
    assert_eq!(s.pick(&stats(&[(1, 0), (0, 300), (1, 0)])), Some(0));
    // 5 inactive (5) beats 1 active (256).
    assert_eq!(s.pick(&stats(&[(1, 0), (0, 5), (1, 0)])), Some(1));
    // All idle: the first.
    assert_eq!(s.pick(&stats(&[(0, 0), (0, 0), (0, 0)])), Some(0));
}

#[test]
fn lc_ignores_weight_value_but_skips_weight_zero() {
    let st = stats(&[(0, 10), (0, 20), (0, 0)]);
    assert_eq!(
        Scheduler::new(Kind::Lc, cands(&[1, 100, 0])).pick(&st),
        Some(0)
    );
    assert_eq!(
        Scheduler::new(Kind::Lc, cands(&[0, 1, 0])).pick(&st),
        Some(1)
    );
    assert_eq!(Scheduler::new(Kind::Lc, cands(&[0, 0, 0])).pick(&st), None);
}

#[test]
fn wlc_picks_lowest_overhead_per_weight() {
    // 256/1 vs 512/3: 256 * 3 > 512 * 1, so server 1.
    let mut s = Scheduler::new(Kind::Wlc, cands(&[1, 3]));
    assert_eq!(s.pick(&stats(&[(1, 0), (2, 0)])), Some(1));
    // 512/2 vs 256/1 tie: 512 * 1 > 256 * 2 is false, the first stays.
    let mut s = Scheduler::new(Kind::Wlc, cands(&[2, 1]));
    assert_eq!(s.pick(&stats(&[(2, 0), (1, 0)])), Some(0));
    // Inactive connections count 1/256 of an active one.
    let mut s = Scheduler::new(Kind::Wlc, cands(&[1, 1]));
    assert_eq!(s.pick(&stats(&[(1, 0), (0, 255)])), Some(1));
    assert_eq!(s.pick(&stats(&[(1, 0), (0, 256)])), Some(0));
}

#[test]
fn wlc_starts_at_first_non_zero_weight() {
    // Server 0 is quiesced although idle; start at 1 (100/1), 150/2 is lower.
    let mut s = Scheduler::new(Kind::Wlc, cands(&[0, 1, 2]));
    assert_eq!(s.pick(&stats(&[(0, 0), (0, 100), (0, 150)])), Some(2));
    // A later idle weight-0 server is never chosen (loh * 0 > 0 is false).
    let mut s = Scheduler::new(Kind::Wlc, cands(&[1, 0]));
    assert_eq!(s.pick(&stats(&[(4, 1000), (0, 0)])), Some(0));
    // All idle: the first non-zero weight.
    let mut s = Scheduler::new(Kind::Wlc, cands(&[0, 3, 9]));
    assert_eq!(s.pick(&stats(&[(0, 0), (0, 0), (0, 0)])), Some(1));
    assert_eq!(
        Scheduler::new(Kind::Wlc, cands(&[0, 0])).pick(&stats(&[(0, 0), (0, 0)])),
        None
    );
    assert_eq!(Scheduler::new(Kind::Wlc, vec![]).pick(&[]), None);
}

#[test]
fn wlc_extreme_values_do_not_overflow() {
    // Server 0: overhead ~2^40 at weight 2^32-1; server 1: overhead 2^40-ish
    // at weight 1. Loads ~2^8 vs ~2^40: server 0.
    let mut s = Scheduler::new(Kind::Wlc, cands(&[1, u32::MAX]));
    let st = stats(&[(u32::MAX, u32::MAX), (u32::MAX, u32::MAX)]);
    assert_eq!(s.pick(&st), Some(1));
    let mut s = Scheduler::new(Kind::Wlc, cands(&[u32::MAX, 1]));
    assert_eq!(s.pick(&st), Some(0));
}

#[test]
fn lc_and_wlc_read_counters_by_global_id() {
    let servers = vec![
        Candidate { id: 5, weight: 1 },
        Candidate { id: 2, weight: 1 },
    ];
    let st = stats(&[(0, 0), (0, 0), (0, 1), (0, 0), (0, 0), (3, 0)]);
    assert_eq!(Scheduler::new(Kind::Lc, servers.clone()).pick(&st), Some(1));
    assert_eq!(Scheduler::new(Kind::Wlc, servers).pick(&st), Some(1));
}

#[test]
fn lc_and_wlc_skip_candidates_without_counters() {
    let servers = vec![
        Candidate { id: 9, weight: 1 },
        Candidate { id: 0, weight: 1 },
    ];
    let st = stats(&[(50, 0)]);
    assert_eq!(Scheduler::new(Kind::Lc, servers.clone()).pick(&st), Some(1));
    assert_eq!(
        Scheduler::new(Kind::Wlc, servers.clone()).pick(&st),
        Some(1)
    );
    let only_missing = vec![Candidate { id: 9, weight: 1 }];
    assert_eq!(
        Scheduler::new(Kind::Lc, only_missing.clone()).pick(&st),
        None
    );
    assert_eq!(Scheduler::new(Kind::Wlc, only_missing).pick(&st), None);
}

/// Every pick opens a connection (active += 1) that closes `lifetime` picks
/// later, FIFO. Returns the pick counts.
fn simulate(kind: Kind, weights: &[u32], picks: usize, lifetime: usize) -> Vec<usize> {
    let st = stats(&vec![(0, 0); weights.len()]);
    let mut s = Scheduler::new(kind, cands(weights));
    let mut open = VecDeque::new();
    let mut c = vec![0; weights.len()];
    for _ in 0..picks {
        if open.len() == lifetime {
            let done: usize = open.pop_front().expect("open connection");
            st[done].active.fetch_sub(1, Relaxed);
        }
        let i = s.pick(&st).expect("a server");
        st[i].active.fetch_add(1, Relaxed);
        open.push_back(i);
        c[i] += 1;
    }
    c
}

#[test]
fn wlc_shares_match_weights_under_load() {
    for weights in [&[1, 2, 3][..], &[5, 3, 0, 2], &[1, 1], &[10, 1]] {
        let c = simulate(Kind::Wlc, weights, 10_000, 120);
        let total: u32 = weights.iter().sum();
        for (i, &w) in weights.iter().enumerate() {
            let share = c[i] as f64 / 10_000.0;
            let want = f64::from(w) / f64::from(total);
            assert!((share - want).abs() < 0.03, "{weights:?}: {c:?}");
        }
    }
}

#[test]
fn lc_shares_are_equal_under_load() {
    let weights = [1, 2, 3, 0];
    let c = simulate(Kind::Lc, &weights, 10_000, 120);
    assert_eq!(c[3], 0);
    for &n in &c[..3] {
        assert!(n.abs_diff(3333) <= 34, "{c:?}");
    }
}

fn any_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Rr),
        Just(Kind::Wrr),
        Just(Kind::Lc),
        Just(Kind::Wlc)
    ]
}

proptest! {
    #[test]
    fn pick_never_returns_weight_zero(
        kind in any_kind(),
        weights in prop::collection::vec(prop_oneof![Just(0u32), 1u32..5, Just(u32::MAX)], 0..8),
        counters in prop::collection::vec((any::<u32>(), any::<u32>()), 8),
        rounds in 1usize..64,
    ) {
        let st = stats(&counters);
        let mut s = Scheduler::new(kind, cands(&weights));
        let usable = weights.iter().any(|&w| w > 0);
        for r in 0..rounds {
            match s.pick(&st) {
                Some(i) => {
                    prop_assert!(weights[i] > 0);
                    // Perturb the counters so lc/wlc move around.
                    st[(i + r) % st.len()].inactive.fetch_add(1, Relaxed);
                }
                None => prop_assert!(!usable),
            }
        }
    }

    #[test]
    fn wrr_full_cycles_are_exact(
        weights in prop::collection::vec(0u32..12, 1..7),
        cycles in 1usize..4,
    ) {
        let g = weights.iter().copied().filter(|&w| w > 0).fold(0, gcd);
        prop_assume!(g > 0);
        let cycle: usize = weights.iter().map(|&w| (w / g) as usize).sum();
        let mut s = Scheduler::new(Kind::Wrr, cands(&weights));
        let c = counts(&picks(&mut s, &[], cycle * cycles), weights.len());
        for (i, &w) in weights.iter().enumerate() {
            prop_assert_eq!(c[i], (w / g) as usize * cycles);
        }
    }
}
