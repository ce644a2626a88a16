//! Child processes in groups of their own, as every runtime runs them for
//! `agent exec` and the MCP bridge: build the command (its own process
//! group, pipes), kill a whole group, keep the end of stderr, and kill
//! every group when the agent itself is stopped — so no CLI outlives its
//! request or the agent. A child's stdin written without blocking is in
//! `child_stdin`, the process that kills the groups left behind if this
//! one is killed in [`watchdog`].

pub(crate) mod child_stdin;
pub mod watchdog;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use mcp_provider_core::agent::exec::STDERR_TAIL;
use mcp_provider_core::agent::process::{Exit, RunId};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How much a child's stdout pipe (an exec run's, a bridged server's)
/// is read at a time.
pub const PIPE_READ_CHUNK: usize = 16 * 1024;

/// How long a process's exit waits for the end of its stderr, once its
/// group is killed: the group's members are gone with it, so only a
/// process outside the group (one that left it, or was handed the pipe)
/// can hold the pipe open, and nobody waits on that for its exit to be
/// seen. Shared by `agent exec`'s runs and the bridge's children.
pub const STDERR_WAIT: Duration = Duration::from_millis(250);

/// The prefix of the provider's own environment variables: its settings,
/// its API key and its bridge token.
const OWN_VARS: &str = "MCP_PROVIDER_";

/// A command with no program to run.
#[derive(Debug, thiserror::Error)]
#[error("the command is empty")]
pub struct EmptyCommand;

/// Why a run of `agent exec` did not start once its command was built.
#[derive(Debug, thiserror::Error)]
pub enum NotStarted {
    #[error(transparent)]
    Spawn(#[from] std::io::Error),
    /// Its process started, and was stopped: nothing could wait on it.
    #[error("cannot start a thread for it: {0}")]
    NoThread(std::io::Error),
}

/// The command for `argv`, in a process group of its own (so a kill
/// reaches everything it started, `sh -c` children included), with piped
/// stdin, stdout and stderr, and our environment without our own
/// variables, but for those named in `pass_env`: a CLI agent answering an
/// editor, or an MCP server from a registry, has no business with the
/// bridge token that runs `/integrations`.
pub fn command(
    argv: &[String],
    cwd: Option<&Path>,
    pass_env: &[String],
) -> Result<Command, EmptyCommand> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let (program, args) = argv.split_first().ok_or(EmptyCommand)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        let own = name.as_bytes().starts_with(OWN_VARS.as_bytes());
        if own && !pass_env.iter().any(|pass| name == pass.as_str()) {
            command.env_remove(name);
        }
    }
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    Ok(command)
}

/// SIGKILL to the process group `pgid` (a run's pid: it leads its group).
pub fn kill_group(pgid: u32) {
    signal_group(pgid, libc::SIGKILL);
}

/// `signal` to the process group `pgid`.
pub fn signal_group(pgid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // it touches no memory of ours.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Waits until the process `pid`, a child of ours, has exited, without
/// reaping it: until it is reaped its pid, and so its group's id, cannot
/// be taken by another process, so what it left behind in its group can
/// still be killed by that id.
pub fn wait_unreaped(pid: libc::id_t) {
    loop {
        // SAFETY: waitid(2) writes only into the siginfo we own.
        let done = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if done == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A run whose leader has exited, its exit not reported yet: what every
/// runtime does between a run's exit and the report of it, in one place.
/// Made by [`Groups::ended`]; the runtime then waits for the end of the
/// run's stderr until [`Ended::stderr_by`] at the latest, and hands the
/// agent [`Ended::exit`].
pub struct Ended {
    run: RunId,
    by: Instant,
}

impl Ended {
    /// Until when the run's stderr is waited for: a background process
    /// outside the group that holds it must not hold the run's answer back
    /// until its request times out.
    pub fn stderr_by(&self) -> Instant {
        self.by
    }

    /// The run and its exit for the agent: `code` its leader's exit code,
    /// `stderr` what was read of its stderr by then (`None`: nothing, or not
    /// to its end in time).
    pub fn exit(self, code: Option<i32>, stderr: Option<Tail>) -> (RunId, Exit) {
        let stderr = stderr.map(|tail| tail.text()).unwrap_or_default();
        (self.run, Exit::Exited { code, stderr })
    }
}

/// The last [`STDERR_TAIL`] bytes a run wrote on stderr.
#[derive(Default)]
pub struct Tail(Vec<u8>);

impl Tail {
    pub fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > STDERR_TAIL {
            self.0.drain(..self.0.len() - STDERR_TAIL);
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

/// The process groups of the runs alive now.
#[derive(Clone, Default)]
pub struct Groups(Arc<Mutex<HashMap<RunId, u32>>>);

impl Groups {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, u32>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run started: its group is killed when the agent stops, or by the
    /// watchdog if the agent is killed.
    pub fn insert(&self, run: RunId, pgid: u32) {
        self.map().insert(run, pgid);
        watchdog::watch(pgid);
    }

    /// The run's leader exited: what is left of its group (a background
    /// process the CLI started and did not wait for) is killed, since no
    /// process of a run outlives it, and the group is forgotten, its id
    /// free to be reused once the leader is reaped. Called once the leader
    /// has exited, before its exit is reported, and before it is reaped
    /// where the runtime can wait without reaping.
    pub fn ended(&self, run: RunId, now: Instant) -> Ended {
        self.kill(run);
        self.remove(run);
        Ended {
            run,
            by: mcp_provider_core::time::later(now, STDERR_WAIT),
        }
    }

    /// The run's leader exited and is about to be reaped: its group id may
    /// be reused from then on.
    pub fn remove(&self, run: RunId) {
        // Let go of the map before writing to the watchdog.
        let removed = self.map().remove(&run);
        if let Some(pgid) = removed {
            watchdog::forget(pgid);
        }
    }

    /// The runs whose group is alive.
    pub fn runs(&self) -> HashSet<RunId> {
        self.map().keys().copied().collect()
    }

    pub fn kill(&self, run: RunId) {
        if let Some(&pgid) = self.map().get(&run) {
            kill_group(pgid);
        }
    }

    pub fn kill_all(&self) {
        for &pgid in self.map().values() {
            kill_group(pgid);
        }
    }

    /// On SIGTERM, SIGINT or SIGHUP: kill every run's group, remove the
    /// tool relays' directory, then exit.
    /// (The runs are in groups of their own, so a Ctrl-C in the terminal
    /// does not reach them by itself.)
    pub fn kill_on_signal(&self) -> std::io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let groups = self.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    groups.kill_all();
                    crate::agent::relay::remove_dir();
                    std::process::exit(128 + signal);
                }
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; STDERR_TAIL]);
        tail.push(b"end");
        let text = tail.text();
        assert_eq!(text.len(), STDERR_TAIL);
        assert!(text.ends_with("aend"));
    }

    #[test]
    fn killing_a_group_reaches_the_children_of_a_shell() {
        use std::io::BufRead;
        let argv = ["sh", "-c", "sleep 30 & echo $!; wait"].map(String::from);
        let mut child = command(&argv, None, &[]).unwrap().spawn().unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let background = line.trim().to_owned();
        kill_group(child.id());
        assert!(!child.wait().unwrap().success());
        // The background `sleep` was in the group too: it is gone or a
        // zombie waiting for init, never still running.
        let mut ended = false;
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{background}/stat"));
            if stat.map_or(true, |s| s.contains(") Z ")) {
                ended = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(ended, "a process of the killed group is still running");
    }
}
