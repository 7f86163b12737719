//! Parsing, defaults, validation rules, EAL arguments and routing of
//! `pylon-config`, on inline TOML fixtures.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use pylon_config::{Config, ConfigError, Forwarding, Protocol, Scheduler};

const ORIGIN: &str = "test.toml";

/// Two af_packet ports, 10.0.1.1/24 (clients, default gateway 10.0.1.254)
/// and 10.0.2.1/24 (servers).
const PORTS: &str = r#"
[[ports]]
name = "client"
device = "net_af_packet0,iface=lb-c"
address = "10.0.1.1/24"
gateway = "10.0.1.254"

[[ports]]
name = "server"
device = "net_af_packet1,iface=lb-s"
address = "10.0.2.1/24"
"#;

/// One service with two real servers on the server port's subnet.
const WEB: &str = r#"
[[services]]
name = "web"
vip = "10.0.1.100"
port = 80
protocol = "tcp"
[[services.servers]]
address = "10.0.2.11"
port = 8080
[[services.servers]]
address = "10.0.2.12"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(ORIGIN))
}

fn ok(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("valid config rejected: {e}\n{text}"),
    }
}

/// Asserts that `text` is rejected at `key` with a problem containing
/// `fragment`.
fn bad(text: &str, key: &str, fragment: &str) {
    let e = match parse(text) {
        Ok(_) => panic!("invalid config accepted (expected {key}: {fragment}):\n{text}"),
        Err(e) => e,
    };
    assert_eq!(e.file, PathBuf::from(ORIGIN), "{e}");
    assert_eq!(e.key, key, "{e}");
    assert!(
        e.problem.contains(fragment),
        "problem {:?} lacks {fragment:?}",
        e.problem
    );
}

/// `PORTS` and `WEB` with `extra` before them (for sections).
fn with(extra: &str) -> String {
    format!("{extra}\n{PORTS}\n{WEB}")
}

// ---------------------------------------------------------------- good configs

