//! The `[sync]` table through `Config::parse`: defaults, and errors with
//! their key paths.

use pylon_config::Config;
use std::path::Path;

const BASE: &str = "[[ports]]\nname = \"p\"\ndevice = \"net_tap0\"\naddress = \"10.0.1.1/24\"\n";
const KEY: &str = "00112233445566778899aabbccddeeff";

fn parse(sync: &str) -> Result<Config, String> {
    Config::parse(&format!("{BASE}\n[sync]\n{sync}"), Path::new("s.toml"))
        .map_err(|e| e.to_string())
}

#[test]
fn no_sync_by_default() {
    let c = Config::parse(BASE, Path::new("s.toml")).unwrap();
    assert!(c.sync.is_none());
}

#[test]
fn a_minimal_table_gets_the_defaults() {
    let c = parse(&format!(
        "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\"]\nkey = \"{KEY}\"\n"
    ))
    .unwrap();
    let s = c.sync.unwrap();
    assert_eq!(s.listen.to_string(), "10.9.0.1:8848");
    assert_eq!(
        (s.max_rate, s.startup_timeout, s.refresh, s.queue),
        (10_000, 10, 60, 65_536)
    );
    assert_eq!(s.interface, None);
}

#[test]
fn errors_name_the_key() {
    let e = parse(&format!(
        "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.1:8848\"]\nkey = \"{KEY}\"\n"
    ))
    .unwrap_err();
    assert!(
        e.starts_with("s.toml: sync.peers[0]: 10.9.0.1:8848 is our own"),
        "{e}"
    );
    let e = parse("listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\"]\nkey = \"abc\"\n")
        .unwrap_err();
    assert!(e.starts_with("s.toml: sync.key: "), "{e}");
    let e = parse(&format!(
        "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\"]\nkey = \"{KEY}\"\nmax_rate = 0\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("sync.max_rate: 0 is out of range 1..=1000000"),
        "{e}"
    );
    let e = parse(&format!(
        "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\"]\nkey = \"{KEY}\"\ninterface = \"a/b\"\n"
    ))
    .unwrap_err();
    assert!(e.contains("sync.interface"), "{e}");
    let e = parse("peers = [\"10.9.0.2:8848\"]\n").unwrap_err();
    assert!(
        e.contains("sync.listen: required key is missing") || e.contains("sync.key"),
        "{e}"
    );
}
