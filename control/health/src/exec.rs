//! The `exec` checker: an operator command, as keepalived's `MISC_CHECK`.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process_group, Pid, Signal};

use crate::{CheckResult, Reason, ServerCheck};

/// Longest sleep between two looks at a running command.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// Runs `/bin/sh -c command` for `server`, blocking until it exits or
/// `timeout` passes. Exit status 0 passes. The command runs in a process
/// group of its own with standard input, output and error on `/dev/null`
/// and three more environment variables: `PYLON_SERVICE`,
/// `PYLON_SERVER_ADDRESS` and `PYLON_SERVER_PORT` (the check's port). At
/// the timeout the whole group is killed with `SIGKILL` and reaped.
pub(crate) fn run(command: &str, server: &ServerCheck, timeout: Duration) -> CheckResult {
    let deadline = Instant::now() + timeout;
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("PYLON_SERVICE", &server.key.service)
        .env("PYLON_SERVER_ADDRESS", server.key.address.to_string())
        .env("PYLON_SERVER_PORT", server.target_port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return Reason::Io(format!("cannot run /bin/sh: {e}")).into(),
    };
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return result(status),
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Reason::Io(format!("waiting for the command: {e}")).into();
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill(&mut child);
            return Reason::Timeout.into();
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

fn result(status: ExitStatus) -> CheckResult {
    if status.success() {
        return CheckResult::Pass;
    }
    match (status.code(), status.signal()) {
        (Some(code), _) => Reason::ExitCode(code).into(),
        (None, Some(signal)) => Reason::Signal(signal).into(),
        (None, None) => Reason::Io(format!("unknown exit status {status}")).into(),
    }
}

/// Kills the command's process group (the shell and whatever it started),
/// then the shell itself in case it left the group, and reaps it.
fn kill(child: &mut Child) {
    // Both are best effort: the processes may have exited meanwhile, and
    // the shell is reaped below either way.
    let _ = kill_process_group(Pid::from_child(child), Signal::KILL);
    let _ = child.kill();
    if let Err(e) = child.wait() {
        tracing::warn!(error = %e, "cannot reap a timed-out health-check command");
    }
}
