//! The daemon's end of the control socket and the metrics endpoint: answers
//! `pylonctl` from the control loop's own state (the pool, health, VRRP,
//! the shared tables and counters), applies runtime changes and reloads to
//! the pool, and keeps the rate estimators and the metrics text.
//!
//! Everything here runs on the control lcore between its other duties:
//! [`Ctl::poll`] serves a bounded number of requests per call and never
//! blocks; the metrics endpoint's threads only copy a text the loop
//! refreshes once a second, so a scrape never waits for the loop and never
//! touches a worker.

use crate::health::{initially_up, Health};
use crate::pool::{kind, mode, Pool, PoolServer, PoolService, TooManyServers};
use crate::sync::{local_mode, pool_services, Sync};
use crate::vrrp::Vrrp;
use pylon_config::{Config, HealthCheck};
use pylon_ctl::metrics::{self, MetricsServer};
use pylon_ctl::proto::{
    self, Change, ChangesData, ConnInfo, ConnsData, Counters, DiffData, DrainData, DrainedServer,
    Endpoint, Forwarding, HealthData, HealthInfo, ListData, PortInfo, Protocol, Rates, ReloadData,
    Role, Scheduler, ServerInfo, ServiceInfo, SyncData, VrrpData, WorkerInfo, WorkersData,
};
use pylon_ctl::{Command, CtlError, ErrorCode, Requests, Server};
use pylon_dataplane::counters::{DropReason, Traffic, TrafficCounters, WorkerCounters};
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::Mode;
use pylon_dpdk::Port;
use pylon_sched::Kind;
use pylon_sync::digest::ServiceDesc;
use pylon_wire::frame::{PROTO_TCP, PROTO_UDP};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Requests answered per [`Ctl::poll`], so a burst of clients cannot
/// starve the loop's other work.
const REQUEST_BUDGET: usize = 16;
/// Rate estimation period (IPVS's estimator runs every 2 s).
const RATE_PERIOD: Duration = Duration::from_secs(2);
/// How often the metrics text is rebuilt.
const METRICS_PERIOD: Duration = Duration::from_secs(1);
/// How often deleted servers are checked for remaining connections.
const REAP_PERIOD: Duration = Duration::from_millis(100);
/// Queued requests between the socket threads and the loop.
const QUEUE: usize = 64;

/// Why the control socket or the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("control socket: {0}")]
    Socket(#[from] pylon_ctl::ServerError),
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the control loop owns and lends to [`Ctl::poll`].
pub struct Env<'a> {
    /// The configuration the daemon started with: the sections that
    /// cannot change at runtime.
    pub cfg: &'a Config,
    pub pool: &'a mut Pool,
    pub health: &'a mut Health,
    pub vrrp: &'a Vrrp,
    pub shared: &'a Shared,
    pub ports: &'a [(String, Port)],
    /// Every forwarding lcore's counters; the control lcore's is last.
    pub workers: &'a [(u32, Arc<WorkerCounters>)],
    /// The sync thread, with `[sync]`.
    pub sync: Option<&'a Sync>,
}

/// What the loop must do after [`Ctl::poll`].
#[derive(Debug, Default)]
pub struct Effects {
    /// The pool changed: publish a new snapshot.
    pub publish: bool,
    /// Addresses (real and sorry servers) whose next hop must be resolved.
    pub want: Vec<Ipv4Addr>,
}

/// An IPVS-style rate estimator: every [`RATE_PERIOD`] the counters'
/// growth per second is folded into a moving average with weight 1/4.
#[derive(Debug, Default, Clone, Copy)]
struct Estimate {
    last: Traffic,
    avg: [f64; 5],
}

impl Estimate {
    fn sample(&mut self, now: Traffic, secs: f64) {
        let d = now.since(self.last);
        let rates = [
            d.conns,
            d.in_packets,
            d.out_packets,
            d.in_bytes,
            d.out_bytes,
        ];
        for (avg, r) in self.avg.iter_mut().zip(rates) {
            *avg += (r as f64 / secs - *avg) / 4.0;
        }
        self.last = now;
    }

