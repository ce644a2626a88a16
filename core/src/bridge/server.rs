//! [`BridgedServer`]: the lifecycle and the multiplexer of one bridged
//! server joined, and the rules that need both — when the child starts,
//! when it counts as hung, when it is idle, what a call gets once the
//! bridge gave up.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::Value;

use super::lazy::{LastRun, Recall};
use super::mux::{FromChild, Mux, Route, MOST_TIMEOUTS};
use super::supervisor::{Due, Ended, Supervisor};
use super::verbatim::FromClient;
use super::{BridgeOutput, ChildState, ClientId, Limits, ServerSpec, SERVER_ERROR};
use crate::mcp::Message;
use crate::time::later;

/// One bridged stdio MCP server: its child process and the clients that
/// share it. See the [module docs](super) for the drive loop.
pub struct BridgedServer {
    supervisor: Supervisor,
    mux: Mux,
    out: VecDeque<BridgeOutput>,
    /// Since when a running child has had no client and nothing to do.
    idle_since: Option<Instant>,
    /// `stop` was called: the child is never started again.
    retired: bool,
    /// A remote server's last status (see `upstream::Status`).
    remote_status: Option<crate::upstream::Status>,
    /// What a lazy server answered at its last run (see `lazy`).
    recall: Recall,
}

impl BridgedServer {
    /// A bridge with no child yet: the first client request starts it.
    pub fn new(spec: ServerSpec, limits: Limits, _now: Instant) -> Self {
        let mut mux = Mux::new(
            &spec.name,
            limits.max_in_flight,
            spec.share == super::Share::Shared,
            spec.tools.clone(),
        );
        if spec.remote.is_some() {
            mux.over_network();
        }
        let recall = Recall::new(limits.lazy);
        BridgedServer {
            supervisor: Supervisor::new(spec, limits),
            mux,
            out: VecDeque::new(),
            idle_since: None,
            retired: false,
            remote_status: None,
            recall,
        }
    }

    /// Traces the calls it writes with `tracer` during the input at `now`,
    /// until [`BridgedServer::take_tracer`] gives it back.
    pub(crate) fn lend_tracer(&mut self, tracer: crate::telemetry::Tracer, now: Instant) {
        self.mux.lend_tracer(tracer, now);
    }

    pub(crate) fn take_tracer(&mut self) -> Option<crate::telemetry::Tracer> {
        self.mux.take_tracer()
    }

    // Getters.

    pub fn spec(&self) -> &ServerSpec {
        self.supervisor.spec()
    }

    pub fn state(&self) -> ChildState {
        self.supervisor.state()
    }

    /// Restarts after a failed run since [`BridgedServer::new`].
    pub fn restarts(&self) -> u64 {
        self.supervisor.restarts()
    }

    /// Client calls sent to the child or waiting for it.
    pub fn in_flight(&self) -> usize {
        self.mux.in_flight()
    }

    pub fn clients(&self) -> usize {
        self.mux.clients()
    }

    /// Changes whenever what the child lists may have: a new handshake, a
    /// `list_changed` notification.
    pub fn lists(&self) -> u64 {
        self.mux.lists()
    }

    /// Whether [`BridgedServer::stop`] was called: it never starts again,
    /// and once stopped with no client left it can be forgotten.
    pub fn retired(&self) -> bool {
        self.retired
    }

    /// The child's `initialize` result, replayed to every client.
    pub fn initialize_result(&self) -> Option<&Value> {
        self.mux.initialize_result()
    }

    /// A run of a lazy server's learned since the last call (its child
    /// answered lists other than the kept ones): to be kept on disk.
    pub fn take_learned(&mut self) -> Option<LastRun> {
        self.recall.take_learned()
    }

    // Commands (clients).

    /// A lazy server's last run, kept from an earlier process: while its
    /// child is stopped, clients are answered from it what it holds (a
    /// server not lazy, or that knows a fresher run, ignores it).
    pub fn remember(&mut self, run: LastRun) {
        let initialize = run.initialize().clone();
        if self.recall.remember(run) {
            self.mux.recall_initialize(initialize);
        }
    }

    /// A new client. A bridge that gave up tries again for it.
    pub fn open_client(&mut self, now: Instant) -> ClientId {
        if !self.retired {
            self.supervisor.reset();
        }
        let client = self.mux.open_client();
        self.settle(now);
        client
    }

