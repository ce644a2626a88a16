//! The MCP bridge as both runtimes run it: the core's [`Bridge`] behind a
//! lock of its own (never the provider's), its child processes, and its
//! timer. Children are few, so each one gets threads (stderr, one waiting
//! for its exit, and one writing what its stdin could not take at once:
//! see `child_stdin.rs`) whatever the runtime. Its stdout is read by a thread too,
//! unless the runtime reads it on its own reactor ([`ReadStdout`]), which
//! saves a thread hand-over per answer. What the bridge answers over HTTP
//! is posted to the connections' mailboxes like the provider's answers.

mod kept_runs;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use mcp_provider_core::bridge::{
    BridgeOutput, ChildId, Limits, Report, Routed, ServerSpec, StopSignal,
};
use mcp_provider_core::gateway::aggregate::names::Names;
use mcp_provider_core::gateway::aggregate::search::ToolSearch;
use mcp_provider_core::gateway::{BadConfiguration, Bridge, Reconfigured};
use mcp_provider_core::http::Request;
use mcp_provider_core::lines::{Line, LineBuffer};
use mcp_provider_core::{mcp, ConnId, Output};

use crate::outbound::upstream::{threads, Carriers, Credentials, NoCredentials, Parent, RemoteRun};
use crate::process::child_stdin::{Stdin, Written};
use crate::process::watchdog;
use crate::process::{self, wait_unreaped, PIPE_READ_CHUNK, STDERR_WAIT};
use crate::telemetry::Traces;
use mcp_provider_core::upstream::Remote;

/// The last lines of a child's stderr given in the clients' error when it
/// exits (from its last [`process::Tail`] of bytes).
const STDERR_LINES: usize = 3;

/// Where the bridge's HTTP answers go: the connections' mailboxes.
pub type Post = Box<dyn Fn(Vec<Output>) -> Posted + Send + Sync>;

/// What posting the bridge's HTTP answers came to.
pub struct Posted {
    /// The connections whose unread output passed the bound: their
    /// streams are cut (see [`mcp_provider_core::backlog::SLOW_CLIENT_BYTES`]).
    pub slow: Vec<ConnId>,
    /// Wakes the connections posted to. Called once the bridge's lock is
    /// let go: a wake-up can cost a system call, which no thread waiting
    /// for the lock should wait for.
    pub wake: Box<dyn FnOnce() + Send>,
}

impl Default for Posted {
    /// Nothing posted: nothing to cut, nobody to wake.
    fn default() -> Self {
        Posted {
            slow: Vec::new(),
            wake: Box::new(|| {}),
        }
    }
}

/// Where the bridge's figures go.
pub type Reporter = Box<dyn Fn(Report) + Send + Sync>;

/// How a runtime reads a child's stdout: it feeds every chunk it reads to
/// the [`StdoutFeed`] until the pipe ends.
pub type ReadStdout = Box<dyn Fn(ChildStdout, StdoutFeed) -> std::io::Result<()> + Send + Sync>;

/// How often the figures are looked at (and handed on if they changed).
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// The bridge, its children and its timer.
pub struct Bridged {
    state: Mutex<Bridge>,
    children: Mutex<HashMap<ChildId, Running>>,
    /// The timer thread's wake-up, rung when a deadline earlier than the
    /// one it sleeps toward appears.
    timer: (Mutex<Timer>, Condvar),
    /// Whether the timer hands on figures every [`REPORT_EVERY`]: it stops
    /// while no server is bridged, and is woken to start again when one
    /// is (added at run time, or by a new configuration). Read and written
    /// under the bridge's lock, so a server's arrival is never missed.
    reporting: AtomicBool,
    post: OnceLock<Post>,
    report: OnceLock<Reporter>,
    read_stdout: OnceLock<ReadStdout>,
    /// What makes remote servers' exchanges (unset: worker threads).
    carriers: OnceLock<Carriers>,
    /// Where remote servers' clients get tokens.
    credentials: OnceLock<Arc<dyn Credentials>>,
    /// The folder of lazy servers' kept runs (`None`: no state directory).
    kept_dir: Option<PathBuf>,
    /// Where the bridge's finished spans go, when traces are exported.
    traces: Option<Arc<Traces>>,
}

