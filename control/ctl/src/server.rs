//! The control-socket server: ordinary threads that speak the protocol to
//! clients and hand each valid request to the daemon's control loop.
//!
//! The control loop owns all state, so requests reach it over a bounded
//! channel: [`Server::start`] returns the server and the receiving end,
//! [`Requests`], which the loop drains once per iteration without ever
//! blocking ([`Requests::try_next`] or [`Requests::serve`]). Each request
//! is a [`Pending`] that the loop answers with [`Pending::reply`]. The
//! client's thread waits for that answer up to the reply timeout and then
//! answers `timeout` itself; a request the loop had not taken by then is
//! withdrawn, so `timeout` before `try_next` means "not applied".
//!
//! One thread per client, up to [`ServerOptions::max_clients`]; a client
//! beyond that gets `busy` and is closed. A request line must arrive whole
//! within [`ServerOptions::idle_timeout`] of the previous answer (or of
//! connecting), so a silent or trickling client costs one thread for that
//! long and delays nobody. Dropping the [`Server`] closes every
//! connection, joins the threads and removes the socket.

use crate::proto::{parse_request, to_data, Command, CtlError, ErrorCode, Response, MAX_LINE};
use crossbeam_channel::{RecvTimeoutError, SendTimeoutError, Sender};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Socket file mode: only root (the daemon's user) may connect.
pub const SOCKET_MODE: u32 = 0o600;
/// How long writing one answer may take before the client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiting client thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long [`Server`]'s drop waits for client threads to end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How the server runs; [`ServerOptions::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// The socket's path; its directory is created when missing.
    pub path: PathBuf,
    /// Requests that may wait for the control loop at once.
    pub queue: usize,
    /// Clients connected at once.
    pub max_clients: usize,
    /// Time a client has to send each request line.
    pub idle_timeout: Duration,
    /// Time the control loop has to answer a request.
    pub reply_timeout: Duration,
}

impl ServerOptions {
    /// Defaults: 64 queued requests, 32 clients, 30 s to send a request,
    /// 5 s to answer it.
    pub fn new(path: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            path: path.into(),
            queue: 64,
            max_clients: 32,
            idle_timeout: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{}: not a socket path (no file name)", .0.display())]
    BadPath(PathBuf),
    #[error("{}: another process is listening on this socket", .0.display())]
    InUse(PathBuf),
    #[error("{}: exists and is not a socket; not replacing it", .0.display())]
    NotASocket(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the control-socket thread: {0}")]
    Thread(#[source] io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

/// A request waiting for the control loop's answer.
#[derive(Debug)]
pub struct Pending {
    cmd: Command,
    reply: Sender<Result<Value, CtlError>>,
    state: Arc<AtomicU8>,
}

impl Pending {
    /// What the client asks for.
    pub fn command(&self) -> &Command {
        &self.cmd
    }

    /// Answers the client. An answer that comes after the client's thread
    /// gave up waiting is dropped.
    pub fn reply(self, result: Result<Value, CtlError>) {
        // The only failure is a client thread that stopped waiting.
        let _ = self.reply.send(result);
    }

    /// Answers with any serialisable data.
    pub fn reply_with<T: Serialize>(self, result: Result<T, CtlError>) {
        let value = result.and_then(|data| to_data(&data));
        self.reply(value);
    }
}

/// What the control loop does with a command: the answer's data or an
/// error. Closures `FnMut(&Command) -> Result<Value, CtlError>` are
/// handlers.
pub trait Handler {
    fn handle(&mut self, cmd: &Command) -> Result<Value, CtlError>;
}

impl<F: FnMut(&Command) -> Result<Value, CtlError>> Handler for F {
    fn handle(&mut self, cmd: &Command) -> Result<Value, CtlError> {
        self(cmd)
    }
}

/// The control loop's end of the request channel.
#[derive(Debug)]
pub struct Requests {
    rx: crossbeam_channel::Receiver<Pending>,
}

impl Requests {
    /// The next request, if one is waiting; never blocks.
    pub fn try_next(&self) -> Option<Pending> {
        while let Ok(p) = self.rx.try_recv() {
            if p.state
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(p);
            }
        }
        None
    }

    /// Answers up to `budget` waiting requests with `handler`; returns how
    /// many. Never blocks (beyond what the handler does).
    pub fn serve(&self, budget: usize, handler: &mut impl Handler) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(p) = self.try_next() else {
                break;
            };
            let result = handler.handle(p.command());
            p.reply(result);
            n += 1;
        }
        n
    }
}

struct Clients {
    next: u64,
    open: HashMap<u64, UnixStream>,
}

struct Shared {
    opts: ServerOptions,
    stop: AtomicBool,
    requests: Sender<Pending>,
    clients: Mutex<Clients>,
    closed: Condvar,
}

impl Shared {
    fn clients(&self) -> MutexGuard<'_, Clients> {
        // A poisoned lock only means a client thread panicked while
        // holding it; the map itself is still consistent.
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The listening socket and its threads; dropping it stops them and
/// removes the socket.
pub struct Server {
    shared: Arc<Shared>,
    listener: UnixListener,
    accept: Option<JoinHandle<()>>,
    path: PathBuf,
    inode: (u64, u64),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("path", &self.path).finish()
    }
}

impl Server {
    /// Listens on `path` with the default options and a request queue of
    /// `queue`.
    pub fn start(
        path: impl Into<PathBuf>,
        queue: usize,
    ) -> Result<(Server, Requests), ServerError> {
        let mut opts = ServerOptions::new(path);
        opts.queue = queue;
        Server::with_options(opts)
    }

