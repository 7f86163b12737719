//! Two endpoints on a fake network and a fake clock: the handshake, update
//! flow, loss repair, the rate bound, configuration digests, and every
//! reason a datagram is rejected (none of which installs anything).

use pylon_conntrack::State;
use pylon_sync::digest::{canonical, digest, ServiceDesc};
use pylon_sync::endpoint::{MAX_PENDING, PUSH_INTERVAL_MS, RESYNC_RETRY_MS, STARTUP_MAX_MS};
use pylon_sync::wire::{self, Header, Message};
use pylon_sync::{Config, Endpoint, Event, Key, Kind, Mode, Reject, SyncConn, Transmit};
use std::net::{Ipv4Addr, SocketAddr};

const KEY: &[u8] = b"pylon sync test key, 32 bytes!!!";

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 9, 0, n], 8848))
}

fn endpoint(me: u8, peer: u8, seed: u64, max_rate: u32) -> Endpoint {
    Endpoint::new(
        Config {
            peers: vec![addr(peer)],
            max_rate,
            startup_timeout_ms: 5000,
        },
        Key::new(KEY).unwrap(),
        seed ^ u64::from(me),
        0,
    )
}

fn conn(port: u16, kind: Kind) -> SyncConn {
    SyncConn {
        client_ip: u32::from(Ipv4Addr::new(10, 0, 1, 2)),
        client_port: port,
        vip: u32::from(Ipv4Addr::new(10, 0, 1, 100)),
        vport: 80,
        rip: u32::from(Ipv4Addr::new(10, 0, 2, 11)),
        rport: 8080,
        proto: 6,
        state: State::Established,
        mode: Mode::Dsr,
        kind,
        idle_ms: 0,
    }
}

/// An appliance: its endpoint, its "table" (the rows it sends when asked)
/// and what it installed.
struct Box_ {
    ep: Endpoint,
    addr: SocketAddr,
    table: Vec<SyncConn>,
    conns: Vec<SyncConn>,
    events: Vec<Event>,
    sent: Vec<Transmit>,
}

impl Box_ {
    fn new(me: u8, peer: u8, max_rate: u32) -> Box_ {
        Box_ {
            ep: endpoint(me, peer, 0xC0FFEE, max_rate),
            addr: addr(me),
            table: Vec::new(),
            conns: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// Timers, then the caller's part: answer table requests, collect
    /// installed connections.
    fn drive(&mut self, now: u64) {
        self.ep.handle_timeout(now);
        while let Some(e) = self.ep.poll_event() {
            match &e {
                Event::TableRequested { peer, .. } => self.ep.send_table(*peer, self.table.clone()),
                Event::Conn { conn, .. } => self.conns.push(*conn),
                _ => {}
            }
            self.events.push(e);
        }
    }

    fn transmit(&mut self, now: u64) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = self.ep.poll_transmit(now) {
            out.push(t);
        }
        self.sent.extend(out.iter().cloned());
        out
    }
}

/// Runs both boxes for `ms` milliseconds in 1 ms steps; `deliver` decides
/// per datagram whether the network carries it.
fn run(a: &mut Box_, b: &mut Box_, from: u64, ms: u64, mut deliver: impl FnMut(&Transmit) -> bool) {
    for now in from..from + ms {
        a.drive(now);
        b.drive(now);
        for t in a.transmit(now) {
            if deliver(&t) {
                let _ = b.ep.handle(now, a.addr, &t.datagram);
            }
        }
        for t in b.transmit(now) {
            if deliver(&t) {
                let _ = a.ep.handle(now, b.addr, &t.datagram);
            }
        }
        a.drive(now);
        b.drive(now);
    }
}

fn pair() -> (Box_, Box_) {
    (Box_::new(1, 2, 10_000), Box_::new(2, 1, 10_000))
}

fn rejected(ep: &Endpoint, r: Reject) -> u64 {
    ep.stats().rejected[r.index()]
}

#[test]
fn both_start_and_sync_each_other() {
    let (mut a, mut b) = pair();
    a.table = (0..200).map(|p| conn(p, Kind::Snapshot)).collect();
    assert!(a.ep.startup_pending() && b.ep.startup_pending());
    run(&mut a, &mut b, 0, 3000, |_| true);
    assert!(!a.ep.startup_pending() && !b.ep.startup_pending());
    assert!(a.ep.peer_adopted(0) && b.ep.peer_adopted(0));
    assert_eq!(b.conns.len(), 200, "A's whole table reached B");
    assert!(a.conns.is_empty(), "B had nothing");
    assert!(b.events.contains(&Event::TransferComplete {
        peer: 0,
        entries: 200
    }));
}

#[test]
fn updates_are_batched_and_delivered_in_order() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    let sent_before = a.ep.stats().datagrams_sent;
    for p in 0..100 {
        a.ep.push_update(2000, conn(p, Kind::New));
    }
    run(&mut a, &mut b, 2000, 50, |_| true);
    let ports: Vec<u16> = b.conns.iter().map(|c| c.client_port).collect();
    assert_eq!(ports, (0..100).collect::<Vec<_>>());
    // 100 updates: one full datagram of 54 and one of 46 (plus digests
    // and nothing else, since no digest is set).
    assert_eq!(a.ep.stats().datagrams_sent - sent_before, 2);
    assert_eq!(rejected(&b.ep, Reject::Replay), 0);
}

