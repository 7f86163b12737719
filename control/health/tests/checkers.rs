//! Every checker against local listeners on 127.0.0.1, through
//! `check_once` (the engine's own probe code), then the engine itself.
//!
//! No test asserts on wall-clock time; waits are bounded only so that a
//! bug cannot hang the suite.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pylon_health::{
    check_once, CheckKind, CheckResult, Engine, HealthCheck, Probe, Reason, ServerCheck, ServerKey,
    State, StatusRange,
};
use socket2::{Domain, Socket, Type};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn server(port: u16, probe: Probe) -> ServerCheck {
    let mut check = HealthCheck::new(probe);
    check.timeout = Duration::from_millis(300);
    check.interval = Duration::from_secs(1);
    ServerCheck {
        key: ServerKey {
            service: "test".to_owned(),
            address: LOCALHOST,
            port,
        },
        check,
    }
}

fn tcp(send: Option<&str>, expect: Option<&str>) -> Probe {
    Probe::Tcp {
        send: send.map(|s| s.as_bytes().to_vec()),
        expect: expect.map(|s| s.as_bytes().to_vec()),
    }
}

fn http(status: &str, body: Option<&str>) -> Probe {
    let (low, high) = status.split_once('-').unwrap_or((status, status));
    Probe::Http {
        path: "/health".to_owned(),
        host: None,
        expect_status: StatusRange {
            low: low.parse().unwrap(),
            high: high.parse().unwrap(),
        },
        body: body.map(|b| b.as_bytes().to_vec()),
    }
}

fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind((LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// A port with no listener: bound, then closed.
fn closed_port() -> u16 {
    listener().1
}

/// Serves `connections` connections: reads the request (up to a blank line
/// when `http`), hands it to the returned channel, answers `answer` and
/// closes.
fn serve(answer: &'static [u8], http: bool, connections: usize) -> (u16, mpsc::Receiver<Vec<u8>>) {
    let (listener, port) = listener();
    let (requests, received) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buffer = [0; 1024];
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            loop {
                let done = if http {
                    request.windows(4).any(|w| w == b"\r\n\r\n")
                } else {
                    !request.is_empty()
                };
                if done {
                    break;
                }
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream.write_all(answer);
            let _ = requests.send(request);
        }
    });
    (port, received)
}

/// A listener that accepts connections and never answers; kept alive by
/// the returned handle.
fn silent() -> (u16, thread::JoinHandle<()>) {
    let (listener, port) = listener();
    let handle = thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(1) {
            held.push(stream);
            thread::sleep(Duration::from_secs(2));
        }
    });
    (port, handle)
}

#[test]
fn tcp_connect_ok() {
    let (listener, port) = listener();
    assert_eq!(
        check_once(&server(port, tcp(None, None))),
        CheckResult::Pass
    );
    drop(listener);
}

#[test]
fn tcp_refused() {
    let port = closed_port();
    assert_eq!(
        check_once(&server(port, tcp(None, None))),
        Reason::Refused.into()
    );
}

#[test]
fn tcp_timeout_on_a_full_backlog() {
    // A listener with a backlog of 0 that never accepts: once its accept
    // queue is full the kernel drops further SYNs, so connects hang.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((LOCALHOST, 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        let filler = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        let connected = filler.connect_timeout(
            &SocketAddr::from((LOCALHOST, port)).into(),
            Duration::from_millis(200),
        );
        fillers.push(filler);
        if connected.is_err() {
            break;
        }
    }
    assert_eq!(
        check_once(&server(port, tcp(None, None))),
        Reason::Timeout.into()
    );
}

#[test]
fn tcp_timeout_waiting_for_expect() {
    // Connected (in the backlog), but nobody ever answers.
    let (listener, port) = listener();
    assert_eq!(
        check_once(&server(port, tcp(Some("PING\r\n"), Some("PONG")))),
        Reason::Timeout.into()
    );
    drop(listener);
}

#[test]
fn tcp_send_and_expect() {
    let (port, requests) = serve(b"+PONG\r\n", false, 1);
    assert_eq!(
        check_once(&server(port, tcp(Some("PING\r\n"), Some("PONG")))),
        CheckResult::Pass
    );
    assert_eq!(requests.recv().unwrap(), b"PING\r\n");
}

