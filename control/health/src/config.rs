//! The configuration schema of health checks and the merge of per-service
//! defaults with per-server overrides.
//!
//! In the file (documented key by key in the workspace's `configs/README.md`,
//! with the example `configs/health.toml`):
//!
//! ```toml
//! [control]
//! health_source = "10.0.0.1"       # HealthControl::source
//! health_interface = "mgmt0"       # HealthControl::interface
//!
//! [[services]]
//! # ...
//! [services.health]                # HealthCheckConfig, kind required here
//! kind = "http"
//! path = "/healthz"
//! expect_status = "200-399"
//! interval = 1.0
//!
//! [[services.servers]]
//! address = "10.0.2.11"
//! health = { port = 8081 }         # HealthCheckConfig, any key optional
//! ```
//!
//! Every rule that concerns one value alone is checked while deserializing,
//! so the error carries the key path and the line; the rules between keys
//! (the kind's own keys, `timeout <= interval`, a required `command`) are
//! checked by [`resolve`], which returns a [`HealthConfigError`] naming the
//! key and whether the service's table or the server's override holds it.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::de::{Error, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{CheckKind, State};

/// Default `interval`, as HAProxy's `inter`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `rise`.
pub const DEFAULT_RISE: u32 = 2;
/// Default `fall`.
pub const DEFAULT_FALL: u32 = 3;
/// Largest `rise` and `fall`.
pub const MAX_COUNT: u32 = 1000;
/// Longest `send`, `expect` and `body` text, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// Largest `interval` and `timeout`, in seconds.
pub const MAX_SECONDS: f64 = 3600.0;
/// Smallest `interval` and `timeout`, in seconds.
pub const MIN_SECONDS: f64 = 0.001;

/// `[services.health]` (per-service defaults) and a server's `health = {}`
/// (its overrides): every key is optional here; [`resolve`] merges the two
/// and applies the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `icmp`, `tcp`, `http` or `exec`; required in `[services.health]`.
    pub kind: Option<CheckKind>,
    /// Seconds between the starts of two checks (float).
    pub interval: Option<Seconds>,
    /// Seconds a check may take before it fails with `timeout`.
    pub timeout: Option<Seconds>,
    /// Consecutive successes that bring a down server up.
    #[serde(default, deserialize_with = "opt_count")]
    pub rise: Option<u32>,
    /// Consecutive failures that bring an up server down.
    #[serde(default, deserialize_with = "opt_count")]
    pub fall: Option<u32>,
    /// `up` or `down`: the state before the first results.
    pub initial: Option<State>,
    /// What happens to a down server's established connections.
    pub on_down: Option<OnDown>,
    /// Port to check instead of the server's (not for `icmp`).
    #[serde(default, deserialize_with = "opt_port")]
    pub port: Option<u16>,
    /// Source address of the checks (overrides `control.health_source`).
    pub source: Option<Ipv4Addr>,
    /// Interface to send the checks through (overrides
    /// `control.health_interface`).
    #[serde(default, deserialize_with = "opt_interface")]
    pub interface: Option<String>,
    /// `tcp`: text sent once connected.
    #[serde(default, deserialize_with = "opt_pattern")]
    pub send: Option<String>,
    /// `tcp`: text the answer must contain.
    #[serde(default, deserialize_with = "opt_pattern")]
    pub expect: Option<String>,
    /// `http`: the request path (origin-form, starts with `/`).
    #[serde(default, deserialize_with = "opt_path")]
    pub path: Option<String>,
    /// `http`: accepted status codes, `200` or `"200-399"`.
    pub expect_status: Option<StatusRange>,
    /// `http`: text the body must contain.
    #[serde(default, deserialize_with = "opt_pattern")]
    pub body: Option<String>,
    /// `http`: the `Host` header; the server's `address[:port]` by default.
    #[serde(default, deserialize_with = "opt_host")]
    pub host: Option<String>,
    /// `exec`: the command, run with `/bin/sh -c`.
    #[serde(default, deserialize_with = "opt_command")]
    pub command: Option<String>,
}