#[test]
fn a_lost_datagram_is_a_gap_repaired_by_a_full_transfer() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    for p in 0..54 {
        a.ep.push_update(2000, conn(p, Kind::New));
        a.table.push(conn(p, Kind::Snapshot));
    }
    // The network loses this batch.
    run(&mut a, &mut b, 2000, 20, |t| {
        !matches!(
            wire::decode(&Key::new(KEY).unwrap(), &t.datagram),
            Ok((_, Message::Updates(_)))
        )
    });
    assert!(b.conns.is_empty());
    a.ep.push_update(2020, conn(999, Kind::New));
    a.table.push(conn(999, Kind::Snapshot));
    run(&mut a, &mut b, 2020, 100, |_| true);
    assert_eq!(b.ep.stats().lost, 1);
    let got: std::collections::BTreeSet<u16> = b.conns.iter().map(|c| c.client_port).collect();
    assert_eq!(got.len(), 55, "every connection arrived via the transfer");
    assert_eq!(b.ep.stats().transfers_completed, 2);
}

#[test]
fn transfer_rows_never_undo_newer_updates() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    // B asks again (as after a gap); A's table snapshot still has port 7
    // established, but before the chunk goes out, port 7 expires.
    a.table = vec![conn(7, Kind::Snapshot)];
    let d = wire::encode(
        &Key::new(KEY).unwrap(),
        Header { session: 1, seq: 1 },
        &Message::Updates(vec![]),
    );
    // A message from an unknown session makes B ask A for a transfer.
    assert_eq!(b.ep.handle(2000, a.addr, &d), Err(Reject::UnknownSession));
    b.drive(2000);
    let req = b.transmit(2000);
    assert_eq!(req.len(), 1);
    a.ep.handle(2000, b.addr, &req[0].datagram).unwrap();
    a.drive(2000);
    // FullStart goes out alone, then the expiry is sent before the chunk.
    let start = a.ep.poll_transmit(2000).unwrap();
    b.ep.handle(2000, a.addr, &start.datagram).unwrap();
    // A full batch leaves at once, ahead of the chunk.
    a.ep.push_update(2000, conn(7, Kind::Expire));
    for p in 100..153 {
        a.ep.push_update(2000, conn(p, Kind::New));
    }
    run(&mut a, &mut b, 2001, 100, |_| true);
    let seven: Vec<Kind> = b
        .conns
        .iter()
        .filter(|c| c.client_port == 7)
        .map(|c| c.kind)
        .collect();
    assert_eq!(seven, vec![Kind::Expire], "the stale row was skipped");
}

