//! The I/O of the checkers: non-blocking sockets on one `mio` poll (epoll),
//! plus a thread per running `exec` command.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use rustix::io::Errno;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::http::{self, Finder, ResponseReader, Verdict};
use crate::{exec, icmp, CheckResult, Probe, Reason, RunId, ServerCheck};

/// Token of the waker (engine commands, finished `exec` runs).
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Most bytes of a TCP answer searched for `expect`.
const MAX_EXPECT: usize = 64 * 1024;
/// Time an `exec` run may take beyond its timeout to be killed and reaped
/// before it is given up as timed out.
const EXEC_GRACE: Duration = Duration::from_secs(2);
/// Data of our echo requests: a tag and the probe's token.
const ICMP_TAG: &[u8; 8] = b"pylon-hc";

/// Where checks leave from: a source address and an interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Binding {
    source: Option<Ipv4Addr>,
    interface: Option<String>,
}

/// A raw ICMP socket shared by every echo probe with the same binding.
struct IcmpSocket {
    socket: Socket,
    /// Sequence number -> probe token.
    pending: HashMap<u16, Token>,
}

/// What a running TCP or HTTP probe waits for.
enum Phase {
    Connecting,
    Sending,
    Receiving,
}

/// What decides a TCP or HTTP probe once connected.
enum Reader {
    /// Nothing to read: connected (and sent) is healthy.
    Nothing,
    /// TCP `expect`.
    Expect(Finder),
    /// HTTP response.
    Http(ResponseReader),
}

struct StreamProbe {
    stream: TcpStream,
    phase: Phase,
    send: Vec<u8>,
    sent: usize,
    reader: Reader,
}

enum Kind {
    Stream(Box<StreamProbe>),
    Icmp {
        binding: Binding,
        seq: u16,
        target: Ipv4Addr,
        payload: [u8; 16],
    },
    Exec,
}

struct InFlight {
    run: RunId,
    kind: Kind,
}

/// Runs probes: [`start`](Prober::start) one, then [`wait`](Prober::wait)
/// for results.
pub(crate) struct Prober {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    exec_sender: Sender<(Token, CheckResult)>,
    exec_results: Receiver<(Token, CheckResult)>,
    probes: HashMap<Token, InFlight>,
    deadlines: BinaryHeap<Reverse<(Instant, usize)>>,
    icmp: HashMap<Binding, IcmpSocket>,
    icmp_tokens: HashMap<Token, Binding>,
    ready: Vec<(RunId, CheckResult)>,
    next_token: usize,
    ident: u16,
    next_seq: u16,
    buffer: Vec<u8>,
}

