//! Wire formats and receive checks against frames captured from keepalived
//! 2.2.7 (Debian 12's package): keepalived's packets parse, ours are byte
//! for byte what keepalived sends, and every RFC 5798 §7.1 check rejects
//! with its own reason.
//!
//! The captures: `vrrp_instance { interface <veth>; virtual_router_id 51;
//! priority 100; advert_int 1; version 3 (or 2); virtual_ipaddress {
//! 192.0.2.100 } }` on a veth with address 192.0.2.10/24 (and
//! `unicast_peer { 192.0.2.20 }` for the unicast one), recorded with
//! tcpdump on the other end.

use std::net::Ipv4Addr;

use pylon_vrrp::rx::{self, Received};
use pylon_vrrp::wire::{self, ChecksumScope, Envelope, VrrpPacket};
use pylon_vrrp::{Advert, Instance, InstanceConfig, Reject, Version};

/// keepalived, version 3, multicast, priority 100, IP ID 1.
const KA_V3: [u8; 46] = [
    0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x42, 0x7f, 0xbc, 0x0f, 0x85, 0x6a, 0x08,
    0x00, // Ethernet
    0x45, 0xc0, 0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x18, 0x90, 0xc0, 0x00, 0x02, 0x0a,
    0xe0, 0x00, 0x00, 0x12, // IPv4: TOS 0xc0, TTL 255, proto 112, 192.0.2.10 > 224.0.0.18
    0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x05, 0x69, // v3 advert, VRID 51, prio 100, 100 cs
    0xc0, 0x00, 0x02, 0x64, // 192.0.2.100
];

/// keepalived, version 3, multicast, priority 0 on shutdown, IP ID 4.
const KA_V3_RESIGN: [u8; 46] = [
    0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x42, 0x7f, 0xbc, 0x0f, 0x85, 0x6a, 0x08, 0x00, 0x45, 0xc0,
    0x00, 0x20, 0x00, 0x04, 0x00, 0x00, 0xff, 0x70, 0x18, 0x8d, 0xc0, 0x00, 0x02, 0x0a, 0xe0, 0x00,
    0x00, 0x12, 0x31, 0x33, 0x00, 0x01, 0x00, 0x64, 0x69, 0x69, 0xc0, 0x00, 0x02, 0x64,
];

/// keepalived, version 3, unicast to 192.0.2.20 (the pseudo-header holds
/// the unicast destination), IP ID 1.
const KA_V3_UNICAST: [u8; 46] = [
    0x82, 0xde, 0xdd, 0xef, 0x5e, 0xc9, 0x12, 0x7b, 0x8e, 0xcd, 0x34, 0xe0, 0x08, 0x00, 0x45, 0xc0,
    0x00, 0x20, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x36, 0x8e, 0xc0, 0x00, 0x02, 0x0a, 0xc0, 0x00,
    0x02, 0x14, 0x31, 0x33, 0x64, 0x01, 0x00, 0x64, 0x23, 0x67, 0xc0, 0x00, 0x02, 0x64,
];

/// keepalived, version 2, multicast, auth type 0, 1 s, IP ID 1.
const KA_V2: [u8; 54] = [
    0x01, 0x00, 0x5e, 0x00, 0x00, 0x12, 0x62, 0x9c, 0x5a, 0x6d, 0x0d, 0xbe, 0x08, 0x00, 0x45, 0xc0,
    0x00, 0x28, 0x00, 0x01, 0x00, 0x00, 0xff, 0x70, 0x18, 0x88, 0xc0, 0x00, 0x02, 0x0a, 0xe0, 0x00,
    0x00, 0x12, 0x21, 0x33, 0x64, 0x01, 0x00, 0x01, 0xb8, 0x65, 0xc0, 0x00, 0x02, 0x64, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// keepalived's gratuitous ARP for 192.0.2.100 (from the interface MAC,
/// target hardware address broadcast).
const KA_GARP: [u8; 42] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x42, 0x7f, 0xbc, 0x0f, 0x85, 0x6a, 0x08, 0x06, 0x00, 0x01,
    0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x42, 0x7f, 0xbc, 0x0f, 0x85, 0x6a, 0xc0, 0x00, 0x02, 0x64,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x64,
];

const KEEPALIVED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const US: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

