//! VRRP on the wire: the advertisement (RFC 5798 §5.2 for version 3,
//! RFC 3768 §5 for version 2), its IPv4 and Ethernet envelope (RFC 5798
//! §5.1) and the gratuitous ARP a new master broadcasts (RFC 5798 §6.4.1).
//!
//! Parsing never panics: every read goes through a length that was checked
//! first, and every malformation is a [`Reject`] the caller can count. The
//! receive rules that depend on the configuration (VRID, addresses, TTL for
//! multicast, checksum flavour) live in [`crate::rx`].
//!
//! The Internet checksum (RFC 1071) is computed here rather than borrowed
//! from `pylon-wire` so that this crate stays free of dataplane code and can
//! be fuzzed and tested on its own.

use std::net::Ipv4Addr;

/// IP protocol number of VRRP (RFC 5798 §5.1.1.4).
pub const IP_PROTO_VRRP: u8 = 112;
/// The only TTL a VRRP packet may carry (RFC 5798 §5.1.1.3).
pub const VRRP_TTL: u8 = 255;
/// The VRRP IPv4 multicast group (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The Ethernet address of [`MULTICAST_GROUP`] (RFC 1112 §6.4).
pub const MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
/// The Ethernet broadcast address, destination of gratuitous ARPs.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Ethertype of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// Ethertype of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Ethertype of an 802.1Q tag.
const ETHERTYPE_VLAN: u16 = 0x8100;
/// The only VRRP packet type: ADVERTISEMENT (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// The fixed part of a VRRP message, before the addresses.
pub const HEADER_LEN: usize = 8;
/// The authentication data that ends a VRRPv2 message (RFC 3768 §5.3.10).
pub const AUTH_DATA_LEN: usize = 8;
/// An untagged Ethernet header.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// An IPv4 header without options, as VRRP sends it.
pub const IPV4_HEADER_LEN: usize = 20;
/// A gratuitous ARP frame: Ethernet header and ARP body for IPv4.
pub const GARP_LEN: usize = ETHERNET_HEADER_LEN + 28;
/// Largest Max Adver Int of VRRPv3: 12 bits of centiseconds (RFC 5798
/// §5.2.7).
pub const MAX_ADVER_INT_V3: u16 = 0x0fff;
/// Largest Adver Int of VRRPv2: 8 bits of seconds, in centiseconds
/// (RFC 3768 §5.3.7).
pub const MAX_ADVER_INT_V2: u16 = 255 * 100;
/// Type of service "network control", which keepalived sends adverts with.
const IP_TOS_NETWORK_CONTROL: u8 = 0xc0;

/// The virtual router MAC address of `vrid`: `00-00-5E-00-01-{VRID}`
/// (RFC 5798 §7.3).
pub fn virtual_mac(vrid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vrid]
}

/// A VRRP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// VRRPv2, RFC 3768: whole-second intervals, a checksum over the VRRP
    /// message only, 8 bytes of authentication data.
    V2,
    /// VRRPv3, RFC 5798 (updated by RFC 9568): centisecond intervals, a
    /// checksum over the IPv4 pseudo-header.
    V3,
}

impl Version {
    /// The value of the Version field.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }

    /// The version with Version field `number`, if supported.
    pub fn from_number(number: u8) -> Option<Version> {
        match number {
            2 => Some(Version::V2),
            3 => Some(Version::V3),
            _ => None,
        }
    }

