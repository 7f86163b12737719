//! Connection states, the IPVS TCP state machine and idle timeouts.
//!
//! The transition tables are IPVS's default `tcp_states`
//! (net/netfilter/ipvs/ip_vs_proto_tcp.c, current mainline), so
//! connections move through the same states, time out after the same idle
//! periods and count as active or inactive the same way as under ipvsadm.
//! Only the columns of states Pylon can be in are kept: LISTEN (FTP helper
//! only) and SYNACK (reached only through the `secure_tcp` defence table)
//! never occur.

use std::fmt;

/// State of a tracked connection: IPVS's TCP states plus `Udp`.
///
/// The discriminants are IPVS's `IP_VS_TCP_S_*` numbers (0 is NONE, the
/// state of a connection before its first packet) so the tables below read
/// column for column like the kernel's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Both sides have exchanged data or completed the handshake.
    Established = 1,
    /// A SYN was seen from the server side first (a connection opened
    /// towards the client); rare behind a load balancer.
    SynSent = 2,
    /// A client SYN was seen: where every scheduled TCP connection starts
    /// (IPVS NONE --client SYN--> SYN_RECV); see [`initial_state`].
    SynRecv = 3,
    /// The server closed first (its FIN seen).
    FinWait = 4,
    /// Both sides sent FIN.
    TimeWait = 5,
    /// Reset (or a segment without SYN/FIN/ACK/RST).
    Close = 6,
    /// The client closed first (its FIN seen).
    CloseWait = 7,
    /// IPVS's LAST_ACK. No transition of the IPVS table leads into it (it
    /// only ever leaves it); kept so that the state set, names and timeouts
    /// match ipvsadm's, e.g. for connections synchronised from a peer.
    LastAck = 8,
    /// A UDP flow: no state machine, one idle timeout.
    Udp = 16,
}

impl State {
    /// The ipvsadm / IPVS name of the state (`ESTABLISHED`, `SYN_RECV`, ...).
    pub fn name(self) -> &'static str {
        match self {
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait => "FIN_WAIT",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Udp => "UDP",
        }
    }

    pub(crate) fn from_u8(b: u8) -> Option<State> {
        Some(match b {
            1 => State::Established,
            2 => State::SynSent,
            3 => State::SynRecv,
            4 => State::FinWait,
            5 => State::TimeWait,
            6 => State::Close,
            7 => State::CloseWait,
            8 => State::LastAck,
            16 => State::Udp,
            _ => return None,
        })
    }
}

/// The state byte of the wire or the table, as [`State::from_u8`] reads
/// it; the unknown byte is returned as the error.
impl TryFrom<u8> for State {
    type Error = u8;

    fn try_from(b: u8) -> Result<State, u8> {
        State::from_u8(b).ok_or(b)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a connection in `state` counts towards its server's active
/// connections (IPVS ActiveConn) rather than the inactive ones (InActConn).
///
/// As in mainline IPVS's `tcp_state_active_table` (since Linux 4.7,
/// "ipvs: count pre-established TCP states as active"): ESTABLISHED and the
/// handshake states are active, so that lc/wlc see a burst of new
/// connections immediately instead of piling it onto one server. Closing
/// states and UDP flows are inactive (IPVS binds UDP connections inactive
/// and never changes them).
pub fn is_active(state: State) -> bool {
    matches!(state, State::Established | State::SynSent | State::SynRecv)
}

/// Which way a TCP segment travels, relative to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client -> server (IPVS `IP_VS_DIR_INPUT`).
    Original,
    /// Server -> client through Pylon, as with NAT (IPVS `IP_VS_DIR_OUTPUT`).
    Reply,
    /// Client -> server on a connection whose replies bypass Pylon (direct
    /// routing, tunnelling): IPVS uses its INPUT_ONLY table for these
    /// (`IP_VS_CONN_F_NOOUTPUT`), which closes on the client's FIN alone.
    OriginalOnly,
}

/// The TCP flags the state machine looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    /// From the flags byte of a TCP header (FIN 0x01, SYN 0x02, RST 0x04,
    /// ACK 0x10; the others are ignored).
    pub fn from_bits(bits: u8) -> TcpFlags {
        TcpFlags {
            fin: bits & 0x01 != 0,
            syn: bits & 0x02 != 0,
            rst: bits & 0x04 != 0,
            ack: bits & 0x10 != 0,
        }
    }

