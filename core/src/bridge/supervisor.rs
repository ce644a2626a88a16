//! The child process's lifecycle: spawn, handshake deadline, health-ping
//! schedule, restart with backoff after a failed run, the stop escalation
//! (close stdin → SIGTERM → SIGKILL), giving up after too many failures.
//!
//! It knows nothing of JSON-RPC: it says when the handshake or a ping is
//! due, and the multiplexer writes them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{BridgeOutput, ChildState, Limits, ServerSpec, StopSignal};
use crate::backoff::Doubling;
use crate::time::later;

pub(crate) struct Supervisor {
    spec: ServerSpec,
    limits: Limits,
    phase: Phase,
    /// Failed runs in a row.
    failures: u32,
    restarts: u64,
    /// Why the last run failed, for the error calls get once it gave up.
    last_failure: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Stopped,
    /// Spawn was asked for; the driver has not said how it went.
    /// `then_stop`: a stop came meanwhile, so the child is stopped as soon
    /// as it exists.
    Spawning {
        then_stop: bool,
    },
    /// `initialize` sent; it must be answered by `deadline`.
    Initializing {
        deadline: Instant,
    },
    Running {
        since: Instant,
        next_ping: Instant,
    },
    /// Stdin closed; `next` is the signal still to come and when.
    Stopping {
        next: Option<(Instant, StopSignal)>,
    },
    /// It hung or failed its handshake: SIGKILL sent, its exit ends the run
    /// as a failure. `running_since` tells whether it was healthy first.
    Killing {
        running_since: Option<Instant>,
    },
    Backoff {
        until: Instant,
    },
    Failed,
}

/// How the child's exit was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It was being stopped: nothing restarts it.
    Stopped,
    /// A failed run: restarting or given up.
    Crashed,
    /// No child was known to run.
    Unexpected,
}

/// What a timeout asks of the bridge beyond the lifecycle outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Nothing,
    Ping,
    /// `initialize` went unanswered: the child is being killed.
    StartupTimeout,
}

impl Supervisor {
    pub(crate) fn new(spec: ServerSpec, limits: Limits) -> Self {
        Supervisor {
            spec,
            limits,
            phase: Phase::Stopped,
            failures: 0,
            restarts: 0,
            last_failure: None,
        }
    }

    // Getters.

    pub(crate) fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn state(&self) -> ChildState {
        match self.phase {
            Phase::Stopped => ChildState::Stopped,
            Phase::Spawning { .. } | Phase::Initializing { .. } => ChildState::Starting,
            Phase::Running { .. } => ChildState::Running,
            Phase::Stopping { .. } => ChildState::Stopping,
            Phase::Killing { .. } | Phase::Backoff { .. } => ChildState::Restarting,
            Phase::Failed => ChildState::Failed,
        }
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts
    }

    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    // Input.

    /// The driver started the child. True when the handshake is to be
    /// sent now (false when a stop came first: the child is stopped).
    pub(crate) fn handle_spawned(
        &mut self,
        now: Instant,
        out: &mut VecDeque<BridgeOutput>,
    ) -> bool {
        match self.phase {
            Phase::Spawning { then_stop: false } => {
                self.phase = Phase::Initializing {
                    deadline: later(now, self.limits.startup_timeout),
                };
                true
            }
            Phase::Spawning { then_stop: true } => {
                self.begin_stopping(now, out);
                false
            }
            _ => {
                tracing::debug!(server = %self.spec.name, "spawned reported with no spawn asked");
                false
            }
        }
    }

    pub(crate) fn handle_spawn_failed(&mut self, error: &str, now: Instant) {
        match self.phase {
            Phase::Spawning { then_stop: true } => self.phase = Phase::Stopped,
            Phase::Spawning { then_stop: false } => {
                tracing::warn!(server = %self.spec.name, "could not start: {error}");
                self.last_failure = Some(error.to_owned());
                self.failed_run(None, now);
            }
            _ => {
                tracing::debug!(server = %self.spec.name, "spawn failure reported with no spawn asked")
            }
        }
    }

