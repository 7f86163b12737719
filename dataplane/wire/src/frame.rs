//! One-pass parse of a received frame into the summary the fast path acts on.
//!
//! Every length is checked here once, so the rewrite functions that take a
//! summary can index the frame without further checks.

use crate::checksum;
use crate::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits (RFC 9293 §3.1).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Byte offsets inside the IPv4 header (RFC 791 §3.1).
pub mod ipv4_field {
    pub const TOTAL_LEN: usize = 2;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Offset of the checksum inside a TCP (RFC 9293) and UDP (RFC 768) header.
pub const TCP_CHECKSUM: usize = 16;
pub const UDP_CHECKSUM: usize = 6;

/// Why a frame cannot be forwarded as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the headers it announces.
    Truncated,
    /// IPv4 version, header length or total length is impossible.
    BadIpHeader,
    BadIpChecksum,
    /// IHL > 5. Dropped as Katran does: no VIP traffic needs options, and a
    /// fixed header keeps the rewrite offsets constant.
    IpOptions,
    /// Fragments are dropped: without reassembly, non-first fragments carry
    /// no ports to find the connection by.
    Fragment,
    /// TCP data offset below 5 or past the packet, UDP length impossible,
    /// or ICMP shorter than its 8-byte header.
    BadL4Header,
}

/// The facts about an IPv4 frame the fast path needs, with offsets for
/// in-place rewrites. Addresses are host-order integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Summary {
    pub vlan: Option<u16>,
    /// Offset of the IPv4 header.
    pub l3: usize,
    /// Offset of the transport header.
    pub l4: usize,
    /// IPv4 total length: frame bytes past `l3 + total_len` are padding.
    pub total_len: u16,
    pub proto: u8,
    pub ttl: u8,
    pub src: u32,
    pub dst: u32,
    /// TCP/UDP ports; zero for other protocols.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags; zero for other protocols.
    pub tcp_flags: u8,
    /// ICMP type and code; zero for other protocols.
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// A parsed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    Ipv4(Ipv4Summary),
    /// ARP; `offset` is where the ARP packet starts.
    Arp {
        vlan: Option<u16>,
        offset: usize,
    },
    /// Any other EtherType (IPv6, LLDP, stacked VLAN tags, ...).
    Other {
        ethertype: u16,
    },
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The addresses, protocol and ports of a TCP or UDP over IPv4 frame
/// (VLAN-tagged or not) without validating anything: a hint for
/// prefetching, never a basis for a decision ([`parse`] is).
/// `(src, dst, proto, sport, dport)`.
pub fn peek_flow(frame: &[u8]) -> Option<(u32, u32, u8, u16, u16)> {
    let eth = ethernet::parse(frame)?;
    if eth.ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(eth.payload..)?;
    let l4 = (usize::from(*ip.first()? & 0x0f) * 4).max(20);
    let proto = *ip.get(ipv4_field::PROTO)?;
    if (proto != PROTO_TCP && proto != PROTO_UDP) || ip.len() < l4 + 4 {
        return None;
    }
    Some((
        be32(ip, ipv4_field::SRC),
        be32(ip, ipv4_field::DST),
        proto,
        be16(ip, l4),
        be16(ip, l4 + 2),
    ))
}

/// Parses and validates a frame (RFC 791 §3.1 header rules; the IPv4
/// header checksum is verified, transport checksums are not: end hosts
/// verify those, and the rewrite keeps them exactly as valid as received).
pub fn parse(frame: &[u8]) -> Result<Frame, ParseError> {
    let eth = ethernet::parse(frame).ok_or(ParseError::Truncated)?;
    match eth.ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, eth.payload, eth.vlan).map(Frame::Ipv4),
        ETHERTYPE_ARP => Ok(Frame::Arp {
            vlan: eth.vlan,
            offset: eth.payload,
        }),
        ethertype => Ok(Frame::Other { ethertype }),
    }
}

