//! The `[[vrrp]]` tables: defaults, value ranges, rules between keys, and
//! the examples in configs/ and configs/README.md.

use std::net::Ipv4Addr;

use pylon_vrrp::config::{self, PortRef, TrackPort, Vrrp};
use pylon_vrrp::{Instance, State, Tracking, Version};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vrrp: Vec<Vrrp>,
}

fn parse(text: &str) -> Result<Vec<Vrrp>, String> {
    toml::from_str::<File>(text)
        .map(|file| file.vrrp)
        .map_err(|e| e.message().to_owned())
}

fn one(body: &str) -> Result<Vrrp, String> {
    let text = format!("[[vrrp]]\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n{body}");
    parse(&text).map(|mut v| v.remove(0))
}

const PORTS: [PortRef<'static>; 2] = [
    PortRef {
        name: "outside",
        address: Ipv4Addr::new(192, 0, 2, 1),
    },
    PortRef {
        name: "inside",
        address: Ipv4Addr::new(10, 0, 0, 1),
    },
];

fn check(instances: &[Vrrp]) -> Result<(), String> {
    config::check(instances, &PORTS, &["web"]).map_err(|e| e.to_string())
}

#[test]
fn defaults() {
    let vrrp = one("vrid = 51").unwrap();
    assert_eq!(vrrp.priority, 100);
    assert_eq!(vrrp.advert_int_cs, 100);
    assert!(vrrp.preempt);
    assert_eq!(vrrp.preempt_delay_ms, 0);
    assert_eq!(vrrp.version, Version::V3);
    assert!(vrrp.checksum_pseudo_header);
    assert!(vrrp.unicast_peers.is_empty());
    assert_eq!(vrrp.garp_repeat, 5);
    assert_eq!(vrrp.garp_delay_ms, 5000);
    assert_eq!(vrrp.garp_refresh_ms, 0);
    assert_eq!(vrrp.garp_refresh_repeat, 1);
    assert!(vrrp.track_ports.is_empty() && vrrp.track_services.is_empty());
    assert_eq!(vrrp.notify_master, None);
    check(std::slice::from_ref(&vrrp)).unwrap();
    let instance = Instance::new(vrrp.instance_config(PORTS[0].address)).unwrap();
    assert_eq!(instance.state(), State::Initialize);
    assert_eq!(instance.config().primary, PORTS[0].address);
}

#[test]
fn durations_in_seconds() {
    assert_eq!(one("vrid = 1\nadvert_int = 0.1").unwrap().advert_int_cs, 10);
    assert_eq!(one("vrid = 1\nadvert_int = 0.01").unwrap().advert_int_cs, 1);
    assert_eq!(
        one("vrid = 1\nadvert_int = 40.95").unwrap().advert_int_cs,
        4095
    );
    assert_eq!(one("vrid = 1\nadvert_int = 3").unwrap().advert_int_cs, 300);
    assert_eq!(
        one("vrid = 1\npreempt_delay = 2.5")
            .unwrap()
            .preempt_delay_ms,
        2500
    );
    assert_eq!(one("vrid = 1\ngarp_delay = 0").unwrap().garp_delay_ms, 0);
    assert_eq!(
        one("vrid = 1\ngarp_refresh = 60").unwrap().garp_refresh_ms,
        60_000
    );
    for (body, problem) in [
        ("advert_int = 0.015", "not a whole number of 0.01 s"),
        ("advert_int = 0", "out of range 0.01..=255 s"),
        ("advert_int = -1", "out of range"),
        ("advert_int = 300", "out of range"),
        ("advert_int = \"1\"", "a number of seconds"),
        ("preempt_delay = 1001", "out of range 0..=1000 s"),
        ("preempt_delay = 0.0005", "not a whole number of 0.001 s"),
    ] {
        let err = one(&format!("vrid = 1\n{body}")).unwrap_err();
        assert!(err.contains(problem), "{body}: {err}");
    }
}

