//! Mempools, mbufs and fixed-size bursts of mbufs.

use std::ffi::{c_int, c_uint, CStr, CString};
use std::fmt;
use std::mem::{self, ManuallyDrop};
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::Arc;

use dpdk_sys as sys;

use crate::eal::EalRef;
use crate::error::{Error, Result};

/// DPDK's default mbuf data room (`RTE_MBUF_DEFAULT_BUF_SIZE`): 2048 bytes
/// of packet plus the `RTE_PKTMBUF_HEADROOM` (128) reserved for prepending
/// headers, enough for a standard 1500-byte MTU frame in one segment.
pub const DEFAULT_DATA_ROOM: u16 = {
    assert!(sys::RTE_MBUF_DEFAULT_BUF_SIZE <= u16::MAX as u32);
    sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16
};

/// Capacity of a [`Burst`]: two receive bursts, so a TX burst that kept
/// unsent packets still has room for a full receive burst.
pub const BURST_SIZE: usize = 64;

/// Most mbufs one [`RxQueue::rx_burst`](crate::RxQueue::rx_burst) call asks
/// for: DPDK's customary burst, which vector PMDs are tuned for.
pub const RX_BURST_SIZE: usize = 32;

/// The mempool driver of every pool: DPDK's default, named explicitly so
/// that an EAL option (`--mbuf-pool-ops-name`) cannot swap in ops that are
/// not thread-safe, which `Mempool: Sync` relies on.
const POOL_OPS: &CStr = c"ring_mp_mc";

/// A packet-mbuf pool (`rte_pktmbuf_pool_create_by_ops`).
///
/// Cloning is cheap and shares the pool; the pool is freed
/// (`rte_mempool_free`) when the last clone is dropped, unless mbufs of it
/// are still in use (held as [`Mbuf`], queued in a [`Burst`], or sitting in
/// a port's TX ring): then it is leaked, because freeing it would leave
/// those mbufs dangling. A port configured with a pool keeps it alive until
/// the port is closed.
///
/// The in-use count is exact only while no other thread is freeing an mbuf
/// of this pool, so drop the last clone after the threads that handle its
/// packets have finished (stop workers, [`wait_lcore`](crate::wait_lcore),
/// stop and close ports, then drop pools), as every DPDK program must.
#[derive(Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    ptr: NonNull<sys::rte_mempool>,
    /// Released only when the pool is actually freed: a leaked pool's mbufs
    /// may still be used, so the EAL must then never be cleaned up.
    eal: ManuallyDrop<EalRef>,
}

// SAFETY: the pool is created with the multi-producer/multi-consumer ring
// ops (POOL_OPS), so get/put from any thread is safe; threads that are not
// EAL lcores simply bypass the per-lcore cache. The pointer is only freed by
// Drop, which has exclusive access.
unsafe impl Send for PoolInner {}
// SAFETY: see Send; all shared access goes through thread-safe DPDK calls.
unsafe impl Sync for PoolInner {}

impl Mempool {
    /// Creates a pool of `n` mbufs named `name` on the caller's NUMA socket,
    /// with a per-lcore cache of `cache` mbufs and `data_room` bytes of
    /// buffer per mbuf (headroom included; see [`DEFAULT_DATA_ROOM`]).
    ///
    /// DPDK wants `n` to be a power of two minus one for the best memory
    /// use, and rejects a `cache` above 512 or above `n / 1.5`, and a name
    /// that is already used or longer than 25 bytes.
    pub fn new(name: &str, n: u32, cache: u32, data_room: u16) -> Result<Mempool> {
        let eal = EalRef::acquire()?;
        let cname = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("mempool name {name:?} contains NUL")))?;
        // SAFETY: the EAL is running (eal); cname and POOL_OPS are valid C
        // strings that DPDK copies. rte_socket_id returns SOCKET_ID_ANY (as
        // unsigned) on non-EAL threads, which the cast turns back into -1.
        let ptr = unsafe {
            sys::rte_pktmbuf_pool_create_by_ops(
                cname.as_ptr(),
                n,
                cache,
                0,
                data_room,
                sys::rte_socket_id() as c_int,
                POOL_OPS.as_ptr(),
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::last("rte_pktmbuf_pool_create_by_ops"))?;
        Ok(Mempool {
            inner: Arc::new(PoolInner {
                ptr,
                eal: ManuallyDrop::new(eal),
            }),
        })
    }

    /// Mbufs that can be allocated now (`rte_mempool_avail_count`),
    /// including those in per-lcore caches.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is alive while self is.
        unsafe { sys::rte_mempool_avail_count(self.as_ptr()) }
    }

    /// Mbufs allocated and not yet freed (`rte_mempool_in_use_count`).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is alive while self is.
        unsafe { sys::rte_mempool_in_use_count(self.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.inner.ptr.as_ptr()
    }

    /// Whether both handles share one pool.
    pub(crate) fn same_pool(&self, other: &Mempool) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl fmt::Debug for Mempool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mempool")
            .field("available", &self.available())
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: the pool is alive until freed below.
        let in_use = unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use != 0 {
            // Leaked with its EAL claim: see the type's documentation.
            return;
        }
        // SAFETY: this was the last handle, so nothing can allocate from the
        // pool any more (ports keep a handle of their RX pool), and none of
        // its mbufs is in use, so nothing refers to its memory. The count
        // can only be stale if another thread is inside a free of this
        // pool's last mbuf right now, which the type's documented teardown
        // order excludes.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) };
        // SAFETY: dropped exactly once, here; the field is not used again.
        unsafe { ManuallyDrop::drop(&mut self.eal) };
    }
}