impl Prober {
    pub(crate) fn new() -> io::Result<Prober> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (exec_sender, exec_results) = mpsc::channel();
        Ok(Prober {
            poll,
            events: Events::with_capacity(1024),
            waker,
            exec_sender,
            exec_results,
            probes: HashMap::new(),
            deadlines: BinaryHeap::new(),
            icmp: HashMap::new(),
            icmp_tokens: HashMap::new(),
            ready: Vec::new(),
            next_token: 0,
            // The echo identifier tells our replies from other pingers'.
            ident: std::process::id() as u16,
            next_seq: 0,
            buffer: vec![0; 64 * 1024],
        })
    }

    /// Wakes [`wait`](Prober::wait) from another thread.
    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Starts the check of `server` as `run`; its result comes out of a
    /// later [`wait`](Prober::wait).
    pub(crate) fn start(&mut self, run: RunId, server: &ServerCheck) {
        let check = &server.check;
        let token = take_token(&mut self.next_token);
        let deadline = Instant::now() + check.timeout;
        let started = match &check.probe {
            Probe::Icmp => self.start_icmp(token, server),
            Probe::Tcp { send, expect } => {
                let reader = match expect {
                    Some(expect) => Reader::Expect(Finder::new(expect.clone(), MAX_EXPECT)),
                    None => Reader::Nothing,
                };
                self.start_stream(token, server, send.clone().unwrap_or_default(), reader)
            }
            Probe::Http {
                path,
                host,
                expect_status,
                body,
            } => {
                let request = http::request(
                    path,
                    host.as_deref(),
                    server.key.address,
                    server.target_port(),
                );
                let reader = Reader::Http(ResponseReader::new(*expect_status, body.clone()));
                self.start_stream(token, server, request, reader)
            }
            Probe::Exec { command } => self.start_exec(token, server, command.clone()),
        };
        match started {
            Ok(kind) => {
                let deadline = match kind {
                    Kind::Exec => deadline + EXEC_GRACE,
                    _ => deadline,
                };
                self.probes.insert(token, InFlight { run, kind });
                self.deadlines.push(Reverse((deadline, token.0)));
            }
            Err(reason) => self.ready.push((run, reason.into())),
        }
    }

    fn start_stream(
        &mut self,
        token: Token,
        server: &ServerCheck,
        send: Vec<u8>,
        reader: Reader,
    ) -> Result<Kind, Reason> {
        let check = &server.check;
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| local("socket", &e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| local("O_NONBLOCK", &e))?;
        // Close with a RST, as HAProxy's checks do: no TIME_WAIT left behind
        // by hundreds of checks a second (which would use up the ports of a
        // bound source address).
        socket
            .set_linger(Some(Duration::ZERO))
            .map_err(|e| local("SO_LINGER", &e))?;
        bind(&socket, check.source, check.interface.as_deref())?;
        let target = SocketAddrV4::new(server.key.address, server.target_port());
        match socket.connect(&target.into()) {
            Ok(()) => {}
            Err(e) if Errno::from_io_error(&e) == Some(Errno::INPROGRESS) => {}
            Err(e) => return Err(reason(&e)),
        }
        let mut stream = TcpStream::from_std(socket.into());
        self.poll
            .registry()
            .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| local("epoll", &e))?;
        Ok(Kind::Stream(Box::new(StreamProbe {
            stream,
            phase: Phase::Connecting,
            send,
            sent: 0,
            reader,
        })))
    }

    fn start_icmp(&mut self, token: Token, server: &ServerCheck) -> Result<Kind, Reason> {
        let binding = Binding {
            source: server.check.source,
            interface: server.check.interface.clone(),
        };
        let icmp = match self.icmp.entry(binding.clone()) {
            Entry::Occupied(open) => open.into_mut(),
            Entry::Vacant(slot) => {
                let socket_token = take_token(&mut self.next_token);
                let socket = open_icmp(self.poll.registry(), socket_token, &binding)?;
                self.icmp_tokens.insert(socket_token, binding.clone());
                slot.insert(IcmpSocket {
                    socket,
                    pending: HashMap::new(),
                })
            }
        };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let mut payload = [0; 16];
        payload[..8].copy_from_slice(ICMP_TAG);
        payload[8..].copy_from_slice(&(token.0 as u64).to_be_bytes());
        let request = icmp::echo_request(self.ident, seq, &payload);
        let target = server.key.address;
        let address = SockAddr::from(SocketAddrV4::new(target, 0));
        icmp.socket
            .send_to(&request, &address)
            .map_err(|e| reason(&e))?;
        icmp.pending.insert(seq, token);
        Ok(Kind::Icmp {
            binding,
            seq,
            target,
            payload,
        })
    }

    fn start_exec(
        &mut self,
        token: Token,
        server: &ServerCheck,
        command: String,
    ) -> Result<Kind, Reason> {
        let done = self.exec_sender.clone();
        let waker = self.waker();
        let server = server.clone();
        thread::Builder::new()
            .name("pylon-health-exec".to_owned())
            .spawn(move || {
                let result = exec::run(&command, &server, server.check.timeout);
                // The prober may be gone (engine stopped): nobody to tell.
                if done.send((token, result)).is_ok() {
                    if let Err(e) = waker.wake() {
                        tracing::warn!(error = %e, "cannot wake the health-check engine");
                    }
                }
            })
            .map_err(|e| local("thread", &e))?;
        Ok(Kind::Exec)
    }

    /// Waits for results until `until` (or the next probe deadline, or a
    /// wake-up), and returns those that came, with when they came. Never
    /// blocks when results are already waiting.
    pub(crate) fn wait(
        &mut self,
        until: Option<Instant>,
    ) -> io::Result<Vec<(RunId, CheckResult, Instant)>> {
        // Deadlines of probes that already ended would only wake us up.
        while let Some(&Reverse((_, token))) = self.deadlines.peek() {
            if self.probes.contains_key(&Token(token)) {
                break;
            }
            self.deadlines.pop();
        }
        let now = Instant::now();
        let first_deadline = self.deadlines.peek().map(|Reverse((at, _))| *at);
        let wake_at = match (until, first_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = if self.ready.is_empty() {
            wake_at.map(|at| at.saturating_duration_since(now))
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let tokens: Vec<Token> = self.events.iter().map(|event| event.token()).collect();
        for token in tokens {
            if token == WAKER {
                continue;
            }
            if let Some(binding) = self.icmp_tokens.get(&token).cloned() {
                self.read_icmp(&binding);
            } else {
                self.drive(token);
            }
        }
        while let Ok((token, result)) = self.exec_results.try_recv() {
            self.finish(token, result);
        }
        let now = Instant::now();
        while let Some(&Reverse((at, token))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            self.finish(Token(token), Reason::Timeout.into());
        }
        Ok(self
            .ready
            .drain(..)
            .map(|(run, result)| (run, result, now))
            .collect())
    }

    /// Ends the probe `token` (if it still runs) with `result`.
    fn finish(&mut self, token: Token, result: CheckResult) {
        let Some(probe) = self.probes.remove(&token) else {
            return;
        };
        match probe.kind {
            Kind::Stream(mut stream) => {
                // Closing removes it from epoll anyway.
                let _ = self.poll.registry().deregister(&mut stream.stream);
            }
            Kind::Icmp { binding, seq, .. } => {
                if let Some(icmp) = self.icmp.get_mut(&binding) {
                    icmp.pending.remove(&seq);
                }
            }
            Kind::Exec => {}
        }
        self.ready.push((probe.run, result));
    }

    /// Advances a TCP or HTTP probe after an event.
    fn drive(&mut self, token: Token) {
        let Some(InFlight {
            kind: Kind::Stream(probe),
            ..
        }) = self.probes.get_mut(&token)
        else {
            return;
        };
        if let Some(result) = advance(probe, &mut self.buffer) {
            self.finish(token, result);
        }
    }

    /// Reads every packet waiting on an ICMP socket.
    fn read_icmp(&mut self, binding: &Binding) {
        loop {
            let Some(icmp) = self.icmp.get(binding) else {
                return;
            };
            let length = match (&icmp.socket).read(&mut self.buffer) {
                Ok(length) => length,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the ICMP socket");
                    return;
                }
            };
            let (from, ident, seq, data, result) = match icmp::parse(&self.buffer[..length]) {
                Some(icmp::Received::Reply {
                    from,
                    ident,
                    seq,
                    payload,
                }) => (from, ident, seq, Some(payload), CheckResult::Pass),
                Some(icmp::Received::Error { target, ident, seq }) => {
                    (target, ident, seq, None, Reason::Unreachable.into())
                }
                None => continue,
            };
            if ident != self.ident {
                continue;
            }
            let Some(&token) = icmp.pending.get(&seq) else {
                continue;
            };
            // A reply must come from the target and return our data
            // unchanged (RFC 792); an error quotes only our header.
            let expected = match self.probes.get(&token) {
                Some(InFlight {
                    kind:
                        Kind::Icmp {
                            target, payload, ..
                        },
                    ..
                }) => *target == from && data.map_or(true, |data| data == payload),
                _ => false,
            };
            if expected {
                self.finish(token, result);
            }
        }
    }
}

