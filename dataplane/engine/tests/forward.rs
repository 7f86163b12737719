//! Exact frames in, exact frames out: the forwarding decision without DPDK.

use pylon_conntrack::{State, Table, Timeouts};
use pylon_dataplane::counters::DropReason;
use pylon_dataplane::forward::{Forwarder, Verdict};
use pylon_dataplane::icmp::{translate_error, Translated};
use pylon_dataplane::neighbor::NeighborMap;
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::{Mode, PortInfo, Server, Service, Snapshot};
use pylon_sched::Kind;
use pylon_wire::checksum;
use pylon_wire::frame::fixtures::{checksums_valid, fix_ip_checksum, tcp_frame, udp_frame};
use pylon_wire::frame::tcp_flags::{ACK, FIN, RST, SYN};
use pylon_wire::frame::{PROTO_TCP, PROTO_UDP};
use pylon_wire::{parse, Frame, Ipv4Summary};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

const CLIENT_PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SERVER_PORT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x51];
const CLIENT: [u8; 4] = [10, 0, 1, 2];
const VIP: [u8; 4] = [10, 0, 1, 100];
const RS: [u8; 4] = [10, 0, 2, 11];

fn ip(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

struct Rig {
    fwd: Forwarder,
    snap: Arc<Snapshot>,
    neigh: NeighborMap,
}

fn rig(capacity: u32, weight: u32) -> Rig {
    let ports = vec![
        PortInfo {
            name: "client".into(),
            mac: CLIENT_PORT_MAC,
            addr: ip([10, 0, 1, 1]),
            mask: 0xffff_ff00,
            gateway: None,
            mtu: 1500,
            vmacs: vec![],
        },
        PortInfo {
            name: "servers".into(),
            mac: SERVER_PORT_MAC,
            addr: ip([10, 0, 2, 1]),
            mask: 0xffff_ff00,
            gateway: None,
            mtu: 1500,
            vmacs: vec![],
        },
    ];
    let server = Server {
        id: 0,
        addr: ip(RS),
        port: 8080,
        weight,
    };
    let services = [
        (PROTO_TCP, 80, Mode::Nat, 8080),
        (PROTO_UDP, 53, Mode::Nat, 8080),
        (PROTO_TCP, 81, Mode::Dsr, 81),
        (PROTO_TCP, 82, Mode::Tunnel, 82),
    ]
    .into_iter()
    .enumerate()
    .map(|(id, (proto, port, mode, rport))| Service {
        name: format!("svc{port}"),
        vip: ip(VIP),
        port,
        proto,
        scheduler: Kind::Wlc,
        mode,
        servers: vec![Server {
            id: id as u16,
            port: rport,
            ..server.clone()
        }],
        sorry: None,
        active: true,
    })
    .collect();
    let snap = Snapshot::new(1, ports, services, vec![]);
    let table = Table::new(capacity, Timeouts::default()).unwrap();
    let shared = Arc::new(Shared::new(snap, table, 16));
    let snap = shared.snapshot.load_full();
    let mut fwd = Forwarder::new(shared);
    fwd.sync(&snap);
    let neigh = [(ip(CLIENT), CLIENT_MAC), (ip(RS), RS_MAC)]
        .into_iter()
        .collect();
    Rig { fwd, snap, neigh }
}

impl Rig {
    fn run(&mut self, frame: &mut Vec<u8>, port: usize) -> Verdict {
        self.fwd.process(&self.snap, &self.neigh, 1000, frame, port)
    }

    fn stats(&self) -> (u32, u32) {
        let s = &self.fwd.shared().servers[0];
        (s.active.load(Relaxed), s.inactive.load(Relaxed))
    }
}

fn client_seg(flags: u8) -> Vec<u8> {
    tcp_frame(
        CLIENT_PORT_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40000,
        80,
        flags,
        b"",
    )
}

fn server_seg(flags: u8) -> Vec<u8> {
    tcp_frame(SERVER_PORT_MAC, RS_MAC, RS, CLIENT, 8080, 40000, flags, b"")
}

fn summary(f: &[u8]) -> Ipv4Summary {
    match parse(f) {
        Ok(Frame::Ipv4(s)) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn nat_both_directions_through_a_tcp_lifecycle() {
    let mut r = rig(64, 1);
    let mut syn = client_seg(SYN);
    assert_eq!(r.run(&mut syn, 0), Verdict::Forward(1));
    let s = summary(&syn);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.ttl),
        (ip(CLIENT), 40000, ip(RS), 8080, 63)
    );
    assert_eq!(&syn[0..6], &RS_MAC);
    assert_eq!(&syn[6..12], &SERVER_PORT_MAC);
    assert!(checksums_valid(&syn));
    // Handshake states count as active (IPVS since Linux 4.7).
    assert_eq!(r.stats(), (1, 0), "a new connection is active");

    let mut synack = server_seg(SYN | ACK);
    assert_eq!(r.run(&mut synack, 1), Verdict::Reply(0));
    let s = summary(&synack);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (ip(VIP), 80, ip(CLIENT), 40000)
    );
    assert_eq!(&synack[0..6], &CLIENT_MAC);
    assert_eq!(&synack[6..12], &CLIENT_PORT_MAC);
    assert!(checksums_valid(&synack));

    let mut ack = client_seg(ACK);
    assert_eq!(r.run(&mut ack, 0), Verdict::Forward(1));
    assert_eq!(r.stats(), (1, 0), "established stays active");

    let mut fin = client_seg(FIN | ACK);
    assert_eq!(r.run(&mut fin, 0), Verdict::Forward(1));
    assert_eq!(r.stats(), (0, 1), "closing counts as inactive again");
    assert_eq!(r.fwd.shared().conns.len(), 1);
}

