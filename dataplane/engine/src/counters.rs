//! Per-worker counters. Each worker owns its block and is its only writer,
//! so an increment is a plain load and store (no locked instruction);
//! readers sum the blocks on demand and never stall a worker.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a worker dropped a packet. Every drop is counted under one reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Neither IPv4 nor ARP (IPv6, LLDP, stacked VLAN tags, ...).
    NotIpv4,
    /// Unicast to another host's MAC (promiscuous port, flooding switch).
    OtherHost,
    /// Truncated frame or impossible IPv4/TCP/UDP/ICMP header.
    BadHeader,
    BadIpChecksum,
    /// IPv4 options present.
    IpOptions,
    Fragment,
    /// TTL would reach zero on forwarding.
    TtlExpired,
    /// SYN with FIN or RST, or no flag at all.
    BadTcpFlags,
    /// Not addressed to a virtual service, a tracked connection or us.
    NotForService,
    /// TCP segment other than a pure SYN with no connection entry.
    NoConnection,
    /// Every real server of the service is down or quiesced (weight 0)
    /// and there is no sorry server; TCP SYNs are answered with a RST.
    NoRealServer,
    /// The connection table is at capacity.
    TableFull,
    /// Next hop not resolved yet (a resolution was requested).
    NoNeighbor,
    /// Slow-path ring to the control lcore was full.
    ControlRingFull,
    /// The port's TX queue did not take the packet.
    TxFull,
    /// Chained mbufs (jumbo frames split across segments) are not handled.
    MultiSegment,
    /// Does not fit the tunnel (answered with ICMP when DF is set).
    TooBig,
    /// No mbuf headroom for the tunnel header.
    NoHeadroom,
    /// Traffic to a VIP whose VRRP instance is BACKUP or FAULT here.
    VrrpBackup,
}

impl DropReason {
    pub const ALL: [DropReason; 19] = [
        DropReason::NotIpv4,
        DropReason::OtherHost,
        DropReason::BadHeader,
        DropReason::BadIpChecksum,
        DropReason::IpOptions,
        DropReason::Fragment,
        DropReason::TtlExpired,
        DropReason::BadTcpFlags,
        DropReason::NotForService,
        DropReason::NoConnection,
        DropReason::NoRealServer,
        DropReason::TableFull,
        DropReason::NoNeighbor,
        DropReason::ControlRingFull,
        DropReason::TxFull,
        DropReason::MultiSegment,
        DropReason::TooBig,
        DropReason::NoHeadroom,
        DropReason::VrrpBackup,
    ];

    /// Stable snake_case name used in stats output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::OtherHost => "other_host",
            DropReason::BadHeader => "bad_header",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::IpOptions => "ip_options",
            DropReason::Fragment => "fragment",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::BadTcpFlags => "bad_tcp_flags",
            DropReason::NotForService => "not_for_service",
            DropReason::NoConnection => "no_connection",
            DropReason::NoRealServer => "no_real_server",
            DropReason::TableFull => "table_full",
            DropReason::NoNeighbor => "no_neighbor",
            DropReason::ControlRingFull => "control_ring_full",
            DropReason::TxFull => "tx_full",
            DropReason::MultiSegment => "multi_segment",
            DropReason::TooBig => "too_big",
            DropReason::NoHeadroom => "no_headroom",
            DropReason::VrrpBackup => "vrrp_backup",
        }
    }
}

/// One worker's counters (cache-line aligned so workers never share a line).
#[derive(Default, Debug)]
#[repr(align(64))]
pub struct WorkerCounters {
    pub rx_packets: AtomicU64,
    pub tx_packets: AtomicU64,
    pub to_control: AtomicU64,
    /// Client->service packets forwarded, and NAT replies translated.
    pub forward_packets: AtomicU64,
    pub reply_packets: AtomicU64,
    /// ICMP errors the worker generated (fragmentation needed).
    pub icmp_sent: AtomicU64,
    /// RSTs refusing connections no real server could take.
    pub rst_sent: AtomicU64,
    /// Polls that found every RX queue empty, and polls that did not:
    /// their ratio is the worker's idle share.
    pub idle_polls: AtomicU64,
    pub busy_polls: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl WorkerCounters {
    /// Adds `n` to a counter of this block; only its owning worker calls it.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn count_drop(&self, reason: DropReason) {
        Self::add(&self.drops[reason as usize], 1);
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// Traffic of one real server: connections scheduled to it, packets and
/// bytes (IPv4 total length) client to server (`in`) and back (`out`, NAT
/// replies only: with DSR and tunnel the replies bypass Pylon).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub conns: u64,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
}

impl Traffic {
    /// Field-wise sum (wrapping, as the counters do).
    pub fn plus(self, o: Traffic) -> Traffic {
        Traffic {
            conns: self.conns.wrapping_add(o.conns),
            in_packets: self.in_packets.wrapping_add(o.in_packets),
            in_bytes: self.in_bytes.wrapping_add(o.in_bytes),
            out_packets: self.out_packets.wrapping_add(o.out_packets),
            out_bytes: self.out_bytes.wrapping_add(o.out_bytes),
        }
    }

