//! Receive validation: every check of RFC 5798 §7.1 (RFC 3768 §7.1 for
//! version 2), as strict as keepalived's `vrrp_check_packet`, each failure a
//! distinct [`Reject`].

use std::net::Ipv4Addr;

use crate::instance::{InstanceConfig, PRIORITY_OWNER};
use crate::wire::{self, Advert, ChecksumScope, Reject, Version, VrrpPacket};

/// A valid advertisement and its IPv4 addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Sender's primary address, used to break priority ties.
    pub src: Ipv4Addr,
    /// 224.0.0.18, or this port's address for unicast.
    pub dst: Ipv4Addr,
    /// The advertisement.
    pub advert: Advert,
}

/// Checks an IPv4 packet (Ethernet header removed; trailing padding
/// allowed) against `config`, in this order:
///
/// 1. a well-formed IPv4 header with a valid checksum, not a fragment,
///    protocol 112;
/// 2. TTL 255 (RFC 5798 §7.1), except with unicast peers, which may be
///    routed (keepalived skips it there too);
/// 3. a complete VRRP message: version 2 or 3, type ADVERTISEMENT, length
///    exactly what the address count implies, VRRPv2 authentication type 0
///    ([`Advert::parse`]);
/// 4. the configured version and VRID (RFC 5798 §7.1);
/// 5. VRRPv2: the configured interval (RFC 3768 §7.1);
/// 6. as many addresses as configured VIPs (keepalived);
/// 7. the checksum, over the pseudo-header for VRRPv3 unless
///    `checksum_pseudo_header` is off (RFC 5798 §5.2.8);
/// 8. multicast to 224.0.0.18 without unicast peers, unicast to our
///    primary address with them (keepalived);
/// 9. not from our own primary address;
/// 10. every VIP listed (RFC 5798 §7.1 MAY; keepalived drops the packet);
/// 11. with unicast peers, from one of them (keepalived);
/// 12. the local router is not the address owner (RFC 5798 §7.1).
pub fn check(config: &InstanceConfig, ip_packet: &[u8]) -> Result<Received, Reject> {
    let ip = wire::parse_ipv4(ip_packet)?;
    if ip.protocol != wire::IP_PROTO_VRRP {
        return Err(Reject::NotVrrp(ip.protocol));
    }
    let unicast = !config.unicast_peers.is_empty();
    if !unicast && ip.ttl != wire::VRRP_TTL {
        return Err(Reject::Ttl(ip.ttl));
    }
    let advert = Advert::parse(ip.payload)?;
    if advert.version != config.version {
        return Err(Reject::Version(advert.version.number()));
    }
    if advert.vrid != config.vrid {
        return Err(Reject::Vrid(advert.vrid));
    }
    if advert.version == Version::V2 && advert.adver_int != config.adver_int {
        return Err(Reject::Interval {
            // Parsed from 8 bits of seconds.
            got: (advert.adver_int / 100) as u8,
            expected: config.adver_int / 100,
        });
    }
    if advert.addresses.len() != config.vips.len() {
        return Err(Reject::AddressCount {
            // Parsed from the 8-bit count.
            got: advert.addresses.len() as u8,
            expected: config.vips.len(),
        });
    }
    let scope = ChecksumScope::for_version(
        advert.version,
        config.checksum_pseudo_header,
        ip.src,
        ip.dst,
    );
    if !VrrpPacket::new_checked(ip.payload)?.verify_checksum(scope) {
        return Err(Reject::Checksum);
    }
    let expected_dst = if unicast {
        config.primary
    } else {
        wire::MULTICAST_GROUP
    };
    if ip.dst != expected_dst {
        return Err(Reject::Destination(ip.dst));
    }
    if ip.src == config.primary {
        return Err(Reject::OwnAdvert);
    }
    if let Some(missing) = config
        .vips
        .iter()
        .find(|vip| !advert.addresses.contains(vip))
    {
        return Err(Reject::AddressList(*missing));
    }
    if unicast && !config.unicast_peers.contains(&ip.src) {
        return Err(Reject::NotUnicastPeer(ip.src));
    }
    if config.priority == PRIORITY_OWNER {
        return Err(Reject::AddressOwner);
    }
    Ok(Received {
        src: ip.src,
        dst: ip.dst,
        advert,
    })
}