/// Our side of the keepalived captures: VRID 51 at 192.0.2.20.
fn config(version: Version) -> InstanceConfig {
    InstanceConfig {
        vrid: 51,
        version,
        priority: 150,
        adver_int: 100,
        preempt: true,
        preempt_delay: 0,
        vips: vec![VIP],
        primary: US,
        unicast_peers: Vec::new(),
        checksum_pseudo_header: true,
        garp_repeat: 5,
        garp_delay: 0,
        garp_refresh: 0,
        garp_refresh_repeat: 1,
    }
}

fn unicast_config() -> InstanceConfig {
    InstanceConfig {
        unicast_peers: vec![KEEPALIVED],
        ..config(Version::V3)
    }
}

/// An independent RFC 1071 checksum, to repair packets a test mutates.
fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum = 0u32;
    for chunk in chunks {
        for pair in chunk.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            sum += u32::from(word);
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IP packet of a captured frame.
fn ip(frame: &[u8]) -> Vec<u8> {
    frame[14..].to_vec()
}

/// Recomputes the IPv4 header checksum and the VRRP checksum (pseudo-header
/// when `pseudo`) after a test edited the packet.
fn repair(packet: &mut [u8], pseudo: bool) {
    packet[10..12].fill(0);
    let ip_sum = internet_checksum(&[&packet[..20]]);
    packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    packet[26..28].fill(0);
    let mut pseudo_header = Vec::new();
    if pseudo {
        pseudo_header.extend_from_slice(&packet[12..20]);
        pseudo_header.extend_from_slice(&[0, 112]);
        pseudo_header.extend_from_slice(&((len - 20) as u16).to_be_bytes());
    }
    let sum = internet_checksum(&[&pseudo_header, &packet[20..len]]);
    packet[26..28].copy_from_slice(&sum.to_be_bytes());
}

fn accept(config: &InstanceConfig, packet: &[u8]) -> Received {
    rx::check(config, packet).expect("valid advertisement")
}

fn reject(config: &InstanceConfig, packet: &[u8]) -> Reject {
    rx::check(config, packet).expect_err("rejected")
}

#[test]
fn keepalived_v3_advert_parses() {
    let packet = wire::ethernet_payload(&KA_V3).unwrap();
    let received = accept(&config(Version::V3), packet);
    assert_eq!(received.src, KEEPALIVED);
    assert_eq!(received.dst, wire::MULTICAST_GROUP);
    assert_eq!(
        received.advert,
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            adver_int: 100,
            addresses: vec![VIP],
        }
    );
    let resign = accept(&config(Version::V3), &ip(&KA_V3_RESIGN));
    assert_eq!(resign.advert.priority, 0);
}

#[test]
fn keepalived_v3_unicast_advert_parses() {
    let received = accept(&unicast_config(), &ip(&KA_V3_UNICAST));
    assert_eq!((received.src, received.dst), (KEEPALIVED, US));
    assert_eq!(received.advert.priority, 100);
}

#[test]
fn keepalived_v2_advert_parses() {
    let received = accept(&config(Version::V2), &ip(&KA_V2));
    assert_eq!(received.advert.version, Version::V2);
    assert_eq!(received.advert.adver_int, 100);
    assert_eq!(received.advert.addresses, [VIP]);
}

/// What we send is byte for byte what keepalived sends, but for the source
/// MAC: ours is the virtual MAC (RFC 5798 §7.3), keepalived's the interface
/// MAC unless `use_vmac`.
#[test]
fn our_adverts_match_keepalived_bytes() {
    let cases: [(&[u8], Version, Ipv4Addr, u8, u16); 4] = [
        (&KA_V3, Version::V3, wire::MULTICAST_GROUP, 100, 1),
        (&KA_V3_RESIGN, Version::V3, wire::MULTICAST_GROUP, 0, 4),
        (&KA_V3_UNICAST, Version::V3, US, 100, 1),
        (&KA_V2, Version::V2, wire::MULTICAST_GROUP, 100, 1),
    ];
    for (frame, version, dst, priority, id) in cases {
        let advert = Advert {
            version,
            vrid: 51,
            priority,
            adver_int: 100,
            addresses: vec![VIP],
        };
        let envelope = Envelope {
            src: KEEPALIVED,
            dst,
            id,
            pseudo_header: true,
        };
        let mut buf = [0u8; 64];
        let len =
            wire::emit_frame(&mut buf, &advert, &envelope, frame[..6].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len());
        assert_eq!(&buf[..6], &frame[..6]);
        assert_eq!(&buf[6..12], &wire::virtual_mac(51));
        assert_eq!(&buf[12..len], &frame[12..], "{version:?} to {dst}");
    }
}

