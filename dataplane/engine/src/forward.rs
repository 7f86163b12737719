//! The per-packet decision: parse, classify, track, rewrite, pick the
//! output port and MACs. Pure: it works on a byte slice, so it is tested
//! with exact frames in and out, without DPDK.

use crate::counters::{DropReason, TrafficCounters};
use crate::events::{EventKind, EventQueue, EventSink};
use crate::neighbor::NeighborMap;
use crate::shared::Shared;
use crate::snapshot::{Mode, Service, Snapshot};
use pylon_conntrack::{initial_state, is_active, ConnInfo, ConnRef, Dir, State, TcpFlags};
use pylon_sched::{Candidate, Scheduler};
use pylon_wire::frame::{tcp_flags, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use pylon_wire::rewrite::{decrement_ttl, set_endpoint, tcp_reset_reply, End};
use pylon_wire::{ethernet, ipip};
use pylon_wire::{parse, Frame, Ipv4Summary, ParseError};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What to do with a frame after [`Forwarder::process`] has rewritten it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Client->service packet: transmit on this port index.
    Forward(usize),
    /// NAT reply translated for the client: transmit on this port index.
    Reply(usize),
    /// No real server could take the new TCP connection: the SYN was
    /// rewritten into a RST for the client; transmit on this port index.
    Refused(usize),
    /// The packet did not fit the tunnel and was rewritten into an ICMP
    /// fragmentation-needed for its sender: transmit on this port index.
    TooBig(usize),
    /// Hand to the control lcore (ARP, ICMP for us, other local traffic).
    Control,
    Drop(DropReason),
}

/// ICMP types that quote an offending datagram (RFC 792): destination
/// unreachable, time exceeded, parameter problem.
pub fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 11 | 12)
}

/// A received frame the forwarder may rewrite, grow at the front (tunnel
/// encapsulation) or shorten. Implemented by DPDK mbufs and, for tests,
/// by `Vec<u8>`.
pub trait FrameBuf {
    fn frame(&mut self) -> &mut [u8];
    /// Grows the frame by `n` bytes at the front; false without headroom.
    fn prepend(&mut self, n: usize) -> bool;
    /// Shortens the frame to `len` bytes (drops Ethernet padding).
    fn truncate(&mut self, len: usize);
}

impl FrameBuf for Vec<u8> {
    fn frame(&mut self) -> &mut [u8] {
        self
    }

    fn prepend(&mut self, n: usize) -> bool {
        self.splice(0..0, std::iter::repeat_n(0, n));
        true
    }

    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len);
    }
}

/// Packets of a burst [`Forwarder::prefetch`] looks ahead for (a DPDK
/// burst holds at most this many).
const PREFETCH_MAX: usize = 64;
/// Below this many connections the table's lines (40 bytes each with the
/// index) fit the L2 and L3 caches well enough that prefetching them costs
/// more instructions than it saves misses.
const PREFETCH_MIN_CONNS: u32 = 16_384;

/// One worker's forwarding state: shared tables plus worker-local
/// scheduler instances (rr/wrr positions need no atomics this way).
pub struct Forwarder {
    shared: Arc<Shared>,
    scheds: Vec<Scheduler>,
    generation: Option<u64>,
    /// IPv4 identification for outer tunnel headers.
    tunnel_id: u16,
    /// Where new connections and state changes are reported for the
    /// standby (`[sync]` configured), see [`crate::events`].
    events: Option<EventSink>,
    /// Per-server packets, bytes and connections of this forwarder only.
    traffic: Arc<TrafficCounters>,
}

impl Forwarder {
    pub fn new(shared: Arc<Shared>) -> Forwarder {
        let traffic = Arc::new(TrafficCounters::new(shared.servers.len()));
        Forwarder {
            traffic,
            shared,
            scheds: Vec::new(),
            generation: None,
            tunnel_id: 0,
            events: None,
        }
    }