    /// The handshake was answered. False when no handshake was awaited.
    pub(crate) fn handle_initialized(&mut self, now: Instant) -> bool {
        if !matches!(self.phase, Phase::Initializing { .. }) {
            return false;
        }
        self.phase = Phase::Running {
            since: now,
            next_ping: later(now, self.limits.ping_interval),
        };
        true
    }

    /// The child exited; `said` is the end of its stderr, kept in the
    /// failure a client is told (often the reason: a missing module, a bad
    /// argument).
    pub(crate) fn handle_exit(&mut self, said: &str, now: Instant) -> Ended {
        let running_since = match self.phase {
            Phase::Stopping { .. } | Phase::Spawning { then_stop: true } => {
                self.phase = Phase::Stopped;
                return Ended::Stopped;
            }
            Phase::Stopped | Phase::Backoff { .. } | Phase::Failed => return Ended::Unexpected,
            Phase::Spawning { then_stop: false } | Phase::Initializing { .. } => {
                self.last_failure = Some(with_stderr("exited during startup", said));
                None
            }
            Phase::Running { since, .. } => {
                self.last_failure = Some(with_stderr("exited", said));
                Some(since)
            }
            Phase::Killing { running_since } => running_since,
        };
        tracing::warn!(server = %self.spec.name, "MCP server ended: {}", self.last_failure.as_deref().unwrap_or("exited"));
        self.failed_run(running_since, now);
        Ended::Crashed
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) -> Due {
        match self.phase {
            Phase::Initializing { deadline } if now >= deadline => {
                let waited = self.limits.startup_timeout.as_secs_f64();
                self.kill(&format!("did not answer initialize within {waited}s"), out);
                Due::StartupTimeout
            }
            Phase::Running { since, next_ping } if now >= next_ping => {
                self.phase = Phase::Running {
                    since,
                    next_ping: later(now, self.limits.ping_interval),
                };
                Due::Ping
            }
            Phase::Stopping {
                next: Some((at, signal)),
            } if now >= at => {
                out.push_back(BridgeOutput::Signal(signal));
                let next = match signal {
                    StopSignal::Term => {
                        Some((later(now, self.limits.stop_grace), StopSignal::Kill))
                    }
                    StopSignal::Kill => None,
                };
                self.phase = Phase::Stopping { next };
                Due::Nothing
            }
            Phase::Backoff { until } if now >= until => {
                self.restarts += 1;
                self.spawn(out);
                Due::Nothing
            }
            _ => Due::Nothing,
        }
    }

    // Commands.

    /// Starts a stopped child.
    pub(crate) fn start(&mut self, out: &mut VecDeque<BridgeOutput>) {
        if self.phase == Phase::Stopped {
            self.spawn(out);
        }
    }

    /// Kills a child that hung or failed its handshake; its exit counts as
    /// a failed run.
    pub(crate) fn kill(&mut self, reason: &str, out: &mut VecDeque<BridgeOutput>) {
        let running_since = match self.phase {
            Phase::Initializing { .. } => None,
            Phase::Running { since, .. } => Some(since),
            _ => return,
        };
        tracing::warn!(server = %self.spec.name, "killing the MCP server: {reason}");
        self.last_failure = Some(reason.to_owned());
        self.phase = Phase::Killing { running_since };
        out.push_back(BridgeOutput::Signal(StopSignal::Kill));
    }

    /// Shuts the child down without restarting it.
    pub(crate) fn stop(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        match self.phase {
            Phase::Initializing { .. } | Phase::Running { .. } => self.begin_stopping(now, out),
            Phase::Spawning { .. } => self.phase = Phase::Spawning { then_stop: true },
            // SIGKILL is already on its way.
            Phase::Killing { .. } => self.phase = Phase::Stopping { next: None },
            Phase::Backoff { .. } | Phase::Failed => self.phase = Phase::Stopped,
            Phase::Stopped | Phase::Stopping { .. } => {}
        }
    }

    /// Forgets a run of failures so the next request tries again.
    pub(crate) fn reset(&mut self) {
        if self.phase == Phase::Failed {
            self.phase = Phase::Stopped;
            self.failures = 0;
        }
    }

