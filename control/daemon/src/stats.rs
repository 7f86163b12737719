//! The counters dump written to `control.stats_file` at start-up and on
//! SIGUSR1 (as keepalived dumps its state on a signal). Written to a
//! temporary file and renamed, so readers never see a partial file.

use crate::slowpath::SlowCounters;
use pylon_dataplane::counters::{DropReason, WorkerCounters};
use pylon_dataplane::shared::Shared;
use pylon_dpdk::Port;
use serde_json::{json, Map, Value};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// Everything the stats dump reads, borrowed from the control loop.
pub struct StatsView<'a> {
    pub shared: &'a Shared,
    pub workers: &'a [(u32, &'a WorkerCounters)],
    pub slow: &'a SlowCounters,
    pub ports: &'a [(String, &'a Port)],
    pub neighbors_resolved: usize,
    pub health: &'a [pylon_health::ServerHealth],
    pub vrrp: Value,
    /// The sync thread's counters and state (`null` without `[sync]`).
    pub sync: Value,
}

fn worker_json(lcore: u32, c: &WorkerCounters) -> Value {
    let drops: Map<String, Value> = DropReason::ALL
        .iter()
        .map(|&r| (r.name().to_string(), json!(c.drops(r))))
        .collect();
    json!({
        "lcore": lcore,
        "rx_packets": WorkerCounters::get(&c.rx_packets),
        "tx_packets": WorkerCounters::get(&c.tx_packets),
        "to_control": WorkerCounters::get(&c.to_control),
        "forward_packets": WorkerCounters::get(&c.forward_packets),
        "reply_packets": WorkerCounters::get(&c.reply_packets),
        "icmp_sent": WorkerCounters::get(&c.icmp_sent),
        "rst_sent": WorkerCounters::get(&c.rst_sent),
        "idle_polls": WorkerCounters::get(&c.idle_polls),
        "busy_polls": WorkerCounters::get(&c.busy_polls),
        "drops": drops,
    })
}

/// Builds the JSON document.
pub fn to_json(v: &StatsView<'_>) -> Value {
    let conns = &v.shared.conns;
    let snap = v.shared.snapshot.load();
    let servers: Vec<Value> = snap
        .services
        .iter()
        .flat_map(|svc| {
            let sorry = svc.sorry.iter().map(|s| (s, true));
            svc.servers
                .iter()
                .map(|s| (s, false))
                .chain(sorry)
                .map(move |(s, sorry)| {
                    let st = &v.shared.servers[usize::from(s.id)];
                    json!({
                        "service": svc.name,
                        "address": Ipv4Addr::from(s.addr).to_string(),
                        "port": s.port,
                        "weight": s.weight,
                        "sorry": sorry,
                        "active": st.active.load(Relaxed),
                        "inactive": st.inactive.load(Relaxed),
                    })
                })
        })
        .collect();
    let ports: Vec<Value> = v
        .ports
        .iter()
        .map(|(name, port)| {
            let st = port.stats().unwrap_or_default();
            json!({
                "name": name,
                "ipackets": st.ipackets,
                "opackets": st.opackets,
                "imissed": st.imissed,
                "ierrors": st.ierrors,
                "oerrors": st.oerrors,
                "rx_nombuf": st.rx_nombuf,
                "link_up": port.link_up(),
            })
        })
        .collect();
    let s = v.slow;
    json!({
        "uptime_ms": v.shared.clock.now_ms(),
        "conns": {
            "live": conns.len(),
            "capacity": conns.capacity(),
            "bytes_per_conn": conns.memory_bytes() as f64 / f64::from(conns.capacity()),
        },
        "workers": v.workers.iter().map(|(l, c)| worker_json(*l, c)).collect::<Vec<_>>(),
        "control": {
            "arp_replies": s.arp_replies,
            "arp_requests_sent": s.arp_requests_sent,
            "arp_ignored": s.arp_ignored,
            "icmp_echo_replies": s.icmp_echo_replies,
            "icmp_errors_translated": s.icmp_errors_translated,
            "icmp_errors_unmatched": s.icmp_errors_unmatched,
            "local_dropped": s.local_dropped,
            "malformed": s.malformed,
            "neighbors_resolved": v.neighbors_resolved,
        },
        "ports": ports,
        "servers": servers,
        "health": v.health,
        "vrrp": v.vrrp,
        "sync": v.sync,
    })
}

/// Writes the dump atomically (temporary file + rename).
pub fn write(path: &Path, doc: &Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(doc)?)?;
    std::fs::rename(&tmp, path)
}