/// The `[control]` keys that apply to every check: where checks leave from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthControl {
    /// `control.health_source`: source address of every check.
    pub source: Option<Ipv4Addr>,
    /// `control.health_interface`: interface of every check
    /// (`SO_BINDTODEVICE`), the management interface.
    pub interface: Option<String>,
}

/// What happens to the established connections of a server that goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDown {
    /// Let them finish (weight 0 only stops new connections).
    #[default]
    Keep,
    /// Expire them at once.
    Expire,
}

impl fmt::Display for OnDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnDown::Keep => "keep",
            OnDown::Expire => "expire",
        })
    }
}

/// A number of seconds as written in the file (`1`, `0.25`), in
/// `MIN_SECONDS..=MAX_SECONDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&value) {
            return Err(D::Error::custom(format!(
                "{value} is out of range {MIN_SECONDS}..={MAX_SECONDS} seconds"
            )));
        }
        Duration::try_from_secs_f64(value)
            .map(Seconds)
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// An inclusive range of HTTP status codes, `100..=599` (RFC 9110
/// section 15): written `200` or `"200"` for one code, `"200-399"` for a
/// range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest accepted code.
    pub low: u16,
    /// Highest accepted code.
    pub high: u16,
}

impl StatusRange {
    /// HAProxy's default: 2xx and 3xx.
    pub const DEFAULT: StatusRange = StatusRange {
        low: 200,
        high: 399,
    };

    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        (self.low..=self.high).contains(&code)
    }

    fn parse(text: &str) -> Result<StatusRange, String> {
        let code = |part: &str| -> Result<u16, String> {
            let part = part.trim();
            match part.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) && part.len() == 3 => Ok(code),
                _ => Err(format!(
                    "`{text}` is not a status code (100..=599) or a range like \"200-399\""
                )),
            }
        };
        let range = match text.split_once('-') {
            Some((low, high)) => StatusRange {
                low: code(low)?,
                high: code(high)?,
            },
            None => {
                let one = code(text)?;
                StatusRange {
                    low: one,
                    high: one,
                }
            }
        };
        if range.low > range.high {
            return Err(format!("`{text}`: the range is empty (low > high)"));
        }
        Ok(range)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RangeVisitor;
        impl Visitor<'_> for RangeVisitor {
            type Value = StatusRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code like 200 or a range like \"200-399\"")
            }
            fn visit_i64<E: Error>(self, value: i64) -> Result<StatusRange, E> {
                StatusRange::parse(&value.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: Error>(self, value: u64) -> Result<StatusRange, E> {
                StatusRange::parse(&value.to_string()).map_err(E::custom)
            }
            fn visit_str<E: Error>(self, value: &str) -> Result<StatusRange, E> {
                StatusRange::parse(value).map_err(E::custom)
            }
        }
        d.deserialize_any(RangeVisitor)
    }
}

fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let value = i64::deserialize(d)?;
    match u32::try_from(value) {
        Ok(count) if (1..=MAX_COUNT).contains(&count) => Ok(Some(count)),
        _ => Err(D::Error::custom(format!(
            "{value} is out of range 1..={MAX_COUNT}"
        ))),
    }
}

fn opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    let value = i64::deserialize(d)?;
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(Some(port)),
        _ => Err(D::Error::custom(format!(
            "{value} is out of range 1..=65535"
        ))),
    }
}

fn opt_interface<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    interface_problem(&name).map_or(Ok(Some(name)), |problem| Err(D::Error::custom(problem)))
}

/// Why `name` cannot be a Linux interface name (1 to 15 bytes, no `/`, no
/// white space, no control character), if it cannot.
pub fn interface_problem(name: &str) -> Option<String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    bad.then(|| {
        format!("`{name}` is not an interface name (1 to 15 characters, no `/`, `:` or space)")
    })
}

fn opt_pattern<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() || text.len() > MAX_PATTERN {
        return Err(D::Error::custom(format!(
            "must be 1 to {MAX_PATTERN} bytes long"
        )));
    }
    Ok(Some(text))
}

