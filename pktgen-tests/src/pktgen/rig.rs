//! The test rig: one EAL, four ring ports wired in two pairs, a generator
//! lcore and a worker lcore on separate CPUs.
//!
//! ```text
//!   lcore 1 (cpu 0): generator               lcore 2 (cpu 1): worker
//!   gen port 0 "clients" ==rings==> <== worker port 0 "client"  (10.0.1.1/24)
//!   gen port 1 "servers" ==rings==> <== worker port 1 "servers" (10.0.2.1/24)
//!   lcore 0 (cpu 0): main, only orchestrates (and sleeps meanwhile)
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use pylon_dataplane::counters::{DropReason, WorkerCounters};
use pylon_dataplane::worker::Worker;
use pylon_dpdk::{
    launch, wait_lcore, Burst, Eal, Mempool, Port, PortConf, Ring, RxQueue, TxQueue,
    DEFAULT_DATA_ROOM,
};

use super::generator::{GenPort, Generator, Report};

/// Mbufs in the pool: the generator's packets in flight, its stash and
/// bursts, with room to spare.
const MBUFS: u32 = 64 * 1024 - 1;
const MBUF_CACHE: u32 = 256;
/// Slots per ring; the generator keeps fewer packets than this in flight.
const RING_SIZE: u32 = 32768;
/// EAL memory (`--no-huge -m`): the mbuf pool and the rings. The
/// connection table is ordinary heap memory.
const EAL_MEMORY_MB: u32 = 512;

/// What runs on the worker lcore.
pub enum Forwarder {
    /// Pylon's worker loop.
    Pylon(Box<Worker>),
    /// The bare MAC-swap forwarder of the baseline.
    Swap(Box<MacSwap>),
}

impl Forwarder {
    fn run(self, stop: &AtomicBool) {
        match self {
            Forwarder::Pylon(worker) => worker.run(stop),
            Forwarder::Swap(swap) => swap.run(stop),
        }
    }
}

/// The baseline forwarder: what comes in on one port goes out of the other
/// with its MAC addresses swapped, in the same loop shape as Pylon's worker
/// (RX bursts of 32 from each port, TX buffers flushed every round), so
/// its rate is the limit of the generator, the rings and this machine.
pub struct MacSwap {
    rx: [RxQueue; 2],
    tx: [TxQueue; 2],
    out: [Burst; 2],
    counters: Arc<WorkerCounters>,
}

impl MacSwap {
    pub fn new(rx: [RxQueue; 2], tx: [TxQueue; 2], counters: Arc<WorkerCounters>) -> MacSwap {
        MacSwap {
            rx,
            tx,
            out: [Burst::new(), Burst::new()],
            counters,
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        let c = Arc::clone(&self.counters);
        while !stop.load(Ordering::Relaxed) {
            let mut got = 0;
            for port in 0..2 {
                let mut burst = Burst::new();
                got += self.rx[port].rx_burst_max(&mut burst, 32);
                for mut mbuf in burst.drain() {
                    let frame = mbuf.data_mut();
                    if frame.len() >= 12 {
                        let (dst, src) = frame.split_at_mut(6);
                        dst.swap_with_slice(&mut src[..6]);
                    }
                    if self.out[1 - port].push(mbuf).is_err() {
                        c.count_drop(DropReason::TxFull);
                    }
                }
            }
            WorkerCounters::add(&c.rx_packets, got as u64);
            WorkerCounters::add(&c.forward_packets, got as u64);
            let polls = if got == 0 {
                &c.idle_polls
            } else {
                &c.busy_polls
            };
            WorkerCounters::add(polls, 1);
            for port in 0..2 {
                if self.out[port].is_empty() {
                    continue;
                }
                let sent = self.tx[port].tx_burst(&mut self.out[port]);
                WorkerCounters::add(&c.tx_packets, sent as u64);
                for _unsent in self.out[port].drain() {
                    c.count_drop(DropReason::TxFull);
                }
            }
        }
    }
}

/// Removes the EAL runtime directory on drop.
struct RuntimeDir(PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                crate::process::warn(format_args!("removing {}: {e}", self.0.display()));
            }
        }
    }
}

/// The EAL, the pool and the ports. Dropping it stops and closes the ports
/// and cleans up the EAL, and removes `/var/run/dpdk/<prefix>`.
pub struct Rig {
    worker_ports: [Port; 2],
    gen_ports: [Port; 2],
    pool: Mempool,
    gen_lcore: u32,
    worker_lcore: u32,
    // Dropped after the ports and the pool, in this order.
    _eal: Eal,
    _runtime: RuntimeDir,
}

