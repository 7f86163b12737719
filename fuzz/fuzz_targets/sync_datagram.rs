//! Feeds arbitrary bytes to the sync protocol as a peer's datagram: the
//! decoder and the endpoint must never panic, and a rejected datagram must
//! yield no connection event. When the first byte is odd the rest is
//! signed with the right key first (its body length fixed up), so the body
//! parser and the session rules behind the HMAC check are reached too.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use pylon_sync::{wire, Config, Endpoint, Event, Key};
use sha2::Sha256;
use std::net::SocketAddr;

const KEY: &[u8] = b"pylon fuzz key of thirty-two b!!";

fuzz_target!(|data: &[u8]| {
    let key = Key::new(KEY).expect("32-byte key");
    let peer: SocketAddr = ([10, 9, 0, 2], 8848).into();
    let mut ep = Endpoint::new(
        Config {
            peers: vec![peer],
            max_rate: 1000,
            startup_timeout_ms: 1000,
        },
        key.clone(),
        7,
        0,
    );
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut datagram = rest.to_vec();
    if mode & 1 == 1 && datagram.len() >= wire::HEADER_LEN && datagram.len() < 65536 {
        let body = (datagram.len() - wire::HEADER_LEN) as u16;
        datagram[6..8].copy_from_slice(&body.to_be_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("any key length");
        mac.update(&datagram);
        datagram.extend_from_slice(&mac.finalize().into_bytes());
    }
    let _ = wire::decode(&key, &datagram);
    let accepted = ep.handle(1, peer, &datagram).is_ok();
    ep.handle_timeout(2);
    while let Some(e) = ep.poll_event() {
        if let Event::Conn { .. } = e {
            assert!(accepted, "a connection event from a rejected datagram");
        }
    }
    while ep.poll_transmit(3).is_some() {}
});
