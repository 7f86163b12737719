//! Process plumbing shared by the harness: commands inside a network
//! namespace, bounded waits, signals, and the locks and checks every
//! end-to-end test starts with.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Writes a line to stderr and ignores failure: cleanup code (`Drop`) uses
/// it, because `eprintln!` panics when stderr is gone (a demo piped into
/// `head`), and a panic there would skip the rest of the cleanup.
pub fn warn(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// How often bounded waits poll.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A command that runs `program` inside network namespace `ns`
/// (`ip netns exec NS PROGRAM`). `ip netns exec` execs the program in place,
/// so the pid of the spawned child is the program's own.
pub fn ns_command(ns: &str, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.arg("netns").arg("exec").arg(ns).arg(program);
    cmd
}

/// Runs a command to completion and fails, with its output in the message,
/// when it does not exit 0.
pub fn run_checked(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// Runs `ip ARGS`, failing on a non-zero exit.
pub fn ip(args: &[&str]) -> Result<()> {
    run_checked(Command::new("ip").args(args)).map(drop)
}

/// Makes a command that will be spawned as a long-running child:
/// its own process group (a terminal's Ctrl-C reaches only the harness,
/// which then stops the child in order), and SIGTERM when the thread that
/// spawned it dies, so a harness killed outright does not leave it behind.
pub fn detach_child(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent; it runs in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Sends `signal` to process `pid`.
pub fn send_signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes plain integers and has no memory effects.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("kill({pid}, {signal})"));
    }
    Ok(())
}

/// Whether a process with this pid exists and is not a zombie (a killed
/// harness whose parent has not reaped it yet is dead for cleanup purposes).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) S ...": the state follows the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Waits up to `timeout` for `child` to exit; `None` if it is still running.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Stops a child: SIGTERM, up to `grace` to exit, then SIGKILL.
pub fn terminate(child: &mut Child, grace: Duration) -> Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    send_signal(child.id(), libc::SIGTERM)?;
    if let Some(status) = wait_timeout(child, grace)? {
        return Ok(status);
    }
    child.kill().context("SIGKILL")?;
    child.wait().context("waiting after SIGKILL")
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("gave up after {timeout:?}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Fails unless the process runs as root (namespaces, veths, raw sockets
/// and the DPDK runtime directory all need it).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid(2) cannot fail and has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this needs root: network namespaces, veth pairs and DPDK af_packet ports");
    }
    Ok(())
}

/// `pylonctl`, next to the `pylon` binary the tests run.
pub fn pylonctl_binary() -> Result<PathBuf> {
    let bin = pylon_binary()?.with_file_name("pylonctl");
    if !bin.exists() {
        bail!(
            "{} missing: cargo build --release -p pylon-ctl",
            bin.display()
        );
    }
    Ok(bin)
}

/// The `pylon` binary: `$PYLON_BIN`, else a `pylon` file next to (or above)
/// the running executable (`target/release/deps/e2e_nat-*` and
/// `target/release/pylon-demo` both find `target/release/pylon`), else the
/// workspace's `target/release/pylon`.
pub fn pylon_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PYLON_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("PYLON_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let workspace_release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/pylon");
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join("pylon"))
        .chain(std::iter::once(workspace_release))
        .find(|path| path.is_file())
        .with_context(|| {
            format!(
                "the pylon binary was not found next to {} nor in the workspace's target/release: \
                 build it with `cargo build -p pylon-control --release` or set PYLON_BIN",
                exe.display()
            )
        })
}

/// What every test that drives pylon checks first: root, the `pylon`
/// binary (returned), and the tools the harness runs.
pub fn preflight() -> Result<PathBuf> {
    require_root()?;
    let pylon = pylon_binary()?;
    for (tool, arg) in [("ip", "-V"), ("ethtool", "--version")] {
        run_checked(Command::new(tool).arg(arg))
            .with_context(|| format!("the harness needs `{tool}`"))?;
    }
    let python = crate::topology::python();
    run_checked(Command::new(&python).arg("--version"))
        .with_context(|| format!("the harness needs Python 3 (`{python}`, or set PYTHON)"))?;
    Ok(pylon)
}

/// Serialises end-to-end tests: the machine has two cores and the
/// namespaces, veths and CPU are shared, so only one test drives traffic at a
/// time. An exclusive `flock` on a well-known file, so it holds across test
/// threads, test binaries and concurrent `cargo test` runs; released on drop.
pub struct E2eLock {
    _file: File,
}

/// Takes the end-to-end lock (`/tmp/pylon-e2e.lock`), waiting for up to
/// ten minutes.
pub fn e2e_lock() -> Result<E2eLock> {
    let path = Path::new("/tmp/pylon-e2e.lock");
    let file = File::create(path).with_context(|| format!("cannot open {}", path.display()))?;
    wait_for(Duration::from_secs(600), || {
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(()));
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(error).context("flock")
        }
    })
    .with_context(|| format!("waiting for {}", path.display()))?;
    Ok(E2eLock { _file: file })
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine while this process lives:
/// `<prefix>-<pid>-<n>`. [`crate::topology::cleanup_stale`] recognises it.
pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory `$TMPDIR/<id>`, emptied if it existed and removed on
/// drop.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `$TMPDIR/<id>`.
    pub fn new(id: &str) -> Result<ScratchDir> {
        let path = std::env::temp_dir().join(id);
        if path.exists() {
            fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
        }
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            warn(format_args!("removing {}: {e}", self.path.display()));
        }
    }
}
