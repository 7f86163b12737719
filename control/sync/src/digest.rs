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

const MODES: [Mode; 3] = [Mode::Nat, Mode::Dsr, Mode::Tunnel];

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

/// Reads a canonical text back (a pushed configuration, see
/// `PROTOCOL.md`, "Configuration push"); the error names the line.
pub fn parse_canonical(text: &str) -> Result<Vec<ServiceDesc>, String> {
    fn addr(s: &str) -> Option<(Ipv4Addr, u16)> {
        let (ip, port) = s.split_once(':')?;
        Some((ip.parse().ok()?, port.parse().ok()?))
    }
    let mut out: Vec<ServiceDesc> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("line {}: `{}`", n + 1, line.escape_debug());
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["service", at, name, scheduler, mode] => {
                let (vp, proto) = at.split_once('/').ok_or_else(bad)?;
                let (vip, port) = addr(vp).ok_or_else(bad)?;
                let mode = MODES
                    .into_iter()
                    .find(|&m| mode_name(m) == *mode)
                    .ok_or_else(bad)?;
                out.push(ServiceDesc {
                    name: (*name).to_owned(),
                    vip,
                    port,
                    proto: proto.parse().map_err(|_| bad())?,
                    scheduler: (*scheduler).to_owned(),
                    mode,
                    servers: Vec::new(),
                    sorry: None,
                });
            }
            ["server", at, weight] => {
                let (ip, port) = addr(at).ok_or_else(bad)?;
                let weight = weight.parse().map_err(|_| bad())?;
                out.last_mut()
                    .ok_or_else(bad)?
                    .servers
                    .push((ip, port, weight));
            }
            ["sorry", at] => {
                out.last_mut().ok_or_else(bad)?.sorry = Some(addr(at).ok_or_else(bad)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
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
    fn canonical_text_reads_back() {
        let mut dns = web();
        dns.name = "dns".into();
        dns.port = 53;
        dns.proto = 17;
        dns.mode = Mode::Dsr;
        dns.sorry = Some((Ipv4Addr::new(10, 0, 2, 20), 53));
        let text = canonical(&[web(), dns]);
        let back = parse_canonical(&text).unwrap();
        assert_eq!(canonical(&back), text);
        for bad in [
            "server 10.0.2.11:8080 1\n",
            "service 10.0.1.100:80/6 web wlc ipip\n",
            "service 10.0.1.100:80 web wlc nat\n",
            "service 10.0.1.100:80/6 web wlc nat\nserver 10.0.2.11 1\n",
            "service 10.0.1.100:80/6 web wlc nat\nserver 10.0.2.11:8080 x\n",
            "hello\n",
        ] {
            assert!(parse_canonical(bad).is_err(), "{bad:?}");
        }
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