/// Visible ASCII (RFC 9110 `VCHAR`), as a request target or a `Host` may
/// hold.
fn visible_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let path = String::deserialize(d)?;
    if !path.starts_with('/') || path.len() > 2048 || !visible_ascii(&path) {
        return Err(D::Error::custom(format!(
            "`{path}` is not a request path: it must start with `/` and hold at most 2048 \
             visible ASCII characters (percent-encode the others)"
        )));
    }
    Ok(Some(path))
}

fn opt_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let host = String::deserialize(d)?;
    if host.is_empty() || host.len() > 255 || !visible_ascii(&host) || host.contains('/') {
        return Err(D::Error::custom(format!(
            "`{host}` is not a Host value (1 to 255 visible ASCII characters, no `/`)"
        )));
    }
    Ok(Some(host))
}

fn opt_command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let command = String::deserialize(d)?;
    if command.trim().is_empty() || command.contains('\0') {
        return Err(D::Error::custom(
            "must be a non-empty command without NUL characters",
        ));
    }
    Ok(Some(command))
}

/// A resolved check: every key merged and defaulted, every rule checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Time between the starts of two checks of a server.
    pub interval: Duration,
    /// Time a check may take; at most `interval`.
    pub timeout: Duration,
    /// Consecutive successes that bring a down server up.
    pub rise: u32,
    /// Consecutive failures that bring an up server down.
    pub fall: u32,
    /// State before the first results.
    pub initial: State,
    /// What the daemon does with a down server's established connections.
    pub on_down: OnDown,
    /// Port override; `None` checks the server's own port.
    pub port: Option<u16>,
    /// Source address to bind; `None` lets the kernel choose.
    pub source: Option<Ipv4Addr>,
    /// Interface to bind (`SO_BINDTODEVICE`); `None` routes normally.
    pub interface: Option<String>,
    /// What to send and expect.
    pub probe: Probe,
}

impl HealthCheck {
    /// The kind of the check.
    pub fn kind(&self) -> CheckKind {
        match self.probe {
            Probe::Icmp => CheckKind::Icmp,
            Probe::Tcp { .. } => CheckKind::Tcp,
            Probe::Http { .. } => CheckKind::Http,
            Probe::Exec { .. } => CheckKind::Exec,
        }
    }

    /// A check of `probe` with every other key at its default.
    pub fn new(probe: Probe) -> HealthCheck {
        HealthCheck {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            initial: State::Up,
            on_down: OnDown::Keep,
            port: None,
            source: None,
            interface: None,
            probe,
        }
    }
}

/// The kind-specific part of a resolved check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// ICMP echo (RFC 792).
    Icmp,
    /// TCP connect; then send `send` if any, then read until the answer
    /// contains `expect` if any.
    Tcp {
        /// Bytes sent once connected.
        send: Option<Vec<u8>>,
        /// Bytes the answer must contain.
        expect: Option<Vec<u8>>,
    },
    /// HTTP/1.1 `GET path` (RFC 9110 section 9.3.1).
    Http {
        /// Request target, origin-form.
        path: String,
        /// `Host` header value; `None` sends `address[:port]`.
        host: Option<String>,
        /// Accepted status codes.
        expect_status: StatusRange,
        /// Text the body must contain.
        body: Option<Vec<u8>>,
    },
    /// `/bin/sh -c command`; exit status 0 is healthy.
    Exec {
        /// The command line.
        command: String,
    },
}

/// Which table of the file a [`HealthConfigError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `services[i].health`.
    Service,
    /// `services[i].servers[j].health` (merged with the service's table).
    Server,
}

