//! ICMP echo messages (RFC 792), built and parsed without I/O.
//!
//! An echo request (type 8, code 0) carries an identifier, a sequence
//! number and data; the host answers with an echo reply (type 0, code 0)
//! that returns all three unchanged, under the ICMP checksum (the ones'
//! complement of the ones' complement sum of the message, RFC 1071). A
//! router or the host itself may instead answer with destination
//! unreachable (type 3) or time exceeded (type 11), which quote the IP
//! header and first 8 bytes of our request, so the identifier and sequence
//! number find the probe they end.

use std::net::Ipv4Addr;

const ECHO_REPLY: u8 = 0;
const DESTINATION_UNREACHABLE: u8 = 3;
const ECHO_REQUEST: u8 = 8;
const TIME_EXCEEDED: u8 = 11;
const PROTOCOL_ICMP: u8 = 1;

/// The RFC 1071 Internet checksum of `data`.
pub(crate) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| match pair {
            [high, low] => u32::from(u16::from_be_bytes([*high, *low])),
            [high] => u32::from(*high) << 8,
            _ => 0,
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request message (without IP header, which the kernel adds).
pub(crate) fn echo_request(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(8 + payload.len());
    message.extend_from_slice(&[ECHO_REQUEST, 0, 0, 0]);
    message.extend_from_slice(&ident.to_be_bytes());
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(payload);
    let sum = checksum(&message);
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    message
}

/// What a received ICMP packet says about our probes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received<'a> {
    /// An echo reply from `from`.
    Reply {
        from: Ipv4Addr,
        ident: u16,
        seq: u16,
        payload: &'a [u8],
    },
    /// Our echo request to `target` could not be delivered.
    Error {
        target: Ipv4Addr,
        ident: u16,
        seq: u16,
    },
}

/// An IPv4 header's source, destination, protocol and payload, if `packet`
/// starts with a well-formed one. The payload is cut at the total length
/// when the packet is longer (quoted packets may be shorter: then all that
/// is there).
fn ipv4(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    let first = *packet.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || packet.len() < header_len {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let end = total.clamp(header_len, packet.len());
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let destination = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    Some((source, destination, packet[9], &packet[header_len..end]))
}

/// Parses a packet read from a raw ICMP socket (IPv4 header included).
/// Anything that is not a valid echo reply or an error about an echo
/// request is `None`.
pub(crate) fn parse(packet: &[u8]) -> Option<Received<'_>> {
    let (source, _, protocol, message) = ipv4(packet)?;
    if protocol != PROTOCOL_ICMP || message.len() < 8 || checksum(message) != 0 {
        return None;
    }
    let ident = u16::from_be_bytes([message[4], message[5]]);
    let seq = u16::from_be_bytes([message[6], message[7]]);
    match (message[0], message[1]) {
        (ECHO_REPLY, 0) => Some(Received::Reply {
            from: source,
            ident,
            seq,
            payload: &message[8..],
        }),
        (DESTINATION_UNREACHABLE | TIME_EXCEEDED, _) => {
            let (_, target, protocol, quoted) = ipv4(&message[8..])?;
            if protocol != PROTOCOL_ICMP || quoted.len() < 8 || quoted[0] != ECHO_REQUEST {
                return None;
            }
            Some(Received::Error {
                target,
                ident: u16::from_be_bytes([quoted[4], quoted[5]]),
                seq: u16::from_be_bytes([quoted[6], quoted[7]]),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An IPv4 header (checksum left zero: the parser, like the kernel's
    /// raw socket, does not need it) followed by `payload`.
    fn ip(source: [u8; 4], destination: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let total = (20 + payload.len()) as u16;
        let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, PROTOCOL_ICMP, 0, 0];
        packet[2..4].copy_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&source);
        packet.extend_from_slice(&destination);
        packet.extend_from_slice(payload);
        packet
    }

    fn reply_to(request: &[u8]) -> Vec<u8> {
        let mut reply = request.to_vec();
        reply[0] = ECHO_REPLY;
        reply[2..4].copy_from_slice(&[0, 0]);
        let sum = checksum(&reply);
        reply[2..4].copy_from_slice(&sum.to_be_bytes());
        reply
    }

    #[test]
    fn checksum_of_rfc1071_example() {
        // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        assert_eq!(
            checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
        assert_eq!(checksum(&[0xff]), !0xff00);
    }

    #[test]
    fn request_layout() {
        let request = echo_request(0x1234, 7, b"pylon");
        assert_eq!(&request[..2], &[ECHO_REQUEST, 0]);
        assert_eq!(&request[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(&request[8..], b"pylon");
        assert_eq!(checksum(&request), 0, "a valid checksum sums to zero");
    }

    #[test]
    fn parses_a_reply() {
        let request = echo_request(0x1234, 7, b"pylon");
        let packet = ip([10, 0, 2, 11], [10, 0, 0, 1], &reply_to(&request));
        assert_eq!(
            parse(&packet),
            Some(Received::Reply {
                from: Ipv4Addr::new(10, 0, 2, 11),
                ident: 0x1234,
                seq: 7,
                payload: b"pylon",
            })
        );
    }

    #[test]
    fn ignores_requests_bad_checksums_and_other_protocols() {
        let request = echo_request(1, 1, b"x");
        assert_eq!(parse(&ip([127, 0, 0, 1], [127, 0, 0, 1], &request)), None);
        let mut reply = reply_to(&request);
        reply[8] ^= 0xff;
        assert_eq!(parse(&ip([127, 0, 0, 1], [127, 0, 0, 1], &reply)), None);
        let mut tcp = ip([127, 0, 0, 1], [127, 0, 0, 1], &reply_to(&request));
        tcp[9] = 6;
        assert_eq!(parse(&tcp), None);
    }

    #[test]
    fn parses_an_unreachable_about_our_request() {
        let request = echo_request(0xbeef, 42, b"pylon-health");
        let quoted = ip([10, 0, 0, 1], [10, 0, 9, 9], &request);
        let mut error = vec![DESTINATION_UNREACHABLE, 1, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&quoted[..28]);
        let sum = checksum(&error);
        error[2..4].copy_from_slice(&sum.to_be_bytes());
        let packet = ip([10, 0, 0, 254], [10, 0, 0, 1], &error);
        assert_eq!(
            parse(&packet),
            Some(Received::Error {
                target: Ipv4Addr::new(10, 0, 9, 9),
                ident: 0xbeef,
                seq: 42,
            })
        );
    }

    #[test]
    fn padding_after_the_total_length_is_ignored() {
        let request = echo_request(5, 6, b"abc");
        let mut packet = ip([10, 0, 2, 11], [10, 0, 0, 1], &reply_to(&request));
        packet.extend_from_slice(&[0; 10]);
        assert!(matches!(
            parse(&packet),
            Some(Received::Reply {
                payload: b"abc",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            parse(&data);
            let mut framed = ip([1, 2, 3, 4], [5, 6, 7, 8], &data);
            parse(&framed);
            if framed.len() > 28 {
                framed[20] = DESTINATION_UNREACHABLE;
                parse(&framed);
            }
        }
    }
}