    /// Length of a message of this version carrying `count` addresses.
    pub fn message_len(self, count: usize) -> usize {
        let auth = match self {
            Version::V2 => AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        HEADER_LEN + 4 * count + auth
    }
}

/// Why a received frame is not a valid advertisement for an instance. Each
/// variant is a counter ([`Reject::name`], [`Reject::index`]); the rules and
/// their order follow RFC 5798 §7.1 (RFC 3768 §7.1 for version 2) and
/// keepalived's `vrrp_check_packet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Shorter than the headers it announces.
    #[error("truncated frame or packet")]
    Truncated,
    /// Not an IPv4 packet (Ethertype or IP version).
    #[error("not an IPv4 packet")]
    NotIpv4,
    /// IHL below 5, or a total length outside the packet.
    #[error("malformed IPv4 header")]
    BadIpHeader,
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// A fragment: VRRP packets are never fragmented.
    #[error("IPv4 fragment")]
    Fragment,
    /// IP protocol other than 112.
    #[error("IP protocol {0} is not VRRP (112)")]
    NotVrrp(u8),
    /// TTL other than 255 (RFC 5798 §7.1: MUST verify).
    #[error("invalid TTL {0}, expected 255")]
    Ttl(u8),
    /// VRRP version other than the configured one (RFC 5798 §7.1).
    #[error("wrong VRRP version {0}")]
    Version(u8),
    /// Packet type other than ADVERTISEMENT (RFC 5798 §5.2.2).
    #[error("invalid packet type {0}, expected 1 (advertisement)")]
    Type(u8),
    /// VRID not configured on the receiving port (RFC 5798 §7.1).
    #[error("VRID {0} is not configured here")]
    Vrid(u8),
    /// VRRP message length does not match its address count (RFC 5798
    /// §7.1: MUST verify the packet contains the complete message).
    #[error("VRRP message length {got}, expected {expected} for its address count")]
    Length {
        /// Bytes after the IPv4 header, up to the IP total length.
        got: usize,
        /// What the Count IPvX Addr field implies.
        expected: usize,
    },
    /// Address count other than the number of configured virtual
    /// addresses (keepalived's "invalid ip number count").
    #[error("address count {got}, expected {expected}")]
    AddressCount {
        /// Count IPvX Addr of the packet.
        got: u8,
        /// Configured virtual addresses.
        expected: usize,
    },
    /// The VRRP checksum does not verify (RFC 5798 §5.2.8, RFC 3768 §5.3.8).
    #[error("invalid VRRP checksum")]
    Checksum,
    /// VRRPv2 authentication type other than 0 (RFC 3768 §5.3.6: types 1
    /// and 2 were removed; keepalived counts this as `invalid_authtype`).
    #[error("unsupported VRRPv2 authentication type {0}")]
    AuthType(u8),
    /// VRRPv2 interval other than the configured one (RFC 3768 §7.1: MUST
    /// discard).
    #[error("advertisement interval mismatch: received {got} s, configured {expected} s")]
    Interval {
        /// Received Adver Int, seconds.
        got: u8,
        /// Configured advert_int, seconds.
        expected: u16,
    },
    /// Multicast where unicast peers are configured, or the reverse, or a
    /// destination that is neither 224.0.0.18 nor this port.
    #[error("unexpected destination address {0}")]
    Destination(Ipv4Addr),
    /// Sent from this port's own address (a looped-back copy).
    #[error("advertisement from our own address")]
    OwnAdvert,
    /// A configured virtual address is missing from the packet (RFC 5798
    /// §7.1 MAY verify; keepalived drops the packet and so do we).
    #[error("virtual address {0} is not in the advertisement")]
    AddressList(Ipv4Addr),
    /// Source not among the configured unicast peers (keepalived's
    /// `vrrp_check_unicast_src`).
    #[error("source {0} is not a configured unicast peer")]
    NotUnicastPeer(Ipv4Addr),
    /// The local router is the address owner (priority 255), which
    /// discards every advertisement (RFC 5798 §7.1).
    #[error("local router is the address owner (priority 255)")]
    AddressOwner,
}

impl Reject {
    /// Number of variants, for a counter array.
    pub const COUNT: usize = 20;
    /// Counter names, indexed by [`Reject::index`].
    pub const NAMES: [&'static str; Reject::COUNT] = [
        "truncated",
        "not_ipv4",
        "bad_ip_header",
        "bad_ip_checksum",
        "fragment",
        "not_vrrp",
        "ttl",
        "version",
        "type",
        "vrid",
        "length",
        "address_count",
        "checksum",
        "auth_type",
        "advert_interval",
        "destination",
        "own_advert",
        "address_list",
        "unicast_source",
        "address_owner",
    ];