fn parse_ipv4(frame: &[u8], l3: usize, vlan: Option<u16>) -> Result<Ipv4Summary, ParseError> {
    let ip = &frame[l3..];
    if ip.len() < 20 {
        return Err(ParseError::Truncated);
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return Err(ParseError::BadIpHeader);
    }
    let total_len = be16(ip, ipv4_field::TOTAL_LEN);
    let total = usize::from(total_len);
    if total < ihl {
        return Err(ParseError::BadIpHeader);
    }
    if total > ip.len() {
        return Err(ParseError::Truncated);
    }
    if checksum::fold(checksum::sum(&ip[..ihl], 0)) != 0xffff {
        return Err(ParseError::BadIpChecksum);
    }
    if ihl != 20 {
        return Err(ParseError::IpOptions);
    }
    // MF flag or a non-zero offset (RFC 791 §3.2); DF alone is fine.
    if be16(ip, ipv4_field::FRAG) & 0x3fff != 0 {
        return Err(ParseError::Fragment);
    }
    let mut s = Ipv4Summary {
        vlan,
        l3,
        l4: l3 + ihl,
        total_len,
        proto: ip[ipv4_field::PROTO],
        ttl: ip[ipv4_field::TTL],
        src: be32(ip, ipv4_field::SRC),
        dst: be32(ip, ipv4_field::DST),
        sport: 0,
        dport: 0,
        tcp_flags: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    let l4 = &ip[ihl..total];
    match s.proto {
        PROTO_TCP => {
            if l4.len() < 20 {
                return Err(ParseError::BadL4Header);
            }
            let doff = usize::from(l4[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return Err(ParseError::BadL4Header);
            }
            s.sport = be16(l4, 0);
            s.dport = be16(l4, 2);
            s.tcp_flags = l4[13];
        }
        PROTO_UDP => {
            if l4.len() < 8 {
                return Err(ParseError::BadL4Header);
            }
            let ulen = usize::from(be16(l4, 4));
            if ulen < 8 || ulen > l4.len() {
                return Err(ParseError::BadL4Header);
            }
            s.sport = be16(l4, 0);
            s.dport = be16(l4, 2);
        }
        PROTO_ICMP => {
            if l4.len() < 8 {
                return Err(ParseError::BadL4Header);
            }
            s.icmp_type = l4[0];
            s.icmp_code = l4[1];
        }
        _ => {}
    }
    Ok(s)
}

/// TTL of headers the appliance originates (RFC 1700's default).
pub(crate) const OWN_TTL: u8 = 64;

/// Writes a 20-byte IPv4 header without options at `f[at..]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_ipv4_header(
    f: &mut [u8],
    at: usize,
    tos: u8,
    total: u16,
    id: u16,
    frag: u16,
    proto: u8,
    src: u32,
    dst: u32,
) {
    let h = &mut f[at..at + 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[ipv4_field::TTL] = OWN_TTL;
    h[ipv4_field::PROTO] = proto;
    h[10..12].copy_from_slice(&[0, 0]);
    h[12..16].copy_from_slice(&src.to_be_bytes());
    h[16..20].copy_from_slice(&dst.to_be_bytes());
    let ck = checksum::checksum(h);
    h[10..12].copy_from_slice(&ck.to_be_bytes());
}

/// Test fixtures shared with the engine's tests: frames built by hand.
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    use crate::checksum;

    /// Builds an Ethernet + IPv4 + TCP frame with valid checksums.
    #[allow(clippy::too_many_arguments)]
    pub fn tcp_frame(
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        flags: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = super::PROTO_TCP;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let ck = checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&ip);
        let mut tcp = [0u8; 20];
        tcp[0..2].copy_from_slice(&sport.to_be_bytes());
        tcp[2..4].copy_from_slice(&dport.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let mut seg = tcp.to_vec();
        seg.extend_from_slice(payload);
        let ph = checksum::pseudo_header(src, dst, super::PROTO_TCP, seg.len() as u16);
        let ck = !checksum::fold(checksum::sum(&seg, ph));
        seg[16..18].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&seg);
        f
    }

    /// Builds an Ethernet + IPv4 + UDP frame with valid checksums.
    pub fn udp_frame(
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut f = tcp_frame([2; 6], [4; 6], src, dst, sport, dport, 0, &[]);
        f.truncate(34);
        let total = (20 + 8 + payload.len()) as u16;
        f[23] = super::PROTO_UDP;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let ck = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ck.to_be_bytes());
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&sport.to_be_bytes());
        udp[2..4].copy_from_slice(&dport.to_be_bytes());
        udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(payload);
        let ph = checksum::pseudo_header(src, dst, super::PROTO_UDP, udp.len() as u16);
        let ck = !checksum::fold(checksum::sum(&udp, ph));
        udp[6..8].copy_from_slice(&ck.to_be_bytes());
        f.extend_from_slice(&udp);
        f
    }

    /// Recomputes the IPv4 header checksum after a test edited the header.
    pub fn fix_ip_checksum(f: &mut [u8]) {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        f[24..26].copy_from_slice(&[0, 0]);
        let ck = checksum::checksum(&f[14..14 + ihl]);
        f[24..26].copy_from_slice(&ck.to_be_bytes());
    }

    /// True if the IPv4 header and the TCP/UDP checksum of `f` verify.
    pub fn checksums_valid(f: &[u8]) -> bool {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        let ip = &f[14..];
        if checksum::fold(checksum::sum(&ip[..ihl], 0)) != 0xffff {
            return false;
        }
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let l4 = &ip[ihl..total];
        let src: [u8; 4] = ip[12..16].try_into().unwrap_or_default();
        let dst: [u8; 4] = ip[16..20].try_into().unwrap_or_default();
        let ph = checksum::pseudo_header(src, dst, ip[9], l4.len() as u16);
        checksum::fold(checksum::sum(l4, ph)) == 0xffff
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    const C: [u8; 4] = [10, 0, 1, 2];
    const V: [u8; 4] = [10, 0, 1, 100];

    fn syn() -> Vec<u8> {
        tcp_frame([2; 6], [4; 6], C, V, 40000, 80, tcp_flags::SYN, &[])
    }

    #[test]
    fn peeked_flows_are_what_parse_finds() {
        let f = syn();
        assert_eq!(
            peek_flow(&f),
            Some((
                u32::from_be_bytes(C),
                u32::from_be_bytes(V),
                PROTO_TCP,
                40000,
                80
            ))
        );
        // Too short for the ports, not IPv4, not TCP or UDP: nothing.
        assert_eq!(peek_flow(&f[..14 + 20 + 3]), None);
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(peek_flow(&arp), None);
        let mut icmp = f;
        icmp[14 + ipv4_field::PROTO] = PROTO_ICMP;
        assert_eq!(peek_flow(&icmp), None);
        assert_eq!(peek_flow(&[]), None);
    }

    #[test]
    fn tcp_syn() {
        let f = syn();
        assert!(checksums_valid(&f));
        let Frame::Ipv4(s) = parse(&f).unwrap() else {
            panic!("not ipv4")
        };
        assert_eq!((s.l3, s.l4, s.total_len), (14, 34, 40));
        assert_eq!((s.src, s.dst), (0x0a00_0102, 0x0a00_0164));
        assert_eq!(
            (s.sport, s.dport, s.tcp_flags, s.ttl),
            (40000, 80, tcp_flags::SYN, 64)
        );
        assert_eq!(s.vlan, None);
    }

    #[test]
    fn tagged_tcp() {
        let mut f = syn();
        f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        let Frame::Ipv4(s) = parse(&f).unwrap() else {
            panic!("not ipv4")
        };
        assert_eq!((s.vlan, s.l3, s.l4), (Some(7), 18, 38));
    }

    #[test]
    fn udp() {
        let f = udp_frame(C, V, 5353, 53, b"hello");
        assert!(checksums_valid(&f));
        let Frame::Ipv4(s) = parse(&f).unwrap() else {
            panic!("not ipv4")
        };
        assert_eq!((s.proto, s.sport, s.dport), (PROTO_UDP, 5353, 53));
    }

    #[test]
    fn arp_and_other() {
        let mut f = vec![0u8; 42];
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            parse(&f),
            Ok(Frame::Arp {
                vlan: None,
                offset: 14
            })
        );
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(parse(&f), Ok(Frame::Other { ethertype: 0x86dd }));
    }

    #[test]
    fn malformed() {
        let f = syn();
        assert_eq!(parse(&f[..10]), Err(ParseError::Truncated));
        assert_eq!(parse(&f[..24]), Err(ParseError::Truncated));
        // Total length past the end of the frame.
        assert_eq!(parse(&f[..50]), Err(ParseError::Truncated));

        let mut g = f.clone();
        g[14] = 0x65; // version 6
        fix_ip_checksum(&mut g);
        assert_eq!(parse(&g), Err(ParseError::BadIpHeader));

        let mut g = f.clone();
        g[24] ^= 0xff;
        assert_eq!(parse(&g), Err(ParseError::BadIpChecksum));

        let mut g = f.clone();
        g[20] = 0x20; // MF
        fix_ip_checksum(&mut g);
        assert_eq!(parse(&g), Err(ParseError::Fragment));
        g[20] = 0x00;
        g[21] = 0x10; // offset 16
        fix_ip_checksum(&mut g);
        assert_eq!(parse(&g), Err(ParseError::Fragment));

        let mut g = f.clone();
        g[46] = 4 << 4; // TCP data offset 4
        assert_eq!(parse(&g), Err(ParseError::BadL4Header));
    }

    #[test]
    fn options_dropped() {
        let mut f = syn();
        f.splice(34..34, [1, 1, 1, 0]); // NOP NOP NOP EOL
        f[14] = 0x46;
        f[16..18].copy_from_slice(&44u16.to_be_bytes());
        fix_ip_checksum(&mut f);
        assert_eq!(parse(&f), Err(ParseError::IpOptions));
    }

    #[test]
    fn ethernet_padding_ignored() {
        let mut f = udp_frame(C, V, 1, 2, b"");
        f.resize(60, 0);
        let Frame::Ipv4(s) = parse(&f).unwrap() else {
            panic!("not ipv4")
        };
        assert_eq!(s.total_len, 28);
    }
}