/// A rule between keys that a health table breaks: the key (`timeout`,
/// `path` ...), the table it is in, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("health.{key}: {problem}")]
pub struct HealthConfigError {
    /// The table that holds the key.
    pub origin: Origin,
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl HealthCheckConfig {
    /// `self` (a server's override) over `service` (the service's
    /// defaults), key by key. The service's kind-specific keys (`send`,
    /// `expect`, `path`, `expect_status`, `body`, `host`, `command`) are
    /// inherited only when the override keeps the service's kind.
    pub fn over(&self, service: &HealthCheckConfig) -> HealthCheckConfig {
        let same_kind = self.kind.is_none() || self.kind == service.kind;
        let specific = |own: &Option<String>, inherited: &Option<String>| {
            own.clone()
                .or_else(|| same_kind.then(|| inherited.clone()).flatten())
        };
        HealthCheckConfig {
            kind: self.kind.or(service.kind),
            interval: self.interval.or(service.interval),
            timeout: self.timeout.or(service.timeout),
            rise: self.rise.or(service.rise),
            fall: self.fall.or(service.fall),
            initial: self.initial.or(service.initial),
            on_down: self.on_down.or(service.on_down),
            port: self.port.or(service.port),
            source: self.source.or(service.source),
            interface: self.interface.clone().or_else(|| service.interface.clone()),
            send: specific(&self.send, &service.send),
            expect: specific(&self.expect, &service.expect),
            path: specific(&self.path, &service.path),
            expect_status: self
                .expect_status
                .or(same_kind.then_some(service.expect_status).flatten()),
            body: specific(&self.body, &service.body),
            host: specific(&self.host, &service.host),
            command: specific(&self.command, &service.command),
        }
    }

    /// This table alone, resolved: defaults applied, rules between keys
    /// checked; errors are reported with `origin`.
    pub fn resolve(
        &self,
        control: &HealthControl,
        origin: Origin,
    ) -> Result<HealthCheck, HealthConfigError> {
        let error = |key: &'static str, problem: String| HealthConfigError {
            origin,
            key,
            problem,
        };
        let kind = self.kind.ok_or_else(|| {
            error(
                "kind",
                "required key is missing (icmp, tcp, http or exec)".to_owned(),
            )
        })?;
        let interval = self.interval.map_or(DEFAULT_INTERVAL, |s| s.0);
        let timeout = self.timeout.map_or(DEFAULT_TIMEOUT.min(interval), |s| s.0);
        if timeout > interval {
            return Err(error(
                "timeout",
                format!(
                    "{} s is longer than the interval ({} s)",
                    timeout.as_secs_f64(),
                    interval.as_secs_f64()
                ),
            ));
        }
        let specific = [
            ("send", self.send.is_some(), CheckKind::Tcp),
            ("expect", self.expect.is_some(), CheckKind::Tcp),
            ("path", self.path.is_some(), CheckKind::Http),
            (
                "expect_status",
                self.expect_status.is_some(),
                CheckKind::Http,
            ),
            ("body", self.body.is_some(), CheckKind::Http),
            ("host", self.host.is_some(), CheckKind::Http),
            ("command", self.command.is_some(), CheckKind::Exec),
        ];
        for (key, set, owner) in specific {
            if set && owner != kind {
                return Err(error(
                    key,
                    format!("only applies to kind \"{owner}\", not \"{kind}\""),
                ));
            }
        }
        if kind == CheckKind::Icmp && self.port.is_some() {
            return Err(error("port", "does not apply to kind \"icmp\"".to_owned()));
        }
        let bytes = |text: &Option<String>| text.as_ref().map(|t| t.as_bytes().to_vec());
        let probe = match kind {
            CheckKind::Icmp => Probe::Icmp,
            CheckKind::Tcp => Probe::Tcp {
                send: bytes(&self.send),
                expect: bytes(&self.expect),
            },
            CheckKind::Http => Probe::Http {
                path: self.path.clone().unwrap_or_else(|| "/".to_owned()),
                host: self.host.clone(),
                expect_status: self.expect_status.unwrap_or(StatusRange::DEFAULT),
                body: bytes(&self.body),
            },
            CheckKind::Exec => Probe::Exec {
                command: self
                    .command
                    .clone()
                    .ok_or_else(|| error("command", "required for kind \"exec\"".to_owned()))?,
            },
        };
        Ok(HealthCheck {
            interval,
            timeout,
            rise: self.rise.unwrap_or(DEFAULT_RISE),
            fall: self.fall.unwrap_or(DEFAULT_FALL),
            initial: self.initial.unwrap_or(State::Up),
            on_down: self.on_down.unwrap_or_default(),
            port: self.port,
            source: self.source.or(control.source),
            interface: self.interface.clone().or_else(|| control.interface.clone()),
            probe,
        })
    }
}

