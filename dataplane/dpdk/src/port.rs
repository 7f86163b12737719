//! Ethdev ports and their RX/TX queues.

use std::ffi::{c_uint, CStr, CString};
use std::mem;
use std::ptr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use dpdk_sys as sys;

use crate::eal::EalRef;
use crate::error::{check, Error, Result};
use crate::mbuf::{Burst, Mempool, BURST_SIZE, RX_BURST_SIZE};
use crate::ring::{Attachment, End, Ring};

const MAX_PORTS: usize = sys::RTE_MAX_ETHPORTS as usize;

/// What this crate knows about a port id beyond DPDK's own state: which
/// queues exist and have a handle, and which pools the RX queues draw from.
struct Slot {
    /// Pools given to `configure` since the last close; the RX rings
    /// allocate from them, so they must outlive the queues.
    pools: Vec<Mempool>,
    /// The rings of a port made by [`Port::from_rings`]: the driver reads
    /// and writes them until the port is closed.
    rings: Vec<Attachment>,
    started: bool,
    /// One entry per set-up RX queue (empty until `configure` succeeds):
    /// true while an [`RxQueue`] handle owns the queue.
    rx_claimed: Vec<bool>,
    /// One entry per set-up TX queue: true while a [`TxQueue`] owns it.
    tx_claimed: Vec<bool>,
}

impl Slot {
    const fn new() -> Self {
        Slot {
            pools: Vec::new(),
            rings: Vec::new(),
            started: false,
            rx_claimed: Vec::new(),
            tx_claimed: Vec::new(),
        }
    }

    fn has_handles(&self) -> bool {
        self.rx_claimed.iter().chain(&self.tx_claimed).any(|&c| c)
    }
}

/// Per-port state, and the lock that serialises every ethdev control call:
/// DPDK's control path is not thread-safe, and DPDK forbids reconfiguring a
/// port while its queues are polled.
static PORTS: Mutex<[Slot; MAX_PORTS]> = Mutex::new([const { Slot::new() }; MAX_PORTS]);

/// Locks [`PORTS`]. No code panics while holding it, and every slot update
/// is a single assignment, so a poisoned lock holds consistent data.
fn ports() -> MutexGuard<'static, [Slot; MAX_PORTS]> {
    PORTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How [`Port::configure`] sets a port up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortConf {
    /// RX queues: one per worker.
    pub rx_queues: u16,
    /// TX queues: one per worker plus one for the control lcore.
    pub tx_queues: u16,
    /// Descriptors per RX queue; clamped to what the device supports.
    pub rx_desc: u16,
    /// Descriptors per TX queue; clamped to what the device supports.
    pub tx_desc: u16,
    /// Spread flows over the RX queues by RSS hash (IP, TCP, UDP), if the
    /// device can. Devices without RSS (af_packet, ring) ignore it: their
    /// flows are spread by the kernel's fanout, or not at all.
    pub rss: bool,
}

impl Default for PortConf {
    /// One queue each way, 1024 descriptors, RSS on: a single-worker setup.
    fn default() -> Self {
        PortConf {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: true,
        }
    }
}

/// What a port's driver can do (a subset of `rte_eth_dev_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The PMD's name, e.g. `net_af_packet` or `net_ixgbe`.
    pub driver_name: String,
    /// Most RX queues the device supports.
    pub max_rx_queues: u16,
    /// Most TX queues the device supports.
    pub max_tx_queues: u16,
    /// RSS hash types the device supports (`RTE_ETH_RSS_*` bits); 0 means
    /// no RSS.
    pub flow_type_rss_offloads: u64,
}

/// A port's basic counters (`rte_eth_stats`), since it was started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Packets the device dropped because the RX queues were full: the
    /// workers are too slow.
    pub imissed: u64,
    /// Erroneous packets received.
    pub ierrors: u64,
    /// Packets that failed to be sent.
    pub oerrors: u64,
    /// RX allocation failures: the mempool ran dry.
    pub rx_nombuf: u64,
}

/// An ethdev port (NIC or vdev), by id.
///
/// Port ids are plain integers in DPDK, so handles are cheap, `Clone`,
/// `Send` and `Sync`; all control calls on any handle are serialised.
/// Queues are polled through [`RxQueue`] and [`TxQueue`] handles, at most one
/// per queue, and while any exists the port refuses to be reconfigured,
/// started, stopped or closed, since DPDK requires the fast path to be quiet
/// during those.
#[derive(Debug, Clone)]
pub struct Port {
    id: u16,
    eal: EalRef,
}