#[test]
fn value_ranges() {
    for (body, problem) in [
        ("vrid = 0", "0 is out of range 1..=255"),
        ("vrid = 256", "256 is out of range 1..=255"),
        ("vrid = 1\npriority = 0", "0 is out of range 1..=255"),
        ("vrid = 1\nversion = 4", "version 4 is not 2 or 3"),
        ("vrid = 1\ngarp_repeat = 0", "out of range 1..=100"),
        ("vrid = 1\nvips = [\"224.0.0.18\"]", "multicast"),
        (
            "vrid = 1\nunicast_peers = [\"10.0.0.300\"]",
            "not an IPv4 address",
        ),
        (
            "vrid = 1\ntrack_ports = [{ port = \"inside\", weight = 255 }]",
            "out of range -254..=254",
        ),
        ("vrid = 1\nadvert = 1", "unknown field `advert`"),
        (
            "vrid = 1\ntrack_ports = [{ port = \"inside\", wieght = 1 }]",
            "unknown field `wieght`",
        ),
    ] {
        let text = if body.contains("vips") {
            format!("[[vrrp]]\nport = \"outside\"\n{body}")
        } else {
            format!("[[vrrp]]\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n{body}")
        };
        let err = parse(&text).unwrap_err();
        assert!(err.contains(problem), "{body}: {err}");
    }
    let err = parse("[[vrrp]]\nvrid = 1\nvips = [\"192.0.2.100\"]").unwrap_err();
    assert!(err.contains("missing field `port`"), "{err}");
}

#[test]
fn interval_per_version() {
    let v3 = one("vrid = 1\nadvert_int = 41").unwrap();
    assert_eq!(
        check(&[v3]).unwrap_err(),
        "vrrp[0].advert_int: 4100 cs is out of range 0.01..=40.95 s for version 3"
    );
    let v2 = one("vrid = 1\nversion = 2\nadvert_int = 0.5").unwrap();
    assert!(check(&[v2])
        .unwrap_err()
        .starts_with("vrrp[0].advert_int: 50 cs is not a whole number of seconds"));
    let v2 = one("vrid = 1\nversion = 2\nadvert_int = 200").unwrap();
    check(&[v2]).unwrap();
    let v2 = one("vrid = 1\nversion = 2\nchecksum_pseudo_header = false").unwrap();
    assert!(check(&[v2])
        .unwrap_err()
        .starts_with("vrrp[0].checksum_pseudo_header: applies to version 3 only"));
}

#[test]
fn rules_between_keys() {
    let cases = [
        (
            "vrid = 1\nport = \"dmz\"",
            "vrrp[0].port: no port is named `dmz`",
        ),
        (
            "vrid = 1\nvips = [\"192.0.2.100\", \"192.0.2.100\"]",
            "vrrp[0].vips[1]: 192.0.2.100 is listed twice",
        ),
        (
            "vrid = 1\nvips = [\"192.0.2.1\"]",
            "vrrp[0].vips[0]: 192.0.2.1 is the address of port `outside`; only the address \
             owner (priority 255) may use it",
        ),
        (
            "vrid = 1\nunicast_peers = [\"192.0.2.1\"]",
            "vrrp[0].unicast_peers[0]: 192.0.2.1 is the address of this port",
        ),
        (
            "vrid = 1\nunicast_peers = [\"192.0.2.2\", \"192.0.2.2\"]",
            "vrrp[0].unicast_peers[1]: 192.0.2.2 is listed twice",
        ),
        (
            "vrid = 1\ntrack_ports = [{ port = \"dmz\" }]",
            "vrrp[0].track_ports[0].port: no port is named `dmz`",
        ),
        (
            "vrid = 1\ntrack_services = [{ service = \"mail\" }]",
            "vrrp[0].track_services[0].service: no service is named `mail`",
        ),
        (
            "vrid = 1\npriority = 255\ntrack_ports = [{ port = \"inside\", weight = -10 }]",
            "vrrp[0].track_ports[0].weight: the address owner (priority 255) keeps its \
             priority; use weight 0 (FAULT)",
        ),
        (
            "vrid = 1\nnotify_fault = \" \"",
            "vrrp[0].notify_fault: empty command",
        ),
    ];
    for (body, expected) in cases {
        let text = if body.starts_with("vrid = 1\nport") {
            format!("[[vrrp]]\nvips = [\"192.0.2.100\"]\n{body}")
        } else if body.contains("vips") {
            format!("[[vrrp]]\nport = \"outside\"\n{body}")
        } else {
            format!("[[vrrp]]\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n{body}")
        };
        let vrrp = parse(&text).unwrap();
        assert_eq!(check(&vrrp).unwrap_err(), expected);
    }
    // The owner may use the port's address.
    let owner =
        parse("[[vrrp]]\nport = \"outside\"\nvrid = 1\npriority = 255\nvips = [\"192.0.2.1\"]")
            .unwrap();
    check(&owner).unwrap();
}

