//! Connection sync for the `nat_new_sync` scenario: the worker's forwarder
//! reports its connections into an event queue, drained by the daemon's
//! own sync thread ([`pylon_control::sync::Sync`], configured as `[sync]`
//! would configure it, defaults included), which sends HMAC-signed
//! datagrams over loopback to a second sync thread playing the backup; the
//! backup installs the entries into a connection table of its own.
//!
//! Both threads are started from the main lcore's thread and inherit its
//! CPU (CPU 0, shared with the generator), as the appliance runs its sync
//! thread off the worker cores: what the scenario measures is what sync
//! costs the worker itself.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use pylon_conntrack::{Table, Timeouts};
use pylon_control::sync::Sync;
use pylon_dataplane::events::EventQueue;
use pylon_dataplane::shared::Shared;
use pylon_dataplane::snapshot::{Mode, Snapshot};
use pylon_sync::config::Sync as SyncConfig;
use serde_json::{json, Value};

/// How long the threads have after the run to drain the queue, send what
/// the rate bound allows and publish their stats (every 100 ms).
const SETTLE: Duration = Duration::from_millis(500);
/// How long the backup may take to install every connection of a run whose
/// connections all fit the queue (a loaded machine delays the threads).
const SETTLE_ALL: Duration = Duration::from_secs(10);

/// The master's and the backup's sync threads.
pub struct SyncPair {
    master: Sync,
    backup: Sync,
    queue: Arc<EventQueue>,
    /// Events the queue holds (`[sync] queue`).
    queue_events: u64,
}

/// What the sync threads did during a run.
pub struct SyncReport {
    /// Both sides' `"sync"` stats sections, and the backup's table size.
    pub stats: Value,
    /// Problems that make the run not verified.
    pub errors: Vec<String>,
}

/// A free UDP port on loopback (bound and released: the e2e lock keeps
/// other tests off the machine meanwhile).
fn free_addr() -> Result<SocketAddr> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free UDP port")?;
    Ok(s.local_addr()?)
}

/// A `[sync]` table naming only the addresses and the key (any 32 bytes,
/// both sides share them): every other key at its default, read as the
/// daemon reads it.
fn config(listen: SocketAddr, peer: SocketAddr) -> Result<SyncConfig> {
    toml::from_str(&format!(
        "listen = \"{listen}\"\npeers = [\"{peer}\"]\nkey = \"{}\"\n",
        "70796c6f6e2d62656e63682d73796e632d6b65792d33322d62797465732d6f6b"
    ))
    .context("the sync pair's [sync]")
}

fn counter(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl SyncPair {
    /// Starts both sides. `master` is the shared state the worker forwards
    /// with; the backup gets the same services, not served (VRRP BACKUP),
    /// and a table of `capacity` entries.
    pub fn start(master: &Arc<Shared>, backup_snapshot: Snapshot, capacity: u32) -> Result<Self> {
        let (a, b) = (free_addr()?, free_addr()?);
        let table = Table::new(capacity.max(1), Timeouts::default())?;
        let backup_shared = Arc::new(Shared::new(backup_snapshot, table, 6));
        let (master_cfg, backup_cfg) = (config(a, b)?, config(b, a)?);
        let events = master_cfg.queue as usize;
        let backup_queue = Arc::new(EventQueue::new(events));
        let backup = Sync::start(
            &backup_cfg,
            backup_shared,
            vec![Arc::clone(&backup_queue)],
            backup_queue,
        )
        .context("starting the backup's sync thread")?;
        // The backup listens before the master asks for its table, as a
        // standby that runs before the master (re)starts.
        let queue = Arc::new(EventQueue::new(events));
        let master = Sync::start(
            &master_cfg,
            Arc::clone(master),
            vec![Arc::clone(&queue)],
            Arc::clone(&queue),
        )
        .context("starting the master's sync thread")?;
        Ok(SyncPair {
            master,
            backup,
            queue,
            queue_events: events as u64,
        })
    }

    /// The queue the worker's forwarder reports into.
    pub fn queue(&self) -> Arc<EventQueue> {
        Arc::clone(&self.queue)
    }

    /// After a run that created `flows` connections: lets the threads
    /// settle (at least [`SETTLE`], and until the backup installed them
    /// all when they fit the
    /// queue), then reads their stats and checks that connections did
    /// reach the backup and that it rejected nothing as forged or
    /// malformed.
    pub fn finish(self, flows: u64) -> SyncReport {
        let started = Instant::now();
        let settle = if flows <= self.queue_events {
            SETTLE_ALL
        } else {
            SETTLE
        };
        let mut backup = self.backup.status_json();
        while (counter(&backup, "installed") < flows || started.elapsed() < SETTLE)
            && started.elapsed() < settle
        {
            std::thread::sleep(Duration::from_millis(100));
            backup = self.backup.status_json();
        }
        let master = self.master.status_json();
        let mut errors = Vec::new();
        if counter(&master, "datagrams_sent") == 0 {
            errors.push("sync: the master sent no datagram".to_owned());
        }
        if counter(&backup, "installed") == 0 {
            errors.push("sync: the backup installed no connection".to_owned());
        }
        for reason in [
            "truncated",
            "bad_version",
            "bad_mac",
            "malformed",
            "unknown_peer",
        ] {
            let n = backup["drops"]
                .get(reason)
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if n > 0 {
                errors.push(format!(
                    "sync: the backup dropped {n} datagrams as {reason}"
                ));
            }
        }
        SyncReport {
            stats: json!({ "master": master, "backup": backup }),
            errors,
        }
    }
}

/// The backup's snapshot: the master's services, none of them served.
pub fn backup_snapshot(mode: Mode) -> Snapshot {
    let mut snap = super::scenario::snapshot(mode);
    for s in &mut snap.services {
        s.active = false;
    }
    snap
}
