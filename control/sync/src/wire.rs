//! The sync datagram, byte by byte (`control/sync/PROTOCOL.md` is the
//! reference; this module is its executable form).
//!
//! ```text
//! 0      4    5    6         8              16             24        24+len   +32
//! +------+----+----+---------+--------------+--------------+---------+--------+
//! |"PYSY"|ver |type|body len | session (u64)| sequence(u64)|  body   |  HMAC  |
//! +------+----+----+---------+--------------+--------------+---------+--------+
//! ```
//!
//! Every integer is big-endian (network order). The HMAC-SHA256 covers the
//! header and the body. Decoding never panics: every length is checked
//! before a byte is read, and any inconsistency is a [`Reject`].

use hmac::{Hmac, Mac};
use pylon_conntrack::State;
use sha2::Sha256;

/// The first four bytes of every sync datagram.
pub const MAGIC: [u8; 4] = *b"PYSY";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Fixed header: magic, version, type, body length, session, sequence.
pub const HEADER_LEN: usize = 24;
/// HMAC-SHA256 tag at the end of every datagram.
pub const MAC_LEN: usize = 32;
/// One connection on the wire.
pub const ENTRY_LEN: usize = 26;
/// Largest datagram sent: a 1500-byte MTU minus the IPv4 and UDP headers,
/// so a sync datagram is never fragmented on an Ethernet management link.
pub const MAX_DATAGRAM: usize = 1472;
/// Body bytes before the entries of an `Updates` message.
const UPDATES_HEAD: usize = 4;
/// Body bytes before the entries of a `FullChunk` message.
const CHUNK_HEAD: usize = 12;
/// Connections per `Updates` datagram (54 at the 1472-byte limit).
pub const MAX_UPDATES: usize = (MAX_DATAGRAM - HEADER_LEN - MAC_LEN - UPDATES_HEAD) / ENTRY_LEN;
/// Connections per `FullChunk` datagram (54 at the 1472-byte limit).
pub const MAX_CHUNK: usize = (MAX_DATAGRAM - HEADER_LEN - MAC_LEN - CHUNK_HEAD) / ENTRY_LEN;
/// Bytes of a configuration digest (SHA-256).
pub const DIGEST_LEN: usize = 32;
/// ConfigPush body before the text: push, index, count, length, padding,
/// digest.
const PUSH_HEAD: usize = 12 + DIGEST_LEN;
/// Text bytes per ConfigPush datagram.
pub const MAX_PUSH_TEXT: usize = MAX_DATAGRAM - HEADER_LEN - MAC_LEN - PUSH_HEAD;

type HmacSha256 = Hmac<Sha256>;

/// Why a received datagram was dropped. Every reason is a counter in the
/// stats dump under [`Reject::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    /// Shorter than a header and a MAC, or its length disagrees with the
    /// body length in its header, or a body shorter than its type needs.
    #[error("truncated datagram")]
    Truncated,
    /// Not a sync datagram (magic) or a version this build does not speak.
    #[error("not a sync datagram of version 1")]
    BadVersion,
    /// The HMAC does not match: forged, corrupted, or another key.
    #[error("bad HMAC")]
    BadMac,
    /// Authentic, but an unknown message type or an impossible field (a
    /// state, mode or kind this version does not define).
    #[error("malformed message")]
    Malformed,
    /// From an address that is not a configured peer.
    #[error("not from a configured peer")]
    UnknownPeer,
    /// From a session this receiver has not adopted (the sender restarted,
    /// or an old session is replayed); answered with a resync request.
    #[error("unknown session")]
    UnknownSession,
    /// A sequence number already received, or older than the window.
    #[error("replayed sequence number")]
    Replay,
    /// Older than the newest received and not seen yet: it arrived after a
    /// later datagram, whose gap already triggered a resync.
    #[error("out-of-order sequence number")]
    OutOfOrder,
}

impl Reject {
    /// Every reason, in the order of the stats dump.
    pub const ALL: [Reject; 8] = [
        Reject::Truncated,
        Reject::BadVersion,
        Reject::BadMac,
        Reject::Malformed,
        Reject::UnknownPeer,
        Reject::UnknownSession,
        Reject::Replay,
        Reject::OutOfOrder,
    ];