    fn rates(&self) -> Rates {
        let r = |i: usize| self.avg[i].round() as u64;
        Rates {
            cps: r(0),
            in_pps: r(1),
            out_pps: r(2),
            in_bps: r(3),
            out_bps: r(4),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Service(String),
    Server(u16),
}

type CheckKey = (String, Ipv4Addr, u16);

/// The control socket, the metrics endpoint and their state.
pub struct Ctl {
    requests: Requests,
    /// Kept for its drop: closes the clients and removes the socket.
    _server: Server,
    /// Kept for its drop: stops the endpoint.
    _metrics: Option<MetricsServer>,
    metrics_text: Arc<Mutex<String>>,
    /// The configuration file, for `reload` and `diff`.
    path: PathBuf,
    /// Every forwarder's per-server traffic block.
    traffic: Vec<Arc<TrafficCounters>>,
    /// Counters of an id when it was (re)assigned: a reused id starts
    /// from zero.
    baseline: HashMap<u16, Traffic>,
    /// Counters of a service's servers that are gone.
    gone: HashMap<String, Traffic>,
    /// The health check each server runs, as last configured.
    checks: HashMap<CheckKey, HealthCheck>,
    estimates: HashMap<Key, Estimate>,
    /// Idle and busy polls per lcore at the last two rate samples.
    polls: Vec<[(u64, u64); 2]>,
    last_rate: Instant,
    last_metrics: Option<Instant>,
    last_reap: Instant,
}

fn checks_of(cfg: &Config) -> HashMap<CheckKey, HealthCheck> {
    cfg.services
        .iter()
        .flat_map(|svc| {
            svc.servers
                .iter()
                .filter_map(|s| Some(((svc.name.clone(), s.address, s.port), s.check.clone()?)))
        })
        .collect()
}

impl Ctl {
    /// Binds `control.socket` and, when configured, `control.metrics`.
    pub fn start(
        cfg: &Config,
        path: &Path,
        traffic: Vec<Arc<TrafficCounters>>,
    ) -> Result<Ctl, StartError> {
        let (server, requests) = Server::start(&cfg.control.socket, QUEUE)?;
        info!(socket = %cfg.control.socket.display(), "control socket listening");
        let metrics_text = Arc::new(Mutex::new(String::new()));
        let metrics = match cfg.control.metrics {
            Some(addr) => {
                let text = Arc::clone(&metrics_text);
                let m = MetricsServer::start(addr, move || {
                    text.lock().unwrap_or_else(|e| e.into_inner()).clone()
                })
                .map_err(|source| StartError::Metrics { addr, source })?;
                info!(%addr, "metrics endpoint listening");
                Some(m)
            }
            None => None,
        };
        let now = Instant::now();
        Ok(Ctl {
            requests,
            _server: server,
            _metrics: metrics,
            metrics_text,
            path: path.to_path_buf(),
            traffic,
            baseline: HashMap::new(),
            gone: HashMap::new(),
            checks: checks_of(cfg),
            estimates: HashMap::new(),
            polls: Vec::new(),
            last_rate: now,
            last_metrics: None,
            last_reap: now,
        })
    }

    /// Serves waiting requests (and a reload when `reload`, the SIGHUP
    /// flag, is set), drains deleted servers, samples rates and refreshes
    /// the metrics. Never blocks.
    pub fn poll(&mut self, env: &mut Env<'_>, reload: bool) -> Effects {
        let mut fx = Effects::default();
        if reload {
            match self.reload(env, &mut fx) {
                Ok(r) => info!(changes = r.changes.len(), "SIGHUP: configuration reloaded"),
                Err(e) => warn!("SIGHUP: reload rejected: {}", e.message),
            }
        }
        if let Some((from, services)) = env.sync.and_then(Sync::take_pushed) {
            match self.apply_pushed(env, &services, &mut fx) {
                Ok(changes) => {
                    for c in &changes {
                        info!(path = %c.path, old = ?c.old, new = ?c.new, "sync: pushed change");
                    }
                    info!(peer = %from, changes = changes.len(), "sync: applied the configuration the peer pushed");
                }
                Err(e) => {
                    warn!(peer = %from, "sync: pushed configuration not applied: {}", e.message)
                }
            }
        }
        for _ in 0..REQUEST_BUDGET {
            let Some(p) = self.requests.try_next() else {
                break;
            };
            let result = self.handle(env, p.command(), &mut fx);
            p.reply(result);
        }
        let now = Instant::now();
        if now.duration_since(self.last_reap) >= REAP_PERIOD {
            self.last_reap = now;
            self.reap(env, &mut fx);
        }
        let elapsed = now.duration_since(self.last_rate);
        if elapsed >= RATE_PERIOD {
            self.last_rate = now;
            self.sample(env, elapsed.as_secs_f64());
        }
        if self
            .last_metrics
            .is_none_or(|t| now.duration_since(t) >= METRICS_PERIOD)
        {
            self.last_metrics = Some(now);
            self.refresh_metrics(env);
        }
        fx
    }

    fn handle(
        &mut self,
        env: &mut Env<'_>,
        cmd: &Command,
        fx: &mut Effects,
    ) -> Result<Value, CtlError> {
        match cmd {
            Command::List {
                stats,
                rate,
                service,
            } => proto::to_data(&self.list(env, *stats, *rate, service.as_deref())?),
            Command::Conns {
                service,
                server,
                client,
                limit,
            } => proto::to_data(&conns(env, service.as_deref(), *server, *client, *limit)?),
            Command::Vrrp => proto::to_data(&VrrpData {
                instances: env.vrrp.info(env.shared.clock.now_ms64()),
            }),
            Command::Health => proto::to_data(&self.health(env)),
            Command::Workers => proto::to_data(&self.workers(env)),
            Command::Reload => proto::to_data(&self.reload(env, fx)?),
            Command::Diff => proto::to_data(&self.diff(env)?),
            Command::Sync => proto::to_data(&env.sync.map_or_else(SyncData::default, Sync::status)),
            Command::Drain {
                service,
                address,
                port,
            } => {
                let data = drain(env.pool, service.as_deref(), *address, *port)?;
                fx.publish = true;
                proto::to_data(&data)
            }
            change => {
                let changes = self.change(env, change, fx)?;
                fx.publish = true;
                proto::to_data(&ChangesData { changes })
            }
        }
    }

    /// Server `id`'s counters since it was assigned.
    fn server_traffic(&self, id: u16) -> Traffic {
        let now = TrafficCounters::sum(&self.traffic, id);
        now.since(self.baseline.get(&id).copied().unwrap_or_default())
    }

    /// A service's counters: its servers (also deleted and retired ones
    /// still draining), its sorry server, and servers gone.
    fn service_traffic(&self, pool: &Pool, svc: &PoolService) -> Traffic {
        let ids = svc
            .servers
            .iter()
            .chain(&svc.sorry)
            .map(|s| s.id)
            .chain(pool.retired_ids(&svc.name));
        let gone = self.gone.get(&svc.name).copied().unwrap_or_default();
        ids.fold(gone, |acc, id| acc.plus(self.server_traffic(id)))
    }

    /// A newly assigned id counts from now on.
    fn assigned(&mut self, id: u16) {
        self.baseline
            .insert(id, TrafficCounters::sum(&self.traffic, id));
        self.estimates.remove(&Key::Server(id));
    }

    fn rates(&self, key: Key) -> Rates {
        self.estimates
            .get(&key)
            .map(Estimate::rates)
            .unwrap_or_default()
    }

    fn list(
        &self,
        env: &Env<'_>,
        stats: bool,
        rate: bool,
        only: Option<&str>,
    ) -> Result<ListData, CtlError> {
        if let Some(name) = only {
            env.pool
                .service(name)
                .ok_or_else(|| CtlError::not_found(format!("no service named {name}")))?;
        }
        let checked: HashSet<CheckKey> = env
            .health
            .snapshot()
            .into_iter()
            .map(|h| (h.key.service, h.key.address, h.key.port))
            .collect();
        let services = env
            .pool
            .services
            .iter()
            .filter(|s| only.is_none_or(|n| n == s.name))
            .map(|svc| {
                let forwarding = forwarding(svc.mode);
                let servers = svc
                    .servers
                    .iter()
                    .map(|s| {
                        let st = &env.shared.servers[usize::from(s.id)];
                        let health = if !checked.contains(&(svc.name.clone(), s.addr, s.port)) {
                            proto::Health::Unchecked
                        } else if s.up {
                            proto::Health::Up
                        } else {
                            proto::Health::Down
                        };
                        ServerInfo {
                            address: s.addr,
                            port: s.port,
                            forwarding,
                            weight: if s.removing { 0 } else { s.weight },
                            effective_weight: s.effective_weight(),
                            health,
                            active: u64::from(st.active.load(Relaxed)),
                            inactive: u64::from(st.inactive.load(Relaxed)),
                            stats: stats.then(|| counters(self.server_traffic(s.id))),
                            rate: rate.then(|| self.rates(Key::Server(s.id))),
                        }
                    })
                    .collect();
                ServiceInfo {
                    name: svc.name.clone(),
                    protocol: protocol(svc.proto),
                    vip: svc.vip,
                    port: svc.port,
                    scheduler: scheduler(svc.scheduler),
                    forwarding,
                    stats: stats.then(|| counters(self.service_traffic(env.pool, svc))),
                    rate: rate.then(|| self.rates(Key::Service(svc.name.clone()))),
                    servers,
                }
            })
            .collect();
        Ok(ListData {
            table_size: u64::from(env.shared.conns.capacity()),
            connections: u64::from(env.shared.conns.len()),
            services,
        })
    }

    fn health(&self, env: &Env<'_>) -> HealthData {
        let epoch = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        };
        let mut checked: HashMap<CheckKey, HealthInfo> = HashMap::new();
        for h in env.health.snapshot() {
            let up = h.state == pylon_health::State::Up;
            let last = h.last_result.as_ref().map(ToString::to_string);
            let reason = match (&last, up) {
                (None, _) => "no check completed yet".to_owned(),
                (Some(r), true) => format!("{} checks passed (rise {}): {r}", h.successes, h.rise),
                (Some(r), false) => format!("{} checks failed (fall {}): {r}", h.failures, h.fall),
            };
            let key = (h.key.service.clone(), h.key.address, h.key.port);
            checked.insert(
                key,
                HealthInfo {
                    service: h.key.service,
                    address: h.key.address,
                    port: h.key.port,
                    state: if up {
                        proto::Health::Up
                    } else {
                        proto::Health::Down
                    },
                    check: Some(h.kind.to_string()),
                    last_result: last,
                    last_change: epoch(h.last_change),
                    reason: Some(reason),
                    successes: h.successes,
                    failures: h.failures,
                },
            );
        }
        let mut servers = Vec::new();
        for svc in &env.pool.services {
            for s in svc.servers.iter().filter(|s| !s.removing) {
                let key = (svc.name.clone(), s.addr, s.port);
                servers.push(checked.remove(&key).unwrap_or(HealthInfo {
                    service: svc.name.clone(),
                    address: s.addr,
                    port: s.port,
                    state: proto::Health::Unchecked,
                    check: None,
                    last_result: None,
                    last_change: None,
                    reason: None,
                    successes: 0,
                    failures: 0,
                }));
            }
        }
        HealthData { servers }
    }

    fn workers(&self, env: &Env<'_>) -> WorkersData {
        let last = env.workers.len().saturating_sub(1);
        let workers = env
            .workers
            .iter()
            .enumerate()
            .map(|(i, (lcore, c))| {
                let idle = WorkerCounters::get(&c.idle_polls);
                let busy = WorkerCounters::get(&c.busy_polls);
                // Over the last rate period when there is one, else since
                // the start.
                let (di, db) = match self.polls.get(i) {
                    Some([prev, cur]) => (cur.0 - prev.0, cur.1 - prev.1),
                    None => (idle, busy),
                };
                let total = di + db;
                WorkerInfo {
                    lcore: *lcore,
                    role: if i == last {
                        Role::Control
                    } else {
                        Role::Worker
                    },
                    rx_packets: WorkerCounters::get(&c.rx_packets),
                    tx_packets: WorkerCounters::get(&c.tx_packets),
                    to_control: WorkerCounters::get(&c.to_control),
                    idle_polls: idle,
                    busy_polls: busy,
                    idle_share: if total == 0 {
                        0.0
                    } else {
                        di as f64 / total as f64
                    },
                    drops: DropReason::ALL
                        .iter()
                        .map(|&r| (r.name().to_owned(), c.drops(r)))
                        .collect(),
                }
            })
            .collect();
        let ports = env
            .ports
            .iter()
            .map(|(name, port)| {
                let st = port.stats().unwrap_or_default();
                PortInfo {
                    name: name.clone(),
                    link_up: port.link_up(),
                    rx_packets: st.ipackets,
                    tx_packets: st.opackets,
                    rx_bytes: st.ibytes,
                    tx_bytes: st.obytes,
                    imissed: st.imissed,
                    ierrors: st.ierrors,
                    oerrors: st.oerrors,
                    rx_nombuf: st.rx_nombuf,
                }
            })
            .collect();
        WorkersData { workers, ports }
    }

    /// Folds the counters' growth into the rate estimates.
    fn sample(&mut self, env: &Env<'_>, secs: f64) {
        let mut keys = Vec::new();
        for svc in &env.pool.services {
            keys.push((
                Key::Service(svc.name.clone()),
                self.service_traffic(env.pool, svc),
            ));
            for s in &svc.servers {
                keys.push((Key::Server(s.id), self.server_traffic(s.id)));
            }
        }
        let live: HashSet<Key> = keys.iter().map(|(k, _)| k.clone()).collect();
        self.estimates.retain(|k, _| live.contains(k));
        for (k, t) in keys {
            match self.estimates.get_mut(&k) {
                Some(e) => e.sample(t, secs),
                None => {
                    self.estimates.insert(
                        k,
                        Estimate {
                            last: t,
                            avg: [0.0; 5],
                        },
                    );
                }
            }
        }
        let polls: Vec<(u64, u64)> = env
            .workers
            .iter()
            .map(|(_, c)| {
                (
                    WorkerCounters::get(&c.idle_polls),
                    WorkerCounters::get(&c.busy_polls),
                )
            })
            .collect();
        self.polls = polls
            .iter()
            .enumerate()
            .map(|(i, &cur)| {
                let prev = self.polls.get(i).map_or((0, 0), |p| p[1]);
                [prev, cur]
            })
            .collect();
    }

    fn refresh_metrics(&self, env: &Env<'_>) {
        if self._metrics.is_none() {
            return;
        }
        let Ok(list) = self.list(env, true, false, None) else {
            return;
        };
        let workers = self.workers(env);
        let vrrp = VrrpData {
            instances: env.vrrp.info(env.shared.clock.now_ms64()),
        };
        let sync = env.sync.map_or_else(SyncData::default, Sync::status);
        let text = metrics::pylon(&list, &workers, &vrrp, &sync);
        *self.metrics_text.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    /// Removes deleted servers (and services) whose connections are gone.
    fn reap(&mut self, env: &mut Env<'_>, fx: &mut Effects) {
        let servers = &env.shared.servers;
        let idle = |id: u16| {
            servers
                .get(usize::from(id))
                .is_none_or(|s| s.active.load(Relaxed) == 0 && s.inactive.load(Relaxed) == 0)
        };
        let (freed, dropped) = env.pool.reap(idle);
        for (service, id) in freed {
            let t = self.server_traffic(id);
            let gone = self.gone.entry(service.clone()).or_default();
            *gone = gone.plus(t);
            self.baseline.remove(&id);
            self.estimates.remove(&Key::Server(id));
            info!(%service, id, "deleted server drained and removed");
        }
        if dropped {
            let pool = &*env.pool;
            self.gone.retain(|name, _| pool.service(name).is_some());
            fx.publish = true;
        }
    }

    fn change(
        &mut self,
        env: &mut Env<'_>,
        cmd: &Command,
        fx: &mut Effects,
    ) -> Result<Vec<Change>, CtlError> {
        let pool = &mut *env.pool;
        match cmd {
            Command::AddService {
                name,
                protocol: proto_,
                vip,
                port,
                scheduler: sched,
                forwarding: fwd,
            } => {
                check_name(name)?;
                check_unicast("vip", *vip)?;
                if *port == 0 {
                    return Err(CtlError::invalid("port must be 1..=65535"));
                }
                let proto = match proto_ {
                    Protocol::Tcp => PROTO_TCP,
                    Protocol::Udp => PROTO_UDP,
                };
                if let Some(s) = pool.service(name) {
                    return Err(exists_or_draining(s, format!("service {name} exists")));
                }
                if let Some(s) = pool
                    .services
                    .iter()
                    .find(|s| (s.vip, s.port, s.proto) == (*vip, *port, proto))
                {
                    return Err(exists_or_draining(
                        s,
                        format!("service {} has {} {vip}:{port}", s.name, proto_.upper()),
                    ));
                }
                let svc = PoolService {
                    name: name.clone(),
                    vip: *vip,
                    port: *port,
                    proto,
                    scheduler: kind_of(*sched),
                    mode: mode_of(*fwd),
                    servers: Vec::new(),
                    sorry: None,
                    removing: false,
                };
                let new = describe(&svc);
                pool.services.push(svc);
                Ok(vec![change(format!("services[{name}]"), None, Some(new))])
            }
            Command::EditService {
                name,
                scheduler: sched,
                forwarding: fwd,
            } => {
                let svc = live_service(pool, name)?;
                let mut changes = Vec::new();
                if let Some(k) = sched {
                    let old = svc.scheduler.name();
                    svc.scheduler = kind_of(*k);
                    if old != k.name() {
                        changes.push(change(
                            format!("services[{name}].scheduler"),
                            Some(old.into()),
                            Some(k.name().into()),
                        ));
                    }
                }
                if let Some(f) = fwd {
                    let old = forwarding(svc.mode);
                    svc.mode = mode_of(*f);
                    if old != *f {
                        changes.push(change(
                            format!("services[{name}].forwarding"),
                            Some(old.name().into()),
                            Some(f.name().into()),
                        ));
                    }
                }
                Ok(changes)
            }
            Command::DelService { name } => {
                let svc = live_service(pool, name)?;
                let old = describe(svc);
                remove_service(svc);
                let sorry = svc.sorry.take();
                if let Some(s) = sorry {
                    pool.retire(name, s);
                }
                Ok(vec![change(format!("services[{name}]"), Some(old), None)])
            }
            Command::AddServer {
                service,
                address,
                port,
                weight,
                forwarding: fwd,
            } => {
                check_reachable(env.cfg, *address)?;
                let slots = env.shared.servers.len();
                let svc = live_service(pool, service)?;
                let port = port.unwrap_or(svc.port);
                if port == 0 {
                    return Err(CtlError::invalid("port must be 1..=65535"));
                }
                if let Some(f) = fwd {
                    if *f != forwarding(svc.mode) {
                        return Err(CtlError::invalid(format!(
                            "service {service} forwards with {}; forwarding is per service in Pylon",
                            forwarding(svc.mode).name()
                        )));
                    }
                }
                let path = format!("services[{service}].servers[{address}:{port}]");
                let weight = u32::from(*weight);
                let existing = svc
                    .servers
                    .iter()
                    .position(|s| s.addr == *address && s.port == port);
                match existing {
                    Some(i) if !svc.servers[i].removing => {
                        return Err(CtlError::already_exists(format!("{path} exists")))
                    }
                    // Deleted but still draining: it comes back as it is.
                    Some(i) => {
                        let s = &mut svc.servers[i];
                        s.removing = false;
                        s.weight = weight;
                    }
                    None => {
                        let s = pool
                            .new_server(*address, port, weight, true, slots)
                            .map_err(|e| CtlError::invalid(e.to_string()))?;
                        let id = s.id;
                        live_service(pool, service)?.servers.push(s);
                        self.assigned(id);
                    }
                }
                fx.want.push(*address);
                Ok(vec![change(path, None, Some(format!("weight {weight}")))])
            }
            Command::EditServer {
                service,
                address,
                port,
                weight,
            } => {
                let s = find_server(pool, service, *address, *port)?;
                let path = format!("services[{service}].servers[{}:{}].weight", s.addr, s.port);
                let old = s.weight;
                s.weight = u32::from(*weight);
                Ok(if old == s.weight {
                    Vec::new()
                } else {
                    vec![change(
                        path,
                        Some(old.to_string()),
                        Some(weight.to_string()),
                    )]
                })
            }
            Command::DelServer {
                service,
                address,
                port,
            } => {
                let s = find_server(pool, service, *address, *port)?;
                s.removing = true;
                let path = format!("services[{service}].servers[{}:{}]", s.addr, s.port);
                Ok(vec![change(
                    path,
                    Some(format!("weight {}", s.weight)),
                    None,
                )])
            }
            other => Err(CtlError::internal(format!(
                "{} is not a change",
                other.name()
            ))),
        }
    }

    /// Makes the running services what a peer pushed, as the pylonctl
    /// commands that get there (so exactly their checks and effects) and
    /// the sorry servers the peer runs, all or nothing. Refused while this
    /// appliance serves any service (a master is not reconfigured under
    /// its traffic, and two masters cannot push each other in turn).
    fn apply_pushed(
        &mut self,
        env: &mut Env<'_>,
        pushed: &[ServiceDesc],
        fx: &mut Effects,
    ) -> Result<Vec<Change>, CtlError> {
        if env.shared.snapshot.load().serves_any() {
            return Err(CtlError::invalid(
                "this appliance serves (VRRP MASTER); a pushed configuration is applied on a backup only",
            ));
        }
        let commands = push_commands(env.pool, pushed)?;
        let saved = env.pool.clone();
        let mut changes = Vec::new();
        for cmd in &commands {
            match self.change(env, cmd, fx) {
                Ok(c) => changes.extend(c),
                Err(e) => {
                    *env.pool = saved;
                    return Err(CtlError::invalid(format!("{}: {}", cmd.name(), e.message)));
                }
            }
        }
        for p in pushed {
            match self.push_sorry(env, p, fx) {
                Ok(c) => changes.extend(c),
                Err(e) => {
                    *env.pool = saved;
                    return Err(CtlError::invalid(format!(
                        "service {}: sorry server: {}",
                        p.name, e.message
                    )));
                }
            }
        }
        fx.publish = true;
        Ok(changes)
    }

    /// Gives the (live) service `p` names the sorry server `p` has.
    fn push_sorry(
        &mut self,
        env: &mut Env<'_>,
        p: &ServiceDesc,
        fx: &mut Effects,
    ) -> Result<Option<Change>, CtlError> {
        let new = p.sorry.map(|(addr, port)| SocketAddrV4::new(addr, port));
        if let Some(n) = new {
            check_reachable(env.cfg, *n.ip())?;
            if n.port() == 0 {
                return Err(CtlError::invalid("port must be 1..=65535"));
            }
        }
        let slots = env.shared.servers.len();
        let pool = &mut *env.pool;
        let i = pool
            .services
            .iter()
            .position(|s| s.name == p.name && !s.removing)
            .ok_or_else(|| CtlError::internal(format!("service {} is not running", p.name)))?;
        let mut sorry = pool.services[i].sorry.take();
        let old = sorry.as_ref().map(|s| SocketAddrV4::new(s.addr, s.port));
        let assigned = set_sorry(pool, &p.name, &mut sorry, new, slots);
        pool.services[i].sorry = sorry;
        let assigned = assigned.map_err(|e| CtlError::invalid(e.to_string()))?;
        if let Some(id) = assigned {
            self.assigned(id);
            fx.want.extend(new.map(|n| *n.ip()));
        }
        Ok((old != new).then(|| {
            change(
                format!("services[{}].sorry", p.name),
                old.map(|a| a.to_string()),
                new.map(|a| a.to_string()),
            )
        }))
    }

    /// The running services and servers in the shape of a file.
    fn running(&self, pool: &Pool) -> Model {
        pool.services
            .iter()
            .filter(|s| !s.removing)
            .map(|s| {
                let servers = s
                    .servers
                    .iter()
                    .filter(|r| !r.removing)
                    .map(|r| {
                        let check = self.checks.get(&(s.name.clone(), r.addr, r.port)).cloned();
                        (SocketAddrV4::new(r.addr, r.port), (r.weight, check))
                    })
                    .collect();
                (
                    s.name.clone(),
                    SvcModel {
                        desc: describe(s),
                        scheduler: s.scheduler.name().to_owned(),
                        forwarding: forwarding(s.mode).name().to_owned(),
                        sorry: s.sorry.as_ref().map(|r| SocketAddrV4::new(r.addr, r.port)),
                        servers,
                    },
                )
            })
            .collect()
    }

    fn load(&self) -> Result<Config, CtlError> {
        Config::load(&self.path).map_err(|e| CtlError::invalid(e.to_string()))
    }

    fn diff(&self, env: &Env<'_>) -> Result<DiffData, CtlError> {
        let file = self.load()?;
        Ok(DiffData {
            file: self.path.display().to_string(),
            changes: diff(&of_config(&file), &self.running(env.pool)),
        })
    }

    /// Reloads the file: validated in full, diffed against the running
    /// pool and applied as one new pool (one snapshot); on any error
    /// nothing changes.
    fn reload(&mut self, env: &mut Env<'_>, fx: &mut Effects) -> Result<ReloadData, CtlError> {
        let new = self.load()?;
        let file = self.path.display().to_string();
        if let Some(key) = fixed_section_changed(env.cfg, &new) {
            return Err(CtlError::invalid(format!(
                "{file}: {key}: cannot change while the daemon runs; restart it to apply"
            )));
        }
        let changes = diff(&self.running(env.pool), &of_config(&new));
        let mut pool = env.pool.clone();
        let assigned = apply(&mut pool, &new, env.shared.servers.len())
            .map_err(|(key, problem)| CtlError::invalid(format!("{file}: {key}: {problem}")))?;
        *env.pool = pool;
        for id in assigned {
            self.assigned(id);
        }
        if let Err(e) = env.health.reconfigure(&new) {
            warn!("reload: health checks: {e}");
        }
        self.checks = checks_of(&new);
        for svc in &new.services {
            fx.want.extend(svc.servers.iter().map(|s| s.address));
            fx.want.extend(svc.sorry.iter().map(|s| s.address));
        }
        fx.publish = true;
        info!(changes = changes.len(), "configuration reloaded");
        Ok(ReloadData {
            file: file.to_string(),
            changes,
        })
    }
}

fn change(path: String, old: Option<String>, new: Option<String>) -> Change {
    Change { path, old, new }
}

fn counters(t: Traffic) -> Counters {
    Counters {
        conns: t.conns,
        in_packets: t.in_packets,
        out_packets: t.out_packets,
        in_bytes: t.in_bytes,
        out_bytes: t.out_bytes,
    }
}

fn protocol(p: u8) -> Protocol {
    if p == PROTO_UDP {
        Protocol::Udp
    } else {
        Protocol::Tcp
    }
}

fn scheduler(k: Kind) -> Scheduler {
    match k {
        Kind::Rr => Scheduler::Rr,
        Kind::Wrr => Scheduler::Wrr,
        Kind::Lc => Scheduler::Lc,
        Kind::Wlc => Scheduler::Wlc,
    }
}

fn kind_of(s: Scheduler) -> Kind {
    kind(match s {
        Scheduler::Rr => pylon_config::Scheduler::Rr,
        Scheduler::Wrr => pylon_config::Scheduler::Wrr,
        Scheduler::Lc => pylon_config::Scheduler::Lc,
        Scheduler::Wlc => pylon_config::Scheduler::Wlc,
    })
}

fn forwarding(m: Mode) -> Forwarding {
    match m {
        Mode::Nat => Forwarding::Nat,
        Mode::Dsr => Forwarding::Dsr,
        Mode::Tunnel => Forwarding::Tunnel,
    }
}

fn mode_of(f: Forwarding) -> Mode {
    mode(match f {
        Forwarding::Nat => pylon_config::Forwarding::Nat,
        Forwarding::Dsr => pylon_config::Forwarding::Dsr,
        Forwarding::Tunnel => pylon_config::Forwarding::Tunnel,
    })
}

/// `tcp 10.0.1.100:80 wlc nat`.
fn describe(s: &PoolService) -> String {
    format!(
        "{} {}:{} {} {}",
        proto_name(s.proto),
        s.vip,
        s.port,
        s.scheduler.name(),
        forwarding(s.mode).name()
    )
}

fn check_name(name: &str) -> Result<(), CtlError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CtlError::invalid(format!(
            "service name `{}`: 1 to 32 of a-z A-Z 0-9 _ -",
            name.escape_debug()
        )))
    }
}