/// What the timer thread sleeps toward.
#[derive(Default)]
struct Timer {
    woken: bool,
    /// The deadline it waits for (`None`: the next report only).
    armed: Option<Instant>,
    /// Report again, and every [`REPORT_EVERY`] while servers are bridged.
    report: bool,
}

/// A live child: a process (its stdin and its process group), or a remote
/// server's client.
enum Running {
    Process { stdin: Arc<Stdin>, pgid: u32 },
    Remote(Arc<RemoteRun>),
}

impl Drop for Running {
    /// Ends the stdin writer thread (its child is gone or going).
    fn drop(&mut self) {
        if let Running::Process { stdin, .. } = self {
            stdin.close();
        }
    }
}

/// A child to start: a process, or a remote server's client.
enum Start {
    Process(Vec<String>, Vec<(String, String)>, Option<String>),
    Remote(String, Box<Remote>),
}

/// A running child's parts, taken out of the map to act on.
enum Handle {
    Process(Arc<Stdin>, u32),
    Remote(Arc<RemoteRun>),
}

impl Running {
    fn handle(&self) -> Handle {
        match self {
            Running::Process { stdin, pgid } => Handle::Process(stdin.clone(), *pgid),
            Running::Remote(remote) => Handle::Remote(remote.clone()),
        }
    }

    /// The process group to kill, for a process.
    fn pgid(&self) -> Option<u32> {
        match self {
            Running::Process { pgid, .. } => Some(*pgid),
            Running::Remote(_) => None,
        }
    }
}

/// What waits for the bridge's lock to be let go: lines written to a
/// child's stdin, or sent to a remote server; a remote server's client
/// ended.
enum Flush {
    Stdin(Arc<Stdin>),
    Remote(Arc<RemoteRun>),
    Close(Arc<RemoteRun>),
}

impl Flush {
    fn run(self) {
        match self {
            Flush::Stdin(stdin) => stdin.flush(),
            Flush::Remote(remote) => remote.flush(),
            Flush::Close(remote) => remote.close(),
        }
    }

    /// Whether this is the same flush as `other` (each is done once).
    fn same(&self, other: &Flush) -> bool {
        match (self, other) {
            (Flush::Stdin(a), Flush::Stdin(b)) => Arc::ptr_eq(a, b),
            (Flush::Remote(a), Flush::Remote(b)) | (Flush::Close(a), Flush::Close(b)) => {
                Arc::ptr_eq(a, b)
            }
            _ => false,
        }
    }
}

impl Bridged {
    /// The bridge of `specs`, its timer running; nothing is spawned until
    /// a client asks. `seed` makes its session ids unguessable. Lazy
    /// servers' kept runs are read first.
    pub fn start(specs: Vec<ServerSpec>, limits: Limits, seed: [u8; 32]) -> Arc<Self> {
        Self::start_traced(specs, limits, seed, None)
    }

    /// [`Bridged::start`], its spans exported through `traces` (the
    /// tracer's ids drawn from `trace_seed`).
    pub fn start_traced(
        specs: Vec<ServerSpec>,
        limits: Limits,
        seed: [u8; 32],
        traces: Option<(Arc<Traces>, u64)>,
    ) -> Arc<Self> {
        let kept_dir = kept_runs::dir();
        let kept = match (&kept_dir, limits.lazy) {
            (Some(dir), true) => kept_runs::read(dir, &specs),
            _ => Vec::new(),
        };
        let now = Instant::now();
        let mut bridge = Bridge::new(specs, limits, seed, now);
        if let Some((traces, trace_seed)) = &traces {
            bridge = bridge.with_tracer(traces.tracer(*trace_seed));
        }
        for (file, contents) in kept {
            bridge.handle_kept(&file, &contents, now);
        }
        let bridged = Arc::new(Bridged {
            state: Mutex::new(bridge),
            children: Mutex::default(),
            timer: (Mutex::default(), Condvar::new()),
            reporting: AtomicBool::new(true),
            post: OnceLock::new(),
            report: OnceLock::new(),
            read_stdout: OnceLock::new(),
            carriers: OnceLock::new(),
            credentials: OnceLock::new(),
            kept_dir,
            traces: traces.map(|(traces, _)| traces),
        });
        let weak = Arc::downgrade(&bridged);
        let spawned = std::thread::Builder::new()
            .name("bridge-timer".into())
            .spawn(move || timer(weak));
        if let Err(e) = spawned {
            tracing::error!("the MCP bridge's timer could not start: {e}");
        }
        bridged
    }