/// The check of one server: the service's `health` table (`service`)
/// under the server's `health` override (`server`), with `[control]`'s
/// source and interface. `Ok(None)` when neither table exists (the server
/// is not checked and stays up). The service's table is checked on its
/// own first, so an error in it is reported once with [`Origin::Service`].
pub fn resolve(
    service: Option<&HealthCheckConfig>,
    server: Option<&HealthCheckConfig>,
    control: &HealthControl,
) -> Result<Option<HealthCheck>, HealthConfigError> {
    if let Some(service) = service {
        service.resolve(control, Origin::Service)?;
    }
    match (service, server) {
        (None, None) => Ok(None),
        (Some(service), None) => service.resolve(control, Origin::Service).map(Some),
        (None, Some(server)) => server.resolve(control, Origin::Server).map(Some),
        (Some(service), Some(server)) => server
            .over(service)
            .resolve(control, Origin::Server)
            .map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HealthCheckConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_of_a_minimal_table() {
        let config = parse(r#"kind = "tcp""#).unwrap();
        let check = resolve(Some(&config), None, &HealthControl::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            check,
            HealthCheck::new(Probe::Tcp {
                send: None,
                expect: None
            })
        );
    }

    #[test]
    fn full_http_table() {
        let config = parse(
            r#"
            kind = "http"
            path = "/healthz?full=1"
            expect_status = "200-299"
            body = "ok"
            host = "www.example.com"
            interval = 1
            timeout = 0.25
            rise = 1
            fall = 5
            initial = "down"
            on_down = "expire"
            port = 8081
            source = "10.0.0.1"
            interface = "mgmt0"
            "#,
        )
        .unwrap();
        let check = resolve(Some(&config), None, &HealthControl::default())
            .unwrap()
            .unwrap();
        assert_eq!(check.interval, Duration::from_secs(1));
        assert_eq!(check.timeout, Duration::from_millis(250));
        assert_eq!((check.rise, check.fall), (1, 5));
        assert_eq!(check.initial, State::Down);
        assert_eq!(check.on_down, OnDown::Expire);
        assert_eq!(check.port, Some(8081));
        assert_eq!(check.source, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(check.interface.as_deref(), Some("mgmt0"));
        assert_eq!(
            check.probe,
            Probe::Http {
                path: "/healthz?full=1".to_owned(),
                host: Some("www.example.com".to_owned()),
                expect_status: StatusRange {
                    low: 200,
                    high: 299
                },
                body: Some(b"ok".to_vec()),
            }
        );
    }

    #[test]
    fn status_written_as_integer_string_or_range() {
        for (text, low, high) in [
            ("200", 200, 200),
            ("\"204\"", 204, 204),
            ("\"200-399\"", 200, 399),
            ("\"500 - 599\"", 500, 599),
        ] {
            let config = parse(&format!("kind = \"http\"\nexpect_status = {text}")).unwrap();
            assert_eq!(config.expect_status, Some(StatusRange { low, high }));
        }
        for bad in [
            "99",
            "600",
            "\"abc\"",
            "\"300-200\"",
            "\"2000\"",
            "\"-\"",
            "1.5",
        ] {
            assert!(
                parse(&format!("kind = \"http\"\nexpect_status = {bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn single_values_are_checked_while_parsing() {
        for bad in [
            "interval = 0",
            "interval = -1",
            "interval = 3601",
            "interval = nan",
            "timeout = inf",
            "rise = 0",
            "fall = 1001",
            "fall = -3",
            "port = 0",
            "port = 70000",
            "initial = \"maybe\"",
            "on_down = \"drop\"",
            "kind = \"udp\"",
            "source = \"10.0.0\"",
            "interface = \"a/b\"",
            "interface = \"averyveryverylongname\"",
            "path = \"healthz\"",
            "path = \"/a b\"",
            "host = \"a b\"",
            "body = \"\"",
            "command = \"  \"",
            "colour = \"red\"",
        ] {
            assert!(parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn control_source_and_interface_apply_unless_overridden() {
        let control = HealthControl {
            source: Some(Ipv4Addr::new(10, 0, 0, 1)),
            interface: Some("mgmt0".to_owned()),
        };
        let service = parse(r#"kind = "icmp""#).unwrap();
        let check = resolve(Some(&service), None, &control).unwrap().unwrap();
        assert_eq!(check.source, control.source);
        assert_eq!(check.interface, control.interface);
        let server = parse(r#"source = "10.0.0.9""#).unwrap();
        let check = resolve(Some(&service), Some(&server), &control)
            .unwrap()
            .unwrap();
        assert_eq!(check.source, Some(Ipv4Addr::new(10, 0, 0, 9)));
        assert_eq!(check.interface, control.interface);
    }

    #[test]
    fn server_override_wins_key_by_key() {
        let service = parse(
            r#"
            kind = "http"
            path = "/status"
            interval = 1.5
            fall = 4
            "#,
        )
        .unwrap();
        let server = parse("port = 8081\nfall = 2").unwrap();
        let check = resolve(Some(&service), Some(&server), &HealthControl::default())
            .unwrap()
            .unwrap();
        assert_eq!(check.port, Some(8081));
        assert_eq!(check.fall, 2);
        assert_eq!(check.interval, Duration::from_millis(1500));
        assert!(matches!(check.probe, Probe::Http { ref path, .. } if path == "/status"));
    }

    #[test]
    fn another_kind_drops_the_services_kind_specific_keys() {
        let service = parse("kind = \"http\"\npath = \"/status\"\ninterval = 3").unwrap();
        let server = parse("kind = \"tcp\"\nexpect = \"+OK\"").unwrap();
        let check = resolve(Some(&service), Some(&server), &HealthControl::default())
            .unwrap()
            .unwrap();
        assert_eq!(check.interval, Duration::from_secs(3));
        assert_eq!(
            check.probe,
            Probe::Tcp {
                send: None,
                expect: Some(b"+OK".to_vec())
            }
        );
    }

    #[test]
    fn no_table_means_no_check() {
        assert_eq!(resolve(None, None, &HealthControl::default()), Ok(None));
    }

    #[test]
    fn rules_between_keys() {
        let cases: [(Option<&str>, Option<&str>, Origin, &str); 7] = [
            (Some("interval = 1"), None, Origin::Service, "kind"),
            (None, Some("port = 81"), Origin::Server, "kind"),
            (
                Some("kind = \"tcp\"\ninterval = 1\ntimeout = 2"),
                None,
                Origin::Service,
                "timeout",
            ),
            (
                Some("kind = \"tcp\"\ninterval = 1"),
                Some("timeout = 1.5"),
                Origin::Server,
                "timeout",
            ),
            (
                Some("kind = \"tcp\"\npath = \"/\""),
                None,
                Origin::Service,
                "path",
            ),
            (
                Some("kind = \"icmp\""),
                Some("port = 80"),
                Origin::Server,
                "port",
            ),
            (Some("kind = \"exec\""), None, Origin::Service, "command"),
        ];
        for (service, server, origin, key) in cases {
            let service = service.map(|t| parse(t).unwrap());
            let server = server.map(|t| parse(t).unwrap());
            let error =
                resolve(service.as_ref(), server.as_ref(), &HealthControl::default()).unwrap_err();
            assert_eq!((error.origin, error.key), (origin, key), "{error}");
        }
    }

    #[test]
    fn timeout_defaults_to_at_most_the_interval() {
        let config = parse("kind = \"tcp\"\ninterval = 0.2").unwrap();
        let check = resolve(Some(&config), None, &HealthControl::default())
            .unwrap()
            .unwrap();
        assert_eq!(check.timeout, Duration::from_millis(200));
    }
}