/// A server address the dataplane can send to: unicast, and on a port's
/// subnet or behind a port's gateway.
fn check_reachable(cfg: &Config, address: Ipv4Addr) -> Result<(), CtlError> {
    check_unicast("address", address)?;
    if cfg.port_for(address).is_none() {
        return Err(CtlError::invalid(format!(
            "{address} is not reachable: no port's subnet holds it and no port has a gateway"
        )));
    }
    Ok(())
}

fn check_unicast(what: &str, ip: Ipv4Addr) -> Result<(), CtlError> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(CtlError::invalid(format!(
            "{what} {ip} is not a unicast address"
        )));
    }
    Ok(())
}

fn exists_or_draining(s: &PoolService, what: String) -> CtlError {
    if s.removing {
        CtlError::already_exists(format!("{what} (deleted; its connections are draining)"))
    } else {
        CtlError::already_exists(what)
    }
}

/// The pylonctl commands that turn the running services into `pushed`:
/// removals first (a server can move between services), then additions
/// and edits. A service whose address or protocol differs under the same
/// name cannot be changed at runtime: the push is refused.
fn push_commands(pool: &Pool, pushed: &[ServiceDesc]) -> Result<Vec<Command>, CtlError> {
    let running = pool_services(pool);
    let mut removals: Vec<Command> = running
        .iter()
        .filter(|r| !pushed.iter().any(|p| p.name == r.name))
        .map(|r| Command::DelService {
            name: r.name.clone(),
        })
        .collect();
    let mut rest = Vec::new();
    for p in pushed {
        let kind: Kind = p
            .scheduler
            .parse()
            .map_err(|e| CtlError::invalid(format!("service {}: {e}", p.name)))?;
        let (sched, fwd) = (scheduler(kind), forwarding(local_mode(p.mode)));
        let ours: &[(Ipv4Addr, u16, u32)] = match running.iter().find(|r| r.name == p.name) {
            None => {
                rest.push(Command::AddService {
                    name: p.name.clone(),
                    protocol: protocol(p.proto),
                    vip: p.vip,
                    port: p.port,
                    scheduler: sched,
                    forwarding: fwd,
                });
                &[]
            }
            Some(r) => {
                if (r.vip, r.port, r.proto) != (p.vip, p.port, p.proto) {
                    return Err(CtlError::invalid(format!(
                        "service {} is {} {}:{} here and {} {}:{} on the peer; an address cannot change at runtime",
                        p.name,
                        proto_name(r.proto),
                        r.vip,
                        r.port,
                        proto_name(p.proto),
                        p.vip,
                        p.port
                    )));
                }
                if r.scheduler != p.scheduler || r.mode != p.mode {
                    rest.push(Command::EditService {
                        name: p.name.clone(),
                        scheduler: Some(sched),
                        forwarding: Some(fwd),
                    });
                }
                &r.servers
            }
        };
        for &(addr, port, _) in ours {
            if !p.servers.iter().any(|&(a, po, _)| (a, po) == (addr, port)) {
                removals.push(Command::DelServer {
                    service: p.name.clone(),
                    address: addr,
                    port: Some(port),
                });
            }
        }
        for &(addr, port, weight) in &p.servers {
            let weight = u16::try_from(weight).map_err(|_| {
                CtlError::invalid(format!("{addr}:{port}: weight {weight} is out of range"))
            })?;
            match ours.iter().find(|&&(a, po, _)| (a, po) == (addr, port)) {
                None => rest.push(Command::AddServer {
                    service: p.name.clone(),
                    address: addr,
                    port: Some(port),
                    weight,
                    forwarding: None,
                }),
                Some(&(_, _, w)) if w != u32::from(weight) => rest.push(Command::EditServer {
                    service: p.name.clone(),
                    address: addr,
                    port: Some(port),
                    weight,
                }),
                Some(_) => {}
            }
        }
    }
    removals.extend(rest);
    Ok(removals)
}

