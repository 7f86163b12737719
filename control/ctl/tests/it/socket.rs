//! The server and client over a real socket: every bad input gets its
//! error (or a clean close) and the daemon keeps serving.

use crate::common::Daemon;
use pylon_ctl::proto::{Command, ErrorCode, ListData, Response, MAX_LINE};
use pylon_ctl::{Client, ClientError};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A raw connection that reads one response line at a time.
struct Raw {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Raw { stream, reader }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next response, or `None` at end of stream.
    fn response(&mut self) -> Option<Response> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with('\n'), "partial response {line:?}");
                Some(serde_json::from_str(&line).unwrap())
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("reading a response: {e}"),
        }
    }

    fn error(&mut self) -> (Option<u64>, ErrorCode, String) {
        let r = self.response().expect("an error response");
        assert!(!r.ok, "{r:?}");
        assert_eq!(r.v, 1);
        let e = r.error.unwrap();
        (r.id, e.code, e.message)
    }

    fn closed(&mut self) -> bool {
        self.response().is_none()
    }
}

const LIST: &[u8] = b"{\"v\":1,\"id\":42,\"cmd\":{\"op\":\"list\"}}\n";

fn assert_list_ok(raw: &mut Raw) {
    raw.send(LIST);
    let r = raw.response().unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(r.id, Some(42));
    let data: ListData = serde_json::from_value(r.data.unwrap()).unwrap();
    assert_eq!(data.services.len(), 2);
}

fn fresh_request_works(d: &Daemon) {
    let mut c = Client::connect(d.path()).unwrap();
    let data: ListData = c
        .request(Command::List {
            stats: false,
            rate: false,
            service: None,
        })
        .unwrap();
    assert_eq!(data.services[0].name, "web");
}

#[test]
fn garbage_is_bad_request_and_the_connection_goes_on() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    raw.send(b"hello, daemon\n");
    let (id, code, msg) = raw.error();
    assert_eq!((id, code), (None, ErrorCode::BadRequest));
    assert!(msg.contains("invalid JSON"), "{msg}");
    raw.send(b"\x00\x01\x02\x03\xff\n");
    assert_eq!(raw.error().1, ErrorCode::BadRequest);
    raw.send(b"[1,2,3]\n");
    assert_eq!(raw.error().1, ErrorCode::BadRequest);
    assert_list_ok(&mut raw);
    fresh_request_works(&d);
}

#[test]
fn invalid_utf8_is_bad_request() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    raw.send(b"\xc3\x28\xa0\xa1\n");
    assert_eq!(raw.error().1, ErrorCode::BadRequest);
    raw.send(b"{\"v\":1,\"id\":9,\"cmd\":{\"op\":\"del_service\",\"name\":\"\xed\xa0\x80\"}}\n");
    let (id, code, msg) = raw.error();
    assert_eq!((id, code), (None, ErrorCode::BadRequest));
    assert!(msg.contains("unicode") || msg.contains("UTF-8"), "{msg}");
    assert_list_ok(&mut raw);
    fresh_request_works(&d);
}

#[test]
fn truncated_request_at_close_is_answered_then_closed() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    raw.send(b"{\"v\":1,\"id\":5,\"cmd\":{\"op\":");
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let (_, code, msg) = raw.error();
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(msg.contains("EOF"), "{msg}");
    assert!(raw.closed());
    // A whole request without its newline at the end is served.
    let mut raw = Raw::connect(d.path());
    raw.send(&LIST[..LIST.len() - 1]);
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let r = raw.response().unwrap();
    assert!(r.ok && r.id == Some(42), "{r:?}");
    assert!(raw.closed());
    // A client that vanishes mid-line harms nobody.
    let mut gone = UnixStream::connect(d.path()).unwrap();
    gone.write_all(b"{\"v\":1,\"id\":").unwrap();
    drop(gone);
    fresh_request_works(&d);
}

#[test]
fn a_one_mebibyte_line_is_too_large_and_closes() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    let mut writer = raw.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut line = vec![b'x'; 1 << 20];
        line.push(b'\n');
        // The server stops reading after 64 KiB: the write may fail.
        let _ = writer.write_all(&line);
    });
    let (id, code, msg) = raw.error();
    assert_eq!((id, code), (None, ErrorCode::TooLarge));
    assert!(msg.contains(&MAX_LINE.to_string()), "{msg}");
    assert!(raw.closed());
    sender.join().unwrap();
    fresh_request_works(&d);
}