#[test]
fn rules_across_instances() {
    let same_vrid = parse(
        "[[vrrp]]\nvrid = 5\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n\
         [[vrrp]]\nvrid = 5\nport = \"outside\"\nvips = [\"192.0.2.101\"]\n",
    )
    .unwrap();
    assert_eq!(
        check(&same_vrid).unwrap_err(),
        "vrrp[1].vrid: VRID 5 is already used on port `outside` by vrrp[0]"
    );
    let other_port = parse(
        "[[vrrp]]\nvrid = 5\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n\
         [[vrrp]]\nvrid = 5\nport = \"inside\"\nvips = [\"10.0.0.100\"]\n",
    )
    .unwrap();
    check(&other_port).unwrap();
    let same_vip = parse(
        "[[vrrp]]\nvrid = 5\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n\
         [[vrrp]]\nvrid = 6\nport = \"outside\"\nvips = [\"192.0.2.100\"]\n",
    )
    .unwrap();
    assert_eq!(
        check(&same_vip).unwrap_err(),
        "vrrp[1].vips[0]: 192.0.2.100 is already a VIP of vrrp[0]"
    );
}

/// keepalived's weights: 0 = FAULT while down, negative while down,
/// positive while up.
#[test]
fn tracking_weights() {
    let vrrp = Vrrp {
        track_ports: vec![
            TrackPort {
                port: "inside".to_owned(),
                weight: 0,
            },
            TrackPort {
                port: "outside".to_owned(),
                weight: -30,
            },
        ],
        ..one("vrid = 1\ntrack_services = [{ service = \"web\", weight = 20 }]").unwrap()
    };
    let all_up = vrrp.tracking(|_| true, |_| true);
    assert_eq!(
        all_up,
        Tracking {
            priority_delta: 20,
            fault: false
        }
    );
    let outside_down = vrrp.tracking(|port| port != "outside", |_| false);
    assert_eq!(
        outside_down,
        Tracking {
            priority_delta: -30,
            fault: false
        }
    );
    let inside_down = vrrp.tracking(|port| port != "inside", |_| true);
    assert!(inside_down.fault);
}

/// The `[[vrrp]]` tables of a whole configuration file.
fn vrrp_tables(text: &str) -> Vec<Vrrp> {
    let mut file: toml::Table = text.parse().unwrap();
    file.remove("vrrp").unwrap().try_into().unwrap()
}

/// Every TOML example of `[[vrrp]]` tables in configs/README.md parses and
/// passes the rules.
#[test]
fn readme_examples() {
    let doc = include_str!("../../../configs/README.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .filter(|block| block.contains("[[vrrp]]"))
        .collect();
    assert_eq!(blocks.len(), 1);
    for block in blocks {
        let instances = parse(block).unwrap();
        check(&instances).unwrap();
        for vrrp in &instances {
            Instance::new(vrrp.instance_config(PORTS[0].address)).unwrap();
        }
    }
}

/// configs/vrrp-a.toml and vrrp-b.toml are a pair: the same VRIDs with the
/// same VIPs, intervals and versions, and each appliance MASTER (the higher
/// priority) of exactly one of them.
#[test]
fn example_pair_masters_one_vip_each() {
    let a = vrrp_tables(include_str!("../../../configs/vrrp-a.toml"));
    let b = vrrp_tables(include_str!("../../../configs/vrrp-b.toml"));
    assert_eq!(a.len(), 2);
    assert_eq!(a.len(), b.len());
    let ports = [PortRef {
        name: "lan",
        address: Ipv4Addr::new(192, 0, 2, 1),
    }];
    config::check(&a, &ports, &[]).unwrap();
    let mut a_masters = 0;
    for (a, b) in a.iter().zip(&b) {
        assert_eq!(a.vrid, b.vrid);
        assert_eq!(a.vips, b.vips);
        assert_eq!(a.advert_int_cs, b.advert_int_cs);
        assert_eq!(a.version, b.version);
        assert_ne!(a.priority, b.priority);
        a_masters += usize::from(a.priority > b.priority);
    }
    assert_eq!(a_masters, 1);
}
