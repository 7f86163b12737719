//! A continuous HTTP client for tests that change the real servers while
//! traffic runs (health checks): threads that send one request after the
//! other from inside a network namespace, each on a new TCP connection
//! with a short timeout, and record for every request when it started and
//! ended, which server answered and what went wrong. The test then asks
//! questions of the record, such as "did any request that started after T
//! fail, or reach rs1?".
//!
//! Written in Rust rather than as a script so that the record's times are
//! the test's own [`Instant`]s and a failure keeps its [`io::ErrorKind`]
//! (a refused connection is `ConnectionRefused`, not a message to parse).
//! Each thread enters the namespace with `setns(CLONE_NEWNET)`, which
//! changes the network namespace of that thread only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// What a [`LoadClient`] sends.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Where every request goes (the VIP, or a server directly).
    pub target: SocketAddr,
    /// Connect timeout, and the time the whole answer may take.
    pub timeout: Duration,
    /// Pause after each request, per thread.
    pub pause: Duration,
    /// Threads sending at the same time (at least 1).
    pub threads: usize,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Status 200 from the server whose name is the body.
    Ok {
        /// The body: the answering server's name.
        server: String,
    },
    /// Another status, from the server whose name is the body.
    Status {
        /// The status code.
        code: u16,
        /// The body.
        server: String,
    },
    /// No (complete) answer: refused, reset, timed out, malformed.
    Error {
        /// The I/O error kind (`InvalidData` for an answer that is not
        /// HTTP).
        kind: io::ErrorKind,
        /// The error's text.
        message: String,
    },
}

/// One request: when it started (before the connect) and ended, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Before the connect.
    pub start: Instant,
    /// After the answer, or the error.
    pub end: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Request {
    /// Whether it got a 200.
    pub fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok { .. })
    }

    /// The server that answered (with any status), if one did.
    pub fn server(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Ok { server } | Outcome::Status { server, .. } => Some(server),
            Outcome::Error { .. } => None,
        }
    }

    /// How long it took.
    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// The record of a [`LoadClient`] run, ordered by start time.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    /// Every request, by start time.
    pub all: Vec<Request>,
}

impl Requests {
    /// Takes requests in any order.
    pub fn new(mut all: Vec<Request>) -> Requests {
        all.sort_by_key(|r| r.start);
        Requests { all }
    }

    /// The requests that started at or after `t`.
    pub fn started_since(&self, t: Instant) -> impl Iterator<Item = &Request> {
        self.all.iter().filter(move |r| r.start >= t)
    }

    /// The requests that started in `[from, to)`.
    pub fn started_between(&self, from: Instant, to: Instant) -> impl Iterator<Item = &Request> {
        self.all
            .iter()
            .filter(move |r| r.start >= from && r.start < to)
    }

    /// The requests that started at or after `t` and did not get a 200.
    pub fn failed_since(&self, t: Instant) -> Vec<&Request> {
        self.started_since(t).filter(|r| !r.ok()).collect()
    }

    /// The requests that started at or after `t` and that `server`
    /// answered (with any status).
    pub fn answered_by_since(&self, server: &str, t: Instant) -> Vec<&Request> {
        self.started_since(t)
            .filter(|r| r.server() == Some(server))
            .collect()
    }

    /// The first request that started at or after `t` and got a 200 from
    /// `server`.
    pub fn first_ok_from_since(&self, server: &str, t: Instant) -> Option<&Request> {
        self.started_since(t)
            .find(|r| matches!(&r.outcome, Outcome::Ok { server: s } if s == server))
    }

    /// The last request that started before `t` and that `server`
    /// answered (with any status) or that got no answer at all: the last
    /// one that may have gone to `server` before `t`.
    pub fn last_possibly_to_before(&self, server: &str, t: Instant) -> Option<&Request> {
        self.all
            .iter()
            .rev()
            .filter(|r| r.start < t)
            .find(|r| r.server().map_or(true, |s| s == server))
    }

