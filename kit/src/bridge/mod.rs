//! The MCP bridge as both runtimes run it: the core's [`Bridge`] behind a
//! lock of its own (never the provider's), its child processes, and its
//! timer. Children are few, so each one gets threads (stderr, one waiting
//! for its exit, and one writing what its stdin could not take at once:
//! see `process::child_stdin`) whatever the runtime. Its stdout is read by a thread too,
//! unless the runtime reads it on its own reactor ([`ReadStdout`]), which
//! saves a thread hand-over per answer. What the bridge answers over HTTP
//! is posted to the connections' mailboxes like the provider's answers.

mod children;
mod kept_runs;
mod spawn;
mod timer;

use std::path::PathBuf;
use std::process::ChildStdout;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use mcp_provider_core::bridge::{BridgeOutput, ChildId, Limits, Report, Routed, ServerSpec};
use mcp_provider_core::gateway::aggregate::names::Names;
use mcp_provider_core::gateway::aggregate::search::ToolSearch;
use mcp_provider_core::gateway::{BadConfiguration, Bridge, Reconfigured};
use mcp_provider_core::http::Request;
use mcp_provider_core::upstream::Remote;
use mcp_provider_core::{ConnId, Output};

use crate::few::Few;
use crate::outbound::upstream::{
    threads, Carriers, Credentials, NoCredentials, NotBegun, Parent, RemoteRun,
};
use crate::telemetry::Traces;
use children::{Children, Running};
use spawn::{thread, Start};
use timer::Timer;

pub use spawn::StdoutFeed;
pub use timer::REPORT_EVERY;

/// Where the bridge's HTTP answers go: the connections' mailboxes.
pub type Post = Box<dyn Fn(Few<Output>) -> Posted + Send + Sync>;

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

/// What the runtime serving the bridge hands it, all at once and before
/// any client is served ([`Bridged::serve`]). Until then the bridge's
/// answers and figures go nowhere, its children's stdout is read by
/// threads and remote servers' exchanges are carried by the kit's pool of
/// threads.
pub struct Serving {
    /// Where HTTP answers are posted: the connections' mailboxes.
    pub post: Post,
    /// Where the bridge's figures go when they change (the provider, for
    /// `/metrics` and `/health/deep`), checked every [`REPORT_EVERY`].
    pub report: Reporter,
    /// Reads children's stdout on the runtime's reactor instead of a
    /// thread each.
    pub read_stdout: Option<ReadStdout>,
    /// Carries remote servers' exchanges on the runtime's reactor instead
    /// of the kit's pool of threads.
    pub carriers: Option<Carriers>,
}

/// The bridge, its children and its timer.
pub struct Bridged {
    state: Mutex<Bridge>,
    children: Children,
    timer: Timer,
    /// What the runtime serving the bridge handed it (see [`Serving`]).
    serving: OnceLock<Serving>,
    /// Carries remote servers' exchanges on the kit's pool of threads,
    /// unless the runtime serving the bridge carries them.
    threads: Carriers,
    /// Where remote servers' clients get tokens.
    credentials: Arc<dyn Credentials>,
    /// The folder of lazy servers' kept runs (`None`: no state directory).
    kept_dir: Option<PathBuf>,
    /// Where the bridge's finished spans go, when traces are exported.
    traces: Option<Arc<Traces>>,
}

impl Bridged {
    /// The bridge of `specs`, its timer running; nothing is spawned until
    /// a client asks. `seed` makes its session ids unguessable. Lazy
    /// servers' kept runs are read first. Remote servers get no tokens (one
    /// that wants one is answered with the login command to run).
    pub fn start(specs: Vec<ServerSpec>, limits: Limits, seed: [u8; 32]) -> Arc<Self> {
        Self::start_with(specs, limits, seed, Arc::new(NoCredentials), None)
    }

