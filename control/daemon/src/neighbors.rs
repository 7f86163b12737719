//! ARP resolution state (RFC 826), sans-IO: learn events and time in,
//! probes to send out; the control loop publishes the resulting map to the
//! workers whenever it changed.

use pylon_dataplane::neighbor::NeighborMap;
use rustc_hash::FxHashMap;

/// How often an unanswered or stale entry is probed.
const PROBE_INTERVAL_MS: u32 = 1000;
/// An on-demand resolution nobody answers is given up after three probes
/// (the next worker miss asks again).
const UNANSWERED_GIVE_UP_MS: u32 = 3 * PROBE_INTERVAL_MS;

#[derive(Debug)]
struct Entry {
    port: usize,
    mac: Option<[u8; 6]>,
    /// When the MAC was last confirmed by an ARP packet from the neighbor
    /// (for an unresolved entry: when it was created).
    confirmed: u32,
    last_probe: Option<u32>,
    /// Real servers and gateways are resolved for as long as they are
    /// configured; other entries (clients) are forgotten on expiry.
    permanent: bool,
}

/// A neighbor to ask for: broadcast an ARP request for `ip` on `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub ip: u32,
    pub port: usize,
}

pub struct NeighborManager {
    entries: FxHashMap<u32, Entry>,
    refresh_ms: u32,
    expiry_ms: u32,
    dirty: bool,
}

impl NeighborManager {
    /// `refresh_ms`: age at which a resolved entry is re-probed;
    /// `expiry_ms`: age at which an unconfirmed entry stops being used.
    pub fn new(refresh_ms: u32, expiry_ms: u32) -> NeighborManager {
        NeighborManager {
            entries: FxHashMap::default(),
            refresh_ms,
            expiry_ms,
            dirty: false,
        }
    }

    /// Keeps `ip` resolved on `port` for as long as the manager lives.
    pub fn want(&mut self, ip: u32, port: usize) {
        self.entries
            .entry(ip)
            .and_modify(|e| e.permanent = true)
            .or_insert(Entry {
                port,
                mac: None,
                confirmed: 0,
                last_probe: None,
                permanent: true,
            });
    }

    /// A worker missed `ip`: resolve it (the next tick probes it).
    pub fn request(&mut self, ip: u32, port: usize, now: u32) {
        self.entries.entry(ip).or_insert(Entry {
            port,
            mac: None,
            confirmed: now,
            last_probe: None,
            permanent: false,
        });
    }

    /// An ARP packet showed `ip` at `mac` on `port`. Per RFC 826's merge
    /// rule a known entry is always updated, and a new one is created only
    /// when the packet was addressed to us (`for_us`), so a broadcast storm
    /// cannot fill the table.
    pub fn learn(&mut self, ip: u32, mac: [u8; 6], port: usize, now: u32, for_us: bool) {
        match self.entries.get_mut(&ip) {
            Some(e) => {
                if e.mac != Some(mac) || e.port != port {
                    self.dirty = true;
                }
                e.mac = Some(mac);
                e.port = port;
                e.confirmed = now;
                e.last_probe = None;
            }
            None if for_us => {
                self.entries.insert(
                    ip,
                    Entry {
                        port,
                        mac: Some(mac),
                        confirmed: now,
                        last_probe: None,
                        permanent: false,
                    },
                );
                self.dirty = true;
            }
            None => {}
        }
    }

    /// Advances time: returns the probes due now, expires stale entries.
    pub fn tick(&mut self, now: u32) -> Vec<Probe> {
        let mut probes = Vec::new();
        let mut dirty = false;
        self.entries.retain(|&ip, e| {
            let age = now.wrapping_sub(e.confirmed);
            if e.mac.is_some() && age >= self.expiry_ms {
                e.mac = None;
                dirty = true;
                if !e.permanent {
                    return false;
                }
            }
            if e.mac.is_none() && !e.permanent && age >= UNANSWERED_GIVE_UP_MS {
                return false;
            }
            let stale = e.mac.is_none() || age >= self.refresh_ms;
            let due = e
                .last_probe
                .is_none_or(|t| now.wrapping_sub(t) >= PROBE_INTERVAL_MS);
            if stale && due {
                e.last_probe = Some(now);
                probes.push(Probe { ip, port: e.port });
            }
            true
        });
        self.dirty |= dirty;
        probes
    }

    /// The map to publish, if anything changed since the last call.
    pub fn take_map(&mut self) -> Option<NeighborMap> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(
            self.entries
                .iter()
                .filter_map(|(&ip, e)| Some((ip, e.mac?)))
                .collect(),
        )
    }

    pub fn resolved(&self) -> usize {
        self.entries.values().filter(|e| e.mac.is_some()).count()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn wanted_entry_is_probed_until_answered() {
        let mut nm = NeighborManager::new(30_000, 90_000);
        nm.want(7, 1);
        assert_eq!(nm.tick(0), vec![Probe { ip: 7, port: 1 }]);
        assert_eq!(nm.tick(500), vec![]);
        assert_eq!(nm.tick(1000), vec![Probe { ip: 7, port: 1 }]);
        assert!(nm.take_map().is_none());
        nm.learn(7, MAC, 1, 1100, false);
        assert_eq!(nm.take_map().unwrap().get(&7), Some(&MAC));
        assert_eq!(nm.tick(2000), vec![]);
    }

    #[test]
    fn refresh_then_expiry() {
        let mut nm = NeighborManager::new(30_000, 90_000);
        nm.want(7, 0);
        nm.learn(7, MAC, 0, 0, true);
        nm.take_map();
        assert_eq!(nm.tick(29_999), vec![]);
        assert_eq!(nm.tick(30_000), vec![Probe { ip: 7, port: 0 }]);
        assert!(
            nm.take_map().is_none(),
            "still usable while being refreshed"
        );
        nm.tick(90_000);
        assert_eq!(nm.take_map().unwrap().get(&7), None);
        assert_eq!(nm.len(), 1, "permanent entries stay and keep probing");
    }

    #[test]
    fn unsolicited_arp_does_not_create_entries() {
        let mut nm = NeighborManager::new(30_000, 90_000);
        nm.learn(9, MAC, 0, 0, false);
        assert!(nm.is_empty());
        nm.learn(9, MAC, 0, 0, true);
        assert_eq!(nm.resolved(), 1);
        nm.tick(90_000);
        assert!(nm.is_empty(), "learned clients are forgotten on expiry");
    }

    #[test]
    fn requested_entry_is_probed() {
        let mut nm = NeighborManager::new(30_000, 90_000);
        nm.request(5, 0, 10);
        assert_eq!(nm.tick(10), vec![Probe { ip: 5, port: 0 }]);
        nm.tick(1010);
        nm.tick(2010);
        nm.tick(3010);
        assert!(nm.is_empty(), "unanswered requests are given up");
    }
}
