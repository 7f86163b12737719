//! The state machine against the rules of RFC 5798 §6 (RFC 3768 §6 for
//! version 2), one test per rule, on a fake clock: `now` is whatever the
//! test says it is.

use std::net::Ipv4Addr;

use pylon_vrrp::{
    master_down_interval, skew_time, Action, Advert, Instance, InstanceConfig, Reason, State,
    Tracking, Version,
};

const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// A peer with a higher primary address than ours.
const HIGH_PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
/// A peer with a lower primary address than ours.
const LOW_PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

fn config(priority: u8) -> InstanceConfig {
    InstanceConfig {
        vrid: 51,
        version: Version::V3,
        priority,
        adver_int: 100,
        preempt: true,
        preempt_delay: 0,
        vips: vec![VIP],
        primary: LOCAL,
        unicast_peers: Vec::new(),
        checksum_pseudo_header: true,
        garp_repeat: 5,
        garp_delay: 0,
        garp_refresh: 0,
        garp_refresh_repeat: 1,
    }
}

fn instance(config: InstanceConfig) -> Instance {
    Instance::new(config).expect("valid config")
}

fn advert(priority: u8, adver_int: u16) -> Advert {
    Advert {
        version: Version::V3,
        vrid: 51,
        priority,
        adver_int,
        addresses: vec![VIP],
    }
}

fn drain(instance: &mut Instance) -> Vec<Action> {
    std::iter::from_fn(|| instance.poll_action()).collect()
}

fn change(from: State, to: State, reason: Reason) -> Action {
    Action::StateChange { from, to, reason }
}

/// Starts a priority-100 instance as backup at t=0 and clears its actions.
fn backup(config: InstanceConfig) -> Instance {
    let mut vrrp = instance(config);
    vrrp.startup(0);
    assert_eq!(vrrp.state(), State::Backup);
    drain(&mut vrrp);
    vrrp
}

/// Runs every timer up to and including `until`, as a caller's loop would.
fn run_until(vrrp: &mut Instance, until: u64) -> Vec<Action> {
    let mut actions = Vec::new();
    while let Some(at) = vrrp.poll_timeout().filter(|&at| at <= until) {
        vrrp.on_timer(at);
        actions.extend(drain(vrrp));
    }
    actions
}

/// RFC 5798 §6.4.1: the address owner sends an advertisement, broadcasts
/// gratuitous ARPs and becomes master at once.
#[test]
fn owner_becomes_master_at_startup() {
    let mut vrrp = instance(config(255));
    vrrp.startup(1000);
    assert_eq!(
        drain(&mut vrrp),
        [
            change(State::Initialize, State::Master, Reason::AddressOwner),
            Action::SendAdvert { priority: 255 },
            Action::SendGarp { count: 5 },
        ]
    );
    assert!(vrrp.is_master() && vrrp.owns_vips());
    // Adver_Timer = Advertisement_Interval.
    assert_eq!(vrrp.poll_timeout(), Some(2000));
}

/// RFC 5798 §6.4.1 and §6.4.2: any other router starts as backup with
/// Master_Down_Timer = Master_Down_Interval and becomes master, with an
/// advertisement and gratuitous ARPs, when it fires.
#[test]
fn backup_becomes_master_after_master_down_interval() {
    let mut vrrp = instance(config(100));
    vrrp.startup(0);
    assert_eq!(
        drain(&mut vrrp),
        [change(State::Initialize, State::Backup, Reason::Startup)]
    );
    assert!(!vrrp.owns_vips());
    assert_eq!(vrrp.poll_timeout(), Some(3609));
    vrrp.on_timer(3608);
    assert!(drain(&mut vrrp).is_empty());
    vrrp.on_timer(3609);
    assert_eq!(
        drain(&mut vrrp),
        [
            change(State::Backup, State::Master, Reason::MasterDown),
            Action::SendAdvert { priority: 100 },
            Action::SendGarp { count: 5 },
        ]
    );
    assert_eq!(vrrp.poll_timeout(), Some(4609));
}