    /// Position of this reason in [`Reject::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            Reject::Truncated => 0,
            Reject::NotIpv4 => 1,
            Reject::BadIpHeader => 2,
            Reject::BadIpChecksum => 3,
            Reject::Fragment => 4,
            Reject::NotVrrp(_) => 5,
            Reject::Ttl(_) => 6,
            Reject::Version(_) => 7,
            Reject::Type(_) => 8,
            Reject::Vrid(_) => 9,
            Reject::Length { .. } => 10,
            Reject::AddressCount { .. } => 11,
            Reject::Checksum => 12,
            Reject::AuthType(_) => 13,
            Reject::Interval { .. } => 14,
            Reject::Destination(_) => 15,
            Reject::OwnAdvert => 16,
            Reject::AddressList(_) => 17,
            Reject::NotUnicastPeer(_) => 18,
            Reject::AddressOwner => 19,
        }
    }

    /// The counter name of this reason (`snake_case`).
    pub fn name(&self) -> &'static str {
        Reject::NAMES[self.index()]
    }
}

/// Why a packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The output buffer is shorter than the packet.
    #[error("buffer of {available} bytes is too small for {needed}")]
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The interval does not fit the version's field (VRRPv2: whole seconds
    /// up to 255; VRRPv3: up to 4095 centiseconds).
    #[error("advertisement interval of {0} cs cannot be sent in this version")]
    Interval(u16),
    /// More than 255 addresses.
    #[error("{0} addresses do not fit the 8-bit address count")]
    TooManyAddresses(usize),
}

/// RFC 1071 §4.1: adds `data` as big-endian 16-bit words to `acc`, an odd
/// trailing byte padded with zero.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for word in &mut words {
        acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds a one's-complement accumulator into 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves acc <= 0xffff.
    acc as u16
}

/// Sum of the IPv4 pseudo-header of a VRRP message of `len` bytes (RFC 5798
/// §5.2.8, pointing at RFC 2460 §8.1; the IPv4 form is that of TCP and UDP).
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> u64 {
    let acc = sum(&src.octets(), 0);
    let acc = sum(&dst.octets(), acc);
    // len <= 65535 - 20: an IP payload.
    acc + u64::from(IP_PROTO_VRRP) + len as u64
}

/// Which bytes a VRRP checksum covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumScope {
    /// The IPv4 pseudo-header (source, destination, protocol, length) and
    /// the message: VRRPv3 as RFC 5798 §5.2.8 defines it.
    PseudoHeader {
        /// IPv4 source address.
        src: Ipv4Addr,
        /// IPv4 destination address.
        dst: Ipv4Addr,
    },
    /// The VRRP message alone: VRRPv2 (RFC 3768 §5.3.8), and VRRPv3 peers
    /// that leave the pseudo-header out.
    Message,
}

impl ChecksumScope {
    /// The scope a `version` message from `src` to `dst` uses, with
    /// `pseudo_header` false for VRRPv3 peers that omit it.
    pub fn for_version(
        version: Version,
        pseudo_header: bool,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> ChecksumScope {
        match version {
            Version::V3 if pseudo_header => ChecksumScope::PseudoHeader { src, dst },
            _ => ChecksumScope::Message,
        }
    }

    fn initial(self, len: usize) -> u64 {
        match self {
            ChecksumScope::PseudoHeader { src, dst } => pseudo_header_sum(src, dst, len),
            ChecksumScope::Message => 0,
        }
    }
}

/// Byte offsets of the VRRP message fields (RFC 5798 §5.2, RFC 3768 §5.1).
mod field {
    use std::ops::Range;

