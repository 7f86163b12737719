//! The configuration digest: SHA-256 over a canonical text of the running
//! services, their real servers and configured weights, so two appliances
//! can tell whether they would schedule alike without shipping their
//! configurations (keepalived has no such check; operators diff files).
//!
//! The text lists services sorted by (VIP, port, protocol) and each
//! service's servers sorted by (address, port), one line each:
//!
//! ```text
//! service 10.0.1.100:80/6 web wlc nat
//! server 10.0.2.11:8080 1
//! sorry 10.0.2.20:8080
//! ```
//!
//! Health (up or down) is left out: each appliance checks on its own, and
//! a server one of them briefly sees down is no configuration difference.

use crate::wire::{Digest, Mode, DIGEST_LEN};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// One service as the digest sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDesc {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
    /// ipvsadm's name: `rr`, `wrr`, `lc`, `wlc`.
    pub scheduler: String,
    pub mode: Mode,
    /// (address, port, configured weight).
    pub servers: Vec<(Ipv4Addr, u16, u32)>,
    pub sorry: Option<(Ipv4Addr, u16)>,
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Nat => "nat",
        Mode::Dsr => "dsr",
        Mode::Tunnel => "tunnel",
    }
}

/// The canonical text hashed by [`digest`].
pub fn canonical(services: &[ServiceDesc]) -> String {
    let mut sorted: Vec<&ServiceDesc> = services.iter().collect();
    sorted.sort_by_key(|s| (s.vip, s.port, s.proto));
    let mut text = String::new();
    for s in sorted {
        let _ = writeln!(
            text,
            "service {}:{}/{} {} {} {}",
            s.vip,
            s.port,
            s.proto,
            s.name,
            s.scheduler,
            mode_name(s.mode)
        );
        let mut servers = s.servers.clone();
        servers.sort();
        for (addr, port, weight) in servers {
            let _ = writeln!(text, "server {addr}:{port} {weight}");
        }
        if let Some((addr, port)) = s.sorry {
            let _ = writeln!(text, "sorry {addr}:{port}");
        }
    }
    text
}

/// The digest of `services`, with their counts (saturated at 65535).
pub fn digest(services: &[ServiceDesc]) -> Digest {
    let hash: [u8; DIGEST_LEN] = Sha256::digest(canonical(services).as_bytes()).into();
    let servers: usize = services.iter().map(|s| s.servers.len()).sum();
    Digest {
        hash,
        services: u16::try_from(services.len()).unwrap_or(u16::MAX),
        servers: u16::try_from(servers).unwrap_or(u16::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> ServiceDesc {
        ServiceDesc {
            name: "web".into(),
            vip: Ipv4Addr::new(10, 0, 1, 100),
            port: 80,
            proto: 6,
            scheduler: "wlc".into(),
            mode: Mode::Nat,
            servers: vec![
                (Ipv4Addr::new(10, 0, 2, 12), 8080, 2),
                (Ipv4Addr::new(10, 0, 2, 11), 8080, 1),
            ],
            sorry: None,
        }
    }

    #[test]
    fn canonical_text_is_sorted_and_complete() {
        assert_eq!(
            canonical(&[web()]),
            "service 10.0.1.100:80/6 web wlc nat\n\
             server 10.0.2.11:8080 1\n\
             server 10.0.2.12:8080 2\n"
        );
    }

    #[test]
    fn order_does_not_matter_but_weights_do() {
        let mut dns = web();
        dns.name = "dns".into();
        dns.port = 53;
        dns.proto = 17;
        let a = digest(&[web(), dns.clone()]);
        let b = digest(&[dns.clone(), web()]);
        assert_eq!(a, b);
        assert_eq!((a.services, a.servers), (2, 4));
        let mut heavier = web();
        heavier.servers[0].2 = 3;
        assert_ne!(digest(&[heavier, dns]), a);
    }
}