/// An owned packet (`struct rte_mbuf` chain); dropping it frees it
/// (`rte_pktmbuf_free`).
///
/// The data accessors see the first segment only, which is the whole packet
/// when [`is_contiguous`](Mbuf::is_contiguous); the dataplane drops or
/// linearises the rare multi-segment packet before parsing it.
pub struct Mbuf {
    ptr: NonNull<sys::rte_mbuf>,
}

// SAFETY: an Mbuf is the only handle to its mbuf chain, and mbufs may be
// freed on any thread (the pool is thread-safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Allocates a reset mbuf (`rte_pktmbuf_alloc`): empty data, full
    /// headroom. `None` when the pool is exhausted.
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: the pool is alive while `pool` is borrowed; the function
        // returns an mbuf the caller owns, or NULL.
        let ptr = unsafe { sys::pylon_pktmbuf_alloc(pool.as_ptr()) };
        NonNull::new(ptr).map(|ptr| Mbuf { ptr })
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid, non-null mbuf chain owned by the caller (e.g.
    /// just returned by `rte_eth_rx_burst`) and not used by it afterwards.
    pub(crate) unsafe fn from_raw(ptr: *mut sys::rte_mbuf) -> Mbuf {
        Mbuf {
            // SAFETY: non-null by the caller's contract.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
        }
    }

    /// Gives up ownership without freeing, e.g. to a TX ring.
    pub(crate) fn into_raw(self) -> *mut sys::rte_mbuf {
        let ptr = self.ptr.as_ptr();
        mem::forget(self);
        ptr
    }

    fn raw(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a valid mbuf, and nothing else accesses it while
        // self is borrowed.
        unsafe { self.ptr.as_ref() }
    }

    /// The first segment's bytes (`rte_pktmbuf_mtod`, `data_len` long).
    pub fn data(&self) -> &[u8] {
        first_segment(self.raw())
    }

    /// The first segment's bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        let m = self.raw();
        let (addr, off, len) = (m.buf_addr, m.data_off, m.data_len);
        // SAFETY: as in `data`, and self is borrowed mutably, so the slice is
        // the only reference to these bytes.
        unsafe {
            slice::from_raw_parts_mut(addr.cast::<u8>().add(usize::from(off)), usize::from(len))
        }
    }

    /// Whether the packet is one segment (`nb_segs == 1`), so that
    /// [`data`](Mbuf::data) is the whole packet.
    pub fn is_contiguous(&self) -> bool {
        self.raw().nb_segs == 1
    }

    /// The whole packet's length over all segments (`pkt_len`).
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    /// Free bytes in front of the first segment's data: how much
    /// [`prepend`](Mbuf::prepend) can add (`rte_pktmbuf_headroom`).
    pub fn headroom(&self) -> u16 {
        self.raw().data_off
    }

    /// Free bytes after the first segment's data (`rte_pktmbuf_tailroom`):
    /// how much [`append`](Mbuf::append) can add to a contiguous packet.
    pub fn tailroom(&self) -> u16 {
        let m = self.raw();
        m.buf_len - m.data_off - m.data_len
    }

    /// Grows the packet by `n` bytes at the front (`rte_pktmbuf_prepend`),
    /// e.g. for an encapsulation header. The new bytes are stale buffer
    /// content that the caller overwrites. `false` (and no change) if the
    /// headroom is too small.
    pub fn prepend(&mut self, n: u16) -> bool {
        // SAFETY: self owns a valid mbuf; DPDK checks n against the headroom.
        !unsafe { sys::pylon_pktmbuf_prepend(self.ptr.as_ptr(), n) }.is_null()
    }

    /// Removes `n` bytes from the front (`rte_pktmbuf_adj`), e.g. to strip
    /// a header. `false` (and no change) if the first segment is shorter.
    pub fn adj(&mut self, n: u16) -> bool {
        // SAFETY: self owns a valid mbuf; DPDK checks n against data_len.
        !unsafe { sys::pylon_pktmbuf_adj(self.ptr.as_ptr(), n) }.is_null()
    }

    /// Grows the packet by `n` stale bytes at the end of its last segment
    /// (`rte_pktmbuf_append`). `false` (and no change) if that segment's
    /// tailroom is too small.
    pub fn append(&mut self, n: u16) -> bool {
        // SAFETY: self owns a valid mbuf; DPDK checks n against the tailroom.
        !unsafe { sys::pylon_pktmbuf_append(self.ptr.as_ptr(), n) }.is_null()
    }

    /// Removes `n` bytes from the end of the last segment
    /// (`rte_pktmbuf_trim`). `false` (and no change) if it is shorter.
    pub fn trim(&mut self, n: u16) -> bool {
        // SAFETY: self owns a valid mbuf; DPDK checks n against data_len.
        unsafe { sys::pylon_pktmbuf_trim(self.ptr.as_ptr(), n) == 0 }
    }

    /// Sets a contiguous packet's length to `len`, growing into the
    /// tailroom (stale bytes) or shrinking from the end: the way to size a
    /// packet that is being built. `false` (and no change) for a
    /// multi-segment packet or a `len` beyond the buffer.
    pub fn set_len(&mut self, len: u16) -> bool {
        if !self.is_contiguous() {
            return false;
        }
        let cur = self.raw().data_len;
        if len >= cur {
            self.append(len - cur)
        } else {
            self.trim(cur - len)
        }
    }
}

