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
