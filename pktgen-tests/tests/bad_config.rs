//! `pylon --config FILE` with a configuration it must reject: it exits
//! non-zero within seconds, its stderr names the file, the key and the
//! problem, and the dataplane never started (no DPDK runtime directory).
//! The DSR and tunnel cases come with the valid configuration they break,
//! which `pylon --check` must accept, so that a rejection is for the named
//! reason and not for another.
//!
//! Runs pylon directly, without namespaces. Needs root (DPDK's runtime
//! directory) and `target/release/pylon` (or `PYLON_BIN`).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pktgen_tests::{
    dpdk_runtime_dir, e2e_lock, file_prefix_for, preflight, run_to_exit, unique_id, ScratchDir,
};

/// How long pylon may take to reject a configuration.
const REJECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A valid configuration, to break in one place per test. The interfaces
/// do not exist: a pylon that wrongly accepted the file would fail later,
/// in the dataplane, which the runtime-directory check catches.
fn base_config(file_prefix: &str, dir: &Path) -> String {
    format!(
        r#"[eal]
file_prefix = "{file_prefix}"
main_lcore = 0
lcores = "0@0,1@1"
no_huge = true
memory_mb = 256

[dataplane]
workers = [1]
idle_polls = 64
idle_sleep_us = 100
conn_capacity = 65536

[control]
stats_file = "{stats}"
log = "info"

[[ports]]
name = "client"
device = "net_af_packet0,iface=pcfgnone0"
address = "10.0.1.1/24"

[[ports]]
name = "servers"
device = "net_af_packet1,iface=pcfgnone1"
address = "10.0.2.1/24"

[[services]]
name = "web"
vip = "10.0.1.100"
port = 80
protocol = "tcp"
scheduler = "wlc"
forwarding = "nat"

[[services.servers]]
address = "10.0.2.11"
port = 8080
weight = 1

[[services.servers]]
address = "10.0.2.12"
port = 8080
weight = 2
"#,
        stats = dir.join("stats.json").display()
    )
}

/// The entries of /var/run/dpdk.
fn dpdk_runtime_entries() -> BTreeSet<String> {
    fs::read_dir("/var/run/dpdk")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `config` (when given; a missing file otherwise), runs pylon on it
/// and checks the rejection. `must_name` lists groups of alternatives: for
/// each group, stderr must contain one of them (case-insensitively), besides
/// the file's path.
fn rejects(
    case: &str,
    config: impl FnOnce(&str, &Path) -> Option<String>,
    must_name: &[&[&str]],
) -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let id = unique_id("pcfg");
    let scratch = ScratchDir::new(&id)?;
    let file_prefix = file_prefix_for(&id);
    let path = scratch.path().join(format!("{case}.toml"));
    if let Some(text) = config(&file_prefix, scratch.path()) {
        fs::write(&path, text)?;
    }
    let before = dpdk_runtime_entries();

    let exit = run_to_exit(
        &path,
        &[],
        &scratch.path().join("stderr.txt"),
        REJECT_TIMEOUT,
    )
    .with_context(|| format!("case {case}"))?;
    eprintln!(
        "{case}: {} after {:?}; stderr:\n{}",
        exit.status, exit.elapsed, exit.stderr
    );

    ensure!(
        !exit.status.success(),
        "pylon accepted the {case} config (exit 0)"
    );
    ensure!(
        exit.stderr.contains(&path.display().to_string()),
        "{case}: stderr does not name the file {}:\n{}",
        path.display(),
        exit.stderr
    );
    let stderr = exit.stderr.to_lowercase();
    for group in must_name {
        ensure!(
            group
                .iter()
                .any(|word| stderr.contains(&word.to_lowercase())),
            "{case}: stderr names none of {group:?}:\n{}",
            exit.stderr
        );
    }
    let runtime = dpdk_runtime_dir(&file_prefix);
    ensure!(
        !runtime.exists(),
        "{case}: the dataplane started ({} exists)",
        runtime.display()
    );
    let created: Vec<String> = dpdk_runtime_entries()
        .difference(&before)
        .cloned()
        .collect();
    ensure!(
        created.is_empty(),
        "{case}: DPDK runtime directories appeared: {created:?}"
    );
    Ok(())
}

#[test]
fn unknown_key_is_rejected() -> Result<()> {
    rejects(
        "unknown_key",
        |prefix, dir| {
            Some(base_config(prefix, dir).replace(
                "scheduler = \"wlc\"\n",
                "scheduler = \"wlc\"\ncolour = \"blue\"\n",
            ))
        },
        &[&["colour"], &["unknown"]],
    )
}

#[test]
fn duplicate_service_is_rejected() -> Result<()> {
    rejects(
        "duplicate_service",
        |prefix, dir| {
            let base = base_config(prefix, dir);
            let service = &base[base.find("[[services]]").expect("a service")..];
            Some(format!("{base}\n{service}"))
        },
        &[
            &["services[1]", "services.1", "web"],
            &["duplicate", "also", "twice", "already"],
        ],
    )
}

