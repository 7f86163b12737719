//! One virtual router (VRID) on one port: the RFC 5798 §6 state machine
//! (RFC 3768 §6 for version 2), sans-IO.
//!
//! Time is a plain `u64` of milliseconds from any monotonic origin, passed
//! in by the caller; the instance keeps no clock. Inputs are
//! [`Instance::startup`], [`Instance::shutdown`], [`Instance::receive`] (or
//! [`Instance::on_advert`] for an advert already validated),
//! [`Instance::on_timer`] and [`Instance::set_tracking`]; outputs are the
//! [`Action`]s that [`Instance::poll_action`] hands out, and the next
//! deadline from [`Instance::poll_timeout`].
//!
//! RFC 9568 renamed the Master state "Active"; this crate keeps the RFC 5798
//! and keepalived word MASTER.

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;

use crate::rx;
use crate::wire::{self, Advert, EmitError, Envelope, Reject, Version};

/// Priority of the address owner (RFC 5798 §5.2.4).
pub const PRIORITY_OWNER: u8 = 255;
/// Priority of a master that stops: the backups take over after Skew_Time
/// (RFC 5798 §5.2.4).
pub const PRIORITY_RESIGN: u8 = 0;

/// Milliseconds per centisecond.
const MS_PER_CS: u64 = 10;

/// Skew_Time in milliseconds, truncated: RFC 5798 §6.1 for version 3,
/// `((256 - Priority) * Master_Adver_Interval) / 256` centiseconds; RFC 3768
/// §6.1 for version 2, `(256 - Priority) / 256` seconds whatever the
/// interval.
pub fn skew_time(version: Version, priority: u8, master_adver_int_cs: u16) -> u64 {
    let weight = 256 - u64::from(priority);
    match version {
        Version::V3 => weight * u64::from(master_adver_int_cs) * MS_PER_CS / 256,
        Version::V2 => weight * 1000 / 256,
    }
}

/// Master_Down_Interval in milliseconds: `(3 * Master_Adver_Interval) +
/// Skew_Time` (RFC 5798 §6.1; RFC 3768 §6.1 with the configured interval).
pub fn master_down_interval(version: Version, priority: u8, master_adver_int_cs: u16) -> u64 {
    3 * u64::from(master_adver_int_cs) * MS_PER_CS
        + skew_time(version, priority, master_adver_int_cs)
}

/// What an [`Instance`] runs with; [`crate::config::Vrrp::instance_config`]
/// builds it from the configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Virtual Rtr ID, 1..=255.
    pub vrid: u8,
    /// Protocol version.
    pub version: Version,
    /// Configured priority, 1..=255 (255 = address owner).
    pub priority: u8,
    /// Advertisement_Interval in centiseconds (version 3: 1..=4095;
    /// version 2: whole seconds, 100..=25500).
    pub adver_int: u16,
    /// Preempt_Mode (RFC 5798 §6.1): take over from a lower-priority master.
    pub preempt: bool,
    /// keepalived's preempt_delay in milliseconds: no preemption until this
    /// long after startup (or leaving FAULT) and after the last
    /// advertisement from a higher-priority master.
    pub preempt_delay: u64,
    /// The virtual addresses.
    pub vips: Vec<Ipv4Addr>,
    /// The primary address of the port: source of adverts, and the local
    /// side of the equal-priority tie-break (RFC 5798 §6.4.3).
    pub primary: Ipv4Addr,
    /// Unicast peers; empty = multicast to 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// Whether a VRRPv3 checksum covers the IPv4 pseudo-header (RFC 5798
    /// §5.2.8), sent and checked; false for peers that omit it.
    pub checksum_pseudo_header: bool,
    /// Gratuitous ARPs per VIP on becoming master (garp_master_repeat).
    pub garp_repeat: u32,
    /// Milliseconds after becoming master before a second burst of
    /// `garp_repeat` (garp_master_delay); 0 = none.
    pub garp_delay: u64,
    /// Milliseconds between refresh bursts while master
    /// (garp_master_refresh); 0 = none.
    pub garp_refresh: u64,
    /// Gratuitous ARPs per VIP in a refresh burst
    /// (garp_master_refresh_repeat).
    pub garp_refresh_repeat: u32,
}