#[test]
fn minimal_config_takes_every_default() {
    let config = ok(r#"
        [[ports]]
        name = "p0"
        device = "net_tap0"
        address = "10.0.1.1/24"
    "#);
    let eal = &config.eal;
    assert_eq!(eal.file_prefix, "pylon");
    assert_eq!(eal.main_lcore, 0);
    assert_eq!(eal.lcores, None);
    assert_eq!(eal.memory_mb, 512);
    assert!(!eal.no_huge);
    assert!(eal.args.is_empty());
    assert_eq!(eal.mbufs, 8191);
    assert_eq!(eal.mbuf_cache, 256);

    let dp = &config.dataplane;
    assert_eq!(dp.workers, [1]);
    assert_eq!(dp.burst, 32);
    assert_eq!(dp.rx_desc, 1024);
    assert_eq!(dp.tx_desc, 1024);
    assert_eq!(dp.conn_capacity, 1_048_576);
    assert_eq!(dp.idle_polls, 0);
    assert_eq!(dp.idle_sleep_us, 100);

    let t = &config.timeouts;
    assert_eq!(
        [
            t.tcp_established,
            t.tcp_syn,
            t.tcp_fin_wait,
            t.tcp_close_wait,
            t.tcp_last_ack,
            t.tcp_time_wait,
            t.tcp_close,
            t.udp
        ],
        [900, 60, 120, 60, 30, 120, 10, 300]
    );
    assert_eq!(config.neighbors.refresh, 30);
    assert_eq!(config.neighbors.expiry, 90);
    assert_eq!(
        config.control.stats_file,
        PathBuf::from("/run/pylon/stats.json")
    );
    assert_eq!(config.control.log, "info");
    assert_eq!(
        config.control.socket,
        PathBuf::from("/run/pylon/pylon.sock")
    );
    assert_eq!(config.control.metrics, None);

    assert_eq!(config.ports.len(), 1);
    assert_eq!(config.ports[0].gateway, None);
    assert!(config.services.is_empty());
}

#[test]
fn service_defaults() {
    let config = ok(&with(""));
    let web = &config.services[0];
    assert_eq!(web.scheduler, Scheduler::Wlc);
    assert_eq!(web.forwarding, Forwarding::Nat);
    assert_eq!(web.servers[0].port, 8080);
    assert_eq!(web.servers[0].weight, 1);
    // A server without a port takes the service's.
    assert_eq!(web.servers[1].port, 80);
}

const FULL: &str = r#"
[eal]
file_prefix = "pylon-test"
main_lcore = 0
lcores = "0@0,1@1,2@1"
memory_mb = 256
no_huge = true
args = ["--log-level", "lib.eal:debug"]
mbufs = 16383
mbuf_cache = 128

[dataplane]
workers = [1, 2]
burst = 64
rx_desc = 512
tx_desc = 2048
conn_capacity = 65536
idle_polls = 1000
idle_sleep_us = 50

[timeouts]
tcp_established = 1
tcp_syn = 2
tcp_fin_wait = 3
tcp_close_wait = 4
tcp_last_ack = 5
tcp_time_wait = 6
tcp_close = 7
udp = 2000000

[neighbors]
refresh = 10
expiry = 11

[control]
stats_file = "/tmp/pylon-stats.json"
log = "pylon=debug,warn"

[[ports]]
name = "client"
device = "net_af_packet0,iface=lb-c"
address = "10.0.1.1/24"
gateway = "10.0.1.254"

[[ports]]
name = "server"
device = "net_tap0"
address = "10.0.2.1/24"

[[services]]
name = "web"
vip = "10.0.1.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
forwarding = "nat"
[[services.servers]]
address = "10.0.2.11"
port = 8080
weight = 0
[[services.servers]]
address = "192.0.2.7"
port = 8081
weight = 65535

[[services]]
name = "dns"
vip = "10.0.1.100"
port = 53
protocol = "udp"
scheduler = "rr"
[[services.servers]]
address = "10.0.2.11"
"#;

#[test]
fn full_config_sets_every_key() {
    let config = ok(FULL);
    let eal = &config.eal;
    assert_eq!(eal.file_prefix, "pylon-test");
    assert_eq!(eal.lcores.as_deref(), Some("0@0,1@1,2@1"));
    assert_eq!(eal.memory_mb, 256);
    assert!(eal.no_huge);
    assert_eq!(eal.args, ["--log-level", "lib.eal:debug"]);
    assert_eq!((eal.mbufs, eal.mbuf_cache), (16383, 128));

    let dp = &config.dataplane;
    assert_eq!(dp.workers, [1, 2]);
    assert_eq!((dp.burst, dp.rx_desc, dp.tx_desc), (64, 512, 2048));
    assert_eq!(dp.conn_capacity, 65536);
    assert_eq!((dp.idle_polls, dp.idle_sleep_us), (1000, 50));

    let t = &config.timeouts;
    assert_eq!(
        [
            t.tcp_established,
            t.tcp_syn,
            t.tcp_fin_wait,
            t.tcp_close_wait,
            t.tcp_last_ack,
            t.tcp_time_wait,
            t.tcp_close,
            t.udp
        ],
        [1, 2, 3, 4, 5, 6, 7, 2_000_000]
    );
    assert_eq!(
        (config.neighbors.refresh, config.neighbors.expiry),
        (10, 11)
    );
    assert_eq!(
        config.control.stats_file,
        PathBuf::from("/tmp/pylon-stats.json")
    );
    assert_eq!(config.control.log, "pylon=debug,warn");

    let client = &config.ports[0];
    assert_eq!(client.name, "client");
    assert_eq!(client.dpdk_name(), "net_af_packet0");
    assert_eq!(client.address.addr(), Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(client.address.prefix_len(), 24);
    assert_eq!(client.gateway, Some(Ipv4Addr::new(10, 0, 1, 254)));
    assert_eq!(config.ports[1].dpdk_name(), "net_tap0");

    let web = &config.services[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.vip, Ipv4Addr::new(10, 0, 1, 100));
    assert_eq!(web.port, 80);
    assert_eq!(web.protocol, Protocol::Tcp);
    assert_eq!(web.scheduler, Scheduler::Wrr);
    assert_eq!(web.forwarding, Forwarding::Nat);
    assert_eq!(web.servers[0].weight, 0);
    assert_eq!(web.servers[1].address, Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(web.servers[1].port, 8081);
    assert_eq!(web.servers[1].weight, 65535);
    let dns = &config.services[1];
    assert_eq!(
        (dns.protocol, dns.scheduler),
        (Protocol::Udp, Scheduler::Rr)
    );
    assert_eq!(dns.servers[0].port, 53);
    assert_eq!(
        format!("{} {} {}", dns.protocol, dns.scheduler, dns.forwarding),
        "udp rr nat"
    );
}

#[test]
fn every_scheduler_name() {
    for (name, scheduler) in [
        ("rr", Scheduler::Rr),
        ("wrr", Scheduler::Wrr),
        ("lc", Scheduler::Lc),
        ("wlc", Scheduler::Wlc),
    ] {
        let text = with("").replace(
            "protocol = \"tcp\"",
            &format!("protocol = \"tcp\"\nscheduler = \"{name}\""),
        );
        assert_eq!(ok(&text).services[0].scheduler, scheduler);
        assert_eq!(scheduler.to_string(), name);
    }
}

#[test]
fn pci_address_is_lowercased_and_keeps_devargs() {
    let config = ok(r#"
        [[ports]]
        name = "wan"
        device = "0000:0A:00.1,rx_low_latency=1"
        address = "10.0.1.1/24"
    "#);
    let port = &config.ports[0];
    assert_eq!(port.device, "0000:0a:00.1,rx_low_latency=1");
    assert_eq!(port.dpdk_name(), "0000:0a:00.1");
    assert!(port.is_pci());
}

#[test]
fn slash_31_port_has_no_network_or_broadcast_address() {
    let config = ok(r#"
        [[ports]]
        name = "p2p"
        device = "net_tap0"
        address = "10.0.1.0/31"
        gateway = "10.0.1.1"
    "#);
    assert_eq!(config.ports[0].gateway, Some(Ipv4Addr::new(10, 0, 1, 1)));
}

// ------------------------------------------------------------- file and syntax

#[test]
fn unreadable_file_has_empty_key() {
    let path = Path::new("/nonexistent/pylon/config.toml");
    let e = Config::load(path).unwrap_err();
    assert_eq!(e.file, path);
    assert_eq!(e.key, "");
    assert!(e.problem.contains("No such file"), "{e}");
    assert_eq!(e.to_string(), format!("{}: {}", path.display(), e.problem));
}

#[test]
fn load_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("pylon-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("good.toml");
    std::fs::write(&path, with("")).unwrap();
    let loaded = Config::load(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(loaded.unwrap(), ok(&with("")));
}

#[test]
fn error_display_names_file_key_and_problem() {
    let e = parse(&with("[dataplane]\nburst = 0")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "test.toml: dataplane.burst: 0 is out of range 1..=64 (line 2, column 9)"
    );
}

#[test]
fn syntax_error_has_line_and_column() {
    bad("[eal\nmbufs = 1\n", "", "(line 1, column 5)");
    bad("[eal]\nmbufs = \n", "", "(line 2, column 9)");
}

#[test]
fn unknown_keys_are_rejected() {
    bad(
        &with("foo = 1"),
        "foo",
        "unknown key `foo`; expected one of `eal`",
    );
    bad(
        &with("[eal]\nhuge = true"),
        "eal.huge",
        "unknown key `huge`; expected one of `file_prefix`",
    );
    bad(
        &format!("{PORTS}\n{WEB}\nbackup = true"),
        "services[0].servers[1].backup",
        "unknown key `backup`",
    );
    bad(
        &with("[keepalived]"),
        "keepalived",
        "unknown key `keepalived`",
    );
}

#[test]
fn missing_keys_are_named() {
    bad(
        &format!("{PORTS}\n[[services]]\nname = \"x\"\nvip = \"10.0.1.9\"\nport = 1\n[[services.servers]]\naddress = \"10.0.2.9\""),
        "services[0].protocol",
        "required key is missing",
    );
    bad(
        "[[ports]]\nname = \"p\"\naddress = \"10.0.1.1/24\"",
        "ports[0].device",
        "required key is missing",
    );
}

#[test]
fn wrong_types_are_rejected() {
    bad(
        &with("[eal]\nno_huge = \"yes\""),
        "eal.no_huge",
        "invalid type",
    );
    bad(
        &with("[dataplane]\nworkers = 1"),
        "dataplane.workers",
        "invalid type",
    );
}

// ------------------------------------------------------------------ addresses

#[test]
fn bad_ipv4_address() {
    let text = with("").replace("10.0.2.12", "10.0.2.300");
    bad(
        &text,
        "services[0].servers[1].address",
        "`10.0.2.300` is not an IPv4 address",
    );
    bad(
        &with("").replace("\"10.0.1.100\"", "\"web.example\""),
        "services[0].vip",
        "not an IPv4 address",
    );
    bad(
        &with("").replace("10.0.1.254", "10.0.1"),
        "ports[0].gateway",
        "not an IPv4 address",
    );
}

#[test]
fn bad_port_address_or_prefix() {
    bad(
        &with("").replace("10.0.1.1/24", "10.0.1.1/33"),
        "ports[0].address",
        "not an IPv4 address with a prefix length",
    );
    bad(
        &with("").replace("10.0.1.1/24", "10.0.1.1"),
        "ports[0].address",
        "not an IPv4 address with a prefix length",
    );
    bad(
        &with("").replace("10.0.1.1/24", "10.0.1.1/32"),
        "ports[0].address",
        "prefix length /32 is out of range",
    );
    bad(
        &with("").replace("10.0.1.1/24", "10.0.1.0/24"),
        "ports[0].address",
        "network address of 10.0.1.0/24",
    );
    bad(
        &with("").replace("10.0.1.1/24", "10.0.1.255/24"),
        "ports[0].address",
        "broadcast address of 10.0.1.0/24",
    );
    bad(
        &with("").replace("10.0.1.1/24", "224.0.0.1/24"),
        "ports[0].address",
        "multicast",
    );
}

#[test]
fn vip_must_not_be_a_port_address() {
    bad(
        &with("").replace("vip = \"10.0.1.100\"", "vip = \"10.0.2.1\""),
        "services[0].vip",
        "10.0.2.1 is the address of ports[1] (`server`)",
    );
}

#[test]
fn vip_must_be_unicast() {
    for (vip, what) in [
        ("0.0.0.0", "unspecified"),
        ("239.1.1.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("127.0.0.1", "loopback"),
        ("10.0.1.255", "broadcast address of 10.0.1.0/24"),
    ] {
        bad(
            &with("").replace("10.0.1.100", vip),
            "services[0].vip",
            what,
        );
    }
}

// ------------------------------------------------------------------- services

#[test]
fn duplicate_service() {
    let second = WEB.replace("name = \"web\"", "name = \"web2\"");
    bad(
        &format!("{}\n{second}", with("")),
        "services[1]",
        "10.0.1.100:80/tcp is also services[0] (`web`)",
    );
    // The same VIP and port over UDP is another service.
    ok(&format!(
        "{}\n{}",
        with(""),
        second.replace("\"tcp\"", "\"udp\"")
    ));
}

#[test]
fn duplicate_service_name() {
    let second = WEB.replace("port = 80\n", "port = 443\n");
    bad(
        &format!("{}\n{second}", with("")),
        "services[1].name",
        "`web` is also the name of services[0]",
    );
}

#[test]
fn duplicate_server() {
    // 10.0.2.12 without a port is 10.0.2.12:80.
    let server = |port: u16| {
        format!(
            "{}\n[[services.servers]]\naddress = \"10.0.2.12\"\nport = {port}\n",
            with("")
        )
    };
    let text = server(80);
    bad(
        &text,
        "services[0].servers[2]",
        "10.0.2.12:80 is also servers[1]",
    );
    // Another port on the same address is another server.
    ok(&server(81));
}

#[test]
fn weight_out_of_range() {
    let text = format!("{}weight = 65536\n", with(""));
    bad(
        &text,
        "services[0].servers[1].weight",
        "65536 is out of range 0..=65535",
    );
    bad(
        &format!("{}weight = -1\n", with("")),
        "services[0].servers[1].weight",
        "out of range",
    );
}

#[test]
fn port_numbers_out_of_range() {
    bad(
        &with("").replace("port = 80\n", "port = 0\n"),
        "services[0].port",
        "0 is out of range 1..=65535",
    );
    bad(
        &with("").replace("port = 8080", "port = 65536"),
        "services[0].servers[0].port",
        "out of range 1..=65535",
    );
}

#[test]
fn unknown_protocol_and_scheduler() {
    bad(
        &with("").replace("\"tcp\"", "\"sctp\""),
        "services[0].protocol",
        "unknown variant `sctp`, expected `tcp` or `udp`",
    );
    bad(
        &with("").replace(
            "protocol = \"tcp\"",
            "protocol = \"tcp\"\nscheduler = \"sh\"",
        ),
        "services[0].scheduler",
        "unknown variant `sh`",
    );
}

/// `WEB` with `forwarding = method` and both servers on port 80.
fn direct(method: &str) -> String {
    with("")
        .replace(
            "protocol = \"tcp\"",
            &format!("protocol = \"tcp\"\nforwarding = \"{method}\""),
        )
        .replace("port = 8080\n", "")
}

#[test]
fn dsr_and_tunnel_accepted_with_same_ports() {
    for (method, expected) in [("dsr", Forwarding::Dsr), ("tunnel", Forwarding::Tunnel)] {
        let c = ok(&direct(method));
        assert_eq!(c.services[0].forwarding, expected);
        assert_eq!(c.services[0].forwarding.to_string(), method);
    }
    assert_eq!(ok(&with("")).ports[0].mtu, 1500);
}

#[test]
fn dsr_and_tunnel_do_not_translate_ports() {
    for method in ["dsr", "tunnel"] {
        bad(
            &direct(method).replace("address = \"10.0.2.12\"", "address = \"10.0.2.12\"\nport = 8080"),
            "services[0].servers[1].port",
            &format!("8080 differs from the service port 80; forwarding `{method}` does not translate ports"),
        );
    }
}

#[test]
fn dsr_server_must_be_on_link() {
    // 10.9.9.9 is reachable through the gateway, which is enough for
    // tunnel but not for direct routing.
    let routed = |m: &str| direct(m).replace("10.0.2.12", "10.9.9.9");
    ok(&routed("tunnel"));
    bad(
        &routed("dsr"),
        "services[0].servers[1].address",
        "10.9.9.9 is not on any port's connected subnet; forwarding `dsr` rewrites only the MAC",
    );
}

#[test]
fn unknown_forwarding_method_is_rejected() {
    bad(
        &with("").replace(
            "protocol = \"tcp\"",
            "protocol = \"tcp\"\nforwarding = \"fullnat\"",
        ),
        "services[0].forwarding",
        "unknown forwarding method `fullnat`; valid values: `nat`, `dsr`, `tunnel`",
    );
}

#[test]
fn port_mtu_range() {
    let c = ok(&with("").replace(
        "address = \"10.0.2.1/24\"",
        "address = \"10.0.2.1/24\"\nmtu = 9000",
    ));
    assert_eq!(c.ports[1].mtu, 9000);
    bad(
        &with("").replace(
            "address = \"10.0.2.1/24\"",
            "address = \"10.0.2.1/24\"\nmtu = 100",
        ),
        "ports[1].mtu",
        "100 is out of range 576..=9000",
    );
}

#[test]
fn service_needs_a_server() {
    bad(
        &format!("{PORTS}\n[[services]]\nname = \"x\"\nvip = \"10.0.1.9\"\nport = 1\nprotocol = \"udp\"\n"),
        "services[0].servers",
        "at least one",
    );
}

#[test]
fn bad_service_name() {
    bad(
        &with("").replace("name = \"web\"", "name = \"web site\""),
        "services[0].name",
        "not a valid name",
    );
}

// ---------------------------------------------------------------- real servers

#[test]
fn unreachable_server() {
    // Without the gateway, 10.9.9.9 is reachable from no port.
    let text = format!("{}\n{WEB}", PORTS.replace("gateway = \"10.0.1.254\"", ""))
        .replace("10.0.2.12", "10.9.9.9");
    bad(
        &text,
        "services[0].servers[1].address",
        "10.9.9.9 is not on any port's subnet and no port has a gateway",
    );
    // With it, the server is behind the gateway.
    ok(&with("").replace("10.0.2.12", "10.9.9.9"));
}

#[test]
fn server_must_not_be_a_port_address() {
    bad(
        &with("").replace("10.0.2.12", "10.0.2.1"),
        "services[0].servers[1].address",
        "10.0.2.1 is the address of ports[1] (`server`)",
    );
}

#[test]
fn server_must_not_be_a_vip() {
    let other = r#"
[[services]]
name = "dns"
vip = "10.0.2.53"
port = 53
protocol = "udp"
[[services.servers]]
address = "10.0.2.11"
"#;
    bad(
        &format!("{}\n{other}", with("").replace("10.0.2.12", "10.0.2.53")),
        "services[0].servers[1].address",
        "10.0.2.53 is the VIP of services[1] (`dns`)",
    );
}

#[test]
fn server_must_be_a_host_address() {
    bad(
        &with("").replace("10.0.2.12", "10.0.2.255"),
        "services[0].servers[1].address",
        "broadcast address of 10.0.2.0/24",
    );
    bad(
        &with("").replace("10.0.2.12", "224.1.2.3"),
        "services[0].servers[1].address",
        "multicast",
    );
}

// ---------------------------------------------------------------------- ports

#[test]
fn port_subnets_must_not_overlap() {
    bad(
        &with("").replace("10.0.2.1/24", "10.0.0.1/16"),
        "ports[1].address",
        "subnet 10.0.0.0/16 overlaps 10.0.1.0/24 of ports[0] (`client`)",
    );
}

#[test]
fn port_device_given_twice() {
    bad(
        &with("").replace("net_af_packet1,iface=lb-s", "net_af_packet0,iface=other"),
        "ports[1].device",
        "device `net_af_packet0` is also the device of ports[0]",
    );
    let pci = with("")
        .replace("net_af_packet0,iface=lb-c", "0000:01:00.0")
        .replace("net_af_packet1,iface=lb-s", "0000:01:00.0");
    bad(&pci, "ports[1].device", "0000:01:00.0");
}

#[test]
fn bad_device() {
    for device in [
        "eth0",
        "net_",
        "net_tap 0",
        "0000:01:00",
        "0000:01:20.0",
        "0000:01:00.8",
        "01:00.0",
    ] {
        bad(
            &with("").replace("net_af_packet0,iface=lb-c", device),
            "ports[0].device",
            "",
        );
    }
    bad(
        &with("").replace("net_af_packet0,iface=lb-c", "eth0"),
        "ports[0].device",
        "neither a DPDK vdev",
    );
}

#[test]
fn duplicate_port_name() {
    bad(
        &with("").replace("name = \"server\"", "name = \"client\""),
        "ports[1].name",
        "`client` is also the name of ports[0]",
    );
    bad(
        &with("").replace("name = \"server\"", "name = \"a/b\""),
        "ports[1].name",
        "not a valid name",
    );
}

#[test]
fn gateway_outside_its_subnet() {
    bad(
        &with("").replace("10.0.1.254", "10.0.2.254"),
        "ports[0].gateway",
        "10.0.2.254 is outside the port's subnet 10.0.1.0/24",
    );
    bad(
        &with("").replace("10.0.1.254", "10.0.1.1"),
        "ports[0].gateway",
        "the port's own address",
    );
}

#[test]
fn at_most_one_gateway() {
    let text = with("").replace(
        "address = \"10.0.2.1/24\"",
        "address = \"10.0.2.1/24\"\ngateway = \"10.0.2.254\"",
    );
    bad(&text, "ports[1].gateway", "at most one port may have one");
}

#[test]
fn port_count() {
    bad(&format!("[eal]\n{WEB}"), "ports", "at least one");
    let mut text = String::new();
    for i in 0..17 {
        text.push_str(&format!(
            "[[ports]]\nname = \"p{i}\"\ndevice = \"net_tap{i}\"\naddress = \"10.{i}.0.1/24\"\n"
        ));
    }
    bad(&text, "ports", "at most 16");
}

// ---------------------------------------------------------------- lcores/EAL

#[test]
fn workers_rules() {
    bad(
        &with("[dataplane]\nworkers = []"),
        "dataplane.workers",
        "at least one",
    );
    bad(
        &with("[dataplane]\nworkers = [1, 2, 1]"),
        "dataplane.workers",
        "lcore 1 is listed twice",
    );
    bad(
        &with("[dataplane]\nworkers = [0, 1]"),
        "dataplane.workers",
        "lcore 0 is the main lcore",
    );
    bad(
        &with("[eal]\nmain_lcore = 2\n[dataplane]\nworkers = [1, 2]"),
        "dataplane.workers",
        "lcore 2 is the main lcore",
    );
    bad(
        &with("[dataplane]\nworkers = [1, 128]"),
        "dataplane.workers",
        "lcore 128 is not below 128",
    );
    bad(
        &with("[eal]\nmain_lcore = 128"),
        "eal.main_lcore",
        "out of range 0..=127",
    );
}

#[test]
fn lcores_mapping() {
    let config = ok(&with(
        "[eal]\nlcores = \"0@0,(1,2)@1\"\n[dataplane]\nworkers = [1, 2]",
    ));
    assert_eq!(config.eal.lcores.as_deref(), Some("0@0,(1,2)@1"));
    bad(
        &with("[eal]\nlcores = \"0@0,1@1\"\n[dataplane]\nworkers = [1, 2]"),
        "eal.lcores",
        "does not map worker lcore 2",
    );
    bad(
        &with("[eal]\nlcores = \"1@0\""),
        "eal.lcores",
        "does not map the main lcore 0",
    );
    bad(
        &with("[eal]\nlcores = \"0@0,1@\""),
        "eal.lcores",
        "not an EAL lcore mapping",
    );
}

#[test]
fn bad_file_prefix() {
    for prefix in ["", "../etc", ".", "a/b", "a b"] {
        bad(
            &with(&format!("[eal]\nfile_prefix = \"{prefix}\"")),
            "eal.file_prefix",
            "not a valid file prefix",
        );
    }
}

#[test]
fn mempool_rules() {
    bad(
        &with("[eal]\nmbuf_cache = 513"),
        "eal.mbuf_cache",
        "out of range 0..=512",
    );
    bad(
        &with("[eal]\nmbufs = 511\nmbuf_cache = 341"),
        "eal.mbuf_cache",
        "341 is more than eal.mbufs / 1.5 (511 mbufs allow at most 340)",
    );
    ok(&with("[eal]\nmbufs = 511\nmbuf_cache = 340"));
    bad(
        &with("[eal]\nmbufs = 0\nmbuf_cache = 0"),
        "eal.mbufs",
        "out of range",
    );
    bad(
        &with("[eal]\nmemory_mb = 0"),
        "eal.memory_mb",
        "out of range",
    );
}

#[test]
fn dataplane_ranges() {
    bad(
        &with("[dataplane]\nburst = 0"),
        "dataplane.burst",
        "out of range 1..=64",
    );
    bad(
        &with("[dataplane]\nburst = 65"),
        "dataplane.burst",
        "out of range 1..=64",
    );
    bad(
        &with("[dataplane]\nrx_desc = 1000"),
        "dataplane.rx_desc",
        "not a power of two",
    );
    bad(
        &with("[dataplane]\nrx_desc = 32"),
        "dataplane.rx_desc",
        "out of range 64..=16384",
    );
    bad(
        &with("[dataplane]\ntx_desc = 32768"),
        "dataplane.tx_desc",
        "out of range 64..=16384",
    );
    ok(&with("[dataplane]\nrx_desc = 64\ntx_desc = 16384"));
    bad(
        &with("[dataplane]\nconn_capacity = 0"),
        "dataplane.conn_capacity",
        "out of range",
    );
    bad(
        &with("[dataplane]\nconn_capacity = 2147483649"),
        "dataplane.conn_capacity",
        "out of range 1..=2147483648",
    );
    ok(&with("[dataplane]\nconn_capacity = 2147483648"));
    bad(
        &with("[dataplane]\nidle_sleep_us = 0"),
        "dataplane.idle_sleep_us",
        "out of range",
    );
    bad(
        &with("[dataplane]\nidle_sleep_us = 100001"),
        "dataplane.idle_sleep_us",
        "out of range 1..=100000",
    );
    bad(
        &with("[dataplane]\nidle_polls = -1"),
        "dataplane.idle_polls",
        "invalid value",
    );
}

#[test]
fn timeout_ranges() {
    for key in [
        "tcp_established",
        "tcp_syn",
        "tcp_fin_wait",
        "tcp_close_wait",
        "tcp_last_ack",
        "tcp_time_wait",
        "tcp_close",
        "udp",
    ] {
        let path = format!("timeouts.{key}");
        bad(
            &with(&format!("[timeouts]\n{key} = 0")),
            &path,
            "out of range 1..=2000000",
        );
        bad(
            &with(&format!("[timeouts]\n{key} = 2000001")),
            &path,
            "out of range",
        );
    }
}

#[test]
fn neighbor_timers() {
    bad(
        &with("[neighbors]\nrefresh = 30\nexpiry = 30"),
        "neighbors.expiry",
        "30 must be greater than neighbors.refresh (30)",
    );
    bad(
        &with("[neighbors]\nrefresh = 0"),
        "neighbors.refresh",
        "out of range",
    );
}

#[test]
fn empty_stats_file() {
    bad(
        &with("[control]\nstats_file = \"\""),
        "control.stats_file",
        "must not be empty",
    );
}

#[test]
fn control_socket_and_metrics() {
    let config = ok(&with(
        "[control]\nsocket = \"/tmp/p/ctl.sock\"\nmetrics = \"127.0.0.1:9100\"",
    ));
    assert_eq!(config.control.socket, PathBuf::from("/tmp/p/ctl.sock"));
    assert_eq!(
        config.control.metrics,
        Some("127.0.0.1:9100".parse().unwrap())
    );
    bad(
        &with("[control]\nsocket = \"run/pylon.sock\""),
        "control.socket",
        "must be an absolute file path",
    );
    bad(
        &with("[control]\nsocket = \"/\""),
        "control.socket",
        "must be an absolute file path",
    );
    let long = format!("/{}", "s".repeat(120));
    bad(
        &with(&format!("[control]\nsocket = \"{long}\"")),
        "control.socket",
        "at most 107",
    );
    bad(
        &with("[control]\nmetrics = \"127.0.0.1:0\""),
        "control.metrics",
        "needs a port",
    );
    bad(
        &with("[control]\nmetrics = \"127.0.0.1\""),
        "control.metrics",
        "",
    );
}

#[test]
fn eal_args_for_vdev_ports() {
    let config = ok(&with(""));
    assert_eq!(
        config.eal_args("pylon"),
        [
            "pylon",
            "--file-prefix",
            "pylon",
            "-l",
            "0,1",
            "--main-lcore",
            "0",
            "-m",
            "512",
            "--no-telemetry",
            "--no-pci",
            "--vdev",
            "net_af_packet0,iface=lb-c",
            "--vdev",
            "net_af_packet1,iface=lb-s",
        ]
    );
    let config = ok(FULL);
    assert_eq!(
        config.eal_args("pylon-test"),
        [
            "pylon-test",
            "--file-prefix",
            "pylon-test",
            "--lcores",
            "0@0,1@1,2@1",
            "--main-lcore",
            "0",
            "-m",
            "256",
            "--no-huge",
            "--no-telemetry",
            "--no-pci",
            "--vdev",
            "net_af_packet0,iface=lb-c",
            "--vdev",
            "net_tap0",
            "--log-level",
            "lib.eal:debug",
        ]
    );
}

#[test]
fn eal_args_for_pci_ports() {
    let text = with("[eal]\nmain_lcore = 2\n[dataplane]\nworkers = [4, 3]")
        .replace("net_af_packet0,iface=lb-c", "0000:01:00.0")
        .replace("net_af_packet1,iface=lb-s", "net_tap0,iface=tap-s");
    let config = ok(&text);
    assert_eq!(
        config.eal_args("/usr/bin/pylon"),
        [
            "/usr/bin/pylon",
            "--file-prefix",
            "pylon",
            "-l",
            "2,4,3",
            "--main-lcore",
            "2",
            "-m",
            "512",
            "--no-telemetry",
            "-a",
            "0000:01:00.0",
            "--vdev",
            "net_tap0,iface=tap-s",
        ]
    );
}

// ------------------------------------------------------------------ routing

#[test]
fn port_for_connected_subnet() {
    let config = ok(&with(""));
    let ip = Ipv4Addr::new(10, 0, 2, 11);
    assert_eq!(config.port_for(ip), Some((1, ip)));
    let ip = Ipv4Addr::new(10, 0, 1, 7);
    assert_eq!(config.port_for(ip), Some((0, ip)));
}

#[test]
fn port_for_via_gateway() {
    let config = ok(&with(""));
    assert_eq!(
        config.port_for(Ipv4Addr::new(192, 0, 2, 1)),
        Some((0, Ipv4Addr::new(10, 0, 1, 254)))
    );
}

#[test]
fn port_for_unreachable() {
    let config = ok(&format!(
        "{}\n{WEB}",
        PORTS.replace("gateway = \"10.0.1.254\"", "")
    ));
    assert_eq!(config.port_for(Ipv4Addr::new(192, 0, 2, 1)), None);
}

#[test]
fn health_checks_resolve_per_server() {
    let c = ok(&with("[control]\nhealth_source = \"192.168.0.5\"\n").replace(
        "protocol = \"tcp\"\n",
        "protocol = \"tcp\"\n[services.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = 2\nfall = 4\n",
    )
    .replace(
        "address = \"10.0.2.12\"",
        "address = \"10.0.2.12\"\nhealth = { kind = \"tcp\", port = 9000 }",
    ));
    let first = c.services[0].servers[0].check.as_ref().expect("checked");
    assert_eq!(first.kind(), pylon_health::CheckKind::Http);
    assert_eq!((first.interval.as_secs(), first.fall), (2, 4));
    assert_eq!(first.source, Some(Ipv4Addr::new(192, 168, 0, 5)));
    let second = c.services[0].servers[1].check.as_ref().expect("checked");
    assert_eq!(
        (second.kind(), second.port, second.fall),
        (pylon_health::CheckKind::Tcp, Some(9000), 4)
    );
    assert!(
        ok(&with("")).services[0].servers[0].check.is_none(),
        "no table: not checked"
    );
}

#[test]
fn bad_health_tables_name_their_key() {
    bad(
        &with("").replace(
            "protocol = \"tcp\"\n",
            "protocol = \"tcp\"\n[services.health]\nkind = \"tcp\"\ninterval = 1\ntimeout = 5\n",
        ),
        "services[0].health.timeout",
        "",
    );
    bad(
        &with("").replace(
            "address = \"10.0.2.12\"",
            "address = \"10.0.2.12\"\nhealth = { kind = \"http\", expect_status = 700 }",
        ),
        "services[0].servers[1].health.expect_status",
        "",
    );
}

#[test]
fn sorry_server_rules() {
    let sorry = |addr: &str| {
        with("").replace(
            "protocol = \"tcp\"\n",
            &format!("protocol = \"tcp\"\n[services.sorry]\naddress = \"{addr}\"\n"),
        )
    };
    let c = ok(&sorry("10.0.2.99"));
    assert_eq!(
        c.services[0].sorry,
        Some(pylon_config::Sorry {
            address: Ipv4Addr::new(10, 0, 2, 99),
            port: 80
        })
    );
    bad(
        &sorry("10.0.2.1"),
        "services[0].sorry.address",
        "is the address of ports[1]",
    );
    bad(
        &sorry("10.0.1.100"),
        "services[0].sorry.address",
        "is the VIP of services[0]",
    );
}

#[test]
fn vrrp_instances_are_checked_against_ports() {
    let vrrp = |port: &str| {
        with(&format!(
            "[[vrrp]]\nvrid = 51\npriority = 200\nadvert_int = 0.1\nport = \"{port}\"\nvips = [\"10.0.1.100\"]\n"
        ))
    };
    let c = ok(&vrrp("client"));
    assert_eq!((c.vrrp[0].vrid, c.vrrp[0].advert_int_cs), (51, 10));
    bad(
        &vrrp("nowhere"),
        "vrrp[0].port",
        "no port is named `nowhere`",
    );
}