    /// Field-wise difference since `base` (wrapping).
    pub fn since(self, base: Traffic) -> Traffic {
        Traffic {
            conns: self.conns.wrapping_sub(base.conns),
            in_packets: self.in_packets.wrapping_sub(base.in_packets),
            in_bytes: self.in_bytes.wrapping_sub(base.in_bytes),
            out_packets: self.out_packets.wrapping_sub(base.out_packets),
            out_bytes: self.out_bytes.wrapping_sub(base.out_bytes),
        }
    }
}

#[derive(Default, Debug)]
struct TrafficSlot {
    conns: AtomicU64,
    in_packets: AtomicU64,
    in_bytes: AtomicU64,
    out_packets: AtomicU64,
    out_bytes: AtomicU64,
}

/// One forwarder's per-server traffic, indexed by global server id. Like
/// [`WorkerCounters`] each block has one writer (its forwarder), so the
/// per-packet cost is two relaxed load+store pairs (packets, bytes) on a
/// slot the worker already touches for nearly every packet of a busy
/// server; the control lcore sums the blocks on demand and never stalls a
/// worker. An id out of range (more servers than slots) is not counted.
#[derive(Debug)]
pub struct TrafficCounters {
    slots: Box<[TrafficSlot]>,
}

impl TrafficCounters {
    /// Room for server ids `0..slots`.
    pub fn new(slots: usize) -> TrafficCounters {
        TrafficCounters {
            slots: (0..slots).map(|_| TrafficSlot::default()).collect(),
        }
    }

    /// A new connection scheduled to server `id`.
    #[inline]
    pub fn count_conn(&self, id: u16) {
        if let Some(s) = self.slots.get(usize::from(id)) {
            WorkerCounters::add(&s.conns, 1);
        }
    }

    /// A packet of `bytes` forwarded from a client to server `id`.
    #[inline]
    pub fn count_in(&self, id: u16, bytes: u64) {
        if let Some(s) = self.slots.get(usize::from(id)) {
            WorkerCounters::add(&s.in_packets, 1);
            WorkerCounters::add(&s.in_bytes, bytes);
        }
    }

    /// A reply of `bytes` from server `id` translated back to its client.
    #[inline]
    pub fn count_out(&self, id: u16, bytes: u64) {
        if let Some(s) = self.slots.get(usize::from(id)) {
            WorkerCounters::add(&s.out_packets, 1);
            WorkerCounters::add(&s.out_bytes, bytes);
        }
    }

    /// Server `id`'s counters in this block.
    pub fn get(&self, id: u16) -> Traffic {
        let Some(s) = self.slots.get(usize::from(id)) else {
            return Traffic::default();
        };
        Traffic {
            conns: s.conns.load(Relaxed),
            in_packets: s.in_packets.load(Relaxed),
            in_bytes: s.in_bytes.load(Relaxed),
            out_packets: s.out_packets.load(Relaxed),
            out_bytes: s.out_bytes.load(Relaxed),
        }
    }

    /// Server `id`'s counters summed over `blocks` (one per forwarder).
    pub fn sum(blocks: &[std::sync::Arc<TrafficCounters>], id: u16) -> Traffic {
        blocks
            .iter()
            .fold(Traffic::default(), |acc, b| acc.plus(b.get(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn traffic_is_counted_per_server_and_summed_over_blocks() {
        let a = Arc::new(TrafficCounters::new(4));
        let b = Arc::new(TrafficCounters::new(4));
        a.count_conn(1);
        a.count_in(1, 60);
        b.count_in(1, 40);
        b.count_out(1, 1500);
        a.count_in(2, 7);
        a.count_in(9, 1); // beyond the slots: ignored
        let t = TrafficCounters::sum(&[a.clone(), b], 1);
        assert_eq!(
            t,
            Traffic {
                conns: 1,
                in_packets: 2,
                in_bytes: 100,
                out_packets: 1,
                out_bytes: 1500,
            }
        );
        assert_eq!(a.get(9), Traffic::default());
        assert_eq!(t.since(a.get(1)).in_bytes, 40);
    }
}