    /// Stable snake_case name (stats JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::BadVersion => "bad_version",
            Reject::BadMac => "bad_mac",
            Reject::Malformed => "malformed",
            Reject::UnknownPeer => "unknown_peer",
            Reject::UnknownSession => "unknown_session",
            Reject::Replay => "replay",
            Reject::OutOfOrder => "out_of_order",
        }
    }

    /// Index into a counter array ordered as [`Reject::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a service reaches its real servers, as ipvsadm's `-m`, `-g`, `-i`
/// (IPVS syncs them as `IP_VS_CONN_F_MASQ`, `_DROUTE`, `_TUNNEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Nat = 0,
    Dsr = 1,
    Tunnel = 2,
}

impl Mode {
    fn from_u8(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Nat),
            1 => Some(Mode::Dsr),
            2 => Some(Mode::Tunnel),
            _ => None,
        }
    }
}

/// What an entry tells the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A row of a full table transfer.
    Snapshot = 0,
    /// A connection the sender just created.
    New = 1,
    /// Its state changed.
    State = 2,
    /// Still in use: restart its idle timer (periodic refresh).
    Refresh = 3,
    /// It expired: remove it.
    Expire = 4,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Snapshot),
            1 => Some(Kind::New),
            2 => Some(Kind::State),
            3 => Some(Kind::Refresh),
            4 => Some(Kind::Expire),
            _ => None,
        }
    }
}

/// One connection as synced: everything that identifies it on any
/// appliance, and nothing local to the sender (no service index, no server
/// id: the receiver maps (VIP, vport, proto) to its own service and
/// (RIP, rport) to its own server, as IPVS's `ip_vs_proc_conn` looks the
/// destination up by address). Addresses are IPv4 in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    pub client_ip: u32,
    pub client_port: u16,
    pub vip: u32,
    pub vport: u16,
    pub rip: u32,
    pub rport: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub state: State,
    pub mode: Mode,
    pub kind: Kind,
    /// Milliseconds since the sender last saw a packet of it: the receiver
    /// starts its timer that far in the past, so both expire together.
    pub idle_ms: u32,
}

/// (client ip, client port, proto, VIP, vport): what makes a connection
/// unique in a table (the key of `Table::lookup_forward`).
pub type ConnKey = (u32, u16, u8, u32, u16);

impl SyncConn {
    pub fn key(&self) -> ConnKey {
        (
            self.client_ip,
            self.client_port,
            self.proto,
            self.vip,
            self.vport,
        )
    }

    fn write(&self, b: &mut [u8]) {
        b[0..4].copy_from_slice(&self.client_ip.to_be_bytes());
        b[4..6].copy_from_slice(&self.client_port.to_be_bytes());
        b[6..10].copy_from_slice(&self.vip.to_be_bytes());
        b[10..12].copy_from_slice(&self.vport.to_be_bytes());
        b[12..16].copy_from_slice(&self.rip.to_be_bytes());
        b[16..18].copy_from_slice(&self.rport.to_be_bytes());
        b[18] = self.proto;
        b[19] = self.state as u8;
        b[20] = self.mode as u8;
        b[21] = self.kind as u8;
        b[22..26].copy_from_slice(&self.idle_ms.to_be_bytes());
    }

    /// `b` is exactly [`ENTRY_LEN`] bytes.
    fn read(b: &[u8]) -> Option<SyncConn> {
        let mut r = Reader(b);
        let conn = SyncConn {
            client_ip: r.u32()?,
            client_port: r.u16()?,
            vip: r.u32()?,
            vport: r.u16()?,
            rip: r.u32()?,
            rport: r.u16()?,
            proto: r.u8()?,
            state: State::try_from(r.u8()?).ok()?,
            mode: Mode::from_u8(r.u8()?)?,
            kind: Kind::from_u8(r.u8()?)?,
            idle_ms: r.u32()?,
        };
        // TCP has TCP states and UDP only `Udp`: anything else is no
        // connection either side could have made.
        let consistent = match conn.proto {
            6 => conn.state != State::Udp,
            17 => conn.state == State::Udp,
            _ => false,
        };
        consistent.then_some(conn)
    }
}

/// Why a resync is requested (informational, logged by the sender).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResyncReason {
    /// The receiver just started, or has no session from this peer.
    Startup = 0,
    /// A gap in the sequence numbers: datagrams were lost.
    Gap = 1,
    /// A message from a session it has not adopted (the peer restarted).
    NewSession = 2,
    /// An incoming transfer stalled.
    Stalled = 3,
}