    /// Version (high nibble) and Type (low nibble).
    pub const VERSION_TYPE: usize = 0;
    /// Virtual Rtr ID.
    pub const VRID: usize = 1;
    /// Priority.
    pub const PRIORITY: usize = 2;
    /// Count IPvX Addr.
    pub const COUNT: usize = 3;
    /// v3: 4 reserved bits and 12 bits of Max Adver Int.
    pub const MAX_ADVER_INT: Range<usize> = 4..6;
    /// v2: Auth Type.
    pub const AUTH_TYPE: usize = 4;
    /// v2: Adver Int (seconds).
    pub const ADVER_INT: usize = 5;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
    /// First address.
    pub const ADDRESSES: usize = 8;
}

/// A zero-copy view of a VRRP message (smoltcp style): [`VrrpPacket::new_checked`]
/// checks once that the fixed header and the addresses the count announces
/// are present, so no accessor can panic.
#[derive(Debug, Clone)]
pub struct VrrpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VrrpPacket<T> {
    /// Wraps `buffer` (the IP payload, trimmed to the IP total length)
    /// after checking that it holds the fixed header and `count` addresses.
    pub fn new_checked(buffer: T) -> Result<VrrpPacket<T>, Reject> {
        let bytes = buffer.as_ref();
        if bytes.len() < HEADER_LEN
            || bytes.len() < HEADER_LEN + 4 * usize::from(bytes[field::COUNT])
        {
            return Err(Reject::Truncated);
        }
        Ok(VrrpPacket { buffer })
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The Version field.
    pub fn version(&self) -> u8 {
        self.bytes()[field::VERSION_TYPE] >> 4
    }

    /// The Type field.
    pub fn kind(&self) -> u8 {
        self.bytes()[field::VERSION_TYPE] & 0x0f
    }

    /// Virtual Rtr ID.
    pub fn vrid(&self) -> u8 {
        self.bytes()[field::VRID]
    }

    /// Priority: 255 = address owner, 0 = the master resigns (RFC 5798
    /// §5.2.4).
    pub fn priority(&self) -> u8 {
        self.bytes()[field::PRIORITY]
    }

    /// Count IPvX Addr.
    pub fn count(&self) -> u8 {
        self.bytes()[field::COUNT]
    }

    /// VRRPv3 Max Adver Int in centiseconds; the 4 reserved bits are
    /// ignored on receive (RFC 5798 §5.2.6).
    pub fn max_adver_int(&self) -> u16 {
        let b = &self.bytes()[field::MAX_ADVER_INT];
        u16::from_be_bytes([b[0], b[1]]) & MAX_ADVER_INT_V3
    }

    /// VRRPv2 Auth Type (RFC 3768 §5.3.6).
    pub fn auth_type(&self) -> u8 {
        self.bytes()[field::AUTH_TYPE]
    }

    /// VRRPv2 Adver Int in seconds (RFC 3768 §5.3.7).
    pub fn adver_int_v2(&self) -> u8 {
        self.bytes()[field::ADVER_INT]
    }

    /// The Checksum field.
    pub fn checksum(&self) -> u16 {
        let b = &self.bytes()[field::CHECKSUM];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The `count` addresses.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let end = field::ADDRESSES + 4 * usize::from(self.count());
        self.bytes()[field::ADDRESSES..end]
            .chunks_exact(4)
            .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }

    /// Whether the checksum verifies over the whole buffer in `scope`.
    pub fn verify_checksum(&self, scope: ChecksumScope) -> bool {
        let bytes = self.bytes();
        fold(sum(bytes, scope.initial(bytes.len()))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VrrpPacket<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Computes and stores the checksum over the whole buffer in `scope`.
    pub fn fill_checksum(&mut self, scope: ChecksumScope) {
        self.bytes_mut()[field::CHECKSUM].fill(0);
        let bytes = self.bytes();
        let checksum = !fold(sum(bytes, scope.initial(bytes.len())));
        self.bytes_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }
}

/// An advertisement, parsed or to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// Protocol version.
    pub version: Version,
    /// Virtual Rtr ID, 1..=255.
    pub vrid: u8,
    /// Priority: 1..=254, 255 = address owner, 0 = master resigning.
    pub priority: u8,
    /// Advertisement interval in centiseconds (VRRPv2 sends whole seconds:
    /// 100 cs per second).
    pub adver_int: u16,
    /// The virtual addresses.
    pub addresses: Vec<Ipv4Addr>,
}

impl Advert {
    /// Parses a VRRP message (the IP payload, trimmed to the IP total
    /// length) with the checks that need no configuration: the header is
    /// present, version 2 or 3, type ADVERTISEMENT, the length is exactly
    /// what the address count implies (RFC 5798 §7.1), and for version 2
    /// the authentication type is 0. The checksum is checked by the caller,
    /// which knows its scope.
    pub fn parse(message: &[u8]) -> Result<Advert, Reject> {
        if message.len() < HEADER_LEN {
            return Err(Reject::Truncated);
        }
        let version_number = message[field::VERSION_TYPE] >> 4;
        let version =
            Version::from_number(version_number).ok_or(Reject::Version(version_number))?;
        let kind = message[field::VERSION_TYPE] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(Reject::Type(kind));
        }
        let packet = VrrpPacket::new_checked(message)?;
        let expected = version.message_len(usize::from(packet.count()));
        if message.len() != expected {
            return Err(Reject::Length {
                got: message.len(),
                expected,
            });
        }
        let adver_int = match version {
            Version::V3 => packet.max_adver_int(),
            Version::V2 => {
                if packet.auth_type() != 0 {
                    return Err(Reject::AuthType(packet.auth_type()));
                }
                u16::from(packet.adver_int_v2()) * 100
            }
        };
        Ok(Advert {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            adver_int,
            addresses: packet.addresses().collect(),
        })
    }

    /// Length of the VRRP message.
    pub fn message_len(&self) -> usize {
        self.version.message_len(self.addresses.len())
    }

    /// Writes the VRRP message to the start of `buf`, its checksum over
    /// `scope`; returns its length.
    pub fn emit(&self, buf: &mut [u8], scope: ChecksumScope) -> Result<usize, EmitError> {
        let count = u8::try_from(self.addresses.len())
            .map_err(|_| EmitError::TooManyAddresses(self.addresses.len()))?;
        let len = self.message_len();
        let available = buf.len();
        let out = buf.get_mut(..len).ok_or(EmitError::BufferTooSmall {
            needed: len,
            available,
        })?;
        let interval = match self.version {
            Version::V3 if self.adver_int <= MAX_ADVER_INT_V3 => self.adver_int.to_be_bytes(),
            Version::V2 if self.adver_int % 100 == 0 && self.adver_int <= MAX_ADVER_INT_V2 => {
                // Auth Type 0 (RFC 3768 §5.3.6), Adver Int in seconds.
                [0, (self.adver_int / 100) as u8]
            }
            _ => return Err(EmitError::Interval(self.adver_int)),
        };
        out[field::VERSION_TYPE] = (self.version.number() << 4) | TYPE_ADVERTISEMENT;
        out[field::VRID] = self.vrid;
        out[field::PRIORITY] = self.priority;
        out[field::COUNT] = count;
        out[field::MAX_ADVER_INT].copy_from_slice(&interval);
        for (slot, address) in out[field::ADDRESSES..]
            .chunks_exact_mut(4)
            .zip(&self.addresses)
        {
            slot.copy_from_slice(&address.octets());
        }
        // VRRPv2 authentication data: zero (RFC 3768 §5.3.10).
        out[field::ADDRESSES + 4 * self.addresses.len()..].fill(0);
        let mut packet = VrrpPacket::new_checked(out).map_err(|_| EmitError::BufferTooSmall {
            needed: len,
            available,
        })?;
        packet.fill_checksum(scope);
        Ok(len)
    }
}

/// The fields of a received IPv4 header that VRRP checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4<'a> {
    /// Source address: the sender's primary address (RFC 5798 §5.1.1.1).
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Time to live.
    pub ttl: u8,
    /// Protocol.
    pub protocol: u8,
    /// The payload up to the total length (Ethernet padding removed).
    pub payload: &'a [u8],
}

/// Parses an IPv4 packet: version 4, IHL >= 5, total length within the
/// buffer, header checksum, not a fragment.
pub fn parse_ipv4(packet: &[u8]) -> Result<Ipv4<'_>, Reject> {
    if packet.len() < IPV4_HEADER_LEN {
        return Err(Reject::Truncated);
    }
    if packet[0] >> 4 != 4 {
        return Err(Reject::NotIpv4);
    }
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header_len < IPV4_HEADER_LEN || total_len < header_len {
        return Err(Reject::BadIpHeader);
    }
    if total_len > packet.len() {
        return Err(Reject::Truncated);
    }
    if fold(sum(&packet[..header_len], 0)) != 0xffff {
        return Err(Reject::BadIpChecksum);
    }
    let flags_fragment = u16::from_be_bytes([packet[6], packet[7]]);
    // More Fragments set, or a fragment offset.
    if flags_fragment & 0x3fff != 0 {
        return Err(Reject::Fragment);
    }
    Ok(Ipv4 {
        src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
        dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        ttl: packet[8],
        protocol: packet[9],
        payload: &packet[header_len..total_len],
    })
}

