//! The editor's tools, the driver side: the private directory whose socket
//! runs' relays connect to. The relay itself, a `main` of its own, is the
//! command line's (`mcp-provider-cli`).
//!
//! A CLI given the editor's tools starts this same binary (with [`ARG`],
//! the socket and the run's secret) as its stdio MCP server. The relay
//! connects to `agent exec` on the socket, says the secret on its first
//! line, then carries the CLI's MCP lines both ways until either side
//! closes; `agent exec` answers them (see the core's `agent::exec::link`).
//! The socket is in a directory only this user can enter, and a relay
//! without a live run's secret (or silent past its time to say it) is
//! closed.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use mcp_provider_core::agent::exec::ToolLink;

/// The argument that makes this binary a relay.
pub const ARG: &str = "__tool-relay";

/// The directory of one `agent exec`: removed when dropped, or by
/// [`remove_dir`] when a signal ends the process without dropping it.
#[derive(Debug)]
pub struct ToolDir(PathBuf);

/// The directory [`prepare`] made, for [`remove_dir`].
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Removes the directory [`prepare`] made, if any: for a process about to
/// exit on a signal, which runs no destructors.
pub fn remove_dir() {
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

impl ToolDir {
    /// Where the relays connect.
    pub fn socket(&self) -> PathBuf {
        self.0.join("tools.sock")
    }

    /// Where runs' own homes are made (see `run_home`).
    pub fn homes(&self) -> PathBuf {
        self.0.join("homes")
    }
}

impl Drop for ToolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Why the editor's tools cannot be offered to the runs.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no randomness for secrets: {0}")]
    NoRandom(getrandom::Error),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find this program: {0}")]
    NoProgram(std::io::Error),
}

/// The tool link for a plan: a fresh private directory for its socket, the
/// relay's command line (this binary), and a random seed for secrets.
pub fn prepare(wait: Duration, cli_tools: bool) -> Result<(ToolLink, ToolDir), RelayError> {
    let mut seed = [0; 32];
    getrandom::fill(&mut seed).map_err(RelayError::NoRandom)?;
    let name: String = seed[..8].iter().map(|b| format!("{b:02x}")).collect();
    sweep_stale();
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{name}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| RelayError::CreateDir {
            path: dir.clone(),
            source,
        })?;
    let _ = DIR.set(dir.clone());
    let dir = ToolDir(dir);
    let exe = std::env::current_exe().map_err(RelayError::NoProgram)?;
    let relay = vec![
        exe.to_string_lossy().into_owned(),
        ARG.to_owned(),
        dir.socket().to_string_lossy().into_owned(),
    ];
    let link = ToolLink {
        relay,
        seed,
        wait,
        cli_tools,
        search: Default::default(),
    };
    Ok((link, dir))
}

/// What the name of each `agent exec`'s directory starts with; the
/// process id that made it follows.
const DIR_PREFIX: &str = "mcp-provider-tools-";

/// Removes the directories of `agent exec` processes that are gone
/// without removing theirs (killed with SIGKILL, which nothing can catch).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<libc::pid_t>().ok());
        let Some(pid) = pid.filter(|pid| *pid > 0) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_process_s_directory_is_swept_and_a_live_one_s_kept() {
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let dead = exited.id();
        exited.wait().unwrap();
        let temp = std::env::temp_dir();
        let stale = temp.join(format!("{DIR_PREFIX}{dead}-sweep-test"));
        let live = temp.join(format!("{DIR_PREFIX}{}-sweep-test", std::process::id()));
        for dir in [&stale, &live] {
            std::fs::create_dir_all(dir.join("inner")).unwrap();
        }
        sweep_stale();
        assert!(!stale.exists(), "the directory of a process that is gone");
        assert!(live.exists(), "this process's own");
        std::fs::remove_dir_all(&live).unwrap();
    }
}