impl Port {
    /// The port of a device name as given to EAL: a vdev name
    /// (`net_af_packet0`, `net_ring0`) or a PCI address (`0000:01:00.0`).
    pub fn by_name(name: &str) -> Result<Port> {
        let eal = EalRef::acquire()?;
        let cname = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("port name {name:?} contains NUL")))?;
        let mut id = 0u16;
        let _ports = ports();
        // SAFETY: the EAL is running (eal), cname is a valid C string, and
        // id is a valid place for the result; ethdev calls are serialised.
        check("rte_eth_dev_get_port_by_name", unsafe {
            sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id)
        })?;
        Ok(Port { id, eal })
    }

    /// Creates a ring-based port (`rte_eth_from_rings`, DPDK's `net_ring`
    /// driver; device name `net_ring_<name>`) whose RX queue `i` dequeues
    /// from `rx[i]` and whose TX queue `i` enqueues to `tx[i]`. Two ports
    /// that share rings crosswise are a cable between two queues of one
    /// process: the way to feed a worker from a traffic generator at full
    /// speed, without a NIC or the kernel.
    ///
    /// Each ring may be the RX ring of one port and the TX ring of one port
    /// (possibly the same port, as a loopback), never more, so that every
    /// ring keeps one consumer and one producer. The port holds its rings
    /// until it is [closed](Port::close). Like any port it is then
    /// configured (the pool is not used by this driver: received mbufs are
    /// the ones sent) and started.
    pub fn from_rings(name: &str, rx: &[&Ring], tx: &[&Ring]) -> Result<Port> {
        let eal = EalRef::acquire()?;
        if rx.is_empty() || tx.is_empty() {
            return Err(Error::InvalidArgument(
                "a ring port needs at least one RX and one TX ring".into(),
            ));
        }
        let cname = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("port name {name:?} contains NUL")))?;
        // Claimed before the driver sees them; released again (by drop) if
        // the port cannot be made.
        let mut rings = Vec::with_capacity(rx.len() + tx.len());
        for ring in rx {
            rings.push(Attachment::claim(ring, End::Consumer)?);
        }
        for ring in tx {
            rings.push(Attachment::claim(ring, End::Producer)?);
        }
        let ptrs: Vec<*mut sys::rte_ring> = rings.iter().map(Attachment::as_ptr).collect();
        let (rx_ptrs, tx_ptrs) = ptrs.split_at(rx.len());
        let mut ports = ports();
        // SAFETY: the EAL is running (eal); cname is a valid C string; the
        // pointer arrays hold rx.len() and tx.len() live rings, which the
        // driver copies, and which stay alive until the port is closed
        // (slot.rings); ethdev calls are serialised by the lock. Queue
        // counts are small (each ring is claimed once, so no more than the
        // rings that exist).
        let ret = unsafe {
            sys::rte_eth_from_rings(
                cname.as_ptr(),
                rx_ptrs.as_ptr(),
                rx_ptrs.len() as c_uint,
                tx_ptrs.as_ptr(),
                tx_ptrs.len() as c_uint,
                sys::rte_socket_id(),
            )
        };
        if ret < 0 {
            return Err(Error::last("rte_eth_from_rings"));
        }
        match u16::try_from(ret) {
            Ok(id) if usize::from(id) < MAX_PORTS => {
                ports[usize::from(id)].rings = rings;
                Ok(Port { id, eal })
            }
            _ => {
                // DPDK never returns such an id; if it did, the driver would
                // still use the rings, so they must never be freed.
                mem::forget(rings);
                Err(Error::InvalidArgument(format!(
                    "port id {ret} is out of range"
                )))
            }
        }
    }

    /// The port with id `id`, if it exists (ids run from 0 to
    /// [`count`](Port::count) - 1 unless ports were closed).
    pub fn from_id(id: u16) -> Result<Port> {
        let eal = EalRef::acquire()?;
        if usize::from(id) >= MAX_PORTS {
            return Err(Error::InvalidArgument(format!(
                "port id {id} is out of range"
            )));
        }
        let _ports = ports();
        // SAFETY: the EAL is running; the function checks any id.
        if unsafe { sys::rte_eth_dev_is_valid_port(id) } == 0 {
            return Err(Error::InvalidArgument(format!("no port with id {id}")));
        }
        Ok(Port { id, eal })
    }

    /// Number of usable ports (`rte_eth_dev_count_avail`); 0 when the EAL is
    /// not running.
    pub fn count() -> u16 {
        let Ok(_eal) = EalRef::acquire() else {
            return 0;
        };
        let _ports = ports();
        // SAFETY: the EAL is running; ethdev calls are serialised.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The driver's capabilities (`rte_eth_dev_info_get`).
    pub fn info(&self) -> Result<PortInfo> {
        let _ports = ports();
        self.info_locked()
    }

    /// [`info`](Port::info) for a caller that holds [`PORTS`].
    fn info_locked(&self) -> Result<PortInfo> {
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: the EAL is running (self.eal); info is a valid out
        // pointer; the caller holds the control lock.
        check("rte_eth_dev_info_get", unsafe {
            sys::rte_eth_dev_info_get(self.id, &mut info)
        })?;
        let driver_name = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: a non-null driver_name points to the driver's static
            // NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        Ok(PortInfo {
            driver_name,
            max_rx_queues: info.max_rx_queues,
            max_tx_queues: info.max_tx_queues,
            flow_type_rss_offloads: info.flow_type_rss_offloads,
        })
    }

    /// Configures the port (`rte_eth_dev_configure`) and sets up its queues,
    /// with RX buffers from `pool`. The port must be stopped.
    ///
    /// With `conf.rss` and a device that reports RSS support, flows are
    /// hashed over the RX queues by IP addresses and TCP/UDP ports, as far
    /// as the device supports those; otherwise RSS stays off. Descriptor
    /// counts are clamped to the device's limits
    /// (`rte_eth_dev_adjust_nb_rx_tx_desc`). `pool` is kept alive until the
    /// port is closed.
    pub fn configure(&self, conf: &PortConf, pool: &Mempool) -> Result<()> {
        if conf.rx_queues == 0 || conf.tx_queues == 0 {
            return Err(Error::InvalidArgument(
                "a port needs at least one RX and one TX queue".into(),
            ));
        }
        let mut ports = ports();
        let slot = &mut ports[usize::from(self.id)];
        if slot.has_handles() {
            return Err(self.busy("queue handles exist"));
        }
        if slot.started {
            return Err(self.busy("started"));
        }
        let info = self.info_locked()?;

        let mut eth_conf = sys::rte_eth_conf::default();
        // SAFETY: reads constants defined in the C shim.
        let wanted =
            unsafe { sys::PYLON_ETH_RSS_IP | sys::PYLON_ETH_RSS_TCP | sys::PYLON_ETH_RSS_UDP };
        let rss_hf = wanted & info.flow_type_rss_offloads;
        if conf.rss && rss_hf != 0 {
            eth_conf.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            // A null key (the default) makes the driver use its own.
            eth_conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // From here the queue layout changes, even if a later step fails: no
        // queue is usable until all are set up again.
        slot.rx_claimed.clear();
        slot.tx_claimed.clear();
        // SAFETY: eth_conf is a valid, fully initialised configuration; the
        // control lock is held, the port is stopped and no queue handle
        // exists.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(self.id, conf.rx_queues, conf.tx_queues, &eth_conf)
        })?;

        let (mut rx_desc, mut tx_desc) = (conf.rx_desc, conf.tx_desc);
        // SAFETY: both pointers are valid for the call.
        check("rte_eth_dev_adjust_nb_rx_tx_desc", unsafe {
            sys::rte_eth_dev_adjust_nb_rx_tx_desc(self.id, &mut rx_desc, &mut tx_desc)
        })?;
        // SOCKET_ID_ANY (-1) for devices without NUMA affinity; the setup
        // calls take it as unsigned, as C would convert it.
        // SAFETY: plain query of a valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(self.id) } as c_uint;

        if !slot.pools.iter().any(|p| p.same_pool(pool)) {
            slot.pools.push(pool.clone());
        }
        for q in 0..conf.rx_queues {
            // SAFETY: q < the configured RX queue count; a null rxconf means
            // the driver's defaults; pool is kept alive by slot.pools.
            check("rte_eth_rx_queue_setup", unsafe {
                sys::rte_eth_rx_queue_setup(self.id, q, rx_desc, socket, ptr::null(), pool.as_ptr())
            })?;
        }
        for q in 0..conf.tx_queues {
            // SAFETY: q < the configured TX queue count; a null txconf means
            // the driver's defaults.
            check("rte_eth_tx_queue_setup", unsafe {
                sys::rte_eth_tx_queue_setup(self.id, q, tx_desc, socket, ptr::null())
            })?;
        }
        slot.rx_claimed = vec![false; usize::from(conf.rx_queues)];
        slot.tx_claimed = vec![false; usize::from(conf.tx_queues)];
        Ok(())
    }

    /// Starts the port (`rte_eth_dev_start`); queue handles can be taken
    /// from then on. The port must have been configured by
    /// [`configure`](Port::configure): some drivers crash when started with
    /// queues that were never set up.
    pub fn start(&self) -> Result<()> {
        let mut ports = ports();
        let slot = &mut ports[usize::from(self.id)];
        if slot.has_handles() {
            return Err(self.busy("queue handles exist"));
        }
        if slot.rx_claimed.is_empty() {
            return Err(self.busy("not configured"));
        }
        // SAFETY: control lock held, no queue handle exists.
        check("rte_eth_dev_start", unsafe {
            sys::rte_eth_dev_start(self.id)
        })?;
        slot.started = true;
        Ok(())
    }

    /// Stops the port (`rte_eth_dev_stop`). All queue handles must have
    /// been dropped: the driver frees the mbufs in its rings, which a
    /// polling worker could otherwise still be reading.
    pub fn stop(&self) -> Result<()> {
        let mut ports = ports();
        let slot = &mut ports[usize::from(self.id)];
        if slot.has_handles() {
            return Err(self.busy("queue handles exist"));
        }
        // SAFETY: control lock held, no queue handle exists.
        check("rte_eth_dev_stop", unsafe {
            sys::rte_eth_dev_stop(self.id)
        })?;
        slot.started = false;
        Ok(())
    }

    /// Closes the port (`rte_eth_dev_close`), releasing its queues and its
    /// hold on the RX mempools and rings. A closed vdev port's id may be reused.
    pub fn close(&self) -> Result<()> {
        let old = {
            let mut ports = ports();
            let slot = &mut ports[usize::from(self.id)];
            if slot.has_handles() {
                return Err(self.busy("queue handles exist"));
            }
            // SAFETY: control lock held, no queue handle exists.
            check("rte_eth_dev_close", unsafe {
                sys::rte_eth_dev_close(self.id)
            })?;
            mem::replace(slot, Slot::new())
        };
        // Dropped outside the lock: freeing a pool or a ring takes the
        // EAL's lock.
        drop(old);
        Ok(())
    }

    /// The port's MAC address (`rte_eth_macaddr_get`).
    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut addr = sys::rte_ether_addr::default();
        let _ports = ports();
        // SAFETY: addr is a valid out pointer; control lock held.
        check("rte_eth_macaddr_get", unsafe {
            sys::rte_eth_macaddr_get(self.id, &mut addr)
        })?;
        Ok(addr.addr_bytes)
    }

    /// Turns promiscuous mode on or off, e.g. to receive frames for a VRRP
    /// virtual MAC on a device that cannot filter extra MACs.
    pub fn set_promiscuous(&self, on: bool) -> Result<()> {
        let _ports = ports();
        let (call, ret) = if on {
            // SAFETY: plain control call on a port id; control lock held.
            ("rte_eth_promiscuous_enable", unsafe {
                sys::rte_eth_promiscuous_enable(self.id)
            })
        } else {
            // SAFETY: plain control call on a port id; control lock held.
            ("rte_eth_promiscuous_disable", unsafe {
                sys::rte_eth_promiscuous_disable(self.id)
            })
        };
        check(call, ret)?;
        Ok(())
    }

    /// Adds a unicast MAC address the port accepts
    /// (`rte_eth_dev_mac_addr_add`), e.g. the VRRP virtual MAC.
    pub fn add_mac(&self, mac: [u8; 6]) -> Result<()> {
        let mut addr = sys::rte_ether_addr { addr_bytes: mac };
        let _ports = ports();
        // SAFETY: addr is valid for the call (DPDK copies it); control lock
        // held.
        check("rte_eth_dev_mac_addr_add", unsafe {
            sys::rte_eth_dev_mac_addr_add(self.id, &mut addr, 0)
        })?;
        Ok(())
    }

    /// Whether the link is up, without waiting for autonegotiation
    /// (`rte_eth_link_get_nowait`); `false` if the driver cannot tell.
    pub fn link_up(&self) -> bool {
        let mut link = sys::rte_eth_link::default();
        let _ports = ports();
        // SAFETY: link is a valid out pointer; control lock held.
        let ret = unsafe { sys::rte_eth_link_get_nowait(self.id, &mut link) };
        ret == 0 && u32::from(link.link_status()) == sys::RTE_ETH_LINK_UP
    }

    /// The port's counters (`rte_eth_stats_get`).
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = sys::rte_eth_stats::default();
        let _ports = ports();
        // SAFETY: s is a valid out pointer; control lock held.
        check("rte_eth_stats_get", unsafe {
            sys::rte_eth_stats_get(self.id, &mut s)
        })?;
        Ok(PortStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// The handle of RX queue `queue`: the port must be started, the queue
    /// configured, and no other handle of it alive.
    pub fn rx_queue(&self, queue: u16) -> Result<RxQueue> {
        self.claim(queue, Dir::Rx)?;
        Ok(RxQueue {
            port: self.id,
            queue,
            _eal: self.eal.clone(),
        })
    }

    /// The handle of TX queue `queue`: the port must be started, the queue
    /// configured, and no other handle of it alive.
    pub fn tx_queue(&self, queue: u16) -> Result<TxQueue> {
        self.claim(queue, Dir::Tx)?;
        Ok(TxQueue {
            port: self.id,
            queue,
            _eal: self.eal.clone(),
        })
    }

    fn claim(&self, queue: u16, dir: Dir) -> Result<()> {
        let mut ports = ports();
        let slot = &mut ports[usize::from(self.id)];
        if !slot.started {
            return Err(self.busy("not started"));
        }
        let claimed = dir
            .claims(slot)
            .get_mut(usize::from(queue))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "port {} has no {} queue {queue}",
                    self.id,
                    dir.name()
                ))
            })?;
        if *claimed {
            return Err(self.busy("the queue already has a handle"));
        }
        *claimed = true;
        Ok(())
    }

    fn busy(&self, reason: &'static str) -> Error {
        Error::PortBusy {
            port: self.id,
            reason,
        }
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Rx,
    Tx,
}

