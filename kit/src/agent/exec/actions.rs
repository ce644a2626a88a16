//! What the agent asks of its runs, carried out: commands built and
//! handed to the runtime to spawn, lines written to stdins, process groups
//! killed, and the homes of runs that are gone removed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use mcp_provider_core::agent::exec::home::OwnHome;
use mcp_provider_core::agent::process::{Action, Exit, ProcessAgent, RunId, Stdin};

use super::{Outbox, RemoteExec};
use crate::agent::run_home::{self, HomeError};
use crate::process::{command, Groups, NotStarted};

/// Carries out what the agent asks: each spawn's command built (in
/// `remote`'s working directory, with its environment, in a home of its
/// own when it asks for one) and handed to `spawn` (a run that cannot start
/// is reported to the agent at once, so its editor hears of it; a stdin it
/// keeps open goes into `stdins`), the lines to write offered to its run's
/// stdin, those asked for one after another together (a run whose outbox
/// cannot take them even so is killed: the agent's loop stops reading a
/// run's output long before, while its stdin is full), each kill sent to
/// the run's process group. Done before the agent's frames are sent, since
/// a failed start makes one.
pub(super) fn carry_out<R: Outbox>(
    agent: &mut dyn ProcessAgent,
    stdins: &mut HashMap<RunId, R>,
    groups: &Groups,
    remote: &RemoteExec,
    mut spawn: impl FnMut(RunId, Command, Stdin) -> Result<Option<R>, NotStarted>,
) {
    let mut lines: Option<(RunId, String)> = None;
    while let Some(action) = agent.poll_action() {
        match action {
            Action::Write { run, line } => {
                if lines.as_ref().is_some_and(|(to, _)| *to != run) {
                    write(stdins, groups, lines.take());
                }
                let (_, batch) = lines.get_or_insert_with(|| (run, String::new()));
                batch.push_str(&line);
                batch.push('\n');
            }
            Action::Spawn {
                run,
                argv,
                stdin,
                env,
                home,
            } => {
                write(stdins, groups, lines.take());
                let started = command(&argv, remote.cwd.as_deref(), &remote.pass_env)
                    .map_err(|e| e.to_string())
                    .and_then(|mut command| {
                        command.envs(env);
                        if let Some(home) = home {
                            let made = own_home(remote, run, &home).map_err(|e| e.to_string())?;
                            command.env(home.var, made);
                        }
                        spawn(run, command, stdin).map_err(|e| e.to_string())
                    });
                match started {
                    Ok(Some(stdin)) => {
                        stdins.insert(run, stdin);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        agent.handle_exit(run, Exit::NotStarted(e), Instant::now());
                        remove_gone_homes(remote, groups);
                    }
                }
            }
            Action::Kill { run } => {
                write(stdins, groups, lines.take());
                if let Some(stdin) = stdins.remove(&run) {
                    stdin.close();
                }
                groups.kill(run);
            }
        }
    }
    write(stdins, groups, lines);
}

/// Offers `lines` (each ending with its newline) to their run's stdin.
fn write<R: Outbox>(stdins: &HashMap<RunId, R>, groups: &Groups, lines: Option<(RunId, String)>) {
    let Some((run, lines)) = lines else {
        return;
    };
    if stdins.get(&run).is_some_and(|stdin| !stdin.offer(lines)) {
        tracing::warn!("an agent process does not read its stdin: killed");
        groups.kill(run);
    }
}

/// Removes the homes of runs whose process group is gone: called when a
/// run ends (or fails to start), not on every turn of the agent's loop,
/// which output and frames drive.
pub(super) fn remove_gone_homes(remote: &RemoteExec, groups: &Groups) {
    if let Some(homes) = &remote.run_homes {
        run_home::sweep(homes, &groups.runs());
    }
}

/// Makes `run`'s own home for `home` in the tool directory.
fn own_home(remote: &RemoteExec, run: RunId, home: &OwnHome) -> Result<PathBuf, HomeError> {
    let homes = remote.run_homes.as_deref().ok_or(HomeError::NoDirectory)?;
    let user = run_home::user(home).ok_or(HomeError::NoUserHome { var: home.var })?;
    run_home::make(homes, run, home, &user)
}