    /// How `/mcp` names each server's tools and prompts.
    pub fn set_names(&self, names: Names) {
        self.lock().set_names(names);
    }

    /// Whether `/mcp` lists its tools or offers to search them.
    pub fn set_tool_search(&self, search: ToolSearch) {
        self.lock().set_tool_search(search);
    }

    /// Where HTTP answers are posted (set once, by the hub).
    pub fn set_post(&self, post: Post) {
        let _ = self.post.set(post);
    }

    /// Where the bridge's figures go when they change (the provider, for
    /// `/metrics` and `/health/deep`), checked every [`REPORT_EVERY`].
    pub fn set_reporter(&self, report: Reporter) {
        let _ = self.report.set(report);
    }

    /// Reads children's stdout with `read` instead of a thread each.
    pub fn set_stdout_reader(&self, read: ReadStdout) {
        let _ = self.read_stdout.set(read);
    }

    /// Carries remote servers' exchanges with `carriers` instead of the
    /// kit's pool of threads.
    pub fn set_carriers(&self, carriers: Carriers) {
        let _ = self.carriers.set(carriers);
    }

    /// Where remote servers get tokens (without it, a server that wants
    /// one is answered with the login command to run).
    pub fn set_credentials(&self, credentials: Arc<dyn Credentials>) {
        let _ = self.credentials.set(credentials);
    }

    /// Where remote servers get tokens: the ones set, else none.
    fn credentials(&self) -> Arc<dyn Credentials> {
        self.credentials
            .get()
            .cloned()
            .unwrap_or_else(|| Arc::new(NoCredentials))
    }