/// The IPv4 packet inside an Ethernet frame, after at most one 802.1Q tag.
pub fn ethernet_payload(frame: &[u8]) -> Result<&[u8], Reject> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(Reject::Truncated);
    }
    let mut offset = 12;
    let mut ethertype = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
    if ethertype == ETHERTYPE_VLAN {
        offset += 4;
        let tag_end = offset + 2;
        let bytes = frame.get(offset..tag_end).ok_or(Reject::Truncated)?;
        ethertype = u16::from_be_bytes([bytes[0], bytes[1]]);
    }
    if ethertype != ETHERTYPE_IPV4 {
        return Err(Reject::NotIpv4);
    }
    Ok(&frame[offset + 2..])
}

/// The IPv4 envelope of an advertisement (RFC 5798 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// Source: the primary address of the sending port (RFC 5798
    /// §5.1.1.1).
    pub src: Ipv4Addr,
    /// Destination: [`MULTICAST_GROUP`] or a unicast peer (RFC 5798
    /// §5.1.1.2).
    pub dst: Ipv4Addr,
    /// IP identification.
    pub id: u16,
    /// Whether a VRRPv3 checksum covers the pseudo-header (RFC 5798
    /// §5.2.8); false for peers that compute it without. Ignored for
    /// VRRPv2.
    pub pseudo_header: bool,
}

