//! The `[sync]` table of the configuration file (documented key by key in
//! `configs/README.md`), checked while it is read.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[sync]`: connection and configuration sync with the other appliances.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// `listen`: the UDP address our sync socket binds (`"10.9.0.1:8848"`);
    /// peers send to it, and we send from it.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// `peers`: the other appliances' `listen` addresses, 1 to 16.
    #[serde(deserialize_with = "peers")]
    pub peers: Vec<SocketAddr>,
    /// `key`: the shared HMAC-SHA256 key, hex (at least 32 digits), or an
    /// absolute path of a file holding it in hex.
    pub key: SecretKey,
    /// `interface`: bind the socket to this interface (`SO_BINDTODEVICE`),
    /// the management interface.
    #[serde(default)]
    pub interface: Option<String>,
    /// `max_rate`: datagrams per second we send, 1..=1000000; default
    /// 10000.
    #[serde(default = "default_max_rate", deserialize_with = "max_rate")]
    pub max_rate: u32,
    /// `startup_timeout`: seconds, 1..=3600; default 10. With no word from
    /// any peer for this long after start, there is no table to wait for.
    #[serde(default = "default_startup_timeout", deserialize_with = "seconds")]
    pub startup_timeout: u32,
    /// `refresh`: seconds, 1..=3600; default 60. Connections that carried
    /// packets in the last period are sent again, so the peers' timers for
    /// them restart.
    #[serde(default = "default_refresh", deserialize_with = "seconds")]
    pub refresh: u32,
    /// `queue`: connection events each worker can leave for the sync
    /// thread, 64..=4194304; default 65536. A full queue costs a full
    /// transfer, never a wait.
    #[serde(default = "default_queue", deserialize_with = "queue")]
    pub queue: u32,
    /// `push_config`: while this appliance serves (VRRP MASTER, or no
    /// VRRP), send its running services, servers and weights to every
    /// peer whose configuration digest differs; default false.
    #[serde(default)]
    pub push_config: bool,
    /// `accept_config`: apply a configuration a peer pushes, while this
    /// appliance serves none of its services (a VRRP backup), as runtime
    /// changes (`pylonctl diff` shows them against the file); default
    /// false.
    #[serde(default)]
    pub accept_config: bool,
}

fn default_max_rate() -> u32 {
    10_000
}

fn default_startup_timeout() -> u32 {
    10
}

fn default_refresh() -> u32 {
    60
}

fn default_queue() -> u32 {
    65_536
}

/// The key bytes; `Debug` does not show them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub Vec<u8>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({} bytes)", self.0.len())
    }
}

/// Hex digits to bytes; `None` for odd lengths or other characters.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.len() % 2 != 0 {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (hex, from) = if text.starts_with('/') {
            let path = PathBuf::from(&text);
            let content = std::fs::read_to_string(&path)
                .map_err(|e| D::Error::custom(format!("key file {text}: {e}")))?;
            (content, format!("key file {text}"))
        } else {
            (text, "the key".to_owned())
        };
        let bytes = from_hex(&hex).ok_or_else(|| {
            D::Error::custom(format!(
                "{from} is not hex (an even number of 0-9 a-f digits), nor an absolute file path"
            ))
        })?;
        if bytes.len() < crate::wire::MIN_KEY_LEN {
            return Err(D::Error::custom(format!(
                "{from} has {} bytes; at least {} (32 hex digits) are needed",
                bytes.len(),
                crate::wire::MIN_KEY_LEN
            )));
        }
        Ok(SecretKey(bytes))
    }
}

fn parse_addr<E: serde::de::Error>(text: &str) -> Result<SocketAddr, E> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        E::custom(format!(
            "`{text}` is not an IPv4 address and port (like 10.9.0.1:8848)"
        ))
    })?;
    if !addr.is_ipv4() || addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(E::custom(format!(
            "`{text}` must be an IPv4 host address with a port 1..=65535"
        )));
    }
    Ok(addr)
}

fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    parse_addr(&String::deserialize(d)?)
}