#[test]
fn a_line_of_exactly_the_limit_is_read() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    let mut line = LIST[..LIST.len() - 1].to_vec();
    line.resize(MAX_LINE, b' ');
    line.push(b'\n');
    raw.send(&line);
    assert!(raw.response().unwrap().ok);
    let mut over = line[..MAX_LINE].to_vec();
    over.extend_from_slice(b" \n");
    raw.send(&over);
    assert_eq!(raw.error().1, ErrorCode::TooLarge);
    assert!(raw.closed());
}

#[test]
fn unknown_version_and_command_are_refused_by_name() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    raw.send(b"{\"v\":2,\"id\":11,\"cmd\":{\"op\":\"list\"}}\n");
    let (id, code, msg) = raw.error();
    assert_eq!((id, code), (Some(11), ErrorCode::UnsupportedVersion));
    assert!(msg.contains("speaks 1"), "{msg}");
    raw.send(b"{\"v\":1,\"id\":12,\"cmd\":{\"op\":\"launch_missiles\"}}\n");
    let (id, code, msg) = raw.error();
    assert_eq!((id, code), (Some(12), ErrorCode::UnknownCommand));
    assert!(
        msg.contains("launch_missiles") && msg.contains("drain"),
        "{msg}"
    );
    raw.send(b"{\"v\":1,\"id\":13,\"cmd\":{\"op\":\"edit_server\",\"service\":\"web\"}}\n");
    let (id, code, msg) = raw.error();
    assert_eq!((id, code), (Some(13), ErrorCode::BadRequest));
    assert!(msg.contains("address"), "{msg}");
    assert_list_ok(&mut raw);
    fresh_request_works(&d);
}

#[test]
fn handler_errors_reach_the_client() {
    let d = Daemon::start();
    let mut c = Client::connect(d.path()).unwrap();
    let e = c
        .call(Command::DelService {
            name: "nope".into(),
        })
        .unwrap_err();
    let ClientError::Daemon(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(e.message, "no service named nope");
    // The same connection serves the next request.
    assert!(c.call(Command::Vrrp).is_ok());
}

#[test]
fn pipelined_requests_are_answered_in_order_and_blank_lines_ignored() {
    let d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    raw.send(
        b"\n{\"v\":1,\"id\":1,\"cmd\":{\"op\":\"vrrp\"}}\n  \r\n{\"v\":1,\"id\":2,\"cmd\":{\"op\":\"health\"}}\n{\"v\":1,\"id\":3,\"cmd\":{\"op\":\"workers\"}}\n",
    );
    for id in 1..=3 {
        let r = raw.response().unwrap();
        assert!(r.ok);
        assert_eq!(r.id, Some(id));
    }
}

#[test]
fn twenty_clients_at_once() {
    let d = Daemon::start();
    let path = d.path().to_path_buf();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&path).unwrap();
                for _ in 0..10 {
                    let data: ListData = c
                        .request(Command::List {
                            stats: i % 2 == 0,
                            rate: false,
                            service: Some("web".into()),
                        })
                        .unwrap();
                    assert_eq!(data.services.len(), 1);
                    assert_eq!(data.services[0].stats.is_some(), i % 2 == 0);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn silent_and_slow_clients_block_nobody() {
    let d = Daemon::start();
    let _silent = UnixStream::connect(d.path()).unwrap();
    let mut slow = UnixStream::connect(d.path()).unwrap();
    slow.write_all(b"{\"v\":1,\"id\":1,").unwrap();
    let t = Instant::now();
    fresh_request_works(&d);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // The slow one finishes its line and is served too.
    slow.write_all(b"\"cmd\":{\"op\":\"vrrp\"}}\n").unwrap();
    let mut raw = Raw {
        reader: BufReader::new(slow.try_clone().unwrap()),
        stream: slow,
    };
    assert!(raw.response().unwrap().ok);
}

#[test]
fn idle_clients_are_closed_after_the_idle_timeout() {
    let d = Daemon::with(|o| o.idle_timeout = Duration::from_secs(1));
    let mut raw = Raw::connect(d.path());
    raw.send(b"{\"v\":1,");
    let t = Instant::now();
    let (_, code, msg) = raw.error();
    assert_eq!(code, ErrorCode::Timeout);
    assert!(msg.contains("no complete request"), "{msg}");
    assert!(raw.closed());
    assert!(t.elapsed() >= Duration::from_millis(900));
    // A request each time within the timeout keeps the connection.
    let mut c = Client::connect(d.path()).unwrap();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(150));
        assert!(c.call(Command::Vrrp).is_ok());
    }
}