    /// Each remote server's token refreshes, from the credentials that
    /// make them, into `report`.
    fn count_refreshes(&self, report: &mut Report) {
        let credentials = self.credentials();
        for server in &mut report.servers {
            if let Some(remote) = &mut server.remote {
                remote.refreshes = credentials.refreshes(&server.name);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Bridge> {
        // A panic while holding the lock is a bug; keep serving regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running(&self) -> MutexGuard<'_, HashMap<ChildId, Running>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the bridge, then carries out what it output: HTTP
    /// answers posted, lines for children queued, other child actions
    /// done.
    ///
    /// All of that happens in the bridge's order before its lock is let
    /// go: several threads drive the bridge (a child's reader, the timer,
    /// the request pumps), and one acting after letting go could be
    /// overtaken by another. An event could land after the end of its
    /// stream or in the next answer on its connection; a client's request
    /// could reach a child before the `notifications/initialized` that
    /// must precede it. Only the slow parts wait until the lock is let go:
    /// waking the connections posted to, writing the queued lines (the
    /// write wakes the child) and spawning.
    ///
    /// HTTP answers are posted before the child hears anything, so a
    /// stream's head reaches its connection before the events the child
    /// answers with.
    pub fn with<R>(self: &Arc<Self>, f: impl FnOnce(&mut Bridge, Instant) -> R) -> R {
        let mut wakes = Vec::new();
        let (result, flushes, spawns, logins, keeps, next, report) = {
            let mut bridge = self.lock();
            let now = Instant::now();
            let result = f(&mut bridge, now);
            let report = !self.reporting.load(Ordering::Relaxed) && !bridge.specs().is_empty();
            if report {
                self.reporting.store(true, Ordering::Relaxed);
            }
            let mut flushes: Vec<Flush> = Vec::new();
            let mut logins = Vec::new();
            let mut spawns = Vec::new();
            let mut keeps = Vec::new();
            loop {
                let mut http = Vec::new();
                while let Some(output) = bridge.poll_output() {
                    match output {
                        Routed::Http(output) => http.push(output),
                        Routed::Child {
                            child,
                            action: BridgeOutput::Spawn { command, env, cwd },
                        } => spawns.push((child, Start::Process(command, env, cwd))),
                        Routed::Child {
                            child,
                            action: BridgeOutput::Connect { name, remote },
                        } => spawns.push((child, Start::Remote(name, remote))),
                        Routed::Child { child, action } => {
                            self.to_child(child, action, &mut flushes);
                        }
                        Routed::Login { to, server } => logins.push((to, server)),
                        Routed::Keep { file, contents } => keeps.push((file, contents)),
                    }
                }
                let Some(posted) = self
                    .post
                    .get()
                    .filter(|_| !http.is_empty())
                    .map(|post| post(http))
                else {
                    break;
                };
                wakes.push(posted.wake);
                if posted.slow.is_empty() {
                    break;
                }
                for conn in posted.slow {
                    bridge.handle_slow_conn(conn, now);
                }
            }
            if let Some(traces) = &self.traces {
                traces.drain_bridge(&mut bridge);
            }
            (
                result,
                flushes,
                spawns,
                logins,
                keeps,
                bridge.poll_timeout(),
                report,
            )
        };
        for wake in wakes {
            wake();
        }
        for flush in flushes {
            flush.run();
        }
        for (child, start) in spawns {
            match start {
                Start::Process(command, env, cwd) => {
                    let started = self.spawn(child, &command, &env, cwd.as_deref());
                    self.spawned(child, &command, started);
                }
                Start::Remote(name, remote) => self.connect(child, &name, *remote),
            }
        }
        for (to, server) in logins {
            self.begin_login(to, server);
        }
        if let Some(dir) = &self.kept_dir {
            for (file, contents) in keeps {
                kept_runs::write(dir, &file, &contents);
            }
        }
        if let Some(at) = next {
            self.wake_timer_before(at);
        }
        if report {
            self.report_again();
        }
        result
    }

    /// A request for a bridge path, already admitted by the provider.
    pub fn handle_request(self: &Arc<Self>, conn: ConnId, request: Request) {
        self.with(|b, now| b.handle_request(conn, request, now));
    }

    pub fn handle_conn_closed(self: &Arc<Self>, conn: ConnId) {
        self.with(|b, now| b.handle_conn_closed(conn, now));
    }

    /// Takes a new configuration of the servers (see
    /// [`Bridge::reconfigure`]): what ends is carried out like any other
    /// output (streams ended, children stopped).
    pub fn reconfigure(
        self: &Arc<Self>,
        specs: Vec<ServerSpec>,
        limits: Limits,
    ) -> Result<Reconfigured, BadConfiguration> {
        let kept = match (&self.kept_dir, limits.lazy) {
            (Some(dir), true) => kept_runs::read(dir, &specs),
            _ => Vec::new(),
        };
        self.with(|b, now| {
            let reconfigured = b.reconfigure(specs, limits, now)?;
            for (file, contents) in kept {
                b.handle_kept(&file, &contents, now);
            }
            Ok(reconfigured)
        })
    }

    /// Stops every child: stdin closed, then SIGTERM, then SIGKILL.
    pub fn stop(self: &Arc<Self>) {
        self.with(|b, now| b.stop(now));
    }

    /// Whether no child process is alive.
    pub fn stopped(&self) -> bool {
        self.running().is_empty()
    }

    /// SIGKILL to every child's group (the process is exiting).
    pub fn kill_all(&self) {
        for pgid in self.running().values().filter_map(Running::pgid) {
            process::kill_group(pgid);
        }
    }

    /// Carries out what the bridge asks of a running child, under the
    /// bridge's lock and in its order: a line is queued on the child's
    /// stdin (and the stdin put in `flushes`, to be written once the lock
    /// is let go), a close or signal is done at once. Spawns are done after
    /// the lock is let go (they call the bridge again), not here.
    fn to_child(&self, child: ChildId, action: BridgeOutput, flushes: &mut Vec<Flush>) {
        let Some(running) = self.running().get(&child).map(Running::handle) else {
            return;
        };
        let flush = match (action, running) {
            (BridgeOutput::ToChild { line, .. }, Handle::Process(stdin, _)) => {
                if stdin.queue_line(line) == Written::Dropped {
                    tracing::warn!(
                        "an MCP server is not reading its stdin: a message to it was dropped"
                    );
                }
                Flush::Stdin(stdin)
            }
            (BridgeOutput::ToChild { line, outline }, Handle::Remote(remote)) => {
                remote.queue(line, outline);
                Flush::Remote(remote)
            }
            (BridgeOutput::CloseStdin, Handle::Process(stdin, _)) => {
                stdin.close();
                return;
            }
            (BridgeOutput::Signal(signal), Handle::Process(_, pgid)) => {
                let signal = match signal {
                    StopSignal::Term => libc::SIGTERM,
                    StopSignal::Kill => libc::SIGKILL,
                };
                process::signal_group(pgid, signal);
                return;
            }
            // A remote server has no stdin nor signals: being stopped ends
            // its client.
            (BridgeOutput::CloseStdin | BridgeOutput::Signal(_), Handle::Remote(remote)) => {
                Flush::Close(remote)
            }
            // The core routes client messages itself; starts wait for the
            // lock to be let go.
            (
                BridgeOutput::Spawn { .. }
                | BridgeOutput::Connect { .. }
                | BridgeOutput::ToClient { .. },
                _,
            ) => return,
        };
        if !flushes.iter().any(|queued| queued.same(&flush)) {
            flushes.push(flush);
        }
    }

    /// Starts the client of a remote server.
    fn connect(self: &Arc<Self>, child: ChildId, name: &str, remote: Remote) {
        let carrier = self.carriers.get_or_init(threads::carriers)();
        let parent: Weak<dyn Parent> = Arc::downgrade(self) as Weak<Bridged>;
        let run = RemoteRun::start(parent, child, name, remote, self.credentials(), carrier);
        self.running().insert(child, Running::Remote(run));
        self.with(|b, now| b.handle_spawned(child, now));
    }

    /// Begins a remote server's login on a thread of its own (finding its
    /// authorization server takes requests), then answers `to` with the
    /// page to open.
    fn begin_login(self: &Arc<Self>, to: mcp_provider_core::RequestId, server: String) {
        let credentials = self.credentials();
        let me = self.clone();
        let begun = thread("oauth-login", move || {
            let started = credentials.begin_login(&server);
            me.with(|b, _| b.handle_login_started(to, started));
        });
        if begun.is_err() {
            let why = "no thread could be started for the login".to_owned();
            self.with(|b, _| b.handle_login_started(to, Err(why)));
        }
    }

    /// Tells the bridge how starting `child` as `command` went.
    fn spawned(self: &Arc<Self>, child: ChildId, command: &[String], started: Result<(), String>) {
        match started {
            Ok(()) => self.with(|b, now| b.handle_spawned(child, now)),
            Err(e) => {
                tracing::warn!(
                    "the MCP server `{}` could not start: {e}",
                    command.join(" ")
                );
                self.with(|b, now| b.handle_spawn_failed(child, &e, now));
            }
        }
    }

    /// Starts a child in a process group of its own, with a thread per
    /// pipe and one waiting for its exit.
    fn spawn(
        self: &Arc<Self>,
        child: ChildId,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
    ) -> Result<(), String> {
        let mut command = process::command(argv, cwd.map(std::path::Path::new), &[])?;
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut process = command.spawn().map_err(|e| start_failure(argv, cwd, &e))?;
        let pgid = process.id();
        let (stdin, stdout, stderr) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        );
        let stdin = match stdin.map(Stdin::new) {
            Some(Ok(stdin)) => Arc::new(stdin),
            _ => {
                process::kill_group(pgid);
                return Err("its stdin could not be opened".to_owned());
            }
        };
        let writer = stdin.clone();
        watchdog::watch(pgid);
        self.running()
            .insert(child, Running::Process { stdin, pgid });
        let name = argv.first().cloned().unwrap_or_default();
        let feed = StdoutFeed {
            bridged: self.clone(),
            child,
            lines: LineBuffer::new(mcp::MAX_LINE),
        };
        let reading = match (stdout, self.read_stdout.get()) {
            (Some(pipe), Some(read)) => read(pipe, feed),
            (Some(pipe), None) => {
                thread("bridge-stdout", move || read_blocking(pipe, feed)).map(drop)
            }
            (None, _) => Ok(()),
        };
        let (said_tx, said) = std::sync::mpsc::sync_channel(1);
        let threads = [
            Some(thread("bridge-stdin", move || writer.drain())),
            stderr.map(|pipe| thread("bridge-stderr", move || log_stderr(&name, pipe, said_tx))),
        ];
        let me = self.clone();
        let waited = thread("bridge-wait", move || me.wait(child, process, said));
        if reading.is_err()
            || threads
                .iter()
                .flatten()
                .chain([&waited])
                .any(Result::is_err)
        {
            process::kill_group(pgid);
            return Err("no thread could be started for it".to_owned());
        }
        Ok(())
    }

    fn wait(self: Arc<Self>, child: ChildId, mut process: Child, said: Receiver<String>) {
        // Wait for the exit without reaping, so the group id cannot be
        // reused yet: whatever the group leader left behind (the children
        // of an `sh -c`) goes with it.
        wait_unreaped(process.id());
        if let Some(pgid) = self
            .running()
            .remove(&child)
            .as_ref()
            .and_then(Running::pgid)
        {
            process::kill_group(pgid);
            watchdog::forget(pgid);
        }
        let status = process.wait();
        tracing::info!("an MCP server exited ({status:?})");
        // Its stderr ends with it (the group is gone), unless something
        // outside the group holds the pipe: then it is not waited for.
        let said = said.recv_timeout(STDERR_WAIT).unwrap_or_default();
        self.with(|b, now| b.handle_child_exit(child, &said, now));
    }

    /// Wakes the timer to hand on the figures now, and every
    /// [`REPORT_EVERY`] from then on while servers are bridged.
    fn report_again(&self) {
        let (state, bell) = &self.timer;
        let mut timer = state.lock().unwrap_or_else(|e| e.into_inner());
        timer.report = true;
        timer.woken = true;
        bell.notify_one();
    }

    /// Wakes the timer if it sleeps past `at` (most calls move no
    /// deadline earlier, and wake nothing).
    fn wake_timer_before(&self, at: Instant) {
        let (state, bell) = &self.timer;
        let mut timer = state.lock().unwrap_or_else(|e| e.into_inner());
        if timer.armed.is_none_or(|armed| at < armed) {
            timer.armed = Some(at);
            timer.woken = true;
            bell.notify_one();
        }
    }
}

impl Parent for Bridged {
    fn with_bridge(self: Arc<Self>, f: &mut dyn FnMut(&mut Bridge, Instant)) {
        self.with(f);
    }

    /// A remote server's client ended (stopped, or its session gone): the
    /// bridge takes it as the child's exit.
    fn remote_ended(self: Arc<Self>, child: ChildId, why: &str) {
        let was = self.running().remove(&child);
        if was.is_some() {
            self.with(|b, now| b.handle_child_exit(child, why, now));
        }
    }
}

/// Sleeps until the bridge's next deadline, or until woken; ends when it
/// wakes to find the bridge gone. A bridge with no servers has no figures
/// that could change: its report goes out once, and the thread sleeps
/// until woken (by a deadline, or by a server's arrival: see
/// [`Bridged::report_again`]).
fn timer(bridged: Weak<Bridged>) {
    let mut reported: Option<Report> = None;
    let mut report_at = Some(Instant::now());
    loop {
        let Some(me) = bridged.upgrade() else {
            return;
        };
        if report_at.is_some_and(|at| at <= Instant::now()) {
            let mut report = {
                let bridge = me.lock();
                let report = bridge.report();
                let more = !report.servers.is_empty();
                me.reporting.store(more, Ordering::Relaxed);
                report
            };
            me.count_refreshes(&mut report);
            report_at = (!report.servers.is_empty()).then(|| Instant::now() + REPORT_EVERY);
            if reported.as_ref() != Some(&report) {
                if let Some(send) = me.report.get() {
                    send(report.clone());
                }
                reported = Some(report);
            }
        }
        let next = me.lock().poll_timeout();
        if next.is_some_and(|at| at <= Instant::now()) {
            me.with(|b, now| b.handle_timeout(now));
            continue;
        }
        let (state, bell) = &me.timer;
        let mut timer = state.lock().unwrap_or_else(|e| e.into_inner());
        if !timer.woken {
            let until = [next, report_at].into_iter().flatten().min();
            timer.armed = until;
            timer = match until {
                Some(until) => {
                    let wait = until.saturating_duration_since(Instant::now());
                    bell.wait_timeout(timer, wait)
                        .map_or_else(|e| e.into_inner().0, |(g, _)| g)
                }
                None => bell.wait(timer).unwrap_or_else(|e| e.into_inner()),
            };
        }
        if std::mem::take(&mut timer.report) {
            report_at = Some(Instant::now());
        }
        timer.woken = false;
        timer.armed = None;
    }
}

/// One child's stdout as the bridge takes it: bytes in, whole lines to the
/// bridge, every line of one read under one lock.
pub struct StdoutFeed {
    bridged: Arc<Bridged>,
    child: ChildId,
    lines: LineBuffer,
}

impl StdoutFeed {
    pub fn push(&mut self, bytes: &[u8]) {
        let lines = self.lines.push(bytes);
        let mut texts = lines
            .iter()
            .filter_map(|line| match line {
                Line::Text(text) => Some(text),
                Line::TooLong => {
                    tracing::warn!(
                        "an MCP server printed a line longer than {} bytes: dropped",
                        mcp::MAX_LINE
                    );
                    None
                }
            })
            .peekable();
        if texts.peek().is_some() {
            let child = self.child;
            self.bridged.with(|b, now| {
                for text in texts {
                    b.handle_child_line(child, text, now);
                }
            });
        }
    }
}

/// Reads a child's stdout on a thread of its own, until it ends.
fn read_blocking(mut pipe: ChildStdout, mut feed: StdoutFeed) {
    let mut buf = vec![0u8; PIPE_READ_CHUNK];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        feed.push(buf.get(..n).unwrap_or_default());
    }
}

fn thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// A child's stderr, a line at a time, to the log; at its end, its last
/// lines to `said` (for the clients' error when the child exited).
fn log_stderr(name: &str, mut pipe: impl Read, said: SyncSender<String>) {
    let mut lines = LineBuffer::new(8 * 1024);
    let mut tail = process::Tail::default();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut buf) {
        let bytes = buf.get(..n).unwrap_or_default();
        tail.push(bytes);
        for line in lines.push(bytes) {
            if let Line::Text(text) = line {
                tracing::info!(target: "mcp_server", "{name}: {text}");
            }
        }
    }
    let text = tail.text();
    let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let from = last.len().saturating_sub(STDERR_LINES);
    let _ = said.try_send(last.get(from..).unwrap_or_default().join(" | "));
}

/// Why a child could not start, saying which part failed: a working
/// directory that does not exist reads "No such file or directory" just as
/// a missing program does.
fn start_failure(argv: &[String], cwd: Option<&str>, e: &std::io::Error) -> String {
    if let Some(dir) = cwd.filter(|dir| !std::path::Path::new(dir).is_dir()) {
        return format!("its working directory `{dir}` does not exist");
    }
    let program = argv.first().map_or("", String::as_str);
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("its command `{program}` is not found (not on PATH, or no such file)")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("its command `{program}` cannot be run (permission denied)")
        }
        _ => format!("its command `{program}` could not be run: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn nowhere() -> Request {
        Request::new("POST", "/mcp/nowhere", Vec::new(), bytes::Bytes::new())
            .expect("a canonical path")
    }

    /// Two threads drive the bridge; the first one's post is slow. Its
    /// answer must still leave first, or a later event could overtake an
    /// earlier one on the same connection.
    #[test]
    fn answers_leave_in_the_order_the_bridge_made_them() {
        let bridged = Bridged::start(Vec::new(), Limits::default(), [7; 32]);
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = AtomicBool::new(true);
        let seen = order.clone();
        bridged.set_post(Box::new(move |outputs| {
            if first.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
            }
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.extend(outputs.iter().map(Output::conn));
            Posted::default()
        }));
        let early = bridged.clone();
        let slow = std::thread::spawn(move || early.handle_request(ConnId(1), nowhere()));
        std::thread::sleep(Duration::from_millis(100));
        bridged.handle_request(ConnId(2), nowhere());
        assert!(slow.join().is_ok());
        let order = order.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(*order, [ConnId(1), ConnId(2)]);
    }
}
