//! The `[[vrrp]]` tables of the configuration file (documented key by key
//! in `configs/README.md`), the rules between their keys, and the
//! conversion to an [`InstanceConfig`].
//!
//! Durations are written in seconds (integer or decimal) as in keepalived
//! and stored as integers: the interval in centiseconds, the others in
//! milliseconds, so that the types stay `Eq`.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::Deserialize;

use crate::instance::{InstanceConfig, Tracking, PRIORITY_OWNER};
use crate::wire::{self, Version};

/// One `[[vrrp]]` table: a VRRP instance (keepalived's `vrrp_instance`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    /// `vrid`: Virtual Router ID, 1..=255 (keepalived's
    /// virtual_router_id).
    #[serde(deserialize_with = "de::ranged::<_, u8, 1, 255>")]
    pub vrid: u8,
    /// `priority`: 1..=255, 255 = address owner; default 100.
    #[serde(
        default = "default_priority",
        deserialize_with = "de::ranged::<_, u8, 1, 255>"
    )]
    pub priority: u8,
    /// `advert_int`: seconds between advertisements (0.01..=40.95 for
    /// version 3, whole seconds 1..=255 for version 2), stored in
    /// centiseconds; default 1.
    #[serde(
        rename = "advert_int",
        default = "default_advert_int",
        deserialize_with = "de::centiseconds"
    )]
    pub advert_int_cs: u16,
    /// `preempt`: take over from a lower-priority master; default true.
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// `preempt_delay`: seconds, 0..=1000, stored in milliseconds; default 0.
    #[serde(
        rename = "preempt_delay",
        default,
        deserialize_with = "de::milliseconds::<_, 1000>"
    )]
    pub preempt_delay_ms: u64,
    /// `version`: 3 (RFC 5798) or 2 (RFC 3768); default 3.
    #[serde(default = "default_version", deserialize_with = "de::version")]
    pub version: Version,
    /// `checksum_pseudo_header`: whether the VRRPv3 checksum covers the
    /// IPv4 pseudo-header (RFC 5798 §5.2.8); default true.
    #[serde(default = "default_true")]
    pub checksum_pseudo_header: bool,
    /// `port`: name of the data port the instance runs on.
    pub port: String,
    /// `vips`: the virtual addresses, 1..=255.
    #[serde(deserialize_with = "de::unicast_list")]
    pub vips: Vec<Ipv4Addr>,
    /// `unicast_peers`: advertise to these instead of 224.0.0.18; default
    /// none.
    #[serde(default, deserialize_with = "de::unicast_list")]
    pub unicast_peers: Vec<Ipv4Addr>,
    /// `garp_repeat`: gratuitous ARPs per VIP on becoming master, 1..=100
    /// (garp_master_repeat); default 5.
    #[serde(
        default = "default_garp_repeat",
        deserialize_with = "de::ranged::<_, u32, 1, 100>"
    )]
    pub garp_repeat: u32,
    /// `garp_delay`: seconds after becoming master before a second burst,
    /// 0..=1000 (garp_master_delay), stored in milliseconds; default 5.
    #[serde(
        rename = "garp_delay",
        default = "default_garp_delay",
        deserialize_with = "de::milliseconds::<_, 1000>"
    )]
    pub garp_delay_ms: u64,
    /// `garp_refresh`: seconds between refresh bursts while master,
    /// 0..=86400, 0 = off (garp_master_refresh), stored in milliseconds;
    /// default 0.
    #[serde(
        rename = "garp_refresh",
        default,
        deserialize_with = "de::milliseconds::<_, 86400>"
    )]
    pub garp_refresh_ms: u64,
    /// `garp_refresh_repeat`: gratuitous ARPs per VIP in a refresh burst,
    /// 1..=100 (garp_master_refresh_repeat); default 1.
    #[serde(
        default = "default_garp_refresh_repeat",
        deserialize_with = "de::ranged::<_, u32, 1, 100>"
    )]
    pub garp_refresh_repeat: u32,
    /// `track_ports`: data ports whose link state moves the priority or
    /// causes FAULT.
    #[serde(default)]
    pub track_ports: Vec<TrackPort>,
    /// `track_services`: services whose health (at least one healthy real
    /// server) moves the priority or causes FAULT.
    #[serde(default)]
    pub track_services: Vec<TrackService>,
    /// `notify_master`: command run on entering MASTER.
    #[serde(default)]
    pub notify_master: Option<String>,
    /// `notify_backup`: command run on entering BACKUP.
    #[serde(default)]
    pub notify_backup: Option<String>,
    /// `notify_fault`: command run on entering FAULT.
    #[serde(default)]
    pub notify_fault: Option<String>,
}

