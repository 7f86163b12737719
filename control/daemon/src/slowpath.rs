//! What the control lcore does with frames the workers hand it: ARP
//! (answer for our addresses and VIPs, learn neighbors), ICMP echo to our
//! addresses, and ICMP errors about tracked connections.

use crate::neighbors::NeighborManager;
use pylon_dataplane::forward::{is_icmp_error, route_out, Verdict};
use pylon_dataplane::icmp::{translate_error, Translated};
use pylon_dataplane::neighbor::NeighborMap;
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::{PortInfo, Snapshot};
use pylon_wire::checksum;
use pylon_wire::ethernet::{self, BROADCAST, ETHERTYPE_ARP};
use pylon_wire::frame::{ipv4_field, PROTO_ICMP};
use pylon_wire::{parse, Frame, Ipv4Summary};
use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};
use std::net::Ipv4Addr;

/// IPv4 protocol number of VRRP (RFC 5798 §5.2.4).
const PROTO_VRRP: u8 = 112;
/// ICMP echo request / reply types (RFC 792).
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
/// TTL of packets the appliance originates (RFC 1700's recommended 64).
const OWN_TTL: u8 = 64;
/// Length of an ARP frame: 14 + 28 bytes padded to the Ethernet minimum.
pub const ARP_FRAME_LEN: usize = 60;

/// Slow-path counters; only the control lcore touches them.
#[derive(Debug, Default)]
pub struct SlowCounters {
    pub arp_replies: u64,
    pub arp_requests_sent: u64,
    pub arp_ignored: u64,
    pub icmp_echo_replies: u64,
    pub icmp_errors_translated: u64,
    pub icmp_errors_unmatched: u64,
    /// Local traffic nobody serves (TCP to a port address, ...).
    pub local_dropped: u64,
    pub malformed: u64,
}

/// What to do with a handled frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The frame was rewritten into a reply / translation: send it.
    Send(usize),
    /// A VRRP packet (IPv4 protocol 112) for the VRRP instances.
    Vrrp,
    Drop,
}

/// The control lcore's slow-path state: its counters and the neighbors
/// it learns from ARP.
pub struct SlowPath {
    pub counters: SlowCounters,
    pub neighbors: NeighborManager,
}

