//! The benchmark network's addresses, and the frames the generator sends
//! and checks: 60-byte Ethernet + IPv4 + TCP/UDP frames whose payload names
//! the flow and the step they belong to.

use pylon_wire::checksum;
use pylon_wire::frame::tcp_flags::{ACK, FIN, SYN};
use pylon_wire::{parse, Frame};

use super::flows::{self, Proto};

/// Every generated frame is 60 bytes (the Ethernet minimum without FCS), so
/// the rates are minimum-size packet rates.
pub const FRAME_LEN: usize = 60;
const ETH: usize = 14;
const IP_TOTAL: u16 = (FRAME_LEN - ETH) as u16;
/// TTL of every generated packet.
pub const TTL: u8 = 64;

/// The MACs Pylon's ports have in the published snapshot (client side,
/// server side). Ring ports have no MAC of their own worth the name (all
/// zero), and do not filter, so the snapshot gives them distinct ones.
pub const WORKER_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0, 0x01], [0x02, 0, 0, 0, 0, 0x02]];
/// Pylon's client-side port (the worker's port 0) and its router to the
/// clients, which the generator plays.
pub const CLIENT_PORT_ADDR: u32 = ip(10, 0, 1, 1);
pub const ROUTER_IP: u32 = ip(10, 0, 1, 254);
pub const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0xfe];
/// Pylon's server-side port (the worker's port 1).
pub const SERVER_PORT_ADDR: u32 = ip(10, 0, 2, 1);
/// Both ports are /24s.
pub const MASK: u32 = 0xffff_ff00;
/// The TCP service: VIP:80, wlc over the three real servers.
pub const TCP_VIP: u32 = ip(10, 0, 1, 100);
pub const TCP_VPORT: u16 = 80;
/// The UDP service: VIP:53, wrr over the same three real servers.
pub const UDP_VIP: u32 = ip(10, 0, 1, 101);
pub const UDP_VPORT: u16 = 53;
/// The real servers (the generator plays them too), their MACs and
/// weights.
pub const SERVERS: [u32; 3] = [ip(10, 0, 2, 11), ip(10, 0, 2, 12), ip(10, 0, 2, 13)];
pub const SERVER_MACS: [[u8; 6]; 3] = [
    [0x02, 0, 0, 0, 0x02, 11],
    [0x02, 0, 0, 0, 0x02, 12],
    [0x02, 0, 0, 0, 0x02, 13],
];
pub const WEIGHTS: [u32; 3] = [1, 2, 3];
/// The real servers' ports with NAT (TCP, UDP); with direct routing they
/// listen on the virtual ports.
pub const NAT_TCP_PORT: u16 = 8080;
pub const NAT_UDP_PORT: u16 = 5353;

const fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
    u32::from_be_bytes([a, b, c, d])
}

/// The VIP and virtual port of a flow's service.
pub fn service(proto: Proto) -> (u32, u16) {
    match proto {
        Proto::Tcp => (TCP_VIP, TCP_VPORT),
        Proto::Udp => (UDP_VIP, UDP_VPORT),
    }
}

/// The real servers' port for a flow's service with NAT.
pub fn nat_port(proto: Proto) -> u16 {
    match proto {
        Proto::Tcp => NAT_TCP_PORT,
        Proto::Udp => NAT_UDP_PORT,
    }
}

