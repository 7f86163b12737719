//! Field deserializers that check what can be checked on one value alone.
//!
//! An error raised here reaches the operator with the key path (from
//! `serde_path_to_error`) and the line and column (from `toml`), so every
//! rule that needs no other key lives here; rules that compare keys live in
//! `validate.rs`.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::de::Error;
use serde::{Deserialize, Deserializer};

/// An integer in `MIN..=MAX`, stored as `T`.
pub(crate) fn ranged<'de, D, T, const MIN: i64, const MAX: i64>(d: D) -> Result<T, D::Error>
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

/// An optional TCP/UDP port number, 1..=65535.
pub(crate) fn opt_port<'de, D>(d: D) -> Result<Option<u16>, D::Error>
where
    D: Deserializer<'de>,
{
    ranged::<D, u16, 1, 65535>(d).map(Some)
}

/// A descriptor ring size: a power of two in 64..=16384.
pub(crate) fn ring_size<'de, D>(d: D) -> Result<u16, D::Error>
where
    D: Deserializer<'de>,
{
    let value: u16 = ranged::<D, u16, 64, 16384>(d)?;
    if !value.is_power_of_two() {
        return Err(D::Error::custom(format!(
            "{value} is not a power of two (64, 128, ..., 16384)"
        )));
    }
    Ok(value)
}

/// Why `addr` cannot be the address of a host (port, gateway, VIP or real
/// server), if it cannot.
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

/// A unicast IPv4 address of a host.
pub(crate) fn unicast<'de, D>(d: D) -> Result<Ipv4Addr, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    let addr: Ipv4Addr = text.parse().map_err(|_| {
        D::Error::custom(format!("`{text}` is not an IPv4 address (like 10.0.2.11)"))
    })?;
    match not_unicast(addr) {
        Some(what) => Err(D::Error::custom(format!(
            "{addr} is {what}, not a host address"
        ))),
        None => Ok(addr),
    }
}

/// An optional unicast IPv4 address.
pub(crate) fn opt_unicast<'de, D>(d: D) -> Result<Option<Ipv4Addr>, D::Error>
where
    D: Deserializer<'de>,
{
    unicast(d).map(Some)
}

/// A port address: a unicast host address with the prefix length of its
/// connected subnet (1..=31), not the subnet's network or broadcast address.
pub(crate) fn interface<'de, D>(d: D) -> Result<Ipv4Net, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    let net: Ipv4Net = text.parse().map_err(|_| {
        D::Error::custom(format!(
            "`{text}` is not an IPv4 address with a prefix length (like 10.0.1.1/24)"
        ))
    })?;
    let addr = net.addr();
    if let Some(what) = not_unicast(addr) {
        return Err(D::Error::custom(format!(
            "{addr} is {what}, not a host address"
        )));
    }
    if !(1..=31).contains(&net.prefix_len()) {
        return Err(D::Error::custom(format!(
            "prefix length /{} is out of range 1..=31",
            net.prefix_len()
        )));
    }
    if let Some(what) = subnet_edge(net, addr) {
        return Err(D::Error::custom(format!(
            "{addr} is {what} {}, not a host address",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Whether `addr` is the network or broadcast address of `net` (which a /31
/// does not have).
pub(crate) fn subnet_edge(net: Ipv4Net, addr: Ipv4Addr) -> Option<&'static str> {
    if net.prefix_len() >= 31 {
        None
    } else if addr == net.network() {
        Some("the network address of")
    } else if addr == net.broadcast() {
        Some("the broadcast address of")
    } else {
        None
    }
}

/// A name as the CLI and the metrics show it: `[a-zA-Z0-9_-]{1,32}`.
pub(crate) fn name<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    let valid = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(text)
    } else {
        Err(D::Error::custom(format!(
            "`{text}` is not a valid name: use 1 to 32 of a-z, A-Z, 0-9, `_` and `-`"
        )))
    }
}

/// The DPDK `--file-prefix`: `/var/run/dpdk/<prefix>` is removed on exit, so
/// it must be one plain path component.
pub(crate) fn file_prefix<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    let valid = (1..=64).contains(&text.len())
        && !text.starts_with('.')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(text)
    } else {
        Err(D::Error::custom(format!(
            "`{text}` is not a valid file prefix: use 1 to 64 of a-z, A-Z, 0-9, `_`, `-` and `.`, not starting with `.`"
        )))
    }
}

/// A port device: a DPDK vdev spec (`net_<driver><n>[,key=value...]`) or a
/// PCI address (`dddd:bb:dd.f[,key=value...]`). PCI addresses are returned
/// in lowercase, the form in which DPDK names the device.
pub(crate) fn device<'de, D>(d: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(d)?;
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(D::Error::custom(format!(
            "`{text}` is not a device: expected a DPDK vdev spec (like net_af_packet0,iface=eth1) or a PCI address (like 0000:01:00.0), without spaces"
        )));
    }
    let (name, devargs) = match text.split_once(',') {
        Some((name, devargs)) => (name, Some(devargs)),
        None => (text.as_str(), None),
    };
    if let Some(driver) = name.strip_prefix("net_") {
        let valid = !driver.is_empty()
            && driver
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        return if valid {
            Ok(text)
        } else {
            Err(D::Error::custom(format!(
                "`{name}` is not a valid vdev name: expected `net_` followed by a driver and an instance number (like net_af_packet0), in a-z, A-Z, 0-9 and `_`"
            )))
        };
    }
    if is_pci_address(name) {
        let name = name.to_ascii_lowercase();
        return Ok(match devargs {
            Some(devargs) => format!("{name},{devargs}"),
            None => name,
        });
    }
    Err(D::Error::custom(format!(
        "`{name}` is neither a DPDK vdev (starting with `net_`, like net_af_packet0,iface=eth1) nor a PCI address (dddd:bb:dd.f, like 0000:01:00.0)"
    )))
}

/// `dddd:bb:dd.f`: domain, bus and device in hex, device 00..=1f, function 0..=7.
pub(crate) fn is_pci_address(name: &str) -> bool {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let mut parts = name.split(':');
    let (Some(domain), Some(bus), Some(slot), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some((dev, function)) = slot.split_once('.') else {
        return false;
    };
    hex(domain, 4)
        && hex(bus, 2)
        && hex(dev, 2)
        && u8::from_str_radix(dev, 16).is_ok_and(|dev| dev <= 0x1f)
        && function.len() == 1
        && function.bytes().all(|b| (b'0'..=b'7').contains(&b))
}
