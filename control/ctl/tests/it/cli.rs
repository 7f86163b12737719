//! The `pylonctl` binary against the test daemon: every command in text
//! (snapshots of the layouts) and JSON (read back into the protocol's
//! types), errors and exit codes.

use crate::common::Daemon;
use pylon_ctl::proto::{
    ChangesData, Command, ConnsData, DiffData, HealthData, ListData, ReloadData, SyncData,
    VrrpData, WorkersData,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;
use std::process::Command as Process;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(socket: &Path, args: &[&str]) -> Out {
    let out = Process::new(env!("CARGO_BIN_EXE_pylonctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs a command that must succeed; returns its standard output.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = run(d.path(), args);
    assert_eq!(o.code, 0, "pylonctl {args:?}: {}{}", o.stdout, o.stderr);
    assert!(o.stderr.is_empty(), "{}", o.stderr);
    o.stdout
}

/// Runs a command that must fail with `code`; returns standard error.
fn fails(d: &Daemon, args: &[&str], code: i32) -> String {
    let o = run(d.path(), args);
    assert_eq!(o.code, code, "pylonctl {args:?}: {}{}", o.stdout, o.stderr);
    o.stderr
}

/// The JSON output of a command, read as `T`, and compared with what the
/// daemon answers to `cmd` directly.
fn json<T: DeserializeOwned + PartialEq + std::fmt::Debug>(
    d: &Daemon,
    args: &[&str],
    cmd: Option<Command>,
) -> T {
    let mut args = args.to_vec();
    args.push("--json");
    let text = ok(d, &args);
    let got: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    if let Some(cmd) = cmd {
        let want: T =
            serde_json::from_value(d.model.lock().unwrap().handle(&cmd).unwrap()).unwrap();
        assert_eq!(got, want);
    }
    got
}

#[test]
fn list_as_ipvsadm() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d, &["list"]),
        "\
Pylon Virtual Server (size=1048576, connections=1234589)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn  EffWeight Health
TCP  192.0.2.10:80 wlc [web]
  -> 10.0.1.2:80                  Masq    1      7          2          1         up
  -> 10.0.1.3:80                  Masq    2      0          1          0         down
  -> 10.0.1.4:8080                Masq    3      1234567    0          3         unchecked
UDP  192.0.2.53:53 rr [dns]
  -> 10.0.1.2:53                  Route   1      0          12         1         unchecked
"
    );
    assert_eq!(
        ok(&d, &["list", "--stats"]),
        "\
Pylon Virtual Server (size=1048576, connections=1234589)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                     600     6000     5400  900000K    9000M
  -> 10.0.1.2:80                       100     1000      900  150000K    1500M
  -> 10.0.1.3:80                       200     2000     1800  300000K    3000M
  -> 10.0.1.4:8080                     300     3000     2700  450000K    4500M
UDP  192.0.2.53:53                     100     1000      900  150000K    1500M
  -> 10.0.1.2:53                       100     1000      900  150000K    1500M
"
    );
    assert_eq!(
        ok(&d, &["list", "--rate", "-u", "192.0.2.53:53"]),
        "\
Pylon Virtual Server (size=1048576, connections=1234589)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
UDP  192.0.2.53:53                       6       60       54     9000    90000
  -> 10.0.1.2:53                         1       10        9     1500    15000
"
    );
    assert_eq!(
        ok(&d, &["list", "--stats", "--exact", "-t", "192.0.2.10:80"]),
        "\
Pylon Virtual Server (size=1048576, connections=1234589)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.0.2.10:80                     600     6000     5400 900000000 9000000000
  -> 10.0.1.2:80                       100     1000      900 150000000 1500000000
  -> 10.0.1.3:80                       200     2000     1800 300000000 3000000000
  -> 10.0.1.4:8080                     300     3000     2700 450000000 4500000000
"
    );
    let all = |stats, rate| Command::List {
        stats,
        rate,
        service: None,
    };
    json::<ListData>(&d, &["list"], Some(all(false, false)));
    json::<ListData>(&d, &["list", "--stats"], Some(all(true, false)));
    json::<ListData>(&d, &["list", "--rate"], Some(all(false, true)));
    let one: ListData = json(&d, &["list", "--service", "dns"], None);
    assert_eq!(one.services.len(), 1);
    assert!(fails(&d, &["list", "--stats", "--rate"], 2).contains("cannot be used with"));
    assert!(
        fails(&d, &["list", "-t", "192.0.2.99:80"], 1).contains("no TCP service at 192.0.2.99:80")
    );
    assert!(
        fails(&d, &["list", "--service", "nope"], 1).contains("no service named nope (not_found)")
    );
}