    /// `tcp_state_idx()`: RST wins over SYN over FIN over ACK; a segment
    /// with none of them has no row (IPVS then moves the connection to
    /// CLOSE).
    fn row(self) -> Option<usize> {
        if self.rst {
            Some(3)
        } else if self.syn {
            Some(0)
        } else if self.fin {
            Some(1)
        } else if self.ack {
            Some(2)
        } else {
            None
        }
    }
}

use State::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, SynRecv as SR,
    SynSent as SS, TimeWait as TW,
};

/// IPVS `tcp_states[]`: `[direction][syn, fin, ack, rst][from state]`,
/// columns NONE, ES, SS, SR, FW, TW, CL, CW, LA (IPVS numbering 0..=8).
#[rustfmt::skip]
const TCP_STATES: [[[State; 9]; 4]; 3] = [
    // INPUT
    //   sNO sES sSS sSR sFW sTW sCL sCW sLA
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR], // syn
        [CL, CW, SS, TW, TW, TW, CL, CW, LA], // fin
        [ES, ES, SS, ES, FW, TW, CL, CW, CL], // ack
        [CL, CL, CL, SR, CL, CL, CL, CL, LA], // rst
    ],
    // OUTPUT
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS], // syn
        [TW, FW, SS, TW, FW, TW, CL, TW, LA], // fin
        [ES, ES, SS, ES, FW, TW, CL, CW, LA], // ack
        [CL, CL, SS, CL, CL, TW, CL, CL, CL], // rst
    ],
    // INPUT-ONLY
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR], // syn
        [CL, FW, SS, TW, FW, TW, CL, CW, LA], // fin
        [ES, ES, SS, ES, FW, TW, CL, CW, CL], // ack
        [CL, CL, CL, SR, CL, CL, CL, CL, LA], // rst
    ],
];

/// `set_tcp_state()` on a state column (0 = NONE).
fn lookup(column: usize, dir: Dir, flags: TcpFlags) -> State {
    let table = match dir {
        Dir::Original => &TCP_STATES[0],
        Dir::Reply => &TCP_STATES[1],
        Dir::OriginalOnly => &TCP_STATES[2],
    };
    flags.row().map_or(State::Close, |row| table[row][column])
}

/// The state of a new TCP connection after its first segment (IPVS creates
/// the connection in NONE and applies the segment right away). A client
/// SYN gives [`State::SynRecv`], which is what a scheduled connection
/// should be inserted with.
pub fn initial_state(dir: Dir, flags: TcpFlags) -> State {
    lookup(0, dir, flags)
}

/// The state after a segment with `flags` travelling `dir` on a connection
/// in `state` (IPVS `set_tcp_state()`). `Udp` stays `Udp`.
pub fn next_state(state: State, dir: Dir, flags: TcpFlags) -> State {
    match state {
        State::Udp => State::Udp,
        tcp => lookup(usize::from(tcp as u8), dir, flags),
    }
}

/// Idle timeouts per state, in milliseconds: a connection expires once it
/// has seen no packet for longer than the timeout of its current state.
///
/// Defaults are IPVS's (`tcp_timeouts[]` in ip_vs_proto_tcp.c,
/// `udp_timeouts[]` in ip_vs_proto_udp.c), except that IPVS gives SYN_SENT
/// 120 s and SYN_RECV 60 s where one `tcp_syn` covers both here.
/// Timeouts of 2^31 ms (24.8 days) or more never fire: idle times are
/// measured with wrapping u32 ticks and capped below 2^31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    pub tcp_established: u32,
    /// SYN_SENT and SYN_RECV.
    pub tcp_syn: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp: u32,
}