    /// Listens as `opts` says.
    pub fn with_options(opts: ServerOptions) -> Result<(Server, Requests), ServerError> {
        let path = opts.path.clone();
        let listener = bind(&path)?;
        let md = std::fs::metadata(&path).map_err(io_err(&path))?;
        let (tx, rx) = crossbeam_channel::bounded(opts.queue.max(1));
        let shared = Arc::new(Shared {
            opts,
            stop: AtomicBool::new(false),
            requests: tx,
            clients: Mutex::new(Clients {
                next: 0,
                open: HashMap::new(),
            }),
            closed: Condvar::new(),
        });
        let accepting = listener.try_clone().map_err(io_err(&path))?;
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("pylon-ctl".into())
            .spawn(move || accept_loop(&accepting, &accept_shared));
        let mut server = Server {
            shared,
            listener,
            accept: None,
            path,
            inode: (md.dev(), md.ino()),
        };
        // From here on, dropping `server` removes the socket again.
        server.accept = Some(accept.map_err(ServerError::Thread)?);
        Ok((server, Requests { rx }))
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds the socket race-free: inside a fresh private directory, chmod
/// 0600, then renamed over `path`. A socket left at `path` by a dead
/// process is replaced; a live one, or any other file, is an error.
fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let name = path
        .file_name()
        .ok_or_else(|| ServerError::BadPath(path.to_path_buf()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(io_err(dir))?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
        Ok(md) if md.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse(path.to_path_buf()));
            }
        }
        Ok(_) => return Err(ServerError::NotASocket(path.to_path_buf())),
    }
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(io_err(&tmp))?;
    let inner = tmp.join("s");
    let result = UnixListener::bind(&inner)
        .and_then(|l| {
            std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(SOCKET_MODE))?;
            std::fs::rename(&inner, path)?;
            Ok(l)
        })
        .map_err(io_err(path));
    // Empty once renamed; on failure it holds at most the socket.
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept (Linux returns EINVAL from accept on a
        // shut-down listener); the connect covers any other outcome.
        let _ = socket2::SockRef::from(&self.listener).shutdown(Shutdown::Both);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let clients = self.shared.clients();
        for s in clients.open.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = self
            .shared
            .closed
            .wait_timeout_while(clients, STOP_WAIT, |c| !c.open.is_empty());
        // Only our own socket: another daemon may have taken the path.
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.inode {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _)) => admit(stream, shared),
            // Out of descriptors or memory: let some clients finish.
            Err(_) => thread::sleep(STOP_POLL),
        }
    }
}

