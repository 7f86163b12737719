//! ICMP errors about NAT'ed connections (RFC 5508 §4.2 behaviour, as
//! IPVS does it): the quoted datagram is rewritten to what the receiver
//! sent, and the outer header to the address the receiver knows.

use pylon_conntrack::Table;
use pylon_wire::checksum;
use pylon_wire::frame::{ipv4_field, PROTO_TCP, PROTO_UDP, TCP_CHECKSUM};
use pylon_wire::rewrite::{set_endpoint, End};
use pylon_wire::Ipv4Summary;

/// Where a translated ICMP error must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translated {
    /// An error about a client->server packet: goes back to the client.
    ToClient(u32),
    /// An error about a reply (VIP->client): goes to the real server.
    ToServer(u32),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Summary of the quoted datagram, or `None` if the quote is too short to
/// name a connection (RFC 792 requires the IP header plus 8 bytes).
fn quoted(frame: &[u8], outer: &Ipv4Summary) -> Option<Ipv4Summary> {
    let end = (outer.l3 + usize::from(outer.total_len)).min(frame.len());
    let l3 = outer.l4 + 8;
    let ip = frame.get(l3..end)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl + 8 {
        return None;
    }
    let proto = ip[ipv4_field::PROTO];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let l4 = l3 + ihl;
    Some(Ipv4Summary {
        vlan: outer.vlan,
        l3,
        l4,
        // The quote ends at the frame: set_endpoint only writes within it.
        total_len: (end - l3) as u16,
        proto,
        ttl: ip[ipv4_field::TTL],
        src: be32(ip, ipv4_field::SRC),
        dst: be32(ip, ipv4_field::DST),
        sport: be16(frame, l4),
        dport: be16(frame, l4 + 2),
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    })
}

/// Rewrites one end of the quoted datagram. A TCP quote of only 8 bytes
/// has no checksum field to keep valid: then only the port changes.
fn rewrite_quote(frame: &mut [u8], inner: &mut Ipv4Summary, end: End, addr: u32, port: u16) {
    let quote_end = inner.l3 + usize::from(inner.total_len);
    if inner.proto == PROTO_TCP && inner.l4 + TCP_CHECKSUM + 2 > quote_end {
        let saved = inner.proto;
        inner.proto = 0;
        set_endpoint(frame, inner, end, addr, port);
        inner.proto = saved;
        let at = inner.l4 + if end == End::Source { 0 } else { 2 };
        frame[at..at + 2].copy_from_slice(&port.to_be_bytes());
    } else {
        set_endpoint(frame, inner, end, addr, port);
    }
}

/// Translates an ICMP error in place if it quotes a tracked connection.
/// The caller routes the result and decrements the TTL.
pub fn translate_error(
    conns: &Table,
    frame: &mut [u8],
    outer: &mut Ipv4Summary,
) -> Option<Translated> {
    let mut inner = quoted(frame, outer)?;
    let result = if let Some((_, c)) =
        conns.lookup_reply(inner.src, inner.sport, inner.proto, inner.dst, inner.dport)
    {
        // Quotes client->RIP: the client must see client->VIP.
        rewrite_quote(frame, &mut inner, End::Destination, c.vip, c.vport);
        if outer.src == c.rip {
            set_endpoint(frame, outer, End::Source, c.vip, 0);
        }
        Translated::ToClient(c.client_ip)
    } else if let Some((_, c)) =
        conns.lookup_forward(inner.dst, inner.dport, inner.proto, inner.src, inner.sport)
    {
        // Quotes VIP->client: the real server must see RIP->client.
        rewrite_quote(frame, &mut inner, End::Source, c.rip, c.rport);
        set_endpoint(frame, outer, End::Destination, c.rip, 0);
        Translated::ToServer(c.rip)
    } else {
        return None;
    };
    // The quote changed, so the ICMP checksum is recomputed over the
    // whole message (RFC 792): errors are rare and short.
    let icmp_end = (outer.l3 + usize::from(outer.total_len)).min(frame.len());
    frame[outer.l4 + 2..outer.l4 + 4].copy_from_slice(&[0, 0]);
    let ck = checksum::checksum(&frame[outer.l4..icmp_end]);
    frame[outer.l4 + 2..outer.l4 + 4].copy_from_slice(&ck.to_be_bytes());
    Some(result)
}