/// Length of the IPv4 packet that carries `advert`.
pub fn ipv4_len(advert: &Advert) -> usize {
    IPV4_HEADER_LEN + advert.message_len()
}

/// Length of the Ethernet frame that carries `advert`.
pub fn frame_len(advert: &Advert) -> usize {
    ETHERNET_HEADER_LEN + ipv4_len(advert)
}

/// Writes the IPv4 packet of `advert` (RFC 5798 §5.1: protocol 112, TTL 255;
/// TOS network control and no fragment flags, as keepalived sends it) to
/// the start of `buf`; returns its length.
pub fn emit_ipv4(buf: &mut [u8], advert: &Advert, envelope: &Envelope) -> Result<usize, EmitError> {
    let len = ipv4_len(advert);
    let available = buf.len();
    let out = buf.get_mut(..len).ok_or(EmitError::BufferTooSmall {
        needed: len,
        available,
    })?;
    let (header, message) = out.split_at_mut(IPV4_HEADER_LEN);
    let scope = ChecksumScope::for_version(
        advert.version,
        envelope.pseudo_header,
        envelope.src,
        envelope.dst,
    );
    advert.emit(message, scope)?;
    header[0] = 0x45;
    header[1] = IP_TOS_NETWORK_CONTROL;
    // len <= 20 + 8 + 4 * 255 + 8.
    header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    header[4..6].copy_from_slice(&envelope.id.to_be_bytes());
    header[6..8].fill(0);
    header[8] = VRRP_TTL;
    header[9] = IP_PROTO_VRRP;
    header[10..12].fill(0);
    header[12..16].copy_from_slice(&envelope.src.octets());
    header[16..20].copy_from_slice(&envelope.dst.octets());
    let checksum = !fold(sum(header, 0));
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    Ok(len)
}

fn emit_ethernet(out: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    out[0..6].copy_from_slice(&dst);
    out[6..12].copy_from_slice(&src);
    out[12..14].copy_from_slice(&ethertype.to_be_bytes());
}