/// An [`InstanceConfig`] that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidConfig {
    /// The offending key, named as in the configuration file.
    pub key: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl InstanceConfig {
    /// Checks the rules that keep the protocol well-defined: VRID 1..=255,
    /// priority 1..=255, an interval the version can send, 1..=255 VIPs.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let invalid = |key, problem: String| Err(InvalidConfig { key, problem });
        if self.vrid == 0 {
            return invalid("vrid", "0 is out of range 1..=255".to_owned());
        }
        if self.priority == PRIORITY_RESIGN {
            return invalid("priority", "0 is out of range 1..=255".to_owned());
        }
        match self.version {
            Version::V3 if !(1..=wire::MAX_ADVER_INT_V3).contains(&self.adver_int) => {
                return invalid(
                    "advert_int",
                    format!(
                        "{} cs is out of range 0.01..=40.95 s for version 3",
                        self.adver_int
                    ),
                );
            }
            Version::V2
                if self.adver_int % 100 != 0
                    || !(100..=wire::MAX_ADVER_INT_V2).contains(&self.adver_int) =>
            {
                return invalid(
                    "advert_int",
                    format!(
                        "{} cs is not a whole number of seconds in 1..=255, as version 2 needs",
                        self.adver_int
                    ),
                );
            }
            _ => {}
        }
        if self.vips.is_empty() || self.vips.len() > 255 {
            return invalid(
                "vips",
                format!("{} addresses, expected 1..=255", self.vips.len()),
            );
        }
        Ok(())
    }
}

/// The state of an instance (RFC 5798 §6.4, plus keepalived's FAULT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or shut down (RFC 5798 §6.4.1).
    Initialize,
    /// Monitoring the master (RFC 5798 §6.4.2).
    Backup,
    /// Forwarding for the VIPs (RFC 5798 §6.4.3).
    Master,
    /// A tracked port or service failed: silent, owns nothing (keepalived).
    Fault,
}

impl State {
    /// keepalived's name: `INIT`, `BACKUP`, `MASTER` or `FAULT`.
    pub fn name(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an instance changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Started as a backup (RFC 5798 §6.4.1).
    Startup,
    /// Started, or left FAULT, as the address owner (priority 255): master
    /// at once (RFC 5798 §6.4.1).
    AddressOwner,
    /// No advertisement for Master_Down_Interval (RFC 5798 §6.4.2).
    MasterDown,
    /// The master resigned with priority 0 and Skew_Time passed (RFC 5798
    /// §6.4.2).
    MasterResigned,
    /// Preempt_Mode: the master advertised a lower priority than ours, so
    /// its advertisements were discarded until Master_Down_Timer fired
    /// (RFC 5798 §6.4.2).
    Preempted {
        /// The lower-priority master.
        master: Ipv4Addr,
        /// Its priority.
        priority: u8,
    },
    /// A master received a higher priority, or an equal priority from a
    /// higher primary address (RFC 5798 §6.4.3).
    HigherPriority {
        /// The new master.
        master: Ipv4Addr,
        /// Its priority.
        priority: u8,
    },
    /// A tracked port or service failed.
    Fault,
    /// Every tracked fault cleared.
    FaultCleared,
    /// Shutdown event (RFC 5798 §6.4.2, §6.4.3).
    Shutdown,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Startup => f.write_str("startup"),
            Reason::AddressOwner => f.write_str("address owner (priority 255)"),
            Reason::MasterDown => f.write_str("no advertisement for Master_Down_Interval"),
            Reason::MasterResigned => f.write_str("master sent priority 0"),
            Reason::Preempted { master, priority } => {
                write!(
                    f,
                    "preempted lower-priority master {master} (priority {priority})"
                )
            }
            Reason::HigherPriority { master, priority } => {
                write!(f, "higher-priority master {master} (priority {priority})")
            }
            Reason::Fault => f.write_str("tracked port or service down"),
            Reason::FaultCleared => f.write_str("tracked ports and services up"),
            Reason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// What the caller must do, in the order handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The state changed. Entering MASTER: answer ARP for the VIPs with the
    /// virtual MAC, accept frames to the virtual MAC, forward VIP traffic,
    /// run notify_master. Leaving it: stop all of that. Entering BACKUP or
    /// FAULT: run notify_backup / notify_fault.
    StateChange {
        /// The previous state.
        from: State,
        /// The new state.
        to: State,
        /// Why.
        reason: Reason,
    },
    /// Send an advertisement with `priority` to every destination
    /// ([`Instance::destinations`]), built by [`Instance::write_advert`].
    SendAdvert {
        /// The priority to advertise; 0 = resigning.
        priority: u8,
    },
    /// Send `count` gratuitous ARPs for each VIP ([`Instance::write_garp`]).
    SendGarp {
        /// Gratuitous ARPs per VIP.
        count: u32,
    },
}

/// Tracked ports and services, summed by the caller
/// ([`crate::config::Vrrp::tracking`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tracking {
    /// Added to the configured priority; the result is clamped to 1..=254.
    /// The address owner (255) ignores it, as keepalived does.
    pub priority_delta: i32,
    /// Some tracked item is down with weight 0: FAULT.
    pub fault: bool,
}