/// Starts a client's thread, or answers `busy` when there are too many.
fn admit(stream: UnixStream, shared: &Arc<Shared>) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let busy = |mut s: &UnixStream, why: String| {
        let r = Response::new(None, Err(CtlError::new(ErrorCode::Busy, why)));
        let _ = s.write_all(&r.to_line());
    };
    let mut clients = shared.clients();
    if clients.open.len() >= shared.opts.max_clients {
        drop(clients);
        let max = shared.opts.max_clients;
        busy(&stream, format!("too many clients ({max}); try again"));
        return;
    }
    let Ok(handle) = stream.try_clone() else {
        busy(&stream, "cannot take the connection".into());
        return;
    };
    let id = clients.next;
    clients.next += 1;
    clients.open.insert(id, handle);
    drop(clients);
    let conn_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("pylon-ctl-client".into())
        .spawn(move || {
            let _gone = Deregister {
                shared: &conn_shared,
                id,
            };
            client(stream, &conn_shared);
        });
    if let Err(e) = spawned {
        // The closure never ran, so deregister here.
        let mut clients = shared.clients();
        if let Some(s) = clients.open.remove(&id) {
            drop(clients);
            busy(&s, format!("cannot start a thread: {e}"));
        }
    }
}

/// Removes a client from the table when its thread ends, however it ends.
struct Deregister<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.shared.clients().open.remove(&self.id);
        self.shared.closed.notify_all();
    }
}

/// The stream behind a [`BufReader`], each read bounded by a deadline.
struct Deadlined {
    stream: UnixStream,
    deadline: Instant,
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

enum Line {
    /// A whole line, newline removed.
    Full,
    /// The client closed the connection after these bytes (maybe none).
    Last,
    /// Longer than [`MAX_LINE`].
    TooLarge,
    /// No line within the idle timeout.
    Idle,
    /// The connection failed.
    Broken,
}

fn read_line(reader: &mut BufReader<Deadlined>, line: &mut Vec<u8>) -> Line {
    let limit = MAX_LINE as u64 + 1;
    match reader.by_ref().take(limit).read_until(b'\n', line) {
        Ok(_) if line.last() == Some(&b'\n') => {
            line.pop();
            Line::Full
        }
        Ok(_) if line.len() as u64 >= limit => Line::TooLarge,
        Ok(_) => Line::Last,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Line::Idle
        }
        Err(_) => Line::Broken,
    }
}

/// Serves one client until it closes, misbehaves or the server stops.
fn client(stream: UnixStream, shared: &Shared) {
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(Deadlined {
        stream,
        deadline: Instant::now(),
    });
    let mut line = Vec::new();
    loop {
        reader.get_mut().deadline = Instant::now() + shared.opts.idle_timeout;
        line.clear();
        let kind = read_line(&mut reader, &mut line);
        let response = match kind {
            Line::Broken => return,
            Line::Idle => {
                let secs = shared.opts.idle_timeout.as_secs_f64();
                let e = CtlError::new(
                    ErrorCode::Timeout,
                    format!("no complete request within {secs} s; closing"),
                );
                let _ = out.write_all(&Response::new(None, Err(e)).to_line());
                return;
            }
            Line::TooLarge => {
                let e = CtlError::new(
                    ErrorCode::TooLarge,
                    format!("request line longer than {MAX_LINE} bytes; closing"),
                );
                let _ = out.write_all(&Response::new(None, Err(e)).to_line());
                let _ = out.shutdown(Shutdown::Write);
                return;
            }
            Line::Full | Line::Last if line.iter().all(u8::is_ascii_whitespace) => {
                if matches!(kind, Line::Last) {
                    return;
                }
                continue;
            }
            Line::Full | Line::Last => match parse_request(&line) {
                Ok(req) => Response::new(Some(req.id), dispatch(shared, req.cmd)),
                Err(rejection) => Response::new(rejection.id, Err(rejection.error)),
            },
        };
        if out.write_all(&response.to_line()).is_err() || matches!(kind, Line::Last) {
            return;
        }
    }
}

