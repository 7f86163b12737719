//! The flow space: which client address, port and protocol flow number `f`
//! is, and the scattered order in which the generator visits flows.

/// First client address, 172.16.0.0: clients sit behind the router
/// [`ROUTER_IP`](super::frames::ROUTER_IP), as on the Internet side of a
/// load balancer.
pub const CLIENT_BASE: u32 = 0xac10_0000;
/// First client port; flows use every port from here to 65535.
pub const FIRST_PORT: u16 = 1024;
/// Flows per client address.
pub const PORTS_PER_IP: u32 = 65536 - FIRST_PORT as u32;
/// Most flows the generator numbers: 172.16.0.0/12 holds 2^20 addresses,
/// far more than any scenario needs.
pub const MAX_FLOWS: u32 = 64 * 1024 * 1024;

/// The transport of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => pylon_wire::frame::PROTO_TCP,
            Proto::Udp => pylon_wire::frame::PROTO_UDP,
        }
    }
}

/// One flow in eight is UDP, the rest TCP.
pub fn proto(flow: u32) -> Proto {
    if flow % 8 == 7 {
        Proto::Udp
    } else {
        Proto::Tcp
    }
}

/// The client address and port of a flow.
pub fn client(flow: u32) -> (u32, u16) {
    (
        CLIENT_BASE + flow / PORTS_PER_IP,
        FIRST_PORT + (flow % PORTS_PER_IP) as u16,
    )
}

/// The flow of a client address and port, if it is one of ours.
pub fn flow_of(ip: u32, port: u16) -> Option<u32> {
    let host = ip.checked_sub(CLIENT_BASE)?;
    let port = port.checked_sub(FIRST_PORT)?;
    let flow = u64::from(host) * u64::from(PORTS_PER_IP) + u64::from(port);
    u32::try_from(flow).ok().filter(|&f| f < MAX_FLOWS)
}

/// Visits `0..n` once each per round, in the order `i * step mod n`.
///
/// The setup passes open flows in order ([`Stride::sequential`]), so that
/// flow `f` gets the table's `f`-th entry (entries come off the free list
/// in order); the measured phase then visits them [`Stride::scattered`],
/// with `step` about 0.618 n: consecutive packets are for flows far apart,
/// so the connection table sees the scattered accesses of real clients,
/// whose connections send in an order unrelated to the one they opened
/// in, rather than a walk the hardware prefetcher would hide.
#[derive(Clone, Debug)]
pub struct Stride {
    n: u32,
    step: u32,
    pos: u32,
}

impl Stride {
    /// `0, 1, 2, ...`; `n` may be 0 (then [`Stride::next_flow`] gives 0).
    pub fn sequential(n: u32) -> Stride {
        Stride { n, step: 1, pos: 0 }
    }

    /// [`Stride::scattered`] from its `skip`-th flow on.
    pub fn scattered_from(n: u32, skip: u32) -> Stride {
        let mut order = Stride::scattered(n);
        if n > 0 {
            order.pos = ((u64::from(skip) * u64::from(order.step)) % u64::from(n)) as u32;
        }
        order
    }

    /// The scattered order over `0..n`; `n` may be 0.
    pub fn scattered(n: u32) -> Stride {
        let mut step = ((u64::from(n) * 618) / 1000).max(1) as u32;
        while n > 1 && gcd(step, n) != 1 {
            step += 1;
        }
        Stride { n, step, pos: 0 }
    }

    /// The next flow; after `n` calls the order repeats.
    pub fn next_flow(&mut self) -> u32 {
        let flow = self.pos;
        if self.n > 0 {
            self.pos = ((u64::from(self.pos) + u64::from(self.step)) % u64::from(self.n)) as u32;
        }
        flow
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stride_visits_every_flow_once_per_round() {
        for n in [1, 2, 3, 8, 1000, 4096, 99_991] {
            let mut order = Stride::scattered(n);
            let mut seen = vec![false; n as usize];
            for _ in 0..n {
                let f = order.next_flow() as usize;
                assert!(!seen[f], "n={n}: flow {f} twice");
                seen[f] = true;
            }
            assert_eq!(order.next_flow(), 0, "n={n}: the next round starts over");
        }
        let mut from = Stride::scattered_from(1000, 10);
        let mut order = Stride::scattered(1000);
        let tenth = (0..11).map(|_| order.next_flow()).last();
        assert_eq!(Some(from.next_flow()), tenth);
        let mut order = Stride::sequential(3);
        let seen: Vec<u32> = (0..4).map(|_| order.next_flow()).collect();
        assert_eq!(seen, [0, 1, 2, 0]);
    }

    #[test]
    fn flow_numbers_round_trip() {
        for f in [
            0,
            1,
            PORTS_PER_IP - 1,
            PORTS_PER_IP,
            10_000_000,
            MAX_FLOWS - 1,
        ] {
            let (ip, port) = client(f);
            assert_eq!(flow_of(ip, port), Some(f));
        }
        assert_eq!(flow_of(CLIENT_BASE - 1, 2000), None);
        assert_eq!(flow_of(CLIENT_BASE, 80), None);
        assert_eq!(proto(7), Proto::Udp);
        assert_eq!(proto(8), Proto::Tcp);
    }
}
