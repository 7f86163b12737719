//! The metrics endpoint over TCP, its output read back by the
//! `prometheus-parse` crate and by a strict parser of the text exposition
//! format 0.0.4 (HELP/TYPE lines, escaping, grouping).

use crate::common::{now_unix, Model};
use pylon_ctl::metrics::{self, MetricsServer};
use pylon_ctl::proto::{Command, ListData, SyncData, VrrpData, WorkersData};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One sample as the strict parser reads it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Family {
    help: String,
    kind: String,
    samples: Vec<Sample>,
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

/// Unescapes HELP text: only `\\` and `\n` are escapes.
fn unescape_help(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => return Err(format!("bad escape \\{other:?} in HELP {s:?}")),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Parses `{a="x",b="y"}` from the start of `s`; returns the labels and
/// the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next().ok_or("unterminated label value")?;
            match c {
                '"' => break i,
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?}")),
                },
                '\n' => return Err("raw line feed in a label value".into()),
                c => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        rest = &rest[eq + 1 + end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected , or }} at {rest:?}"));
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|e| format!("bad value {s:?}: {e}")),
    }
}

/// A strict reader of what Pylon writes: every family has exactly one
/// HELP and then one TYPE line before its samples, samples of a family
/// are contiguous, no series repeats, counters end in `_total`.
fn strict_parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    if !text.ends_with('\n') {
        return Err("no final line feed".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut closed = HashSet::new();
    let mut series = HashSet::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or("HELP without text")?;
            if !is_metric_name(name) {
                return Err(format!("bad metric name {name:?}"));
            }
            if families.contains_key(name) {
                return Err(format!("{name}: second HELP"));
            }
            let ty = lines.next().ok_or("HELP without TYPE")?;
            let kind = ty
                .strip_prefix(&format!("# TYPE {name} "))
                .ok_or_else(|| format!("{name}: HELP not followed by its TYPE: {ty:?}"))?;
            if !["counter", "gauge"].contains(&kind) {
                return Err(format!("{name}: type {kind}"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(format!("counter {name} does not end in _total"));
            }
            if let Some(prev) = current.replace(name.to_string()) {
                closed.insert(prev);
            }
            families.insert(
                name.to_string(),
                Family {
                    help: unescape_help(help)?,
                    kind: kind.to_string(),
                    samples: vec![],
                },
            );
        } else if line.starts_with('#') {
            return Err(format!("unexpected comment {line:?}"));
        } else {
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| format!("bad sample {line:?}"))?;
            let name = &line[..name_end];
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..])?
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let value = rest
                .strip_prefix(' ')
                .ok_or_else(|| format!("no value separator in {line:?}"))?;
            let value = parse_value(value)?;
            if current.as_deref() != Some(name) {
                return Err(format!("sample of {name} outside its family's block"));
            }
            if closed.contains(name) {
                return Err(format!("{name} split in two blocks"));
            }
            if !series.insert((name.to_string(), labels.clone())) {
                return Err(format!("series {name}{labels:?} twice"));
            }
            families.get_mut(name).unwrap().samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
    }
    Ok(families)
}

fn data() -> (ListData, WorkersData, VrrpData, SyncData) {
    let mut model = Model::new();
    let list = model
        .handle(&Command::List {
            stats: true,
            rate: false,
            service: None,
        })
        .unwrap();
    let workers = model.handle(&Command::Workers).unwrap();
    let vrrp = model.handle(&Command::Vrrp).unwrap();
    let mut vrrp: VrrpData = serde_json::from_value(vrrp).unwrap();
    // Hostile label values: quote, backslash, line feed.
    vrrp.instances[0].name = "VI \"1\"\\edge\nnext".into();
    vrrp.instances[0].last_change = Some(now_unix());
    let sync = model.handle(&Command::Sync).unwrap();
    (
        serde_json::from_value(list).unwrap(),
        serde_json::from_value(workers).unwrap(),
        vrrp,
        serde_json::from_value(sync).unwrap(),
    )
}

fn http(addr: SocketAddr, request: &[u8]) -> (u16, BTreeMap<String, String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_string())
        })
        .collect();
    (status, headers, body.to_string())
}

fn start() -> MetricsServer {
    let (list, workers, vrrp, sync) = data();
    MetricsServer::start("127.0.0.1:0".parse().unwrap(), move || {
        metrics::pylon(&list, &workers, &vrrp, &sync)
    })
    .unwrap()
}