fn live_service<'p>(pool: &'p mut Pool, name: &str) -> Result<&'p mut PoolService, CtlError> {
    match pool.service_mut(name) {
        Some(s) if !s.removing => Ok(s),
        _ => Err(CtlError::not_found(format!("no service named {name}"))),
    }
}

/// The one live server of `service` at `address` (and `port`, when given).
fn find_server<'p>(
    pool: &'p mut Pool,
    service: &str,
    address: Ipv4Addr,
    port: Option<u16>,
) -> Result<&'p mut PoolServer, CtlError> {
    let svc = live_service(pool, service)?;
    let ep = Endpoint { address, port };
    let mut matching = svc
        .servers
        .iter_mut()
        .filter(|s| !s.removing && ep.matches(SocketAddrV4::new(s.addr, s.port)));
    let first = matching
        .next()
        .ok_or_else(|| CtlError::not_found(format!("service {service} has no server {ep}")))?;
    if matching.next().is_some() {
        return Err(CtlError::new(
            ErrorCode::Ambiguous,
            format!("service {service} has several servers at {address}; give the port"),
        ));
    }
    Ok(first)
}

/// Deletes a service: no new connections, existing ones drain.
fn remove_service(svc: &mut PoolService) {
    svc.removing = true;
    for s in &mut svc.servers {
        s.removing = true;
    }
}