/// One packet of a flow's life. On a UDP flow every step is a datagram,
/// from the client or from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Client SYN.
    Open,
    /// Server SYN-ACK.
    OpenReply,
    /// Client ACK completing the handshake.
    Ack,
    /// Client data (PSH-ACK).
    Data,
    /// Server data (PSH-ACK).
    DataReply,
    /// Client FIN-ACK.
    Fin,
    /// Server FIN-ACK.
    FinReply,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Open,
        Step::OpenReply,
        Step::Ack,
        Step::Data,
        Step::DataReply,
        Step::Fin,
        Step::FinReply,
    ];

    /// Whether the real server sends it (it then enters Pylon on the
    /// server-side port).
    pub fn from_server(self) -> bool {
        matches!(self, Step::OpenReply | Step::DataReply | Step::FinReply)
    }

    /// The TCP flags of the step.
    pub fn tcp_flags(self) -> u8 {
        const PSH: u8 = 0x08;
        match self {
            Step::Open => SYN,
            Step::OpenReply => SYN | ACK,
            Step::Ack => ACK,
            Step::Data | Step::DataReply => PSH | ACK,
            Step::Fin | Step::FinReply => FIN | ACK,
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Option<Step> {
        Step::ALL.get(usize::from(code)).copied()
    }
}

/// The addresses of one generated packet.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

/// The packet of `step` on `flow`: client -> VIP as the client sends it,
/// or real server -> client as a real server answers (`server` is its
/// index; `nat`: from the server's NAT port rather than the virtual port).
pub fn packet(flow: u32, step: Step, server: usize, nat: bool) -> Packet {
    let proto = flows::proto(flow);
    let (cip, cport) = flows::client(flow);
    let (vip, vport) = service(proto);
    if step.from_server() {
        let s = server.min(SERVERS.len() - 1);
        Packet {
            dst_mac: WORKER_MACS[1],
            src_mac: SERVER_MACS[s],
            src: SERVERS[s],
            dst: cip,
            sport: if nat { nat_port(proto) } else { vport },
            dport: cport,
        }
    } else {
        Packet {
            dst_mac: WORKER_MACS[0],
            src_mac: ROUTER_MAC,
            src: cip,
            dst: vip,
            sport: cport,
            dport: vport,
        }
    }
}

/// Writes the 60-byte frame of `step` on a `proto` flow numbered `flow`
/// with these addresses into `frame` (which must be [`FRAME_LEN`] long),
/// checksums computed from scratch. The payload starts with the flow
/// number and the step. [`Templates`] are built with it and give the same
/// bytes with a fraction of the work.
fn build(frame: &mut [u8], proto: Proto, flow: u32, step: Step, p: &Packet) {
    frame[0..6].copy_from_slice(&p.dst_mac);
    frame[6..12].copy_from_slice(&p.src_mac);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    let src = p.src.to_be_bytes();
    let dst = p.dst.to_be_bytes();
    let ip = &mut frame[ETH..ETH + 20];
    ip[0..12].copy_from_slice(&[
        0x45,
        0,
        (IP_TOTAL >> 8) as u8,
        IP_TOTAL as u8,
        0,
        0,
        0x40, // DF
        0,
        TTL,
        proto.number(),
        0,
        0,
    ]);
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let ck = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&ck.to_be_bytes());

    let l4 = &mut frame[ETH + 20..];
    l4[0..2].copy_from_slice(&p.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&p.dport.to_be_bytes());
    let payload_at = match proto {
        Proto::Tcp => {
            let flags = step.tcp_flags();
            let ack = if flags & ACK != 0 { 1u32 } else { 0 };
            l4[4..8].copy_from_slice(&1u32.to_be_bytes());
            l4[8..12].copy_from_slice(&ack.to_be_bytes());
            l4[12..20].copy_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
            20
        }
        Proto::Udp => {
            let len = l4.len() as u16;
            l4[4..8].copy_from_slice(&[(len >> 8) as u8, len as u8, 0, 0]);
            8
        }
    };
    let payload = &mut l4[payload_at..];
    payload[0..4].copy_from_slice(&flow.to_be_bytes());
    payload[4] = step.code();
    payload[5..].fill(0);
    let pseudo = checksum::pseudo_header(src, dst, proto.number(), l4.len() as u16);
    let mut ck = !checksum::fold(checksum::sum(l4, pseudo));
    if proto == Proto::Udp && ck == 0 {
        // RFC 768: a computed zero is sent as all ones.
        ck = 0xffff;
    }
    let at = if proto == Proto::Tcp { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&ck.to_be_bytes());
}

/// Every frame the generator sends, prebuilt per protocol and step with
/// zero addresses, ports and flow, and the checksum sums of their constant
/// parts: writing a frame is a copy, a few stores and two folds.
pub struct Templates {
    frames: [[Template; Step::ALL.len()]; 2],
}

#[derive(Clone, Copy)]
struct Template {
    bytes: [u8; FRAME_LEN],
    /// One's-complement sums of the IPv4 header and of the TCP/UDP
    /// segment with its pseudo-header, all variable fields zero.
    ip_sum: u32,
    l4_sum: u32,
    udp: bool,
}

