//! A small process of our own that kills every process group we started
//! once we are gone, however we went: a provider (or `agent exec`) killed
//! with SIGKILL runs no cleanup of its own, and a child that ignores its
//! stdin closing — or the helper process of one that does not — would run
//! on for ever.
//!
//! It is this same binary, started once (with [`ARG`] as its only
//! argument; its `main` is the command line's, `mcp-provider-cli`) on the
//! first group there is to watch. It reads `+PGID` and `-PGID` lines on
//! its stdin, a pipe whose only writer is us; the pipe's end (EOF) is our
//! death, and it then sends SIGKILL to each group still listed. A group
//! is listed from just after its leader starts until its leader is reaped
//! (the bridge: just before), so the id belongs to no one else while it
//! is listed.
//!
//! What it cannot reach: processes that left their group (`setsid`, a
//! daemon's double fork), and a group whose leader had just started when
//! we died, before its line was written.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The argument that makes this binary the watchdog.
pub const ARG: &str = "__watch-process-groups";

/// The pipe to the watchdog, if it could be started.
static PIPE: OnceLock<Option<Mutex<ChildStdin>>> = OnceLock::new();

/// Lists the process group `pgid` (a child's pid: it leads its group).
pub fn watch(pgid: u32) {
    tell('+', pgid);
}

/// Takes `pgid` off the list: its leader is about to be reaped.
pub fn forget(pgid: u32) {
    tell('-', pgid);
}

fn tell(op: char, pgid: u32) {
    let Some(pipe) = PIPE.get_or_init(start) else {
        return;
    };
    let mut pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
    // A watchdog that died cannot be helped: the groups are still killed
    // by our own shutdown when that runs.
    let _ = writeln!(pipe, "{op}{pgid}");
}

/// Starts the watchdog in a process group of its own (so a Ctrl-C meant
/// for us does not end it before we are done), or warns once that
/// children may outlive a killed process.
fn start() -> Option<Mutex<ChildStdin>> {
    // On Linux the running binary, even when its file was replaced since.
    let exe = std::path::Path::new("/proc/self/exe");
    let exe = if exe.exists() {
        Ok(exe.to_path_buf())
    } else {
        std::env::current_exe()
    };
    let started = exe.and_then(|exe| {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .arg(ARG)
            // It needs nothing of ours, our secrets least of all.
            .env_clear()
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    });
    match started {
        // Never waited for: it exits after us, and is reaped by init.
        Ok(mut child) => child.stdin.take().map(Mutex::new),
        Err(e) => {
            tracing::warn!(
                "no watchdog for child processes ({e}): if this process is killed with \
                 SIGKILL, the processes it started go on running"
            );
            None
        }
    }
}
