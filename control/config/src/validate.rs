//! Rules that relate keys to each other. Single-value rules (ranges, address
//! syntax) are checked while deserializing, in `de.rs`.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::de::subnet_edge;
use crate::lcores::{lcore_ids, MAX_LCORE};
use crate::{Config, Forwarding, Port, Service};

/// At most this many data ports.
const MAX_PORTS: usize = 16;

/// A broken rule: the key path and the problem.
pub(crate) struct Invalid {
    pub(crate) key: String,
    pub(crate) problem: String,
}

type Checked = Result<(), Invalid>;

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Checked {
    Err(Invalid {
        key: key.into(),
        problem: problem.into(),
    })
}

/// Checks every rule that involves more than one value; the first broken
/// rule is reported.
pub(crate) fn check(config: &Config) -> Checked {
    eal(config)?;
    workers(config)?;
    lcores(config)?;
    if config.neighbors.expiry <= config.neighbors.refresh {
        return invalid(
            "neighbors.expiry",
            format!(
                "{} must be greater than neighbors.refresh ({})",
                config.neighbors.expiry, config.neighbors.refresh
            ),
        );
    }
    if config.control.stats_file.as_os_str().is_empty() {
        return invalid("control.stats_file", "must not be empty");
    }
    control_socket(config)?;
    if let Some(addr) = config.control.metrics {
        if addr.port() == 0 {
            return invalid(
                "control.metrics",
                format!("{addr}: needs a port (1..=65535)"),
            );
        }
    }
    ports(config)?;
    services(config)?;
    vrrp(config)?;
    match &config.sync {
        Some(sync) => sync.check().map_err(|e| Invalid {
            key: e.key,
            problem: e.problem,
        }),
        None => Ok(()),
    }
}

/// `control.socket`: an absolute path with a file name; a Unix socket
/// path holds at most 107 bytes (`sun_path`).
fn control_socket(config: &Config) -> Checked {
    let path = &config.control.socket;
    let key = "control.socket";
    if !path.is_absolute() || path.file_name().is_none() {
        return invalid(
            key,
            format!("`{}` must be an absolute file path", path.display()),
        );
    }
    let len = path.as_os_str().len();
    if len > 107 {
        return invalid(
            key,
            format!("{len} bytes long; a Unix socket path holds at most 107"),
        );
    }
    Ok(())
}

/// The `[[vrrp]]` rules between keys, as `pylon-vrrp` states them.
fn vrrp(config: &Config) -> Checked {
    let ports: Vec<pylon_vrrp::config::PortRef<'_>> = config
        .ports
        .iter()
        .map(|p| pylon_vrrp::config::PortRef {
            name: &p.name,
            address: p.address.addr(),
        })
        .collect();
    let services: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    pylon_vrrp::config::check(&config.vrrp, &ports, &services).map_err(|e| Invalid {
        key: e.key,
        problem: e.problem,
    })
}

fn eal(config: &Config) -> Checked {
    let eal = &config.eal;
    // The mempool rule `cache_size <= n / 1.5`, in integers.
    if u64::from(eal.mbuf_cache) * 3 > u64::from(eal.mbufs) * 2 {
        return invalid(
            "eal.mbuf_cache",
            format!(
                "{} is more than eal.mbufs / 1.5 ({} mbufs allow at most {})",
                eal.mbuf_cache,
                eal.mbufs,
                u64::from(eal.mbufs) * 2 / 3
            ),
        );
    }
    Ok(())
}

fn workers(config: &Config) -> Checked {
    let workers = &config.dataplane.workers;
    let key = "dataplane.workers";
    if workers.is_empty() {
        return invalid(key, "at least one worker lcore is required");
    }
    let mut seen = HashSet::new();
    for &id in workers {
        if id >= MAX_LCORE {
            return invalid(key, format!("lcore {id} is not below {MAX_LCORE}"));
        }
        if id == config.eal.main_lcore {
            return invalid(
                key,
                format!("lcore {id} is the main lcore (eal.main_lcore)"),
            );
        }
        if !seen.insert(id) {
            return invalid(key, format!("lcore {id} is listed twice"));
        }
    }
    Ok(())
}

fn lcores(config: &Config) -> Checked {
    let Some(map) = &config.eal.lcores else {
        return Ok(());
    };
    let key = "eal.lcores";
    let ids = match lcore_ids(map) {
        Ok(ids) => ids,
        Err(problem) => {
            return invalid(
                key,
                format!("`{map}` is not an EAL lcore mapping (like 0@0,1@1,2@1): {problem}"),
            )
        }
    };
    let main = config.eal.main_lcore;
    if !ids.contains(&main) {
        return invalid(
            key,
            format!("`{map}` does not map the main lcore {main} (eal.main_lcore)"),
        );
    }
    if let Some(worker) = config
        .dataplane
        .workers
        .iter()
        .find(|worker| !ids.contains(worker))
    {
        return invalid(
            key,
            format!("`{map}` does not map worker lcore {worker} (dataplane.workers)"),
        );
    }
    Ok(())
}

