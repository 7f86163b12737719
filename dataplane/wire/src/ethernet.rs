//! Ethernet II header with an optional 802.1Q tag (IEEE 802.1Q §9.3).

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = 14;
/// Length of one 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Byte ranges of the Ethernet header fields.
pub mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Tag control information when `ETHERTYPE` holds the 802.1Q TPID.
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const INNER_ETHERTYPE: Range<usize> = 16..18;
}

/// What the link layer says about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// EtherType of the payload (after the tag, if any).
    pub ethertype: u16,
    /// VLAN id (12 bits) if the frame carries an 802.1Q tag.
    pub vlan: Option<u16>,
    /// Offset of the network-layer header.
    pub payload: usize,
}

/// Parses the link-layer header; `None` if the frame is too short for it.
/// Only one tag is walked: stacked (QinQ) tags leave 0x8100 as the
/// ethertype, which callers treat as unsupported.
pub fn parse(frame: &[u8]) -> Option<Header> {
    let ethertype = u16::from_be_bytes(frame.get(field::ETHERTYPE)?.try_into().ok()?);
    if ethertype != ETHERTYPE_VLAN {
        return Some(Header {
            ethertype,
            vlan: None,
            payload: HEADER_LEN,
        });
    }
    let tci = u16::from_be_bytes(frame.get(field::VLAN_TCI)?.try_into().ok()?);
    let inner = u16::from_be_bytes(frame.get(field::INNER_ETHERTYPE)?.try_into().ok()?);
    Some(Header {
        ethertype: inner,
        vlan: Some(tci & 0x0fff),
        payload: HEADER_LEN + VLAN_TAG_LEN,
    })
}

/// Destination MAC, or `None` if the frame is too short to hold one.
pub fn dst(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(field::DST)?.try_into().ok()
}

/// Source MAC, or `None` if the frame is too short to hold one.
pub fn src(frame: &[u8]) -> Option<[u8; 6]> {
    frame.get(field::SRC)?.try_into().ok()
}

/// Writes both MAC addresses (frame must hold a header).
pub fn set_macs(frame: &mut [u8], dst: [u8; 6], src: [u8; 6]) {
    frame[field::DST].copy_from_slice(&dst);
    frame[field::SRC].copy_from_slice(&src);
}

/// True for group (broadcast and multicast) addresses: I/G bit set.
pub fn is_group(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untagged() {
        let mut f = [0u8; 14];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            parse(&f),
            Some(Header {
                ethertype: ETHERTYPE_IPV4,
                vlan: None,
                payload: 14
            })
        );
    }

    #[test]
    fn tagged() {
        let mut f = [0u8; 18];
        f[12..18].copy_from_slice(&[0x81, 0x00, 0x20, 0x64, 0x08, 0x06]);
        assert_eq!(
            parse(&f),
            Some(Header {
                ethertype: ETHERTYPE_ARP,
                vlan: Some(100),
                payload: 18
            })
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(parse(&[0u8; 13]), None);
        let mut f = [0u8; 16];
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        assert_eq!(parse(&f), None);
    }
}