/// RFC 5798 §6.1: Skew_Time = ((256 - Priority) * Master_Adver_Interval) /
/// 256 and Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time, in
/// centiseconds, here in milliseconds truncated.
#[test]
fn skew_and_master_down_interval_are_exact() {
    // (priority, interval cs, skew ms, master down ms)
    let table = [
        (100, 100, 609, 3609), // 156 * 1000 / 256 = 609.375
        (200, 100, 218, 3218), // 56 * 1000 / 256 = 218.75
        (254, 100, 7, 3007),   // 2 * 1000 / 256 = 7.8125
        (100, 10, 60, 360),    // 156 * 100 / 256 = 60.9375
        (200, 10, 21, 321),    // 56 * 100 / 256 = 21.875
        (254, 10, 0, 300),     // 2 * 100 / 256 = 0.78125
        (1, 4095, 40790, 163640),
    ];
    for (priority, interval, skew, down) in table {
        assert_eq!(
            skew_time(Version::V3, priority, interval),
            skew,
            "skew {priority} {interval}"
        );
        assert_eq!(
            master_down_interval(Version::V3, priority, interval),
            down,
            "down {priority} {interval}"
        );
    }
    // RFC 3768 §6.1: (256 - Priority) / 256 seconds, whatever the interval.
    assert_eq!(skew_time(Version::V2, 100, 300), 609);
    assert_eq!(master_down_interval(Version::V2, 100, 300), 9609);
    let vrrp = instance(InstanceConfig {
        adver_int: 10,
        ..config(200)
    });
    assert_eq!((vrrp.skew_time(), vrrp.master_down_interval()), (21, 321));
}

/// RFC 5798 §6.4.2: an advertisement with a priority at least ours resets
/// Master_Down_Timer; the backup stays backup while they keep coming.
#[test]
fn backup_stays_backup_while_a_higher_priority_master_advertises() {
    let mut vrrp = backup(config(100));
    for t in (1000..=20_000).step_by(1000) {
        assert!(run_until(&mut vrrp, t - 1).is_empty());
        vrrp.on_advert(t, &advert(200, 100), HIGH_PEER);
        assert_eq!(vrrp.poll_timeout(), Some(t + 3609));
    }
    assert_eq!(vrrp.state(), State::Backup);
    let status = vrrp.status();
    assert_eq!(
        status.master.map(|m| (m.address, m.priority)),
        Some((HIGH_PEER, 200))
    );
    // Silence: master after Master_Down_Interval from the last one.
    assert_eq!(
        run_until(&mut vrrp, 23_609)[0],
        change(State::Backup, State::Master, Reason::MasterDown)
    );
}

/// RFC 5798 §6.4.2: with Preempt_Mode false, a lower-priority master's
/// advertisements are accepted and the backup never takes over.
#[test]
fn backup_without_preempt_accepts_a_lower_priority_master() {
    let mut vrrp = backup(InstanceConfig {
        preempt: false,
        ..config(100)
    });
    for t in (1000..=60_000).step_by(1000) {
        assert!(run_until(&mut vrrp, t - 1).is_empty());
        vrrp.on_advert(t, &advert(50, 100), LOW_PEER);
    }
    assert_eq!(vrrp.state(), State::Backup);
}

/// RFC 5798 §6.4.2: with Preempt_Mode true, a lower-priority advertisement
/// is discarded, so Master_Down_Timer runs out and the backup takes over.
#[test]
fn backup_with_preempt_takes_over_from_a_lower_priority_master() {
    let mut vrrp = backup(config(100));
    let mut t = 1000;
    while vrrp.state() == State::Backup {
        let actions = run_until(&mut vrrp, t - 1);
        if !actions.is_empty() {
            assert_eq!(
                actions[0],
                change(
                    State::Backup,
                    State::Master,
                    Reason::Preempted {
                        master: LOW_PEER,
                        priority: 50
                    }
                )
            );
            break;
        }
        vrrp.on_advert(t, &advert(50, 100), LOW_PEER);
        t += 1000;
    }
    // The discarded adverts never reset the timer set at startup.
    assert_eq!(vrrp.status().since.map(|(at, _)| at), Some(3609));
}

