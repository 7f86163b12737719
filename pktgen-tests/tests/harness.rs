//! Tests of the harness itself, without pylon: the topologies come up as
//! described, the HTTP servers and the client work through the switch, the
//! DSR and tunnel real servers take packets for the VIP (sent to their MAC,
//! or encapsulated to their address, as pylon will) without answering ARP
//! for it, the management interface reaches the real servers on-link and
//! the harness can stop, restart and cut off a server, and everything is
//! gone afterwards. Needs root.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use pktgen_tests::topology::{
    CLIENT_IF, HTTP_PORT, LB_CLIENT_IF, LB_LAN_IF, LB_SERVER_IF, MGMT_ADDR, MGMT_IF, SERVER_ADDRS,
    SERVER_IF, SORRY_ADDR, SORRY_NAME, TUN_IF, VIP,
};
use pktgen_tests::{
    cleanup_stale, e2e_lock, require_root, vip_url, Forwarding, LoadClient, LoadOptions, Outcome,
    PylonOptions, PylonProcess, Request, Requests, Topology,
};

fn namespaces() -> Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

fn stdout(topo: &Topology, ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = topo.exec(ns, program, args)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn topology_comes_up_serves_http_and_goes_away() -> Result<()> {
    let _lock = e2e_lock()?;
    require_root()?;
    let mut topo = Topology::new("pharn")?;
    let (client, lb) = (topo.client_ns().to_owned(), topo.lb_ns().to_owned());
    let all: Vec<String> = [client.clone(), lb.clone(), topo.switch_ns().to_owned()]
        .into_iter()
        .chain(topo.servers().iter().map(|s| s.ns.clone()))
        .collect();
    let present = namespaces()?;
    for ns in &all {
        ensure!(present.contains(ns), "namespace {ns} missing: {present:?}");
    }

    // The lb side is silent: no IPv4 address but loopback's, IPv6 off.
    let lb_addrs = stdout(&topo, &lb, "ip", &["-4", "-o", "addr", "show"])?;
    ensure!(
        lb_addrs.lines().all(|l| l.contains(" lo ")),
        "lb namespace has addresses: {lb_addrs}"
    );
    for iface in [LB_CLIENT_IF, LB_SERVER_IF] {
        let v6 = stdout(
            &topo,
            &lb,
            "sysctl",
            &["-n", &format!("net.ipv6.conf.{iface}.disable_ipv6")],
        )?;
        ensure!(v6.trim() == "1", "IPv6 is on for {iface}");
        let link = stdout(&topo, &lb, "ip", &["-o", "link", "show", iface])?;
        ensure!(
            link.contains("state UP") || link.contains(",UP"),
            "{iface} is down: {link}"
        );
        ensure!(topo.lb_mac(iface)?.len() == 17, "no MAC for {iface}");
    }

    // The client: address, default route via pylon, checksum offload off.
    let addr = stdout(
        &topo,
        &client,
        "ip",
        &["-4", "-o", "addr", "show", "dev", CLIENT_IF],
    )?;
    ensure!(addr.contains("10.0.1.2/24"), "client address: {addr}");
    let route = stdout(&topo, &client, "ip", &["route", "show", "default"])?;
    ensure!(route.contains("via 10.0.1.1"), "client route: {route}");
    let features = stdout(&topo, &client, "ethtool", &["-k", CLIENT_IF])?;
    ensure!(
        features.contains("tx-checksumming: off"),
        "client offload still on: {features}"
    );

    // The real servers answer with their names, through the bridge.
    topo.start_http_servers()?;
    let rs1 = topo.servers()[0].ns.clone();
    for (i, addr) in SERVER_ADDRS.iter().enumerate() {
        let url = format!("http://{addr}:{HTTP_PORT}/");
        let result = topo.run_client_from(&rs1, 20, &url)?;
        result.check_all_ok(20)?;
        let name = format!("rs{}", i + 1);
        ensure!(
            result.by_server.get(&name) == Some(&20),
            "{url} answered {:?}",
            result.by_server
        );
    }

    // A server can be made to answer with another status.
    topo.set_http_status(1, 503)?;
    let url = format!("http://{}:{HTTP_PORT}/", SERVER_ADDRS[1]);
    let result = topo.run_client_from(&rs1, 3, &url)?;
    ensure!(
        result.ok == 0 && result.failed == 3,
        "expected 3 failures: {result:?}"
    );
    ensure!(
        result.errors[0].contains("HTTP 503 from 'rs2'"),
        "{:?}",
        result.errors
    );
    topo.set_http_status(1, 200)?;
    topo.run_client_from(&rs1, 3, &url)?.check_all_ok(3)?;

    // Without pylon the VIP does not answer: the client times out.
    let result = topo.run_client(1, &vip_url())?;
    ensure!(
        result.failed == 1,
        "the VIP answered without pylon: {result:?}"
    );

    let dir: PathBuf = topo.dir().to_owned();
    drop(topo);
    let left = namespaces()?;
    for ns in &all {
        ensure!(!left.contains(ns), "namespace {ns} left behind");
    }
    ensure!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}

#[test]
fn stale_leftovers_of_dead_runs_are_removed() -> Result<()> {
    let _lock = e2e_lock()?;
    require_root()?;
    // A pid above any pid_max: that run is certainly dead.
    let dead = "pstale-4999999-0";
    let mine = format!("pstale-{}-99", std::process::id());
    for ns in [format!("{dead}-client"), format!("{mine}-client")] {
        pktgen_tests::process::ip(&["netns", "add", &ns])?;
    }
    let dead_dir = std::env::temp_dir().join(dead);
    std::fs::create_dir_all(&dead_dir)?;

    let removed = cleanup_stale("pstale")?;
    let left = namespaces()?;
    let own_kept = left.contains(&format!("{mine}-client"));
    pktgen_tests::process::ip(&["netns", "del", &format!("{mine}-client")])
        .context("removing this run's namespace")?;

    ensure!(
        removed == vec![format!("{dead}-client")],
        "removed {removed:?}"
    );
    ensure!(
        !left.contains(&format!("{dead}-client")),
        "stale namespace kept"
    );
    ensure!(own_kept, "this run's own namespace was removed");
    ensure!(!dead_dir.exists(), "stale scratch dir kept");
    Ok(())
}

#[test]
fn pylon_driver_rewrites_stats_and_stops_cleanly() -> Result<()> {
    let _lock = e2e_lock()?;
    require_root()?;
    let topo = Topology::new("pharn")?;
    let config = topo.pylon_config(&PylonOptions::default());

    let mut pylon = topo.run_pylon(&config)?;
    ensure!(pylon.runtime_dir().exists(), "no runtime dir while running");
    let mut last = 0;
    for n in 1..=3 {
        // uptime_ms counts whole milliseconds: two dumps within one would
        // read the same, so each signal goes a few milliseconds after the
        // last dump.
        std::thread::sleep(Duration::from_millis(5));
        let stats = pylon.stats()?;
        let uptime = stats["uptime_ms"].as_u64().context("uptime_ms")?;
        ensure!(
            uptime > last,
            "stats were not rewritten for SIGUSR1 #{n}: {stats}"
        );
        last = uptime;
    }
    pylon.stop_cleanly()?;
    ensure!(pylon.stats().is_err(), "stats of a stopped daemon");

    // A daemon that dies before writing stats is reported at once, with its
    // exit status.
    let err = PylonProcess::start_binary(
        std::path::Path::new("/bin/false"),
        Some(topo.lb_ns()),
        topo.dir(),
        &config,
    )
    .err()
    .context("/bin/false started")?;
    ensure!(
        format!("{err:#}").contains("exited (exit status: 1)"),
        "{err:#}"
    );
    Ok(())
}

fn sysctl(topo: &Topology, ns: &str, key: &str) -> Result<String> {
    Ok(stdout(topo, ns, "sysctl", &["-n", key])?.trim().to_owned())
}

/// What both LAN topologies share: one bridge, no addresses in the lb
/// namespace, the real servers on the client's subnet with the VIP and
/// without ARP for it, and nobody answering for the VIP without pylon.
fn check_lan(topo: &Topology, vip_dev: &str) -> Result<Vec<String>> {
    let lb = topo.lb_ns();
    let lb_addrs = stdout(topo, lb, "ip", &["-4", "-o", "addr", "show"])?;
    ensure!(
        lb_addrs.lines().all(|l| l.contains(" lo ")),
        "lb namespace has addresses: {lb_addrs}"
    );
    ensure!(topo.pylon_mac()?.len() == 17, "no MAC for {LB_LAN_IF}");
    let route = stdout(topo, topo.client_ns(), "ip", &["route", "show"])?;
    ensure!(
        !route.contains("default"),
        "the LAN client has a default route: {route}"
    );
    for server in topo.servers() {
        ensure!(
            server.addr.starts_with("10.0.1."),
            "{} is not on the client's subnet",
            server.addr
        );
        for (key, value) in [
            ("net.ipv4.conf.all.arp_ignore", "1"),
            (&format!("net.ipv4.conf.{SERVER_IF}.arp_ignore"), "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            (&format!("net.ipv4.conf.{SERVER_IF}.arp_announce"), "2"),
        ] {
            let got = sysctl(topo, &server.ns, key)?;
            ensure!(got == value, "{}: {key} = {got}", server.name);
        }
        let vip = stdout(
            topo,
            &server.ns,
            "ip",
            &["-4", "-o", "addr", "show", "dev", vip_dev],
        )?;
        ensure!(
            vip.contains(&format!("{VIP}/32")),
            "{}: no VIP on {vip_dev}: {vip}",
            server.name
        );
    }
    // Without pylon nobody answers ARP for the VIP: the client times out.
    let result = topo.run_client(1, &vip_url())?;
    ensure!(
        result.failed == 1,
        "the VIP answered without pylon: {result:?}"
    );
    topo.servers()
        .iter()
        .map(|server| topo.server_mac(server))
        .collect()
}

#[test]
fn dsr_lan_servers_answer_for_the_vip_directly() -> Result<()> {
    let _lock = e2e_lock()?;
    require_root()?;
    let mut topo = Topology::lan("pharn", Forwarding::Dsr)?;
    topo.start_http_servers()?;
    let macs = check_lan(&topo, "lo")?;
    // What pylon's DSR rewrite does: frames for the VIP to a server's MAC.
    // The server answers from the VIP itself.
    let client = topo.client_ns().to_owned();
    for (server, mac) in topo.servers().iter().zip(&macs) {
        topo.exec(
            &client,
            "ip",
            &[
                "neigh",
                "replace",
                VIP,
                "lladdr",
                mac,
                "dev",
                CLIENT_IF,
                "nud",
                "permanent",
            ],
        )?;
        let result = topo.run_client(10, &vip_url())?;
        result.check_all_ok(10)?;
        ensure!(
            result.by_server.get(&server.name) == Some(&10),
            "frames to {}'s MAC answered by {:?}",
            server.name,
            result.by_server
        );
    }
    Ok(())
}

#[test]
fn tunnel_lan_servers_decapsulate_and_answer_directly() -> Result<()> {
    let _lock = e2e_lock()?;
    require_root()?;
    let mut topo = Topology::lan("pharn", Forwarding::Tunnel)?;
    topo.start_http_servers()?;
    check_lan(&topo, TUN_IF)?;
    for server in topo.servers() {
        for key in ["all", "default", SERVER_IF, TUN_IF] {
            let key = format!("net.ipv4.conf.{key}.rp_filter");
            let got = sysctl(&topo, &server.ns, &key)?;
            ensure!(got == "0", "{}: {key} = {got}", server.name);
        }
    }
    // What pylon's tunnel mode sends: client->VIP packets inside IP-in-IP
    // to the server's address. The echo replies come from the VIP, not
    // encapsulated, and the server's TUN device received each request.
    for server in topo.servers() {
        let before = topo.iface_counter(&server.ns, TUN_IF, "rx_packets")?;
        let ping = topo.ipip_ping(server, 3)?;
        ensure!(
            ping["replies"] == 3,
            "encapsulated ping through {}: {ping}",
            server.name
        );
        let after = topo.iface_counter(&server.ns, TUN_IF, "rx_packets")?;
        ensure!(
            after - before == 3,
            "{}'s {TUN_IF} received {} packets for 3 encapsulated pings",
            server.name,
            after - before
        );
    }
    Ok(())
}

/// Requests from the lb namespace's kernel (where pylon's health checks
/// run) straight to `addr`:8080, for `duration`, with [`LoadClient`].
fn load_from_lb(topo: &Topology, addr: &str, duration: Duration) -> Result<Requests> {
    let client = LoadClient::start(
        topo.lb_ns(),
        LoadOptions {
            target: format!("{addr}:{HTTP_PORT}").parse()?,
            // Long enough for a SYN retransmission (1 s) on a loaded
            // machine or a link just brought up.
            timeout: Duration::from_secs(2),
            pause: Duration::from_millis(10),
            threads: 2,
        },
    )?;
    std::thread::sleep(duration);
    client.stop()
}

#[test]
fn management_interface_reaches_the_servers_on_link() -> Result<()> {
    let _lock = e2e_lock()?;
    require_root()?;
    let mut topo = Topology::with_management("pharn")?;
    ensure!(topo.has_management(), "no management interface");
    topo.start_http_servers()?;
    let lb = topo.lb_ns().to_owned();

    // The kernel of the lb namespace has the management address, on mgmt
    // only, and answers ARP for it only there.
    let lb_addrs = stdout(&topo, &lb, "ip", &["-4", "-o", "addr", "show"])?;
    let with_addr: Vec<&str> = lb_addrs.lines().filter(|l| !l.contains(" lo ")).collect();
    ensure!(
        with_addr.len() == 1
            && with_addr[0].contains(&format!(" {MGMT_IF} "))
            && with_addr[0].contains(&format!("{MGMT_ADDR}/24")),
        "lb namespace addresses: {lb_addrs}"
    );
    ensure!(sysctl(&topo, &lb, "net.ipv4.conf.all.arp_ignore")? == "1");
    ensure!(sysctl(&topo, &lb, "net.ipv4.conf.all.arp_announce")? == "2");

    // Every real server answers it on-link, at mgmt's MAC (not at that of
    // pylon's lbsrv on the same bridge); so does the sorry server.
    let mgmt_mac = topo.lb_mac(MGMT_IF)?;
    for (i, server) in topo.servers().iter().enumerate() {
        let requests = load_from_lb(&topo, server.addr, Duration::from_millis(300))?;
        let t0 = requests.all.first().context("no requests")?.start;
        let name = format!("rs{}", i + 1);
        ensure!(
            requests.all.len() >= 2
                && requests.all.iter().all(|r| r.outcome
                    == Outcome::Ok {
                        server: name.clone()
                    }),
            "{name} from the lb namespace: {}",
            requests.report(t0)
        );
        let mac = topo.neighbor_mac(&server.ns, MGMT_ADDR)?;
        ensure!(
            mac.as_deref() == Some(mgmt_mac.as_str()),
            "{name} reaches {MGMT_ADDR} at {mac:?}, {MGMT_IF} is {mgmt_mac}"
        );
    }
    let sorry = topo.sorry_server().context("no sorry server")?.clone();
    ensure!(sorry.addr == SORRY_ADDR && sorry.name == SORRY_NAME);
    let result = topo.run_client_from(&lb, 3, &format!("http://{SORRY_ADDR}:{HTTP_PORT}/"))?;
    result.check_all_ok(3)?;
    ensure!(result.by_server.get(SORRY_NAME) == Some(&3), "{result:?}");

    // A stopped HTTP server refuses at once; started again, it answers.
    let rs1 = SERVER_ADDRS[0];
    topo.stop_http_server(0)?;
    ensure!(
        topo.stop_http_server(0).is_err(),
        "stopped a stopped server"
    );
    let requests = load_from_lb(&topo, rs1, Duration::from_millis(200))?;
    ensure!(
        !requests.all.is_empty()
            && requests.all.iter().all(|r| matches!(
                r.outcome,
                Outcome::Error {
                    kind: std::io::ErrorKind::ConnectionRefused,
                    ..
                }
            )),
        "rs1 stopped: {:?}",
        requests.all
    );
    topo.start_http_server(0)?;
    ensure!(topo.start_http_server(0).is_err(), "started it twice");
    let requests = load_from_lb(&topo, rs1, Duration::from_millis(200))?;
    ensure!(
        !requests.all.is_empty() && requests.all.iter().all(Request::ok),
        "rs1 restarted: {:?}",
        requests.all
    );

    // Its interface down, nothing reaches it (the requests time out); up
    // again, it has its address and default route back and answers.
    let rs1_ns = topo.servers()[0].ns.clone();
    topo.set_server_link(0, false)?;
    let requests = load_from_lb(&topo, rs1, Duration::from_millis(200))?;
    ensure!(
        !requests.all.is_empty() && requests.all.iter().all(|r| !r.ok()),
        "rs1 answered with its link down: {:?}",
        requests.all
    );
    topo.set_server_link(0, true)?;
    let route = stdout(&topo, &rs1_ns, "ip", &["route", "show", "default"])?;
    ensure!(route.contains("via 10.0.2.1"), "rs1's route: {route}");
    let requests = load_from_lb(&topo, rs1, Duration::from_millis(300))?;
    ensure!(
        !requests.all.is_empty() && requests.all.iter().all(Request::ok),
        "rs1 with its link up again: {:?}",
        requests.all
    );
    Ok(())
}