    /// [`Bridged::start`], remote servers getting tokens from
    /// `credentials`, its spans exported through `traces` (the tracer's
    /// ids drawn from `trace_seed`).
    pub fn start_with(
        specs: Vec<ServerSpec>,
        limits: Limits,
        seed: [u8; 32],
        credentials: Arc<dyn Credentials>,
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
            children: Children::default(),
            timer: Timer::new(),
            serving: OnceLock::new(),
            threads: threads::carriers(),
            credentials,
            kept_dir,
            traces: traces.map(|(traces, _)| traces),
        });
        timer::start(Arc::downgrade(&bridged));
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

    /// Serves the bridge with what the runtime hands it (only the first
    /// call counts).
    pub fn serve(&self, serving: Serving) {
        let _ = self.serving.set(serving);
    }

    /// Reads children's stdout on the runtime's reactor, if it said so.
    fn read_stdout(&self) -> Option<&ReadStdout> {
        self.serving.get()?.read_stdout.as_ref()
    }

    /// What carries remote servers' exchanges.
    fn carriers(&self) -> &Carriers {
        self.serving
            .get()
            .and_then(|serving| serving.carriers.as_ref())
            .unwrap_or(&self.threads)
    }

    /// Each remote server's token refreshes, from the credentials that
    /// make them, into `report`.
    fn count_refreshes(&self, report: &mut Report) {
        for server in &mut report.servers {
            if let Some(remote) = &mut server.remote {
                remote.refreshes = self.credentials.refreshes(&server.name);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Bridge> {
        // A panic while holding the lock is a bug; keep serving regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        // Nearly every call posts once and writes to one child.
        let mut wakes = Few::default();
        let (result, flushes, spawns, logins, keeps, next, report) = {
            let mut bridge = self.lock();
            let now = Instant::now();
            let result = f(&mut bridge, now);
            let report = self.timer.resume_reports(!bridge.specs().is_empty());
            let mut flushes = Few::default();
            let mut logins = Vec::new();
            let mut spawns = Vec::new();
            let mut keeps = Vec::new();
            loop {
                let mut http = Few::default();
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
                            self.children.to_child(child, action, &mut flushes);
                        }
                        Routed::Login { to, server } => logins.push((to, server)),
                        Routed::Keep { file, contents } => keeps.push((file, contents)),
                    }
                }
                let Some(posted) = self
                    .serving
                    .get()
                    .filter(|_| !http.is_empty())
                    .map(|serving| (serving.post)(http))
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
            self.timer.wake_before(at);
        }
        if report {
            self.timer.report_again();
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
        self.children.is_empty()
    }

    /// SIGKILL to every child's group (the process is exiting).
    pub fn kill_all(&self) {
        self.children.kill_all();
    }

    /// Starts the client of a remote server.
    fn connect(self: &Arc<Self>, child: ChildId, name: &str, remote: Remote) {
        let carrier = self.carriers()();
        let parent: Weak<dyn Parent> = Arc::downgrade(self) as Weak<Bridged>;
        let run = RemoteRun::start(
            parent,
            child,
            name,
            remote,
            self.credentials.clone(),
            carrier,
        );
        self.children.insert(child, Running::Remote(run));
        self.with(|b, now| b.handle_spawned(child, now));
    }

    /// Begins a remote server's login on a thread of its own (finding its
    /// authorization server takes requests), then answers `to` with the
    /// page to open.
    fn begin_login(self: &Arc<Self>, to: mcp_provider_core::RequestId, server: String) {
        let credentials = self.credentials.clone();
        let me = self.clone();
        let begun = thread("oauth-login", move || {
            let started = credentials.begin_login(&server);
            me.with(|b, _| b.handle_login_started(to, started.map_err(|why| why.to_string())));
        });
        if begun.is_err() {
            let why = NotBegun::NoThread.to_string();
            self.with(|b, _| b.handle_login_started(to, Err(why)));
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
        let was = self.children.remove(child);
        if was.is_some() {
            self.with(|b, now| b.handle_child_exit(child, why, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

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
        let post: Post = Box::new(move |outputs| {
            if first.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
            }
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.extend(outputs.iter().map(Output::conn));
            Posted::default()
        });
        bridged.serve(Serving {
            post,
            report: Box::new(|_| {}),
            read_stdout: None,
            carriers: None,
        });
        let early = bridged.clone();
        let slow = std::thread::spawn(move || early.handle_request(ConnId(1), nowhere()));
        std::thread::sleep(Duration::from_millis(100));
        bridged.handle_request(ConnId(2), nowhere());
        assert!(slow.join().is_ok());
        let order = order.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(*order, [ConnId(1), ConnId(2)]);
    }
}