    // Output.

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Initializing { deadline } => Some(deadline),
            Phase::Running { next_ping, .. } => Some(next_ping),
            Phase::Stopping { next } => next.map(|(at, _)| at),
            Phase::Backoff { until } => Some(until),
            Phase::Stopped | Phase::Spawning { .. } | Phase::Killing { .. } | Phase::Failed => None,
        }
    }

    fn spawn(&mut self, out: &mut VecDeque<BridgeOutput>) {
        self.phase = Phase::Spawning { then_stop: false };
        out.push_back(match &self.spec.remote {
            Some(remote) => BridgeOutput::Connect {
                name: self.spec.name.clone(),
                remote: Box::new(remote.clone()),
            },
            None => BridgeOutput::Spawn {
                command: self.spec.command.clone(),
                env: self.spec.env.clone(),
                cwd: self.spec.cwd.clone(),
            },
        });
    }

    fn begin_stopping(&mut self, now: Instant, out: &mut VecDeque<BridgeOutput>) {
        out.push_back(BridgeOutput::CloseStdin);
        self.phase = Phase::Stopping {
            next: Some((later(now, self.limits.stop_grace), StopSignal::Term)),
        };
    }

    /// Counts a failed run (a run that was up `healthy_after` first wipes
    /// the count): back off before the next, or give up.
    fn failed_run(&mut self, running_since: Option<Instant>, now: Instant) {
        if running_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.limits.healthy_after)
        {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.spec.max_restarts.max(1) {
            tracing::warn!(server = %self.spec.name, failures = self.failures, "giving up on the MCP server");
            self.phase = Phase::Failed;
        } else {
            self.phase = Phase::Backoff {
                until: later(now, backoff(&self.limits, self.failures)),
            };
        }
    }
}

/// The wait before the restart that follows `failures` failed runs in a
/// row: the initial wait, doubled per failure after the first, capped.
pub(crate) fn backoff(limits: &Limits, failures: u32) -> Duration {
    let schedule = Doubling {
        first: limits.backoff_initial,
        most: limits.backoff_max,
    };
    schedule.after(failures)
}

/// A failure, with the end of the child's stderr when it said anything.
fn with_stderr(what: &str, said: &str) -> String {
    match said.trim() {
        "" => what.to_owned(),
        said => format!("{what}; its stderr ended with: {said}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor(max_restarts: u32) -> Supervisor {
        let mut spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
        spec.max_restarts = max_restarts;
        Supervisor::new(spec, Limits::default())
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let limits = Limits::default();
        let waits: Vec<u64> = (1..=9)
            .map(|n| backoff(&limits, n).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(backoff(&limits, u32::MAX), limits.backoff_max);
    }

    #[test]
    fn a_stop_asked_while_spawning_stops_the_child_once_it_exists() {
        let t0 = Instant::now();
        let mut s = supervisor(5);
        let mut out = VecDeque::new();
        s.start(&mut out);
        s.stop(t0, &mut out);
        assert!(!s.handle_spawned(t0, &mut out));
        assert_eq!(s.state(), ChildState::Stopping);
        assert_eq!(out.back(), Some(&BridgeOutput::CloseStdin));
        assert_eq!(s.handle_exit("", t0), Ended::Stopped);
        assert_eq!(s.state(), ChildState::Stopped);
    }

    #[test]
    fn only_runs_that_were_up_long_enough_forget_earlier_failures() {
        let t0 = Instant::now();
        let mut s = supervisor(5);
        let mut out = VecDeque::new();
        s.start(&mut out);
        s.handle_spawned(t0, &mut out);
        s.handle_initialized(t0);
        assert_eq!(
            s.handle_exit("", t0 + Duration::from_secs(1)),
            Ended::Crashed
        );
        assert_eq!(s.failures(), 1);
        // A run stuck in its handshake never counts as healthy.
        let t1 = t0 + Duration::from_secs(100);
        s.handle_timeout(t1, &mut out);
        s.handle_spawned(t1, &mut out);
        s.handle_exit("", t1 + Duration::from_secs(60));
        assert_eq!(s.failures(), 2);
        let t2 = t1 + Duration::from_secs(100);
        s.handle_timeout(t2, &mut out);
        s.handle_spawned(t2, &mut out);
        s.handle_initialized(t2);
        s.handle_exit("", t2 + s.limits().healthy_after);
        assert_eq!(s.failures(), 1);
        assert_eq!(s.restarts(), 2);
    }
}