impl Timeouts {
    /// The timeout that applies to a connection in `state`.
    pub fn for_state(&self, state: State) -> u32 {
        match state {
            State::Established => self.tcp_established,
            State::SynSent | State::SynRecv => self.tcp_syn,
            State::FinWait => self.tcp_fin_wait,
            State::CloseWait => self.tcp_close_wait,
            State::LastAck => self.tcp_last_ack,
            State::TimeWait => self.tcp_time_wait,
            State::Close => self.tcp_close,
            State::Udp => self.udp,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        const S: u32 = 1000;
        Timeouts {
            tcp_established: 900 * S,
            tcp_syn: 60 * S,
            tcp_fin_wait: 120 * S,
            tcp_close_wait: 60 * S,
            tcp_last_ack: 30 * S,
            tcp_time_wait: 120 * S,
            tcp_close: 10 * S,
            udp: 300 * S,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    pub(crate) const SYN_ACK: TcpFlags = TcpFlags {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    pub(crate) const ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    pub(crate) const FIN_ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };
    pub(crate) const RST: TcpFlags = TcpFlags {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
    };
    const RST_ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: true,
    };
    const NONE: TcpFlags = TcpFlags {
        syn: false,
        ack: false,
        fin: false,
        rst: false,
    };

    use Dir::{Original as IN, OriginalOnly as IN_ONLY, Reply as OUT};

    /// Applies segments in order from `start`, checking the state after each.
    fn run(start: State, steps: &[(Dir, TcpFlags, State)]) {
        let mut s = start;
        for (i, &(dir, flags, want)) in steps.iter().enumerate() {
            s = next_state(s, dir, flags);
            assert_eq!(s, want, "step {i}: {dir:?} {flags:?}");
        }
    }

    #[test]
    fn client_syn_starts_in_syn_recv() {
        assert_eq!(initial_state(IN, SYN), SR);
        assert_eq!(initial_state(IN_ONLY, SYN), SR);
        assert_eq!(initial_state(OUT, SYN), SS);
        assert_eq!(initial_state(IN, ACK), ES);
        assert_eq!(initial_state(IN, RST), CL);
        assert_eq!(initial_state(IN, NONE), CL);
    }

    #[test]
    fn nat_lifecycle_client_closes_first() {
        run(
            initial_state(IN, SYN),
            &[
                (OUT, SYN_ACK, SR),
                (IN, ACK, ES),
                (IN, ACK, ES),
                (OUT, ACK, ES),
                (IN, FIN_ACK, CW),
                (OUT, ACK, CW),
                (OUT, FIN_ACK, TW),
                (IN, ACK, TW),
            ],
        );
    }

    #[test]
    fn nat_lifecycle_server_closes_first() {
        run(
            SR,
            &[
                (OUT, SYN_ACK, SR),
                (IN, ACK, ES),
                (OUT, FIN_ACK, FW),
                (IN, ACK, FW),
                (IN, FIN_ACK, TW),
                (OUT, ACK, TW),
            ],
        );
    }

    #[test]
    fn direct_routing_lifecycle_sees_only_the_client() {
        run(
            SR,
            &[
                (IN_ONLY, ACK, ES),
                (IN_ONLY, FIN_ACK, FW),
                (IN_ONLY, ACK, FW),
            ],
        );
    }

    #[test]
    fn resets() {
        run(ES, &[(IN, RST, CL)]);
        run(ES, &[(OUT, RST_ACK, CL)]);
        run(CW, &[(OUT, RST, CL)]);
        // IPVS quirks kept: a client RST during the handshake or in
        // LAST_ACK keeps the state, a server RST in TIME_WAIT too.
        run(SR, &[(IN, RST, SR)]);
        run(LA, &[(IN, RST, LA)]);
        run(TW, &[(OUT, RST, TW)]);
        // RST wins over every other flag.
        let all = TcpFlags {
            syn: true,
            ack: true,
            fin: true,
            rst: true,
        };
        assert_eq!(next_state(ES, IN, all), CL);
    }

    #[test]
    fn new_syn_on_closed_connection_reopens_it() {
        run(TW, &[(IN, SYN, SR), (OUT, SYN_ACK, SR), (IN, ACK, ES)]);
        run(CL, &[(IN, SYN, SR)]);
    }

    #[test]
    fn segment_without_flags_closes_as_in_ipvs() {
        assert_eq!(next_state(ES, IN, NONE), CL);
        assert_eq!(next_state(ES, OUT, NONE), CL);
    }

    #[test]
    fn udp_has_no_state_machine() {
        for f in [SYN, ACK, FIN_ACK, RST, NONE] {
            for d in [IN, OUT, IN_ONLY] {
                assert_eq!(next_state(State::Udp, d, f), State::Udp);
            }
        }
        assert!(!is_active(State::Udp));
    }

    #[test]
    fn active_states_follow_mainline_ipvs() {
        let active = [ES, SS, SR];
        for s in [ES, SS, SR, FW, TW, CL, CW, LA, State::Udp] {
            assert_eq!(is_active(s), active.contains(&s), "{s}");
        }
    }

    #[test]
    fn flags_from_header_bits() {
        assert_eq!(TcpFlags::from_bits(0x12), SYN_ACK);
        assert_eq!(TcpFlags::from_bits(0x11), FIN_ACK);
        assert_eq!(TcpFlags::from_bits(0x04), RST);
        assert_eq!(TcpFlags::from_bits(0x08 | 0x20 | 0x40 | 0x80), NONE);
    }

    #[test]
    fn names_and_codes() {
        for s in [ES, SS, SR, FW, TW, CL, CW, LA, State::Udp] {
            assert_eq!(State::from_u8(s as u8), Some(s));
        }
        assert_eq!(State::from_u8(0), None);
        assert_eq!(State::from_u8(0xFF), None);
        assert_eq!(SR.to_string(), "SYN_RECV");
        assert_eq!(CW.name(), "CLOSE_WAIT");
        assert_eq!(State::Udp.name(), "UDP");
    }

    #[test]
    fn timeouts_default_to_ipvs_values() {
        let t = Timeouts::default();
        assert_eq!(t.for_state(ES), 900_000);
        assert_eq!(t.for_state(SS), 60_000);
        assert_eq!(t.for_state(SR), 60_000);
        assert_eq!(t.for_state(FW), 120_000);
        assert_eq!(t.for_state(CW), 60_000);
        assert_eq!(t.for_state(LA), 30_000);
        assert_eq!(t.for_state(TW), 120_000);
        assert_eq!(t.for_state(CL), 10_000);
        assert_eq!(t.for_state(State::Udp), 300_000);
    }

    fn any_state() -> impl Strategy<Value = State> {
        prop::sample::select(vec![ES, SS, SR, FW, TW, CL, CW, LA, State::Udp])
    }

    fn any_dir() -> impl Strategy<Value = Dir> {
        prop::sample::select(vec![IN, OUT, IN_ONLY])
    }

    proptest! {
        #[test]
        fn transitions_are_total(state in any_state(), dir in any_dir(), bits in any::<u8>()) {
            let flags = TcpFlags::from_bits(bits);
            let next = next_state(state, dir, flags);
            // TCP stays TCP, UDP stays UDP, and the result round-trips
            // through the byte stored in the table.
            prop_assert_eq!(next == State::Udp, state == State::Udp);
            prop_assert_eq!(State::from_u8(next as u8), Some(next));
            let first = initial_state(dir, flags);
            prop_assert!(first != State::Udp);
        }
    }
}
