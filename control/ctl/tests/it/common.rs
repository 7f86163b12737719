//! A stand-in for the daemon's control loop: a thread that drains the
//! request channel as the control loop will and answers from a small
//! in-memory model of services, servers and counters.

use pylon_ctl::proto::*;
use pylon_ctl::{Requests, Server, ServerOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The model the handler answers from.
pub struct Model {
    pub services: Vec<ServiceInfo>,
    /// Servers being drained lose this many active connections per `list`.
    pub close_per_list: u64,
    /// A reload of a file with an error.
    pub bad_file: bool,
    /// The sync peer runs another configuration.
    pub peer_config_differs: bool,
    /// Changes made at runtime: path, file value, running value.
    pub drift: Vec<Change>,
    /// The control loop takes no request (to test timeouts).
    pub paused: bool,
    /// The control loop takes requests and never answers them.
    pub hold: bool,
    /// Unix time the model was made; state changes happened 2 h before.
    pub born: u64,
}

fn server(
    addr: &str,
    port: u16,
    weight: u32,
    health: Health,
    active: u64,
    inactive: u64,
) -> ServerInfo {
    ServerInfo {
        address: ip(addr),
        port,
        forwarding: Forwarding::Nat,
        weight,
        effective_weight: if health == Health::Down { 0 } else { weight },
        health,
        active,
        inactive,
        stats: None,
        rate: None,
    }
}

impl Model {
    pub fn new() -> Model {
        Model {
            services: vec![
                ServiceInfo {
                    name: "web".into(),
                    protocol: Protocol::Tcp,
                    vip: ip("192.0.2.10"),
                    port: 80,
                    scheduler: Scheduler::Wlc,
                    forwarding: Forwarding::Nat,
                    stats: None,
                    rate: None,
                    servers: vec![
                        server("10.0.1.2", 80, 1, Health::Up, 7, 2),
                        server("10.0.1.3", 80, 2, Health::Down, 0, 1),
                        server("10.0.1.4", 8080, 3, Health::Unchecked, 1234567, 0),
                    ],
                },
                ServiceInfo {
                    name: "dns".into(),
                    protocol: Protocol::Udp,
                    vip: ip("192.0.2.53"),
                    port: 53,
                    scheduler: Scheduler::Rr,
                    forwarding: Forwarding::Dsr,
                    stats: None,
                    rate: None,
                    servers: vec![ServerInfo {
                        forwarding: Forwarding::Dsr,
                        ..server("10.0.1.2", 53, 1, Health::Unchecked, 0, 12)
                    }],
                },
            ],
            close_per_list: 3,
            bad_file: false,
            peer_config_differs: false,
            drift: Vec::new(),
            paused: false,
            hold: false,
            born: now_unix(),
        }
    }

    fn service(&mut self, name: &str) -> Result<&mut ServiceInfo, CtlError> {
        self.services
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| CtlError::not_found(format!("no service named {name}")))
    }

    fn server_index(
        svc: &ServiceInfo,
        address: Ipv4Addr,
        port: Option<u16>,
    ) -> Result<usize, CtlError> {
        let found: Vec<usize> = svc
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.address == address && port.map_or(true, |p| p == s.port))
            .map(|(i, _)| i)
            .collect();
        match found[..] {
            [i] => Ok(i),
            [] => Err(CtlError::not_found(format!(
                "service {} has no real server {address}",
                svc.name
            ))),
            _ => Err(CtlError::new(
                ErrorCode::Ambiguous,
                format!("{address} has several ports in {}; give one", svc.name),
            )),
        }
    }

    fn list(&mut self, stats: bool, rate: bool, only: Option<&str>) -> Result<Value, CtlError> {
        if let Some(n) = only {
            self.service(n)?;
        }
        // Drained servers lose connections as time passes.
        let step = self.close_per_list;
        for s in self.services.iter_mut().flat_map(|s| s.servers.iter_mut()) {
            if s.weight == 0 {
                s.active = s.active.saturating_sub(step);
            }
        }
        let services = self
            .services
            .iter()
            .filter(|s| only.map_or(true, |n| n == s.name))
            .cloned()
            .map(|mut svc| {
                let mut total = Counters::default();
                for (i, s) in svc.servers.iter_mut().enumerate() {
                    let k = i as u64 + 1;
                    let c = Counters {
                        conns: 100 * k,
                        in_packets: 1000 * k,
                        out_packets: 900 * k,
                        in_bytes: 150_000_000 * k,
                        out_bytes: 1_500_000_000 * k,
                    };
                    total.conns += c.conns;
                    total.in_packets += c.in_packets;
                    total.out_packets += c.out_packets;
                    total.in_bytes += c.in_bytes;
                    total.out_bytes += c.out_bytes;
                    s.stats = stats.then_some(c);
                    s.rate = rate.then_some(Rates {
                        cps: k,
                        in_pps: 10 * k,
                        out_pps: 9 * k,
                        in_bps: 1500 * k,
                        out_bps: 15000 * k,
                    });
                }
                svc.stats = stats.then_some(total);
                svc.rate = rate.then_some(Rates {
                    cps: 6,
                    in_pps: 60,
                    out_pps: 54,
                    in_bps: 9000,
                    out_bps: 90000,
                });
                svc
            })
            .collect();
        to_data(&ListData {
            table_size: 1_048_576,
            connections: 1_234_589,
            services,
        })
    }

    fn conns(
        &self,
        service: Option<&str>,
        server: Option<Endpoint>,
        client: Option<Endpoint>,
        limit: u32,
    ) -> Result<Value, CtlError> {
        let all = [
            (
                "web",
                "198.51.100.7:40001",
                "192.0.2.10:80",
                "10.0.1.2:80",
                "ESTABLISHED",
                899_000,
            ),
            (
                "web",
                "198.51.100.8:40002",
                "192.0.2.10:80",
                "10.0.1.4:8080",
                "TIME_WAIT",
                61_500,
            ),
            (
                "web",
                "198.51.100.7:40003",
                "192.0.2.10:80",
                "10.0.1.2:80",
                "SYN_RECV",
                59_000,
            ),
            (
                "dns",
                "198.51.100.9:5353",
                "192.0.2.53:53",
                "10.0.1.2:53",
                "UDP",
                300_000,
            ),
        ];
        let matching: Vec<ConnInfo> = all
            .iter()
            .filter(|c| service.map_or(true, |s| s == c.0))
            .filter(|c| server.map_or(true, |e| e.matches(c.3.parse().unwrap())))
            .filter(|c| client.map_or(true, |e| e.matches(c.1.parse().unwrap())))
            .map(|c| ConnInfo {
                service: c.0.into(),
                protocol: if c.0 == "dns" {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                state: c.4.into(),
                expires_ms: c.5,
                client: c.1.parse().unwrap(),
                virtual_addr: c.2.parse().unwrap(),
                server: c.3.parse().unwrap(),
            })
            .collect();
        let matched = matching.len() as u64;
        let conns: Vec<ConnInfo> = matching.into_iter().take(limit as usize).collect();
        to_data(&ConnsData {
            matched,
            truncated: (conns.len() as u64) < matched,
            conns,
        })
    }

    fn changed(&mut self, changes: Vec<Change>) -> Result<Value, CtlError> {
        self.drift.extend(changes.iter().cloned());
        to_data(&ChangesData { changes })
    }

    pub fn handle(&mut self, cmd: &Command) -> Result<Value, CtlError> {
        match cmd {
            Command::List {
                stats,
                rate,
                service,
            } => self.list(*stats, *rate, service.as_deref()),
            Command::Conns {
                service,
                server,
                client,
                limit,
            } => self.conns(service.as_deref(), *server, *client, *limit),
            Command::AddService {
                name,
                protocol,
                vip,
                port,
                scheduler,
                forwarding,
            } => {
                if self.services.iter().any(|s| &s.name == name) {
                    return Err(CtlError::already_exists(format!("service {name} exists")));
                }
                self.services.push(ServiceInfo {
                    name: name.clone(),
                    protocol: *protocol,
                    vip: *vip,
                    port: *port,
                    scheduler: *scheduler,
                    forwarding: *forwarding,
                    stats: None,
                    rate: None,
                    servers: vec![],
                });
                self.changed(vec![Change {
                    path: format!("services[{name}]"),
                    old: None,
                    new: Some(format!(
                        "{} {}:{port} {} {}",
                        protocol.upper(),
                        vip,
                        scheduler.name(),
                        forwarding.name()
                    )),
                }])
            }
            Command::EditService {
                name,
                scheduler,
                forwarding,
            } => {
                let svc = self.service(name)?;
                let mut changes = vec![];
                if let Some(s) = scheduler {
                    changes.push(Change {
                        path: format!("services[{name}].scheduler"),
                        old: Some(svc.scheduler.name().into()),
                        new: Some(s.name().into()),
                    });
                    svc.scheduler = *s;
                }
                if let Some(f) = forwarding {
                    changes.push(Change {
                        path: format!("services[{name}].forwarding"),
                        old: Some(svc.forwarding.name().into()),
                        new: Some(f.name().into()),
                    });
                    svc.forwarding = *f;
                    svc.servers.iter_mut().for_each(|s| s.forwarding = *f);
                }
                self.changed(changes)
            }
            Command::DelService { name } => {
                self.service(name)?;
                self.services.retain(|s| &s.name != name);
                self.changed(vec![Change {
                    path: format!("services[{name}]"),
                    old: Some("present".into()),
                    new: None,
                }])
            }
            Command::AddServer {
                service,
                address,
                port,
                weight,
                forwarding,
            } => {
                let svc = self.service(service)?;
                if forwarding.is_some_and(|f| f != svc.forwarding) {
                    return Err(CtlError::invalid(format!(
                        "service {service} forwards with {}; forwarding is per service",
                        svc.forwarding.name()
                    )));
                }
                let port = port.unwrap_or(svc.port);
                if svc
                    .servers
                    .iter()
                    .any(|s| s.address == *address && s.port == port)
                {
                    return Err(CtlError::already_exists(format!(
                        "{address}:{port} is in {service} already"
                    )));
                }
                let fwd = svc.forwarding;
                svc.servers.push(ServerInfo {
                    forwarding: fwd,
                    ..server(
                        &address.to_string(),
                        port,
                        u32::from(*weight),
                        Health::Unchecked,
                        0,
                        0,
                    )
                });
                self.changed(vec![Change {
                    path: format!("services[{service}].servers[{address}:{port}]"),
                    old: None,
                    new: Some(format!("weight {weight}")),
                }])
            }
            Command::EditServer {
                service,
                address,
                port,
                weight,
            } => {
                let svc = self.service(service)?;
                let i = Model::server_index(svc, *address, *port)?;
                let s = &mut svc.servers[i];
                let change = Change {
                    path: format!("services[{service}].servers[{}].weight", s.addr()),
                    old: Some(s.weight.to_string()),
                    new: Some(weight.to_string()),
                };
                s.weight = u32::from(*weight);
                self.changed(vec![change])
            }
            Command::DelServer {
                service,
                address,
                port,
            } => {
                let svc = self.service(service)?;
                let i = Model::server_index(svc, *address, *port)?;
                let s = svc.servers.remove(i);
                self.changed(vec![Change {
                    path: format!("services[{service}].servers[{}]", s.addr()),
                    old: Some(format!("weight {}", s.weight)),
                    new: None,
                }])
            }
            Command::Drain {
                service,
                address,
                port,
            } => {
                let mut servers = vec![];
                for svc in self
                    .services
                    .iter_mut()
                    .filter(|s| service.as_ref().map_or(true, |n| n == &s.name))
                {
                    for s in svc
                        .servers
                        .iter_mut()
                        .filter(|s| s.address == *address && port.map_or(true, |p| p == s.port))
                    {
                        servers.push(DrainedServer {
                            service: svc.name.clone(),
                            address: s.address,
                            port: s.port,
                            previous_weight: s.weight,
                        });
                        s.weight = 0;
                        s.effective_weight = 0;
                    }
                }
                if servers.is_empty() {
                    return Err(CtlError::not_found(format!("no real server {address}")));
                }
                to_data(&DrainData { servers })
            }
            Command::Vrrp => to_data(&VrrpData {
                instances: vec![VrrpInfo {
                    name: "VI_1".into(),
                    vrid: 51,
                    port: "p0".into(),
                    state: VrrpState::Master,
                    priority: 150,
                    effective_priority: 140,
                    advert_int_ms: 1000,
                    preempt: true,
                    vips: vec![ip("192.0.2.10"), ip("192.0.2.53")],
                    master: None,
                    last_change: Some(self.born - 7200),
                    reason: Some("master_down".into()),
                }],
            }),
            Command::Health => to_data(&HealthData {
                servers: vec![
                    HealthInfo {
                        service: "web".into(),
                        address: ip("10.0.1.2"),
                        port: 80,
                        state: Health::Up,
                        check: Some("http".into()),
                        last_result: Some("ok".into()),
                        last_change: Some(self.born - 7200),
                        reason: Some("2 checks passed".into()),
                        successes: 40,
                        failures: 0,
                    },
                    HealthInfo {
                        service: "web".into(),
                        address: ip("10.0.1.3"),
                        port: 80,
                        state: Health::Down,
                        check: Some("tcp".into()),
                        last_result: Some("refused".into()),
                        last_change: Some(self.born - 7200),
                        reason: Some("3 checks failed: refused".into()),
                        successes: 0,
                        failures: 12,
                    },
                    HealthInfo {
                        service: "web".into(),
                        address: ip("10.0.1.4"),
                        port: 8080,
                        state: Health::Unchecked,
                        check: None,
                        last_result: None,
                        last_change: None,
                        reason: None,
                        successes: 0,
                        failures: 0,
                    },
                ],
            }),
            Command::Workers => {
                let drops = |a: u64, b: u64| {
                    BTreeMap::from([
                        ("no_connection".to_string(), a),
                        ("not_ipv4".to_string(), b),
                        ("table_full".to_string(), 0),
                    ])
                };
                to_data(&WorkersData {
                    workers: vec![
                        WorkerInfo {
                            lcore: 1,
                            role: Role::Worker,
                            rx_packets: 1_000_000,
                            tx_packets: 999_000,
                            to_control: 12,
                            idle_polls: 750,
                            busy_polls: 250,
                            idle_share: 0.75,
                            drops: drops(900, 88),
                        },
                        WorkerInfo {
                            lcore: 0,
                            role: Role::Control,
                            rx_packets: 10,
                            tx_packets: 10,
                            to_control: 0,
                            idle_polls: 1000,
                            busy_polls: 0,
                            idle_share: 1.0,
                            drops: drops(0, 0),
                        },
                    ],
                    ports: vec![PortInfo {
                        name: "p0".into(),
                        link_up: true,
                        rx_packets: 1_000_010,
                        tx_packets: 999_010,
                        rx_bytes: 150_000_000,
                        tx_bytes: 149_000_000,
                        imissed: 3,
                        ierrors: 0,
                        oerrors: 0,
                        rx_nombuf: 1,
                    }],
                })
            }
            Command::Reload => {
                if self.bad_file {
                    return Err(CtlError::invalid(
                        "pylon.toml: services[1].servers[0].weight: 70000 is out of range 0..=65535 (line 23, column 10)",
                    ));
                }
                self.drift.clear();
                to_data(&ReloadData {
                    file: "/etc/pylon/pylon.toml".into(),
                    changes: vec![
                        Change {
                            path: "services[web].servers[10.0.1.5:80]".into(),
                            old: None,
                            new: Some("weight 1".into()),
                        },
                        Change {
                            path: "services[web].servers[10.0.1.2:80].weight".into(),
                            old: Some("1".into()),
                            new: Some("4".into()),
                        },
                    ],
                })
            }
            Command::Diff => to_data(&DiffData {
                file: "/etc/pylon/pylon.toml".into(),
                changes: self.drift.clone(),
            }),
            Command::Sync => {
                let ours = ConfigDigest {
                    digest: "6fe4c9b6ddac2e7e".into(),
                    services: 1,
                    servers: 3,
                };
                let theirs = if self.peer_config_differs {
                    ConfigDigest {
                        digest: "273e4e5a0cc5089b".into(),
                        servers: 4,
                        ..ours.clone()
                    }
                } else {
                    ours.clone()
                };
                let same = !self.peer_config_differs;
                to_data(&SyncData {
                    configured: true,
                    session: "33f34833bba8679f".into(),
                    listen: "10.9.0.1:8848".into(),
                    startup_pending: false,
                    config: Some(ours),
                    config_in_sync: Some(same),
                    peers: vec![SyncPeer {
                        address: "10.9.0.2:8848".into(),
                        adopted: true,
                        config: Some(theirs),
                        config_in_sync: Some(same),
                    }],
                    counters: [("datagrams_sent", 12), ("installed", 120)]
                        .iter()
                        .map(|&(k, v)| (k.to_owned(), v))
                        .collect(),
                    drops: [("bad_mac", 5), ("replay", 0)]
                        .iter()
                        .map(|&(k, v)| (k.to_owned(), v))
                        .collect(),
                })
            }
        }
    }
}