/// keepalived's preempt_delay: lower-priority adverts are accepted until
/// the delay after startup has passed, then preemption proceeds as usual.
#[test]
fn preempt_delay_postpones_takeover() {
    let mut vrrp = backup(InstanceConfig {
        preempt_delay: 10_000,
        ..config(100)
    });
    let mut t = 1000;
    while t <= 10_000 {
        assert!(run_until(&mut vrrp, t - 1).is_empty());
        vrrp.on_advert(t, &advert(50, 100), LOW_PEER);
        t += 1000;
    }
    // The advert at 9000 was accepted (before the delay), the one at 10000
    // discarded: master at 9000 + Master_Down_Interval.
    assert!(run_until(&mut vrrp, 12_608).is_empty());
    assert_eq!(vrrp.state(), State::Backup);
    let actions = run_until(&mut vrrp, 12_609);
    assert!(matches!(
        actions[0],
        Action::StateChange {
            to: State::Master,
            reason: Reason::Preempted { .. },
            ..
        }
    ));
}

/// keepalived: hearing a higher-priority master restarts the preempt delay,
/// so a master whose priority drops is not preempted at once.
#[test]
fn preempt_delay_restarts_while_a_higher_master_is_heard() {
    let mut vrrp = backup(InstanceConfig {
        preempt_delay: 10_000,
        ..config(100)
    });
    vrrp.on_advert(20_000, &advert(200, 100), HIGH_PEER);
    // Its priority drops below ours: accepted until 30000.
    vrrp.on_advert(21_000, &advert(50, 100), HIGH_PEER);
    vrrp.on_advert(29_000, &advert(50, 100), HIGH_PEER);
    assert_eq!(vrrp.poll_timeout(), Some(29_000 + 3609));
    vrrp.on_advert(30_000, &advert(50, 100), HIGH_PEER);
    assert_eq!(vrrp.poll_timeout(), Some(29_000 + 3609));
}

/// RFC 5798 §6.4.3: a master receiving a higher priority becomes backup,
/// with the sender's interval as Master_Adver_Interval.
#[test]
fn master_yields_to_a_higher_priority() {
    let mut vrrp = instance(config(100));
    vrrp.startup(0);
    run_until(&mut vrrp, 3609);
    assert!(vrrp.is_master());
    vrrp.on_advert(5000, &advert(200, 50), LOW_PEER);
    assert_eq!(
        drain(&mut vrrp),
        [change(
            State::Master,
            State::Backup,
            Reason::HigherPriority {
                master: LOW_PEER,
                priority: 200
            }
        )]
    );
    assert_eq!(vrrp.master_adver_int(), 50);
    // 3 * 500 + 156 * 500 / 256 = 1500 + 304.6875
    assert_eq!(vrrp.poll_timeout(), Some(5000 + 1804));
    assert_eq!(vrrp.stats().released_master, 1);
}

/// RFC 5798 §6.4.3: at equal priority the higher primary address wins; the
/// master with the higher address keeps the role (and, as keepalived does,
/// reasserts itself with an advertisement and gratuitous ARPs).
#[test]
fn equal_priority_is_broken_by_primary_address() {
    let mut vrrp = instance(config(100));
    vrrp.startup(0);
    run_until(&mut vrrp, 3609);
    vrrp.on_advert(4000, &advert(100, 100), LOW_PEER);
    assert_eq!(
        drain(&mut vrrp),
        [
            Action::SendAdvert { priority: 100 },
            Action::SendGarp { count: 5 }
        ]
    );
    assert!(vrrp.is_master());
    assert_eq!(vrrp.poll_timeout(), Some(5000));
    vrrp.on_advert(4500, &advert(100, 100), HIGH_PEER);
    assert_eq!(
        drain(&mut vrrp),
        [change(
            State::Master,
            State::Backup,
            Reason::HigherPriority {
                master: HIGH_PEER,
                priority: 100
            }
        )]
    );
}

