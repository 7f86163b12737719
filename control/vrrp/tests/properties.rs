//! Property tests: no input makes a parser panic, what we emit we accept,
//! any corruption of it is rejected, and random event sequences keep the
//! state machine's invariants.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use pylon_vrrp::rx;
use pylon_vrrp::wire::{self, Envelope};
use pylon_vrrp::{Action, Advert, Instance, InstanceConfig, State, Tracking, Version};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn config(version: Version, vips: Vec<Ipv4Addr>, adver_int: u16) -> InstanceConfig {
    InstanceConfig {
        vrid: 51,
        version,
        priority: 100,
        adver_int,
        preempt: true,
        preempt_delay: 0,
        vips,
        primary: LOCAL,
        unicast_peers: Vec::new(),
        checksum_pseudo_header: true,
        garp_repeat: 3,
        garp_delay: 2000,
        garp_refresh: 10_000,
        garp_refresh_repeat: 1,
    }
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V2), Just(Version::V3)]
}

/// A valid advert of either version and the instance config that accepts
/// it.
fn advert() -> impl Strategy<Value = (Advert, InstanceConfig)> {
    (
        version(),
        1u8..=255,
        1u16..=255,
        1u16..=4095,
        prop::collection::btree_set(any::<[u8; 4]>(), 1..20),
    )
        .prop_map(|(version, priority, seconds, centis, addresses)| {
            let adver_int = match version {
                Version::V2 => seconds * 100,
                Version::V3 => centis,
            };
            let addresses: Vec<Ipv4Addr> = addresses.into_iter().map(Ipv4Addr::from).collect();
            let advert = Advert {
                version,
                vrid: 51,
                priority,
                adver_int,
                addresses: addresses.clone(),
            };
            (advert, config(version, addresses, adver_int))
        })
}

fn emit(advert: &Advert) -> Vec<u8> {
    let envelope = Envelope {
        src: PEER,
        dst: wire::MULTICAST_GROUP,
        id: 7,
        pseudo_header: true,
    };
    let mut buf = vec![0u8; wire::frame_len(advert)];
    let len = wire::emit_frame(&mut buf, advert, &envelope, wire::MULTICAST_MAC).unwrap();
    assert_eq!(len, buf.len());
    buf
}

proptest! {
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let cfg = config(Version::V3, vec![Ipv4Addr::new(192, 0, 2, 100)], 100);
        let _ = rx::check(&cfg, &bytes);
        let _ = wire::ethernet_payload(&bytes).and_then(|ip| rx::check(&cfg, ip));
        let _ = wire::parse_ipv4(&bytes);
        let _ = Advert::parse(&bytes);
        let _ = wire::peek_vrid(&bytes);
    }

    /// Arbitrary bytes behind a plausible IPv4 header reach the deeper
    /// checks.
    #[test]
    fn vrrp_payloads_never_panic(
        payload in prop::collection::vec(any::<u8>(), 0..1100),
        version in version(),
    ) {
        let mut packet = vec![0x45, 0xc0, 0, 0, 0, 1, 0, 0, 255, 112, 0, 0,
                              192, 0, 2, 10, 224, 0, 0, 18];
        packet.extend_from_slice(&payload);
        let len = packet.len() as u16;
        packet[2..4].copy_from_slice(&len.to_be_bytes());
        let sum = !fold(&packet[..20]);
        packet[10..12].copy_from_slice(&sum.to_be_bytes());
        let cfg = config(version, vec![Ipv4Addr::new(192, 0, 2, 100)], 100);
        prop_assert!(wire::parse_ipv4(&packet).is_ok());
        let _ = rx::check(&cfg, &packet);
    }

    #[test]
    fn emitted_adverts_round_trip((advert, cfg) in advert()) {
        let frame = emit(&advert);
        let received = rx::check(&cfg, wire::ethernet_payload(&frame).unwrap()).unwrap();
        prop_assert_eq!(received.advert, advert);
        prop_assert_eq!(received.src, PEER);
    }

    /// Any change to one byte of the IP packet is caught by a check (the
    /// header and VRRP checksums catch what no other rule does).
    #[test]
    fn corrupted_adverts_are_rejected(
        (advert, cfg) in advert(),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut frame = emit(&advert);
        let at = 14 + position.index(frame.len() - 14);
        frame[at] ^= flip;
        prop_assert!(rx::check(&cfg, &frame[14..]).is_err(), "byte {} ^ {:#x}", at, flip);
    }

    /// Random events on a fake clock: never a panic, actions consistent
    /// with the state, a pending deadline whenever one is owed.
    #[test]
    fn state_machine_invariants(
        priority in 1u8..=255,
        preempt in any::<bool>(),
        events in prop::collection::vec((0u64..3000, 0u8..7, 0u8..=255, 1u16..=200, any::<bool>()), 1..80),
    ) {
        let mut vrrp = Instance::new(InstanceConfig {
            priority,
            preempt,
            preempt_delay: 1500,
            ..config(Version::V3, vec![Ipv4Addr::new(192, 0, 2, 100)], 100)
        }).unwrap();
        let mut now = 0;
        let mut state = State::Initialize;
        for (step, event, value, interval, flag) in events {
            now += step;
            match event {
                0 => vrrp.startup(now),
                1 => vrrp.shutdown(now),
                2 | 3 => {
                    let advert = Advert {
                        version: Version::V3,
                        vrid: 51,
                        priority: value,
                        adver_int: interval,
                        addresses: vec![Ipv4Addr::new(192, 0, 2, 100)],
                    };
                    vrrp.on_advert(now, &advert, if flag { PEER } else { Ipv4Addr::new(192, 0, 2, 30) });
                }
                4 => vrrp.set_tracking(now, Tracking {
                    priority_delta: i32::from(value) - 128,
                    fault: flag && value % 4 == 0,
                }),
                _ => {
                    if let Some(at) = vrrp.poll_timeout() {
                        now = now.max(at);
                        vrrp.on_timer(now);
                    }
                }
            }
            while let Some(action) = vrrp.poll_action() {
                match action {
                    Action::StateChange { from, to, .. } => {
                        prop_assert_eq!(from, state);
                        prop_assert_ne!(from, to);
                        state = to;
                    }
                    Action::SendAdvert { priority: p } => {
                        prop_assert!(p == 0 || state == State::Master, "{:?} {}", state, p);
                    }
                    Action::SendGarp { count } => {
                        prop_assert_eq!(state, State::Master);
                        prop_assert!(count > 0);
                    }
                }
            }
            prop_assert_eq!(vrrp.state(), state);
            prop_assert_eq!(vrrp.owns_vips(), state == State::Master);
            prop_assert!(vrrp.priority() >= 1);
            prop_assert_eq!(vrrp.priority() == 255, priority == 255);
            let timed = matches!(state, State::Backup | State::Master);
            prop_assert_eq!(vrrp.poll_timeout().is_some(), timed);
        }
    }
}

/// RFC 1071 sum folded to 16 bits.
fn fold(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