    /// 200 answers per server among `requests`.
    pub fn ok_by_server<'a>(requests: impl Iterator<Item = &'a Request>) -> BTreeMap<String, u64> {
        let mut by = BTreeMap::new();
        for r in requests {
            if let Outcome::Ok { server } = &r.outcome {
                *by.entry(server.clone()).or_insert(0) += 1;
            }
        }
        by
    }

    /// A summary for failure messages and logs, times relative to `t0`:
    /// counts, answers per server and the failed requests (at most 20).
    pub fn report(&self, t0: Instant) -> String {
        let failed: Vec<&Request> = self.all.iter().filter(|r| !r.ok()).collect();
        let mut out = format!(
            "{} requests, {} failed; 200s by server {:?}\n",
            self.all.len(),
            failed.len(),
            Requests::ok_by_server(self.all.iter())
        );
        for r in failed.iter().take(20) {
            let _ = writeln!(
                out,
                "  +{:.3}s ({:.3}s): {:?}",
                since(t0, r.start),
                r.duration().as_secs_f64(),
                r.outcome
            );
        }
        if failed.len() > 20 {
            let _ = writeln!(out, "  ... {} more", failed.len() - 20);
        }
        out
    }
}

/// Seconds from `t0` to `t`, negative when `t` is earlier.
pub fn since(t0: Instant, t: Instant) -> f64 {
    match t.checked_duration_since(t0) {
        Some(d) => d.as_secs_f64(),
        None => -t0.duration_since(t).as_secs_f64(),
    }
}

/// Client threads running in a network namespace until
/// [`stop`](LoadClient::stop)ped; dropping it stops them too.
pub struct LoadClient {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Request>>>,
}

impl LoadClient {
    /// Starts `options.threads` threads in namespace `ns` (`ip netns`
    /// name), each sending requests to `options.target` until stopped.
    /// Fails when a thread cannot enter the namespace.
    pub fn start(ns: &str, options: LoadOptions) -> Result<LoadClient> {
        let netns = netns_file(ns)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut client = LoadClient {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        let (entered_tx, entered) = mpsc::channel();
        for i in 0..options.threads.max(1) {
            let file =
                File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
            let (stop, options, entered_tx) =
                (Arc::clone(&stop), options.clone(), entered_tx.clone());
            let thread = thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || {
                    // SAFETY: setns(2) on a descriptor this thread owns;
                    // CLONE_NEWNET changes only this thread's namespace.
                    let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    let entered = if entered == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    };
                    let ok = entered.is_ok();
                    let _ = entered_tx.send(entered);
                    drop(file);
                    if ok {
                        run(&stop, &options)
                    } else {
                        Vec::new()
                    }
                })
                .context("starting a load thread")?;
            client.threads.push(thread);
        }
        drop(entered_tx);
        for _ in 0..client.threads.len() {
            entered
                .recv()
                .map_err(|_| anyhow!("a load thread died before entering {ns}"))?
                .with_context(|| format!("setns into {ns}"))?;
        }
        Ok(client)
    }

    /// Stops the threads and returns every request they made.
    pub fn stop(mut self) -> Result<Requests> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for thread in self.threads.drain(..) {
            match thread.join() {
                Ok(requests) => all.extend(requests),
                Err(_) => bail!("a load thread panicked"),
            }
        }
        Ok(Requests::new(all))
    }
}

impl Drop for LoadClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The file `ip netns` made for namespace `ns`.
fn netns_file(ns: &str) -> Result<std::path::PathBuf> {
    ["/run/netns", "/var/run/netns"]
        .iter()
        .map(|dir| Path::new(dir).join(ns))
        .find(|path| path.exists())
        .with_context(|| format!("no network namespace {ns} in /run/netns"))
}

/// One thread's loop.
fn run(stop: &AtomicBool, options: &LoadOptions) -> Vec<Request> {
    let mut requests = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        let outcome = request(options.target, options.timeout);
        requests.push(Request {
            start,
            end: Instant::now(),
            outcome,
        });
        thread::sleep(options.pause);
    }
    requests
}

/// One `GET /` on a new connection, `Connection: close`, within `timeout`.
fn request(target: SocketAddr, timeout: Duration) -> Outcome {
    match exchange(target, timeout) {
        Ok(answer) => parse_answer(&answer),
        Err(e) => Outcome::Error {
            kind: e.kind(),
            message: e.to_string(),
        },
    }
}