#[test]
fn only_a_pure_syn_opens_a_connection() {
    let mut r = rig(64, 1);
    assert_eq!(
        r.run(&mut client_seg(ACK), 0),
        Verdict::Drop(DropReason::NoConnection)
    );
    assert_eq!(
        r.run(&mut client_seg(SYN | ACK), 0),
        Verdict::Drop(DropReason::NoConnection)
    );
    assert_eq!(
        r.run(&mut client_seg(RST), 0),
        Verdict::Drop(DropReason::NoConnection)
    );
    assert!(r.fwd.shared().conns.is_empty());
}

#[test]
fn invalid_flag_combinations_dropped() {
    let mut r = rig(64, 1);
    assert_eq!(
        r.run(&mut client_seg(SYN | FIN), 0),
        Verdict::Drop(DropReason::BadTcpFlags)
    );
    assert_eq!(
        r.run(&mut client_seg(SYN | RST), 0),
        Verdict::Drop(DropReason::BadTcpFlags)
    );
    assert_eq!(
        r.run(&mut client_seg(0), 0),
        Verdict::Drop(DropReason::BadTcpFlags)
    );
}

#[test]
fn ttl_one_is_not_forwarded() {
    let mut r = rig(64, 1);
    let mut f = client_seg(SYN);
    f[22] = 1;
    fix_ip_checksum(&mut f);
    assert_eq!(r.run(&mut f, 0), Verdict::Drop(DropReason::TtlExpired));
    assert!(r.fwd.shared().conns.is_empty());
}

#[test]
fn quiesced_server_gets_no_new_connections_and_the_client_a_reset() {
    let mut r = rig(64, 0);
    let mut syn = client_seg(SYN);
    assert_eq!(r.run(&mut syn, 0), Verdict::Refused(0));
    let s = summary(&syn);
    assert_eq!(
        (s.src, s.dst, s.sport, s.dport),
        (ip(VIP), ip(CLIENT), 80, 40000)
    );
    assert_eq!(s.tcp_flags, RST | ACK);
    assert_eq!(&syn[0..6], &CLIENT_MAC);
    assert!(checksums_valid(&syn));
    let mut udp = udp_frame(CLIENT, VIP, 5353, 53, b"q");
    udp[0..6].copy_from_slice(&CLIENT_PORT_MAC);
    assert_eq!(r.run(&mut udp, 0), Verdict::Drop(DropReason::NoRealServer));
    assert!(r.fwd.shared().conns.is_empty());
}

#[test]
fn full_table_drops_new_flows_and_keeps_old_ones() {
    let mut r = rig(1, 1);
    assert_eq!(r.run(&mut client_seg(SYN), 0), Verdict::Forward(1));
    let mut other = tcp_frame(
        CLIENT_PORT_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40001,
        80,
        SYN,
        b"",
    );
    assert_eq!(r.run(&mut other, 0), Verdict::Drop(DropReason::TableFull));
    assert_eq!(r.run(&mut client_seg(ACK), 0), Verdict::Forward(1));
}