fn drain(
    pool: &mut Pool,
    service: Option<&str>,
    address: Ipv4Addr,
    port: Option<u16>,
) -> Result<DrainData, CtlError> {
    if let Some(name) = service {
        live_service(pool, name)?;
    }
    let ep = Endpoint { address, port };
    let mut servers = Vec::new();
    for svc in pool.services.iter_mut().filter(|s| !s.removing) {
        if service.is_some_and(|n| n != svc.name) {
            continue;
        }
        for s in svc.servers.iter_mut().filter(|s| !s.removing) {
            if ep.matches(SocketAddrV4::new(s.addr, s.port)) {
                servers.push(DrainedServer {
                    service: svc.name.clone(),
                    address: s.addr,
                    port: s.port,
                    previous_weight: s.weight,
                });
                s.weight = 0;
            }
        }
    }
    if servers.is_empty() {
        return Err(CtlError::not_found(format!("no server {ep}")));
    }
    Ok(DrainData { servers })
}

fn conns(
    env: &Env<'_>,
    service: Option<&str>,
    server: Option<Endpoint>,
    client: Option<Endpoint>,
    limit: u32,
) -> Result<ConnsData, CtlError> {
    let names: HashMap<(u32, u16, u8), &str> = env
        .pool
        .services
        .iter()
        .map(|s| ((u32::from(s.vip), s.port, s.proto), s.name.as_str()))
        .collect();
    let wanted = match service {
        Some(name) => Some(
            env.pool
                .service(name)
                .map(|s| (u32::from(s.vip), s.port, s.proto))
                .ok_or_else(|| CtlError::not_found(format!("no service named {name}")))?,
        ),
        None => None,
    };
    let conns = &env.shared.conns;
    let timeouts = conns.timeouts();
    let mut data = ConnsData::default();
    conns.for_each(env.shared.clock.now_ms(), |c, idle| {
        let key = (c.vip, c.vport, c.proto);
        let server_addr = SocketAddrV4::new(Ipv4Addr::from(c.rip), c.rport);
        let client_addr = SocketAddrV4::new(Ipv4Addr::from(c.client_ip), c.client_port);
        if wanted.is_some_and(|w| w != key)
            || server.is_some_and(|e| !e.matches(server_addr))
            || client.is_some_and(|e| !e.matches(client_addr))
        {
            return;
        }
        data.matched += 1;
        if data.conns.len() >= limit as usize {
            data.truncated = true;
            return;
        }
        data.conns.push(ConnInfo {
            service: names.get(&key).copied().unwrap_or("-").to_owned(),
            protocol: protocol(c.proto),
            state: c.state.name().to_owned(),
            expires_ms: u64::from(timeouts.for_state(c.state).saturating_sub(idle)),
            client: client_addr,
            virtual_addr: SocketAddrV4::new(Ipv4Addr::from(c.vip), c.vport),
            server: server_addr,
        });
    });
    Ok(data)
}

