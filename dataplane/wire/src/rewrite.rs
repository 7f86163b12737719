//! In-place rewrites of a parsed IPv4 frame, with incremental checksum
//! updates (RFC 1624) so the cost does not depend on the payload size.

use crate::checksum::{self, update16};
use crate::frame::{
    ipv4_field, write_ipv4_header, Ipv4Summary, PROTO_TCP, PROTO_UDP, TCP_CHECKSUM, UDP_CHECKSUM,
};

fn get16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

fn put16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put32(f: &mut [u8], at: usize, v: u32) {
    f[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Which end of the flow a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// Replaces one end's address and port (the NAT step), updating the IPv4
/// header checksum and the TCP/UDP checksum, which covers the address
/// through the pseudo-header. A UDP checksum of zero means "none"
/// (RFC 768) and stays zero; a computed zero is sent as 0xffff.
pub fn set_endpoint(f: &mut [u8], s: &mut Ipv4Summary, end: End, addr: u32, port: u16) {
    let (ip_at, port_at, old_addr, old_port) = match end {
        End::Source => (ipv4_field::SRC, 0, s.src, s.sport),
        End::Destination => (ipv4_field::DST, 2, s.dst, s.dport),
    };
    put32(f, s.l3 + ip_at, addr);
    let ck_at = s.l3 + ipv4_field::CHECKSUM;
    let d_addr = checksum::diff32(old_addr, addr);
    put16(f, ck_at, checksum::adjust(get16(f, ck_at), d_addr));
    let l4_ck = match s.proto {
        PROTO_TCP => Some(s.l4 + TCP_CHECKSUM),
        PROTO_UDP if get16(f, s.l4 + UDP_CHECKSUM) != 0 => Some(s.l4 + UDP_CHECKSUM),
        _ => None,
    };
    // Only TCP and UDP have ports; for other protocols `port` is ignored.
    let has_ports = s.proto == PROTO_TCP || s.proto == PROTO_UDP;
    let port = if has_ports { port } else { old_port };
    if has_ports {
        put16(f, s.l4 + port_at, port);
    }
    if let Some(at) = l4_ck {
        let mut ck = checksum::adjust(get16(f, at), d_addr + checksum::diff16(old_port, port));
        if s.proto == PROTO_UDP && ck == 0 {
            ck = 0xffff;
        }
        put16(f, at, ck);
    }
    match end {
        End::Source => {
            s.src = addr;
            s.sport = port;
        }
        End::Destination => {
            s.dst = addr;
            s.dport = port;
        }
    }
}

/// Decrements the TTL as a forwarding hop must (RFC 1812 §5.3.1); the
/// caller has already dropped packets whose TTL would reach zero.
pub fn decrement_ttl(f: &mut [u8], s: &mut Ipv4Summary) {
    let at = s.l3 + ipv4_field::TTL;
    let old = get16(f, at);
    f[at] = s.ttl - 1;
    s.ttl -= 1;
    let ck_at = s.l3 + ipv4_field::CHECKSUM;
    put16(f, ck_at, update16(get16(f, ck_at), old, get16(f, at)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::fixtures::*;
    use crate::frame::{parse, Frame};
    use proptest::prelude::*;

    fn summary(f: &[u8]) -> Ipv4Summary {
        match parse(f) {
            Ok(Frame::Ipv4(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// NAT rewrites keep every checksum valid, as a full recompute would.
        #[test]
        fn nat_keeps_checksums_valid(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(),
            sport in any::<u16>(), dport in any::<u16>(),
            new_addr in any::<u32>(), new_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            udp in any::<bool>(), source in any::<bool>(),
        ) {
            let mut f = if udp {
                udp_frame(src, dst, sport, dport, &payload)
            } else {
                tcp_frame([1; 6], [2; 6], src, dst, sport, dport, 0x18, &payload)
            };
            let mut s = summary(&f);
            let end = if source { End::Source } else { End::Destination };
            set_endpoint(&mut f, &mut s, end, new_addr, new_port);
            decrement_ttl(&mut f, &mut s);
            prop_assert!(checksums_valid(&f));
            prop_assert_eq!(summary(&f), s);
        }
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut f = udp_frame([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, b"x");
        f[40..42].copy_from_slice(&[0, 0]);
        let mut s = summary(&f);
        set_endpoint(&mut f, &mut s, End::Destination, 0x0a00_0003, 9);
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(&f[36..38], &9u16.to_be_bytes());
    }
}

/// Rewrites a TCP segment in place into the RST that refuses it, as a
/// closed port answers (RFC 9293 §3.10.7.1): from the segment's
/// destination back to its source, `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`
/// for a segment without ACK, `<SEQ=SEG.ACK><CTL=RST>` otherwise. The
/// caller sets the MACs. Returns the new frame length.
pub fn tcp_reset_reply(f: &mut [u8], s: &Ipv4Summary) -> usize {
    use crate::frame::tcp_flags::{ACK, FIN, RST, SYN};
    let l4 = s.l4;
    let seq = u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]);
    let ack = u32::from_be_bytes([f[l4 + 8], f[l4 + 9], f[l4 + 10], f[l4 + 11]]);
    let doff = usize::from(f[l4 + 12] >> 4) * 4;
    let payload = usize::from(s.total_len) - (l4 - s.l3) - doff;
    let seg_len =
        payload as u32 + u32::from(s.tcp_flags & SYN != 0) + u32::from(s.tcp_flags & FIN != 0);
    let (out_seq, out_ack, flags) = if s.tcp_flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        (0, seq.wrapping_add(seg_len), RST | ACK)
    };
    let ip = s.l3;
    let total: u16 = 40;
    // DF set, as Linux sends its RSTs.
    write_ipv4_header(f, ip, 0, total, 0, 0x4000, PROTO_TCP, s.dst, s.src);
    let t = ip + 20;
    put16(f, t, s.dport);
    put16(f, t + 2, s.sport);
    put32(f, t + 4, out_seq);
    put32(f, t + 8, out_ack);
    f[t + 12] = 5 << 4;
    f[t + 13] = flags;
    f[t + 14..t + 20].copy_from_slice(&[0; 6]); // window, checksum, urgent
    let ph =
        crate::checksum::pseudo_header(s.dst.to_be_bytes(), s.src.to_be_bytes(), PROTO_TCP, 20);
    let ck = !crate::checksum::fold(crate::checksum::sum(&f[t..t + 20], ph));
    put16(f, t + TCP_CHECKSUM, ck);
    ip + usize::from(total)
}

#[cfg(test)]
mod reset_tests {
    use super::*;
    use crate::frame::fixtures::{checksums_valid, tcp_frame};
    use crate::frame::tcp_flags::{ACK, RST, SYN};
    use crate::{parse, Frame};

    fn summary(f: &[u8]) -> Ipv4Summary {
        match parse(f) {
            Ok(Frame::Ipv4(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syn_is_refused_with_rst_ack() {
        let mut f = tcp_frame(
            [1; 6],
            [2; 6],
            [10, 0, 1, 2],
            [10, 0, 1, 100],
            40000,
            80,
            SYN,
            b"",
        );
        let s = summary(&f);
        let len = tcp_reset_reply(&mut f, &s);
        f.truncate(len);
        let r = summary(&f);
        assert_eq!((r.src, r.dst, r.sport, r.dport), (s.dst, s.src, 80, 40000));
        assert_eq!(r.tcp_flags, RST | ACK);
        // The fixture's SYN has sequence number 1000: ACK = 1001.
        assert_eq!(&f[r.l4 + 8..r.l4 + 12], &1001u32.to_be_bytes());
        assert_eq!(&f[r.l4 + 4..r.l4 + 8], &[0; 4]);
        assert!(checksums_valid(&f));
    }

    #[test]
    fn ack_segment_is_refused_with_its_ack_as_sequence() {
        let mut f = tcp_frame(
            [1; 6],
            [2; 6],
            [10, 0, 1, 2],
            [10, 0, 1, 100],
            40000,
            80,
            ACK,
            b"xyz",
        );
        let l4 = 34;
        f[l4 + 8..l4 + 12].copy_from_slice(&777u32.to_be_bytes());
        let s = summary(&f);
        let len = tcp_reset_reply(&mut f, &s);
        f.truncate(len);
        let r = summary(&f);
        assert_eq!(r.tcp_flags, RST);
        assert_eq!(&f[r.l4 + 4..r.l4 + 8], &777u32.to_be_bytes());
    }
}