#[test]
fn clients_beyond_the_cap_are_told_busy() {
    let d = Daemon::with(|o| o.max_clients = 2);
    // Both answered: both are being served.
    let mut a = Raw::connect(d.path());
    assert_list_ok(&mut a);
    let mut b = Raw::connect(d.path());
    assert_list_ok(&mut b);
    let mut c = Raw::connect(d.path());
    let (_, code, msg) = c.error();
    assert_eq!(code, ErrorCode::Busy);
    assert!(msg.contains("too many clients"), "{msg}");
    assert!(c.closed());
    drop(a);
    // The slot frees once the server notices the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Raw::connect(d.path());
        // A busy answer may come (and the close) before the request goes.
        let _ = c.stream.write_all(LIST);
        let r = c.response().unwrap();
        if r.ok {
            break;
        }
        assert_eq!(r.error.unwrap().code, ErrorCode::Busy);
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unanswered_requests_time_out_with_what_happened() {
    let d = Daemon::with(|o| o.reply_timeout = Duration::from_secs(1));
    d.model.lock().unwrap().paused = true;
    let mut c = Client::connect(d.path()).unwrap();
    let ClientError::Daemon(e) = c.call(Command::Reload).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.message.contains("not applied"), "{e}");
    {
        let mut m = d.model.lock().unwrap();
        m.paused = false;
        m.hold = true;
    }
    let ClientError::Daemon(e) = c.call(Command::Reload).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::Timeout);
    assert!(e.message.contains("may have been applied"), "{e}");
    d.model.lock().unwrap().hold = false;
    // The withdrawn request was never handled: the model saw no reload.
    assert!(c.call(Command::Vrrp).is_ok());
}

#[test]
fn a_full_queue_is_busy() {
    let d = Daemon::with(|o| {
        o.queue = 1;
        // The first request must still wait in the queue when the second
        // comes, on a loaded machine too.
        o.reply_timeout = Duration::from_secs(3);
    });
    d.model.lock().unwrap().paused = true;
    let path = d.path().to_path_buf();
    let first = std::thread::spawn(move || {
        let mut c = Client::connect(&path).unwrap();
        c.call(Command::Vrrp).unwrap_err()
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut c = Client::connect(d.path()).unwrap();
    let ClientError::Daemon(e) = c.call(Command::Vrrp).unwrap_err() else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::Busy);
    let ClientError::Daemon(e) = first.join().unwrap() else {
        panic!()
    };
    assert_eq!(e.code, ErrorCode::Timeout);
    d.model.lock().unwrap().paused = false;
    assert!(c.call(Command::Vrrp).is_ok());
}

#[test]
fn socket_is_private_and_owned_by_the_daemon_user() {
    let d = Daemon::start();
    let md = std::fs::metadata(d.path()).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let mine = std::fs::metadata(d.path().parent().unwrap()).unwrap();
    assert_eq!(md.uid(), mine.uid());
    assert!(std::os::unix::fs::FileTypeExt::is_socket(&md.file_type()));
}

#[test]
fn dropping_the_server_closes_clients_and_removes_the_socket() {
    let mut d = Daemon::start();
    let mut raw = Raw::connect(d.path());
    assert_list_ok(&mut raw);
    let t = Instant::now();
    d.server.take();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(!d.path().exists());
    let mut rest = Vec::new();
    let _ = raw.reader.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(matches!(
        Client::connect(d.path()),
        Err(ClientError::Connect { .. })
    ));
}