impl ResyncReason {
    fn from_u8(b: u8) -> Option<ResyncReason> {
        match b {
            0 => Some(ResyncReason::Startup),
            1 => Some(ResyncReason::Gap),
            2 => Some(ResyncReason::NewSession),
            3 => Some(ResyncReason::Stalled),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ResyncReason::Startup => "startup",
            ResyncReason::Gap => "gap",
            ResyncReason::NewSession => "new_session",
            ResyncReason::Stalled => "stalled",
        }
    }
}

/// A configuration digest and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// SHA-256 of the canonical service list ([`crate::digest`]).
    pub hash: [u8; DIGEST_LEN],
    pub services: u16,
    pub servers: u16,
}

/// The message types and their bodies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Type 1: connection changes, batched.
    Updates(Vec<SyncConn>),
    /// Type 2: a full table transfer begins, answering the resync request
    /// that carried `nonce`; `entries` rows follow in chunks.
    FullStart {
        nonce: u64,
        transfer: u32,
        entries: u32,
    },
    /// Type 3: rows `chunk * MAX_CHUNK ..` of a transfer.
    FullChunk {
        transfer: u32,
        chunk: u32,
        conns: Vec<SyncConn>,
    },
    /// Type 4: the transfer is complete after `chunks` chunks.
    FullEnd {
        transfer: u32,
        chunks: u32,
        entries: u32,
    },
    /// Type 5: send me your whole table; echo `nonce` in the FullStart.
    ResyncRequest { nonce: u64, reason: ResyncReason },
    /// Type 6: the sender's running configuration, as a digest.
    ConfigDigest(Digest),
    /// Type 7: part `index` of `count` of the sender's running services as
    /// the digest's canonical text, whose SHA-256 is `digest`; sent to a
    /// peer whose digest differs, when `push_config` is on.
    ConfigPush {
        push: u32,
        index: u16,
        count: u16,
        digest: [u8; DIGEST_LEN],
        text: Vec<u8>,
    },
}

impl Message {
    fn type_byte(&self) -> u8 {
        match self {
            Message::Updates(_) => 1,
            Message::FullStart { .. } => 2,
            Message::FullChunk { .. } => 3,
            Message::FullEnd { .. } => 4,
            Message::ResyncRequest { .. } => 5,
            Message::ConfigDigest(_) => 6,
            Message::ConfigPush { .. } => 7,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Message::Updates(c) => UPDATES_HEAD + c.len() * ENTRY_LEN,
            Message::FullStart { .. } => 16,
            Message::FullChunk { conns, .. } => CHUNK_HEAD + conns.len() * ENTRY_LEN,
            Message::FullEnd { .. } => 12,
            Message::ResyncRequest { .. } => 12,
            Message::ConfigDigest(_) => DIGEST_LEN + 4,
            Message::ConfigPush { text, .. } => PUSH_HEAD + text.len(),
        }
    }