fn ports(config: &Config) -> Checked {
    let ports = &config.ports;
    if ports.is_empty() {
        return invalid("ports", "at least one [[ports]] table is required");
    }
    if ports.len() > MAX_PORTS {
        return invalid(
            "ports",
            format!(
                "{} ports given, at most {MAX_PORTS} are supported",
                ports.len()
            ),
        );
    }
    let mut gateway_port: Option<usize> = None;
    for (i, port) in ports.iter().enumerate() {
        let earlier = &ports[..i];
        if let Some(j) = earlier.iter().position(|other| other.name == port.name) {
            return invalid(
                format!("ports[{i}].name"),
                format!("`{}` is also the name of ports[{j}]", port.name),
            );
        }
        if let Some(j) = earlier
            .iter()
            .position(|other| other.dpdk_name() == port.dpdk_name())
        {
            return invalid(
                format!("ports[{i}].device"),
                format!(
                    "device `{}` is also the device of ports[{j}] (`{}`)",
                    port.dpdk_name(),
                    ports[j].name
                ),
            );
        }
        let subnet = port.address.trunc();
        if let Some(j) = earlier.iter().position(|other| {
            let other = other.address.trunc();
            other.contains(&subnet) || subnet.contains(&other)
        }) {
            return invalid(
                format!("ports[{i}].address"),
                format!(
                    "subnet {subnet} overlaps {} of ports[{j}] (`{}`)",
                    ports[j].address.trunc(),
                    ports[j].name
                ),
            );
        }
        if let Some(gateway) = port.gateway {
            gateway_check(i, port, gateway)?;
            if let Some(j) = gateway_port {
                return invalid(
                    format!("ports[{i}].gateway"),
                    format!(
                        "ports[{j}] (`{}`) already has a gateway; at most one port may have one",
                        ports[j].name
                    ),
                );
            }
            gateway_port = Some(i);
        }
    }
    Ok(())
}

fn gateway_check(i: usize, port: &Port, gateway: Ipv4Addr) -> Checked {
    let key = format!("ports[{i}].gateway");
    let subnet = port.address.trunc();
    if !subnet.contains(&gateway) {
        return invalid(
            key,
            format!("{gateway} is outside the port's subnet {subnet}"),
        );
    }
    if gateway == port.address.addr() {
        return invalid(key, format!("{gateway} is the port's own address"));
    }
    if let Some(what) = subnet_edge(port.address, gateway) {
        return invalid(key, format!("{gateway} is {what} {subnet}"));
    }
    Ok(())
}

/// The port whose own address is `addr`, if any.
fn port_with_address(config: &Config, addr: Ipv4Addr) -> Option<(usize, &Port)> {
    config
        .ports
        .iter()
        .enumerate()
        .find(|(_, port)| port.address.addr() == addr)
}

/// Why `addr` cannot be a host on a port's subnet: the subnet's network or
/// broadcast address.
fn edge_of_port_subnet(config: &Config, addr: Ipv4Addr) -> Option<String> {
    config.ports.iter().enumerate().find_map(|(i, port)| {
        subnet_edge(port.address, addr).map(|what| {
            format!(
                "{addr} is {what} {} of ports[{i}] (`{}`)",
                port.address.trunc(),
                port.name
            )
        })
    })
}

fn services(config: &Config) -> Checked {
    let services = &config.services;
    let vips: HashMap<Ipv4Addr, usize> = services
        .iter()
        .enumerate()
        .rev()
        .map(|(i, service)| (service.vip, i))
        .collect();
    for (i, service) in services.iter().enumerate() {
        let earlier = &services[..i];
        if let Some(j) = earlier.iter().position(|other| other.name == service.name) {
            return invalid(
                format!("services[{i}].name"),
                format!("`{}` is also the name of services[{j}]", service.name),
            );
        }
        if let Some((j, port)) = port_with_address(config, service.vip) {
            return invalid(
                format!("services[{i}].vip"),
                format!(
                    "{} is the address of ports[{j}] (`{}`)",
                    service.vip, port.name
                ),
            );
        }
        if let Some(problem) = edge_of_port_subnet(config, service.vip) {
            return invalid(format!("services[{i}].vip"), problem);
        }
        if let Some(j) = earlier.iter().position(|other| {
            (other.vip, other.port, other.protocol) == (service.vip, service.port, service.protocol)
        }) {
            return invalid(
                format!("services[{i}]"),
                format!(
                    "{}:{}/{} is also services[{j}] (`{}`)",
                    service.vip, service.port, service.protocol, services[j].name
                ),
            );
        }
        servers(config, i, service, &vips)?;
        sorry(config, i, service, &vips)?;
    }
    Ok(())
}