/// Steps a TCP or HTTP probe as far as it goes without blocking; its
/// result once decided.
fn advance(probe: &mut StreamProbe, buffer: &mut [u8]) -> Option<CheckResult> {
    loop {
        match probe.phase {
            Phase::Connecting => {
                match probe.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => return Some(reason(&e).into()),
                }
                match probe.stream.peer_addr() {
                    Ok(_) => probe.phase = Phase::Sending,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                    Err(e) => return Some(reason(&e).into()),
                }
            }
            Phase::Sending => {
                while probe.sent < probe.send.len() {
                    match probe.stream.write(&probe.send[probe.sent..]) {
                        Ok(written) => probe.sent += written,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Some(reason(&e).into()),
                    }
                }
                if matches!(probe.reader, Reader::Nothing) {
                    return Some(CheckResult::Pass);
                }
                probe.phase = Phase::Receiving;
            }
            Phase::Receiving => {
                let length = match probe.stream.read(buffer) {
                    Ok(length) => length,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Some(reason(&e).into()),
                };
                let data = &buffer[..length];
                let verdict = match &mut probe.reader {
                    Reader::Nothing => Some(CheckResult::Pass),
                    Reader::Expect(_) if length == 0 => Some(Reason::ExpectMismatch.into()),
                    Reader::Expect(finder) => finder.feed(data).map(|found| match found {
                        true => CheckResult::Pass,
                        false => Reason::ExpectMismatch.into(),
                    }),
                    Reader::Http(reader) if length == 0 => Some(reader.eof()),
                    Reader::Http(reader) => match reader.feed(data) {
                        Verdict::Done(result) => Some(result),
                        Verdict::Pending => None,
                    },
                };
                if verdict.is_some() {
                    return verdict;
                }
            }
        }
    }
}