    /// One JSON-RPC message from a client: a request (answered through
    /// [`BridgeOutput::ToClient`], never dropped), a notification, or the
    /// answer to a request the child made.
    ///
    /// A remote server the bridge gave up on is tried again for it: what
    /// failed it (the network, a login) is mended elsewhere, with no
    /// client reconnecting.
    pub fn handle_client_message(
        &mut self,
        client: ClientId,
        message: impl Into<FromClient>,
        now: Instant,
    ) {
        let read = message.into();
        if let Some(kept) = self.kept_answer(client, &read.message) {
            return self.out.push_back(kept);
        }
        if self.spec().remote.is_some() && !self.retired {
            self.supervisor.reset();
        }
        let route = self.route(now);
        self.mux
            .handle_client_message(client, read, route, &mut self.out);
        self.settle(now);
    }

    /// The client is gone: its calls are cancelled at the child and its
    /// subscriptions released. The child keeps running for the others.
    pub fn close_client(&mut self, client: ClientId, now: Instant) {
        let route = self.route(now);
        self.mux.close_client(client, &route, &mut self.out);
        self.settle(now);
    }

    /// Shuts the child down for good (the server is removed or the process
    /// exits): calls in flight get errors, later ones too.
    pub fn stop(&mut self, now: Instant) {
        self.retired = true;
        let message = self.stopped_message();
        self.mux.fail_sent(SERVER_ERROR, &message, &mut self.out);
        self.mux.fail_queued(SERVER_ERROR, &message, &mut self.out);
        self.supervisor.stop(now, &mut self.out);
        self.settle(now);
    }

    // Input from the child (the driver).

    /// The child asked for by [`BridgeOutput::Spawn`] is running.
    pub fn handle_spawned(&mut self, now: Instant) {
        if self.supervisor.handle_spawned(now, &mut self.out) {
            self.mux.send_initialize(now, &mut self.out);
        }
        self.settle(now);
    }

    /// The child asked for by [`BridgeOutput::Spawn`] could not be
    /// started: a failed run.
    pub fn handle_spawn_failed(&mut self, error: &str, now: Instant) {
        self.supervisor.handle_spawn_failed(error, now);
        self.fail_start();
        self.settle(now);
    }

    /// One line of the child's stdout, without its newline.
    /// How a remote server is doing, as its client saw last.
    pub fn handle_remote_status(&mut self, status: crate::upstream::Status) {
        self.remote_status = Some(status);
    }

    /// How the remote server is doing (`None`: not a remote server, or
    /// not dialed yet).
    pub fn remote_status(&self) -> Option<&crate::upstream::Status> {
        self.remote_status.as_ref()
    }

    /// A remote server answers the coming `initialize` with no session
    /// (see [`UpstreamOutput::Sessionless`](crate::upstream::UpstreamOutput::Sessionless)).
    pub fn handle_child_sessionless(&mut self) {
        self.mux.handle_sessionless();
    }

    /// Speak the stateless revision to the remote server whenever it
    /// offers it, even alongside a session: this child's clients are the
    /// clients of that revision, and the server's own requests reach them
    /// (as `input_required`) only there.
    pub(crate) fn prefer_stateless(&mut self) {
        self.mux.prefer_stateless();
    }