impl Dir {
    fn claims(self, slot: &mut Slot) -> &mut Vec<bool> {
        match self {
            Dir::Rx => &mut slot.rx_claimed,
            Dir::Tx => &mut slot.tx_claimed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dir::Rx => "RX",
            Dir::Tx => "TX",
        }
    }

    /// Releases a queue's claim when its handle drops.
    fn release(self, port: u16, queue: u16) {
        let mut ports = ports();
        if let Some(c) = self
            .claims(&mut ports[usize::from(port)])
            .get_mut(usize::from(queue))
        {
            *c = false;
        }
    }
}

/// The only handle of one RX queue, for the worker that polls it. `Send`,
/// so it can move to its worker lcore; polling needs `&mut`.
#[derive(Debug)]
pub struct RxQueue {
    port: u16,
    queue: u16,
    _eal: EalRef,
}

impl RxQueue {
    /// Receives into the free part of `out`, at most [`RX_BURST_SIZE`]
    /// mbufs per call (`rte_eth_rx_burst`); returns how many arrived.
    pub fn rx_burst(&mut self, out: &mut Burst) -> usize {
        self.rx_burst_max(out, RX_BURST_SIZE)
    }

    /// [`RxQueue::rx_burst`] with the burst size chosen by the caller
    /// (config `dataplane.burst`), still bounded by the room in `out`.
    pub fn rx_burst_max(&mut self, out: &mut Burst, max: usize) -> usize {
        let n = (BURST_SIZE - out.len).min(max);
        if n == 0 {
            return 0;
        }
        // SAFETY: this is the only handle of a set-up queue of a started
        // port, and the port cannot be stopped or reconfigured while it
        // exists; ptrs[len..len + n] is writable, and the driver fills the
        // first `got` entries with mbufs it hands over to the caller.
        let got = unsafe {
            sys::pylon_eth_rx_burst(
                self.port,
                self.queue,
                out.ptrs.as_mut_ptr().add(out.len),
                n as u16,
            )
        };
        out.len += usize::from(got);
        usize::from(got)
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        Dir::Rx.release(self.port, self.queue);
    }
}

/// The only handle of one TX queue. `Send`; sending needs `&mut`.
#[derive(Debug)]
pub struct TxQueue {
    port: u16,
    queue: u16,
    _eal: EalRef,
}

impl TxQueue {
    /// Sends as many mbufs of `b` as the driver takes now
    /// (`rte_eth_tx_burst`) and returns that number; the rest stay at the
    /// front of `b`, in order, for the caller to retry or drop.
    pub fn tx_burst(&mut self, b: &mut Burst) -> usize {
        if b.len == 0 {
            return 0;
        }
        // SAFETY: as in rx_burst for the queue; ptrs[..len] are owned mbufs
        // (len <= BURST_SIZE fits u16), and the driver takes ownership of
        // the first `sent`, which therefore leave the burst.
        let sent = usize::from(unsafe {
            sys::pylon_eth_tx_burst(self.port, self.queue, b.ptrs.as_mut_ptr(), b.len as u16)
        });
        b.ptrs.copy_within(sent..b.len, 0);
        b.len -= sent;
        sent
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        Dir::Tx.release(self.port, self.queue);
    }
}
