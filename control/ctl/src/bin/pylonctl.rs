//! `pylonctl`: operate a running Pylon over its control socket.

#![forbid(unsafe_code)]

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use pylon_ctl::proto::{
    ChangesData, Command, ConnsData, DiffData, DrainData, DrainedServer, Endpoint, Forwarding,
    HealthData, ListData, Protocol, ReloadData, Scheduler, SyncData, VrrpData, WorkersData,
    DEFAULT_CONNS_LIMIT, DEFAULT_SOCKET,
};
use pylon_ctl::render::{self, ListLayout};
use pylon_ctl::{Client, ClientError};
use serde::Serialize;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ABOUT: &str = "Operate a running Pylon load balancer over its control socket";

const LONG_ABOUT: &str = "\
Operate a running Pylon load balancer over its control socket.

pylonctl speaks to the pylon daemon through a Unix socket (mode 0600, so run \
it as root). It shows services, real servers, connections, VRRP, health \
checks and worker counters in the layouts ipvsadm and keepalived users know, \
changes services and real servers while Pylon runs, drains a server before \
maintenance, and reloads the configuration file. Every command takes --json \
to print the daemon's answer as JSON for scripts.

Services are chosen as with ipvsadm, -t VIP:PORT (TCP) or -u VIP:PORT (UDP), \
or by name with --service NAME. Real servers are -r ADDRESS[:PORT]; the port \
defaults to the service's.";

const EXIT_CODES: &str = "\
Exit status: 0 on success, 1 when the daemon refused the command or could \
not be reached (the reason is printed), 2 for a usage error, 3 when a drain \
timed out with connections left, 4 when `sync` finds a peer's configuration \
different from ours.";

#[derive(Parser, Debug)]
#[command(name = "pylonctl", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXIT_CODES)]
struct Cli {
    /// The daemon's control socket (`control.socket` in its configuration).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET, display_order = 900)]
    socket: PathBuf,
    /// Print the daemon's answer as JSON instead of text.
    #[arg(long, global = true, display_order = 901)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    #[command(flatten)]
    Daemon(DaemonCmd),
    /// Print a shell completion script
    ///
    /// For example `pylonctl completions bash > /etc/bash_completion.d/pylonctl`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The commands that talk to the daemon.
#[derive(Subcommand, Debug)]
enum DaemonCmd {
    /// List virtual services and real servers, as `ipvsadm -Ln`
    ///
    /// One line per service: protocol, VIP:port, scheduler and its name in
    /// brackets. One
    /// line per real server under it: forwarding (Masq = nat, Route = dsr,
    /// Tunnel = tunnel), configured weight, ActiveConn (established
    /// connections), InActConn (handshakes, closing, UDP), the effective
    /// weight the scheduler uses (0 while the health check fails) and the
    /// health (up, down, unchecked). --stats shows counters since the
    /// service or server was added instead, --rate per-second rates; large
    /// numbers are shortened with K, M, G, T unless --exact.
    List(ListArgs),
    /// Show connection-table entries, as `ipvsadm -Lnc`
    ///
    /// Protocol, time left before the entry expires without traffic
    /// (mm:ss), IPVS state, client, virtual service and real server. The
    /// filters combine; at most --limit entries are shown, and a last line
    /// says how many more matched.
    Conns(ConnsArgs),
    /// Add a virtual service or a real server while Pylon runs
    #[command(subcommand)]
    Add(AddCmd),
    /// Change a service's scheduler or forwarding, or a server's weight
    #[command(subcommand)]
    Edit(EditCmd),
    /// Remove a service or a real server (its connections are drained, not cut)
    #[command(subcommand)]
    Del(DelCmd),
    /// Drain a real server: weight 0, then wait for its connections to end
    ///
    /// Sets the weight of the server to 0 (quiesced: no new connections,
    /// existing ones continue) in the service given, or in every service
    /// that has it, then shows its active connections falling, every
    /// 500 ms, until none is left or --timeout passes (exit status 3).
    /// Restore it afterwards with `pylonctl edit server ... -w WEIGHT`.
    Drain(DrainArgs),
    /// Show the VRRP instances: state, priorities, master, last change
    Vrrp,
    /// Show every real server's health: state, last result, last change, reason
    Health,
    /// Show per-worker and per-port counters
    ///
    /// Per lcore: packets received and sent, packets handed to the control
    /// lcore, drops, and the share of idle polls; then every non-zero drop
    /// reason; then per port: packets, bytes, imissed (dropped by the NIC
    /// for a full RX queue), errors and rx_nombuf (no mbuf to receive
    /// into).
    Workers,
    /// Reload the configuration file, as SIGHUP does
    ///
    /// The file is parsed and validated in full and applied as one atomic
    /// change: unchanged services and servers keep their connections and
    /// counters, removed servers are drained. A file with an error is
    /// rejected (file: key: problem) and the running configuration stays.
    Reload,
    /// Show how the running configuration differs from the file
    ///
    /// Changes made with pylonctl since the last (re)load: `-` only in the
    /// file, `+` only running, `~` different (file -> running).
    Diff,
    /// Show connection and configuration sync with the other appliances
    ///
    /// Our session and whether the startup sync is still holding VRRP at
    /// priority 1; per peer: whether we receive it, and its configuration
    /// digest (services, real servers) against ours: `differs` means the
    /// two appliances do not run the same services, servers and weights,
    /// and a failover would change them. Then the counters (datagrams,
    /// entries installed, transfers) and received datagrams dropped by
    /// reason. Exit status 4 when a peer's configuration differs.
    Sync,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Show packet, byte and connection counters (ipvsadm --stats).
    #[arg(long, conflicts_with = "rate")]
    stats: bool,
    /// Show per-second rates (ipvsadm --rate).
    #[arg(long)]
    rate: bool,
    /// Print counters in full, without K, M, G, T.
    #[arg(short = 'x', long)]
    exact: bool,
    #[command(flatten)]
    service: ServiceFilter,
}

#[derive(Args, Debug)]
struct ConnsArgs {
    #[command(flatten)]
    service: ServiceFilter,
    /// Only connections to this real server.
    #[arg(long, value_name = "ADDRESS[:PORT]")]
    server: Option<Endpoint>,
    /// Only connections from this client.
    #[arg(long, value_name = "ADDRESS[:PORT]")]
    client: Option<Endpoint>,
    /// Show at most N entries.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONNS_LIMIT)]
    limit: u32,
}

/// A service chosen by address or name; optional.
#[derive(Args, Debug)]
#[group(required = false, multiple = false)]
struct ServiceFilter {
    /// Only the TCP service at VIP:PORT.
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    tcp: Option<SocketAddrV4>,
    /// Only the UDP service at VIP:PORT.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    udp: Option<SocketAddrV4>,
    /// Only the service with this name.
    #[arg(long = "service", value_name = "NAME")]
    name: Option<String>,
}

/// A service chosen by address or name; required.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct ServiceTarget {
    /// The TCP service at VIP:PORT.
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    tcp: Option<SocketAddrV4>,
    /// The UDP service at VIP:PORT.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    udp: Option<SocketAddrV4>,
    /// The service with this name.
    #[arg(long = "service", value_name = "NAME")]
    name: Option<String>,
}