    pub fn handle_child_line<'a>(&mut self, line: impl Into<crate::mcp::Line<'a>>, now: Instant) {
        let lists = self.mux.lists();
        let mut started = false;
        match self.mux.handle_child_line(line, now, &mut self.out) {
            FromChild::Initialized => {
                if self.supervisor.handle_initialized(now) {
                    self.mux.handle_ready(now, &mut self.out);
                    started = true;
                }
            }
            FromChild::InitializeFailed(reason) => self.supervisor.kill(&reason, &mut self.out),
            FromChild::Listed(key, outcome) => {
                let initialize = self.mux.initialize_result();
                for notice in self.recall.listed(key, outcome, initialize) {
                    self.mux.tell_clients(notice, &mut self.out);
                }
            }
            FromChild::Nothing => {}
        }
        if self.mux.lists() != lists && self.state() == ChildState::Running {
            for key in self.recall.ask_again(started) {
                self.mux.ask_list(key, now, &mut self.out);
            }
        }
        if let Some(level) = started.then(|| self.recall.take_level()).flatten() {
            self.mux.set_level(level, now, &mut self.out);
        }
        self.settle(now);
    }

    /// The child (its process group leader) exited.
    /// The child exited; `said` is the end of its stderr (may be empty).
    pub fn handle_child_exit(&mut self, said: &str, now: Instant) {
        let starting = self.state() == ChildState::Starting;
        let message = match self.supervisor.handle_exit(said, now) {
            Ended::Crashed => format!(
                "MCP server '{}' {}",
                self.spec().name,
                self.supervisor.last_failure().unwrap_or("exited")
            ),
            Ended::Stopped => self.stopped_message(),
            Ended::Unexpected => {
                tracing::debug!(server = %self.spec().name, "exit reported with no child running");
                return;
            }
        };
        self.mux.fail_sent(SERVER_ERROR, &message, &mut self.out);
        if starting {
            self.fail_start();
        }
        self.settle(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.hung_at().is_some_and(|at| now >= at) {
            let name = &self.supervisor.spec().name;
            let message = format!("MCP server '{name}' stopped responding");
            self.mux.fail_sent(SERVER_ERROR, &message, &mut self.out);
            self.supervisor.kill("stopped responding", &mut self.out);
        }
        if self.idle_at().is_some_and(|at| now >= at) {
            tracing::info!(server = %self.spec().name, "stopping the idle MCP server");
            let message = self.stopped_message();
            self.mux.fail_sent(SERVER_ERROR, &message, &mut self.out);
            self.supervisor.stop(now, &mut self.out);
        }
        if self.probe_at().is_some_and(|at| now >= at) {
            self.mux.send_ping(now, &mut self.out);
        }
        if self.listen_at().is_some_and(|at| now >= at) {
            self.mux.renew_listen(now, &mut self.out);
        }
        if self.call_timeout_at().is_some_and(|at| now >= at) {
            let timeout = self.supervisor.limits().call_timeout;
            let message = format!(
                "MCP server '{}' did not answer within {} s of its last progress \
                 ({} s at most): timed out",
                self.spec().name,
                timeout.as_secs_f64(),
                timeout.saturating_mul(MOST_TIMEOUTS).as_secs_f64()
            );
            self.mux.time_out(now, timeout, &message, &mut self.out);
        }
        match self.supervisor.handle_timeout(now, &mut self.out) {
            Due::Ping => self.mux.send_ping(now, &mut self.out),
            Due::StartupTimeout => {
                let name = &self.supervisor.spec().name;
                let message = format!("MCP server '{name}' did not start in time");
                self.mux.fail_sent(SERVER_ERROR, &message, &mut self.out);
                self.fail_start();
            }
            Due::Nothing => {}
        }
        self.settle(now);
    }

    // Output.

    /// When [`BridgedServer::handle_timeout`] must be called next.
    ///
    /// Asked after every input: the child's own deadlines are read only
    /// while it runs, and the health deadline from one walk of what is
    /// owed (a hung ping's, `hung_at`, or else a silent call's probe,
    /// `probe_at`: never both).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let supervisor = self.supervisor.poll_timeout();
        if self.state() != ChildState::Running {
            return supervisor;
        }
        let health = match self.mux.ping_silent_since() {
            Some(since) => Some(since),
            None => self.mux.call_silent_since(),
        }
        .map(|since| later(since, self.supervisor.limits().ping_timeout));
        [
            supervisor,
            health,
            self.idle_at(),
            self.call_timeout_at(),
            self.mux.listen_due(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next thing for the driver to do; drain after every input.
    pub fn poll_output(&mut self) -> Option<BridgeOutput> {
        self.out.pop_front()
    }

    /// The answer a lazy server's last run gives a client's request, while
    /// its child is stopped: an `initialize` is the mux's (it keeps the
    /// kept result), a list's first page is here, its tool filter applied,
    /// and a logging level is held for the child's start.
    fn kept_answer(&mut self, client: ClientId, message: &Message) -> Option<BridgeOutput> {
        let Message::Request { id, method, params } = message else {
            return None;
        };
        let stopped = self.state() == ChildState::Stopped && !self.retired;
        if !stopped || !self.mux.has_client(client) {
            return None;
        }
        let mut outcome = self.recall.answer(method, params)?;
        if let (Ok(result), true) = (&mut outcome, method == "tools/list") {
            self.spec().tools.apply_to_listing(result);
        }
        Some(BridgeOutput::ToClient {
            client,
            message: crate::mcp::response(id, outcome.as_ref()),
            answers: Some(crate::mcp::id_text(id)),
        })
    }

    /// What a client request may do now.
    fn route(&self, now: Instant) -> Route {
        if self.retired {
            return Route::Refuse(self.stopped_message());
        }
        match self.state() {
            ChildState::Running => Route::Send(now),
            ChildState::Failed => Route::Refuse(self.failed_message()),
            ChildState::Stopped
            | ChildState::Starting
            | ChildState::Stopping
            | ChildState::Restarting => Route::Queue,
        }
    }

    /// After every input: start a stopped child that has calls waiting,
    /// refuse what waits on a bridge that gave up, and track idleness.
    fn settle(&mut self, now: Instant) {
        match self.state() {
            ChildState::Stopped if self.mux.has_queued() && !self.retired => {
                self.supervisor.start(&mut self.out);
            }
            ChildState::Failed if self.mux.has_queued() => {
                let message = self.failed_message();
                self.mux.fail_queued(SERVER_ERROR, &message, &mut self.out);
            }
            _ => {}
        }
        let idle = self.state() == ChildState::Running
            && self.spec().idle_timeout.is_some()
            && self.mux.is_idle();
        self.idle_since = if idle {
            Some(self.idle_since.unwrap_or(now))
        } else {
            None
        };
    }

    /// When a running child counts as hung: its `ping` went unanswered
    /// (with no answer to anything from it) for `ping_timeout`, however
    /// much else it printed. A long call alone does not make it hung: a
    /// tool may work for minutes.
    fn hung_at(&self) -> Option<Instant> {
        if self.state() != ChildState::Running {
            return None;
        }
        let since = self.mux.ping_silent_since()?;
        Some(later(since, self.supervisor.limits().ping_timeout))
    }

    /// When to ask a running child that has answered nothing while a call
    /// waits whether it is still there: a `ping` after `ping_timeout` (a
    /// server that reads its input while a tool runs answers at once).
    fn probe_at(&self) -> Option<Instant> {
        if self.state() != ChildState::Running || self.mux.ping_silent_since().is_some() {
            return None;
        }
        let since = self.mux.call_silent_since()?;
        Some(later(since, self.supervisor.limits().ping_timeout))
    }

    /// When a running remote server's call that has gone longest with
    /// neither its answer nor progress times out. (A stdio child that
    /// stops answering is found hung by its pings; a remote server may
    /// answer pings and never a call.)
    fn call_timeout_at(&self) -> Option<Instant> {
        if self.state() != ChildState::Running || self.spec().remote.is_none() {
            return None;
        }
        self.mux
            .next_call_timeout(self.supervisor.limits().call_timeout)
    }

    /// When a running stateless remote server's listen stream that ended
    /// is opened again.
    fn listen_at(&self) -> Option<Instant> {
        if self.state() != ChildState::Running {
            return None;
        }
        self.mux.listen_due()
    }

    fn idle_at(&self) -> Option<Instant> {
        if self.state() != ChildState::Running {
            return None;
        }
        let wait = self.spec().idle_timeout?;
        Some(later(self.idle_since?, wait))
    }

    /// A start failed (no spawn, no handshake in time, an exit before
    /// it): the calls waiting for it are answered now, with the reason,
    /// rather than held through every retry (a child that never answers
    /// `initialize` would keep them waiting for all of them). The child is
    /// still tried again, with backoff, for the calls that come later.
    fn fail_start(&mut self) {
        if self.state() != ChildState::Restarting {
            // Given up for good: `settle` answers them with the whole story.
            return;
        }
        let message = format!(
            "MCP server '{}' did not start ({}); it is tried again for later calls",
            self.spec().name,
            self.supervisor.last_failure().unwrap_or("unknown"),
        );
        self.mux.fail_queued(SERVER_ERROR, &message, &mut self.out);
    }

    fn stopped_message(&self) -> String {
        format!("MCP server '{}' was stopped", self.spec().name)
    }

    fn failed_message(&self) -> String {
        format!(
            "MCP server '{}' failed {} times in a row and is not restarted (last: {})",
            self.spec().name,
            self.supervisor.failures(),
            self.supervisor.last_failure().unwrap_or("unknown"),
        )
    }

    #[cfg(test)]
    pub(crate) fn sizes(&self) -> [usize; 7] {
        self.mux.sizes()
    }
}
