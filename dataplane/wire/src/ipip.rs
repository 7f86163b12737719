//! IP-in-IP encapsulation (RFC 2003) and the ICMP "fragmentation needed"
//! answer (RFC 792, RFC 1191 §4) for packets that no longer fit once
//! encapsulated.

use crate::checksum;
use crate::frame::{ipv4_field, write_ipv4_header, Ipv4Summary, PROTO_ICMP};

/// Length of the outer header: no options.
pub const OUTER_LEN: usize = 20;
/// IP protocol number of IP-in-IP (RFC 2003 §3).
pub const PROTO_IPIP: u8 = 4;
/// The DF bit in the flags/fragment-offset word.
const DF: u16 = 0x4000;
/// IPv4 header + ICMP header + quoted IPv4 header + 8 bytes (RFC 792).
const FRAG_NEEDED_LEN: usize = 20 + 8 + 20 + 8;

/// True if the packet carries the DF bit.
pub fn dont_fragment(f: &[u8], s: &Ipv4Summary) -> bool {
    u16::from_be_bytes([f[s.l3 + ipv4_field::FRAG], f[s.l3 + ipv4_field::FRAG + 1]]) & DF != 0
}

/// Encapsulates in place. The caller has grown the frame by [`OUTER_LEN`]
/// bytes at the front, so the received frame (described by `s`) now starts
/// at offset `OUTER_LEN`. The link header moves to the front and the outer
/// header follows it; TOS and DF are copied from the inner header (RFC 2003
/// §3.1). Returns the frame length without Ethernet padding.
pub fn encapsulate(f: &mut [u8], s: &Ipv4Summary, src: u32, dst: u32, id: u16) -> usize {
    let inner = OUTER_LEN + s.l3;
    f.copy_within(OUTER_LEN..inner, 0);
    let tos = f[inner + 1];
    let df =
        u16::from_be_bytes([f[inner + ipv4_field::FRAG], f[inner + ipv4_field::FRAG + 1]]) & DF;
    let total = s.total_len + OUTER_LEN as u16;
    write_ipv4_header(f, s.l3, tos, total, id, df, PROTO_IPIP, src, dst);
    s.l3 + usize::from(total)
}

/// Rewrites the frame in place into an ICMP destination-unreachable,
/// fragmentation-needed message from `from` back to the packet's source,
/// with `next_hop_mtu` (RFC 1191 §4), quoting the IP header and the first
/// 8 payload bytes (RFC 792). The caller sets the MACs. Returns the new
/// frame length, or `None` if the frame is too short to quote from (only
/// packets larger than an MTU get here, so that cannot happen in practice).
pub fn frag_needed(f: &mut [u8], s: &Ipv4Summary, from: u32, next_hop_mtu: u16) -> Option<usize> {
    let quote = s.l3 + 20 + 8;
    if f.len() < s.l3 + FRAG_NEEDED_LEN || s.l4 != s.l3 + 20 {
        return None;
    }
    f.copy_within(s.l3..s.l3 + 28, quote);
    let icmp = s.l3 + 20;
    f[icmp..icmp + 8].copy_from_slice(&[3, 4, 0, 0, 0, 0, 0, 0]);
    f[icmp + 6..icmp + 8].copy_from_slice(&next_hop_mtu.to_be_bytes());
    let ck = checksum::checksum(&f[icmp..icmp + 8 + 28]);
    f[icmp + 2..icmp + 4].copy_from_slice(&ck.to_be_bytes());
    write_ipv4_header(
        f,
        s.l3,
        0,
        FRAG_NEEDED_LEN as u16,
        0,
        0,
        PROTO_ICMP,
        from,
        s.src,
    );
    Some(s.l3 + FRAG_NEEDED_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::fixtures::{checksums_valid, tcp_frame};
    use crate::{parse, Frame};

    fn summary(f: &[u8]) -> Ipv4Summary {
        match parse(f) {
            Ok(Frame::Ipv4(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encapsulation_keeps_the_inner_packet_intact() {
        let mut inner = tcp_frame(
            [1; 6],
            [2; 6],
            [10, 0, 1, 2],
            [10, 0, 1, 100],
            4000,
            80,
            2,
            b"hello",
        );
        inner[15] = 0x10; // TOS
        crate::frame::fixtures::fix_ip_checksum(&mut inner);
        let s = summary(&inner);
        let mut f = vec![0u8; OUTER_LEN];
        f.extend_from_slice(&inner);
        f.extend_from_slice(&[0; 6]); // Ethernet padding
        let len = encapsulate(&mut f, &s, 0x0a00_0101, 0x0a00_020b, 7);
        f.truncate(len);
        assert_eq!(&f[..14], &inner[..14]);
        let outer = summary(&f);
        assert_eq!(
            (outer.proto, outer.src, outer.dst, outer.ttl),
            (PROTO_IPIP, 0x0a00_0101, 0x0a00_020b, 64)
        );
        assert_eq!(usize::from(outer.total_len), inner.len() - 14 + 20);
        assert_eq!(f[15], 0x10, "TOS copied");
        assert!(dont_fragment(&f, &outer), "DF copied");
        assert_eq!(&f[34..], &inner[14..], "inner packet unchanged");
        assert!(checksums_valid(&inner));
    }

    #[test]
    fn frag_needed_quotes_the_header() {
        let payload = vec![0xab; 1460];
        let mut f = tcp_frame(
            [1; 6],
            [2; 6],
            [10, 0, 1, 2],
            [10, 0, 1, 100],
            4000,
            80,
            2,
            &payload,
        );
        let orig = f.clone();
        let s = summary(&f);
        let len = frag_needed(&mut f, &s, 0x0a00_0164, 1480).unwrap();
        f.truncate(len);
        let r = summary(&f);
        assert_eq!(
            (r.proto, r.src, r.dst),
            (PROTO_ICMP, 0x0a00_0164, 0x0a00_0102)
        );
        assert_eq!((r.icmp_type, r.icmp_code), (3, 4));
        assert_eq!(&f[r.l4 + 6..r.l4 + 8], &1480u16.to_be_bytes());
        assert_eq!(&f[r.l4 + 8..], &orig[14..14 + 28]);
        assert_eq!(checksum::fold(checksum::sum(&f[r.l4..], 0)), 0xffff);
        assert_eq!(frag_needed(&mut [0u8; 40], &s, 1, 1), None);
    }
}