#[test]
fn json_keeps_field_order() {
    let d = Daemon::start();
    let text = ok(&d, &["list", "--json"]);
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  \""))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(keys, ["table_size", "connections", "services"]);
}

#[test]
fn conns_as_ipvsadm() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d, &["conns"]),
        "\
Pylon connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 198.51.100.7:40001 192.0.2.10:80      10.0.1.2:80
TCP 01:01  TIME_WAIT   198.51.100.8:40002 192.0.2.10:80      10.0.1.4:8080
TCP 00:59  SYN_RECV    198.51.100.7:40003 192.0.2.10:80      10.0.1.2:80
UDP 05:00  UDP         198.51.100.9:5353  192.0.2.53:53      10.0.1.2:53
"
    );
    assert_eq!(
        ok(&d, &["conns", "--limit", "1", "--client", "198.51.100.7"]),
        "\
Pylon connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 198.51.100.7:40001 192.0.2.10:80      10.0.1.2:80
(1 of 2 matching entries shown; --limit shows more)
"
    );
    let filtered: ConnsData = json(
        &d,
        &["conns", "--server", "10.0.1.2:80", "-t", "192.0.2.10:80"],
        None,
    );
    assert_eq!(filtered.matched, 2);
    assert!(!filtered.truncated);
    assert!(filtered
        .conns
        .iter()
        .all(|c| c.server.to_string() == "10.0.1.2:80"));
    let none: ConnsData = json(&d, &["conns", "--limit", "0"], None);
    assert_eq!(
        (none.matched, none.truncated, none.conns.len()),
        (4, true, 0)
    );
    assert!(fails(&d, &["conns", "--server", "10.0.1"], 2).contains("is not an IPv4 address"));
}