/// Where the flow number sits: the payload's first bytes.
const TCP_FLOW_AT: usize = ETH + 20 + 20;
const UDP_FLOW_AT: usize = ETH + 20 + 8;

impl Templates {
    pub fn new() -> Templates {
        let zero = Packet {
            dst_mac: [0; 6],
            src_mac: [0; 6],
            src: 0,
            dst: 0,
            sport: 0,
            dport: 0,
        };
        let template = |proto: Proto, step: Step| {
            let mut bytes = [0u8; FRAME_LEN];
            build(&mut bytes, proto, 0, step, &zero);
            let udp = proto == Proto::Udp;
            bytes[ETH + 10..ETH + 12].fill(0);
            let ck_at = if udp { ETH + 26 } else { ETH + 36 };
            bytes[ck_at..ck_at + 2].fill(0);
            let l4 = &bytes[ETH + 20..];
            let pseudo = checksum::pseudo_header([0; 4], [0; 4], proto.number(), l4.len() as u16);
            Template {
                ip_sum: checksum::sum(&bytes[ETH..ETH + 20], 0),
                l4_sum: checksum::sum(l4, pseudo),
                bytes,
                udp,
            }
        };
        Templates {
            frames: [Proto::Tcp, Proto::Udp]
                .map(|proto| Step::ALL.map(|step| template(proto, step))),
        }
    }

    /// Writes the 60-byte frame of `step` on `flow` with these addresses
    /// into `frame` (which must be [`FRAME_LEN`] long), checksums included;
    /// the payload starts with the flow number and the step.
    pub fn write(&self, frame: &mut [u8], flow: u32, step: Step, p: &Packet) {
        let t =
            &self.frames[usize::from(flows::proto(flow) == Proto::Udp)][usize::from(step.code())];
        frame.copy_from_slice(&t.bytes);
        frame[0..6].copy_from_slice(&p.dst_mac);
        frame[6..12].copy_from_slice(&p.src_mac);
        frame[ETH + 12..ETH + 16].copy_from_slice(&p.src.to_be_bytes());
        frame[ETH + 16..ETH + 20].copy_from_slice(&p.dst.to_be_bytes());
        frame[ETH + 20..ETH + 22].copy_from_slice(&p.sport.to_be_bytes());
        frame[ETH + 22..ETH + 24].copy_from_slice(&p.dport.to_be_bytes());
        let flow_at = if t.udp { UDP_FLOW_AT } else { TCP_FLOW_AT };
        frame[flow_at..flow_at + 4].copy_from_slice(&flow.to_be_bytes());
        let words = |v: u32| (v >> 16) + (v & 0xffff);
        let addresses = words(p.src) + words(p.dst);
        let ip_ck = !checksum::fold(t.ip_sum + addresses);
        frame[ETH + 10..ETH + 12].copy_from_slice(&ip_ck.to_be_bytes());
        let l4 = t.l4_sum + addresses + u32::from(p.sport) + u32::from(p.dport) + words(flow);
        let mut l4_ck = !checksum::fold(l4);
        let ck_at = if t.udp {
            // RFC 768: a computed zero is sent as all ones.
            if l4_ck == 0 {
                l4_ck = 0xffff;
            }
            ETH + 26
        } else {
            ETH + 36
        };
        frame[ck_at..ck_at + 2].copy_from_slice(&l4_ck.to_be_bytes());
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

/// What the generator reads from every received frame without checking
/// it: the IPv4 addresses and ports at their fixed offsets (the generator
/// sends no options and no VLAN tags, and Pylon adds none), and the
/// destination MAC. `None` for a frame too short to hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub dst_mac: [u8; 6],
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

pub fn addresses(frame: &[u8]) -> Option<Addresses> {
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(frame.get(at..at + 4)?.try_into().ok()?))
    };
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?))
    };
    Some(Addresses {
        dst_mac: frame.get(0..6)?.try_into().ok()?,
        src: be32(26)?,
        dst: be32(30)?,
        sport: be16(34)?,
        dport: be16(36)?,
    })
}

/// What a full check established about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    pub src_mac: [u8; 6],
    pub ttl: u8,
    /// The flow and step the payload names.
    pub flow: u32,
    pub step: Step,
}