/// The master a backup last accepted an advertisement from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterInfo {
    /// Its primary address.
    pub address: Ipv4Addr,
    /// Its advertised priority.
    pub priority: u8,
    /// Its advertisement interval, centiseconds.
    pub adver_int: u16,
}

/// A snapshot for the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Current state.
    pub state: State,
    /// Why it was entered, and when (caller's milliseconds); `None` before
    /// startup.
    pub since: Option<(u64, Reason)>,
    /// Priority in use (configured plus tracking).
    pub priority: u8,
    /// The master heard from, in BACKUP.
    pub master: Option<MasterInfo>,
    /// Master_Adver_Interval in centiseconds.
    pub master_adver_int: u16,
}

/// Counters, named after keepalived's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    /// Advertisements that passed every check.
    pub adverts_received: u64,
    /// Advertisement frames built.
    pub adverts_sent: u64,
    /// Valid advertisements with priority 0.
    pub priority_zero_received: u64,
    /// Priority 0 frames built.
    pub priority_zero_sent: u64,
    /// Transitions to MASTER.
    pub became_master: u64,
    /// Transitions out of MASTER.
    pub released_master: u64,
    /// Rejected packets by [`Reject::index`].
    pub rejected: [u64; Reject::COUNT],
}

/// Why the Master_Down_Timer of a backup is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownCause {
    Silence,
    Resigned,
    Preempting { master: Ipv4Addr, priority: u8 },
}

/// One VRRP instance.
#[derive(Debug, Clone)]
pub struct Instance {
    config: InstanceConfig,
    destinations: Vec<Ipv4Addr>,
    state: State,
    since: Option<(u64, Reason)>,
    priority: u8,
    tracking: Tracking,
    master_adver_int: u16,
    master: Option<MasterInfo>,
    down_cause: DownCause,
    adver_timer: Option<u64>,
    master_down_timer: Option<u64>,
    garp_timer: Option<u64>,
    garp_refresh_timer: Option<u64>,
    preempt_at: u64,
    ip_id: u16,
    actions: VecDeque<Action>,
    stats: Stats,
}