#[test]
fn add_edit_del_and_diff() {
    let d = Daemon::start();
    assert_eq!(
        ok(
            &d,
            &[
                "add",
                "service",
                "api",
                "-t",
                "192.0.2.11:443",
                "-s",
                "wrr",
                "-g"
            ]
        ),
        "+ services[api] = TCP 192.0.2.11:443 wrr dsr\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "add",
                "server",
                "-t",
                "192.0.2.11:443",
                "-r",
                "10.0.1.9",
                "-w",
                "5"
            ]
        ),
        "+ services[api].servers[10.0.1.9:443] = weight 5\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "add",
                "server",
                "--tcp-service",
                "192.0.2.11:443",
                "--real-server",
                "10.0.1.10:443",
                "--gatewaying"
            ]
        ),
        "+ services[api].servers[10.0.1.10:443] = weight 1\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "edit",
                "server",
                "--service",
                "web",
                "-r",
                "10.0.1.2:80",
                "-w",
                "4"
            ]
        ),
        "~ services[web].servers[10.0.1.2:80].weight: 1 -> 4\n"
    );
    assert_eq!(
        ok(
            &d,
            &[
                "edit",
                "service",
                "api",
                "--scheduler",
                "lc",
                "--masquerading"
            ]
        ),
        "~ services[api].scheduler: wrr -> lc\n~ services[api].forwarding: dsr -> nat\n"
    );
    assert_eq!(
        ok(
            &d,
            &["del", "server", "-t", "192.0.2.11:443", "-r", "10.0.1.10"]
        ),
        "- services[api].servers[10.0.1.10:443] (was weight 1)\n"
    );
    let changes: ChangesData = json(
        &d,
        &["add", "service", "ntp", "-u", "192.0.2.123:123", "-s", "rr"],
        None,
    );
    assert_eq!(
        changes.changes[0].new.as_deref(),
        Some("UDP 192.0.2.123:123 rr nat")
    );
    let changes: ChangesData = json(&d, &["del", "service", "-u", "192.0.2.123:123"], None);
    assert_eq!(changes.changes[0].path, "services[ntp]");
    assert_eq!(
        ok(&d, &["diff"]),
        "\
--- /etc/pylon/pylon.toml (file)
+++ running
+ services[api] = TCP 192.0.2.11:443 wrr dsr
+ services[api].servers[10.0.1.9:443] = weight 5
+ services[api].servers[10.0.1.10:443] = weight 1
~ services[web].servers[10.0.1.2:80].weight: 1 -> 4
~ services[api].scheduler: wrr -> lc
~ services[api].forwarding: dsr -> nat
- services[api].servers[10.0.1.10:443] (was weight 1)
+ services[ntp] = UDP 192.0.2.123:123 rr nat
- services[ntp] (was present)
"
    );
    json::<DiffData>(&d, &["diff"], Some(Command::Diff));
    assert!(ok(&d, &["list"])
        .contains("TCP  192.0.2.11:443 lc [api]\n  -> 10.0.1.9:443                 Masq    5 "));

    // The daemon's refusals, with their codes.
    let e = fails(&d, &["add", "service", "api", "-t", "192.0.2.12:80"], 1);
    assert_eq!(e, "pylonctl: service api exists (already_exists)\n");
    let e = fails(
        &d,
        &["add", "server", "--service", "web", "-r", "10.0.1.7", "-i"],
        1,
    );
    assert!(e.contains("forwarding is per service (invalid)"), "{e}");
    let e = fails(
        &d,
        &["del", "server", "--service", "web", "-r", "10.0.1.99"],
        1,
    );
    assert!(e.contains("(not_found)"), "{e}");
    let o = run(
        d.path(),
        &[
            "edit",
            "server",
            "--service",
            "nope",
            "-r",
            "10.0.1.2",
            "-w",
            "1",
            "--json",
        ],
    );
    assert_eq!(o.code, 1);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["message"], "no service named nope (not_found)");
    // Usage errors: clap's exit code 2.
    fails(&d, &["add", "server", "-r", "10.0.1.2"], 2);
    fails(
        &d,
        &[
            "add",
            "service",
            "x",
            "-t",
            "192.0.2.1:80",
            "-u",
            "192.0.2.1:80",
        ],
        2,
    );
    fails(
        &d,
        &["add", "service", "x", "-t", "192.0.2.1:80", "-m", "-g"],
        2,
    );
    fails(
        &d,
        &["edit", "server", "--service", "web", "-r", "10.0.1.2"],
        2,
    );
    fails(
        &d,
        &[
            "add",
            "server",
            "--service",
            "web",
            "-r",
            "10.0.1.2",
            "-w",
            "70000",
        ],
        2,
    );
    fails(
        &d,
        &["add", "service", "x", "-t", "192.0.2.1:80", "-s", "sh"],
        2,
    );
}