#[test]
fn weight_out_of_range_is_rejected() -> Result<()> {
    rejects(
        "weight_70000",
        |prefix, dir| Some(base_config(prefix, dir).replace("weight = 2", "weight = 70000")),
        &[&["weight"], &["70000", "65535"]],
    )
}

#[test]
fn real_server_off_every_subnet_is_rejected() -> Result<()> {
    rejects(
        "server_off_subnet",
        |prefix, dir| {
            Some(
                base_config(prefix, dir)
                    .replace("address = \"10.0.2.12\"", "address = \"10.0.9.12\""),
            )
        },
        &[
            &["address"],
            &["10.0.9.12"],
            &["subnet", "network", "reach"],
        ],
    )
}

#[test]
fn missing_file_is_rejected() -> Result<()> {
    rejects(
        "missing_file",
        |_, _| None,
        &[&["no such file", "not found", "does not exist"]],
    )
}

/// `text` with each of the `count` occurrences of `from` replaced by `to`;
/// panics when `from` occurs another number of times, so that an edit that
/// no longer applies cannot leave a test checking the unedited file.
fn edit(text: &str, from: &str, to: &str, count: usize) -> String {
    assert_eq!(
        text.matches(from).count(),
        count,
        "{from:?} in the config:\n{text}"
    );
    text.replace(from, to)
}

/// The base configuration with its service in `forwarding` mode: real
/// servers on the VIP's port 80 (DSR and tunnel do not translate ports).
fn direct_config(file_prefix: &str, dir: &Path, forwarding: &str) -> String {
    let config = edit(
        &base_config(file_prefix, dir),
        "forwarding = \"nat\"",
        &format!("forwarding = \"{forwarding}\""),
        1,
    );
    edit(&config, "port = 8080", "port = 80", 2)
}

/// Servers port with a gateway, and the first real server behind it.
fn behind_gateway(config: &str) -> String {
    let config = edit(
        config,
        "address = \"10.0.2.1/24\"\n",
        "address = \"10.0.2.1/24\"\ngateway = \"10.0.2.254\"\n",
        1,
    );
    edit(
        &config,
        "address = \"10.0.2.11\"",
        "address = \"10.0.9.11\"",
        1,
    )
}

/// The first real server on port 8080 while the service is on 80.
fn first_server_port_8080(config: &str) -> String {
    edit(
        config,
        "address = \"10.0.2.11\"\nport = 80\n",
        "address = \"10.0.2.11\"\nport = 8080\n",
        1,
    )
}

/// `pylon --config FILE --check` must accept `config` (exit 0).
fn accepts(case: &str, config: impl FnOnce(&str, &Path) -> String) -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let id = unique_id("pcfg");
    let scratch = ScratchDir::new(&id)?;
    let path = scratch.path().join(format!("{case}.toml"));
    fs::write(&path, config(&file_prefix_for(&id), scratch.path()))?;
    let exit = run_to_exit(
        &path,
        &["--check"],
        &scratch.path().join("stderr.txt"),
        REJECT_TIMEOUT,
    )?;
    ensure!(
        exit.status.success(),
        "pylon --check rejected the valid {case} config ({}):\n{}",
        exit.status,
        exit.stderr
    );
    Ok(())
}

#[test]
fn valid_dsr_and_tunnel_configs_pass_the_check() -> Result<()> {
    accepts("dsr", |prefix, dir| direct_config(prefix, dir, "dsr"))?;
    accepts("tunnel", |prefix, dir| direct_config(prefix, dir, "tunnel"))?;
    // A tunnel reaches real servers behind routers.
    accepts("tunnel_behind_gateway", |prefix, dir| {
        behind_gateway(&direct_config(prefix, dir, "tunnel"))
    })
}

#[test]
fn dsr_server_off_the_connected_subnets_is_rejected() -> Result<()> {
    rejects(
        "dsr_behind_gateway",
        |prefix, dir| Some(behind_gateway(&direct_config(prefix, dir, "dsr"))),
        &[
            &["services[0].servers[0].address"],
            &["10.0.9.11"],
            &["connected", "subnet", "directly", "on-link", "network"],
        ],
    )
}

#[test]
fn dsr_server_port_other_than_the_vip_port_is_rejected() -> Result<()> {
    rejects(
        "dsr_port_8080",
        |prefix, dir| Some(first_server_port_8080(&direct_config(prefix, dir, "dsr"))),
        &[&["services[0].servers[0].port"], &["80"]],
    )
}

#[test]
fn tunnel_server_port_other_than_the_vip_port_is_rejected() -> Result<()> {
    rejects(
        "tunnel_port_8080",
        |prefix, dir| {
            Some(first_server_port_8080(&direct_config(
                prefix, dir, "tunnel",
            )))
        },
        &[&["services[0].servers[0].port"], &["80"]],
    )
}