/// RFC 5798 §6.4.2: priority 0 sets Master_Down_Timer to Skew_Time.
#[test]
fn backup_takes_over_skew_time_after_priority_zero() {
    let mut vrrp = backup(config(100));
    vrrp.on_advert(1000, &advert(200, 100), HIGH_PEER);
    vrrp.on_advert(2000, &advert(0, 100), HIGH_PEER);
    assert_eq!(vrrp.poll_timeout(), Some(2000 + 609));
    assert_eq!(
        run_until(&mut vrrp, 2609)[0],
        change(State::Backup, State::Master, Reason::MasterResigned)
    );
    assert_eq!(vrrp.stats().priority_zero_received, 1);
}

/// RFC 5798 §6.4.3: a master receiving priority 0 sends an advertisement and
/// resets the Adver_Timer.
#[test]
fn master_answers_priority_zero_with_an_advertisement() {
    let mut vrrp = instance(config(255));
    vrrp.startup(0);
    drain(&mut vrrp);
    vrrp.on_advert(400, &advert(0, 100), HIGH_PEER);
    assert_eq!(drain(&mut vrrp), [Action::SendAdvert { priority: 255 }]);
    assert_eq!(vrrp.poll_timeout(), Some(1400));
}

/// RFC 5798 §6.4.3: the Adver_Timer sends an advertisement every
/// Advertisement_Interval.
#[test]
fn master_advertises_every_interval() {
    let mut vrrp = instance(InstanceConfig {
        adver_int: 10,
        ..config(255)
    });
    vrrp.startup(0);
    drain(&mut vrrp);
    let actions = run_until(&mut vrrp, 1000);
    assert_eq!(actions, vec![Action::SendAdvert { priority: 255 }; 10]);
    assert_eq!(vrrp.poll_timeout(), Some(1100));
}

/// RFC 5798 §6.4.3 Shutdown: a master sends priority 0 and goes to
/// Initialize; a backup just stops.
#[test]
fn shutdown_sends_priority_zero_from_master_only() {
    let mut vrrp = instance(config(255));
    vrrp.startup(0);
    drain(&mut vrrp);
    vrrp.shutdown(500);
    assert_eq!(
        drain(&mut vrrp),
        [
            change(State::Master, State::Initialize, Reason::Shutdown),
            Action::SendAdvert { priority: 0 },
        ]
    );
    assert_eq!(vrrp.poll_timeout(), None);
    vrrp.shutdown(600);
    assert!(drain(&mut vrrp).is_empty());

    let mut vrrp = backup(config(100));
    vrrp.shutdown(500);
    assert_eq!(
        drain(&mut vrrp),
        [change(State::Backup, State::Initialize, Reason::Shutdown)]
    );
    assert_eq!(vrrp.poll_timeout(), None);
    // It can start again.
    vrrp.startup(1000);
    assert_eq!(vrrp.state(), State::Backup);
}

/// RFC 5798 §6.4.2: a backup learns Master_Adver_Interval from the master
/// and recomputes Master_Down_Interval with it.
#[test]
fn backup_learns_the_master_interval() {
    let mut vrrp = backup(config(100));
    vrrp.on_advert(1000, &advert(200, 10), HIGH_PEER);
    assert_eq!(vrrp.master_adver_int(), 10);
    assert_eq!(vrrp.master_down_interval(), 360);
    assert_eq!(vrrp.poll_timeout(), Some(1360));
    // It advertises its own interval once master.
    run_until(&mut vrrp, 1360);
    assert!(vrrp.is_master());
    assert_eq!(vrrp.master_adver_int(), 100);
    assert_eq!(vrrp.poll_timeout(), Some(2360));
}

/// RFC 3768 §6.4.2: version 2 has no interval to learn; Master_Down_Interval
/// comes from the configured interval.
#[test]
fn version_2_uses_the_configured_interval() {
    let mut vrrp = backup(InstanceConfig {
        version: Version::V2,
        ..config(100)
    });
    let v2 = Advert {
        version: Version::V2,
        adver_int: 100,
        ..advert(200, 100)
    };
    vrrp.on_advert(1000, &v2, HIGH_PEER);
    assert_eq!(vrrp.master_adver_int(), 100);
    assert_eq!(vrrp.poll_timeout(), Some(1000 + 3609));
}