/// `track_ports` entry (keepalived's track_interface).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackPort {
    /// A data port name.
    pub port: String,
    /// -254..=254. 0 (default): FAULT while the link is down. Negative:
    /// added to the priority while down. Positive: added while up.
    #[serde(default, deserialize_with = "de::weight")]
    pub weight: i32,
}

/// `track_services` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackService {
    /// A service name.
    pub service: String,
    /// As for [`TrackPort::weight`], "up" meaning the service has at least
    /// one healthy real server.
    #[serde(default, deserialize_with = "de::weight")]
    pub weight: i32,
}

fn default_priority() -> u8 {
    100
}

fn default_advert_int() -> u16 {
    100
}

fn default_true() -> bool {
    true
}

fn default_version() -> Version {
    Version::V3
}

fn default_garp_repeat() -> u32 {
    5
}

fn default_garp_delay() -> u64 {
    5000
}

fn default_garp_refresh_repeat() -> u32 {
    1
}

/// keepalived's weight rule: what one tracked item contributes.
fn tracked(weight: i32, up: bool, tracking: &mut Tracking) {
    match (weight, up) {
        (0, false) => tracking.fault = true,
        (w, true) if w > 0 => tracking.priority_delta += w,
        (w, false) if w < 0 => tracking.priority_delta += w,
        _ => {}
    }
}

impl Vrrp {
    /// The runtime configuration, with `primary` the address of the port
    /// named by `port`.
    pub fn instance_config(&self, primary: Ipv4Addr) -> InstanceConfig {
        InstanceConfig {
            vrid: self.vrid,
            version: self.version,
            priority: self.priority,
            adver_int: self.advert_int_cs,
            preempt: self.preempt,
            preempt_delay: self.preempt_delay_ms,
            vips: self.vips.clone(),
            primary,
            unicast_peers: self.unicast_peers.clone(),
            checksum_pseudo_header: self.checksum_pseudo_header,
            garp_repeat: self.garp_repeat,
            garp_delay: self.garp_delay_ms,
            garp_refresh: self.garp_refresh_ms,
            garp_refresh_repeat: self.garp_refresh_repeat,
        }
    }

    /// The tracking input for [`crate::Instance::set_tracking`], given
    /// whether each port's link is up and whether each service has a
    /// healthy real server.
    pub fn tracking(
        &self,
        port_up: impl Fn(&str) -> bool,
        service_up: impl Fn(&str) -> bool,
    ) -> Tracking {
        let mut tracking = Tracking::default();
        for track in &self.track_ports {
            tracked(track.weight, port_up(&track.port), &mut tracking);
        }
        for track in &self.track_services {
            tracked(track.weight, service_up(&track.service), &mut tracking);
        }
        tracking
    }
}

/// A data port as the `[[vrrp]]` rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRef<'a> {
    /// `ports[].name`.
    pub name: &'a str,
    /// `ports[].address` without the prefix.
    pub address: Ipv4Addr,
}