#[test]
fn forged_datagrams_are_bad_mac_and_install_nothing() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    let forger = Key::new(b"not the key, but 32 bytes long!!").unwrap();
    let (session, seq) = (a.ep.session(), 1_000);
    let d = wire::encode(
        &forger,
        Header { session, seq },
        &Message::Updates(vec![conn(1, Kind::New)]),
    );
    assert_eq!(b.ep.handle(2000, a.addr, &d), Err(Reject::BadMac));
    b.drive(2000);
    assert!(b.conns.is_empty());
    assert_eq!(rejected(&b.ep, Reject::BadMac), 1);
}

#[test]
fn replayed_and_late_datagrams_install_nothing() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    a.ep.push_update(2000, conn(1, Kind::New));
    run(&mut a, &mut b, 2000, 20, |_| true);
    let captured = a
        .sent
        .iter()
        .rev()
        .find(|t| {
            matches!(
                wire::decode(&Key::new(KEY).unwrap(), &t.datagram),
                Ok((_, Message::Updates(_)))
            )
        })
        .unwrap()
        .datagram
        .clone();
    assert_eq!(b.conns.len(), 1);
    assert_eq!(b.ep.handle(2020, a.addr, &captured), Err(Reject::Replay));
    b.drive(2020);
    assert_eq!(b.conns.len(), 1);
    // Two more batches; the first is held back and arrives late.
    a.ep.push_update(2020, conn(2, Kind::New));
    run(&mut a, &mut b, 2020, 11, |_| false);
    let held = a.sent.last().unwrap().datagram.clone();
    a.ep.push_update(2031, conn(3, Kind::New));
    run(&mut a, &mut b, 2031, 11, |t| {
        matches!(
            wire::decode(&Key::new(KEY).unwrap(), &t.datagram),
            Ok((_, Message::Updates(_)))
        )
    });
    assert_eq!(b.ep.handle(2042, a.addr, &held), Err(Reject::OutOfOrder));
    b.drive(2042);
    assert!(!b
        .conns
        .iter()
        .any(|c| c.client_port == 2 && c.kind == Kind::New));
    assert_eq!(rejected(&b.ep, Reject::Replay), 1);
    assert_eq!(rejected(&b.ep, Reject::OutOfOrder), 1);
}

#[test]
fn an_old_session_replayed_after_a_restart_is_unknown() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    a.ep.push_update(2000, conn(1, Kind::New));
    run(&mut a, &mut b, 2000, 20, |_| true);
    let old = a.sent.last().unwrap().datagram.clone();
    // A restarts: new session; B adopts it through the transfer.
    a.ep = endpoint(1, 2, 0xBEEF, 10_000);
    run(&mut a, &mut b, 2020, 3000, |_| true);
    let installed = b.conns.len();
    assert_eq!(b.ep.handle(5020, a.addr, &old), Err(Reject::UnknownSession));
    b.drive(5020);
    assert_eq!(b.conns.len(), installed);
    assert_eq!(rejected(&b.ep, Reject::UnknownSession), 1);
}