/// Checks everything about a received frame that does not depend on the
/// forwarding mode: length, a valid IPv4 header and header checksum (via
/// Pylon's own parser), protocol, TCP/UDP checksum, the payload's flow and
/// step, and the TCP flags of that step.
pub fn check(frame: &[u8]) -> Result<Checked, String> {
    if frame.len() != FRAME_LEN {
        return Err(format!("frame of {} bytes", frame.len()));
    }
    let s = match parse(frame) {
        Ok(Frame::Ipv4(s)) => s,
        other => return Err(format!("not a valid IPv4 frame: {other:?}")),
    };
    if s.l3 != ETH || s.total_len != IP_TOTAL || s.vlan.is_some() {
        return Err(format!("unexpected IPv4 layout {s:?}"));
    }
    let l4 = &frame[s.l4..];
    let src = s.src.to_be_bytes();
    let dst = s.dst.to_be_bytes();
    let pseudo = checksum::pseudo_header(src, dst, s.proto, l4.len() as u16);
    if checksum::fold(checksum::sum(l4, pseudo)) != 0xffff {
        return Err("bad TCP/UDP checksum".into());
    }
    // l4 is 26 bytes: TCP 20 + 6 payload bytes, UDP 8 + 18.
    let (payload, flags) = match s.proto {
        6 if l4[12] >> 4 == 5 => (&l4[20..], Some(s.tcp_flags)),
        6 => return Err(format!("TCP data offset {}", l4[12] >> 4)),
        17 if l4[6..8] != [0, 0] => (&l4[8..], None),
        17 => return Err("UDP checksum removed".into()),
        p => return Err(format!("protocol {p}")),
    };
    let flow = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
    let step = Step::from_code(payload[4]).ok_or_else(|| format!("step code {}", payload[4]))?;
    if flows::proto(flow).number() != s.proto {
        return Err(format!("flow {flow} carried over protocol {}", s.proto));
    }
    if flags.is_some_and(|f| f != step.tcp_flags()) {
        return Err(format!("TCP flags {flags:?} on a {step:?} segment"));
    }
    if flow >= flows::MAX_FLOWS {
        return Err(format!("payload names flow {flow}"));
    }
    let mut src_mac = [0; 6];
    src_mac.copy_from_slice(&frame[6..12]);
    Ok(Checked {
        src_mac,
        ttl: s.ttl,
        flow,
        step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_frames_check() {
        for flow in [0, 7, 70_000, 10_000_007] {
            for step in Step::ALL {
                let p = packet(flow, step, 1, true);
                let mut frame = [0u8; FRAME_LEN];
                build(&mut frame, flows::proto(flow), flow, step, &p);
                let c = check(&frame).unwrap_or_else(|e| panic!("{flow} {step:?}: {e}"));
                assert_eq!((c.flow, c.step, c.ttl), (flow, step, TTL));
                let a = addresses(&frame).expect("addresses");
                assert_eq!(
                    (a.src, a.dst, a.sport, a.dport),
                    (p.src, p.dst, p.sport, p.dport)
                );
                assert!(pylon_wire::frame::fixtures::checksums_valid(&frame));
            }
        }
    }

    #[test]
    fn templates_write_what_build_writes() {
        let templates = Templates::new();
        for flow in [0, 1, 7, 15, 64_511, 64_519, 9_999_999, flows::MAX_FLOWS - 1] {
            for step in Step::ALL {
                for server in 0..3 {
                    let p = packet(flow, step, server, server != 1);
                    let mut reference = [0u8; FRAME_LEN];
                    build(&mut reference, flows::proto(flow), flow, step, &p);
                    let mut fast = [0xaau8; FRAME_LEN];
                    templates.write(&mut fast, flow, step, &p);
                    assert_eq!(fast, reference, "flow {flow} {step:?} rs{}", server + 1);
                }
            }
        }
    }

    #[test]
    fn corruption_is_caught() {
        let p = packet(3, Step::Data, 0, true);
        let mut frame = [0u8; FRAME_LEN];
        Templates::new().write(&mut frame, 3, Step::Data, &p);
        let mut bad = frame;
        bad[55] ^= 1; // payload
        assert!(check(&bad).unwrap_err().contains("checksum"));
        let mut bad = frame;
        bad[22] = 63; // TTL without fixing the header checksum
        assert!(check(&bad).is_err());
        assert!(check(&frame[..59]).is_err());
    }
}