/// A rule between keys that the `[[vrrp]]` tables break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    /// Key path, like `vrrp[1].vips[0]`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// Checks the rules between keys of `instances` (the `vrrp` array), given
/// the data ports and the service names: per instance, an interval its
/// version can send, `checksum_pseudo_header` only for version 3, an
/// existing port, unique VIPs that are no port's address (except for the
/// address owner), unique unicast peers other than the own port, tracked
/// ports and services that exist, no weights for the address owner, no
/// empty notify command; across instances, a VRID used once per port and a
/// VIP in one instance only.
pub fn check(instances: &[Vrrp], ports: &[PortRef<'_>], services: &[&str]) -> Result<(), Invalid> {
    let mut vrids: HashMap<(&str, u8), usize> = HashMap::new();
    let mut vips: HashMap<Ipv4Addr, usize> = HashMap::new();
    for (i, vrrp) in instances.iter().enumerate() {
        let key = |name: &str| format!("vrrp[{i}].{name}");
        let invalid = |name: &str, problem: String| {
            Err(Invalid {
                key: key(name),
                problem,
            })
        };
        let Some(port) = ports.iter().find(|port| port.name == vrrp.port) else {
            return invalid("port", format!("no port is named `{}`", vrrp.port));
        };
        if let Err(e) = vrrp.instance_config(port.address).validate() {
            return invalid(e.key, e.problem);
        }
        if !vrrp.checksum_pseudo_header && vrrp.version == Version::V2 {
            return invalid(
                "checksum_pseudo_header",
                "applies to version 3 only (the version 2 checksum never covers it)".to_owned(),
            );
        }
        if let Some(other) = vrids.insert((vrrp.port.as_str(), vrrp.vrid), i) {
            return invalid(
                "vrid",
                format!(
                    "VRID {} is already used on port `{}` by vrrp[{other}]",
                    vrrp.vrid, vrrp.port
                ),
            );
        }
        for (j, vip) in vrrp.vips.iter().enumerate() {
            let name = format!("vips[{j}]");
            if vrrp.vips[..j].contains(vip) {
                return invalid(&name, format!("{vip} is listed twice"));
            }
            if let Some(other) = vips.insert(*vip, i).filter(|&other| other != i) {
                return invalid(&name, format!("{vip} is already a VIP of vrrp[{other}]"));
            }
            if let Some(owner) = ports.iter().find(|port| port.address == *vip) {
                if vrrp.priority != PRIORITY_OWNER {
                    return invalid(
                        &name,
                        format!(
                            "{vip} is the address of port `{}`; only the address owner \
                             (priority 255) may use it",
                            owner.name
                        ),
                    );
                }
            }
        }
        for (j, peer) in vrrp.unicast_peers.iter().enumerate() {
            let name = format!("unicast_peers[{j}]");
            if vrrp.unicast_peers[..j].contains(peer) {
                return invalid(&name, format!("{peer} is listed twice"));
            }
            if *peer == port.address {
                return invalid(&name, format!("{peer} is the address of this port"));
            }
        }
        let owner_weight = |weight: i32| vrrp.priority == PRIORITY_OWNER && weight != 0;
        for (j, track) in vrrp.track_ports.iter().enumerate() {
            if !ports.iter().any(|port| port.name == track.port) {
                return invalid(
                    &format!("track_ports[{j}].port"),
                    format!("no port is named `{}`", track.port),
                );
            }
            if owner_weight(track.weight) {
                return invalid(
                    &format!("track_ports[{j}].weight"),
                    "the address owner (priority 255) keeps its priority; use weight 0 (FAULT)"
                        .to_owned(),
                );
            }
        }
        for (j, track) in vrrp.track_services.iter().enumerate() {
            if !services.contains(&track.service.as_str()) {
                return invalid(
                    &format!("track_services[{j}].service"),
                    format!("no service is named `{}`", track.service),
                );
            }
            if owner_weight(track.weight) {
                return invalid(
                    &format!("track_services[{j}].weight"),
                    "the address owner (priority 255) keeps its priority; use weight 0 (FAULT)"
                        .to_owned(),
                );
            }
        }
        for (name, command) in [
            ("notify_master", &vrrp.notify_master),
            ("notify_backup", &vrrp.notify_backup),
            ("notify_fault", &vrrp.notify_fault),
        ] {
            if command.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return invalid(name, "empty command".to_owned());
            }
        }
    }
    Ok(())
}

/// Field deserializers: the rules on one value alone, reported with the key
/// path by `serde_path_to_error`.
mod de {
    use std::fmt;
    use std::net::Ipv4Addr;

    use serde::de::{Error, Visitor};
    use serde::{Deserialize, Deserializer};

    use super::{wire, Version};