/// The instance builds the frame the same way: IP IDs count from 1, source
/// MAC the virtual MAC.
#[test]
fn instance_writes_keepalived_compatible_frames() {
    let mut vrrp = Instance::new(InstanceConfig {
        primary: KEEPALIVED,
        priority: 100,
        ..config(Version::V3)
    })
    .unwrap();
    assert_eq!(vrrp.destinations(), [wire::MULTICAST_GROUP]);
    let mut buf = [0u8; 64];
    let len = vrrp
        .write_advert(100, wire::MULTICAST_GROUP, wire::MULTICAST_MAC, &mut buf)
        .unwrap();
    assert_eq!(&buf[..6], &KA_V3[..6]);
    assert_eq!(&buf[6..12], &vrrp.virtual_mac());
    assert_eq!(&buf[12..len], &KA_V3[12..]);
    assert_eq!(vrrp.stats().adverts_sent, 1);
    let unicast = Instance::new(InstanceConfig {
        unicast_peers: vec![US, Ipv4Addr::new(192, 0, 2, 30)],
        ..config(Version::V3)
    })
    .unwrap();
    assert_eq!(unicast.destinations(), [US, Ipv4Addr::new(192, 0, 2, 30)]);
}

/// RFC 5798 §6.4.1: a broadcast ARP request from the virtual MAC, sender
/// and target protocol address the VIP; keepalived's differs only in the
/// MACs (interface MAC; broadcast target hardware address).
#[test]
fn gratuitous_arp_layout() {
    let vrrp = Instance::new(config(Version::V3)).unwrap();
    let mut buf = [0u8; 64];
    let len = vrrp.write_garp(VIP, &mut buf).unwrap();
    assert_eq!(len, KA_GARP.len());
    let vmac = wire::virtual_mac(51);
    let mut expected = KA_GARP;
    expected[6..12].copy_from_slice(&vmac);
    expected[22..28].copy_from_slice(&vmac);
    expected[32..38].copy_from_slice(&vmac);
    assert_eq!(buf[..len], expected);
    assert!(matches!(
        wire::emit_garp(&mut buf[..41], 51, VIP),
        Err(wire::EmitError::BufferTooSmall { needed: 42, .. })
    ));
}

#[test]
fn ethernet_padding_is_ignored() {
    let mut frame = KA_V3.to_vec();
    frame.resize(60, 0);
    let packet = wire::ethernet_payload(&frame).unwrap();
    assert_eq!(accept(&config(Version::V3), packet).advert.priority, 100);
}

/// RFC 5798 §7.1: MUST verify the TTL is 255; keepalived skips the check
/// for unicast peers, which may be routed.
#[test]
fn ttl_other_than_255_is_rejected() {
    let mut packet = ip(&KA_V3);
    packet[8] = 254;
    repair(&mut packet, true);
    assert_eq!(reject(&config(Version::V3), &packet), Reject::Ttl(254));

    let mut packet = ip(&KA_V3_UNICAST);
    packet[8] = 64;
    repair(&mut packet, true);
    assert_eq!(accept(&unicast_config(), &packet).advert.priority, 100);
}

/// RFC 5798 §5.2.8 and §7.1: a bad checksum is rejected; a peer that leaves
/// the pseudo-header out is accepted with `checksum_pseudo_header` off, and
/// only then.
#[test]
fn checksum_with_and_without_pseudo_header() {
    let mut packet = ip(&KA_V3);
    packet[27] ^= 1;
    assert_eq!(reject(&config(Version::V3), &packet), Reject::Checksum);

    let mut no_pseudo = ip(&KA_V3);
    repair(&mut no_pseudo, false);
    assert_eq!(reject(&config(Version::V3), &no_pseudo), Reject::Checksum);
    let lenient = InstanceConfig {
        checksum_pseudo_header: false,
        ..config(Version::V3)
    };
    assert_eq!(accept(&lenient, &no_pseudo).advert.priority, 100);
    assert_eq!(reject(&lenient, &ip(&KA_V3)), Reject::Checksum);

    // And we send that form when asked.
    let advert = accept(&config(Version::V3), &ip(&KA_V3)).advert;
    let envelope = Envelope {
        src: KEEPALIVED,
        dst: wire::MULTICAST_GROUP,
        id: 1,
        pseudo_header: false,
    };
    let mut buf = [0u8; 64];
    let len = wire::emit_ipv4(&mut buf, &advert, &envelope).unwrap();
    assert_eq!(&buf[..len], &no_pseudo[..]);
    let message = VrrpPacket::new_checked(&buf[20..len]).unwrap();
    assert!(message.verify_checksum(ChecksumScope::Message));
}