/// A service as a file or the running pool has it, for diffs.
#[derive(Debug, Clone, PartialEq)]
struct SvcModel {
    /// Protocol, address, scheduler and forwarding in one line.
    desc: String,
    scheduler: String,
    forwarding: String,
    sorry: Option<SocketAddrV4>,
    /// Weight and health check of each server.
    servers: BTreeMap<SocketAddrV4, (u32, Option<HealthCheck>)>,
}

type Model = BTreeMap<String, SvcModel>;

fn of_config(cfg: &Config) -> Model {
    cfg.services
        .iter()
        .map(|s| {
            let proto = match s.protocol {
                pylon_config::Protocol::Tcp => PROTO_TCP,
                pylon_config::Protocol::Udp => PROTO_UDP,
            };
            let pool_like = PoolService {
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
                proto,
                scheduler: kind(s.scheduler),
                mode: mode(s.forwarding),
                servers: Vec::new(),
                sorry: None,
                removing: false,
            };
            (
                s.name.clone(),
                SvcModel {
                    desc: describe(&pool_like),
                    scheduler: s.scheduler.to_string(),
                    forwarding: s.forwarding.to_string(),
                    sorry: s
                        .sorry
                        .as_ref()
                        .map(|r| SocketAddrV4::new(r.address, r.port)),
                    servers: s
                        .servers
                        .iter()
                        .map(|r| {
                            (
                                SocketAddrV4::new(r.address, r.port),
                                (u32::from(r.weight), r.check.clone()),
                            )
                        })
                        .collect(),
                },
            )
        })
        .collect()
}