/// Replaces the times in drain output (`0.5s`) with `T`.
fn untimed(text: &str) -> String {
    text.lines()
        .map(|l| match l.rsplit_once(' ') {
            Some((head, t)) if t.ends_with('s') && t[..t.len() - 1].parse::<f64>().is_ok() => {
                format!("{head} T\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

#[test]
fn drain_follows_the_connections_down() {
    let d = Daemon::start();
    let out = ok(&d, &["drain", "10.0.1.2:80", "--service", "web"]);
    assert_eq!(
        untimed(&out),
        "\
draining 10.0.1.2:80 (web): 4 active, 2 inactive connections, T
draining 10.0.1.2:80 (web): 1 active, 2 inactive connections, T
draining 10.0.1.2:80 (web): 0 active, 2 inactive connections, T
drained 10.0.1.2:80 (web) in T
"
    );
    let list: ListData = json(&d, &["list"], None);
    assert_eq!(list.services[0].servers[0].weight, 0);
    // Without a service: every service that has the address.
    d.model.lock().unwrap().close_per_list = 100;
    let v: Value = json(&d, &["drain", "10.0.1.2"], None);
    assert_eq!(v["drained"], true);
    assert_eq!(v["servers"].as_array().unwrap().len(), 2);
    assert_eq!(v["servers"][1]["service"], "dns");
    assert_eq!(v["servers"][1]["previous_weight"], 1);
    assert_eq!(v["active"], 0);
}

#[test]
fn drain_times_out_with_status_3() {
    let d = Daemon::start();
    d.model.lock().unwrap().close_per_list = 0;
    let o = run(
        d.path(),
        &["drain", "10.0.1.4", "-t", "192.0.2.10:80", "--timeout", "1"],
    );
    assert_eq!(o.code, 3, "{}{}", o.stdout, o.stderr);
    assert_eq!(
        untimed(&o.stdout),
        "draining 10.0.1.4:8080 (web): 1234567 active, 0 inactive connections, T\n"
    );
    assert_eq!(
        o.stderr,
        "pylonctl: drain timed out after 1 s: 1234567 active, 0 inactive connections left\n"
    );
    let o = run(d.path(), &["drain", "10.0.1.4", "--timeout", "1", "--json"]);
    assert_eq!(o.code, 3);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "drain_timeout");
    // --no-wait only sets the weight; --inactive waits for those too.
    assert_eq!(
        ok(
            &d,
            &["drain", "10.0.1.3:80", "--service", "web", "--no-wait"]
        ),
        "weight 0: 10.0.1.3:80 (web)\n"
    );
    let o = run(
        d.path(),
        &["drain", "10.0.1.3", "--inactive", "--timeout", "1"],
    );
    assert_eq!(o.code, 3);
    assert!(o.stderr.contains("0 active, 1 inactive"), "{}", o.stderr);
    let e = fails(&d, &["drain", "10.9.9.9"], 1);
    assert!(e.contains("no real server 10.9.9.9 (not_found)"), "{e}");
}

#[test]
fn health_vrrp_workers() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d, &["health"]),
        "\
Service  Server         State      Check  Last     Rise  Fall  Changed    Reason
web      10.0.1.2:80    up         http   ok         40     0  2h00m ago  2 checks passed
web      10.0.1.3:80    down       tcp    refused     0    12  2h00m ago  3 checks failed: refused
web      10.0.1.4:8080  unchecked  -      -           0     0  -          -
"
    );
    assert_eq!(
        ok(&d, &["vrrp"]),
        "\
Name  VRID  Port  State   Prio  EffPrio  Advert  Preempt  Master  Changed    Reason       VIPs
VI_1    51  p0    MASTER   150      140      1s  yes      -       2h00m ago  master_down  192.0.2.10,192.0.2.53
"
    );
    assert_eq!(
        ok(&d, &["workers"]),
        "\
Lcore  Role      RxPkts  TxPkts  ToControl  Drops    Idle
    1  worker   1000000  999000         12    988   75.0%
    0  control       10      10          0      0  100.0%

Drops by reason
  lcore 1: no_connection=900 not_ipv4=88

Port  Link   RxPkts  TxPkts    RxBytes    TxBytes  IMissed  IErrors  OErrors  RxNoMbuf
p0    up    1000010  999010  150000000  149000000        3        0        0         1
"
    );
    json::<HealthData>(&d, &["health"], Some(Command::Health));
    let v: VrrpData = json(&d, &["vrrp"], None);
    assert_eq!(v.instances[0].vrid, 51);
    json::<WorkersData>(&d, &["workers"], Some(Command::Workers));
}

#[test]
fn sync_shows_peers_and_exits_4_when_their_configuration_differs() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d, &["sync"]),
        "\
session 33f34833bba8679f on 10.9.0.1:8848; startup sync done
Peer              Receiving  Config  Digest            Services  Servers
(this appliance)  -          -       6fe4c9b6ddac2e7e         1        3
10.9.0.2:8848     yes        same    6fe4c9b6ddac2e7e         1        3