    /// An integer in `MIN..=MAX`.
    pub(super) fn ranged<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<i64>,
    {
        let value = i64::deserialize(d)?;
        let out_of_range = || D::Error::custom(format!("{value} is out of range {MIN}..={MAX}"));
        if !(MIN..=MAX).contains(&value) {
            return Err(out_of_range());
        }
        T::try_from(value).map_err(|_| out_of_range())
    }

    /// A tracking weight, -254..=254.
    pub(super) fn weight<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        ranged::<D, i32, -254, 254>(d)
    }

    /// `2` or `3`.
    pub(super) fn version<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let value = i64::deserialize(d)?;
        u8::try_from(value)
            .ok()
            .and_then(Version::from_number)
            .ok_or_else(|| D::Error::custom(format!("version {value} is not 2 or 3")))
    }

    /// A number of seconds, integer or decimal.
    struct Seconds(f64);

    impl<'de> Deserialize<'de> for Seconds {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct SecondsVisitor;
            impl Visitor<'_> for SecondsVisitor {
                type Value = Seconds;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a number of seconds, like 1 or 0.1")
                }
                fn visit_i64<E: Error>(self, v: i64) -> Result<Seconds, E> {
                    // Exact for every integer a duration here can be.
                    Ok(Seconds(v as f64))
                }
                fn visit_u64<E: Error>(self, v: u64) -> Result<Seconds, E> {
                    Ok(Seconds(v as f64))
                }
                fn visit_f64<E: Error>(self, v: f64) -> Result<Seconds, E> {
                    Ok(Seconds(v))
                }
            }
            d.deserialize_any(SecondsVisitor)
        }
    }

    /// `seconds` in units of `1 / per_second` s, if a whole number of them
    /// in `min..=max` units.
    fn units(seconds: f64, per_second: f64, min: u64, max: u64) -> Result<u64, String> {
        let scaled = seconds * per_second;
        let rounded = scaled.round();
        if !seconds.is_finite() || (scaled - rounded).abs() > 1e-6 {
            return Err(format!(
                "{seconds} s is not a whole number of {} s",
                1.0 / per_second
            ));
        }
        if rounded < min as f64 || rounded > max as f64 {
            return Err(format!(
                "{seconds} s is out of range {}..={} s",
                min as f64 / per_second,
                max as f64 / per_second
            ));
        }
        // In min..=max, so exact and non-negative.
        Ok(rounded as u64)
    }

    /// An advertisement interval in seconds (0.01..=255, the widest range of
    /// either version; `check` narrows it per version), in centiseconds.
    pub(super) fn centiseconds<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let Seconds(seconds) = Seconds::deserialize(d)?;
        let cs = units(seconds, 100.0, 1, u64::from(wire::MAX_ADVER_INT_V2))
            .map_err(D::Error::custom)?;
        // At most MAX_ADVER_INT_V2.
        Ok(cs as u16)
    }

    /// A duration in seconds, 0..=`MAX_S`, in milliseconds.
    pub(super) fn milliseconds<'de, D, const MAX_S: u64>(d: D) -> Result<u64, D::Error>
    where
        D: Deserializer<'de>,
    {
        let Seconds(seconds) = Seconds::deserialize(d)?;
        units(seconds, 1000.0, 0, MAX_S * 1000).map_err(D::Error::custom)
    }

    /// Why `addr` cannot be a host address, if it cannot.
    fn not_unicast(addr: Ipv4Addr) -> Option<&'static str> {
        if addr.is_unspecified() {
            Some("the unspecified address")
        } else if addr.is_broadcast() {
            Some("the broadcast address")
        } else if addr.is_multicast() {
            Some("a multicast address")
        } else if addr.is_loopback() {
            Some("a loopback address")
        } else if addr.octets()[0] >= 240 {
            Some("a reserved (class E) address")
        } else {
            None
        }
    }

    /// A list of unicast IPv4 host addresses.
    pub(super) fn unicast_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Addr>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                let addr: Ipv4Addr = text.parse().map_err(|_| {
                    D::Error::custom(format!("`{text}` is not an IPv4 address (like 10.0.2.11)"))
                })?;
                match not_unicast(addr) {
                    Some(what) => Err(D::Error::custom(format!(
                        "{addr} is {what}, not a host address"
                    ))),
                    None => Ok(addr),
                }
            })
            .collect()
    }
}