fn peers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    if list.is_empty() || list.len() > 16 {
        return Err(D::Error::custom(format!(
            "{} peers; 1 to 16 are needed",
            list.len()
        )));
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    for text in &list {
        let addr = parse_addr(text)?;
        if out.contains(&addr) {
            return Err(D::Error::custom(format!("{addr} is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

fn ranged<'de, D: Deserializer<'de>>(d: D, min: u32, max: u32) -> Result<u32, D::Error> {
    let v = i64::deserialize(d)?;
    u32::try_from(v)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| D::Error::custom(format!("{v} is out of range {min}..={max}")))
}

fn max_rate<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 1, 1_000_000)
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 1, 3600)
}

fn queue<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    ranged(d, 64, 4_194_304)
}

/// A rule between `[sync]` keys is broken: key and problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    pub key: String,
    pub problem: String,
}

impl Sync {
    /// The rules between keys (single values are checked while reading).
    pub fn check(&self) -> Result<(), Invalid> {
        if let Some(i) = self.peers.iter().position(|p| *p == self.listen) {
            return Err(Invalid {
                key: format!("sync.peers[{i}]"),
                problem: format!("{} is our own sync.listen address", self.listen),
            });
        }
        if let Some(name) = &self.interface {
            let ok = !name.is_empty()
                && name.len() < 16
                && !name.contains('/')
                && !name.chars().any(char::is_whitespace);
            if !ok {
                return Err(Invalid {
                    key: "sync.interface".to_owned(),
                    problem: format!(
                        "`{name}` is not an interface name (1-15 characters, no `/` or spaces)"
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff";

    fn parse(text: &str) -> Result<Sync, String> {
        toml::from_str::<Sync>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_with_defaults() {
        let s = parse(&format!(
            "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\"]\nkey = \"{KEY}\"\n"
        ))
        .unwrap();
        assert_eq!(s.max_rate, 10_000);
        assert_eq!(s.startup_timeout, 10);
        assert_eq!(s.refresh, 60);
        assert_eq!(s.queue, 65_536);
        assert_eq!(s.key.0.len(), 16);
        assert_eq!(format!("{:?}", s.key), "SecretKey(16 bytes)");
        s.check().unwrap();
    }

    #[test]
    fn key_from_a_file() {
        let path = std::env::temp_dir().join(format!("pylon-sync-key-{}", std::process::id()));
        std::fs::write(&path, format!("{KEY}{KEY}\n")).unwrap();
        let s = parse(&format!(
            "listen = \"10.9.0.1:1\"\npeers = [\"10.9.0.2:1\"]\nkey = \"{}\"\n",
            path.display()
        ));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.unwrap().key.0.len(), 32);
    }

    #[test]
    fn bad_values() {
        let base = |extra: &str| {
            parse(&format!(
                "listen = \"10.9.0.1:8848\"\npeers = [\"10.9.0.2:8848\"]\nkey = \"{KEY}\"\n{extra}"
            ))
        };
        assert!(base("max_rate = 0").unwrap_err().contains("out of range"));
        assert!(base("queue = 8").unwrap_err().contains("out of range"));
        assert!(base("nope = 1").unwrap_err().contains("unknown field"));
        let short = parse("listen = \"10.9.0.1:1\"\npeers = [\"10.9.0.2:1\"]\nkey = \"0011\"\n");
        assert!(short.unwrap_err().contains("at least 16"));
        let nothex = parse("listen = \"10.9.0.1:1\"\npeers = [\"10.9.0.2:1\"]\nkey = \"xyz\"\n");
        assert!(nothex.unwrap_err().contains("not hex"));
        let twice = parse(&format!(
            "listen = \"10.9.0.1:1\"\npeers = [\"10.9.0.2:1\", \"10.9.0.2:1\"]\nkey = \"{KEY}\"\n"
        ));
        assert!(twice.unwrap_err().contains("twice"));
        let noport = parse(&format!(
            "listen = \"10.9.0.1\"\npeers = [\"10.9.0.2:1\"]\nkey = \"{KEY}\"\n"
        ));
        assert!(noport.unwrap_err().contains("not an IPv4 address and port"));
        let ourselves = base("").map(|mut s| {
            s.peers.push(s.listen);
            s.check()
        });
        assert_eq!(ourselves.unwrap().unwrap_err().key, "sync.peers[1]");
    }
}