datagrams_sent   12
installed       120
dropped bad_mac  5
"
    );
    json::<SyncData>(&d, &["sync"], Some(Command::Sync));
    d.model.lock().unwrap().peer_config_differs = true;
    let o = run(d.path(), &["sync"]);
    assert_eq!(o.code, 4, "{}{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains(
            "10.9.0.2:8848     yes        differs  273e4e5a0cc5089b         1        4\n\
             configuration differs from a peer's"
        ),
        "{}",
        o.stdout
    );
    let o = run(d.path(), &["sync", "--json"]);
    assert_eq!(o.code, 4);
    let data: SyncData = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(data.config_in_sync, Some(false));
}

#[test]
fn reload_applies_or_reports_the_file_error() {
    let d = Daemon::start();
    assert_eq!(
        ok(&d, &["reload"]),
        "\
reloaded /etc/pylon/pylon.toml: 2 changes
+ services[web].servers[10.0.1.5:80] = weight 1
~ services[web].servers[10.0.1.2:80].weight: 1 -> 4
"
    );
    json::<ReloadData>(&d, &["reload"], Some(Command::Reload));
    assert_eq!(
        ok(&d, &["diff"]),
        "no drift: the running configuration matches /etc/pylon/pylon.toml\n"
    );
    d.model.lock().unwrap().bad_file = true;
    assert_eq!(
        fails(&d, &["reload"], 1),
        "pylonctl: pylon.toml: services[1].servers[0].weight: 70000 is out of range 0..=65535 (line 23, column 10) (invalid)\n"
    );
}

#[test]
fn help_completions_and_no_daemon() {
    let d = Daemon::start();
    let help = ok(&d, &["--help"]);
    for cmd in [
        "list",
        "conns",
        "add",
        "edit",
        "del",
        "drain",
        "vrrp",
        "health",
        "workers",
        "reload",
        "diff",
        "sync",
        "completions",
    ] {
        assert!(
            help.contains(&format!("\n  {cmd} ")),
            "{cmd} missing from\n{help}"
        );
    }
    assert!(help.contains("Exit status"), "{help}");
    let drain = ok(&d, &["drain", "--help"]);
    assert!(
        drain.contains("--timeout <SECS>") && drain.contains("exit status 3"),
        "{drain}"
    );
    let add = ok(&d, &["add", "server", "--help"]);
    for flag in [
        "-t, --tcp-service",
        "-u, --udp-service",
        "-r, --real-server",
        "-w, --weight",
        "-m, --masquerading",
        "-g, --gatewaying",
        "-i, --ipip",
    ] {
        assert!(add.contains(flag), "{flag} missing from\n{add}");
    }
    let bash = ok(&d, &["completions", "bash"]);
    assert!(
        bash.contains("pylonctl") && bash.contains("drain"),
        "{bash}"
    );
    assert!(ok(&d, &["completions", "zsh"]).contains("#compdef pylonctl"));
    fails(&d, &["completions", "tcsh"], 2);

    let gone = d.path().with_file_name("nothing.sock");
    let o = run(&gone, &["list"]);
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.starts_with("pylonctl: cannot connect to "),
        "{}",
        o.stderr
    );
    let o = run(&gone, &["vrrp", "--json"]);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], "connect");
}