    fn write_body(&self, b: &mut [u8]) {
        match self {
            Message::Updates(conns) => {
                // Callers keep batches within MAX_UPDATES (< 2^16).
                b[0..2].copy_from_slice(&(conns.len() as u16).to_be_bytes());
                b[2..4].fill(0);
                write_entries(&mut b[UPDATES_HEAD..], conns);
            }
            Message::FullStart {
                nonce,
                transfer,
                entries,
            } => {
                b[0..8].copy_from_slice(&nonce.to_be_bytes());
                b[8..12].copy_from_slice(&transfer.to_be_bytes());
                b[12..16].copy_from_slice(&entries.to_be_bytes());
            }
            Message::FullChunk {
                transfer,
                chunk,
                conns,
            } => {
                b[0..4].copy_from_slice(&transfer.to_be_bytes());
                b[4..8].copy_from_slice(&chunk.to_be_bytes());
                b[8..10].copy_from_slice(&(conns.len() as u16).to_be_bytes());
                b[10..12].fill(0);
                write_entries(&mut b[CHUNK_HEAD..], conns);
            }
            Message::FullEnd {
                transfer,
                chunks,
                entries,
            } => {
                b[0..4].copy_from_slice(&transfer.to_be_bytes());
                b[4..8].copy_from_slice(&chunks.to_be_bytes());
                b[8..12].copy_from_slice(&entries.to_be_bytes());
            }
            Message::ResyncRequest { nonce, reason } => {
                b[0..8].copy_from_slice(&nonce.to_be_bytes());
                b[8] = *reason as u8;
                b[9..12].fill(0);
            }
            Message::ConfigDigest(d) => {
                b[0..DIGEST_LEN].copy_from_slice(&d.hash);
                b[DIGEST_LEN..DIGEST_LEN + 2].copy_from_slice(&d.services.to_be_bytes());
                b[DIGEST_LEN + 2..DIGEST_LEN + 4].copy_from_slice(&d.servers.to_be_bytes());
            }
            Message::ConfigPush {
                push,
                index,
                count,
                digest,
                text,
            } => {
                b[0..4].copy_from_slice(&push.to_be_bytes());
                b[4..6].copy_from_slice(&index.to_be_bytes());
                b[6..8].copy_from_slice(&count.to_be_bytes());
                // Callers keep parts within MAX_PUSH_TEXT (< 2^16).
                b[8..10].copy_from_slice(&(text.len() as u16).to_be_bytes());
                b[10..12].fill(0);
                b[12..PUSH_HEAD].copy_from_slice(digest);
                b[PUSH_HEAD..].copy_from_slice(text);
            }
        }
    }

    fn read_body(ty: u8, b: &[u8]) -> Result<Message, Reject> {
        let mut r = Reader(b);
        let msg = match ty {
            1 => {
                let n = usize::from(r.u16().ok_or(Reject::Truncated)?);
                r.skip(2).ok_or(Reject::Truncated)?;
                Message::Updates(read_entries(r.0, n)?)
            }
            2 => Message::FullStart {
                nonce: r.u64().ok_or(Reject::Truncated)?,
                transfer: r.u32().ok_or(Reject::Truncated)?,
                entries: r.u32().ok_or(Reject::Truncated)?,
            },
            3 => {
                let transfer = r.u32().ok_or(Reject::Truncated)?;
                let chunk = r.u32().ok_or(Reject::Truncated)?;
                let n = usize::from(r.u16().ok_or(Reject::Truncated)?);
                r.skip(2).ok_or(Reject::Truncated)?;
                Message::FullChunk {
                    transfer,
                    chunk,
                    conns: read_entries(r.0, n)?,
                }
            }
            4 => Message::FullEnd {
                transfer: r.u32().ok_or(Reject::Truncated)?,
                chunks: r.u32().ok_or(Reject::Truncated)?,
                entries: r.u32().ok_or(Reject::Truncated)?,
            },
            5 => {
                let nonce = r.u64().ok_or(Reject::Truncated)?;
                let reason = r.u8().ok_or(Reject::Truncated)?;
                r.skip(3).ok_or(Reject::Truncated)?;
                Message::ResyncRequest {
                    nonce,
                    reason: ResyncReason::from_u8(reason).ok_or(Reject::Malformed)?,
                }
            }
            6 => {
                let hash = r.bytes::<DIGEST_LEN>().ok_or(Reject::Truncated)?;
                Message::ConfigDigest(Digest {
                    hash,
                    services: r.u16().ok_or(Reject::Truncated)?,
                    servers: r.u16().ok_or(Reject::Truncated)?,
                })
            }
            7 => {
                let push = r.u32().ok_or(Reject::Truncated)?;
                let index = r.u16().ok_or(Reject::Truncated)?;
                let count = r.u16().ok_or(Reject::Truncated)?;
                let len = usize::from(r.u16().ok_or(Reject::Truncated)?);
                r.skip(2).ok_or(Reject::Truncated)?;
                let digest = r.bytes::<DIGEST_LEN>().ok_or(Reject::Truncated)?;
                if r.0.len() < len {
                    return Err(Reject::Truncated);
                }
                if r.0.len() > len || count == 0 || index >= count {
                    return Err(Reject::Malformed);
                }
                let text = std::mem::take(&mut r.0).to_vec();
                Message::ConfigPush {
                    push,
                    index,
                    count,
                    digest,
                    text,
                }
            }
            _ => return Err(Reject::Malformed),
        };
        // Fixed-size bodies must be exactly their size.
        if !r.0.is_empty() && !matches!(ty, 1 | 3) {
            return Err(Reject::Malformed);
        }
        Ok(msg)
    }
}