#[test]
fn scrape_is_valid_exposition_format() {
    let m = start();
    let (status, headers, body) = http(
        m.local_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(headers["content-length"], body.len().to_string());
    let families = strict_parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));

    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        families[name]
            .samples
            .iter()
            .find(|s| s.labels == want)
            .unwrap_or_else(|| panic!("{name}{want:?} missing"))
            .value
    };
    fn web(server: &str) -> [(&str, &str); 2] {
        [("service", "web"), ("server", server)]
    }
    assert_eq!(families["pylon_service_connections_total"].kind, "counter");
    assert_eq!(
        get(
            "pylon_sync_peer_config_in_sync",
            &[("peer", "10.9.0.2:8848")]
        ),
        1.0
    );
    assert_eq!(
        get(
            "pylon_sync_datagrams_dropped_total",
            &[("reason", "bad_mac")]
        ),
        5.0
    );
    assert_eq!(get("pylon_sync_installed_total", &[]), 120.0);
    assert_eq!(
        get("pylon_service_connections_total", &[("service", "web")]),
        600.0
    );
    assert_eq!(
        get(
            "pylon_service_bytes_total",
            &[("service", "web"), ("direction", "out")]
        ),
        9_000_000_000.0
    );
    assert_eq!(
        get("pylon_server_active_connections", &web("10.0.1.2:80")),
        7.0
    );
    assert_eq!(families["pylon_server_active_connections"].kind, "gauge");
    assert_eq!(get("pylon_server_health", &web("10.0.1.3:80")), 0.0);
    assert_eq!(get("pylon_server_health", &web("10.0.1.4:8080")), 1.0);
    assert_eq!(
        get("pylon_server_effective_weight", &web("10.0.1.3:80")),
        0.0
    );
    assert_eq!(
        get(
            "pylon_worker_drops_total",
            &[("worker", "1"), ("reason", "no_connection")]
        ),
        900.0
    );
    assert_eq!(get("pylon_worker_idle_ratio", &[("worker", "1")]), 0.75);
    assert_eq!(get("pylon_port_imissed_total", &[("port", "p0")]), 3.0);
    assert_eq!(get("pylon_connection_table_size", &[]), 1_048_576.0);
    // The hostile instance name round-trips through escaping.
    let name = "VI \"1\"\\edge\nnext";
    let vrrp = |state: &'static str| [("instance", name), ("vrid", "51"), ("state", state)];
    assert_eq!(get("pylon_vrrp_state", &vrrp("MASTER")), 1.0);
    assert_eq!(get("pylon_vrrp_state", &vrrp("BACKUP")), 0.0);
    assert_eq!(families["pylon_vrrp_state"].samples.len(), 4);
    assert!(
        body.contains(r#"instance="VI \"1\"\\edge\nnext""#),
        "{body}"
    );
    assert_eq!(
        families["pylon_server_health"].help,
        "1 if the real server passes its health check or has none, 0 if down."
    );

    // The prometheus-parse crate reads the same (it cannot unescape, so
    // the check is on samples without hostile labels).
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let sample = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "pylon_server_active_connections"
                && s.labels.get("server") == Some("10.0.1.4:8080")
        })
        .unwrap();
    assert_eq!(sample.value, prometheus_parse::Value::Gauge(1_234_567.0));
    let drops = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "pylon_worker_drops_total" && s.labels.get("reason") == Some("not_ipv4")
        })
        .unwrap();
    assert_eq!(drops.value, prometheus_parse::Value::Counter(88.0));
    assert_eq!(
        scrape.docs["pylon_worker_drops_total"],
        "Packets the worker dropped, by reason."
    );
    let strict_samples: usize = families.values().map(|f| f.samples.len()).sum();
    assert_eq!(scrape.samples.len(), strict_samples);
}

#[test]
fn strict_parser_rejects_bad_text() {
    for bad in [
        "a_total 1\n",
        "# HELP a_total x\na_total 1\n",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"x} 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"\\q\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
    ] {
        assert!(strict_parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn only_get_and_head_of_metrics() {
    let m = start();
    let (status, _, body) = http(m.local_addr(), b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"));
    let (status, headers, _) = http(m.local_addr(), b"POST /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
    let (status, headers, body) = http(m.local_addr(), b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert!(headers["content-length"].parse::<usize>().unwrap() > 1000);
    let (status, _, _) = http(m.local_addr(), b"\x16\x03\x01\x00\xa5garbage\r\n\r\n");
    assert_eq!(status, 400);
}

#[test]
fn oversized_requests_are_refused() {
    let m = start();
    let mut req = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    req.extend(vec![b'a'; 64 * 1024]);
    let mut s = TcpStream::connect(m.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(&req);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_silent_client_does_not_delay_a_scrape() {
    let m = start();
    let _silent = TcpStream::connect(m.local_addr()).unwrap();
    let mut partial = TcpStream::connect(m.local_addr()).unwrap();
    partial.write_all(b"GET /metr").unwrap();
    let t = Instant::now();
    let (status, _, _) = http(m.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn dropping_stops_the_endpoint() {
    let m = start();
    let addr = m.local_addr();
    let t = Instant::now();
    drop(m);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(addr).is_err());
}