#[test]
fn unresolved_next_hop_is_requested() {
    let mut r = rig(64, 1);
    r.neigh.remove(&ip(RS));
    assert_eq!(
        r.run(&mut client_seg(SYN), 0),
        Verdict::Drop(DropReason::NoNeighbor)
    );
    assert_eq!(r.fwd.shared().neighbors.take_request(), Some(ip(RS)));
}

#[test]
fn classification() {
    let mut r = rig(64, 1);
    let mut other_host = client_seg(SYN);
    other_host[0..6].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
    assert_eq!(
        r.run(&mut other_host, 0),
        Verdict::Drop(DropReason::OtherHost)
    );
    let mut not_vip = tcp_frame(
        CLIENT_PORT_MAC,
        CLIENT_MAC,
        CLIENT,
        [10, 0, 1, 99],
        1,
        80,
        SYN,
        b"",
    );
    assert_eq!(
        r.run(&mut not_vip, 0),
        Verdict::Drop(DropReason::NotForService)
    );
    let mut to_port_addr = tcp_frame(
        CLIENT_PORT_MAC,
        CLIENT_MAC,
        CLIENT,
        [10, 0, 1, 1],
        1,
        22,
        SYN,
        b"",
    );
    assert_eq!(r.run(&mut to_port_addr, 0), Verdict::Control);
    let mut arp = vec![0u8; 60];
    arp[0..6].copy_from_slice(&[0xff; 6]);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(r.run(&mut arp, 0), Verdict::Control);
    let mut v6 = client_seg(SYN);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    assert_eq!(r.run(&mut v6, 0), Verdict::Drop(DropReason::NotIpv4));
    let mut truncated = client_seg(SYN);
    truncated.truncate(24);
    assert_eq!(
        r.run(&mut truncated, 0),
        Verdict::Drop(DropReason::BadHeader)
    );
}

#[test]
fn udp_flow_both_ways() {
    let mut r = rig(64, 1);
    let mut q = udp_frame(CLIENT, VIP, 5353, 53, b"query");
    q[0..6].copy_from_slice(&CLIENT_PORT_MAC);
    assert_eq!(r.run(&mut q, 0), Verdict::Forward(1));
    let s = summary(&q);
    assert_eq!((s.dst, s.dport), (ip(RS), 8080));
    assert!(checksums_valid(&q));
    let mut a = udp_frame(RS, CLIENT, 8080, 5353, b"answer");
    a[0..6].copy_from_slice(&SERVER_PORT_MAC);
    assert_eq!(r.run(&mut a, 1), Verdict::Reply(0));
    let s = summary(&a);
    assert_eq!((s.src, s.sport), (ip(VIP), 53));
    assert!(checksums_valid(&a));
    let (_, info) = r
        .fwd
        .shared()
        .conns
        .lookup_forward(ip(CLIENT), 5353, PROTO_UDP, ip(VIP), 53)
        .unwrap();
    assert_eq!(info.state, State::Udp);
}

/// An ICMP port-unreachable from the real server about client->RIP must
/// reach the client as if the VIP had sent it about client->VIP.
#[test]
fn icmp_error_from_server_translated_for_client() {
    let mut r = rig(64, 1);
    let mut q = udp_frame(CLIENT, VIP, 5353, 53, b"query");
    q[0..6].copy_from_slice(&CLIENT_PORT_MAC);
    assert_eq!(r.run(&mut q, 0), Verdict::Forward(1));
    // The server got `q` (now client -> RIP:8080) and rejects it.
    let quote = q[14..14 + 28].to_vec();
    let mut icmp = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&quote);
    let ck = checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&ck.to_be_bytes());
    let mut f = udp_frame(RS, CLIENT, 0, 0, b"");
    f[0..6].copy_from_slice(&SERVER_PORT_MAC);
    f.truncate(34);
    f[23] = 1;
    f[16..18].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    fix_ip_checksum(&mut f);
    f.extend_from_slice(&icmp);
    assert_eq!(r.run(&mut f, 1), Verdict::Control);
    let mut s = summary(&f);
    let shared = Arc::clone(r.fwd.shared());
    assert_eq!(
        translate_error(&shared.conns, &mut f, &mut s),
        Some(Translated::ToClient(ip(CLIENT)))
    );
    let s = summary(&f);
    assert_eq!(s.src, ip(VIP), "outer source becomes the VIP");
    let inner = &f[s.l4 + 8..];
    assert_eq!(&inner[16..20], &VIP, "quoted destination is the VIP again");
    assert_eq!(&inner[22..24], &53u16.to_be_bytes());
    assert_eq!(
        checksum::fold(checksum::sum(&inner[..20], 0)),
        0xffff,
        "inner IP checksum"
    );
    assert_eq!(
        checksum::fold(checksum::sum(&f[s.l4..], 0)),
        0xffff,
        "ICMP checksum"
    );
}