impl Instance {
    /// A new instance in Initialize, after checking `config`.
    pub fn new(config: InstanceConfig) -> Result<Instance, InvalidConfig> {
        config.validate()?;
        let destinations = if config.unicast_peers.is_empty() {
            vec![wire::MULTICAST_GROUP]
        } else {
            config.unicast_peers.clone()
        };
        Ok(Instance {
            destinations,
            state: State::Initialize,
            since: None,
            priority: config.priority,
            tracking: Tracking::default(),
            master_adver_int: config.adver_int,
            master: None,
            down_cause: DownCause::Silence,
            adver_timer: None,
            master_down_timer: None,
            garp_timer: None,
            garp_refresh_timer: None,
            preempt_at: 0,
            ip_id: 0,
            actions: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &InstanceConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the instance is MASTER.
    pub fn is_master(&self) -> bool {
        self.state == State::Master
    }

    /// Whether this box answers ARP for the VIPs, accepts frames to the
    /// virtual MAC and forwards VIP traffic: only as MASTER (RFC 5798
    /// §6.4.2, §6.4.3).
    pub fn owns_vips(&self) -> bool {
        self.is_master()
    }

    /// The priority in use: configured plus tracking, in 1..=254, or 255
    /// for the address owner.
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The virtual MAC, source of adverts and GARPs (RFC 5798 §7.3).
    pub fn virtual_mac(&self) -> [u8; 6] {
        wire::virtual_mac(self.config.vrid)
    }

    /// Master_Adver_Interval in centiseconds: ours, or the one learned from
    /// the master in BACKUP (RFC 5798 §6.4.2).
    pub fn master_adver_int(&self) -> u16 {
        self.master_adver_int
    }

    /// Skew_Time in milliseconds for the current priority and
    /// Master_Adver_Interval (RFC 5798 §6.1).
    pub fn skew_time(&self) -> u64 {
        skew_time(self.config.version, self.priority, self.master_adver_int)
    }

    /// Master_Down_Interval in milliseconds (RFC 5798 §6.1).
    pub fn master_down_interval(&self) -> u64 {
        master_down_interval(self.config.version, self.priority, self.master_adver_int)
    }

    /// Where advertisements go: 224.0.0.18, or each unicast peer.
    pub fn destinations(&self) -> &[Ipv4Addr] {
        &self.destinations
    }

    /// A snapshot for the CLI.
    pub fn status(&self) -> Status {
        Status {
            state: self.state,
            since: self.since,
            priority: self.priority,
            master: self.master,
            master_adver_int: self.master_adver_int,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The earliest deadline at which [`Instance::on_timer`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.adver_timer,
            self.master_down_timer,
            self.garp_timer,
            self.garp_refresh_timer,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next action, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Startup event (RFC 5798 §6.4.1): the address owner becomes MASTER at
    /// once, any other router BACKUP with Master_Down_Timer set to
    /// Master_Down_Interval; FAULT instead while tracking reports a fault.
    /// Ignored unless in Initialize.
    pub fn startup(&mut self, now: u64) {
        if self.state != State::Initialize {
            return;
        }
        if self.tracking.fault {
            self.enter_fault(now);
        } else {
            self.start(now, Reason::Startup);
        }
    }

    /// Shutdown event (RFC 5798 §6.4.2, §6.4.3): a master sends an
    /// advertisement with priority 0; every state goes to Initialize.
    pub fn shutdown(&mut self, now: u64) {
        match self.state {
            State::Initialize => return,
            State::Master => {
                self.transition(now, State::Initialize, Reason::Shutdown);
                self.actions.push_back(Action::SendAdvert {
                    priority: PRIORITY_RESIGN,
                });
            }
            State::Backup | State::Fault => {
                self.transition(now, State::Initialize, Reason::Shutdown)
            }
        }
        self.cancel_timers();
        self.master = None;
    }

    /// Validates `ip_packet` (an IPv4 packet, Ethernet header removed)
    /// against this instance's configuration ([`rx::check`]) and processes
    /// it ([`Instance::on_advert`]); a rejection is counted in
    /// [`Stats::rejected`] and returned for the caller's log.
    pub fn receive(&mut self, now: u64, ip_packet: &[u8]) -> Result<(), Reject> {
        match rx::check(&self.config, ip_packet) {
            Ok(received) => {
                self.on_advert(now, &received.advert, received.src);
                Ok(())
            }
            Err(reject) => {
                self.stats.rejected[reject.index()] += 1;
                Err(reject)
            }
        }
    }

    /// An advertisement from `src` that passed the receive checks (RFC
    /// 5798 §6.4.2 in BACKUP, §6.4.3 in MASTER; ignored in Initialize and
    /// FAULT).
    pub fn on_advert(&mut self, now: u64, advert: &Advert, src: Ipv4Addr) {
        self.stats.adverts_received += 1;
        if advert.priority == PRIORITY_RESIGN {
            self.stats.priority_zero_received += 1;
        }
        match self.state {
            State::Backup => self.backup_advert(now, advert, src),
            State::Master => self.master_advert(now, advert, src),
            State::Initialize | State::Fault => {}
        }
    }

    /// Runs every timer due at `now`: in MASTER the Adver_Timer (send an
    /// advertisement, RFC 5798 §6.4.3) and the GARP bursts; in BACKUP the
    /// Master_Down_Timer (become MASTER, RFC 5798 §6.4.2).
    pub fn on_timer(&mut self, now: u64) {
        let due = |timer: Option<u64>| timer.is_some_and(|at| at <= now);
        match self.state {
            State::Master => {
                if due(self.adver_timer) {
                    self.send_advert(now, self.priority);
                }
                if due(self.garp_timer) {
                    self.garp_timer = None;
                    self.send_garp(self.config.garp_repeat);
                }
                if due(self.garp_refresh_timer) {
                    self.garp_refresh_timer = Some(now + self.config.garp_refresh);
                    self.send_garp(self.config.garp_refresh_repeat);
                }
            }
            State::Backup => {
                if due(self.master_down_timer) {
                    let reason = match self.down_cause {
                        DownCause::Silence => Reason::MasterDown,
                        DownCause::Resigned => Reason::MasterResigned,
                        DownCause::Preempting { master, priority } => {
                            Reason::Preempted { master, priority }
                        }
                    };
                    self.become_master(now, reason);
                }
            }
            State::Initialize | State::Fault => {}
        }
    }

    /// New tracking results. A fault sends MASTER or BACKUP to FAULT (a
    /// master first resigns with priority 0, as keepalived does); clearing
    /// every fault restarts the instance as at startup. A master whose
    /// priority changed advertises it at once.
    pub fn set_tracking(&mut self, now: u64, tracking: Tracking) {
        let old = self.priority;
        self.tracking = tracking;
        self.priority = if self.config.priority == PRIORITY_OWNER {
            PRIORITY_OWNER
        } else {
            let sum = i32::from(self.config.priority).saturating_add(tracking.priority_delta);
            // Clamped to 1..=254, which fits.
            sum.clamp(1, 254) as u8
        };
        match self.state {
            State::Initialize => {}
            State::Fault => {
                if !tracking.fault {
                    self.start(now, Reason::FaultCleared);
                }
            }
            State::Backup | State::Master => {
                if tracking.fault {
                    self.enter_fault(now);
                } else if self.state == State::Master && self.priority != old {
                    self.send_advert(now, self.priority);
                }
            }
        }
    }

    /// Writes the advertisement frame for destination `dst` (one of
    /// [`Instance::destinations`]) with `priority` to `buf`, Ethernet
    /// destination `dst_mac` ([`wire::MULTICAST_MAC`] for the group, the
    /// neighbor's MAC for a unicast peer); returns its length.
    pub fn write_advert(
        &mut self,
        priority: u8,
        dst: Ipv4Addr,
        dst_mac: [u8; 6],
        buf: &mut [u8],
    ) -> Result<usize, EmitError> {
        let advert = Advert {
            version: self.config.version,
            vrid: self.config.vrid,
            priority,
            adver_int: self.config.adver_int,
            addresses: self.config.vips.clone(),
        };
        // keepalived skips IP ID 0, which the kernel would replace.
        self.ip_id = self.ip_id.wrapping_add(1).max(1);
        let envelope = Envelope {
            src: self.config.primary,
            dst,
            id: self.ip_id,
            pseudo_header: self.config.checksum_pseudo_header,
        };
        let len = wire::emit_frame(buf, &advert, &envelope, dst_mac)?;
        self.stats.adverts_sent += 1;
        if priority == PRIORITY_RESIGN {
            self.stats.priority_zero_sent += 1;
        }
        Ok(len)
    }

    /// Writes one gratuitous ARP for `vip` to `buf` ([`wire::emit_garp`]).
    pub fn write_garp(&self, vip: Ipv4Addr, buf: &mut [u8]) -> Result<usize, EmitError> {
        wire::emit_garp(buf, self.config.vrid, vip)
    }

    /// RFC 5798 §6.4.1, also used when FAULT clears.
    fn start(&mut self, now: u64, reason: Reason) {
        self.preempt_at = now + self.config.preempt_delay;
        if self.config.priority == PRIORITY_OWNER {
            self.become_master(now, Reason::AddressOwner);
        } else {
            self.master_adver_int = self.config.adver_int;
            self.master = None;
            self.become_backup(now, reason);
        }
    }

    /// RFC 5798 §6.4.2, "If an ADVERTISEMENT is received".
    fn backup_advert(&mut self, now: u64, advert: &Advert, src: Ipv4Addr) {
        if advert.priority == PRIORITY_RESIGN {
            self.master_down_timer = Some(now + self.skew_time());
            self.down_cause = DownCause::Resigned;
        } else if !self.config.preempt || advert.priority >= self.priority || now < self.preempt_at
        {
            if self.config.version == Version::V3 {
                self.master_adver_int = advert.adver_int;
            }
            self.master = Some(MasterInfo {
                address: src,
                priority: advert.priority,
                adver_int: advert.adver_int,
            });
            self.down_cause = DownCause::Silence;
            self.master_down_timer = Some(now + self.master_down_interval());
            if advert.priority > self.priority {
                // keepalived: the preempt delay restarts while a
                // higher-priority master is heard.
                self.preempt_at = self.preempt_at.max(now + self.config.preempt_delay);
            }
        } else {
            // Preempt_Mode and a lower priority: discard, and let the
            // Master_Down_Timer run out.
            self.down_cause = DownCause::Preempting {
                master: src,
                priority: advert.priority,
            };
        }
    }

    /// RFC 5798 §6.4.3, "If an ADVERTISEMENT is received".
    fn master_advert(&mut self, now: u64, advert: &Advert, src: Ipv4Addr) {
        if advert.priority == PRIORITY_RESIGN {
            self.send_advert(now, self.priority);
        } else if advert.priority > self.priority
            || (advert.priority == self.priority && u32::from(src) > u32::from(self.config.primary))
        {
            self.master_adver_int = match self.config.version {
                Version::V3 => advert.adver_int,
                Version::V2 => self.config.adver_int,
            };
            self.master = Some(MasterInfo {
                address: src,
                priority: advert.priority,
                adver_int: advert.adver_int,
            });
            self.become_backup(
                now,
                Reason::HigherPriority {
                    master: src,
                    priority: advert.priority,
                },
            );
        } else {
            // Another master with a lower priority: the RFC discards the
            // advertisement; keepalived also asserts itself at once with an
            // advertisement and gratuitous ARPs, which ends a split brain
            // within one round trip instead of Master_Down_Interval.
            self.send_advert(now, self.priority);
            self.send_garp(self.config.garp_repeat);
        }
    }

    fn become_master(&mut self, now: u64, reason: Reason) {
        self.transition(now, State::Master, reason);
        self.stats.became_master += 1;
        self.master = None;
        self.master_down_timer = None;
        self.master_adver_int = self.config.adver_int;
        self.send_advert(now, self.priority);
        self.send_garp(self.config.garp_repeat);
        self.garp_timer = (self.config.garp_delay > 0).then(|| now + self.config.garp_delay);
        self.garp_refresh_timer =
            (self.config.garp_refresh > 0).then(|| now + self.config.garp_refresh);
    }

    fn become_backup(&mut self, now: u64, reason: Reason) {
        self.transition(now, State::Backup, reason);
        self.cancel_timers();
        self.down_cause = DownCause::Silence;
        self.master_down_timer = Some(now + self.master_down_interval());
    }

    fn enter_fault(&mut self, now: u64) {
        let was_master = self.state == State::Master;
        self.transition(now, State::Fault, Reason::Fault);
        if was_master {
            self.actions.push_back(Action::SendAdvert {
                priority: PRIORITY_RESIGN,
            });
        }
        self.cancel_timers();
        self.master = None;
    }

    fn transition(&mut self, now: u64, to: State, reason: Reason) {
        if self.state == State::Master && to != State::Master {
            self.stats.released_master += 1;
        }
        self.actions.push_back(Action::StateChange {
            from: self.state,
            to,
            reason,
        });
        self.state = to;
        self.since = Some((now, reason));
    }

    /// Queues an advertisement and resets the Adver_Timer to
    /// Advertisement_Interval (RFC 5798 §6.4.3).
    fn send_advert(&mut self, now: u64, priority: u8) {
        self.actions.push_back(Action::SendAdvert { priority });
        self.adver_timer = Some(now + u64::from(self.config.adver_int) * MS_PER_CS);
    }

    fn send_garp(&mut self, count: u32) {
        if count > 0 {
            self.actions.push_back(Action::SendGarp { count });
        }
    }

    fn cancel_timers(&mut self) {
        self.adver_timer = None;
        self.master_down_timer = None;
        self.garp_timer = None;
        self.garp_refresh_timer = None;
    }
}