/// A service chosen by address or by name as the argument.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct NamedService {
    /// The service's name.
    #[arg(value_name = "NAME")]
    name: Option<String>,
    /// The TCP service at VIP:PORT.
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    tcp: Option<SocketAddrV4>,
    /// The UDP service at VIP:PORT.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    udp: Option<SocketAddrV4>,
}

/// The address of a new service.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct NewVip {
    /// A TCP service at VIP:PORT.
    #[arg(short = 't', long = "tcp-service", value_name = "VIP:PORT")]
    tcp: Option<SocketAddrV4>,
    /// A UDP service at VIP:PORT.
    #[arg(short = 'u', long = "udp-service", value_name = "VIP:PORT")]
    udp: Option<SocketAddrV4>,
}

/// ipvsadm's packet-forwarding flags; Pylon forwards per service.
#[derive(Args, Debug)]
#[group(required = false, multiple = false)]
struct Fwd {
    /// NAT (masquerading): addresses rewritten both ways (`nat`).
    #[arg(short = 'm', long = "masquerading")]
    nat: bool,
    /// Direct routing (gatewaying): only the MAC is rewritten (`dsr`).
    #[arg(short = 'g', long = "gatewaying")]
    dsr: bool,
    /// IP-in-IP tunnelling (`tunnel`).
    #[arg(short = 'i', long = "ipip")]
    tunnel: bool,
}