/// keepalived's garp_master_delay and garp_master_refresh: a second burst
/// after the delay, then a refresh burst every period.
#[test]
fn gratuitous_arp_bursts() {
    let mut vrrp = instance(InstanceConfig {
        garp_delay: 5000,
        garp_refresh: 60_000,
        garp_refresh_repeat: 2,
        ..config(255)
    });
    vrrp.startup(0);
    drain(&mut vrrp);
    let garps = |actions: Vec<Action>| {
        actions
            .into_iter()
            .filter(|a| matches!(a, Action::SendGarp { .. }))
            .collect::<Vec<_>>()
    };
    assert!(garps(run_until(&mut vrrp, 4999)).is_empty());
    assert_eq!(
        garps(run_until(&mut vrrp, 5000)),
        [Action::SendGarp { count: 5 }]
    );
    assert!(garps(run_until(&mut vrrp, 59_999)).is_empty());
    assert_eq!(
        garps(run_until(&mut vrrp, 120_000)),
        [Action::SendGarp { count: 2 }, Action::SendGarp { count: 2 }]
    );
}

/// Tracking: a weight moves the priority, clamped to 1..=254; a master
/// advertises the new priority at once; the address owner keeps 255.
#[test]
fn tracking_moves_the_priority() {
    let mut vrrp = instance(config(100));
    vrrp.startup(0);
    run_until(&mut vrrp, 3609);
    let delta = |d| Tracking {
        priority_delta: d,
        fault: false,
    };
    vrrp.set_tracking(4000, delta(-50));
    assert_eq!(drain(&mut vrrp), [Action::SendAdvert { priority: 50 }]);
    assert_eq!(vrrp.poll_timeout(), Some(5000));
    vrrp.set_tracking(4100, delta(-50));
    assert!(drain(&mut vrrp).is_empty());
    vrrp.set_tracking(4200, delta(-500));
    assert_eq!(vrrp.priority(), 1);
    vrrp.set_tracking(4300, delta(500));
    assert_eq!(vrrp.priority(), 254);
    // A backup at priority 50 now yields to a master at 100.
    vrrp.set_tracking(4400, delta(-50));
    vrrp.on_advert(4500, &advert(100, 100), LOW_PEER);
    assert_eq!(vrrp.state(), State::Backup);

    let mut owner = instance(config(255));
    owner.set_tracking(0, delta(-100));
    assert_eq!(owner.priority(), 255);
}

/// Tracking with weight 0: FAULT. A master resigns with priority 0; FAULT
/// ignores advertisements and timers; recovery restarts as at startup.
#[test]
fn tracking_fault_and_recovery() {
    let mut vrrp = instance(config(100));
    vrrp.startup(0);
    run_until(&mut vrrp, 3609);
    let fault = |fault| Tracking {
        priority_delta: 0,
        fault,
    };
    vrrp.set_tracking(4000, fault(true));
    assert_eq!(
        drain(&mut vrrp),
        [
            change(State::Master, State::Fault, Reason::Fault),
            Action::SendAdvert { priority: 0 },
        ]
    );
    assert!(!vrrp.owns_vips());
    assert_eq!(vrrp.poll_timeout(), None);
    vrrp.on_advert(4500, &advert(50, 100), LOW_PEER);
    vrrp.on_timer(100_000);
    assert!(drain(&mut vrrp).is_empty());
    vrrp.set_tracking(200_000, fault(false));
    assert_eq!(
        drain(&mut vrrp),
        [change(State::Fault, State::Backup, Reason::FaultCleared)]
    );
    assert_eq!(vrrp.poll_timeout(), Some(203_609));

    // A fault known before startup starts in FAULT; the owner recovers
    // straight to MASTER.
    let mut owner = instance(config(255));
    owner.set_tracking(0, fault(true));
    owner.startup(0);
    assert_eq!(owner.state(), State::Fault);
    drain(&mut owner);
    owner.set_tracking(10, fault(false));
    assert_eq!(
        drain(&mut owner)[0],
        change(State::Fault, State::Master, Reason::AddressOwner)
    );
}