/// Writes the Ethernet frame of `advert` to the start of `buf`: source MAC
/// the virtual MAC of its VRID (RFC 5798 §5.1.1.1 and §7.3), destination
/// `dst_mac` ([`MULTICAST_MAC`] for the group, the peer's for unicast);
/// returns its length.
pub fn emit_frame(
    buf: &mut [u8],
    advert: &Advert,
    envelope: &Envelope,
    dst_mac: [u8; 6],
) -> Result<usize, EmitError> {
    let len = frame_len(advert);
    let available = buf.len();
    let out = buf.get_mut(..len).ok_or(EmitError::BufferTooSmall {
        needed: len,
        available,
    })?;
    emit_ethernet(out, dst_mac, virtual_mac(advert.vrid), ETHERTYPE_IPV4);
    emit_ipv4(&mut out[ETHERNET_HEADER_LEN..], advert, envelope)?;
    Ok(len)
}

/// Writes a gratuitous ARP for `vip` of virtual router `vrid` to the start
/// of `buf` and returns its length ([`GARP_LEN`]): a broadcast ARP request
/// from the virtual MAC whose sender and target protocol addresses are the
/// VIP, and whose sender and target hardware addresses are the virtual MAC
/// (RFC 5798 §6.4.1; keepalived puts the broadcast address in the target
/// hardware field, which receivers ignore in a request).
pub fn emit_garp(buf: &mut [u8], vrid: u8, vip: Ipv4Addr) -> Result<usize, EmitError> {
    let available = buf.len();
    let out = buf.get_mut(..GARP_LEN).ok_or(EmitError::BufferTooSmall {
        needed: GARP_LEN,
        available,
    })?;
    let mac = virtual_mac(vrid);
    emit_ethernet(out, BROADCAST_MAC, mac, ETHERTYPE_ARP);
    let arp = &mut out[ETHERNET_HEADER_LEN..];
    // Hardware Ethernet (1), protocol IPv4, lengths 6 and 4, op request (1).
    arp[0..2].copy_from_slice(&1u16.to_be_bytes());
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes());
    arp[8..14].copy_from_slice(&mac);
    arp[14..18].copy_from_slice(&vip.octets());
    arp[18..24].copy_from_slice(&mac);
    arp[24..28].copy_from_slice(&vip.octets());
    Ok(GARP_LEN)
}