/// HTTP with `Connection: close`: the server closes first. Once both FINs
/// are through, the connection must count as inactive.
#[test]
fn server_close_first_ends_inactive() {
    let mut r = rig(64, 1);
    for (flags, from_client) in [
        (SYN, true),
        (SYN | ACK, false),
        (ACK, true),
        (ACK | 0x08, true),
        (ACK | 0x08, false),
        (FIN | ACK, false),
        (ACK, true),
        (FIN | ACK, true),
        (ACK, false),
    ] {
        let (mut f, port) = if from_client {
            (client_seg(flags), 0)
        } else {
            (server_seg(flags), 1)
        };
        assert!(matches!(
            r.run(&mut f, port),
            Verdict::Forward(_) | Verdict::Reply(_)
        ));
    }
    assert_eq!(r.stats(), (0, 1));
    let (_, info) = r
        .fwd
        .shared()
        .conns
        .lookup_forward(ip(CLIENT), 40000, PROTO_TCP, ip(VIP), 80)
        .unwrap();
    assert_eq!(info.state, State::TimeWait);
}

#[test]
fn malformed_ip_is_dropped_by_reason() {
    let mut r = rig(64, 1);
    let mut frag = client_seg(SYN);
    frag[20] = 0x20; // MF
    fix_ip_checksum(&mut frag);
    assert_eq!(r.run(&mut frag, 0), Verdict::Drop(DropReason::Fragment));
    let mut bad_ck = client_seg(SYN);
    bad_ck[24] ^= 0x55;
    assert_eq!(
        r.run(&mut bad_ck, 0),
        Verdict::Drop(DropReason::BadIpChecksum)
    );
    let mut opts = client_seg(SYN);
    opts.splice(34..34, [1, 1, 1, 0]);
    opts[14] = 0x46;
    opts[16..18].copy_from_slice(&44u16.to_be_bytes());
    fix_ip_checksum(&mut opts);
    assert_eq!(r.run(&mut opts, 0), Verdict::Drop(DropReason::IpOptions));
    let mut tiny = vec![0u8; 4];
    assert_eq!(r.run(&mut tiny, 0), Verdict::Drop(DropReason::BadHeader));
    assert!(r.fwd.shared().conns.is_empty());
}

fn to_port(port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_frame(
        CLIENT_PORT_MAC,
        CLIENT_MAC,
        CLIENT,
        VIP,
        40000,
        port,
        flags,
        payload,
    )
}

#[test]
fn dsr_rewrites_only_the_mac_and_tracks_one_direction() {
    let mut r = rig(64, 1);
    let mut syn = to_port(81, SYN, b"");
    let before = syn.clone();
    assert_eq!(r.run(&mut syn, 0), Verdict::Forward(1));
    assert_eq!(&syn[0..6], &RS_MAC);
    assert_eq!(&syn[6..12], &SERVER_PORT_MAC);
    assert_eq!(
        &syn[12..],
        &before[12..],
        "IP and TCP untouched, TTL included"
    );
    let shared = Arc::clone(r.fwd.shared());
    let stats = |id: usize| {
        (
            shared.servers[id].active.load(Relaxed),
            shared.servers[id].inactive.load(Relaxed),
        )
    };
    assert_eq!(stats(2), (1, 0));
    // The client's ACK completes the handshake in the input-only table.
    assert_eq!(r.run(&mut to_port(81, ACK, b""), 0), Verdict::Forward(1));
    let (_, info) = shared
        .conns
        .lookup_forward(ip(CLIENT), 40000, PROTO_TCP, ip(VIP), 81)
        .unwrap();
    assert_eq!(info.state, State::Established);
    // The client's FIN alone closes it.
    assert_eq!(
        r.run(&mut to_port(81, FIN | ACK, b""), 0),
        Verdict::Forward(1)
    );
    assert_eq!(stats(2), (0, 1));
}