fn check_name_of(c: &Option<HealthCheck>) -> String {
    c.as_ref()
        .map_or_else(|| "none".to_owned(), |c| c.kind().to_string())
}

/// What differs from `old` to `new`, as paths with both values.
fn diff(old: &Model, new: &Model) -> Vec<Change> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let p = format!("services[{name}]");
        let (o, n) = match (old.get(name), new.get(name)) {
            (Some(o), Some(n)) => (o, n),
            (o, n) => {
                out.push(change(
                    p,
                    o.map(|s| s.desc.clone()),
                    n.map(|s| s.desc.clone()),
                ));
                continue;
            }
        };
        let mut field = |f: &str, a: String, b: String| {
            if a != b {
                out.push(change(format!("{p}.{f}"), Some(a), Some(b)));
            }
        };
        field("scheduler", o.scheduler.clone(), n.scheduler.clone());
        field("forwarding", o.forwarding.clone(), n.forwarding.clone());
        if o.sorry != n.sorry {
            out.push(change(
                format!("{p}.sorry"),
                o.sorry.map(|a| a.to_string()),
                n.sorry.map(|a| a.to_string()),
            ));
        }
        let addrs: std::collections::BTreeSet<&SocketAddrV4> =
            o.servers.keys().chain(n.servers.keys()).collect();
        for a in addrs {
            let sp = format!("{p}.servers[{a}]");
            match (o.servers.get(a), n.servers.get(a)) {
                (Some((ow, oc)), Some((nw, nc))) => {
                    if ow != nw {
                        out.push(change(
                            format!("{sp}.weight"),
                            Some(ow.to_string()),
                            Some(nw.to_string()),
                        ));
                    }
                    if oc != nc {
                        let (a, mut b) = (check_name_of(oc), check_name_of(nc));
                        if a == b {
                            b.push_str(" (settings changed)");
                        }
                        out.push(change(format!("{sp}.health"), Some(a), Some(b)));
                    }
                }
                (o, n) => out.push(change(
                    sp,
                    o.map(|(w, _)| format!("weight {w}")),
                    n.map(|(w, _)| format!("weight {w}")),
                )),
            }
        }
    }
    out
}