/// The VRID of a VRRP packet, read without validation, so a caller with
/// several instances on a port can pick the one to hand it to; `None` when
/// `ip_packet` is too short to hold one.
pub fn peek_vrid(ip_packet: &[u8]) -> Option<u8> {
    let header_len = usize::from(ip_packet.first()? & 0x0f) * 4;
    ip_packet.get(header_len + field::VRID).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keepalived 2.2.7 (Debian 12), `version 3`, VRID 51, priority 100,
    /// advert_int 1, VIP 192.0.2.100, from 192.0.2.10 on a veth; captured
    /// with tcpdump.
    const KEEPALIVED_V3: [u8; 46] = [
        0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x42, 0x7f, 0xbc, 0x0f, 0x85, 0x6a, 0x08, 0x00, 0x45,
        0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x18, 0x90, 0xc0, 0x00, 0x02, 0x0a,
        0xe0, 0x00, 0x00, 0x12, 0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x05, 0x69, 0xc0, 0x00, 0x02,
        0x64,
    ];

    fn advert(version: Version) -> Advert {
        Advert {
            version,
            vrid: 51,
            priority: 100,
            adver_int: 100,
            addresses: vec![Ipv4Addr::new(192, 0, 2, 100)],
        }
    }

    #[test]
    fn checksum_matches_keepalived() {
        let message = &KEEPALIVED_V3[34..];
        let mut rebuilt = [0u8; 12];
        let scope = ChecksumScope::PseudoHeader {
            src: Ipv4Addr::new(192, 0, 2, 10),
            dst: MULTICAST_GROUP,
        };
        advert(Version::V3).emit(&mut rebuilt, scope).unwrap();
        assert_eq!(&rebuilt, message);
        assert!(VrrpPacket::new_checked(message)
            .unwrap()
            .verify_checksum(scope));
    }

    #[test]
    fn view_accessors() {
        let packet = VrrpPacket::new_checked(&KEEPALIVED_V3[34..]).unwrap();
        assert_eq!(packet.version(), 3);
        assert_eq!(packet.kind(), 1);
        assert_eq!(packet.vrid(), 51);
        assert_eq!(packet.priority(), 100);
        assert_eq!(packet.count(), 1);
        assert_eq!(packet.max_adver_int(), 100);
        assert_eq!(packet.checksum(), 0x0569);
        assert_eq!(
            packet.addresses().collect::<Vec<_>>(),
            [Ipv4Addr::new(192, 0, 2, 100)]
        );
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let mut message = KEEPALIVED_V3[34..].to_vec();
        message[4] |= 0xf0;
        assert_eq!(
            VrrpPacket::new_checked(&message[..])
                .unwrap()
                .max_adver_int(),
            100
        );
    }

    #[test]
    fn emit_rejects_unrepresentable() {
        let mut buf = [0u8; 64];
        let mut v2 = advert(Version::V2);
        v2.adver_int = 150;
        assert_eq!(
            v2.emit(&mut buf, ChecksumScope::Message),
            Err(EmitError::Interval(150))
        );
        let mut v3 = advert(Version::V3);
        v3.adver_int = 4096;
        assert_eq!(
            v3.emit(&mut buf, ChecksumScope::Message),
            Err(EmitError::Interval(4096))
        );
        v3.adver_int = 100;
        v3.addresses = vec![Ipv4Addr::new(192, 0, 2, 1); 256];
        assert_eq!(
            v3.emit(&mut [0u8; 2048], ChecksumScope::Message),
            Err(EmitError::TooManyAddresses(256))
        );
        assert_eq!(
            advert(Version::V3).emit(&mut buf[..11], ChecksumScope::Message),
            Err(EmitError::BufferTooSmall {
                needed: 12,
                available: 11
            })
        );
    }

    #[test]
    fn virtual_mac_layout() {
        assert_eq!(virtual_mac(51), [0x00, 0x00, 0x5e, 0x00, 0x01, 0x33]);
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let mut frame = KEEPALIVED_V3[..12].to_vec();
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        frame.extend_from_slice(&KEEPALIVED_V3[12..]);
        assert_eq!(ethernet_payload(&frame).unwrap(), &KEEPALIVED_V3[14..]);
        assert_eq!(ethernet_payload(&frame[..15]), Err(Reject::Truncated));
    }

    #[test]
    fn peek_vrid_reads_after_ihl() {
        assert_eq!(peek_vrid(&KEEPALIVED_V3[14..]), Some(51));
        assert_eq!(peek_vrid(&KEEPALIVED_V3[14..34]), None);
        assert_eq!(peek_vrid(&[]), None);
    }

    #[test]
    fn reject_names_are_distinct_and_indexed() {
        let all = [
            Reject::Truncated,
            Reject::NotIpv4,
            Reject::BadIpHeader,
            Reject::BadIpChecksum,
            Reject::Fragment,
            Reject::NotVrrp(6),
            Reject::Ttl(64),
            Reject::Version(4),
            Reject::Type(2),
            Reject::Vrid(9),
            Reject::Length {
                got: 1,
                expected: 2,
            },
            Reject::AddressCount {
                got: 1,
                expected: 2,
            },
            Reject::Checksum,
            Reject::AuthType(1),
            Reject::Interval {
                got: 1,
                expected: 2,
            },
            Reject::Destination(Ipv4Addr::BROADCAST),
            Reject::OwnAdvert,
            Reject::AddressList(Ipv4Addr::LOCALHOST),
            Reject::NotUnicastPeer(Ipv4Addr::LOCALHOST),
            Reject::AddressOwner,
        ];
        for (i, reject) in all.iter().enumerate() {
            assert_eq!(reject.index(), i);
        }
        let mut names = Reject::NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reject::COUNT);
    }
}
