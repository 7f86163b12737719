//! End to end, VRRP: two pylon appliances on one L2 segment share the VIP
//! 10.0.1.100 ([`VrrpPair`]: VRID 51, adverts every 100 ms, A priority 200,
//! B priority 100, DSR to three real servers). A client probes the VIP
//! with a new connection every 20 ms (0.3 s timeout each) while the master
//! is killed, cut off or stopped, and comes back; the time without answers
//! across each event is measured and printed.
//!
//! keepalived 2.2 stands in for B in one test (interoperability). tcpdump
//! on the client records the advertisements: two routers may advertise as
//! MASTER at once for at most one interval.
//!
//! The bound on a failover is the issue's: Master_Down_Interval of the
//! backup (3 * 100 ms + (256 - 100) * 100 / 256 ms = 360.9 ms) + 200 ms.
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`).

use std::collections::BTreeSet;
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pktgen_tests::process;
use pktgen_tests::topology::VIP;
use pktgen_tests::vrrp_pair::{
    in_state, kill_hard, longest_dual_master, master_down_interval_ms, monotonic_s, skew_time_ms,
    vrid_status, vrrp_status, Advert, ProbeRun, ADVERT_INT_CS, A_ADDR, B_ADDR,
    KEEPALIVED_HTTP_NAME, VIP2, VIRTUAL_MAC, VIRTUAL_MAC2, VRID, VRID2,
};
use pktgen_tests::{
    e2e_lock, harmful_drops, preflight, vip_url, worker_counter, Appliance, PylonProcess,
    VrrpOptions, VrrpPair,
};

const A_PRIORITY: u8 = 200;
const B_PRIORITY: u8 = 100;
/// A request every 20 ms, given up after 0.3 s.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long an election or takeover may take to show in the stats
/// (Master_Down_Interval is 0.36 s; the rest is slack for a loaded box).
const STATE_TIMEOUT: Duration = Duration::from_secs(5);
/// Traffic before an event, and after it before the next one.
const SETTLE: Duration = Duration::from_millis(1500);

/// The failover bound: the backup's Master_Down_Interval + 200 ms.
fn failover_bound() -> Duration {
    Duration::from_secs_f64((master_down_interval_ms(B_PRIORITY, ADVERT_INT_CS) + 200.0) / 1000.0)
}

/// The bound on a return (the higher-priority router taking the VIP
/// back): one advertisement interval. Its gratuitous ARPs move the virtual
/// MAC at once and only connections in flight are lost; a gap of an
/// interval or more means a switch learnt the MAC back at the old master
/// until the new one's next advertisement (which happened while the old
/// master answered the new one's gratuitous ARPs).
fn return_bound() -> Duration {
    Duration::from_millis(u64::from(ADVERT_INT_CS) * 10)
}

fn options(priority: u8, preempt: bool) -> VrrpOptions {
    VrrpOptions { priority, preempt }
}

/// Starts A, waits until it is MASTER, then starts B and waits until it is
/// BACKUP under A.
fn start_pair(pair: &VrrpPair, preempt: bool) -> Result<(PylonProcess, PylonProcess)> {
    let mut a = pair.start(
        Appliance::A,
        &pair.config(Appliance::A, options(A_PRIORITY, preempt))?,
    )?;
    expect_state(&mut a, "A", "MASTER")?;
    let mut b = pair.start(
        Appliance::B,
        &pair.config(Appliance::B, options(B_PRIORITY, preempt))?,
    )?;
    // B is BACKUP from its start; it knows its master once A's next
    // advertisement (at most one interval later) has arrived.
    let b_stats = b.stats_until(STATE_TIMEOUT, |s| {
        vrrp_status(s).is_ok_and(|st| st.state == "BACKUP" && st.master.as_deref() == Some(A_ADDR))
    })?;
    let b_status = vrrp_status(&b_stats)?;
    ensure!(
        b_status.master.as_deref() == Some(A_ADDR),
        "B is BACKUP under {:?}, expected A ({A_ADDR})",
        b_status.master
    );
    let a_status = vrrp_status(&expect_state(&mut a, "A", "MASTER")?)?;
    ensure!(
        a_status.priority == A_PRIORITY,
        "A advertises priority {}",
        a_status.priority
    );
    Ok((a, b))
}

/// Waits until `pylon`'s instance is in `state`; returns the stats.
fn expect_state(pylon: &mut PylonProcess, name: &str, state: &str) -> Result<serde_json::Value> {
    let stats = pylon.stats_until(STATE_TIMEOUT, |s| in_state(s, state))?;
    ensure!(
        in_state(&stats, state),
        "{name} is not {state} after {STATE_TIMEOUT:?}: {}",
        stats["vrrp"]
    );
    Ok(stats)
}

/// Fails unless `pylon`'s instance is in `state` for `reason` (its start).
fn expect_reason(pylon: &mut PylonProcess, name: &str, state: &str, reason: &str) -> Result<()> {
    let status = vrrp_status(&expect_state(pylon, name, state)?)?;
    let why = status.reason.unwrap_or_default();
    ensure!(
        why.starts_with(reason),
        "{name} is {state} because {why:?}, expected {reason:?}"
    );
    Ok(())
}

fn forwarded(pylon: &mut PylonProcess) -> Result<u64> {
    worker_counter(&pylon.stats()?, "forward_packets")
}

/// Fails unless the bridge has learnt the virtual MAC on `which`'s port
/// and the client still holds the virtual MAC for the VIP (the takeover
/// moved the MAC, not the client's cache).
fn expect_vmac_at(pair: &VrrpPair, which: Appliance) -> Result<()> {
    let port = pair.bridge_port_of(VIRTUAL_MAC)?;
    ensure!(
        port == Some(which),
        "the bridge has {VIRTUAL_MAC} on {port:?}'s port, expected {which:?}'s"
    );
    let client = pair.client_mac_of(VIP)?;
    ensure!(
        client.as_deref() == Some(VIRTUAL_MAC),
        "the client's ARP cache holds {client:?} for the VIP, expected {VIRTUAL_MAC}"
    );
    Ok(())
}

/// Fails unless `count` requests through the VIP all succeed and only
/// `via` forwarded them.
fn expect_served_by(
    pair: &VrrpPair,
    via: (&str, &mut PylonProcess),
    idle: (&str, &mut PylonProcess),
    count: usize,
) -> Result<()> {
    expect_vip_served_by(pair, VIP, via, idle, count)
}

/// [`expect_served_by`] for any VIP.
fn expect_vip_served_by(
    pair: &VrrpPair,
    vip: &str,
    via: (&str, &mut PylonProcess),
    idle: (&str, &mut PylonProcess),
    count: usize,
) -> Result<()> {
    let (via_name, via) = via;
    let (idle_name, idle) = idle;
    let (via_before, idle_before) = (forwarded(via)?, forwarded(idle)?);
    let result = pair.topology().run_client(count, &url(vip))?;
    result.check_all_ok(count as u64)?;
    let (via_after, idle_after) = (forwarded(via)?, forwarded(idle)?);
    // SYN, ACK, request, FIN at least, per connection.
    ensure!(
        via_after - via_before >= 4 * count as u64,
        "{via_name} forwarded {} packets for {count} requests to {vip}",
        via_after - via_before
    );
    ensure!(
        idle_after == idle_before,
        "{idle_name} forwarded {} packets for {vip} while it was not MASTER",
        idle_after - idle_before
    );
    Ok(())
}

/// Fails unless the requests started from `from` until `to` were mostly
/// answered (at least 90 %, and at least 20 of them).
fn expect_answers(run: &ProbeRun, from: f64, to: f64, what: &str) -> Result<()> {
    let (ok, failed) = run.count_between(from, to);
    ensure!(
        ok >= 20 && ok * 10 >= (ok + failed) * 9,
        "{what}: {ok} answered, {failed} failed\n{}",
        run.report(from)
    );
    Ok(())
}

/// Fails unless both routers advertised VRID 51 as MASTER (each is MASTER
/// at some time in the tests that call this), or if they did so at once
/// for longer than one advertisement interval.
fn expect_one_master(adverts: &[Advert], what: &str) -> Result<()> {
    let senders: BTreeSet<&str> = adverts
        .iter()
        .filter(|a| a.vrid == VRID && a.priority > 0)
        .map(|a| a.src.as_str())
        .collect();
    let both = longest_dual_master(adverts, VRID, ADVERT_INT_CS);
    let interval = Duration::from_millis(u64::from(ADVERT_INT_CS) * 10);
    eprintln!(
        "{what}: {} advertisements from {senders:?}, two masters at once for at most {:.1} ms",
        adverts.len(),
        ms(both)
    );
    ensure!(
        senders.len() == 2,
        "{what}: advertisements from {senders:?}, expected from both routers"
    );
    ensure!(
        both <= interval,
        "{what}: two masters advertised at once for {:.1} ms, more than one interval",
        ms(both)
    );
    Ok(())
}

fn url(vip: &str) -> String {
    format!("http://{vip}/")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn election_master_serves_backup_stays_silent() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrpel")?;
    let (mut a, mut b) = start_pair(&pair, true)?;
    expect_served_by(&pair, ("A", &mut a), ("B", &mut b), 300)?;
    expect_vmac_at(&pair, Appliance::A)?;
    let stats = a.stats()?;
    let harmful = harmful_drops(&stats);
    ensure!(harmful.is_empty(), "A dropped packets: {harmful:?}");
    b.stop_cleanly()?;
    a.stop_cleanly()
}

#[test]
fn sigkill_failover_then_preempting_return() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrpkill")?;
    let (mut a, mut b) = start_pair(&pair, true)?;
    let capture = pair.capture_adverts()?;
    let probe = pair.start_probe(VIP, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    sleep(SETTLE);

    let killed = monotonic_s();
    kill_hard(&mut a)?;
    drop(a);
    expect_reason(
        &mut b,
        "B",
        "MASTER",
        "no advertisement for Master_Down_Interval",
    )?;
    sleep(SETTLE);
    expect_vmac_at(&pair, Appliance::B)?;

    let restarted = monotonic_s();
    let mut a = pair.start(
        Appliance::A,
        &pair.config(Appliance::A, options(A_PRIORITY, true))?,
    )?;
    expect_reason(&mut a, "A", "MASTER", "preempted lower-priority master")?;
    expect_state(&mut b, "B", "BACKUP")?;
    sleep(SETTLE);
    let run = probe.finish()?;
    expect_one_master(&capture.finish()?, "SIGKILL and return")?;

    let bound = failover_bound();
    let gap = run.gap_across(killed, restarted)?;
    let handback = run.longest_gap_after(restarted);
    eprintln!(
        "SIGKILL of the master: {:.1} ms without answers (bound {:.1} ms); \
         preempting return: longest gap {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        ms(handback),
        run.report(killed)
    );
    ensure!(
        gap <= bound,
        "{:.1} ms without answers after the SIGKILL, bound {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        run.report(killed)
    );
    expect_answers(
        &run,
        killed + bound.as_secs_f64(),
        restarted,
        "through B after the takeover",
    )?;
    ensure!(
        handback <= return_bound(),
        "{:.1} ms without answers when A took the VIP back, bound {:.1} ms\n{}",
        ms(handback),
        ms(return_bound()),
        run.report(restarted)
    );
    expect_answers(
        &run,
        restarted + bound.as_secs_f64(),
        f64::INFINITY,
        "after the return",
    )?;

    expect_vmac_at(&pair, Appliance::A)?;
    expect_served_by(&pair, ("A", &mut a), ("B", &mut b), 100)?;
    b.stop_cleanly()?;
    a.stop_cleanly()
}

#[test]
fn link_cut_failover_and_return() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrplink")?;
    let (mut a, mut b) = start_pair(&pair, true)?;
    let capture = pair.capture_adverts()?;
    let probe = pair.start_probe(VIP, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    sleep(SETTLE);

    let cut = monotonic_s();
    pair.set_link(Appliance::A, false)?;
    expect_reason(
        &mut b,
        "B",
        "MASTER",
        "no advertisement for Master_Down_Interval",
    )?;
    sleep(SETTLE);
    expect_vmac_at(&pair, Appliance::B)?;

    let restored = monotonic_s();
    pair.set_link(Appliance::A, true)?;
    expect_reason(&mut b, "B", "BACKUP", "higher-priority master")?;
    expect_state(&mut a, "A", "MASTER")?;
    sleep(SETTLE);
    let run = probe.finish()?;
    expect_one_master(&capture.finish()?, "link cut and back")?;

    let bound = failover_bound();
    let gap = run.gap_across(cut, restored)?;
    let back = run.longest_gap_after(restored);
    eprintln!(
        "link of the master cut: {:.1} ms without answers (bound {:.1} ms); \
         link back: longest gap {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        ms(back),
        run.report(cut)
    );
    ensure!(
        gap <= bound,
        "{:.1} ms without answers after the cut, bound {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        run.report(cut)
    );
    expect_answers(
        &run,
        cut + bound.as_secs_f64(),
        restored,
        "through B after the takeover",
    )?;
    ensure!(
        back <= return_bound(),
        "{:.1} ms without answers when A's link came back, bound {:.1} ms\n{}",
        ms(back),
        ms(return_bound()),
        run.report(restored)
    );

    // A's advertisements (sent from the virtual MAC) moved it back.
    expect_vmac_at(&pair, Appliance::A)?;
    expect_served_by(&pair, ("A", &mut a), ("B", &mut b), 100)?;
    b.stop_cleanly()?;
    a.stop_cleanly()
}

#[test]
fn without_preempt_the_old_master_stays_backup() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrpnopre")?;
    let (mut a, mut b) = start_pair(&pair, false)?;
    kill_hard(&mut a)?;
    drop(a);
    expect_state(&mut b, "B", "MASTER")?;

    let mut a = pair.start(
        Appliance::A,
        &pair.config(Appliance::A, options(A_PRIORITY, false))?,
    )?;
    expect_state(&mut a, "A", "BACKUP")?;
    // Twenty advertisements and several of A's Master_Down_Intervals: a
    // preempting A would have taken over long before.
    sleep(Duration::from_secs(2));
    let a_status = vrrp_status(&a.stats()?)?;
    ensure!(
        a_status.state == "BACKUP" && a_status.master.as_deref() == Some(B_ADDR),
        "A without preempt is {} under {:?}, expected BACKUP under B ({B_ADDR})",
        a_status.state,
        a_status.master
    );
    expect_state(&mut b, "B", "MASTER")?;
    expect_served_by(&pair, ("B", &mut b), ("A", &mut a), 100)?;
    expect_vmac_at(&pair, Appliance::B)?;
    a.stop_cleanly()?;
    b.stop_cleanly()
}

#[test]
fn sigterm_master_resigns_with_priority_zero() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrpterm")?;
    let (mut a, mut b) = start_pair(&pair, true)?;
    let probe = pair.start_probe(VIP, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    sleep(SETTLE);

    let stopped = monotonic_s();
    a.stop_cleanly()?;
    expect_reason(&mut b, "B", "MASTER", "master sent priority 0")?;
    sleep(SETTLE);
    let run = probe.finish()?;

    // The backup waits Skew_Time after the priority-0 advertisement, then
    // announces itself; allow one advertisement interval and 100 ms on top.
    let skew = skew_time_ms(B_PRIORITY, ADVERT_INT_CS);
    let bound = Duration::from_secs_f64((skew + f64::from(ADVERT_INT_CS) * 10.0 + 100.0) / 1000.0);
    let gap = run.gap_across(stopped, f64::INFINITY)?;
    eprintln!(
        "SIGTERM of the master: {:.1} ms without answers (Skew_Time {skew:.1} ms, bound {:.1} ms)\n{}",
        ms(gap),
        ms(bound),
        run.report(stopped)
    );
    ensure!(
        gap <= bound,
        "{:.1} ms without answers after the SIGTERM, bound {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        run.report(stopped)
    );
    expect_answers(
        &run,
        stopped + bound.as_secs_f64(),
        f64::INFINITY,
        "through B after the resignation",
    )?;
    expect_vmac_at(&pair, Appliance::B)?;
    b.stop_cleanly()
}

/// keepalived 2.2 (Debian's) as the peer, in B's place: the two elect by
/// priority in both directions and hand over on failure in both
/// directions, and keepalived rejects none of pylon's advertisements.
#[test]
fn keepalived_peer_elects_and_takes_over_both_ways() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let version = Command::new("keepalived")
        .arg("--version")
        .output()
        .context("the keepalived interop test needs keepalived (Debian package `keepalived`)")?;
    eprintln!(
        "{}",
        String::from_utf8_lossy(&version.stderr)
            .lines()
            .next()
            .unwrap_or("keepalived: no version")
    );
    let pair = VrrpPair::new("pvrrpka")?;
    let bound = failover_bound();
    let capture = pair.capture_adverts()?;

    // Pylon 200 against keepalived 100: pylon is MASTER.
    let mut a = pair.start(
        Appliance::A,
        &pair.config(Appliance::A, options(A_PRIORITY, true))?,
    )?;
    expect_state(&mut a, "A", "MASTER")?;
    let mut ka = pair.start_keepalived(B_PRIORITY)?;
    ka.wait_state("BACKUP", STATE_TIMEOUT)?;
    let before = forwarded(&mut a)?;
    let result = pair.topology().run_client(100, &vip_url())?;
    result.check_all_ok(100)?;
    ensure!(
        !result.by_server.contains_key(KEEPALIVED_HTTP_NAME),
        "keepalived's host answered while pylon was MASTER: {:?}",
        result.by_server
    );
    ensure!(
        forwarded(&mut a)? - before >= 400,
        "pylon forwarded too little"
    );

    // Pylon killed: keepalived takes the VIP; pylon back: it preempts.
    let probe = pair.start_probe(VIP, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    sleep(SETTLE);
    let killed = monotonic_s();
    kill_hard(&mut a)?;
    drop(a);
    ka.wait_state("MASTER", STATE_TIMEOUT)?;
    sleep(SETTLE);
    let restarted = monotonic_s();
    let mut a = pair.start(
        Appliance::A,
        &pair.config(Appliance::A, options(A_PRIORITY, true))?,
    )?;
    expect_reason(
        &mut a,
        "A",
        "MASTER",
        &format!("preempted lower-priority master {B_ADDR}"),
    )?;
    ka.wait_state("BACKUP", STATE_TIMEOUT)?;
    // Pylon is MASTER again from here at the latest.
    let took_back = monotonic_s();
    sleep(SETTLE);
    let run = probe.finish()?;
    let gap = run.gap_across(killed, restarted)?;
    let handback = run.longest_gap_after(restarted);
    eprintln!(
        "keepalived takes over from a SIGKILLed pylon: {:.1} ms without answers \
         (bound {:.1} ms); pylon preempts keepalived: longest gap {:.1} ms",
        ms(gap),
        ms(bound),
        ms(handback)
    );
    ensure!(
        gap <= bound,
        "{:.1} ms without answers, bound {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        run.report(killed)
    );
    ensure!(
        handback <= return_bound(),
        "{:.1} ms without answers when pylon preempted keepalived, bound {:.1} ms\n{}",
        ms(handback),
        ms(return_bound()),
        run.report(restarted)
    );
    let via_keepalived = run.servers_between(killed + bound.as_secs_f64(), restarted);
    ensure!(
        via_keepalived.iter().all(|s| s == KEEPALIVED_HTTP_NAME) && !via_keepalived.is_empty(),
        "answers while keepalived held the VIP came from {via_keepalived:?}"
    );
    expect_answers(
        &run,
        killed + bound.as_secs_f64(),
        restarted,
        "via keepalived",
    )?;
    let via_pylon = run.servers_between(took_back, f64::INFINITY);
    ensure!(
        !via_pylon.is_empty() && !via_pylon.contains(KEEPALIVED_HTTP_NAME),
        "answers after pylon took the VIP back came from {via_pylon:?}"
    );
    expect_answers(&run, took_back, f64::INFINITY, "via pylon")?;

    // keepalived 250 against pylon 200: keepalived preempts, pylon is BACKUP;
    // keepalived's link cut: pylon takes over.
    ka.stop()?;
    let mut ka = pair.start_keepalived(250)?;
    ka.wait_state("MASTER", STATE_TIMEOUT)?;
    expect_reason(
        &mut a,
        "A",
        "BACKUP",
        &format!("higher-priority master {B_ADDR} (priority 250)"),
    )?;
    let probe = pair.start_probe(VIP, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    sleep(SETTLE);
    let cut = monotonic_s();
    pair.set_link(Appliance::B, false)?;
    expect_reason(
        &mut a,
        "A",
        "MASTER",
        "no advertisement for Master_Down_Interval",
    )?;
    sleep(SETTLE);
    let run = probe.finish()?;
    let a_bound = Duration::from_secs_f64(
        (master_down_interval_ms(A_PRIORITY, ADVERT_INT_CS) + 200.0) / 1000.0,
    );
    let gap = run.gap_across(cut, f64::INFINITY)?;
    eprintln!(
        "pylon takes over from keepalived cut off: {:.1} ms without answers (bound {:.1} ms)\n{}",
        ms(gap),
        ms(a_bound),
        run.report(cut)
    );
    ensure!(
        gap <= a_bound,
        "{:.1} ms without answers, bound {:.1} ms\n{}",
        ms(gap),
        ms(a_bound),
        run.report(cut)
    );
    ensure!(
        run.servers_between(cut - SETTLE.as_secs_f64(), cut)
            == [KEEPALIVED_HTTP_NAME.to_owned()].into(),
        "answers before the cut did not all come from keepalived's host"
    );
    let after = run.servers_between(cut + a_bound.as_secs_f64(), f64::INFINITY);
    ensure!(
        !after.is_empty() && !after.contains(KEEPALIVED_HTTP_NAME),
        "answers after the cut came from {after:?}"
    );
    expect_answers(
        &run,
        cut + a_bound.as_secs_f64(),
        f64::INFINITY,
        "via pylon",
    )?;

    expect_one_master(&capture.finish()?, "pylon and keepalived")?;
    let errors = ka.packet_errors();
    ensure!(
        errors.is_empty(),
        "keepalived rejected pylon's advertisements:\n{}",
        errors.join("\n")
    );
    ka.stop()?;
    a.stop_cleanly()
}

/// Waits until `pylon`'s instance `vrid` is in `state`.
fn expect_vrid_state(pylon: &mut PylonProcess, name: &str, vrid: u8, state: &str) -> Result<()> {
    let stats = pylon.stats_until(STATE_TIMEOUT, |s| {
        vrid_status(s, vrid).is_ok_and(|v| v.state == state)
    })?;
    let status = vrid_status(&stats, vrid)?;
    ensure!(
        status.state == state,
        "{name}'s VRID {vrid} is {} after {STATE_TIMEOUT:?}, expected {state}",
        status.state
    );
    Ok(())
}

/// The two-VIP layout of configs/vrrp-a.toml and vrrp-b.toml: A is MASTER
/// of 10.0.1.100 (VRID 51) and BACKUP of 10.0.1.101 (VRID 52), B the other
/// way round, so both carry traffic. A killed: B serves both VIPs, and the
/// VIP B had all along keeps answering.
#[test]
fn two_vips_each_appliance_masters_one() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrp2vip")?;
    let (high, low) = (options(A_PRIORITY, true), options(B_PRIORITY, true));
    let mut a = pair.start(
        Appliance::A,
        &pair.config_two_vips(Appliance::A, high, low)?,
    )?;
    expect_vrid_state(&mut a, "A", VRID, "MASTER")?;
    let mut b = pair.start(
        Appliance::B,
        &pair.config_two_vips(Appliance::B, low, high)?,
    )?;
    expect_vrid_state(&mut b, "B", VRID2, "MASTER")?;
    expect_vrid_state(&mut b, "B", VRID, "BACKUP")?;
    expect_vrid_state(&mut a, "A", VRID2, "BACKUP")?;
    expect_vrid_state(&mut a, "A", VRID, "MASTER")?;
    expect_vip_served_by(&pair, VIP, ("A", &mut a), ("B", &mut b), 100)?;
    expect_vip_served_by(&pair, VIP2, ("B", &mut b), ("A", &mut a), 100)?;
    for (vip, mac, at) in [
        (VIP, VIRTUAL_MAC, Appliance::A),
        (VIP2, VIRTUAL_MAC2, Appliance::B),
    ] {
        let client = pair.client_mac_of(vip)?;
        ensure!(
            client.as_deref() == Some(mac),
            "the client holds {client:?} for {vip}, expected {mac}"
        );
        let port = pair.bridge_port_of(mac)?;
        ensure!(
            port == Some(at),
            "the bridge has {mac} at {port:?}, expected {at:?}"
        );
    }

    let probe1 = pair.start_probe(VIP, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    let probe2 = pair.start_probe(VIP2, PROBE_INTERVAL, PROBE_TIMEOUT)?;
    sleep(SETTLE);
    let killed = monotonic_s();
    kill_hard(&mut a)?;
    drop(a);
    expect_vrid_state(&mut b, "B", VRID, "MASTER")?;
    sleep(SETTLE);
    let (run1, run2) = (probe1.finish()?, probe2.finish()?);

    let bound = failover_bound();
    let gap = run1.gap_across(killed, f64::INFINITY)?;
    let undisturbed = run2.longest_gap_after(killed - SETTLE.as_secs_f64());
    eprintln!(
        "two VIPs, A killed: {:.1} ms without answers for A's VIP (bound {:.1} ms), \
         longest gap for B's VIP {:.1} ms",
        ms(gap),
        ms(bound),
        ms(undisturbed)
    );
    ensure!(
        gap <= bound,
        "{:.1} ms without answers for {VIP}, bound {:.1} ms\n{}",
        ms(gap),
        ms(bound),
        run1.report(killed)
    );
    // B's own VIP must not wait for anything A's failure sets off.
    let mdi = Duration::from_secs_f64(master_down_interval_ms(B_PRIORITY, ADVERT_INT_CS) / 1000.0);
    ensure!(
        undisturbed < mdi,
        "{VIP2}, B's all along, went {:.1} ms without answers\n{}",
        ms(undisturbed),
        run2.report(killed)
    );
    expect_answers(
        &run1,
        killed + bound.as_secs_f64(),
        f64::INFINITY,
        "A's VIP via B",
    )?;
    expect_answers(&run2, f64::NEG_INFINITY, f64::INFINITY, "B's VIP")?;

    let port = pair.bridge_port_of(VIRTUAL_MAC)?;
    ensure!(
        port == Some(Appliance::B),
        "the bridge has {VIRTUAL_MAC} at {port:?}, expected B"
    );
    let before = forwarded(&mut b)?;
    for vip in [VIP, VIP2] {
        pair.topology()
            .run_client(100, &url(vip))?
            .check_all_ok(100)?;
    }
    let after = forwarded(&mut b)?;
    ensure!(
        after - before >= 800,
        "B forwarded {} packets for 200 requests to both VIPs",
        after - before
    );
    b.stop_cleanly()
}

/// Tracking and notify: A tracks its own port (`track_ports`, weight 0)
/// and runs a notify command for each state. Its link cut: A enters FAULT
/// (B takes over); link back: A starts again as BACKUP and preempts. The
/// notify commands ran for each state in order, the start's BACKUP first.
#[test]
fn tracked_port_down_is_fault_and_notify_runs() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let pair = VrrpPair::new("pvrrptrack")?;
    let notified = pair.topology().dir().join("notify.log");
    let notify = |state: &str| {
        format!(
            "notify_{state} = \"echo \\\"$1 $2\\\" >> {}\"\n",
            notified.display()
        )
    };
    // The keys below join the last table of the config, its [[vrrp]].
    let config = pair.config(Appliance::A, options(A_PRIORITY, true))?
        + "track_ports = [{ port = \"lan\" }]\n"
        + &notify("master")
        + &notify("backup")
        + &notify("fault");
    let mut a = pair.start(Appliance::A, &config)?;
    expect_state(&mut a, "A", "MASTER")?;
    let mut b = pair.start(
        Appliance::B,
        &pair.config(Appliance::B, options(B_PRIORITY, true))?,
    )?;
    expect_state(&mut b, "B", "BACKUP")?;

    pair.set_link(Appliance::A, false)?;
    expect_reason(&mut a, "A", "FAULT", "tracked port or service down")?;
    expect_state(&mut b, "B", "MASTER")?;
    pair.set_link(Appliance::A, true)?;
    expect_reason(&mut a, "A", "MASTER", "preempted lower-priority master")?;
    expect_state(&mut b, "B", "BACKUP")?;
    expect_served_by(&pair, ("A", &mut a), ("B", &mut b), 50)?;

    let log = process::wait_for(STATE_TIMEOUT, || {
        let log = std::fs::read_to_string(&notified).unwrap_or_default();
        Ok((log.lines().count() >= 5).then_some(log))
    })
    .with_context(|| format!("notify commands wrote {notified:?}"))?;
    let states: Vec<&str> = log.lines().collect();
    ensure!(
        states
            == [
                "BACKUP 51",
                "MASTER 51",
                "FAULT 51",
                "BACKUP 51",
                "MASTER 51"
            ],
        "notify commands ran as {states:?}"
    );
    b.stop_cleanly()?;
    a.stop_cleanly()
}