#[test]
fn tcp_expect_mismatch() {
    let (port, _requests) = serve(b"-ERR go away\r\n", false, 1);
    assert_eq!(
        check_once(&server(port, tcp(Some("PING\r\n"), Some("PONG")))),
        Reason::ExpectMismatch.into()
    );
}

#[test]
fn tcp_with_source_and_interface() {
    let (listener, port) = listener();
    let mut check = server(port, tcp(None, None));
    check.check.source = Some(LOCALHOST);
    check.check.interface = Some("lo".to_owned());
    assert_eq!(check_once(&check), CheckResult::Pass);
    check.check.interface = Some("nosuchif0".to_owned());
    assert!(matches!(
        check_once(&check),
        CheckResult::Fail(Reason::Io(_))
    ));
    drop(listener);
}

#[test]
fn tcp_port_override() {
    let (listener, port) = listener();
    let mut check = server(closed_port(), tcp(None, None));
    check.check.port = Some(port);
    assert_eq!(check_once(&check), CheckResult::Pass);
    drop(listener);
}

#[test]
fn http_ok_with_body_and_host() {
    let (port, requests) = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nstatus ok",
        true,
        1,
    );
    assert_eq!(
        check_once(&server(port, http("200-299", Some("ok")))),
        CheckResult::Pass
    );
    let request = String::from_utf8(requests.recv().unwrap()).unwrap();
    assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
        "{request}"
    );
}

#[test]
fn http_wrong_status() {
    let (port, _requests) = serve(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        true,
        1,
    );
    assert_eq!(
        check_once(&server(port, http("200-399", None))),
        Reason::Status(503).into()
    );
}

#[test]
fn http_wrong_body() {
    let (port, _requests) = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nstatus: maint",
        true,
        1,
    );
    assert_eq!(
        check_once(&server(port, http("200", Some("status: ok")))),
        Reason::BodyMismatch.into()
    );
}

#[test]
fn http_garbage_answer() {
    let (port, _requests) = serve(b"\x00\xff\x13garbage\r\n\r\n", true, 1);
    assert!(matches!(
        check_once(&server(port, http("200", None))),
        CheckResult::Fail(Reason::BadResponse(_))
    ));
}

#[test]
fn http_closed_without_answer() {
    let (port, _requests) = serve(b"", true, 1);
    assert_eq!(
        check_once(&server(port, http("200", None))),
        Reason::Closed.into()
    );
}

#[test]
fn http_timeout() {
    let (port, _handle) = silent();
    assert_eq!(
        check_once(&server(port, http("200", None))),
        Reason::Timeout.into()
    );
}

#[test]
fn http_refused() {
    assert_eq!(
        check_once(&server(closed_port(), http("200", None))),
        Reason::Refused.into()
    );
}

fn exec(command: &str) -> ServerCheck {
    let mut check = server(
        8081,
        Probe::Exec {
            command: command.to_owned(),
        },
    );
    // Starting a shell can take long on a loaded machine.
    check.check.timeout = Duration::from_secs(5);
    check
}

#[test]
fn exec_ok() {
    assert_eq!(check_once(&exec("exit 0")), CheckResult::Pass);
}

#[test]
fn exec_fail() {
    assert_eq!(check_once(&exec("exit 3")), Reason::ExitCode(3).into());
    assert_eq!(
        check_once(&exec("kill -TERM $$")),
        Reason::Signal(15).into()
    );
}

#[test]
fn exec_sees_the_server() {
    let command =
        r#"test "$PYLON_SERVICE/$PYLON_SERVER_ADDRESS:$PYLON_SERVER_PORT" = "test/127.0.0.1:8081""#;
    assert_eq!(check_once(&exec(command)), CheckResult::Pass);
}