/// The key of the first section of `new` that differs from the running
/// `cfg` and cannot change at runtime.
fn fixed_section_changed(cfg: &Config, new: &Config) -> Option<&'static str> {
    let c = &cfg.control;
    let n = &new.control;
    [
        ("eal", cfg.eal != new.eal),
        ("dataplane", cfg.dataplane != new.dataplane),
        ("timeouts", cfg.timeouts != new.timeouts),
        ("neighbors", cfg.neighbors != new.neighbors),
        ("ports", cfg.ports != new.ports),
        ("vrrp", cfg.vrrp != new.vrrp),
        ("sync", cfg.sync != new.sync),
        ("control.socket", c.socket != n.socket),
        ("control.metrics", c.metrics != n.metrics),
        ("control.stats_file", c.stats_file != n.stats_file),
        ("control.log", c.log != n.log),
    ]
    .into_iter()
    .find_map(|(key, changed)| changed.then_some(key))
}

/// Makes `pool` what `cfg` describes: unchanged services and servers keep
/// their ids (so their connections and counters), servers no longer in
/// the file are deleted (drained), new ones get ids. Returns the ids
/// assigned, or the file key and problem that prevent it.
fn apply(pool: &mut Pool, cfg: &Config, slots: usize) -> Result<Vec<u16>, (String, String)> {
    let full = |i: usize, e: TooManyServers| (format!("services[{i}]"), e.to_string());
    let mut assigned = Vec::new();
    let mut old = std::mem::take(&mut pool.services);
    let mut services = Vec::new();
    for (i, fs) in cfg.services.iter().enumerate() {
        let proto = match fs.protocol {
            pylon_config::Protocol::Tcp => PROTO_TCP,
            pylon_config::Protocol::Udp => PROTO_UDP,
        };
        let key = (fs.vip, fs.port, proto);
        if let Some(other) = old
            .iter()
            .find(|s| s.name != fs.name && (s.vip, s.port, s.proto) == key)
        {
            return Err((
                format!("services[{i}]"),
                format!(
                    "{} {}:{} belongs to service {}, which is being removed; a service keeps its name while it runs",
                    fs.protocol, fs.vip, fs.port, other.name
                ),
            ));
        }
        let mut svc = match old.iter().position(|s| s.name == fs.name) {
            Some(j) => {
                let s = old.remove(j);
                if (s.vip, s.port, s.proto) != key {
                    return Err((
                        format!("services[{i}]"),
                        format!(
                            "service {} is {}; a service's vip, port and protocol cannot change while it runs: add the new one under another name",
                            fs.name,
                            describe(&s)
                        ),
                    ));
                }
                s
            }
            None => PoolService {
                name: fs.name.clone(),
                vip: fs.vip,
                port: fs.port,
                proto,
                scheduler: kind(fs.scheduler),
                mode: mode(fs.forwarding),
                servers: Vec::new(),
                sorry: None,
                removing: false,
            },
        };
        svc.removing = false;
        svc.scheduler = kind(fs.scheduler);
        svc.mode = mode(fs.forwarding);
        let mut prev = std::mem::take(&mut svc.servers);
        let mut servers = Vec::new();
        for s in &fs.servers {
            let weight = u32::from(s.weight);
            match prev
                .iter()
                .position(|p| p.addr == s.address && p.port == s.port)
            {
                Some(j) => {
                    let mut p = prev.remove(j);
                    p.weight = weight;
                    if p.removing {
                        p.removing = false;
                        p.up = initially_up(cfg, &fs.name, s.address, s.port);
                    }
                    servers.push(p);
                }
                None => {
                    let up = initially_up(cfg, &fs.name, s.address, s.port);
                    let p = pool
                        .new_server(s.address, s.port, weight, up, slots)
                        .map_err(|e| full(i, e))?;
                    assigned.push(p.id);
                    servers.push(p);
                }
            }
        }
        for mut p in prev {
            p.removing = true;
            servers.push(p);
        }
        svc.servers = servers;
        let sorry = fs
            .sorry
            .as_ref()
            .map(|n| SocketAddrV4::new(n.address, n.port));
        assigned.extend(
            set_sorry(pool, &svc.name, &mut svc.sorry, sorry, slots).map_err(|e| full(i, e))?,
        );
        services.push(svc);
    }
    for mut s in old {
        remove_service(&mut s);
        if let Some(o) = s.sorry.take() {
            pool.retire(&s.name, o);
        }
        services.push(s);
    }
    pool.services = services;
    Ok(assigned)
}

/// Makes `sorry` (the sorry server of `service`) the server at `new`: an
/// unchanged one keeps its id and connections, a replaced one is retired
/// and drains. Returns the id given to a new one.
fn set_sorry(
    pool: &mut Pool,
    service: &str,
    sorry: &mut Option<PoolServer>,
    new: Option<SocketAddrV4>,
    slots: usize,
) -> Result<Option<u16>, TooManyServers> {
    if sorry.as_ref().map(|s| SocketAddrV4::new(s.addr, s.port)) == new {
        return Ok(None);
    }
    if let Some(old) = sorry.take() {
        pool.retire(service, old);
    }
    let Some(new) = new else {
        return Ok(None);
    };
    let server = pool.new_server(*new.ip(), new.port(), 1, true, slots)?;
    let id = server.id;
    *sorry = Some(server);
    Ok(Some(id))
}

fn proto_name(p: u8) -> &'static str {
    match protocol(p) {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}