#[test]
fn truncated_malformed_and_foreign_datagrams() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    a.ep.push_update(2000, conn(1, Kind::New));
    let t = loop {
        if let Some(t) = a.ep.poll_transmit(2010) {
            if matches!(
                wire::decode(&Key::new(KEY).unwrap(), &t.datagram),
                Ok((_, Message::Updates(_)))
            ) {
                break t;
            }
        }
    };
    let d = &t.datagram;
    assert_eq!(
        b.ep.handle(2010, a.addr, &d[..d.len() - 1]),
        Err(Reject::Truncated)
    );
    let mut v = d.clone();
    v[4] = 9;
    assert_eq!(b.ep.handle(2010, a.addr, &v), Err(Reject::BadVersion));
    assert_eq!(b.ep.handle(2010, addr(77), d), Err(Reject::UnknownPeer));
    // Authentic, in session, next sequence number, but type 42.
    let key = Key::new(KEY).unwrap();
    let mut m = wire::encode(
        &key,
        Header {
            session: a.ep.session(),
            seq: 1,
        },
        &Message::Updates(vec![]),
    );
    m[5] = 42;
    let body_end = m.len() - 32;
    let tag = resign(&m[..body_end]);
    m[body_end..].copy_from_slice(&tag);
    assert_eq!(b.ep.handle(2010, a.addr, &m), Err(Reject::Malformed));
    b.drive(2010);
    assert!(b.conns.is_empty());
    // The genuine datagram is still accepted afterwards.
    b.ep.handle(2010, a.addr, d).unwrap();
    b.drive(2010);
    assert_eq!(b.conns.len(), 1);
}

/// HMAC-SHA256 with the test key, computed independently of the crate.
fn resign(data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(KEY).unwrap();
    m.update(data);
    m.finalize().into_bytes().into()
}

#[test]
fn the_rate_bound_holds_and_transfers_run_in_the_background() {
    let mut a = Box_::new(1, 2, 100);
    let mut b = Box_::new(2, 1, 100);
    a.table = (0..20_000).map(|p| conn(p, Kind::Snapshot)).collect();
    run(&mut a, &mut b, 0, 1000, |_| true);
    // 100/s with a burst of 16: at most 116 datagrams in the first second.
    assert!(
        a.ep.stats().datagrams_sent <= 116,
        "{}",
        a.ep.stats().datagrams_sent
    );
    assert!(b.ep.startup_pending(), "20000 rows need 371 chunks");
    // Updates overtake the transfer.
    a.ep.push_update(1000, conn(60_000, Kind::New));
    run(&mut a, &mut b, 1000, 20, |_| true);
    assert!(b.conns.iter().any(|c| c.client_port == 60_000));
    run(&mut a, &mut b, 1020, 4000, |_| true);
    assert!(!b.ep.startup_pending());
    assert_eq!(b.conns.len(), 20_001);
}

#[test]
fn startup_waits_for_a_live_peer_but_not_for_a_dead_one() {
    let mut alone = Box_::new(1, 2, 1000);
    for now in 0..4999 {
        alone.drive(now);
        alone.transmit(now);
    }
    assert!(alone.ep.startup_pending());
    alone.drive(5000);
    assert!(!alone.ep.startup_pending(), "nobody answered in 5 s");
    assert!(alone.ep.stats().resyncs_requested >= 1);
    assert!(
        alone.sent.len() >= 5,
        "the request was repeated every {RESYNC_RETRY_MS} ms"
    );

    // A peer that talks but never completes a transfer holds us back
    // until STARTUP_MAX_MS.
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 6000, |t| {
        !matches!(
            wire::decode(&Key::new(KEY).unwrap(), &t.datagram),
            Ok((_, Message::FullEnd { .. }))
        )
    });
    assert!(a.ep.startup_pending() && b.ep.startup_pending());
    a.drive(STARTUP_MAX_MS);
    assert!(!a.ep.startup_pending());
}

#[test]
fn config_digests_are_compared_on_both_sides() {
    let (mut a, mut b) = pair();
    let svc = ServiceDesc {
        name: "web".into(),
        vip: Ipv4Addr::new(10, 0, 1, 100),
        port: 80,
        proto: 6,
        scheduler: "wlc".into(),
        mode: Mode::Dsr,
        servers: vec![(Ipv4Addr::new(10, 0, 1, 11), 80, 1)],
        sorry: None,
    };
    a.ep.set_local_digest(0, digest(std::slice::from_ref(&svc)));
    b.ep.set_local_digest(0, digest(std::slice::from_ref(&svc)));
    run(&mut a, &mut b, 0, 3000, |_| true);
    assert_eq!(a.ep.config_in_sync(), Some(true));
    assert_eq!(b.ep.config_in_sync(), Some(true));
    let mut heavier = svc.clone();
    heavier.servers[0].2 = 5;
    b.ep.set_local_digest(3000, digest(&[heavier]));
    run(&mut a, &mut b, 3000, 2100, |_| true);
    assert_eq!(a.ep.config_in_sync(), Some(false));
    assert_eq!(b.ep.config_in_sync(), Some(false));
    assert!(a
        .events
        .iter()
        .any(|e| matches!(e, Event::Config { matches: false, .. })));
}