    /// Reports connection creations and state changes to `queue` (the sync
    /// thread's), in batches; without it nothing is reported.
    pub fn with_events(mut self, queue: Arc<EventQueue>) -> Forwarder {
        self.events = Some(EventSink::new(queue));
        self
    }

    /// Hands the events gathered so far to the sync thread: once per poll
    /// round, so none waits longer than a round.
    pub fn flush_events(&mut self) {
        if let Some(sink) = &mut self.events {
            sink.flush();
        }
    }

    fn report(events: &mut Option<EventSink>, kind: EventKind, conn: &ConnInfo) {
        if let Some(sink) = events {
            sink.report(kind, conn);
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// This forwarder's per-server traffic counters, for the control side
    /// to sum.
    pub fn traffic(&self) -> &Arc<TrafficCounters> {
        &self.traffic
    }

    /// Rebuilds scheduler state after a new snapshot was published; called
    /// once per burst, allocates only when the generation changed.
    pub fn sync(&mut self, snap: &Snapshot) {
        if self.generation == Some(snap.generation) {
            return;
        }
        self.scheds = snap
            .services
            .iter()
            .map(|svc| {
                let servers = svc
                    .servers
                    .iter()
                    .map(|s| Candidate {
                        id: s.id,
                        weight: s.weight,
                    })
                    .collect();
                Scheduler::new(svc.scheduler, servers)
            })
            .collect();
        self.generation = Some(snap.generation);
    }

    /// Starts loading the connection-table lines the packets of an RX
    /// burst will look up (their index buckets, then the entries those
    /// point at), so that [`Forwarder::process`] finds them in cache: one
    /// packet at a time, each lookup beyond the caches costs two dependent
    /// misses; a burst's worth of them overlap this way. A table this small
    /// stays in cache and is not worth the extra work.
    pub fn prefetch<'a>(&self, snap: &Snapshot, frames: impl Iterator<Item = &'a [u8]>) {
        let conns = &self.shared.conns;
        if conns.len() < PREFETCH_MIN_CONNS {
            return;
        }
        let mut hashes = [0u64; PREFETCH_MAX];
        let mut n = 0;
        for frame in frames.take(PREFETCH_MAX) {
            let Some((src, dst, proto, sport, dport)) = pylon_wire::frame::peek_flow(frame) else {
                continue;
            };
            // Client -> VIP packets are keyed by their source, replies by
            // their destination: the client side either way.
            let (ip, port) = if snap.service(dst, dport, proto).is_some() {
                (src, sport)
            } else {
                (dst, dport)
            };
            hashes[n] = conns.prefetch_bucket(ip, port, proto);
            n += 1;
        }
        for &h in &hashes[..n] {
            conns.prefetch_entries(h);
        }
    }

    /// Decides the fate of one frame, rewriting it in place when forwarded.
    pub fn process<B: FrameBuf>(
        &mut self,
        snap: &Snapshot,
        neigh: &NeighborMap,
        now: u32,
        buf: &mut B,
        in_port: usize,
    ) -> Verdict {
        let frame = buf.frame();
        // Frames for other hosts are dropped before any parsing effort.
        let Some(dst_mac) = ethernet::dst(frame) else {
            return Verdict::Drop(DropReason::BadHeader);
        };
        match snap.ports.get(in_port) {
            Some(p) if p.accepts(dst_mac) => {}
            _ => return Verdict::Drop(DropReason::OtherHost),
        }
        let mut s = match parse(frame) {
            Ok(Frame::Ipv4(s)) => s,
            Ok(Frame::Arp { .. }) => return Verdict::Control,
            Ok(Frame::Other { .. }) => return Verdict::Drop(DropReason::NotIpv4),
            Err(e) => return Verdict::Drop(parse_drop(e)),
        };
        if s.proto != PROTO_TCP && s.proto != PROTO_UDP {
            return classify_other(snap, &s);
        }
        if s.proto == PROTO_TCP && !tcp_flags_sane(s.tcp_flags) {
            return Verdict::Drop(DropReason::BadTcpFlags);
        }
        if let Some((idx, svc)) = snap.service(s.dst, s.dport, s.proto) {
            if !svc.active {
                return Verdict::Drop(DropReason::VrrpBackup);
            }
            if s.ttl <= 1 {
                return Verdict::Drop(DropReason::TtlExpired);
            }
            let conn = match self.track_original(idx, svc, &s, now) {
                Ok(conn) => conn,
                // Refused at once rather than left to time out (UDP has no
                // such answer and is only dropped).
                Err(DropReason::NoRealServer) if s.proto == PROTO_TCP => {
                    let len = reset_reply(frame, &s, snap.ports[in_port].mac);
                    buf.truncate(len);
                    return Verdict::Refused(in_port);
                }
                Err(reason) => return Verdict::Drop(reason),
            };
            let bytes = u64::from(s.total_len);
            let verdict = match svc.mode {
                Mode::Nat => {
                    set_endpoint(frame, &mut s, End::Destination, conn.rip, conn.rport);
                    route_out(&self.shared, snap, neigh, frame, &mut s, conn.rip)
                }
                Mode::Dsr => self.direct(snap, neigh, frame, conn.rip),
                Mode::Tunnel => self.tunnel(snap, neigh, buf, &mut s, conn.rip, in_port),
            };
            if let Verdict::Forward(_) = verdict {
                self.traffic.count_in(conn.server, bytes);
            }
            return verdict;
        }
        let conns = &self.shared.conns;
        if let Some((r, conn)) = conns.lookup_reply(s.dst, s.dport, s.proto, s.src, s.sport) {
            if s.ttl <= 1 {
                return Verdict::Drop(DropReason::TtlExpired);
            }
            self.on_packet(r, &conn, Dir::Reply, &s, now);
            set_endpoint(frame, &mut s, End::Source, conn.vip, conn.vport);
            let client = conn.client_ip;
            let bytes = u64::from(s.total_len);
            return match route_out(&self.shared, snap, neigh, frame, &mut s, client) {
                Verdict::Forward(port) => {
                    self.traffic.count_out(conn.server, bytes);
                    Verdict::Reply(port)
                }
                other => other,
            };
        }
        if snap.is_local(s.dst) {
            return Verdict::Control;
        }
        Verdict::Drop(DropReason::NotForService)
    }

    /// Direct routing: the packet goes unchanged to the real server's MAC
    /// (IPVS `-g`); the server holds the VIP and answers the client itself.
    /// As a bridge-like L2 step it leaves the TTL alone, as IPVS does.
    fn direct(&self, snap: &Snapshot, neigh: &NeighborMap, frame: &mut [u8], rip: u32) -> Verdict {
        let Some((out, next_hop)) = snap.route(rip) else {
            return Verdict::Drop(DropReason::NoNeighbor);
        };
        let Some(&mac) = neigh.get(&next_hop) else {
            self.shared.neighbors.request(next_hop);
            return Verdict::Drop(DropReason::NoNeighbor);
        };
        ethernet::set_macs(frame, mac, snap.ports[out].mac);
        Verdict::Forward(out)
    }

    /// IP-in-IP to the real server (IPVS `-i`, RFC 2003). A packet that no
    /// longer fits the output port's MTU is answered with ICMP
    /// fragmentation-needed when it has DF set (RFC 1191), and dropped
    /// otherwise: Pylon does not fragment (modern stacks send DF).
    fn tunnel<B: FrameBuf>(
        &mut self,
        snap: &Snapshot,
        neigh: &NeighborMap,
        buf: &mut B,
        s: &mut Ipv4Summary,
        rip: u32,
        in_port: usize,
    ) -> Verdict {
        let Some((out, next_hop)) = snap.route(rip) else {
            return Verdict::Drop(DropReason::NoNeighbor);
        };
        let port = &snap.ports[out];
        let mtu = usize::from(port.mtu);
        if usize::from(s.total_len) + ipip::OUTER_LEN > mtu {
            let frame = buf.frame();
            if !ipip::dont_fragment(frame, s) {
                return Verdict::Drop(DropReason::TooBig);
            }
            let next_hop_mtu = (mtu - ipip::OUTER_LEN) as u16;
            let Some(len) = ipip::frag_needed(frame, s, s.dst, next_hop_mtu) else {
                return Verdict::Drop(DropReason::TooBig);
            };
            let sender = ethernet::src(frame).unwrap_or(ethernet::BROADCAST);
            ethernet::set_macs(frame, sender, snap.ports[in_port].mac);
            buf.truncate(len);
            return Verdict::TooBig(in_port);
        }
        let Some(&mac) = neigh.get(&next_hop) else {
            self.shared.neighbors.request(next_hop);
            return Verdict::Drop(DropReason::NoNeighbor);
        };
        // Forwarding through a tunnel is a hop (RFC 2003 §3.1).
        decrement_ttl(buf.frame(), s);
        if !buf.prepend(ipip::OUTER_LEN) {
            return Verdict::Drop(DropReason::NoHeadroom);
        }
        self.tunnel_id = self.tunnel_id.wrapping_add(1);
        let frame = buf.frame();
        let len = ipip::encapsulate(frame, s, port.addr, rip, self.tunnel_id);
        ethernet::set_macs(frame, mac, port.mac);
        buf.truncate(len);
        Verdict::Forward(out)
    }

    /// Finds or creates the connection of a client->VIP packet.
    fn track_original(
        &mut self,
        idx: usize,
        svc: &Service,
        s: &Ipv4Summary,
        now: u32,
    ) -> Result<ConnInfo, DropReason> {
        let conns = &self.shared.conns;
        let pure_syn =
            s.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN;
        if let Some((r, conn)) = conns.lookup_forward(s.src, s.sport, s.proto, s.dst, s.dport) {
            // A new SYN on a closing entry is a new connection reusing the
            // client port (IPVS conn_reuse_mode): schedule it afresh.
            let reusable = matches!(conn.state, State::TimeWait | State::Close);
            if !(s.proto == PROTO_TCP && pure_syn && reusable) {
                self.on_packet(r, &conn, svc.mode.original_dir(), s, now);
                return Ok(conn);
            }
            let servers = &self.shared.servers;
            conns.expire(r, |gone| release(servers, gone));
            Self::report(&mut self.events, EventKind::Expire, &conn);
        }
        // Only a pure SYN opens a TCP connection (IPVS does the same).
        if s.proto == PROTO_TCP && !pure_syn {
            return Err(DropReason::NoConnection);
        }
        // Every server down or quiesced: the sorry server, if any, takes it.
        let server = match self.scheds[idx].pick(&self.shared.servers) {
            Some(i) => &svc.servers[i],
            None => svc.sorry.as_ref().ok_or(DropReason::NoRealServer)?,
        };
        let info = ConnInfo {
            client_ip: s.src,
            client_port: s.sport,
            vip: s.dst,
            vport: s.dport,
            rip: server.addr,
            rport: server.port,
            proto: s.proto,
            state: if s.proto == PROTO_TCP {
                initial_state(svc.mode.original_dir(), TcpFlags::from_bits(s.tcp_flags))
            } else {
                State::Udp
            },
            service: idx as u16,
            server: server.id,
        };
        conns
            .insert(&info, now)
            .map_err(|_| DropReason::TableFull)?;
        Self::report(&mut self.events, EventKind::New, &info);
        self.traffic.count_conn(server.id);
        let stats = &self.shared.servers[usize::from(server.id)];
        let counter = if is_active(info.state) {
            &stats.active
        } else {
            &stats.inactive
        };
        counter.fetch_add(1, Relaxed);
        Ok(info)
    }

    /// Advances TCP state (keeping the server's active/inactive counts
    /// right) or refreshes a UDP entry.
    fn on_packet(&mut self, r: ConnRef, conn: &ConnInfo, dir: Dir, s: &Ipv4Summary, now: u32) {
        let conns = &self.shared.conns;
        if s.proto != PROTO_TCP {
            conns.touch(r, now);
            return;
        }
        if let Some((old, new)) = conns.on_tcp(r, dir, TcpFlags::from_bits(s.tcp_flags), now) {
            Self::report(
                &mut self.events,
                EventKind::State,
                &ConnInfo {
                    state: new,
                    ..*conn
                },
            );
            if is_active(old) != is_active(new) {
                let stats = &self.shared.servers[usize::from(conn.server)];
                let (from, to) = if is_active(new) {
                    (&stats.inactive, &stats.active)
                } else {
                    (&stats.active, &stats.inactive)
                };
                from.fetch_sub(1, Relaxed);
                to.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Decrements the TTL, picks the output port and next hop for `dst`, and
/// writes the MACs. A missing neighbor is requested from the control lcore.
pub fn route_out(
    shared: &Shared,
    snap: &Snapshot,
    neigh: &NeighborMap,
    frame: &mut [u8],
    s: &mut Ipv4Summary,
    dst: u32,
) -> Verdict {
    decrement_ttl(frame, s);
    let Some((out, next_hop)) = snap.route(dst) else {
        return Verdict::Drop(DropReason::NoNeighbor);
    };
    let Some(&mac) = neigh.get(&next_hop) else {
        shared.neighbors.request(next_hop);
        return Verdict::Drop(DropReason::NoNeighbor);
    };
    ethernet::set_macs(frame, mac, snap.ports[out].mac);
    Verdict::Forward(out)
}

/// Turns a TCP segment into the RST refusing it, back out of its port.
fn reset_reply(frame: &mut [u8], s: &Ipv4Summary, port_mac: [u8; 6]) -> usize {
    let sender = ethernet::src(frame).unwrap_or(ethernet::BROADCAST);
    ethernet::set_macs(frame, sender, port_mac);
    tcp_reset_reply(frame, s)
}

/// Takes an expired connection off its server's counters.
pub fn release(servers: &[pylon_sched::ServerStats], conn: &ConnInfo) {
    if let Some(stats) = servers.get(usize::from(conn.server)) {
        let counter = if is_active(conn.state) {
            &stats.active
        } else {
            &stats.inactive
        };
        counter.fetch_sub(1, Relaxed);
    }
}

/// SYN together with FIN or RST is never legitimate (RFC 9293 §3.10.7);
/// neither is a segment with no flag at all (a scan).
fn tcp_flags_sane(flags: u8) -> bool {
    let syn = flags & tcp_flags::SYN != 0;
    let fin_or_rst = flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
    let any = flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN | tcp_flags::RST) != 0;
    any && !(syn && fin_or_rst)
}

fn parse_drop(e: ParseError) -> DropReason {
    match e {
        ParseError::Truncated | ParseError::BadIpHeader | ParseError::BadL4Header => {
            DropReason::BadHeader
        }
        ParseError::BadIpChecksum => DropReason::BadIpChecksum,
        ParseError::IpOptions => DropReason::IpOptions,
        ParseError::Fragment => DropReason::Fragment,
    }
}

/// VRRP (RFC 5798 §5.2.4), for the control lcore's instances.
const PROTO_VRRP: u8 = 112;

/// ICMP and other protocols: ours go to the control lcore, so do VRRP
/// advertisements (multicast or unicast) and ICMP errors
/// passing through go there too (it translates those that quote a tracked
/// connection), the rest is not ours to forward.
fn classify_other(snap: &Snapshot, s: &Ipv4Summary) -> Verdict {
    if snap.is_local(s.dst)
        || s.proto == PROTO_VRRP
        || (s.proto == PROTO_ICMP && is_icmp_error(s.icmp_type))
    {
        Verdict::Control
    } else {
        Verdict::Drop(DropReason::NotForService)
    }
}