/// The server plus the handler thread; dropping it stops both.
pub struct Daemon {
    pub server: Option<Server>,
    pub model: Arc<Mutex<Model>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::with(|_| {})
    }

    /// With changed server options.
    pub fn with(tune: impl FnOnce(&mut ServerOptions)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/pylon.sock");
        let mut opts = ServerOptions::new(&path);
        tune(&mut opts);
        let (server, requests) = Server::with_options(opts).unwrap();
        let model = Arc::new(Mutex::new(Model::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let model = Arc::clone(&model);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || control_loop(&requests, &model, &stop))
        };
        Daemon {
            server: Some(server),
            model,
            stop,
            thread: Some(thread),
            _dir: dir,
            path,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What the daemon's control loop does each iteration: drain without
/// blocking, then go on with its other work (here: a short sleep).
fn control_loop(requests: &Requests, model: &Mutex<Model>, stop: &AtomicBool) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let (paused, hold) = {
            let m = model.lock().unwrap();
            (m.paused, m.hold)
        };
        if hold {
            // Takes requests and never answers them (until dropped).
            while let Some(p) = requests.try_next() {
                held.push(p);
            }
        } else if !paused {
            let mut handler = |cmd: &Command| model.lock().unwrap().handle(cmd);
            requests.serve(16, &mut handler);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.server.take();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}