/// Hands a command to the control loop and waits for its answer.
fn dispatch(shared: &Shared, cmd: Command) -> Result<Value, CtlError> {
    let timeout = shared.opts.reply_timeout;
    let deadline = Instant::now() + timeout;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let state = Arc::new(AtomicU8::new(QUEUED));
    let pending = Pending {
        cmd,
        reply: tx,
        state: Arc::clone(&state),
    };
    match shared.requests.send_timeout(pending, timeout) {
        Ok(()) => {}
        Err(SendTimeoutError::Timeout(_)) => {
            return Err(CtlError::new(
                ErrorCode::Busy,
                "the daemon's request queue is full; not applied",
            ))
        }
        Err(SendTimeoutError::Disconnected(_)) => {
            return Err(CtlError::new(
                ErrorCode::ShuttingDown,
                "the daemon is not taking requests",
            ))
        }
    }
    let wait = |until: Instant| -> Option<Result<Value, CtlError>> {
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                return Some(Err(CtlError::new(
                    ErrorCode::ShuttingDown,
                    "the daemon is stopping",
                )));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            match rx.recv_timeout(left.min(STOP_POLL)) {
                Ok(result) => return Some(result),
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(Err(CtlError::internal(
                        "the daemon dropped the request without answering",
                    )))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    };
    if let Some(result) = wait(deadline) {
        return result;
    }
    let secs = timeout.as_secs_f64();
    if state
        .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        return Err(CtlError::new(
            ErrorCode::Timeout,
            format!("the daemon did not take the request within {secs} s; not applied"),
        ));
    }
    // Taken and being handled: give it as long again.
    wait(deadline + timeout).unwrap_or_else(|| {
        Err(CtlError::new(
            ErrorCode::Timeout,
            format!(
                "the daemon took the request but did not answer within {} s; it may have been applied",
                2.0 * secs
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/pylon.sock");
        let (server, _requests) = Server::start(&path, 4).unwrap();
        assert!(matches!(
            Server::start(&path, 4),
            Err(ServerError::InUse(_))
        ));
        drop(server);
        assert!(!path.exists(), "socket removed on drop");
        // A socket nobody listens on.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (server, _requests) = Server::start(&path, 4).unwrap();
        assert!(UnixStream::connect(server.path()).is_ok());
    }

    #[test]
    fn other_files_are_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pylon.sock");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(
            Server::start(&path, 4),
            Err(ServerError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn no_temporary_directory_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, _requests) = Server::start(dir.path().join("c.sock"), 4).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("c.sock")]);
    }

    #[test]
    fn a_daemon_that_stopped_taking_requests_is_shutting_down() {
        let dir = tempfile::tempdir().unwrap();
        let (server, requests) = Server::start(dir.path().join("c.sock"), 4).unwrap();
        drop(requests);
        let mut c = crate::Client::connect(server.path()).unwrap();
        match c.call(Command::Vrrp) {
            Err(crate::ClientError::Daemon(e)) => assert_eq!(e.code, ErrorCode::ShuttingDown),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn withdrawn_requests_are_skipped() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let requests = Requests { rx };
        let (rtx, _rrx) = crossbeam_channel::bounded(1);
        let withdrawn = Arc::new(AtomicU8::new(WITHDRAWN));
        tx.send(Pending {
            cmd: Command::Vrrp,
            reply: rtx.clone(),
            state: withdrawn,
        })
        .unwrap();
        tx.send(Pending {
            cmd: Command::Health,
            reply: rtx,
            state: Arc::new(AtomicU8::new(QUEUED)),
        })
        .unwrap();
        let p = requests.try_next().unwrap();
        assert_eq!(p.command(), &Command::Health);
        assert!(requests.try_next().is_none());
    }
}