fn write_entries(b: &mut [u8], conns: &[SyncConn]) {
    for (c, out) in conns.iter().zip(b.chunks_exact_mut(ENTRY_LEN)) {
        c.write(out);
    }
}

/// Exactly `n` entries filling `b`: fewer bytes is truncation, more is
/// malformed.
fn read_entries(b: &[u8], n: usize) -> Result<Vec<SyncConn>, Reject> {
    let need = n * ENTRY_LEN;
    if b.len() < need {
        return Err(Reject::Truncated);
    }
    if b.len() > need {
        return Err(Reject::Malformed);
    }
    b.chunks_exact(ENTRY_LEN)
        .map(|e| SyncConn::read(e).ok_or(Reject::Malformed))
        .collect()
}

/// A bounds-checked big-endian reader.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.0 = self.0.get(n..)?;
        Some(())
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_be_bytes)
    }
}

/// The shared secret of the appliances, keying HMAC-SHA256 (RFC 2104).
#[derive(Clone)]
pub struct Key(HmacSha256);

/// Keys shorter than this are refused: HMAC-SHA256 wants at least the
/// hash's half (RFC 2104 §3 recommends the output length, 32 bytes).
pub const MIN_KEY_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the sync key has {0} bytes; at least 16 are needed")]
pub struct ShortKey(pub usize);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub fn new(secret: &[u8]) -> Result<Key, ShortKey> {
        if secret.len() < MIN_KEY_LEN {
            return Err(ShortKey(secret.len()));
        }
        // HMAC takes keys of any length; only the length check can fail.
        HmacSha256::new_from_slice(secret)
            .map(Key)
            .map_err(|_| ShortKey(secret.len()))
    }

    fn tag(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.0.clone();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Constant-time comparison (`Mac::verify_slice`).
    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut m = self.0.clone();
        m.update(data);
        m.verify_slice(tag).is_ok()
    }
}

/// The header fields a receiver checks against its session state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub session: u64,
    pub seq: u64,
}

/// Builds a complete datagram: header, body, HMAC.
pub fn encode(key: &Key, header: Header, msg: &Message) -> Vec<u8> {
    let body_len = msg.body_len();
    let mut out = vec![0u8; HEADER_LEN + body_len + MAC_LEN];
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = msg.type_byte();
    // Bodies are bounded by MAX_UPDATES / MAX_CHUNK entries (< 2^16 bytes).
    out[6..8].copy_from_slice(&(body_len as u16).to_be_bytes());
    out[8..16].copy_from_slice(&header.session.to_be_bytes());
    out[16..24].copy_from_slice(&header.seq.to_be_bytes());
    msg.write_body(&mut out[HEADER_LEN..HEADER_LEN + body_len]);
    let tag = key.tag(&out[..HEADER_LEN + body_len]);
    out[HEADER_LEN + body_len..].copy_from_slice(&tag);
    out
}