fn exchange(target: SocketAddr, timeout: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    let left = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "no complete answer in time"))
    };
    stream.set_write_timeout(Some(left(deadline)?))?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        target.ip()
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left(deadline)?))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(answer),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A read timeout is WouldBlock on Linux.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, e.to_string()))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The status and body of a complete HTTP/1.x answer.
fn parse_answer(answer: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(answer);
    let malformed = |what: &str| Outcome::Error {
        kind: io::ErrorKind::InvalidData,
        message: format!("{what}: {:?}", text.chars().take(80).collect::<String>()),
    };
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return malformed("no end of header");
    };
    let mut status = head.lines().next().unwrap_or("").split_whitespace();
    let code = match (status.next(), status.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(code))) if v.starts_with("HTTP/1.") => code,
        _ => return malformed("no status line"),
    };
    let server = body.trim().to_owned();
    if code == 200 {
        Outcome::Ok { server }
    } else {
        Outcome::Status { code, server }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64, outcome: Outcome) -> Request {
        let start = t0 + Duration::from_millis(ms);
        Request {
            start,
            end: start + Duration::from_millis(5),
            outcome,
        }
    }

    fn ok(server: &str) -> Outcome {
        Outcome::Ok {
            server: server.to_owned(),
        }
    }

    fn refused() -> Outcome {
        Outcome::Error {
            kind: io::ErrorKind::ConnectionRefused,
            message: "refused".to_owned(),
        }
    }

    #[test]
    fn answers_are_parsed() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nrs1\n"),
            ok("rs1")
        );
        assert_eq!(
            parse_answer(b"HTTP/1.0 503 Service Unavailable\r\n\r\nrs2\n"),
            Outcome::Status {
                code: 503,
                server: "rs2".to_owned()
            }
        );
        for bad in [&b"HTTP/1.1 200 OK\r\n"[..], b"SSH-2.0\r\n\r\n", b""] {
            assert!(
                matches!(
                    parse_answer(bad),
                    Outcome::Error {
                        kind: io::ErrorKind::InvalidData,
                        ..
                    }
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn questions_about_the_record() {
        let t0 = Instant::now();
        let requests = Requests::new(vec![
            at(t0, 30, ok("rs2")),
            at(t0, 0, ok("rs1")),
            at(t0, 10, refused()),
            at(t0, 20, ok("rs1")),
            at(t0, 40, ok("rs3")),
            at(t0, 50, ok("rs1")),
        ]);
        let t = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(requests.all[0].start, t0, "sorted by start");
        assert_eq!(requests.failed_since(t(0)).len(), 1);
        assert!(requests.failed_since(t(11)).is_empty());
        assert_eq!(requests.answered_by_since("rs1", t(15)).len(), 2);
        assert_eq!(
            requests.first_ok_from_since("rs1", t(25)).map(|r| r.start),
            Some(t(50))
        );
        assert!(requests.first_ok_from_since("rs4", t(0)).is_none());
        assert_eq!(
            requests
                .last_possibly_to_before("rs1", t(50))
                .map(|r| r.start),
            Some(t(20))
        );
        assert_eq!(
            requests
                .last_possibly_to_before("rs2", t(20))
                .map(|r| r.start),
            Some(t(10)),
            "a failure may have been rs2's"
        );
        assert_eq!(requests.started_between(t(10), t(40)).count(), 3);
        let by = Requests::ok_by_server(requests.all.iter());
        assert_eq!(by["rs1"], 3);
        assert_eq!(by.get("rs4"), None);
        let report = requests.report(t0);
        assert!(report.starts_with("6 requests, 1 failed"), "{report}");
        assert!(report.contains("+0.010s"), "{report}");
    }

    #[test]
    fn times_relative_to_t0() {
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!((since(t0, t0 + Duration::from_millis(250)) - 0.25).abs() < 1e-9);
        assert!((since(t0, t0 - Duration::from_millis(500)) + 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_missing_namespace_is_an_error() {
        let err = LoadClient::start(
            "no-such-namespace-for-pylon-tests",
            LoadOptions {
                target: "127.0.0.1:9".parse().unwrap(),
                timeout: Duration::from_millis(100),
                pause: Duration::ZERO,
                threads: 1,
            },
        )
        .err()
        .expect("no namespace, no client");
        assert!(err.to_string().contains("no network namespace"), "{err}");
    }
}