/// RFC 3768 §5.3.8: the version 2 checksum covers the message only.
#[test]
fn version_2_checksum() {
    let mut packet = ip(&KA_V2);
    packet[27] ^= 0x80;
    assert_eq!(reject(&config(Version::V2), &packet), Reject::Checksum);
}

/// RFC 5798 §7.1: the packet must hold the complete message; nothing
/// shorter passes, and no length panics.
#[test]
fn truncated_packets_are_rejected() {
    let packet = ip(&KA_V3);
    for len in 0..packet.len() {
        let cut = &packet[..len];
        assert!(rx::check(&config(Version::V3), cut).is_err(), "{len}");
    }
    // Cut inside the IP header; cut after it with the total length intact.
    assert_eq!(
        reject(&config(Version::V3), &packet[..19]),
        Reject::Truncated
    );
    assert_eq!(
        reject(&config(Version::V3), &packet[..30]),
        Reject::Truncated
    );
    // Total length shortened to leave the VRRP header incomplete.
    let mut short = packet.clone();
    short[3] = 20 + 7;
    repair_ip_only(&mut short);
    assert_eq!(reject(&config(Version::V3), &short), Reject::Truncated);
    // Header complete, address cut.
    short[3] = 20 + 10;
    repair_ip_only(&mut short);
    assert_eq!(reject(&config(Version::V3), &short), Reject::Truncated);
    for len in 0..KA_V3.len() {
        assert!(wire::ethernet_payload(&KA_V3[..len])
            .and_then(|ip| rx::check(&config(Version::V3), ip))
            .is_err());
    }
}