/// The EAL arguments: no hugepages, no PCI, lcore 0 (main) and 1
/// (generator) on CPU 0, lcore 2 (worker) on CPU 1 (CPU 0 on a one-CPU
/// machine).
pub fn eal_args(file_prefix: &str) -> Vec<String> {
    let worker_cpu = usize::from(std::thread::available_parallelism().map_or(1, |n| n.get()) > 1);
    [
        "pylon-bench",
        "--no-huge",
        "-m",
        &EAL_MEMORY_MB.to_string(),
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        file_prefix,
        "--lcores",
        &format!("0@0,1@0,2@{worker_cpu}"),
        "--log-level",
        "lib.eal:warning",
    ]
    .map(String::from)
    .to_vec()
}

impl Rig {
    /// Initialises the EAL (once per process) with `file_prefix` and wires
    /// the ports.
    pub fn new(file_prefix: &str) -> Result<Rig> {
        let runtime = RuntimeDir(crate::pylon::dpdk_runtime_dir(file_prefix));
        let eal = Eal::init(&eal_args(file_prefix)).context("EAL init")?;
        let pool = Mempool::new("bench_mbufs", MBUFS, MBUF_CACHE, DEFAULT_DATA_ROOM)?;
        // Two pairs of rings: generator -> worker and back, per side.
        let ring = |name: &str| Ring::new(name, RING_SIZE).with_context(|| format!("ring {name}"));
        let (c_in, c_out) = (ring("cli_in")?, ring("cli_out")?);
        let (s_in, s_out) = (ring("srv_in")?, ring("srv_out")?);
        let worker_ports = [
            Port::from_rings("w_client", &[&c_in], &[&c_out])?,
            Port::from_rings("w_servers", &[&s_in], &[&s_out])?,
        ];
        let gen_ports = [
            Port::from_rings("g_clients", &[&c_out], &[&c_in])?,
            Port::from_rings("g_servers", &[&s_out], &[&s_in])?,
        ];
        let conf = PortConf {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: RING_SIZE as u16,
            tx_desc: RING_SIZE as u16,
            rss: false,
        };
        for port in worker_ports.iter().chain(&gen_ports) {
            port.configure(&conf, &pool)?;
            port.start()?;
        }
        Ok(Rig {
            worker_ports,
            gen_ports,
            pool,
            gen_lcore: 1,
            worker_lcore: 2,
            _eal: eal,
            _runtime: runtime,
        })
    }

    pub fn pool(&self) -> &Mempool {
        &self.pool
    }

    /// The worker's queues: RX and TX of port 0 and port 1.
    pub fn worker_queues(&self) -> Result<([RxQueue; 2], [TxQueue; 2])> {
        let [p0, p1] = &self.worker_ports;
        Ok((
            [p0.rx_queue(0)?, p1.rx_queue(0)?],
            [p0.tx_queue(0)?, p1.tx_queue(0)?],
        ))
    }

    /// The generator's ports.
    pub fn gen_ports(&self) -> Result<[GenPort; 2]> {
        let [p0, p1] = &self.gen_ports;
        Ok([
            GenPort::new(p0.rx_queue(0)?, p0.tx_queue(0)?),
            GenPort::new(p1.rx_queue(0)?, p1.tx_queue(0)?),
        ])
    }

    /// Frees whatever an earlier, failed scenario left in the rings.
    pub fn flush(&self) -> Result<u64> {
        let mut left = 0;
        for port in self.worker_ports.iter().chain(&self.gen_ports) {
            let mut rx = port.rx_queue(0)?;
            loop {
                let mut burst = Burst::new();
                let n = rx.rx_burst(&mut burst);
                if n == 0 {
                    break;
                }
                left += n as u64;
            }
        }
        Ok(left)
    }

    /// Runs `forwarder` on the worker lcore and `generator` on the
    /// generator lcore until the generator is done, then stops the worker.
    pub fn run(&self, forwarder: Forwarder, generator: Generator) -> Result<Report> {
        let stop = Arc::new(AtomicBool::new(false));
        let worker_stop = Arc::clone(&stop);
        launch(self.worker_lcore, move || {
            forwarder.run(&worker_stop);
            0
        })
        .context("launching the worker")?;
        let (tx, rx) = mpsc::channel();
        let launched = launch(self.gen_lcore, move || {
            let _ = tx.send(generator.run());
            0
        });
        // The main lcore shares CPU 0 with the generator: it sleeps in
        // recv, never spins (wait_lcore would).
        let report = match launched {
            Ok(()) => rx.recv().context("the generator ended without a report"),
            Err(e) => Err(anyhow::Error::from(e).context("launching the generator")),
        };
        stop.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1));
        let worker = wait_lcore(self.worker_lcore)?;
        let gen = wait_lcore(self.gen_lcore)?;
        if worker != 0 || gen != 0 {
            bail!("lcores returned {worker} (worker) and {gen} (generator)");
        }
        report
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for port in self.worker_ports.iter().chain(&self.gen_ports) {
            if let Err(e) = port.stop().and_then(|()| port.close()) {
                crate::process::warn(format_args!("closing port {}: {e}", port.id()));
            }
        }
    }
}
