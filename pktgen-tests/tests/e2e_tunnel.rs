//! End to end, IP-in-IP tunnel forwarding (RFC 2003) on one L2 segment
//! ([`pktgen_tests::Topology::lan`]): pylon wraps each client packet in an
//! outer IPv4 header from its port address to the real server; each server
//! decapsulates (`scripts/ipip_decap.py` into a TUN device holding the VIP,
//! the stand-in for the kernel's ipip device this kernel lacks) and answers
//! the client directly.
//!
//! - 1,200 real HTTP requests through the VIP: all succeed, split 1/2/3
//!   within 10 %, the servers decapsulate every packet pylon forwards, and
//!   the replies do not pass through pylon (see `common::direct_return`).
//! - Path MTU: a DF packet that fits the tunnel exactly (1480 + 20 = 1500,
//!   the port MTU) is forwarded; one of 1500 bytes is answered by pylon with
//!   ICMP fragmentation needed, next-hop MTU 1480, quoting the packet
//!   (`scripts/too_big.py`), and counted as `too_big`.
//!
//! Needs root and `target/release/pylon` (or `PYLON_BIN`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pktgen_tests::topology::{CLIENT_ADDR, LB_CLIENT_ADDR, VIP};
use pktgen_tests::{
    drop_counter, e2e_lock, harmful_drops, preflight, worker_counter, Forwarding, PylonOptions,
    Topology,
};
use serde_json::Value;

/// Pylon's port MTU (the default) and the outer header's size.
const PORT_MTU: u16 = 1500;
const OUTER_HEADER: u16 = 20;
/// How long to wait for the answer to a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[test]
fn tunnel_wlc_one_worker() -> Result<()> {
    common::direct_return(Forwarding::Tunnel, 1, 1200)
}

fn text<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value[key]
        .as_str()
        .with_context(|| format!("no string {key:?} in {value}"))
}

fn int(value: &Value, key: &str) -> Result<u64> {
    value[key]
        .as_u64()
        .with_context(|| format!("no number {key:?} in {value}"))
}

#[test]
fn df_packet_too_big_for_the_tunnel_gets_fragmentation_needed() -> Result<()> {
    let _lock = e2e_lock()?;
    preflight()?;
    let mut topo = Topology::lan("ptunmtu", Forwarding::Tunnel)?;
    topo.start_http_servers()?;
    let mut pylon = topo.run_pylon(&topo.pylon_config(&PylonOptions::new(1, "wlc")))?;
    let pylon_mac = topo.pylon_mac()?;
    let server_macs = topo
        .servers()
        .iter()
        .map(|server| topo.server_mac(server))
        .collect::<Result<Vec<_>>>()?;
    let port_addr = LB_CLIENT_ADDR.split('/').next().unwrap_or(LB_CLIENT_ADDR);

    // The largest packet that fits: forwarded, and the real server's SYN-ACK
    // comes straight from its own MAC.
    let fits = topo.df_probe(PORT_MTU - OUTER_HEADER, PROBE_TIMEOUT)?;
    eprintln!("{} bytes with DF: {fits}", PORT_MTU - OUTER_HEADER);
    ensure!(
        fits["icmp"].is_null(),
        "a DF packet that fits the tunnel got an ICMP error: {fits}"
    );
    let syn_ack = &fits["syn_ack"];
    ensure!(
        !syn_ack.is_null(),
        "a DF packet that fits the tunnel got no SYN-ACK within {PROBE_TIMEOUT:?}: {fits}"
    );
    let from_mac = text(syn_ack, "eth_src")?;
    ensure!(
        text(syn_ack, "src")? == VIP
            && int(syn_ack, "ack")? == int(syn_ack, "expected_ack")?
            && server_macs.iter().any(|mac| mac == from_mac),
        "the SYN-ACK is not a real server's answer from the VIP: {syn_ack} \
         (server MACs {server_macs:?})"
    );
    let stats = pylon.stats()?;
    ensure!(
        drop_counter(&stats, "too_big")? == 0,
        "a packet that fits was counted too_big"
    );

    // One byte over: pylon answers with fragmentation needed.
    let big = topo.df_probe(PORT_MTU, PROBE_TIMEOUT)?;
    eprintln!("{PORT_MTU} bytes with DF: {big}");
    ensure!(
        big["syn_ack"].is_null(),
        "a DF packet too big for the tunnel was forwarded: {big}"
    );
    let icmp = &big["icmp"];
    ensure!(
        !icmp.is_null(),
        "no ICMP error within {PROBE_TIMEOUT:?} for a DF packet too big for the tunnel: {big}"
    );
    let sent = &big["sent"];
    let quoted = text(icmp, "quoted")?;
    let checks: BTreeMap<&str, bool> = BTreeMap::from([
        (
            "sent by pylon (its MAC)",
            text(icmp, "eth_src")? == pylon_mac,
        ),
        (
            "from the VIP or pylon's port address",
            [VIP, port_addr].contains(&text(icmp, "src")?),
        ),
        ("to the client", text(icmp, "dst")? == CLIENT_ADDR),
        ("valid IP header checksum", icmp["ip_checksum_ok"] == true),
        ("type 3 (destination unreachable)", int(icmp, "type")? == 3),
        ("code 4 (fragmentation needed)", int(icmp, "code")? == 4),
        ("unused bytes 4-5 zero", int(icmp, "unused")? == 0),
        (
            "next-hop MTU = port MTU - 20",
            int(icmp, "next_hop_mtu")? == u64::from(PORT_MTU - OUTER_HEADER),
        ),
        ("valid ICMP checksum", icmp["checksum_ok"] == true),
        (
            "quotes the sent IP header",
            quoted.get(..40) == Some(text(sent, "ip_header")?),
        ),
        (
            "quotes the first 8 bytes of the TCP header",
            quoted.get(40..56) == Some(text(sent, "l4_head")?),
        ),
        (
            "at most 576 bytes (RFC 1812)",
            int(icmp, "ip_total_length")? <= 576,
        ),
    ]);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(what, _)| *what)
        .collect();
    ensure!(
        failed.is_empty(),
        "the ICMP reply is wrong: not {failed:?}\nreply: {icmp:#}\nsent: {sent}"
    );

    let stats = pylon.stats_until(Duration::from_secs(2), |s| {
        drop_counter(s, "too_big").is_ok_and(|n| n >= 1)
    })?;
    let too_big = drop_counter(&stats, "too_big")?;
    let icmp_sent = worker_counter(&stats, "icmp_sent")?;
    eprintln!("too_big {too_big}, icmp_sent {icmp_sent}");
    ensure!(
        too_big == 1,
        "one packet was too big, too_big counts {too_big}"
    );
    ensure!(
        icmp_sent >= 1,
        "pylon sent an ICMP error but icmp_sent counts {icmp_sent}"
    );
    let harmful: BTreeMap<String, u64> = harmful_drops(&stats)
        .into_iter()
        .filter(|(reason, _)| reason != "too_big")
        .collect();
    ensure!(
        harmful.is_empty(),
        "pylon dropped packets: {harmful:?}\nstats: {stats:#}"
    );
    pylon.stop_cleanly()
}