fn repair_ip_only(packet: &mut [u8]) {
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    packet[10..12].fill(0);
    let sum = internet_checksum(&[&packet[..header_len]]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// RFC 5798 §7.1: the length must match the address count exactly.
#[test]
fn length_inconsistent_with_count_is_rejected() {
    let mut long = ip(&KA_V3);
    long.extend_from_slice(&[0, 0, 0, 0]);
    long[3] += 4;
    repair(&mut long, true);
    assert_eq!(
        reject(&config(Version::V3), &long),
        Reject::Length {
            got: 16,
            expected: 12
        }
    );
    // A version 2 message without its authentication data.
    let mut v2 = ip(&KA_V2);
    v2.truncate(v2.len() - 8);
    v2[3] -= 8;
    repair(&mut v2, false);
    assert_eq!(
        reject(&config(Version::V2), &v2),
        Reject::Length {
            got: 12,
            expected: 20
        }
    );
}

#[test]
fn version_type_and_vrid_are_checked() {
    assert_eq!(
        reject(&config(Version::V3), &ip(&KA_V2)),
        Reject::Version(2)
    );
    assert_eq!(
        reject(&config(Version::V2), &ip(&KA_V3)),
        Reject::Version(3)
    );
    let mut v4 = ip(&KA_V3);
    v4[20] = 0x41;
    repair(&mut v4, true);
    assert_eq!(reject(&config(Version::V3), &v4), Reject::Version(4));

    let mut kind = ip(&KA_V3);
    kind[20] = 0x32;
    repair(&mut kind, true);
    assert_eq!(reject(&config(Version::V3), &kind), Reject::Type(2));

    let other = InstanceConfig {
        vrid: 52,
        ..config(Version::V3)
    };
    assert_eq!(reject(&other, &ip(&KA_V3)), Reject::Vrid(51));
    assert_eq!(wire::peek_vrid(&ip(&KA_V3)), Some(51));
}

/// RFC 5798 §7.1 MAY verify the addresses; keepalived drops a packet whose
/// count or list differs from its own, and so do we.
#[test]
fn address_count_and_list_are_checked() {
    let two = InstanceConfig {
        vips: vec![VIP, Ipv4Addr::new(192, 0, 2, 101)],
        ..config(Version::V3)
    };
    assert_eq!(
        reject(&two, &ip(&KA_V3)),
        Reject::AddressCount {
            got: 1,
            expected: 2
        }
    );
    let other = InstanceConfig {
        vips: vec![Ipv4Addr::new(192, 0, 2, 101)],
        ..config(Version::V3)
    };
    assert_eq!(
        reject(&other, &ip(&KA_V3)),
        Reject::AddressList(Ipv4Addr::new(192, 0, 2, 101))
    );
}

/// RFC 3768 §7.1: version 2 MUST discard another interval, and we support
/// authentication type 0 only.
#[test]
fn version_2_interval_and_auth_type() {
    let slow = InstanceConfig {
        adver_int: 300,
        ..config(Version::V2)
    };
    assert_eq!(
        reject(&slow, &ip(&KA_V2)),
        Reject::Interval {
            got: 1,
            expected: 3
        }
    );
    let mut auth = ip(&KA_V2);
    auth[24] = 1;
    repair(&mut auth, false);
    assert_eq!(reject(&config(Version::V2), &auth), Reject::AuthType(1));
}

/// keepalived: multicast without unicast peers, unicast to us with them,
/// and only from a configured peer.
#[test]
fn destination_and_unicast_source() {
    assert_eq!(
        reject(&config(Version::V3), &ip(&KA_V3_UNICAST)),
        Reject::Destination(US)
    );
    assert_eq!(
        reject(&unicast_config(), &ip(&KA_V3)),
        Reject::Destination(wire::MULTICAST_GROUP)
    );
    let stranger = InstanceConfig {
        unicast_peers: vec![Ipv4Addr::new(192, 0, 2, 30)],
        ..config(Version::V3)
    };
    assert_eq!(
        reject(&stranger, &ip(&KA_V3_UNICAST)),
        Reject::NotUnicastPeer(KEEPALIVED)
    );
}

#[test]
fn own_adverts_and_address_owner_are_discarded() {
    let me = InstanceConfig {
        primary: KEEPALIVED,
        ..config(Version::V3)
    };
    assert_eq!(reject(&me, &ip(&KA_V3)), Reject::OwnAdvert);
    let owner = InstanceConfig {
        priority: 255,
        ..config(Version::V3)
    };
    assert_eq!(reject(&owner, &ip(&KA_V3)), Reject::AddressOwner);
}

#[test]
fn ip_layer_checks() {
    let cfg = config(Version::V3);
    let mut bad_sum = ip(&KA_V3);
    bad_sum[10] ^= 1;
    assert_eq!(reject(&cfg, &bad_sum), Reject::BadIpChecksum);

    let mut fragment = ip(&KA_V3);
    fragment[6] = 0x20; // More Fragments
    repair_ip_only(&mut fragment);
    assert_eq!(reject(&cfg, &fragment), Reject::Fragment);

    let mut tcp = ip(&KA_V3);
    tcp[9] = 6;
    repair_ip_only(&mut tcp);
    assert_eq!(reject(&cfg, &tcp), Reject::NotVrrp(6));

    let mut v6 = ip(&KA_V3);
    v6[0] = 0x65;
    assert_eq!(reject(&cfg, &v6), Reject::NotIpv4);

    let mut ihl = ip(&KA_V3);
    ihl[0] = 0x44;
    assert_eq!(reject(&cfg, &ihl), Reject::BadIpHeader);

    let mut arp = KA_GARP;
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert_eq!(wire::ethernet_payload(&arp), Err(Reject::NotIpv4));

    // IHL 6: the VRRP message starts after the option word.
    let mut options = ip(&KA_V3);
    options.splice(20..20, [1, 1, 1, 1]);
    options[0] = 0x46;
    options[3] += 4;
    repair_ip_only(&mut options);
    assert_eq!(accept(&cfg, &options).advert.priority, 100);
    assert_eq!(wire::peek_vrid(&options), Some(51));
}

/// The instance counts each rejection under its reason.
#[test]
fn instance_counts_rejections() {
    let mut vrrp = Instance::new(config(Version::V3)).unwrap();
    vrrp.startup(0);
    let mut packet = ip(&KA_V3);
    packet[8] = 1;
    repair(&mut packet, true);
    assert_eq!(vrrp.receive(10, &packet), Err(Reject::Ttl(1)));
    assert_eq!(vrrp.receive(20, &ip(&KA_V2)), Err(Reject::Version(2)));
    assert_eq!(vrrp.receive(30, &ip(&KA_V3)), Ok(()));
    let stats = vrrp.stats();
    assert_eq!(stats.rejected[Reject::Ttl(0).index()], 1);
    assert_eq!(stats.rejected[Reject::Version(0).index()], 1);
    assert_eq!(stats.rejected.iter().sum::<u64>(), 2);
    assert_eq!(stats.adverts_received, 1);
    assert_eq!(Reject::Ttl(1).name(), "ttl");
    // keepalived at 100 is below our 150: discarded under preemption.
    assert_eq!(vrrp.status().master, None);
}