impl fmt::Debug for Mbuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.raw();
        f.debug_struct("Mbuf")
            .field("pkt_len", &m.pkt_len)
            .field("data_len", &m.data_len)
            .field("nb_segs", &m.nb_segs)
            .finish()
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns the mbuf chain and is not used again.
        unsafe { sys::pylon_pktmbuf_free(self.ptr.as_ptr()) }
    }
}

/// Frees raw mbufs in one call (`rte_pktmbuf_free_bulk`, which batches the
/// returns per pool).
///
/// # Safety
/// Every pointer must be an owned mbuf chain, not used afterwards.
unsafe fn free_all(mbufs: &mut [*mut sys::rte_mbuf]) {
    if !mbufs.is_empty() {
        // SAFETY: by the caller's contract; the length fits, being at most
        // BURST_SIZE.
        unsafe { sys::rte_pktmbuf_free_bulk(mbufs.as_mut_ptr(), mbufs.len() as c_uint) }
    }
}

/// The first segment's bytes of `m`, for as long as `m` is borrowed.
fn first_segment(m: &sys::rte_mbuf) -> &[u8] {
    // SAFETY: buf_addr + data_off starts data_len initialised bytes inside
    // the mbuf's buffer (DPDK's invariant, kept by every call of this
    // module); the caller's borrow of the mbuf keeps them from being written.
    unsafe {
        slice::from_raw_parts(
            m.buf_addr.cast::<u8>().add(usize::from(m.data_off)),
            usize::from(m.data_len),
        )
    }
}

/// A fixed-capacity array of up to [`BURST_SIZE`] owned mbufs, the unit
/// that RX and TX queues work on; it never allocates, so it can live in a
/// worker's state. Dropping it frees the mbufs it still holds.
pub struct Burst {
    pub(crate) ptrs: [*mut sys::rte_mbuf; BURST_SIZE],
    /// `ptrs[..len]` are owned mbufs; the rest are stale.
    pub(crate) len: usize,
}

// SAFETY: a Burst owns its mbufs exclusively, like Mbuf, which is Send.
unsafe impl Send for Burst {}

impl Burst {
    /// An empty burst.
    pub const fn new() -> Self {
        Burst {
            ptrs: [ptr::null_mut(); BURST_SIZE],
            len: 0,
        }
    }

    /// Number of mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no mbuf is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether [`push`](Burst::push) would fail: time to transmit.
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Appends `m`, or hands it back when the burst is full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// The first segment's bytes of each mbuf held, in order (as
    /// [`Mbuf::data`]), to look at a burst before taking it apart.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.ptrs[..self.len].iter().map(|&p| {
            // SAFETY: ptrs[..len] are valid mbufs owned by the burst, which
            // is borrowed (shared) for as long as the slices live, so nothing
            // writes them meanwhile.
            first_segment(unsafe { &*p })
        })
    }

    /// Takes every mbuf out, in order. The burst is empty afterwards, even
    /// if the iterator is dropped early (the rest are then freed).
    pub fn drain(&mut self) -> Drain<'_> {
        let len = mem::replace(&mut self.len, 0);
        Drain {
            iter: self.ptrs[..len].iter_mut(),
        }
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Burst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Burst").field("len", &self.len).finish()
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        let len = self.len;
        // SAFETY: ptrs[..len] are owned mbufs, not used after the drop.
        unsafe { free_all(&mut self.ptrs[..len]) }
    }
}

/// The iterator of [`Burst::drain`]: yields owned mbufs, frees those not
/// taken.
pub struct Drain<'a> {
    /// Owned mbufs not yet yielded; the burst already counts them as gone.
    iter: slice::IterMut<'a, *mut sys::rte_mbuf>,
}

impl Iterator for Drain<'_> {
    type Item = Mbuf;

    fn next(&mut self) -> Option<Mbuf> {
        // SAFETY: every pointer the iterator has not yielded yet is an owned
        // mbuf, and each is yielded once.
        self.iter.next().map(|&mut p| unsafe { Mbuf::from_raw(p) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}

impl ExactSizeIterator for Drain<'_> {}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        let rest = mem::take(&mut self.iter).into_slice();
        // SAFETY: the pointers not yielded are owned mbufs, now unreachable.
        unsafe { free_all(rest) }
    }
}