impl Fwd {
    fn get(&self) -> Option<Forwarding> {
        match (self.nat, self.dsr, self.tunnel) {
            (true, _, _) => Some(Forwarding::Nat),
            (_, true, _) => Some(Forwarding::Dsr),
            (_, _, true) => Some(Forwarding::Tunnel),
            _ => None,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Sched {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connections.
    Lc,
    /// Weighted least connections.
    Wlc,
}

impl From<Sched> for Scheduler {
    fn from(s: Sched) -> Scheduler {
        match s {
            Sched::Rr => Scheduler::Rr,
            Sched::Wrr => Scheduler::Wrr,
            Sched::Lc => Scheduler::Lc,
            Sched::Wlc => Scheduler::Wlc,
        }
    }
}

#[derive(Subcommand, Debug)]
enum AddCmd {
    /// Add a virtual service (ipvsadm -A), at first without real servers
    Service {
        /// Name of the service (1 to 32 of a-z A-Z 0-9 _ -).
        name: String,
        #[command(flatten)]
        vip: NewVip,
        /// Scheduler for new connections.
        #[arg(short = 's', long, value_enum, default_value = "wlc")]
        scheduler: Sched,
        #[command(flatten)]
        fwd: Fwd,
    },
    /// Add a real server to a service (ipvsadm -a)
    ///
    /// Pylon forwards per service: -m, -g or -i, if given, must be the
    /// service's forwarding.
    Server {
        #[command(flatten)]
        target: ServerTarget,
        /// Relative share of new connections; 0 = quiesced.
        #[arg(short = 'w', long, default_value_t = 1)]
        weight: u16,
        #[command(flatten)]
        fwd: Fwd,
    },
}

#[derive(Subcommand, Debug)]
enum EditCmd {
    /// Change a service's scheduler or forwarding (ipvsadm -E)
    Service {
        #[command(flatten)]
        service: NamedService,
        /// New scheduler.
        #[arg(short = 's', long, value_enum)]
        scheduler: Option<Sched>,
        #[command(flatten)]
        fwd: Fwd,
    },
    /// Change a real server's weight (ipvsadm -e)
    Server {
        #[command(flatten)]
        target: ServerTarget,
        /// New weight; 0 = quiesced.
        #[arg(short = 'w', long)]
        weight: u16,
    },
}

#[derive(Subcommand, Debug)]
enum DelCmd {
    /// Remove a virtual service (ipvsadm -D)
    Service {
        #[command(flatten)]
        service: NamedService,
    },
    /// Remove a real server (ipvsadm -d)
    Server {
        #[command(flatten)]
        target: ServerTarget,
    },
}

#[derive(Args, Debug)]
struct ServerTarget {
    #[command(flatten)]
    service: ServiceTarget,
    /// The real server, ADDRESS or ADDRESS:PORT.
    #[arg(short = 'r', long = "real-server", value_name = "ADDRESS[:PORT]")]
    server: Endpoint,
}

#[derive(Args, Debug)]
struct DrainArgs {
    /// The real server, ADDRESS or ADDRESS:PORT.
    #[arg(value_name = "SERVER")]
    server: Endpoint,
    #[command(flatten)]
    service: ServiceFilter,
    /// Give up after SECS seconds with exit status 3 (0: wait forever).
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Also wait for the inactive connections (closing TCP, UDP flows).
    #[arg(long)]
    inactive: bool,
    /// Only set the weight to 0; do not wait.
    #[arg(long)]
    no_wait: bool,
}

/// Why pylonctl fails.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Usage(String),
    #[error(
        "drain timed out after {secs} s: {active} active, {inactive} inactive connections left"
    )]
    DrainTimeout {
        secs: u64,
        active: u64,
        inactive: u64,
    },
}

impl Failure {
    fn code(&self) -> &str {
        match self {
            Failure::Client(ClientError::Daemon(e)) => e.code.name(),
            Failure::Client(ClientError::Connect { .. }) => "connect",
            Failure::Client(ClientError::Io(_)) => "io",
            Failure::Client(ClientError::BadResponse(_)) => "bad_response",
            Failure::Client(ClientError::Closed) => "closed",
            Failure::NotFound(_) => "not_found",
            Failure::Usage(_) => "usage",
            Failure::DrainTimeout { .. } => "drain_timeout",
        }
    }

