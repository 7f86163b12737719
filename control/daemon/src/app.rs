//! Start-up, the control lcore's loop and shutdown of the daemon.

use crate::ctl::{Ctl, Env};
use crate::health::Health;
use crate::neighbors::NeighborManager;
use crate::pool::Pool;
use crate::slowpath::{self, Outcome, SlowCounters, SlowPath, ARP_FRAME_LEN};
use crate::stats::{self, StatsView};
use crate::sync::{pool_services, Sync};
use crate::vrrp::Vrrp;
use pylon_config::Config;
use pylon_conntrack::{Table, Timeouts};
use pylon_dataplane::counters::WorkerCounters;
use pylon_dataplane::events::EventQueue;
use pylon_dataplane::forward::{release, Forwarder};
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::PortInfo;
use pylon_dataplane::worker::{ControlRing, IdleBackoff, Worker};
use pylon_dpdk::{Eal, Mbuf, Mempool, Port, PortConf};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Frames the control lcore takes from the ring per round, so a flood of
/// ARP cannot starve its timers.
const SLOW_PATH_BUDGET: usize = 256;
/// Capacity of the worker-to-control ring.
const CONTROL_RING: usize = 4096;
/// Period of connection reclamation and neighbor maintenance.
const TICK_MS: u32 = 100;
/// Connection-table sweeps per second: each tick scans this fraction.
const SWEEPS_PER_SECOND: u32 = 1;
/// Per-server counter slots: room for servers added at runtime later.
const MIN_SERVER_SLOTS: usize = 4096;
/// mbuf data room: a 1500-byte frame plus the standard headroom.
const MBUF_DATA_ROOM: u16 = 2048 + 128;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("DPDK: {0}")]
    Dpdk(#[from] pylon_dpdk::Error),
    #[error("connection table: {0}")]
    Conntrack(#[from] pylon_conntrack::Error),
    #[error("port {port}: {problem}")]
    Port { port: String, problem: String },
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Pool(#[from] crate::pool::TooManyServers),
    #[error("health checks: {0}")]
    Health(#[from] pylon_health::EngineError),
    #[error("{0}")]
    Vrrp(#[from] crate::vrrp::VrrpError),
    #[error("{0}")]
    Sync(#[from] crate::sync::SyncError),
    #[error("{0}")]
    Ctl(#[from] crate::ctl::StartError),
}

/// Removes the EAL runtime directory when dropped: EAL leaves its config,
/// memory-segment files and sockets there even after rte_eal_cleanup.
struct RuntimeDir(PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                warn!("could not remove {}: {e}", self.0.display());
            }
        }
    }
}

/// Stops and joins the worker lcores when dropped, so every exit path
/// (including a failed start-up) leaves no lcore running.
struct Lcores {
    lcores: Vec<u32>,
    stop: Arc<AtomicBool>,
}

impl Drop for Lcores {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for &l in &self.lcores {
            if let Err(e) = pylon_dpdk::wait_lcore(l) {
                warn!("lcore {l}: {e}");
            }
        }
    }
}

/// Stops and closes the ports when dropped (before the mempool goes).
struct Ports(Vec<(String, Port)>);

impl Drop for Ports {
    fn drop(&mut self) {
        for (name, p) in &self.0 {
            if let Err(e) = p.stop() {
                warn!("port {name}: stop: {e}");
            }
            if let Err(e) = p.close() {
                warn!("port {name}: close: {e}");
            }
        }
    }
}

/// af_packet creates its queue pairs when the device is probed and spreads
/// received frames over all of them (PACKET_FANOUT), so the pair count must
/// match what the daemon polls: one per worker plus the control lcore's.
fn af_packet_qpairs(args: &mut [String], qpairs: usize) -> Result<(), Error> {
    let mut vdev = false;
    for a in args.iter_mut() {
        if vdev && a.starts_with("net_af_packet") {
            match a.split(',').find_map(|kv| kv.strip_prefix("qpairs=")) {
                Some(q) if q != qpairs.to_string() => {
                    return Err(Error::Setup(format!(
                        "{a}: qpairs={q}, but {qpairs} are needed (workers + 1 for the control lcore); leave qpairs out"
                    )))
                }
                Some(_) => {}
                None => a.push_str(&format!(",qpairs={qpairs}")),
            }
        }
        vdev = a == "--vdev";
    }
    Ok(())
}

/// `/sys/class/net/<iface>/carrier` of a `net_af_packet` device string
/// (`net_af_packet0,iface=eth1`).
fn kernel_carrier(device: &str) -> Option<PathBuf> {
    let iface = device.split(',').find_map(|kv| kv.strip_prefix("iface="))?;
    Some(Path::new("/sys/class/net").join(iface).join("carrier"))
}

/// Whether a port's link is up, for `track_ports`: what the driver
/// reports and, given the kernel interface's carrier file, that carrier
/// too. The af_packet driver reports its link up from start to stop
/// whatever the interface does, so only the kernel knows a cut cable; the
/// file cannot be read while the interface is down (administratively),
/// which counts as down as well.
fn link_up(port: &Port, carrier: Option<&Path>) -> bool {
    port.link_up()
        && carrier
            .is_none_or(|path| std::fs::read_to_string(path).is_ok_and(|state| state.trim() == "1"))
}

fn timeouts(cfg: &Config) -> Timeouts {
    let t = &cfg.timeouts;
    let ms = |s: u32| s.saturating_mul(1000);
    Timeouts {
        tcp_established: ms(t.tcp_established),
        tcp_syn: ms(t.tcp_syn),
        tcp_fin_wait: ms(t.tcp_fin_wait),
        tcp_close_wait: ms(t.tcp_close_wait),
        tcp_last_ack: ms(t.tcp_last_ack),
        tcp_time_wait: ms(t.tcp_time_wait),
        tcp_close: ms(t.tcp_close),
        udp: ms(t.udp),
    }
}

/// Runs the appliance until SIGINT/SIGTERM; `path` is the configuration
/// file `cfg` came from (reloaded on SIGHUP and `pylonctl reload`).
pub fn run(cfg: &Config, path: &Path) -> Result<(), Error> {
    let nworkers = cfg.dataplane.workers.len();
    let queues =
        u16::try_from(nworkers + 1).map_err(|_| Error::Setup("too many workers".into()))?;
    let mut args = cfg.eal_args("pylon");
    af_packet_qpairs(&mut args, nworkers + 1)?;

    // Declared first so it is dropped last, after EAL cleanup.
    let _runtime = RuntimeDir(PathBuf::from("/var/run/dpdk").join(&cfg.eal.file_prefix));
    info!(?args, "initialising EAL");
    let _eal = Eal::init(&args)?;
    let mbufs = Mempool::new(
        "pylon_mbufs",
        cfg.eal.mbufs,
        cfg.eal.mbuf_cache,
        MBUF_DATA_ROOM,
    )?;

    let mut ports = Ports(Vec::new());
    let mut infos = Vec::new();
    let mut spare_rx = Vec::new();
    let mut carriers = Vec::new();
    for p in &cfg.ports {
        let port = Port::by_name(p.dpdk_name())?;
        let dev = port.info()?;
        // See af_packet_qpairs: the control lcore polls the extra queue.
        let spare = dev.driver_name == "net_af_packet";
        let conf = PortConf {
            rx_queues: if spare { queues } else { queues - 1 },
            tx_queues: queues,
            rx_desc: cfg.dataplane.rx_desc,
            tx_desc: cfg.dataplane.tx_desc,
            rss: nworkers > 1,
        };
        port.configure(&conf, &mbufs)?;
        port.start()?;
        let mac = port.mac()?;
        info!(port = %p.name, driver = %dev.driver_name, mac = ?mac, "port started");
        infos.push(PortInfo {
            name: p.name.clone(),
            mac,
            addr: u32::from(p.address.addr()),
            mask: u32::from(p.address.netmask()),
            gateway: p.gateway.map(u32::from),
            mtu: p.mtu,
            vmacs: Vec::new(),
        });
        spare_rx.push(spare);
        carriers.push(spare.then(|| kernel_carrier(&p.device)).flatten());
        ports.0.push((p.name.clone(), port));
    }

    let table = Table::new(cfg.dataplane.conn_capacity, timeouts(cfg))?;
    let mut pool = Pool::from_config(cfg, |service, addr, port| {
        crate::health::initially_up(cfg, service, addr, port)
    })?;
    let vrrp = Vrrp::new(&cfg.vrrp, |name| {
        let i = cfg.ports.iter().position(|p| p.name == name)?;
        Some((i, cfg.ports[i].address.addr()))
    })?;
    // Frames to a virtual MAC must reach us: a MAC filter entry, or
    // promiscuous mode where the driver has no filter (af_packet needs
    // neither, but asking does no harm).
    for (port, vmac) in vrrp.virtual_macs() {
        let (name, p) = &ports.0[port];
        if let Err(e) = p.add_mac(vmac) {
            info!(port = %name, "no MAC filter for the virtual MAC ({e}); going promiscuous");
            p.set_promiscuous(true)?;
        }
    }
    let shared = Arc::new(Shared::new(
        pool.snapshot(&infos, &vrrp.ownership()),
        table,
        pool.ids_used().max(MIN_SERVER_SLOTS),
    ));
    info!(
        capacity = shared.conns.capacity(),
        bytes_per_conn = shared.conns.memory_bytes() as f64 / f64::from(shared.conns.capacity()),
        "connection table ready"
    );

    let ring = Arc::new(ControlRing::new(CONTROL_RING));
    let stop = Arc::new(AtomicBool::new(false));
    let idle = IdleBackoff {
        polls: cfg.dataplane.idle_polls,
        sleep: Duration::from_micros(u64::from(cfg.dataplane.idle_sleep_us)),
    };
    let burst = usize::from(cfg.dataplane.burst);
    let mut lcores = Lcores {
        lcores: Vec::new(),
        stop: Arc::clone(&stop),
    };
    let mut worker_counters = Vec::new();
    // With [sync], each forwarder (workers and the control lcore's) reports
    // new connections and state changes into a queue of its own.
    let mut event_queues: Vec<Arc<EventQueue>> = Vec::new();
    // Each forwarder's per-server traffic counters, summed by the CLI.
    let mut traffic = Vec::new();
    let mut forwarder = || {
        let fwd = Forwarder::new(Arc::clone(&shared));
        traffic.push(Arc::clone(fwd.traffic()));
        match &cfg.sync {
            Some(s) => {
                let q = Arc::new(EventQueue::new(s.queue as usize));
                event_queues.push(Arc::clone(&q));
                fwd.with_events(q)
            }
            None => fwd,
        }
    };
    for (q, &lcore) in cfg.dataplane.workers.iter().enumerate() {
        let q = q as u16;
        let counters = Arc::new(WorkerCounters::default());
        let worker = Worker::new(
            forwarder(),
            Arc::clone(&counters),
            ports
                .0
                .iter()
                .map(|(_, p)| p.rx_queue(q).map(Some))
                .collect::<Result<_, _>>()?,
            ports
                .0
                .iter()
                .map(|(_, p)| p.tx_queue(q))
                .collect::<Result<_, _>>()?,
            burst,
            Arc::clone(&ring),
            idle,
        );
        let stop = Arc::clone(&stop);
        pylon_dpdk::launch(lcore, move || {
            worker.run(&stop);
            0
        })?;
        lcores.lcores.push(lcore);
        worker_counters.push((lcore, counters));
    }
    info!(workers = ?cfg.dataplane.workers, "workers running");

    let ctl_q = queues - 1;
    let ctl_counters = Arc::new(WorkerCounters::default());
    let ctl_worker = Worker::new(
        forwarder(),
        Arc::clone(&ctl_counters),
        ports
            .0
            .iter()
            .zip(&spare_rx)
            .map(|((_, p), &spare)| spare.then(|| p.rx_queue(ctl_q)).transpose())
            .collect::<Result<_, _>>()?,
        ports
            .0
            .iter()
            .map(|(_, p)| p.tx_queue(ctl_q))
            .collect::<Result<_, _>>()?,
        burst,
        Arc::clone(&ring),
        idle,
    );
    worker_counters.push((cfg.eal.main_lcore, ctl_counters));

    // Checks start once the dataplane can act on their results.
    let health = Health::start(cfg)?;
    // The control lcore's queue is the last: it also carries its expiries.
    let sync = match (&cfg.sync, event_queues.last()) {
        (Some(s), Some(control_queue)) => {
            let sync = Sync::start(
                s,
                Arc::clone(&shared),
                event_queues.clone(),
                Arc::clone(control_queue),
            )?;
            sync.set_config(&pool_services(&pool));
            Some(sync)
        }
        _ => None,
    };
    // pylonctl and metrics once the dataplane is up.
    let ctl = Ctl::start(cfg, path, traffic)?;
    let mut control = Control {
        ctl,
        cfg,
        pool,
        port_infos: infos,
        health,
        vrrp,
        shared: &shared,
        mbufs: &mbufs,
        ring: &ring,
        worker: ctl_worker,
        slow: SlowPath {
            counters: SlowCounters::default(),
            neighbors: NeighborManager::new(
                cfg.neighbors.refresh.saturating_mul(1000),
                cfg.neighbors.expiry.saturating_mul(1000),
            ),
        },
        ports: &ports.0,
        carriers,
        worker_counters: &worker_counters,
        sync,
    };
    control.want_next_hops();
    let result = control.run(&stop);

    drop(lcores);
    drop(control);
    while let Some(left) = ring.pop() {
        drop(left);
    }
    drop(ports);
    drop(mbufs);
    info!("stopped");
    result
}

struct Control<'a> {
    ctl: Ctl,
    cfg: &'a Config,
    pool: Pool,
    port_infos: Vec<PortInfo>,
    health: Health,
    vrrp: Vrrp,
    shared: &'a Arc<Shared>,
    mbufs: &'a Mempool,
    ring: &'a ControlRing,
    worker: Worker,
    slow: SlowPath,
    ports: &'a [(String, Port)],
    /// Per port, the kernel interface's carrier file for `net_af_packet`
    /// ports (see [`link_up`]).
    carriers: Vec<Option<PathBuf>>,
    worker_counters: &'a [(u32, Arc<WorkerCounters>)],
    /// The sync thread, with `[sync]`.
    sync: Option<Sync>,
}

impl Control<'_> {
    /// Real servers, sorry servers and gateways are resolved before the
    /// first packet.
    fn want_next_hops(&mut self) {
        for svc in &self.cfg.services {
            // The sorry server too: it takes over exactly when the real
            // servers failed, and an unresolved next hop would cost the
            // first clients their SYN (dropped as `no_neighbor`).
            let sorry = svc.sorry.iter().map(|s| s.address);
            for addr in svc.servers.iter().map(|s| s.address).chain(sorry) {
                if let Some((port, hop)) = self.cfg.port_for(addr) {
                    self.slow.neighbors.want(u32::from(hop), port);
                }
            }
        }
        for (i, p) in self.cfg.ports.iter().enumerate() {
            if let Some(g) = p.gateway {
                self.slow.neighbors.want(u32::from(g), i);
            }
        }
    }

    /// The control loop: slow path, spare RX queues, neighbor requests,
    /// timers and stats dumps, until SIGINT/SIGTERM.
    fn run(&mut self, stop: &Arc<AtomicBool>) -> Result<(), Error> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
        let dump = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let register = |sig, flag: &Arc<AtomicBool>| {
            signal_hook::flag::register(sig, Arc::clone(flag))
                .map_err(|e| Error::Setup(format!("signal handler: {e}")))
        };
        register(SIGINT, stop)?;
        register(SIGTERM, stop)?;
        register(SIGUSR1, &dump)?;
        register(SIGHUP, &hup)?;
        // The first dump tells supervisors and tests the dataplane is up.
        self.write_stats();
        self.vrrp.startup(self.shared.clock.now_ms64());
        let mut last_tick: Option<u32> = None;
        while !stop.load(Ordering::Relaxed) {
            let now = self.shared.clock.now_ms();
            let mut work = self.slow_path(now);
            work += self.worker.poll_once();
            self.take_requests(now);
            self.serve_ctl(hup.swap(false, Ordering::Relaxed));
            self.apply_health();
            self.vrrp.on_timer(self.shared.clock.now_ms64());
            self.vrrp_actions();
            if last_tick.is_none_or(|t| now.wrapping_sub(t) >= TICK_MS) {
                self.tick(now);
                last_tick = Some(now);
            }
            if let Some(map) = self.slow.neighbors.take_map() {
                self.shared.neighbors.publish(map);
            }
            if dump.swap(false, Ordering::Relaxed) {
                self.write_stats();
            }
            self.worker.back_off(work);
        }
        // A MASTER resigns with a priority-0 advertisement (RFC 5798
        // §6.4.3) so the backup takes over without waiting.
        self.vrrp.shutdown(self.shared.clock.now_ms64());
        self.vrrp_actions();
        self.worker.flush();
        self.write_stats();
        Ok(())
    }

    /// Sends what the VRRP instances asked for and republishes the
    /// snapshot when an instance changed state.
    fn vrrp_actions(&mut self) {
        let neigh = self.shared.neighbors.load();
        let (frames, changed) = self.vrrp.actions(|ip| neigh.get(&u32::from(ip)).copied());
        for out in frames {
            let Ok(len) = u16::try_from(out.frame.len()) else {
                continue;
            };
            let Some(mut m) = Mbuf::alloc(self.mbufs) else {
                warn!("mempool exhausted: VRRP frame not sent");
                continue;
            };
            if m.set_len(len) {
                m.data_mut().copy_from_slice(&out.frame);
                self.worker.send(out.port, m);
            }
        }
        if changed {
            self.publish();
        }
    }

    /// pylonctl requests (and a SIGHUP reload when `reload`), see
    /// [`Ctl::poll`]; publishes what they changed.
    fn serve_ctl(&mut self, reload: bool) {
        let fx = self.ctl.poll(
            &mut Env {
                cfg: self.cfg,
                pool: &mut self.pool,
                health: &mut self.health,
                vrrp: &self.vrrp,
                shared: self.shared,
                ports: self.ports,
                workers: self.worker_counters,
                sync: self.sync.as_ref(),
            },
            reload,
        );
        for addr in fx.want {
            if let Some((port, hop)) = self.cfg.port_for(addr) {
                self.slow.neighbors.want(u32::from(hop), port);
            }
        }
        if fx.publish {
            self.publish();
        }
    }

    /// Publishes the pool and the VRRP ownership as a new snapshot.
    fn publish(&mut self) {
        let snap = self.pool.snapshot(&self.port_infos, &self.vrrp.ownership());
        self.shared.snapshot.store(Arc::new(snap));
        if let Some(s) = &self.sync {
            s.set_config(&pool_services(&self.pool));
        }
    }

    /// Handles up to [`SLOW_PATH_BUDGET`] frames from the workers.
    fn slow_path(&mut self, now: u32) -> usize {
        let snap = self.shared.snapshot.load();
        let neigh = self.shared.neighbors.load();
        let mut n = 0;
        while n < SLOW_PATH_BUDGET {
            let Some(mut item) = self.ring.pop() else {
                break;
            };
            n += 1;
            let outcome = self.slow.handle(
                &snap,
                self.shared,
                &neigh,
                now,
                item.mbuf.data_mut(),
                item.port,
            );
            match outcome {
                Outcome::Send(port) => self.worker.send(port, item.mbuf),
                Outcome::Vrrp => {
                    if let Ok(ip) = pylon_vrrp::wire::ethernet_payload(item.mbuf.data()) {
                        self.vrrp
                            .receive(self.shared.clock.now_ms64(), item.port, ip);
                    }
                }
                Outcome::Drop => {}
            }
        }
        n
    }

    /// Applies health transitions: a server that went down gets effective
    /// weight 0 (and, if configured, its connections expired); one that
    /// came back gets its weight again. One snapshot per batch.
    fn apply_health(&mut self) {
        let mut changed = false;
        while let Some(t) = self.health.next_transition() {
            let up = t.new == pylon_health::State::Up;
            let Some(server) = self
                .pool
                .set_up(&t.key.service, t.key.address, t.key.port, up)
            else {
                continue;
            };
            changed = true;
            let id = server.id;
            if !up && self.health.expires_on_down(&t.key) {
                let servers = &self.shared.servers;
                let sync = &self.sync;
                let n = self.shared.conns.expire_where(
                    |c| c.server == id,
                    |c| {
                        release(servers, c);
                        sync.iter().for_each(|s| s.expired(c));
                    },
                );
                info!(server = %t.key, expired = n, "connections of a down server expired");
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Next hops the workers could not find.
    fn take_requests(&mut self, now: u32) {
        let snap = self.shared.snapshot.load();
        while let Some(ip) = self.shared.neighbors.take_request() {
            if let Some((port, _)) = snap.route(ip) {
                self.slow.neighbors.request(ip, port, now);
            }
        }
    }

    /// Periodic work: connection expiry, ARP probes, VRRP tracking.
    fn tick(&mut self, now: u32) {
        let ports = self.ports;
        let carriers = &self.carriers;
        let pool = &self.pool;
        self.vrrp.track(
            self.shared.clock.now_ms64(),
            |name| {
                ports
                    .iter()
                    .zip(carriers)
                    .any(|((n, p), carrier)| n == name && link_up(p, carrier.as_deref()))
            },
            |name| {
                pool.services
                    .iter()
                    .any(|s| s.name == name && s.has_healthy_server())
            },
            self.sync.as_ref().is_some_and(Sync::startup_pending),
        );
        let conns = &self.shared.conns;
        let per_tick = (conns.capacity() / (1000 / TICK_MS) * SWEEPS_PER_SECOND).max(1);
        let servers = &self.shared.servers;
        let sync = &self.sync;
        conns.reclaim(now, per_tick, |c| {
            release(servers, c);
            sync.iter().for_each(|s| s.expired(c));
        });
        let snap = self.shared.snapshot.load();
        for probe in self.slow.neighbors.tick(now) {
            let Some(info) = snap.ports.get(probe.port) else {
                continue;
            };
            let Some(mut m) = Mbuf::alloc(self.mbufs) else {
                warn!(
                    "mempool exhausted: ARP probe for {} not sent",
                    std::net::Ipv4Addr::from(probe.ip)
                );
                continue;
            };
            if !m.set_len(ARP_FRAME_LEN as u16) {
                continue;
            }
            slowpath::arp_request(m.data_mut(), info, probe.ip);
            self.worker.send(probe.port, m);
            self.slow.counters.arp_requests_sent += 1;
        }
    }

    fn write_stats(&self) {
        let workers: Vec<(u32, &WorkerCounters)> = self
            .worker_counters
            .iter()
            .map(|(l, c)| (*l, c.as_ref()))
            .collect();
        let ports: Vec<(String, &Port)> = self.ports.iter().map(|(n, p)| (n.clone(), p)).collect();
        let doc = stats::to_json(&StatsView {
            shared: self.shared,
            workers: &workers,
            slow: &self.slow.counters,
            ports: &ports,
            neighbors_resolved: self.slow.neighbors.resolved(),
            health: &self.health.snapshot(),
            vrrp: self.vrrp.status_json(),
            sync: self
                .sync
                .as_ref()
                .map_or(serde_json::Value::Null, Sync::status_json),
        });
        if let Err(e) = stats::write(&self.cfg.control.stats_file, &doc) {
            warn!("stats file {}: {e}", self.cfg.control.stats_file.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn qpairs_added_to_af_packet_vdevs_only() {
        let mut a = args(&[
            "pylon",
            "--vdev",
            "net_af_packet0,iface=x",
            "--vdev",
            "net_ring0",
        ]);
        af_packet_qpairs(&mut a, 3).unwrap();
        assert_eq!(a[2], "net_af_packet0,iface=x,qpairs=3");
        assert_eq!(a[4], "net_ring0");
    }

    #[test]
    fn af_packet_carrier_file_from_the_device_string() {
        assert_eq!(
            kernel_carrier("net_af_packet0,iface=lb-c,qpairs=2"),
            Some(PathBuf::from("/sys/class/net/lb-c/carrier"))
        );
        assert_eq!(kernel_carrier("net_af_packet0"), None);
    }

    #[test]
    fn conflicting_qpairs_rejected() {
        let mut a = args(&["pylon", "--vdev", "net_af_packet0,iface=x,qpairs=2"]);
        assert!(af_packet_qpairs(&mut a, 3).is_err());
        let mut a = args(&["pylon", "--vdev", "net_af_packet0,iface=x,qpairs=3"]);
        af_packet_qpairs(&mut a, 3).unwrap();
        assert_eq!(a[2], "net_af_packet0,iface=x,qpairs=3");
    }
}
