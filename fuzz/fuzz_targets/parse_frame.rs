//! Parses arbitrary frames as a worker would, then applies the NAT
//! rewrites to whatever parsed: neither may panic, and a rewritten frame
//! must still parse to the summary the rewrite reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pylon_wire::rewrite::{decrement_ttl, set_endpoint, End};
use pylon_wire::{parse, Frame};

fuzz_target!(|data: &[u8]| {
    let Ok(Frame::Ipv4(mut s)) = parse(data) else { return };
    let mut frame = data.to_vec();
    set_endpoint(&mut frame, &mut s, End::Destination, 0x0a00_020b, 8080);
    set_endpoint(&mut frame, &mut s, End::Source, 0x0a00_0164, 80);
    if s.ttl > 1 {
        decrement_ttl(&mut frame, &mut s);
    }
    assert_eq!(parse(&frame), Ok(Frame::Ipv4(s)));
});