/// A two-router network on one fake clock: routers exchange the frames
/// they build, through [`Instance::receive`], as the control lcore would.
struct Lan {
    routers: Vec<(Instance, bool)>,
    now: u64,
}

impl Lan {
    fn new(configs: Vec<InstanceConfig>) -> Lan {
        let routers = configs.into_iter().map(|c| (instance(c), true)).collect();
        Lan { routers, now: 0 }
    }

    /// Delivers every pending action's frames to the other routers that are
    /// up, until quiet.
    fn deliver(&mut self) {
        loop {
            let mut frames = Vec::new();
            for (i, (router, up)) in self.routers.iter_mut().enumerate() {
                while let Some(action) = router.poll_action() {
                    if let (Action::SendAdvert { priority }, true) = (action, *up) {
                        let mut buf = [0u8; 128];
                        let dst = router.destinations()[0];
                        let len = router
                            .write_advert(priority, dst, pylon_vrrp::wire::MULTICAST_MAC, &mut buf)
                            .unwrap();
                        frames.push((i, buf[..len].to_vec()));
                    }
                }
            }
            if frames.is_empty() {
                return;
            }
            for (from, frame) in frames {
                for (j, (router, up)) in self.routers.iter_mut().enumerate() {
                    if j != from && *up {
                        let ip = pylon_vrrp::wire::ethernet_payload(&frame).unwrap();
                        router.receive(self.now, ip).unwrap();
                    }
                }
            }
        }
    }

    fn run_until(&mut self, until: u64) {
        loop {
            let next = self
                .routers
                .iter()
                .filter(|(_, up)| *up)
                .filter_map(|(r, _)| r.poll_timeout())
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = at;
                    for (router, up) in &mut self.routers {
                        if *up {
                            router.on_timer(at);
                        }
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn states(&self) -> Vec<State> {
        self.routers.iter().map(|(r, _)| r.state()).collect()
    }
}

/// End to end on the fake clock: election by priority, takeover when the
/// master dies, preemption when it returns.
#[test]
fn two_routers_elect_fail_over_and_preempt() {
    let a = InstanceConfig {
        primary: Ipv4Addr::new(192, 0, 2, 1),
        ..config(200)
    };
    let b = InstanceConfig {
        primary: Ipv4Addr::new(192, 0, 2, 2),
        adver_int: 10,
        ..config(100)
    };
    let mut lan = Lan::new(vec![a, b]);
    for (router, _) in &mut lan.routers {
        router.startup(0);
    }
    lan.deliver();
    lan.run_until(10_000);
    assert_eq!(lan.states(), [State::Master, State::Backup]);
    // B learned A's interval of 100 cs.
    assert_eq!(lan.routers[1].0.master_adver_int(), 100);

    // A dies silently at 10000; its last advert went out at 9218 (it
    // became master at 3218 and advertises every second).
    lan.routers[0].1 = false;
    lan.run_until(20_000);
    assert_eq!(lan.states()[1], State::Master);
    let (at, reason) = lan.routers[1].0.status().since.unwrap();
    assert_eq!(reason, Reason::MasterDown);
    assert_eq!(at, 9218 + 3609);

    // A comes back: it starts as backup, discards B's lower-priority
    // adverts and preempts after its Master_Down_Interval.
    lan.routers[0].1 = true;
    lan.routers[0].0.shutdown(20_000);
    lan.routers[0].0.startup(20_000);
    lan.deliver();
    lan.run_until(30_000);
    assert_eq!(lan.states(), [State::Master, State::Backup]);
    assert_eq!(
        lan.routers[0].0.status().since,
        Some((
            23_218,
            Reason::Preempted {
                master: Ipv4Addr::new(192, 0, 2, 2),
                priority: 100
            }
        ))
    );
}