#[test]
fn exec_timeout_kills_the_command() {
    let marker = std::env::temp_dir().join(format!("pylon-health-exec-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // A command that forks: the whole process group must die at the
    // timeout, so the marker is never written.
    let command = format!("(sleep 1; touch {}) & sleep 5", marker.display());
    let mut check = exec(&command);
    check.check.timeout = Duration::from_millis(500);
    assert_eq!(check_once(&check), Reason::Timeout.into());
    thread::sleep(Duration::from_millis(1500));
    assert!(!marker.exists(), "the forked child outlived the timeout");
}

#[test]
fn icmp_echo_localhost() {
    let result = check_once(&server(0, Probe::Icmp));
    if let CheckResult::Fail(Reason::Io(what)) = &result {
        if what.contains("CAP_NET_RAW") {
            eprintln!("skipped: {what}");
            return;
        }
    }
    assert_eq!(result, CheckResult::Pass);
}

#[test]
fn icmp_through_the_engine_many_at_once() {
    // Several ICMP probes share one raw socket; each must get its own reply.
    let servers: Vec<ServerCheck> = (1..=20u8)
        .map(|n| {
            let mut check = server(0, Probe::Icmp);
            check.key.address = Ipv4Addr::new(127, 0, 0, n);
            check.check.interval = Duration::from_millis(100);
            check.check.timeout = Duration::from_millis(100);
            check.check.initial = State::Down;
            check.check.rise = 2;
            check
        })
        .collect();
    if let CheckResult::Fail(Reason::Io(what)) = check_once(&servers[0]) {
        eprintln!("skipped: {what}");
        return;
    }
    let (sender, transitions) = mpsc::channel();
    let engine = Engine::start(servers, move |t| {
        let _ = sender.send(t);
    })
    .unwrap();
    for _ in 0..20 {
        let up = transitions.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (up.old, up.new, up.kind),
            (State::Down, State::Up, CheckKind::Icmp)
        );
    }
    assert!(engine.snapshot().iter().all(|h| h.state == State::Up));
}

#[test]
fn engine_is_shareable() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
}

#[test]
fn engine_reports_transitions_and_snapshots() {
    let (listener, up_port) = listener();
    let down_port = closed_port();
    let (http_port, _requests) = serve(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        true,
        usize::MAX,
    );
    // Quick rounds, but a timeout no loaded machine reaches: the reasons
    // asserted are the answers', never a timeout.
    let quick = |mut check: ServerCheck| {
        check.check.interval = Duration::from_millis(50);
        check.check.timeout = Duration::from_secs(2);
        check.check.rise = 1;
        check.check.fall = 2;
        check
    };
    let servers = vec![
        quick(server(up_port, tcp(None, None))),
        quick(server(down_port, tcp(None, None))),
        quick(server(http_port, http("200-399", None))),
    ];
    let (sender, transitions) = mpsc::channel();
    let engine = Engine::start(servers.clone(), move |t| {
        let _ = sender.send(t);
    })
    .unwrap();
    let mut downs = Vec::new();
    for _ in 0..2 {
        let t = transitions.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!((t.old, t.new), (State::Up, State::Down));
        downs.push((t.key.port, t.reason));
    }
    downs.sort_by_key(|(port, _)| *port != down_port);
    assert_eq!(
        downs,
        [
            (down_port, Reason::Refused.into()),
            (http_port, Reason::Status(503).into())
        ]
    );
    // Let a few more rounds run, then look.
    thread::sleep(Duration::from_millis(300));
    let snapshot = engine.snapshot();
    assert_eq!(snapshot.len(), 3);
    assert_eq!(snapshot[0].state, State::Up);
    assert_eq!(snapshot[0].last_result, Some(CheckResult::Pass));
    assert_eq!(snapshot[1].state, State::Down);
    assert_eq!(snapshot[1].last_result, Some(Reason::Refused.into()));
    assert_eq!(snapshot[2].state, State::Down);
    assert!(snapshot
        .iter()
        .all(|h| h.checks_run >= 2 && h.transitions <= 1));
    assert!(transitions.try_recv().is_err(), "each change reported once");
    // A reload without the HTTP server, the refused one now listening.
    let revived = TcpListener::bind((LOCALHOST, down_port));
    engine.set_servers(servers[..2].to_vec());
    assert_eq!(engine.snapshot().len(), 2);
    if revived.is_ok() {
        let up = transitions.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            (up.key.port, up.old, up.new),
            (down_port, State::Down, State::Up)
        );
    }
    assert!(engine.start_lag().count() >= 6);
    drop(engine);
    drop(listener);
}