/// Checks length, magic, version and HMAC, then decodes the body. The MAC
/// is verified before any field of the body is looked at.
pub fn decode(key: &Key, d: &[u8]) -> Result<(Header, Message), Reject> {
    if d.len() < HEADER_LEN + MAC_LEN {
        return Err(Reject::Truncated);
    }
    if d[0..4] != MAGIC || d[4] != VERSION {
        return Err(Reject::BadVersion);
    }
    let body_len = usize::from(u16::from_be_bytes([d[6], d[7]]));
    if d.len() != HEADER_LEN + body_len + MAC_LEN {
        return Err(Reject::Truncated);
    }
    let (signed, tag) = d.split_at(HEADER_LEN + body_len);
    if !key.verify(signed, tag) {
        return Err(Reject::BadMac);
    }
    let mut r = Reader(&d[8..24]);
    let header = Header {
        session: r.u64().ok_or(Reject::Truncated)?,
        seq: r.u64().ok_or(Reject::Truncated)?,
    };
    let msg = Message::read_body(d[5], &signed[HEADER_LEN..])?;
    Ok((header, msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> Key {
        Key::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    pub(crate) fn conn(port: u16) -> SyncConn {
        SyncConn {
            client_ip: 0x0A00_0102,
            client_port: port,
            vip: 0x0A00_0164,
            vport: 80,
            rip: 0x0A00_020B,
            rport: 8080,
            proto: 6,
            state: State::Established,
            mode: Mode::Nat,
            kind: Kind::New,
            idle_ms: 1234,
        }
    }

    const H: Header = Header {
        session: 0x1122_3344_5566_7788,
        seq: 42,
    };

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Updates(vec![conn(1), conn(2)]),
            Message::Updates(vec![]),
            Message::FullStart {
                nonce: 9,
                transfer: 3,
                entries: 100,
            },
            Message::FullChunk {
                transfer: 3,
                chunk: 1,
                conns: vec![SyncConn {
                    kind: Kind::Snapshot,
                    proto: 17,
                    state: State::Udp,
                    mode: Mode::Dsr,
                    ..conn(7)
                }],
            },
            Message::FullEnd {
                transfer: 3,
                chunks: 2,
                entries: 100,
            },
            Message::ResyncRequest {
                nonce: 77,
                reason: ResyncReason::Gap,
            },
            Message::ConfigDigest(Digest {
                hash: [7; 32],
                services: 2,
                servers: 6,
            }),
            Message::ConfigPush {
                push: 4,
                index: 1,
                count: 2,
                digest: [9; 32],
                text: b"server 10.0.2.11:8080 1\n".to_vec(),
            },
            Message::ConfigPush {
                push: 5,
                index: 0,
                count: 1,
                digest: [1; 32],
                text: vec![b'x'; MAX_PUSH_TEXT],
            },
        ]
    }

    #[test]
    fn a_push_part_must_be_one_of_its_count_and_as_long_as_it_says() {
        let part = |index, count, text: Vec<u8>| Message::ConfigPush {
            push: 1,
            index,
            count,
            digest: [0; 32],
            text,
        };
        for bad in [part(2, 2, vec![]), part(0, 0, vec![])] {
            assert_eq!(
                decode(&key(), &encode(&key(), H, &bad)),
                Err(Reject::Malformed)
            );
        }
        // A length field larger than the text that follows.
        let mut d = encode(&key(), H, &part(0, 1, b"abc".to_vec()));
        d[24 + 8..24 + 10].copy_from_slice(&4u16.to_be_bytes());
        let body_end = d.len() - MAC_LEN;
        let mac = resign_for_test(&d[..body_end]);
        d[body_end..].copy_from_slice(&mac);
        assert_eq!(decode(&key(), &d), Err(Reject::Truncated));
    }

    fn resign_for_test(data: &[u8]) -> [u8; MAC_LEN] {
        use hmac::Mac;
        let mut m = HmacSha256::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    #[test]
    fn every_message_round_trips() {
        for m in all_messages() {
            let d = encode(&key(), H, &m);
            assert!(d.len() <= MAX_DATAGRAM);
            assert_eq!(decode(&key(), &d), Ok((H, m)));
        }
    }

    #[test]
    fn full_batches_fit_one_datagram() {
        assert_eq!(MAX_UPDATES, 54);
        let m = Message::Updates((0..MAX_UPDATES as u16).map(conn).collect());
        assert!(encode(&key(), H, &m).len() <= MAX_DATAGRAM);
        let m = Message::FullChunk {
            transfer: 1,
            chunk: 0,
            conns: (0..MAX_CHUNK as u16)
                .map(|p| SyncConn {
                    kind: Kind::Snapshot,
                    ..conn(p)
                })
                .collect(),
        };
        assert!(encode(&key(), H, &m).len() <= MAX_DATAGRAM);
    }

    #[test]
    fn header_layout_is_as_documented() {
        let d = encode(&key(), H, &Message::Updates(vec![conn(0x0102)]));
        assert_eq!(&d[0..4], b"PYSY");
        assert_eq!(d[4], 1);
        assert_eq!(d[5], 1);
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), 4 + 26);
        assert_eq!(&d[8..16], &H.session.to_be_bytes());
        assert_eq!(&d[16..24], &H.seq.to_be_bytes());
        // count, reserved, then the entry.
        assert_eq!(&d[24..28], &[0, 1, 0, 0]);
        let e = &d[28..54];
        assert_eq!(&e[0..4], &[10, 0, 1, 2]);
        assert_eq!(&e[4..6], &[1, 2]);
        assert_eq!(&e[6..10], &[10, 0, 1, 100]);
        assert_eq!(&e[10..12], &[0, 80]);
        assert_eq!(&e[12..16], &[10, 0, 2, 11]);
        assert_eq!(&e[16..18], &[0x1F, 0x90]);
        assert_eq!(&e[18..22], &[6, 1, 0, 1]);
        assert_eq!(&e[22..26], &1234u32.to_be_bytes());
        assert_eq!(d.len(), 54 + 32);
    }

    #[test]
    fn forged_with_another_key_is_bad_mac() {
        let other = Key::new(b"another key of 32 bytes, really!").unwrap();
        let d = encode(&other, H, &Message::Updates(vec![conn(1)]));
        assert_eq!(decode(&key(), &d), Err(Reject::BadMac));
    }

    #[test]
    fn any_flipped_bit_is_rejected() {
        let d = encode(&key(), H, &Message::Updates(vec![conn(1)]));
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut x = d.clone();
                x[i] ^= 1 << bit;
                let r = decode(&key(), &x);
                assert!(
                    matches!(
                        r,
                        Err(Reject::BadMac | Reject::BadVersion | Reject::Truncated)
                    ),
                    "byte {i} bit {bit}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn truncated_datagrams() {
        let d = encode(&key(), H, &Message::Updates(vec![conn(1)]));
        for len in 0..d.len() {
            assert_eq!(decode(&key(), &d[..len]), Err(Reject::Truncated), "{len}");
        }
        let mut longer = d.clone();
        longer.push(0);
        assert_eq!(decode(&key(), &longer), Err(Reject::Truncated));
    }

    /// A datagram with a correct MAC over a body that lies.
    fn signed(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&MAGIC);
        d.push(VERSION);
        d.push(ty);
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(&H.session.to_be_bytes());
        d.extend_from_slice(&H.seq.to_be_bytes());
        d.extend_from_slice(body);
        let tag = key().tag(&d);
        d.extend_from_slice(&tag);
        d
    }

    #[test]
    fn authentic_but_inconsistent_bodies() {
        // Count says two entries, one present.
        let mut body = vec![0, 2, 0, 0];
        body.extend_from_slice(&[0; ENTRY_LEN]);
        assert_eq!(decode(&key(), &signed(1, &body)), Err(Reject::Truncated));
        // Count says none, an entry follows.
        let mut body = vec![0, 0, 0, 0];
        body.extend_from_slice(&[0; ENTRY_LEN]);
        assert_eq!(decode(&key(), &signed(1, &body)), Err(Reject::Malformed));
        // An entry with state 0 (not a state).
        let mut e = [0u8; ENTRY_LEN];
        conn(1).write(&mut e);
        e[19] = 0;
        let mut body = vec![0, 1, 0, 0];
        body.extend_from_slice(&e);
        assert_eq!(decode(&key(), &signed(1, &body)), Err(Reject::Malformed));
        // UDP with a TCP state.
        conn(1).write(&mut e);
        e[18] = 17;
        let mut body = vec![0, 1, 0, 0];
        body.extend_from_slice(&e);
        assert_eq!(decode(&key(), &signed(1, &body)), Err(Reject::Malformed));
        // Unknown type, short fixed body, long fixed body.
        assert_eq!(decode(&key(), &signed(99, &[])), Err(Reject::Malformed));
        assert_eq!(decode(&key(), &signed(2, &[0; 15])), Err(Reject::Truncated));
        assert_eq!(decode(&key(), &signed(2, &[0; 17])), Err(Reject::Malformed));
        assert_eq!(
            decode(&key(), &signed(5, &[0, 0, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0])),
            Err(Reject::Malformed)
        );
    }

    #[test]
    fn wrong_magic_or_version() {
        let mut d = encode(&key(), H, &Message::Updates(vec![]));
        d[4] = 2;
        assert_eq!(decode(&key(), &d), Err(Reject::BadVersion));
        let mut d = encode(&key(), H, &Message::Updates(vec![]));
        d[0] = b'X';
        assert_eq!(decode(&key(), &d), Err(Reject::BadVersion));
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(Key::new(b"short").err(), Some(ShortKey(5)));
        assert!(Key::new(&[0; 16]).is_ok());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(d in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&key(), &d);
        }

        #[test]
        fn signed_arbitrary_bodies_never_panic(ty in 0u8..8, body in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode(&key(), &signed(ty, &body));
        }
    }
}