/// The next token from `counter`; never WAKER.
fn take_token(counter: &mut usize) -> Token {
    let token = Token(*counter);
    *counter = counter.wrapping_add(1) % WAKER.0;
    token
}

/// A raw ICMP socket bound as `binding` says, registered as `token`.
fn open_icmp(registry: &Registry, token: Token, binding: &Binding) -> Result<Socket, Reason> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .map_err(|e| local("raw ICMP socket (needs CAP_NET_RAW)", &e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| local("O_NONBLOCK", &e))?;
    bind(&socket, binding.source, binding.interface.as_deref())?;
    registry
        .register(
            &mut SourceFd(&socket.as_raw_fd()),
            token,
            Interest::READABLE,
        )
        .map_err(|e| local("epoll", &e))?;
    Ok(socket)
}

/// Binds `socket` to a source address and an interface, when given.
fn bind(socket: &Socket, source: Option<Ipv4Addr>, interface: Option<&str>) -> Result<(), Reason> {
    if let Some(interface) = interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(|e| local(&format!("SO_BINDTODEVICE {interface}"), &e))?;
    }
    if let Some(source) = source {
        socket
            .bind(&SocketAddrV4::new(source, 0).into())
            .map_err(|e| local(&format!("bind {source}"), &e))?;
    }
    Ok(())
}

/// A local failure: `what` failed with `error`.
fn local(what: &str, error: &io::Error) -> Reason {
    Reason::Io(format!("{what}: {error}"))
}

/// What a socket error says about the server.
fn reason(error: &io::Error) -> Reason {
    let errno = Errno::from_io_error(error);
    let is = |codes: &[Errno]| errno.is_some_and(|e| codes.contains(&e));
    if is(&[Errno::CONNREFUSED]) {
        Reason::Refused
    } else if is(&[Errno::HOSTUNREACH, Errno::NETUNREACH, Errno::HOSTDOWN]) {
        Reason::Unreachable
    } else if is(&[Errno::TIMEDOUT]) {
        Reason::Timeout
    } else if is(&[Errno::CONNRESET, Errno::PIPE, Errno::CONNABORTED]) {
        Reason::Reset
    } else {
        Reason::Io(error.to_string())
    }
}