fn servers(
    config: &Config,
    i: usize,
    service: &Service,
    vips: &HashMap<Ipv4Addr, usize>,
) -> Checked {
    if service.servers.is_empty() {
        return invalid(
            format!("services[{i}].servers"),
            "at least one [[services.servers]] table is required",
        );
    }
    for (k, server) in service.servers.iter().enumerate() {
        let key = format!("services[{i}].servers[{k}]");
        let addr = server.address;
        if let Some(j) = service.servers[..k]
            .iter()
            .position(|other| (other.address, other.port) == (addr, server.port))
        {
            return invalid(
                key,
                format!(
                    "{addr}:{} is also servers[{j}] of this service",
                    server.port
                ),
            );
        }
        endpoint(
            config,
            service,
            vips,
            &format!("services[{i}].servers[{k}]"),
            addr,
            server.port,
        )?;
    }
    Ok(())
}

/// Resolves every server's health check (service defaults under the
/// server's overrides) and stores it in the server; also checks
/// `control.health_interface`.
pub(crate) fn health_checks(config: &mut Config) -> Checked {
    if let Some(name) = &config.control.health_interface {
        if let Some(problem) = pylon_health::config::interface_problem(name) {
            return invalid("control.health_interface", problem);
        }
    }
    let control = config.control.health();
    for (i, service) in config.services.iter_mut().enumerate() {
        let defaults = service.health.clone();
        for (k, server) in service.servers.iter_mut().enumerate() {
            server.check =
                pylon_health::config::resolve(defaults.as_ref(), server.health.as_ref(), &control)
                    .map_err(|e| {
                        let table = match e.origin {
                            pylon_health::Origin::Service => format!("services[{i}].health"),
                            pylon_health::Origin::Server => {
                                format!("services[{i}].servers[{k}].health")
                            }
                        };
                        Invalid {
                            key: format!("{table}.{}", e.key),
                            problem: e.problem,
                        }
                    })?;
        }
    }
    Ok(())
}

/// The sorry server obeys the rules of a real server of the service.
fn sorry(config: &Config, i: usize, service: &Service, vips: &HashMap<Ipv4Addr, usize>) -> Checked {
    match &service.sorry {
        Some(sorry) => endpoint(
            config,
            service,
            vips,
            &format!("services[{i}].sorry"),
            sorry.address,
            sorry.port,
        ),
        None => Ok(()),
    }
}

/// The rules a real server (or sorry server) address and port follow,
/// reported under `{table}.address` / `{table}.port`.
fn endpoint(
    config: &Config,
    service: &Service,
    vips: &HashMap<Ipv4Addr, usize>,
    table: &str,
    addr: Ipv4Addr,
    port: u16,
) -> Checked {
    let key = format!("{table}.address");
    if let Some((j, p)) = port_with_address(config, addr) {
        return invalid(
            key,
            format!("{addr} is the address of ports[{j}] (`{}`)", p.name),
        );
    }
    if let Some(&j) = vips.get(&addr) {
        return invalid(
            key,
            format!(
                "{addr} is the VIP of services[{j}] (`{}`)",
                config.services[j].name
            ),
        );
    }
    if let Some(problem) = edge_of_port_subnet(config, addr) {
        return invalid(key, problem);
    }
    if config.port_for(addr).is_none() {
        return invalid(
            key,
            format!("{addr} is not on any port's subnet and no port has a gateway"),
        );
    }
    // Direct routing only rewrites the MAC: the server must be on link.
    if service.forwarding == Forwarding::Dsr
        && !config.ports.iter().any(|p| p.address.contains(&addr))
    {
        return invalid(
            key,
            format!(
                "{addr} is not on any port's connected subnet; forwarding `dsr` rewrites only \
                 the MAC, so the server must share a link with Pylon (use `tunnel` for \
                 servers behind routers)"
            ),
        );
    }
    // Without NAT the server receives the packet as the client sent it.
    if service.forwarding != Forwarding::Nat && port != service.port {
        return invalid(
            format!("{table}.port"),
            format!(
                "{port} differs from the service port {}; forwarding `{}` does not translate \
                 ports (use `nat`, or the same port)",
                service.port, service.forwarding
            ),
        );
    }
    Ok(())
}