#[test]
fn a_full_pending_queue_turns_into_a_full_transfer() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    a.table = vec![conn(5, Kind::Snapshot)];
    // The network is down while far too many updates pile up.
    for p in 0..=MAX_PENDING {
        a.ep.push_update(2000, conn(p as u16, Kind::New));
    }
    assert_eq!(a.ep.stats().overflows, 1);
    run(&mut a, &mut b, 2000, 100, |_| true);
    assert!(b
        .conns
        .iter()
        .any(|c| c.client_port == 5 && c.kind == Kind::Snapshot));
    assert_eq!(a.ep.stats().transfers_sent, 2);
}

#[test]
fn refreshes_travel_as_background_transfers() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    let before = b.conns.len();
    let rows: Vec<SyncConn> = (0..120).map(|p| conn(p, Kind::Refresh)).collect();
    a.ep.send_refresh(rows);
    run(&mut a, &mut b, 2000, 100, |_| true);
    let refreshed = b.conns[before..]
        .iter()
        .filter(|c| c.kind == Kind::Refresh)
        .count();
    assert_eq!(refreshed, 120);
    assert_eq!(rejected(&b.ep, Reject::Replay), 0);
}

#[test]
fn updates_older_than_a_table_go_out_before_it() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    // An update still batching when the table is read: the table already
    // has the newer state, so the update must not mask the row.
    a.ep.push_update(2000, conn(9, Kind::New));
    a.ep.send_table(
        0,
        vec![SyncConn {
            state: State::FinWait,
            ..conn(9, Kind::Snapshot)
        }],
    );
    run(&mut a, &mut b, 2000, 50, |_| true);
    let nine: Vec<Kind> = b
        .conns
        .iter()
        .filter(|c| c.client_port == 9)
        .map(|c| c.kind)
        .collect();
    assert_eq!(nine, vec![Kind::New, Kind::Snapshot]);
}

#[test]
fn under_overload_a_transfer_completes_and_one_more_follows() {
    // 100 datagrams/s: updates pour in far faster than they can leave.
    let mut a = Box_::new(1, 2, 100);
    let mut b = Box_::new(2, 1, 100);
    run(&mut a, &mut b, 0, 2000, |_| true);
    a.table = (0..2_000).map(|p| conn(p, Kind::Snapshot)).collect();
    let mut port = 10_000u16;
    let mut walks = 0;
    for now in 2000..4000 {
        // 200 updates per millisecond: the pending queue overflows every
        // third of a second, a worker's queue would too.
        for _ in 0..200 {
            a.ep.push_update(now, conn(port, Kind::New));
            port = port.wrapping_add(1).max(10_000);
        }
        a.drive(now);
        walks += a
            .events
            .drain(..)
            .filter(|e| matches!(e, Event::TableRequested { .. }))
            .count();
        b.drive(now);
        for t in a.transmit(now) {
            let _ = b.ep.handle(now, a.addr, &t.datagram);
        }
        for t in b.transmit(now) {
            let _ = a.ep.handle(now, b.addr, &t.datagram);
        }
    }
    let overflows = a.ep.stats().overflows;
    assert!(overflows >= 5, "{overflows} overflows");
    // 2,000 rows are 38 chunks, sent at about half the rate: each
    // transfer runs to its end and the one it owed starts then; none is
    // restarted by the overflows meanwhile.
    let sent = a.ep.stats().transfers_sent;
    assert!(sent >= 2, "{sent} transfers completed");
    assert!(
        walks as u64 <= sent + 1 && (walks as u64) < overflows,
        "{walks} table walks for {sent} transfers and {overflows} overflows"
    );
    let table_rows = b.conns.iter().filter(|c| c.kind == Kind::Snapshot).count();
    assert!(table_rows >= 2_000, "{table_rows} rows arrived");
    // Updates kept flowing meanwhile, in about half of the datagrams.
    let updates = b.conns.iter().filter(|c| c.kind == Kind::New).count();
    assert!(updates >= 40 * 54, "{updates} updates arrived");
}

