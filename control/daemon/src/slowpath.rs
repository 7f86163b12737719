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
    Drop,
}

/// Handles one frame received on `port`.
pub fn handle(
    c: &mut SlowCounters,
    snap: &Snapshot,
    shared: &Shared,
    neigh: &NeighborMap,
    nm: &mut NeighborManager,
    now: u32,
    frame: &mut [u8],
    port: usize,
) -> Outcome {
    let Some(info) = snap.ports.get(port) else {
        return Outcome::Drop;
    };
    match parse(frame) {
        Ok(Frame::Arp { offset, .. }) => arp(c, snap, nm, now, frame, offset, port, info),
        Ok(Frame::Ipv4(mut s)) if s.proto == PROTO_ICMP => {
            icmp(c, snap, shared, neigh, frame, &mut s, port, info)
        }
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
    // Weak host model, as a Linux director: VIPs are answered on every port.
    let for_us = target == info.addr || snap.is_vip(target);
    if sender != 0 && info.on_link(sender) {
        nm.learn(sender, source_hardware_addr.0, port, now, for_us);
    }
    if operation != ArpOperation::Request || !for_us {
        c.arp_ignored += 1;
        return Outcome::Drop;
    }
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(info.mac),
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    reply.emit(&mut ArpPacket::new_unchecked(&mut frame[offset..]));
    ethernet::set_macs(frame, source_hardware_addr.0, info.mac);
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
    let requester = ethernet::src(frame);
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
