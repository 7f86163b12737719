//! Which way the replies of a client run went: back through pylon (NAT), or
//! from the real servers straight to the client (DSR, tunnel).
//!
//! Each HTTP request of `client.py` is one TCP connection. The client sends
//! at least 4 packets on it (SYN, the ACK of the SYN-ACK, the request, its
//! FIN) and the server at least 3 (SYN-ACK, the response, its FIN). The
//! counters around a run tell where those went: pylon's own (`forward_packets`,
//! `reply_packets`, its ports' `ipackets`) and the kernel's interface
//! counters of the client and the real servers.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::pylon::{port_counter, worker_counter, Forwarding, PylonProcess};
use crate::topology::{Topology, CLIENT_IF, SERVER_IF, TUN_IF};
use anyhow::{ensure, Result};

/// Least packets the client sends on one connection.
const CLIENT_PACKETS_PER_CONN: u64 = 4;
/// Least packets the real server sends on one connection.
const SERVER_PACKETS_PER_CONN: u64 = 3;
/// How long the last packets of a run may take to show in every counter.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);

/// The counters read at one moment.
#[derive(Debug, Clone, Copy)]
struct Counters {
    forward_packets: u64,
    reply_packets: u64,
    port_ipackets: u64,
    client_sent: u64,
    client_received: u64,
    servers_sent: u64,
    decapsulated: Option<u64>,
}

impl Counters {
    fn read(topo: &Topology, pylon: &mut PylonProcess) -> Result<Counters> {
        let stats = &pylon.stats()?;
        let mut port_ipackets = 0;
        for port in topo.network().ports {
            port_ipackets += port_counter(stats, port.name, "ipackets")?;
        }
        let decapsulated = match topo.network().forwarding {
            Forwarding::Tunnel => Some(topo.servers_counter(TUN_IF, "rx_packets")?),
            Forwarding::Nat | Forwarding::Dsr => None,
        };
        Ok(Counters {
            forward_packets: worker_counter(stats, "forward_packets")?,
            reply_packets: worker_counter(stats, "reply_packets")?,
            port_ipackets,
            client_sent: topo.iface_counter(topo.client_ns(), CLIENT_IF, "tx_packets")?,
            client_received: topo.iface_counter(topo.client_ns(), CLIENT_IF, "rx_packets")?,
            servers_sent: topo.servers_counter(SERVER_IF, "tx_packets")?,
            decapsulated,
        })
    }
}

/// The counters of one client run: how many packets went each way, and who
/// saw them. Everything but `reply_packets` counts only the run.
#[derive(Debug, Clone)]
pub struct ReplyPath {
    /// The forwarding mode of the topology.
    pub forwarding: Forwarding,
    /// HTTP requests (TCP connections) the run made.
    pub requests: u64,
    /// Client->service packets pylon handled (`forward_packets`).
    pub forward_packets: u64,
    /// Server->client packets pylon translated since it started
    /// (`reply_packets`, summed over workers).
    pub reply_packets: u64,
    /// Frames pylon's ports received (DPDK `ipackets`, all ports).
    pub port_ipackets: u64,
    /// Frames the client's interface sent.
    pub client_sent: u64,
    /// Frames the client's interface received.
    pub client_received: u64,
    /// Frames the real servers' interfaces sent.
    pub servers_sent: u64,
    /// Packets the tunnel real servers' decapsulators delivered (the
    /// `rx_packets` of their TUN devices); tunnel mode only.
    pub decapsulated: Option<u64>,
}

