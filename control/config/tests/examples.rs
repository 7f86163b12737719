//! Every example in the workspace's `configs/` directory validates.

use std::path::Path;

use pylon_config::Config;

#[test]
fn every_example_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Err(e) = Config::load(&path) {
                panic!("example does not validate: {e}");
            }
            checked.push(path);
        }
    }
    assert!(
        checked.iter().any(|path| path.ends_with("nat.toml")),
        "no configs/nat.toml among {checked:?}"
    );
}

/// `configs/health.toml` resolves server by server as its comments say:
/// service defaults, per-server overrides (port, initial state, another
/// kind), and the management interface and address of `[control]` on
/// every check.
#[test]
fn health_example_resolves_server_by_server() {
    use std::net::Ipv4Addr;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/health.toml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut checks = Vec::new();
    for service in &config.services {
        for server in &service.servers {
            let check = server.check.as_ref().expect("every server is checked");
            assert_eq!(check.interface.as_deref(), Some("mgmt0"));
            assert_eq!(check.source, Some(Ipv4Addr::new(10, 10, 0, 250)));
            checks.push(format!(
                "{}/{}: {} port {:?}, initial {}, every {:?}, on_down {}",
                service.name,
                server.address,
                check.kind(),
                check.port,
                check.initial,
                check.interval,
                check.on_down
            ));
        }
    }
    assert_eq!(
        checks,
        [
            "web/10.10.0.11: http port None, initial up, every 1s, on_down keep",
            "web/10.10.0.12: http port Some(8081), initial down, every 1s, on_down keep",
            "smtp/10.10.0.21: tcp port None, initial up, every 2s, on_down expire",
            "smtp/10.10.0.22: tcp port None, initial up, every 2s, on_down expire",
            "dns/10.10.0.31: exec port None, initial up, every 5s, on_down keep",
            "dns/10.10.0.32: icmp port None, initial up, every 5s, on_down keep",
        ]
    );
    let sorry = config.services[0]
        .sorry
        .as_ref()
        .expect("web has a sorry server");
    assert_eq!(
        (sorry.address, sorry.port),
        (Ipv4Addr::new(10, 10, 0, 99), 8080)
    );
}