impl SlowPath {
    /// Handles one frame received on `port`.
    pub fn handle(
        &mut self,
        snap: &Snapshot,
        shared: &Shared,
        neigh: &NeighborMap,
        now: u32,
        frame: &mut [u8],
        port: usize,
    ) -> Outcome {
        let c = &mut self.counters;
        let Some(info) = snap.ports.get(port) else {
            return Outcome::Drop;
        };
        match parse(frame) {
            Ok(Frame::Arp { offset, .. }) => {
                arp(c, snap, &mut self.neighbors, now, frame, offset, port, info)
            }
            Ok(Frame::Ipv4(mut s)) if s.proto == PROTO_ICMP => {
                icmp(c, snap, shared, neigh, frame, &mut s, port, info)
            }
            Ok(Frame::Ipv4(s)) if s.proto == PROTO_VRRP => Outcome::Vrrp,
            Ok(_) => {
                c.local_dropped += 1;
                Outcome::Drop
            }
            Err(_) => {
                c.malformed += 1;
                Outcome::Drop
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn arp(
    c: &mut SlowCounters,
    snap: &Snapshot,
    nm: &mut NeighborManager,
    now: u32,
    frame: &mut [u8],
    offset: usize,
    port: usize,
    info: &PortInfo,
) -> Outcome {
    let repr = match ArpPacket::new_checked(&frame[offset..]).and_then(|p| ArpRepr::parse(&p)) {
        Ok(r) => r,
        Err(_) => {
            c.malformed += 1;
            return Outcome::Drop;
        }
    };
    let ArpRepr::EthernetIpv4 {
        operation,
        source_hardware_addr,
        source_protocol_addr,
        target_protocol_addr,
        ..
    } = repr
    else {
        c.arp_ignored += 1;
        return Outcome::Drop;
    };
    let sender = u32::from(source_protocol_addr);
    let target = u32::from(target_protocol_addr);
    // Weak host model, as a Linux director: our addresses (ports, active
    // VIPs, VRRP addresses while MASTER) are answered on every port.
    let for_us = snap.is_local(target);
    // A frame claiming one of our own addresses (the other VRRP router's
    // gratuitous ARP for a VIP) teaches us no neighbor.
    if sender != 0 && info.on_link(sender) && !snap.is_local(sender) {
        nm.learn(sender, source_hardware_addr.0, port, now, for_us);
    }
    // A gratuitous ARP (sender = target) announces, it asks nothing. Above
    // all, the VRRP router taking a VIP over sends them from the virtual
    // MAC while this MASTER is about to hear its advertisement: a reply
    // from the virtual MAC here would teach the switches that the MAC is
    // on this port again, and the VIP's traffic would come here for an
    // advertisement interval after this router became BACKUP.
    if operation != ArpOperation::Request || !for_us || sender == target {
        c.arp_ignored += 1;
        return Outcome::Drop;
    }
    // VRRP addresses are announced with the instance's virtual MAC.
    let mac = snap.arp_mac(target).unwrap_or(info.mac);
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(mac),
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    reply.emit(&mut ArpPacket::new_unchecked(&mut frame[offset..]));
    ethernet::set_macs(frame, source_hardware_addr.0, mac);
    c.arp_replies += 1;
    Outcome::Send(port)
}

#[allow(clippy::too_many_arguments)]
fn icmp(
    c: &mut SlowCounters,
    snap: &Snapshot,
    shared: &Shared,
    neigh: &NeighborMap,
    frame: &mut [u8],
    s: &mut Ipv4Summary,
    port: usize,
    info: &PortInfo,
) -> Outcome {
    if is_icmp_error(s.icmp_type) {
        let Some(t) = translate_error(&shared.conns, frame, s) else {
            c.icmp_errors_unmatched += 1;
            return Outcome::Drop;
        };
        if s.ttl <= 1 {
            return Outcome::Drop;
        }
        let dst = match t {
            Translated::ToClient(ip) | Translated::ToServer(ip) => ip,
        };
        return match route_out(shared, snap, neigh, frame, s, dst) {
            Verdict::Forward(out) => {
                c.icmp_errors_translated += 1;
                Outcome::Send(out)
            }
            _ => Outcome::Drop,
        };
    }
    if s.icmp_type == ICMP_ECHO_REQUEST && snap.is_local(s.dst) {
        echo_reply(frame, s, info);
        c.icmp_echo_replies += 1;
        return Outcome::Send(port);
    }
    c.local_dropped += 1;
    Outcome::Drop
}

/// Turns an echo request into its reply in place (RFC 792): addresses
/// swapped, type 0, sent back to the MAC it came from.
fn echo_reply(frame: &mut [u8], s: &Ipv4Summary, info: &PortInfo) {
    let ip = s.l3;
    frame[ip + ipv4_field::SRC..ip + ipv4_field::SRC + 4].copy_from_slice(&s.dst.to_be_bytes());
    frame[ip + ipv4_field::DST..ip + ipv4_field::DST + 4].copy_from_slice(&s.src.to_be_bytes());
    frame[ip + ipv4_field::TTL] = OWN_TTL;
    frame[ip + ipv4_field::CHECKSUM..ip + ipv4_field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
    let ck = checksum::checksum(&frame[ip..s.l4]);
    frame[ip + ipv4_field::CHECKSUM..ip + ipv4_field::CHECKSUM + 2]
        .copy_from_slice(&ck.to_be_bytes());
    let old = u16::from_be_bytes([frame[s.l4], frame[s.l4 + 1]]);
    frame[s.l4] = ICMP_ECHO_REPLY;
    let new = u16::from_be_bytes([frame[s.l4], frame[s.l4 + 1]]);
    let ck = u16::from_be_bytes([frame[s.l4 + 2], frame[s.l4 + 3]]);
    frame[s.l4 + 2..s.l4 + 4].copy_from_slice(&checksum::update16(ck, old, new).to_be_bytes());
    // parse() accepted the frame, so it holds an Ethernet header.
    let requester = ethernet::src(frame).unwrap_or(BROADCAST);
    ethernet::set_macs(frame, requester, info.mac);
}

/// Writes a broadcast ARP request for `target` from `info` into `frame`
/// (at least [`ARP_FRAME_LEN`] bytes; the tail is zero padding).
pub fn arp_request(frame: &mut [u8], info: &PortInfo, target: u32) {
    frame.fill(0);
    ethernet::set_macs(frame, BROADCAST, info.mac);
    frame[ethernet::field::ETHERTYPE].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let req = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(info.mac),
        source_protocol_addr: Ipv4Addr::from(info.addr),
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: Ipv4Addr::from(target),
    };
    req.emit(&mut ArpPacket::new_unchecked(
        &mut frame[ethernet::HEADER_LEN..],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use pylon_conntrack::{Table, Timeouts};
    use pylon_dataplane::snapshot::{Mode, Service};
    use pylon_sched::Kind;

    const PORT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
    const PORT_IP: u32 = 0x0a00_0101;
    const VIP: u32 = 0x0a00_0164;
    const PEER: u32 = 0x0a00_0102;

    fn setup() -> (SlowPath, Shared) {
        let port = PortInfo {
            name: "p".into(),
            mac: PORT_MAC,
            addr: PORT_IP,
            mask: 0xffff_ff00,
            gateway: None,
            mtu: 1500,
            vmacs: vec![],
        };
        let svc = Service {
            name: "web".into(),
            vip: VIP,
            port: 80,
            proto: 6,
            scheduler: Kind::Wlc,
            mode: Mode::Nat,
            servers: vec![],
            sorry: None,
            active: true,
        };
        let shared = Shared::new(
            Snapshot::new(1, vec![port], vec![svc], vec![]),
            Table::new(16, Timeouts::default()).unwrap(),
            1,
        );
        let slow = SlowPath {
            counters: SlowCounters::default(),
            neighbors: NeighborManager::new(30_000, 90_000),
        };
        (slow, shared)
    }

    fn arp_frame(op: ArpOperation, sender: u32, target: u32) -> Vec<u8> {
        let mut f = vec![0u8; ARP_FRAME_LEN];
        ethernet::set_macs(&mut f, BROADCAST, PEER_MAC);
        f[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        ArpRepr::EthernetIpv4 {
            operation: op,
            source_hardware_addr: EthernetAddress(PEER_MAC),
            source_protocol_addr: Ipv4Addr::from(sender),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::from(target),
        }
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
        f
    }

    fn handle(slow: &mut SlowPath, shared: &Shared, f: &mut [u8]) -> Outcome {
        let snap = shared.snapshot.load();
        let neigh = shared.neighbors.load();
        slow.handle(&snap, shared, &neigh, 0, f, 0)
    }

    #[test]
    fn answers_arp_for_port_address_and_vip_and_learns_the_asker() {
        let (mut slow, shared) = setup();
        for target in [PORT_IP, VIP] {
            let mut f = arp_frame(ArpOperation::Request, PEER, target);
            assert_eq!(handle(&mut slow, &shared, &mut f), Outcome::Send(0));
            let reply = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap();
            assert_eq!(
                reply,
                ArpRepr::EthernetIpv4 {
                    operation: ArpOperation::Reply,
                    source_hardware_addr: EthernetAddress(PORT_MAC),
                    source_protocol_addr: Ipv4Addr::from(target),
                    target_hardware_addr: EthernetAddress(PEER_MAC),
                    target_protocol_addr: Ipv4Addr::from(PEER),
                }
            );
            assert_eq!(&f[0..6], &PEER_MAC);
            assert_eq!(&f[6..12], &PORT_MAC);
        }
        assert_eq!(slow.counters.arp_replies, 2);
        assert_eq!(
            slow.neighbors.take_map().unwrap().get(&PEER),
            Some(&PEER_MAC)
        );
    }

    #[test]
    fn ignores_arp_for_other_hosts_without_learning() {
        let (mut slow, shared) = setup();
        let mut f = arp_frame(ArpOperation::Request, PEER, 0x0a00_0177);
        assert_eq!(handle(&mut slow, &shared, &mut f), Outcome::Drop);
        assert!(slow.neighbors.is_empty());
        let mut short = arp_frame(ArpOperation::Request, PEER, PORT_IP);
        short.truncate(30);
        assert_eq!(handle(&mut slow, &shared, &mut short), Outcome::Drop);
        assert_eq!(slow.counters.malformed, 1);
    }

    #[test]
    fn ignores_gratuitous_arp_for_its_own_addresses() {
        let (mut slow, shared) = setup();
        for addr in [VIP, PORT_IP] {
            let mut f = arp_frame(ArpOperation::Request, addr, addr);
            assert_eq!(handle(&mut slow, &shared, &mut f), Outcome::Drop);
        }
        assert_eq!(slow.counters.arp_replies, 0);
        assert_eq!(slow.counters.arp_ignored, 2);
        assert!(slow.neighbors.is_empty());
    }

    #[test]
    fn answers_ping_to_the_vip() {
        let (mut slow, shared) = setup();
        let mut icmp = vec![8u8, 0, 0, 0, 0x12, 0x34, 0, 1, b'h', b'i'];
        let ck = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&ck.to_be_bytes());
        let mut f = vec![0u8; 14];
        ethernet::set_macs(&mut f, PORT_MAC, PEER_MAC);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = PROTO_ICMP;
        ip[12..16].copy_from_slice(&PEER.to_be_bytes());
        ip[16..20].copy_from_slice(&VIP.to_be_bytes());
        let ck = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&icmp);
        assert_eq!(handle(&mut slow, &shared, &mut f), Outcome::Send(0));
        let Ok(Frame::Ipv4(s)) = parse(&f) else {
            panic!("reply does not parse")
        };
        assert_eq!(
            (s.src, s.dst, s.icmp_type, s.ttl),
            (VIP, PEER, ICMP_ECHO_REPLY, OWN_TTL)
        );
        assert_eq!(checksum::fold(checksum::sum(&f[s.l4..], 0)), 0xffff);
        assert_eq!(&f[0..6], &PEER_MAC);
    }

    #[test]
    fn builds_arp_requests() {
        let (_, shared) = setup();
        let snap = shared.snapshot.load();
        let mut f = vec![0xaa; ARP_FRAME_LEN];
        arp_request(&mut f, &snap.ports[0], PEER);
        let req = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 {
            operation,
            target_protocol_addr,
            source_protocol_addr,
            ..
        } = req
        else {
            panic!("not ethernet/ipv4")
        };
        assert_eq!(operation, ArpOperation::Request);
        assert_eq!(u32::from(target_protocol_addr), PEER);
        assert_eq!(u32::from(source_protocol_addr), PORT_IP);
        assert_eq!(&f[0..6], &BROADCAST);
        assert!(f[42..].iter().all(|&b| b == 0), "padding is zeroed");
    }
}
