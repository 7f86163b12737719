//! The neighbor (ARP) table as workers read it: a map published by the
//! control lcore and swapped atomically, so a worker's lookup takes no lock.

use arc_swap::{ArcSwap, Guard};
use crossbeam_queue::ArrayQueue;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// IPv4 (host order) to MAC.
pub type NeighborMap = FxHashMap<u32, [u8; 6]>;

/// Published neighbors plus the queue workers use to ask for resolutions.
pub struct Neighbors {
    map: ArcSwap<NeighborMap>,
    requests: ArrayQueue<u32>,
}

impl Neighbors {
    pub fn new(request_capacity: usize) -> Neighbors {
        Neighbors {
            map: ArcSwap::from_pointee(NeighborMap::default()),
            requests: ArrayQueue::new(request_capacity),
        }
    }

    /// The current map; workers load it once per burst.
    pub fn load(&self) -> Guard<Arc<NeighborMap>> {
        self.map.load()
    }

    /// Replaces the map (control lcore only).
    pub fn publish(&self, map: NeighborMap) {
        self.map.store(Arc::new(map));
    }

    /// A worker asks the control lcore to resolve `ip`. Non-blocking; when
    /// the queue is full the request is dropped and the next miss repeats it.
    pub fn request(&self, ip: u32) {
        let _ = self.requests.push(ip);
    }

    /// Drains pending requests (control lcore).
    pub fn take_request(&self) -> Option<u32> {
        self.requests.pop()
    }
}