#[test]
fn a_differing_peer_gets_our_services_pushed_in_parts() {
    let (mut a, mut b) = pair();
    // Enough servers for three parts.
    let big = ServiceDesc {
        name: "web".into(),
        vip: Ipv4Addr::new(10, 0, 1, 100),
        port: 80,
        proto: 6,
        scheduler: "wlc".into(),
        mode: Mode::Nat,
        servers: (0..120u8)
            .map(|i| (Ipv4Addr::new(10, 0, 2, i), 8080, u32::from(i) + 1))
            .collect(),
        sorry: Some((Ipv4Addr::new(10, 0, 3, 1), 8080)),
    };
    let mut small = big.clone();
    small.servers.truncate(2);
    let text = canonical(std::slice::from_ref(&big));
    assert!(text.len() > 2 * wire::MAX_PUSH_TEXT);
    a.ep.set_local_digest(0, digest(std::slice::from_ref(&big)));
    b.ep.set_local_digest(0, digest(&[small]));
    a.ep.set_push_text(Some(text));
    run(&mut a, &mut b, 0, 3000, |_| true);
    let pushed: Vec<&Vec<ServiceDesc>> = b
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ConfigPushed { services, .. } => Some(services),
            _ => None,
        })
        .collect();
    assert_eq!(pushed.len(), 1, "one push per {PUSH_INTERVAL_MS} ms");
    assert_eq!(pushed[0], &vec![big.clone()]);
    assert_eq!(a.ep.stats().pushes_sent, 1);
    assert_eq!(b.ep.stats().pushes_received, 1);
    // b does not push back: it was given no text.
    assert_eq!(b.ep.stats().pushes_sent, 0);
    // Still differing 10 s later: pushed again.
    run(&mut a, &mut b, 3000, PUSH_INTERVAL_MS, |_| true);
    assert_eq!(b.ep.stats().pushes_received, 2);
    // Once b runs the same, no more pushes.
    b.ep.set_local_digest(13_000, digest(&[big]));
    run(&mut a, &mut b, 13_000, 2 * PUSH_INTERVAL_MS, |_| true);
    assert_eq!(a.ep.stats().pushes_sent, 2);
}

#[test]
fn a_push_whose_text_does_not_match_its_digest_is_refused() {
    let (mut a, mut b) = pair();
    run(&mut a, &mut b, 0, 2000, |_| true);
    let web = "service 10.0.1.100:80/6 web wlc nat\nserver 10.0.2.11:8080 1\n";
    // Authentic (right key, next sequence number) but inconsistent.
    let forged = wire::encode(
        &Key::new(KEY).unwrap(),
        Header {
            session: a.ep.session(),
            seq: a.sent.len() as u64 + 1,
        },
        &Message::ConfigPush {
            push: 9,
            index: 0,
            count: 1,
            digest: [0; 32],
            text: web.as_bytes().to_vec(),
        },
    );
    b.ep.handle(2000, a.addr, &forged).unwrap();
    b.drive(2000);
    assert_eq!(b.ep.stats().pushes_refused, 1);
    assert!(b
        .events
        .iter()
        .any(|e| matches!(e, Event::ConfigPushRefused { .. })));
    assert!(!b
        .events
        .iter()
        .any(|e| matches!(e, Event::ConfigPushed { .. })));
}