#[test]
fn tunnel_encapsulates_in_ipip() {
    let mut r = rig(64, 1);
    let mut syn = to_port(82, SYN, b"data");
    let inner = syn[14..].to_vec();
    assert_eq!(r.run(&mut syn, 0), Verdict::Forward(1));
    assert_eq!(syn.len(), 14 + 20 + inner.len());
    assert_eq!(&syn[0..6], &RS_MAC);
    let outer = summary(&syn);
    assert_eq!(
        (outer.proto, outer.src, outer.dst),
        (4, ip([10, 0, 2, 1]), ip(RS))
    );
    let mut expected = inner.clone();
    expected[8] -= 1; // inner TTL decremented: a forwarding hop
    assert_eq!(&syn[34..42], &expected[..8]);
    assert_eq!(
        &syn[46..],
        &expected[12..],
        "addresses, ports, payload unchanged"
    );
    assert_eq!(
        checksum::fold(checksum::sum(&syn[34..54], 0)),
        0xffff,
        "inner IP checksum"
    );
}

#[test]
fn tunnel_answers_df_packets_that_do_not_fit() {
    let mut r = rig(64, 1);
    let mut big = to_port(82, SYN, &[0x55; 1460]);
    let sent = big[14..42].to_vec();
    assert_eq!(r.run(&mut big, 0), Verdict::TooBig(0));
    let s = summary(&big);
    assert_eq!(
        (s.src, s.dst, s.icmp_type, s.icmp_code),
        (ip(VIP), ip(CLIENT), 3, 4)
    );
    assert_eq!(&big[s.l4 + 6..s.l4 + 8], &1480u16.to_be_bytes());
    assert_eq!(&big[s.l4 + 8..], &sent[..]);
    assert_eq!(&big[0..6], &CLIENT_MAC);
    assert_eq!(&big[6..12], &CLIENT_PORT_MAC);
    // Without DF it is dropped: Pylon does not fragment.
    let mut big = to_port(82, SYN, &[0x55; 1460]);
    big[20] = 0;
    fix_ip_checksum(&mut big);
    assert_eq!(r.run(&mut big, 0), Verdict::Drop(DropReason::TooBig));
    // 1480 bytes fit exactly.
    assert_eq!(
        r.run(&mut to_port(82, SYN, &[0x55; 1440]), 0),
        Verdict::Forward(1)
    );
}

#[test]
fn sync_events_report_creation_state_changes_and_port_reuse() {
    use pylon_dataplane::events::{EventKind, EventQueue};
    let mut r = rig(64, 1);
    let q = Arc::new(EventQueue::new(16));
    let shared = Arc::clone(r.fwd.shared());
    r.fwd = Forwarder::new(shared).with_events(Arc::clone(&q));
    r.fwd.sync(&r.snap);
    // The worker loop flushes once per poll round.
    let drain = |fwd: &mut Forwarder| {
        fwd.flush_events();
        std::iter::from_fn(|| q.pop())
            .flat_map(|b| b.events().to_vec())
            .map(|e| (e.kind, e.conn.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(r.run(&mut client_seg(SYN), 0), Verdict::Forward(1));
    assert!(q.pop().is_none(), "held until the end of the round");
    assert_eq!(drain(&mut r.fwd), vec![(EventKind::New, State::SynRecv)]);
    // Plain data on an unchanged state reports nothing.
    assert_eq!(r.run(&mut server_seg(SYN | ACK), 1), Verdict::Reply(0));
    assert_eq!(drain(&mut r.fwd), vec![]);
    assert_eq!(r.run(&mut client_seg(ACK), 0), Verdict::Forward(1));
    assert_eq!(r.run(&mut client_seg(ACK), 0), Verdict::Forward(1));
    assert_eq!(
        drain(&mut r.fwd),
        vec![(EventKind::State, State::Established)]
    );
    assert_eq!(r.run(&mut client_seg(RST), 0), Verdict::Forward(1));
    assert_eq!(drain(&mut r.fwd), vec![(EventKind::State, State::Close)]);
    // A new SYN on the closed entry: the old one expires, a new one starts.
    assert_eq!(r.run(&mut client_seg(SYN), 0), Verdict::Forward(1));
    assert_eq!(
        drain(&mut r.fwd),
        vec![
            (EventKind::Expire, State::Close),
            (EventKind::New, State::SynRecv)
        ]
    );
}