    fn exit(&self) -> ExitCode {
        match self {
            Failure::DrainTimeout { .. } => ExitCode::from(3),
            Failure::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// What a command prints: pretty JSON, and the text form; and its exit
/// status.
struct Output {
    json: String,
    text: String,
    status: u8,
}

/// Exit status of `sync` when a peer's configuration differs from ours.
const CONFIG_DIFFERS: u8 = 4;

impl Output {
    fn new<T: Serialize>(data: &T, text: String) -> Output {
        Output {
            json: serde_json::to_string_pretty(data).unwrap_or_default() + "\n",
            text,
            status: 0,
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn resolve(
    client: &mut Client,
    name: Option<&String>,
    tcp: Option<SocketAddrV4>,
    udp: Option<SocketAddrV4>,
) -> Result<Option<String>, Failure> {
    if let Some(n) = name {
        return Ok(Some(n.clone()));
    }
    let (protocol, addr) = match (tcp, udp) {
        (Some(a), _) => (Protocol::Tcp, a),
        (_, Some(a)) => (Protocol::Udp, a),
        _ => return Ok(None),
    };
    let list: ListData = client.request(Command::List {
        stats: false,
        rate: false,
        service: None,
    })?;
    list.services
        .iter()
        .find(|s| s.protocol == protocol && s.addr() == addr)
        .map(|s| Some(s.name.clone()))
        .ok_or_else(|| {
            Failure::NotFound(format!(
                "no {} service at {addr} (pylonctl list shows them)",
                protocol.upper()
            ))
        })
}

fn filter(client: &mut Client, f: &ServiceFilter) -> Result<Option<String>, Failure> {
    resolve(client, f.name.as_ref(), f.tcp, f.udp)
}

fn required(name: Option<String>) -> Result<String, Failure> {
    name.ok_or_else(|| Failure::Usage("give the service: -t, -u or its name".into()))
}

fn changes(client: &mut Client, cmd: Command) -> Result<Output, Failure> {
    let data: ChangesData = client.request(cmd)?;
    Ok(Output::new(&data, render::changes(&data.changes)))
}

fn run(cli: &Cli) -> Result<Output, Failure> {
    match &cli.cmd {
        Cmd::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "pylonctl", &mut script);
            let text = String::from_utf8_lossy(&script).into_owned();
            Ok(Output {
                json: text.clone(),
                text,
                status: 0,
            })
        }
        Cmd::Daemon(cmd) => {
            let mut client = Client::connect(&cli.socket)?;
            daemon(&mut client, cmd, cli.json)
        }
    }
}

fn daemon(c: &mut Client, cmd: &DaemonCmd, json: bool) -> Result<Output, Failure> {
    match cmd {
        DaemonCmd::List(a) => {
            let service = filter(c, &a.service)?;
            let data: ListData = c.request(Command::List {
                stats: a.stats,
                rate: a.rate,
                service,
            })?;
            let layout = match (a.stats, a.rate) {
                (true, _) => ListLayout::Stats,
                (_, true) => ListLayout::Rate,
                _ => ListLayout::Plain,
            };
            Ok(Output::new(&data, render::list(&data, layout, a.exact)))
        }
        DaemonCmd::Conns(a) => {
            let service = filter(c, &a.service)?;
            let data: ConnsData = c.request(Command::Conns {
                service,
                server: a.server,
                client: a.client,
                limit: a.limit,
            })?;
            Ok(Output::new(&data, render::conns(&data)))
        }
        DaemonCmd::Add(AddCmd::Service {
            name,
            vip,
            scheduler,
            fwd,
        }) => {
            let (protocol, addr) = match (vip.tcp, vip.udp) {
                (Some(a), _) => (Protocol::Tcp, a),
                (_, Some(a)) => (Protocol::Udp, a),
                _ => return Err(Failure::Usage("-t or -u VIP:PORT is required".into())),
            };
            changes(
                c,
                Command::AddService {
                    name: name.clone(),
                    protocol,
                    vip: *addr.ip(),
                    port: addr.port(),
                    scheduler: (*scheduler).into(),
                    forwarding: fwd.get().unwrap_or_default(),
                },
            )
        }
        DaemonCmd::Add(AddCmd::Server {
            target: t,
            weight,
            fwd,
        }) => {
            let s = &t.service;
            let service = required(resolve(c, s.name.as_ref(), s.tcp, s.udp)?)?;
            changes(
                c,
                Command::AddServer {
                    service,
                    address: t.server.address,
                    port: t.server.port,
                    weight: *weight,
                    forwarding: fwd.get(),
                },
            )
        }
        DaemonCmd::Edit(EditCmd::Service {
            service: s,
            scheduler,
            fwd,
        }) => {
            let name = required(resolve(c, s.name.as_ref(), s.tcp, s.udp)?)?;
            changes(
                c,
                Command::EditService {
                    name,
                    scheduler: scheduler.map(Into::into),
                    forwarding: fwd.get(),
                },
            )
        }
        DaemonCmd::Edit(EditCmd::Server { target: t, weight }) => {
            let s = &t.service;
            let service = required(resolve(c, s.name.as_ref(), s.tcp, s.udp)?)?;
            changes(
                c,
                Command::EditServer {
                    service,
                    address: t.server.address,
                    port: t.server.port,
                    weight: *weight,
                },
            )
        }
        DaemonCmd::Del(DelCmd::Service { service: s }) => {
            let name = required(resolve(c, s.name.as_ref(), s.tcp, s.udp)?)?;
            changes(c, Command::DelService { name })
        }
        DaemonCmd::Del(DelCmd::Server { target: t }) => {
            let s = &t.service;
            let service = required(resolve(c, s.name.as_ref(), s.tcp, s.udp)?)?;
            changes(
                c,
                Command::DelServer {
                    service,
                    address: t.server.address,
                    port: t.server.port,
                },
            )
        }
        DaemonCmd::Drain(a) => drain(c, a, json),
        DaemonCmd::Vrrp => {
            let data: VrrpData = c.request(Command::Vrrp)?;
            Ok(Output::new(&data, render::vrrp(&data, now_unix())))
        }
        DaemonCmd::Health => {
            let data: HealthData = c.request(Command::Health)?;
            Ok(Output::new(&data, render::health(&data, now_unix())))
        }
        DaemonCmd::Workers => {
            let data: WorkersData = c.request(Command::Workers)?;
            Ok(Output::new(&data, render::workers(&data)))
        }
        DaemonCmd::Reload => {
            let data: ReloadData = c.request(Command::Reload)?;
            Ok(Output::new(&data, render::reload(&data)))
        }
        DaemonCmd::Diff => {
            let data: DiffData = c.request(Command::Diff)?;
            Ok(Output::new(&data, render::diff(&data)))
        }
        DaemonCmd::Sync => {
            let data: SyncData = c.request(Command::Sync)?;
            let mut out = Output::new(&data, render::sync(&data));
            if data.config_in_sync == Some(false) {
                out.status = CONFIG_DIFFERS;
            }
            Ok(out)
        }
    }
}

/// What `drain --json` prints.
#[derive(Serialize)]
struct DrainReport<'a> {
    servers: &'a [DrainedServer],
    drained: bool,
    active: u64,
    inactive: u64,
    elapsed_secs: f64,
}

/// Sets the weight to 0, then polls `list` every 500 ms until the drained
/// servers have no (active, and with --inactive no inactive) connection.
fn drain(c: &mut Client, a: &DrainArgs, json: bool) -> Result<Output, Failure> {
    let service = filter(c, &a.service)?;
    let started = Instant::now();
    let data: DrainData = c.request(Command::Drain {
        service: service.clone(),
        address: a.server.address,
        port: a.server.port,
    })?;
    if data.servers.is_empty() {
        return Err(Failure::NotFound(format!(
            "no real server {} to drain",
            a.server
        )));
    }
    let what = render::drained(&data);
    let report = |drained: bool, active: u64, inactive: u64, secs: f64| {
        let text = if drained {
            format!("drained {what} in {secs:.1}s\n")
        } else {
            format!("weight 0: {what}\n")
        };
        let report = DrainReport {
            servers: &data.servers,
            drained,
            active,
            inactive,
            elapsed_secs: secs,
        };
        Output::new(&report, text)
    };
    if a.no_wait {
        return Ok(report(false, 0, 0, 0.0));
    }
    let tty = !json && std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    let mut last_shown = None;
    loop {
        let list: ListData = c.request(Command::List {
            stats: false,
            rate: false,
            service: service.clone(),
        })?;
        let (mut active, mut inactive) = (0u64, 0u64);
        for svc in &list.services {
            for s in &svc.servers {
                if data
                    .servers
                    .iter()
                    .any(|d| d.service == svc.name && d.address == s.address && d.port == s.port)
                {
                    active += s.active;
                    inactive += s.inactive;
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let done = active == 0 && (!a.inactive || inactive == 0);
        if !json {
            let line = render::drain_progress(&what, active, inactive, secs);
            // A terminal gets one line redrawn; a log one line per change.
            let _ = if tty {
                write!(out, "\r{line}\x1b[K")
            } else if last_shown != Some((active, inactive)) {
                writeln!(out, "{line}")
            } else {
                Ok(())
            };
            let _ = out.flush();
            last_shown = Some((active, inactive));
        }
        if done {
            if tty {
                let _ = writeln!(out);
            }
            return Ok(report(true, active, inactive, secs));
        }
        if a.timeout > 0 && secs >= a.timeout as f64 {
            if tty {
                let _ = writeln!(out);
            }
            return Err(Failure::DrainTimeout {
                secs: a.timeout,
                active,
                inactive,
            });
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            let mut stdout = std::io::stdout();
            let text = if cli.json { &out.json } else { &out.text };
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::from(out.status),
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(out.status),
                Err(e) => {
                    eprintln!("pylonctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            if cli.json {
                let doc = json!({"error": {"code": e.code(), "message": e.to_string()}});
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
            eprintln!("pylonctl: {e}");
            e.exit()
        }
    }
}
