//! End to end, health checks: pylon checks its three real servers over the
//! management interface of [`Topology::with_management`] while a client
//! keeps sending requests through the VIP (one TCP connection each, from
//! two threads). One server is failed the way each check kind notices —
//! `http`: its `/` answers 503; `tcp`: its HTTP server is stopped (the
//! check connects to the service port, 8080); `icmp`: its interface is
//! brought down, which also cuts its data traffic — and restored again.
//!
//! With interval 0.5 s, timeout 0.4 s, fall 2 and rise 2:
//!
//! - detection: pylon marks the server down, with effective weight 0 in
//!   the stats, and no request that started later than
//!   T = failure + fall × interval + timeout + [`ALLOWANCE`] reaches it or
//!   fails (requests that were in flight to it before T may fail);
//! - recovery: after the restore it is up again with its weight, and gets
//!   a new connection no later than restore + rise × interval +
//!   [`ALLOWANCE`].
//!
//! And the all-down case: with a sorry server, every request after T is
//! answered by it (and none once the servers are back); without one, every
//! request after T is refused at once (`ConnectionRefused`: pylon answers
//! the SYN with a RST, counted in `rst_sent` and `no_real_server`).
//!
//! The failure and restore times are taken when the action has completed
//! (the server is down, or listening again, by then), so the bounds are
//! measured from the latest moment the change can have happened; "before
//! the failure" means before the action began (stopping a server refuses
//! connections before the harness has seen it exit).
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`); takes the
//! machine-wide e2e lock.

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use pktgen_tests::load::since;
use pktgen_tests::topology::{
    HTTP_PORT, LB_SERVER_IF, MGMT_ADDR, MGMT_IF, SERVER_ADDRS, SORRY_ADDR, SORRY_NAME, VIP,
    VIP_PORT,
};
use pktgen_tests::{
    drop_counter, e2e_lock, harmful_drops, health_state, preflight, server_health, server_weight,
    wall_time, worker_counter, HealthOptions, LoadClient, LoadOptions, Outcome, PylonOptions,
    PylonProcess, Requests, Topology,
};
use serde_json::Value;

/// Seconds between the starts of two checks of a server.
const INTERVAL: f64 = 0.5;
/// Seconds a check may take.
const TIMEOUT: f64 = 0.4;
/// Successes in a row that bring a server back.
const RISE: u32 = 2;
/// Failures in a row that take a server out.
const FALL: u32 = 2;
/// Added to the detection and recovery bounds: what they leave out. The
/// engine starts checks up to a few milliseconds late (epoll's 1 ms timer,
/// its own loop; more on this shared 2-core machine), the transition
/// crosses a channel to the control loop, which publishes a snapshot that
/// the workers load at their next burst; the SYN of a request takes its
/// own way from the client to pylon; and a returning server gets its first
/// connection only when the scheduler's turn comes to it (round robin over
/// three, from two client threads: a few requests of ~10-30 ms).
const ALLOWANCE: Duration = Duration::from_millis(300);
/// The client's connect and answer timeout. Requests that went to a
/// failed server before T fail after at most this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Each client thread's pause between two requests.
const CLIENT_PAUSE: Duration = Duration::from_millis(20);
/// Client threads.
const CLIENT_THREADS: usize = 2;
/// How long traffic runs before a failure, and after T and after the
/// recovery bound, for the assertions to have requests to look at.
const SETTLE: Duration = Duration::from_millis(1500);
/// Requests that must have started in each window asserted on, so that
/// an assertion over them is never empty.
const MIN_REQUESTS: usize = 10;
/// How long stats polling waits for a state change beyond its bound
/// (failing later, with the stats, rather than hanging).
const STATS_SLACK: Duration = Duration::from_secs(3);

fn health() -> HealthOptions {
    HealthOptions::new("http", INTERVAL, TIMEOUT, RISE, FALL)
}

/// Round robin over rs1..rs3 (weight 1 each) with `kind` checks from the
/// management interface, and the topology's sorry server if asked for.
fn options(kind: &str, sorry: bool) -> PylonOptions {
    PylonOptions {
        scheduler: "rr".to_owned(),
        weights: [1, 1, 1],
        health: Some(HealthOptions {
            kind: kind.to_owned(),
            ..health()
        }),
        health_source: Some(MGMT_ADDR.to_owned()),
        health_interface: Some(MGMT_IF.to_owned()),
        sorry: sorry.then(|| (SORRY_ADDR.to_owned(), HTTP_PORT)),
        ..PylonOptions::default()
    }
}

/// The management topology with its HTTP servers, and pylon on it with
/// every real server checked and up.
fn start(options: &PylonOptions) -> Result<(Topology, PylonProcess)> {
    preflight()?;
    let mut topo = Topology::with_management("phealth")?;
    topo.start_http_servers()?;
    let mut pylon = topo.run_pylon(&topo.pylon_config(options))?;
    let kind = options.health.as_ref().map_or("", |h| h.kind.as_str());
    // The workers drop a connection's packets to a server whose MAC is not
    // resolved yet (and an unanswered ARP is asked again a second later):
    // the test's traffic starts once every server is resolved.
    let neighbors = (SERVER_ADDRS.len() + usize::from(options.sorry.is_some())) as u64;
    let all_passed = |stats: &Value| {
        stats["control"]["neighbors_resolved"].as_u64() >= Some(neighbors)
            && SERVER_ADDRS.iter().all(|addr| {
                server_health(stats, addr).is_some_and(|h| {
                    h["kind"] == kind
                        && h["state"] == "up"
                        && h["last_result"] == "pass"
                        && h["checks_run"].as_u64() >= Some(u64::from(RISE))
                })
            })
    };
    let stats = pylon.stats_until(Duration::from_secs(10), all_passed)?;
    ensure!(
        all_passed(&stats),
        "the {kind} checks of rs1..rs3 did not pass, or not all {neighbors} servers were resolved: {:#} {:#}",
        stats["health"],
        stats["control"]
    );
    check_management_path(&topo)?;
    Ok((topo, pylon))
}

/// The real servers answered the checks on-link, to the management
/// interface: each holds the management address with `mgmt`'s MAC, not
/// with the MAC of pylon's port on the same bridge.
fn check_management_path(topo: &Topology) -> Result<()> {
    let mgmt = topo.lb_mac(MGMT_IF)?;
    let pylon_port = topo.lb_mac(LB_SERVER_IF)?;
    ensure!(
        mgmt != pylon_port,
        "{MGMT_IF} and {LB_SERVER_IF} share {mgmt}"
    );
    for server in topo.servers() {
        let mac = topo.neighbor_mac(&server.ns, MGMT_ADDR)?;
        ensure!(
            mac.as_deref() == Some(mgmt.as_str()),
            "{} reaches {MGMT_ADDR} at {mac:?}, not at {MGMT_IF}'s {mgmt} (pylon's port is {pylon_port})",
            server.name
        );
    }
    Ok(())
}

fn load(topo: &Topology) -> Result<LoadClient> {
    let target: SocketAddr = format!("{VIP}:{VIP_PORT}").parse()?;
    LoadClient::start(
        topo.client_ns(),
        LoadOptions {
            target,
            timeout: CLIENT_TIMEOUT,
            pause: CLIENT_PAUSE,
            threads: CLIENT_THREADS,
        },
    )
}

fn sleep_until(t: Instant) {
    if let Some(left) = t.checked_duration_since(Instant::now()) {
        thread::sleep(left);
    }
}

/// Polls the stats until every server of `addrs` is in `state` with
/// effective weight `weight`, for up to `bound` + [`STATS_SLACK`]; fails
/// with the stats otherwise. Returns the last stats.
fn wait_for_state(
    pylon: &mut PylonProcess,
    addrs: &[&str],
    state: &str,
    weight: u64,
    bound: Duration,
) -> Result<Value> {
    let reached = |stats: &Value| {
        addrs.iter().all(|addr| {
            health_state(stats, addr) == Some(state) && server_weight(stats, addr) == Some(weight)
        })
    };
    let stats = pylon.stats_until(bound + STATS_SLACK, reached)?;
    ensure!(
        reached(&stats),
        "{addrs:?} not {state} with weight {weight}: health {:#}, servers {:#}",
        stats["health"],
        stats["servers"]
    );
    Ok(stats)
}

/// When the health entry of `addr` last changed, in seconds after `at`.
fn changed_after(stats: &Value, addr: &str, at: SystemTime) -> Result<f64> {
    let entry = server_health(stats, addr).context("no health entry")?;
    let changed =
        wall_time(&entry["last_change"]).with_context(|| format!("bad last_change: {entry}"))?;
    Ok(match changed.duration_since(at) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    })
}

/// Fails unless pylon dropped nothing that matters, `expected` aside.
fn check_drops(pylon: &mut PylonProcess, expected: &[&str]) -> Result<()> {
    let stats = pylon.stats()?;
    let harmful: Vec<_> = harmful_drops(&stats)
        .into_iter()
        .filter(|(reason, _)| !expected.contains(&reason.as_str()))
        .collect();
    ensure!(
        harmful.is_empty(),
        "pylon dropped packets: {harmful:?}\nstats: {stats:#}"
    );
    Ok(())
}

/// Every request that ended before the failing action began succeeded, and
/// each of `servers` (and nothing else) answered some.
fn check_before(
    requests: &Requests,
    failure: Instant,
    servers: &[&str],
    t0: Instant,
) -> Result<()> {
    let before: Vec<_> = requests.all.iter().filter(|r| r.end < failure).collect();
    ensure!(
        before.len() >= MIN_REQUESTS && before.iter().all(|r| r.ok()),
        "before the failure: {} requests, not all ok:\n{}",
        before.len(),
        requests.report(t0)
    );
    let by = Requests::ok_by_server(before.into_iter());
    ensure!(
        by.len() == servers.len() && servers.iter().all(|s| by.contains_key(*s)),
        "before the failure the answers came from {by:?}, expected {servers:?}"
    );
    Ok(())
}

/// How a test fails one real server, and how the check notices.
#[derive(Debug, Clone, Copy)]
enum Failure {
    /// `http` check: `/` answers 503.
    Status503,
    /// `tcp` check: the HTTP server is stopped; its port refuses.
    ServerStopped,
    /// `icmp` check: the interface is down; nothing reaches the server.
    LinkDown,
}

impl Failure {
    fn kind(self) -> &'static str {
        match self {
            Failure::Status503 => "http",
            Failure::ServerStopped => "tcp",
            Failure::LinkDown => "icmp",
        }
    }

    fn apply(self, topo: &mut Topology, index: usize) -> Result<()> {
        match self {
            Failure::Status503 => topo.set_http_status(index, 503),
            Failure::ServerStopped => topo.stop_http_server(index),
            Failure::LinkDown => topo.set_server_link(index, false),
        }
    }

    fn undo(self, topo: &mut Topology, index: usize) -> Result<()> {
        match self {
            Failure::Status503 => topo.set_http_status(index, 200),
            Failure::ServerStopped => topo.start_http_server(index),
            Failure::LinkDown => topo.set_server_link(index, true),
        }
    }
}

/// Fails rs1 under traffic, then restores it; see the module comment.
fn fail_and_recover(failure: Failure) -> Result<()> {
    let _lock = e2e_lock()?;
    let kind = failure.kind();
    let health = options(kind, false).health.context("health options")?;
    let (mut topo, mut pylon) = start(&options(kind, false))?;
    let (index, name, addr) = (0, "rs1", SERVER_ADDRS[0]);

    let client = load(&topo)?;
    let t0 = Instant::now();
    thread::sleep(SETTLE);

    let failing = Instant::now();
    failure.apply(&mut topo, index)?;
    let (failed, failed_wall) = (Instant::now(), SystemTime::now());
    let t = failed + health.detection_bound() + ALLOWANCE;
    let down = wait_for_state(&mut pylon, &[addr], "down", 0, health.detection_bound())?;
    let detected = changed_after(&down, addr, failed_wall)?;
    sleep_until(t + SETTLE);

    failure.undo(&mut topo, index)?;
    let (restored, restored_wall) = (Instant::now(), SystemTime::now());
    let up = wait_for_state(&mut pylon, &[addr], "up", 1, health.recovery_bound())?;
    let recovered = changed_after(&up, addr, restored_wall)?;
    let back_by = restored + health.recovery_bound() + ALLOWANCE;
    sleep_until(back_by + SETTLE);
    let requests = client.stop()?;

    let seconds = |t: Option<f64>| t.map_or("never".to_owned(), |t| format!("{t:.3}s"));
    let last_to = seconds(
        requests
            .last_possibly_to_before(name, restored)
            .map(|r| since(failed, r.start)),
    );
    let first_back = seconds(
        requests
            .first_ok_from_since(name, restored)
            .map(|r| since(restored, r.start)),
    );
    eprintln!(
        "{kind}: {name} failed at +{:.3}s ({failure:?}); pylon marked it down {detected:.3}s \
         later (bound fall x interval + timeout = {:.3}s, T = +{:.3}s); the last request that \
         may have gone to it started {last_to} after the failure. Restored at +{:.3}s; \
         marked up {recovered:.3}s later (bound rise x interval = {:.3}s); its first new \
         connection started {first_back} after the restore.\n{}",
        since(t0, failed),
        health.detection_bound().as_secs_f64(),
        since(t0, t),
        since(t0, restored),
        health.recovery_bound().as_secs_f64(),
        requests.report(t0)
    );

    check_before(&requests, failing, &["rs1", "rs2", "rs3"], t0)?;
    ensure!(
        detected <= (health.detection_bound() + ALLOWANCE).as_secs_f64(),
        "{name} was marked down {detected:.3}s after the failure"
    );
    let after_t = requests.started_between(t, restored).count();
    ensure!(
        after_t >= MIN_REQUESTS,
        "only {after_t} requests started between T and the restore"
    );
    let to_failed = requests.answered_by_since(name, t);
    let to_failed: Vec<_> = to_failed.iter().filter(|r| r.start < restored).collect();
    ensure!(
        to_failed.is_empty(),
        "requests that started after T reached the failed {name}: {to_failed:?}\n{}",
        requests.report(t0)
    );
    let failures = requests.failed_since(t);
    ensure!(
        failures.is_empty(),
        "{} requests that started after T (+{:.3}s) failed:\n{}",
        failures.len(),
        since(t0, t),
        requests.report(t0)
    );
    ensure!(
        recovered <= (health.recovery_bound() + ALLOWANCE).as_secs_f64(),
        "{name} was marked up {recovered:.3}s after the restore"
    );
    let first_back = requests
        .first_ok_from_since(name, restored)
        .with_context(|| format!("{name} got no connection after the restore"))?;
    ensure!(
        first_back.start <= back_by,
        "{name}'s first connection after the restore started {:.3}s after it, later than \
         rise x interval + allowance",
        since(restored, first_back.start)
    );

    check_drops(&mut pylon, &[])?;
    pylon.stop_cleanly()
}

#[test]
fn http_check_takes_a_503_server_out_and_back() -> Result<()> {
    fail_and_recover(Failure::Status503)
}

#[test]
fn tcp_check_takes_a_stopped_server_out_and_back() -> Result<()> {
    fail_and_recover(Failure::ServerStopped)
}

#[test]
fn icmp_check_takes_an_unreachable_server_out_and_back() -> Result<()> {
    fail_and_recover(Failure::LinkDown)
}

/// All three real servers answer 503 (http checks) from `failed` on, until
/// `restored`: the run's record and its stats before and after.
struct AllDown {
    requests: Requests,
    t0: Instant,
    failing: Instant,
    failed: Instant,
    t: Instant,
    restored: Instant,
    back_by: Instant,
    /// Stats before the failure and at the end.
    stats: (Value, Value),
}

fn all_down(topo: &mut Topology, pylon: &mut PylonProcess) -> Result<AllDown> {
    let health = health();
    let client = load(topo)?;
    let t0 = Instant::now();
    thread::sleep(SETTLE);

    let before = pylon.stats()?;
    let failing = Instant::now();
    for index in 0..SERVER_ADDRS.len() {
        topo.set_http_status(index, 503)?;
    }
    let failed = Instant::now();
    let t = failed + health.detection_bound() + ALLOWANCE;
    wait_for_state(pylon, &SERVER_ADDRS, "down", 0, health.detection_bound())?;
    sleep_until(t + SETTLE);

    for index in 0..SERVER_ADDRS.len() {
        topo.set_http_status(index, 200)?;
    }
    let restored = Instant::now();
    wait_for_state(pylon, &SERVER_ADDRS, "up", 1, health.recovery_bound())?;
    let back_by = restored + health.recovery_bound() + ALLOWANCE;
    sleep_until(back_by + SETTLE);
    let requests = client.stop()?;
    let after = pylon.stats()?;
    Ok(AllDown {
        requests,
        t0,
        failing,
        failed,
        t,
        restored,
        back_by,
        stats: (before, after),
    })
}

#[test]
fn all_down_sorry_server_takes_the_new_connections() -> Result<()> {
    let _lock = e2e_lock()?;
    let (mut topo, mut pylon) = start(&options("http", true))?;
    let run = all_down(&mut topo, &mut pylon)?;
    let requests = &run.requests;
    eprintln!(
        "all down with a sorry server: failed at +{:.3}s, T +{:.3}s, restored at +{:.3}s\n{}",
        since(run.t0, run.failed),
        since(run.t0, run.t),
        since(run.t0, run.restored),
        requests.report(run.t0)
    );

    check_before(requests, run.failing, &["rs1", "rs2", "rs3"], run.t0)?;
    let down: Vec<_> = requests.started_between(run.t, run.restored).collect();
    ensure!(
        down.len() >= MIN_REQUESTS,
        "only {} requests started while every server was down",
        down.len()
    );
    let not_sorry: Vec<_> = down
        .iter()
        .filter(|r| {
            r.outcome
                != Outcome::Ok {
                    server: SORRY_NAME.to_owned(),
                }
        })
        .collect();
    ensure!(
        not_sorry.is_empty(),
        "while every server was down, requests were not answered by the sorry server: \
         {not_sorry:?}\n{}",
        requests.report(run.t0)
    );
    let back: Vec<_> = requests.started_since(run.back_by).collect();
    ensure!(
        back.len() >= MIN_REQUESTS
            && back
                .iter()
                .all(|r| r.ok() && r.server() != Some(SORRY_NAME)),
        "after the servers came back, requests still failed or went to the sorry server:\n{}",
        requests.report(run.t0)
    );
    check_drops(&mut pylon, &[])?;
    pylon.stop_cleanly()
}

#[test]
fn all_down_without_sorry_server_refuses_at_once() -> Result<()> {
    let _lock = e2e_lock()?;
    let (mut topo, mut pylon) = start(&options("http", false))?;
    let run = all_down(&mut topo, &mut pylon)?;
    let requests = &run.requests;
    let down: Vec<_> = requests.started_between(run.t, run.restored).collect();
    let slowest = down.iter().map(|r| r.duration()).max().unwrap_or_default();
    let (before, after) = &run.stats;
    let rst = worker_counter(after, "rst_sent")? - worker_counter(before, "rst_sent")?;
    let no_server =
        drop_counter(after, "no_real_server")? - drop_counter(before, "no_real_server")?;
    eprintln!(
        "all down without a sorry server: failed at +{:.3}s, T +{:.3}s, restored at +{:.3}s; \
         {} requests refused after T, the slowest in {:.3}s (client timeout {:?}); \
         rst_sent +{rst}, no_real_server +{no_server}\n{}",
        since(run.t0, run.failed),
        since(run.t0, run.t),
        since(run.t0, run.restored),
        down.len(),
        slowest.as_secs_f64(),
        CLIENT_TIMEOUT,
        requests.report(run.t0)
    );

    check_before(requests, run.failing, &["rs1", "rs2", "rs3"], run.t0)?;
    ensure!(
        down.len() >= MIN_REQUESTS,
        "only {} requests started while every server was down",
        down.len()
    );
    let not_refused: Vec<_> = down
        .iter()
        .filter(|r| {
            !matches!(
                r.outcome,
                Outcome::Error {
                    kind: io::ErrorKind::ConnectionRefused,
                    ..
                }
            )
        })
        .collect();
    ensure!(
        not_refused.is_empty(),
        "while every server was down, requests were not refused: {not_refused:?}"
    );
    ensure!(
        rst >= down.len() as u64 && no_server >= down.len() as u64,
        "{} refused connections, but rst_sent grew by {rst} and no_real_server by {no_server}",
        down.len()
    );
    let back: Vec<_> = requests.started_since(run.back_by).collect();
    ensure!(
        back.len() >= MIN_REQUESTS && back.iter().all(|r| r.ok()),
        "after the servers came back, requests still failed:\n{}",
        requests.report(run.t0)
    );
    check_drops(&mut pylon, &["no_real_server"])?;
    pylon.stop_cleanly()
}
