//! Rings of mbufs: the medium of ring-based ethdevs ([`Port::from_rings`]).
//!
//! [`Port::from_rings`]: crate::Port::from_rings

use std::ffi::{c_void, CString};
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dpdk_sys as sys;

use crate::eal::EalRef;
use crate::error::{Error, Result};
use crate::mbuf::{Burst, BURST_SIZE};

/// A single-producer, single-consumer ring of mbufs (`rte_ring_create` with
/// `RING_F_SP_ENQ | RING_F_SC_DEQ`).
///
/// A ring is only ever filled and emptied by the ethdev queues it is
/// attached to with [`Port::from_rings`](crate::Port::from_rings): what the
/// TX queue of one port enqueues, the RX queue of the port that has the ring
/// as an RX ring dequeues. That is how two ports are wired back to back in
/// one process, without a NIC or the kernel. Each ring can be attached once
/// as a TX ring (its one producer) and once as an RX ring (its one
/// consumer), which, with one handle per queue, keeps the single-producer /
/// single-consumer contract.
///
/// Cloning is cheap and shares the ring. The ring is freed
/// (`rte_ring_free`) when the last clone is dropped and no port uses it any
/// more (a port keeps its rings until it is closed); the mbufs still in it
/// are freed then.
#[derive(Clone)]
pub struct Ring {
    inner: Arc<RingInner>,
}

struct RingInner {
    ptr: NonNull<sys::rte_ring>,
    name: String,
    /// Attached as a port's TX ring (it has its producer).
    producer: AtomicBool,
    /// Attached as a port's RX ring (it has its consumer).
    consumer: AtomicBool,
    _eal: EalRef,
}

// SAFETY: the ring pointer is only dequeued from by the queue handle of the
// one port that consumes it and enqueued to by the one that produces it
// (see `Attachment`), or by Drop, which has exclusive access; creation and
// freeing are thread-safe DPDK calls.
unsafe impl Send for RingInner {}
// SAFETY: see Send; shared access is limited to the atomic flags.
unsafe impl Sync for RingInner {}

/// Which end of a ring a port holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The port's RX queue dequeues from it.
    Consumer,
    /// The port's TX queue enqueues to it.
    Producer,
}

/// One end of a ring, claimed by a port until the port is closed; dropping
/// it releases the end (and possibly the ring).
pub(crate) struct Attachment {
    ring: Ring,
    end: End,
}

impl Attachment {
    /// Claims `end` of `ring`; fails if another port holds it.
    pub(crate) fn claim(ring: &Ring, end: End) -> Result<Attachment> {
        if ring
            .flag(end)
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::InvalidArgument(format!(
                "ring {:?} already has a {}",
                ring.name(),
                match end {
                    End::Consumer => "consumer (another port's RX queue)",
                    End::Producer => "producer (another port's TX queue)",
                }
            )));
        }
        Ok(Attachment {
            ring: ring.clone(),
            end,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_ring {
        self.ring.inner.ptr.as_ptr()
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.ring.flag(self.end).store(false, Ordering::Release);
    }
}

impl Ring {
    /// Creates a ring named `name` holding up to `size - 1` mbufs; `size`
    /// must be a power of two (DPDK's rule) of at least 2, and `name`
    /// unique and at most 26 bytes. The memory comes from the EAL's heap.
    pub fn new(name: &str, size: u32) -> Result<Ring> {
        let eal = EalRef::acquire()?;
        if size < 2 || !size.is_power_of_two() {
            return Err(Error::InvalidArgument(format!(
                "ring size {size} is not a power of two of at least 2"
            )));
        }
        let cname = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("ring name {name:?} contains NUL")))?;
        // SAFETY: the EAL is running (eal); cname is a valid C string that
        // DPDK copies; rte_socket_id works on any thread (SOCKET_ID_ANY
        // comes back as -1 through the cast). DPDK checks size and name.
        let ptr = unsafe {
            sys::rte_ring_create(
                cname.as_ptr(),
                size,
                sys::rte_socket_id() as i32,
                sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ,
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| Error::last("rte_ring_create"))?;
        Ok(Ring {
            inner: Arc::new(RingInner {
                ptr,
                name: name.to_owned(),
                producer: AtomicBool::new(false),
                consumer: AtomicBool::new(false),
                _eal: eal,
            }),
        })
    }

    /// The name given to [`Ring::new`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn flag(&self, end: End) -> &AtomicBool {
        match end {
            End::Consumer => &self.inner.consumer,
            End::Producer => &self.inner.producer,
        }
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring").field("name", &self.name()).finish()
    }
}

impl Drop for RingInner {
    fn drop(&mut self) {
        // Every object in the ring is an mbuf a TX queue handed over: take
        // them out as owned mbufs, which frees them.
        loop {
            let mut burst = Burst::new();
            // SAFETY: this is the last reference to the ring and no port
            // holds it (an Attachment would hold a reference), so nothing
            // else enqueues or dequeues; ptrs has room for BURST_SIZE
            // pointers, and the ring hands over those it returns.
            let n = unsafe {
                sys::pylon_ring_dequeue_burst(
                    self.ptr.as_ptr(),
                    burst.ptrs.as_mut_ptr().cast::<*mut c_void>(),
                    BURST_SIZE as u32,
                )
            };
            if n == 0 {
                break;
            }
            burst.len = n as usize;
            drop(burst);
        }
        // SAFETY: the ring is empty and nothing refers to it any more; the
        // EAL is still running (self._eal is dropped after this).
        unsafe { sys::rte_ring_free(self.ptr.as_ptr()) };
    }
}