impl ReplyPath {
    /// Reads the counters, runs `run` (a client run of `requests`
    /// requests), waits until the counters settle, and returns `run`'s
    /// result with the counters of the run. In tunnel mode the counters have
    /// settled when the servers decapsulated as many packets as pylon
    /// forwarded (up to a few seconds; a difference that remains is left to
    /// [`ReplyPath::check_direct`]).
    pub fn measure<T>(
        topo: &Topology,
        pylon: &mut PylonProcess,
        requests: u64,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<(T, ReplyPath)> {
        let before = Counters::read(topo, pylon)?;
        let result = run()?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let after = loop {
            let after = Counters::read(topo, pylon)?;
            let settled = match (after.decapsulated, before.decapsulated) {
                (Some(now), Some(then)) => {
                    now - then == after.forward_packets - before.forward_packets
                }
                _ => true,
            };
            if settled || Instant::now() >= deadline {
                break after;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let path = ReplyPath {
            forwarding: topo.network().forwarding,
            requests,
            forward_packets: after.forward_packets - before.forward_packets,
            reply_packets: after.reply_packets,
            port_ipackets: after.port_ipackets - before.port_ipackets,
            client_sent: after.client_sent - before.client_sent,
            client_received: after.client_received - before.client_received,
            servers_sent: after.servers_sent - before.servers_sent,
            decapsulated: after
                .decapsulated
                .zip(before.decapsulated)
                .map(|(a, b)| a - b),
        };
        Ok((result, path))
    }

    /// The most frames pylon's port may receive in a run whose replies
    /// bypass it: what the client sent (everything the client sends to the
    /// VIP goes to pylon's MAC; the client's other frames only loosen the
    /// bound) plus an allowance of one frame per ten requests for the
    /// broadcast ARP requests of the client and the servers and the answers
    /// to pylon's own ARP requests (a handful per run). Replies through
    /// pylon would add at least [`SERVER_PACKETS_PER_CONN`] frames per
    /// request, thirty times the allowance.
    pub fn direct_bound(&self) -> u64 {
        self.client_sent + (self.requests / 10).max(10)
    }

    /// Fails unless the replies of the run went from the real servers
    /// straight to the client: pylon translated no reply, its port received
    /// no more than [`ReplyPath::direct_bound`], and yet the servers sent,
    /// and the client received, at least 3 packets per request; pylon saw
    /// at least 4 client packets per request; and in tunnel mode the servers
    /// decapsulated exactly the packets pylon forwarded.
    pub fn check_direct(&self) -> Result<()> {
        let report = self.report();
        ensure!(
            self.reply_packets == 0,
            "pylon translated {} reply packets in {} mode:\n{report}",
            self.reply_packets,
            self.forwarding
        );
        ensure!(
            self.forward_packets >= CLIENT_PACKETS_PER_CONN * self.requests,
            "pylon forwarded only {} client packets for {} connections:\n{report}",
            self.forward_packets,
            self.requests
        );
        let replies = SERVER_PACKETS_PER_CONN * self.requests;
        ensure!(
            self.servers_sent >= replies && self.client_received >= replies,
            "the servers sent {} and the client received {} frames, expected at least \
             {replies} replies:\n{report}",
            self.servers_sent,
            self.client_received
        );
        ensure!(
            self.port_ipackets <= self.direct_bound(),
            "pylon's port received {} frames, more than the client sent plus the ARP \
             allowance ({}): replies went through pylon:\n{report}",
            self.port_ipackets,
            self.direct_bound()
        );
        if let Some(decapsulated) = self.decapsulated {
            ensure!(
                decapsulated == self.forward_packets,
                "the tunnel real servers decapsulated {decapsulated} packets, pylon forwarded \
                 {}:\n{report}",
                self.forward_packets
            );
        }
        Ok(())
    }

    /// The counters, one per line.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} requests; client sent {} frames, received {}; real servers sent {}",
            self.requests, self.client_sent, self.client_received, self.servers_sent
        );
        let _ = writeln!(
            out,
            "pylon: forward_packets {}, reply_packets {}, port ipackets {} \
             (bound for direct replies {})",
            self.forward_packets,
            self.reply_packets,
            self.port_ipackets,
            self.direct_bound()
        );
        if let Some(decapsulated) = self.decapsulated {
            let _ = writeln!(
                out,
                "real servers decapsulated {decapsulated} IP-in-IP packets"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counters of the 1,200-request DSR run of `e2e_dsr`.
    fn dsr_run() -> ReplyPath {
        ReplyPath {
            forwarding: Forwarding::Dsr,
            requests: 1200,
            forward_packets: 6458,
            reply_packets: 0,
            port_ipackets: 6462,
            client_sent: 6462,
            client_received: 6385,
            servers_sent: 6384,
            decapsulated: None,
        }
    }

    #[test]
    fn direct_replies_pass() {
        dsr_run().check_direct().unwrap();
        ReplyPath {
            forwarding: Forwarding::Tunnel,
            decapsulated: Some(6458),
            ..dsr_run()
        }
        .check_direct()
        .unwrap();
    }

    #[test]
    fn replies_through_pylon_fail() {
        // The counters of a NAT run (600 requests, `pylon-demo --mode nat`).
        let nat = ReplyPath {
            forwarding: Forwarding::Nat,
            requests: 600,
            forward_packets: 3087,
            reply_packets: 3066,
            port_ipackets: 6154,
            client_sent: 3088,
            client_received: 3067,
            servers_sent: 3066,
            decapsulated: None,
        };
        let err = nat.check_direct().unwrap_err().to_string();
        assert!(err.contains("translated 3066 reply packets"), "{err}");
        // Even with a daemon that does not count them: the port saw them.
        let uncounted = ReplyPath {
            reply_packets: 0,
            ..nat
        };
        let err = uncounted.check_direct().unwrap_err().to_string();
        assert!(err.contains("received 6154 frames"), "{err}");
    }

    #[test]
    fn missing_replies_and_lost_tunnel_packets_fail() {
        let no_replies = ReplyPath {
            servers_sent: 100,
            ..dsr_run()
        };
        assert!(no_replies.check_direct().is_err());
        let too_few_forwarded = ReplyPath {
            forward_packets: 4000,
            ..dsr_run()
        };
        assert!(too_few_forwarded.check_direct().is_err());
        let lost = ReplyPath {
            forwarding: Forwarding::Tunnel,
            decapsulated: Some(6457),
            ..dsr_run()
        };
        let err = lost.check_direct().unwrap_err().to_string();
        assert!(err.contains("decapsulated 6457"), "{err}");
    }
}
