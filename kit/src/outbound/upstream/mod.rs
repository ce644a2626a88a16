//! A remote MCP server run as the bridge's child: the core's [`Upstream`]
//! behind a lock of its own, its HTTP exchanges made by a [`Carrier`] —
//! worker threads ([`threads`]), or tasks on an async runtime's reactor
//! (the kit's driver) — each keeping one connection alive for the next
//! exchange.
//!
//! The bridge hands it lines under the bridge's lock ([`RemoteRun::queue`]);
//! they go to the upstream once that lock is let go ([`RemoteRun::flush`]),
//! in the order queued. What the server sends back reaches the bridge as
//! the child's lines; the upstream's end as the child's exit. The
//! upstream's lock is never held while the bridge's is taken.

mod alarm;
pub mod conn;
pub mod threads;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mcp_provider_core::bridge::ChildId;
use mcp_provider_core::gateway::Bridge;
use mcp_provider_core::http::{Outgoing, ResponseEvent};
use mcp_provider_core::mcp::{Line, Placed};
use mcp_provider_core::time::later;
use mcp_provider_core::upstream::{ExchangeId, Outline, Remote, Upstream, UpstreamOutput};
use mcp_provider_core::IdMap;

use crate::few::Few;
use alarm::Alarm;
use conn::Failed;

/// Exchanges of one server carried at once; more wait for a worker.
pub const MAX_WORKERS: usize = 64;
/// A worker or a kept connection with nothing to do this long ends
/// (shorter than the bridge's health pings, so an idle server keeps only
/// its event stream's).
pub const WORKER_IDLE: Duration = Duration::from_secs(5);
/// How long an exchange sent once the run is closed (the session's
/// `DELETE`) may take, its dial included: nobody waits for its answer, and
/// a server hung enough to be killed would otherwise keep it, its socket
/// and the run for good, one more at each kill.
pub const CLOSING_TIMEOUT: Duration = Duration::from_secs(3);
/// The most of a response to a post read (a JSON answer is bounded again,
/// tighter, by the core).
const MAX_ANSWER: usize = 64 << 20;

/// What runs a remote server's client as its child: the bridge, which
/// hears of the client's messages and of its end. Held weakly: a client
/// outliving its bridge tells nobody.
pub trait Parent: Send + Sync {
    /// Runs `f` on the bridge, then carries out what it output, as any
    /// event of a child.
    fn with_bridge(self: Arc<Self>, f: &mut dyn FnMut(&mut Bridge, Instant));

    /// The client of `child` ended: the bridge takes it as the child's exit.
    fn remote_ended(self: Arc<Self>, child: ChildId, why: &str);
}

/// The most entries whose room a list kept between uses keeps (the
/// inbox between flushes, the outputs' room between them): a burst's is
/// let go.
const KEPT_ROOM: usize = 64;

/// One remote server's client, while the bridge has it "running".
pub struct RemoteRun {
    name: String,
    child: ChildId,
    ca_file: Option<String>,
    machine: Mutex<Upstream>,
    /// Messages queued under the bridge's lock, for [`RemoteRun::flush`].
    inbox: Mutex<Vec<(String, Outline)>>,
    /// Room for the upstream's outputs, kept between them.
    room: Mutex<Vec<UpstreamOutput>>,
    carrier: Box<dyn Carrier>,
    /// How to cut each exchange under way, for one that is aborted.
    active: Mutex<IdMap<ExchangeId, Cut>>,
    closed: AtomicBool,
    parent: Weak<dyn Parent>,
    /// Where a request that needs credentials gets a token.
    credentials: Arc<dyn Credentials>,
    /// When the upstream is next to be woken, if it asked.
    alarm: Alarm,
}

/// One HTTP exchange to make.
pub struct Job {
    pub id: ExchangeId,
    pub request: Outgoing,
    /// An event stream that lasts the session.
    pub streaming: bool,
    /// When the carrier cuts it, wherever it is, if it has one.
    pub deadline: Option<Instant>,
}

impl Job {
    /// The most of its response to read: an event stream that lasts the
    /// session is bounded per event, by the core.
    pub fn max_body(&self) -> usize {
        if self.streaming {
            usize::MAX
        } else {
            MAX_ANSWER
        }
    }
}

/// What ends a carrier's exchanges under way, from any thread: kept for
/// a carrier's whole life (or its connection's), shared by each exchange
/// it makes, so that starting one allocates nothing.
pub trait Cutter: Send + Sync {
    /// Ends exchange `id`, if it is still the one under way.
    fn cut(&self, id: ExchangeId);
}

/// How to end one exchange under way.
pub type Cut = Arc<dyn Cutter>;

/// Makes a remote server's HTTP exchanges: at most [`MAX_WORKERS`] at
/// once, each connection kept for the next one and ending after
/// [`WORKER_IDLE`] with nothing to do.
pub trait Carrier: Send + Sync {
    /// Makes `job`'s exchange for `run`: on a kept connection, or a new
    /// one; told to `run` as [`RemoteRun::started`], [`RemoteRun::feed`],
    /// each try settled by [`RemoteRun::settle`].
    fn carry(&self, run: &Arc<RemoteRun>, job: Job);
    /// The run is over: idle workers and connections end.
    fn close(&self);
}

/// Makes a carrier for each remote server's run.
pub type Carriers = Arc<dyn Fn() -> Box<dyn Carrier> + Send + Sync>;

/// Where remote servers' clients get their tokens: one for all of them,
/// kept by the command line (OAuth logins, stored and refreshed).
pub trait Credentials: Send + Sync {
    /// The token to send to `server` now, if there is one (refreshed
    /// first when about to expire). Asked before each batch of messages,
    /// so a login made elsewhere is taken up without a restart.
    fn current(&self, server: &str) -> Option<String>;
    /// `server` refused `refused` (or wanted one: `None`), saying
    /// `challenge` (its `WWW-Authenticate`); `step_up`: a 403 asking for
    /// more scope. A new token, or why there is none (an error its clients
    /// read).
    fn renew(
        &self,
        server: &str,
        refused: Option<&str>,
        challenge: Option<&str>,
        step_up: bool,
    ) -> Result<String, NoToken>;
    /// Begins a login to `server` for a user elsewhere (the dashboard's
    /// button): the authorization page to open, once known; the login
    /// then finishes on its own when the browser comes back. Why not, if
    /// it cannot begin.
    fn begin_login(&self, server: &str) -> Result<String, NotBegun> {
        Err(NoToken::NeedsLogin(server.to_owned()).into())
    }
    /// How many times `server`'s token was refreshed since start-up (its
    /// figure in `/metrics` and `/health/deep`).
    fn refreshes(&self, _server: &str) -> u64 {
        0
    }
}

/// No credentials kept: a server that wants one is told to log in.
pub struct NoCredentials;

impl Credentials for NoCredentials {
    fn current(&self, _: &str) -> Option<String> {
        None
    }

    fn renew(
        &self,
        server: &str,
        _: Option<&str>,
        _: Option<&str>,
        _: bool,
    ) -> Result<String, NoToken> {
        Err(NoToken::NeedsLogin(server.to_owned()))
    }
}

/// What failed, kept as it was: the same failure may answer again.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Why a server that wants a token gets none: what its clients read.
#[derive(Debug, thiserror::Error)]
pub enum NoToken {
    /// Nobody logged in, and no login is made here.
    #[error("the remote MCP server `{0}` needs a login: run `mcp-provider login {0}`")]
    NeedsLogin(String),
    /// The server asked for more scope (`scope`, if it said which) than
    /// its login has, and no login is made here.
    #[error(
        "the remote MCP server `{server}` wants more scope than its login has ({}): run `mcp-provider login {server}`",
        .scope.as_deref().unwrap_or("not said")
    )]
    MoreScope {
        server: String,
        scope: Option<String>,
    },
    /// A login in a browser failed, now or a moment ago.
    #[error("the login to the remote MCP server `{server}` failed: {why}")]
    LoginFailed { server: String, why: Cause },
    #[error("no thread could be started to renew its token")]
    NoThread,
}

/// Why a login for a user elsewhere does not begin, or how it ended
/// before its authorization page was known.
#[derive(Debug, thiserror::Error)]
pub enum NotBegun {
    #[error("`{0}` is not a remote server of this bridge")]
    NotRemote(String),
    #[error(transparent)]
    NoToken(#[from] NoToken),
    #[error("a login to `{0}` is under way already")]
    UnderWay(String),
    /// The login failed before its authorization page was known.
    #[error(transparent)]
    Failed(Cause),
    #[error("the login to `{server}` found no authorization page within {} s", .waited.as_secs())]
    NoPage { server: String, waited: Duration },
    #[error("no thread could be started for the login")]
    NoThread,
}

impl RemoteRun {
    pub fn start(
        parent: Weak<dyn Parent>,
        child: ChildId,
        name: &str,
        remote: Remote,
        credentials: Arc<dyn Credentials>,
        carrier: Box<dyn Carrier>,
    ) -> Arc<RemoteRun> {
        Arc::new(RemoteRun {
            name: name.to_owned(),
            child,
            ca_file: remote.ca_file.clone(),
            machine: Mutex::new(Upstream::new(name, remote)),
            inbox: Mutex::default(),
            room: Mutex::default(),
            carrier,
            active: Mutex::default(),
            closed: AtomicBool::new(false),
            parent,
            credentials,
            alarm: Alarm::default(),
        })
    }

    fn machine(&self) -> MutexGuard<'_, Upstream> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message for the server and its outline, queued under the
    /// bridge's lock.
    pub fn queue(&self, line: String, outline: Outline) {
        self.inbox().push((line, outline));
    }

    fn inbox(&self) -> MutexGuard<'_, Vec<(String, Outline)>> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends what was queued, in order (the bridge's lock let go), with
    /// the current token.
    pub fn flush(self: &Arc<Self>) {
        let token = self.credentials.current(&self.name);
        let outputs = {
            let mut machine = self.machine();
            if machine.bearer() != token.as_deref() {
                machine.set_bearer(token);
            }
            let mut lines = std::mem::take(&mut *self.inbox());
            let now = Instant::now();
            for (line, outline) in lines.drain(..) {
                machine.send_outlined(line, outline, now);
            }
            // The emptied list goes back for the next lines, room kept,
            // unless others were queued meanwhile or a burst made it large.
            let mut inbox = self.inbox();
            if inbox.is_empty() && lines.capacity() <= KEPT_ROOM {
                *inbox = lines;
            }
            drop(inbox);
            self.drained(&mut machine)
        };
        self.act(outputs);
    }

    /// Ends the run: the session ended with the server, every exchange
    /// cut, and the bridge told the "child" exited.
    pub fn close(self: &Arc<Self>) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let outputs = {
            let mut machine = self.machine();
            machine.close();
            self.drained(&mut machine)
        };
        self.act(outputs);
        self.alarm.off();
        self.carrier.close();
        self.ended("");
    }

    /// Tells the bridge the run is over.
    fn ended(&self, why: &str) {
        if let Some(parent) = self.parent.upgrade() {
            parent.remote_ended(self.child, why);
        }
    }

    /// What the upstream output (under its lock), in the room the last
    /// outputs left.
    fn drained(&self, machine: &mut Upstream) -> Vec<UpstreamOutput> {
        let mut outputs = std::mem::take(&mut *self.room());
        outputs.extend(std::iter::from_fn(|| machine.poll_output()));
        outputs
    }

    fn room(&self) -> MutexGuard<'_, Vec<UpstreamOutput>> {
        self.room.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out what the upstream asked; the list's room is kept for
    /// the next outputs (a burst's is let go).
    fn act(self: &Arc<Self>, mut outputs: Vec<UpstreamOutput>) {
        let mut lines = Few::default();
        for output in outputs.drain(..) {
            match output {
                UpstreamOutput::Send {
                    id,
                    request,
                    streaming,
                } => self.carrier.carry(
                    self,
                    Job {
                        id,
                        request,
                        streaming,
                        deadline: self
                            .is_closed()
                            .then(|| later(Instant::now(), CLOSING_TIMEOUT)),
                    },
                ),
                UpstreamOutput::Abort(id) => {
                    let cut = self.active().remove(&id);
                    if let Some(cut) = cut {
                        cut.cut(id);
                    }
                }
                UpstreamOutput::Line(line) => lines.push((line, None)),
                UpstreamOutput::Answer(line, placed) => lines.push((line, Some(placed))),
                UpstreamOutput::Sessionless => {
                    self.deliver(std::mem::take(&mut lines));
                    self.tell_bridge(|b, child, now| b.handle_child_sessionless(child, now));
                }
                UpstreamOutput::Status(status) => {
                    self.deliver(std::mem::take(&mut lines));
                    self.tell_bridge(|b, child, now| b.handle_remote_status(child, status, now));
                }
                UpstreamOutput::Gone(why) => {
                    tracing::warn!(server = %self.name, "the remote MCP server's session ended: {why}");
                    if !self.closed.swap(true, Ordering::SeqCst) {
                        self.deliver(std::mem::take(&mut lines));
                        self.carrier.close();
                        self.cut_all();
                        self.ended(&why);
                        return;
                    }
                }
                UpstreamOutput::Unauthorized { challenge, step_up } => {
                    self.deliver(std::mem::take(&mut lines));
                    self.renew(challenge, step_up);
                }
                UpstreamOutput::WakeAt(at) => self.wake_at(at),
            }
        }
        self.deliver(lines);
        if outputs.capacity() <= KEPT_ROOM {
            *self.room() = outputs;
        }
    }

    /// Has the upstream woken at `at`, on a thread that keeps the time
    /// while anything is due (started unless one runs already).
    fn wake_at(self: &Arc<Self>, at: Instant) {
        if !self.alarm.set(at) {
            return;
        }
        let run = self.clone();
        let keeping = std::thread::Builder::new()
            .name("mcp-remote-alarm".into())
            .spawn(move || {
                while let Some(now) = run.alarm.wait() {
                    run.woken(now);
                }
            });
        if let Err(e) = keeping {
            // The wait is skipped rather than the call left waiting.
            tracing::warn!(server = %self.name, "no thread to wait for a remote server's retry: {e}");
            self.alarm.not_kept();
            self.woken(at);
        }
    }

    /// The time the upstream asked to be woken at came.
    fn woken(self: &Arc<Self>, now: Instant) {
        let outputs = {
            let mut machine = self.machine();
            machine.handle_timeout(now);
            self.drained(&mut machine)
        };
        self.act(outputs);
    }

    /// Gets a new token for a request the server refused, on a thread of
    /// its own (a refresh is a request to the authorization server, a
    /// login waits for a browser: neither may hold up a runtime's
    /// reactor), then hands it to the upstream, which held what waits
    /// for it.
    fn renew(self: &Arc<Self>, challenge: Option<String>, step_up: bool) {
        let refused = self.machine().bearer().map(str::to_owned);
        let run = self.clone();
        let renewing = std::thread::Builder::new()
            .name("mcp-remote-token".into())
            .spawn(move || {
                let token = run.credentials.renew(
                    &run.name,
                    refused.as_deref(),
                    challenge.as_deref(),
                    step_up,
                );
                run.take_token(token);
            });
        if renewing.is_err() {
            self.take_token(Err(NoToken::NoThread));
        }
    }

    fn take_token(self: &Arc<Self>, token: Result<String, NoToken>) {
        let outputs = {
            let mut machine = self.machine();
            machine.handle_token(token.map_err(|why| why.to_string()), Instant::now());
            self.drained(&mut machine)
        };
        self.act(outputs);
    }

    /// Tells the bridge something of this run's child.
    fn tell_bridge(&self, f: impl FnOnce(&mut Bridge, ChildId, Instant)) {
        if let Some(parent) = self.parent.upgrade() {
            let child = self.child;
            let mut f = Some(f);
            parent.with_bridge(&mut |b, now| {
                if let Some(f) = f.take() {
                    f(b, child, now);
                }
            });
        }
    }

    /// The server's messages, to the bridge as the child's lines (with
    /// where an answer's parts stand, when the upstream read it).
    fn deliver(&self, lines: Few<(String, Option<Placed>)>) {
        if !lines.is_empty() {
            self.tell_bridge(|b, child, now| {
                for (text, placed) in &lines {
                    let answer = placed.as_ref();
                    b.handle_child_line(child, Line { text, answer }, now);
                }
            });
        }
    }

    fn active(&self) -> MutexGuard<'_, IdMap<ExchangeId, Cut>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cut_all(&self) {
        let cuts: Vec<(ExchangeId, Cut)> = self.active().drain().collect();
        for (id, cut) in cuts {
            cut.cut(id);
        }
    }

    /// The private CA the server's certificate is checked against.
    pub fn ca_file(&self) -> Option<&str> {
        self.ca_file.as_deref()
    }

    /// Whether the run is over (no new exchange will come).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// An exchange is under way: `cut` ends it if the upstream aborts it.
    /// False, and nothing to carry, if the upstream no longer wants it (it
    /// was aborted while it waited for a worker: its call was cancelled).
    /// Looked at and noted under the upstream's lock, so an abort comes
    /// either before (and is seen here) or after (and finds the cut).
    #[must_use]
    pub fn started(&self, id: ExchangeId, cut: Cut) -> bool {
        let machine = self.machine();
        if !machine.wants(id) {
            return false;
        }
        self.active().insert(id, cut);
        drop(machine);
        true
    }

    /// A try of exchange `id` is over with `result` (whether its
    /// connection may carry another request, or why not and how many
    /// bytes were read), on a `fresh` connection or a kept one: `conn` is
    /// kept for the next exchange or dropped, and a failure told to the
    /// upstream. Whether to try once more, on a new connection (the
    /// server had closed the kept one before reading anything).
    pub fn settle<C>(
        self: &Arc<Self>,
        id: ExchangeId,
        result: Result<bool, (Failed, usize)>,
        fresh: bool,
        conn: &mut Option<C>,
    ) -> bool {
        let aborted = self.active().remove(&id).is_none();
        match result {
            Ok(true) if !aborted => return false,
            Err((_, 0)) if !fresh && !aborted => {
                *conn = None;
                return true;
            }
            Err((e, _)) if !aborted => self.failed(id, &e, true),
            _ => {}
        }
        *conn = None;
        false
    }

    /// Pieces of a response, to the upstream; false once the exchange is
    /// no longer wanted.
    pub fn feed(self: &Arc<Self>, id: ExchangeId, events: conn::Events<'_>) -> bool {
        let outputs = {
            let mut machine = self.machine();
            let now = Instant::now();
            for event in events {
                match event {
                    ResponseEvent::Head(head) => machine.handle_head(id, &head, now),
                    ResponseEvent::Data(data) => machine.handle_data(id, &data),
                    ResponseEvent::End => machine.handle_end(id, now),
                }
            }
            self.drained(&mut machine)
        };
        self.act(outputs);
        self.active().contains_key(&id)
    }

    /// The dial for exchange `id`, cuttable since [`RemoteRun::started`],
    /// failed: told to the upstream unless the exchange was aborted
    /// meanwhile.
    pub fn dial_failed(self: &Arc<Self>, id: ExchangeId, e: &Failed) {
        if self.active().remove(&id).is_some() {
            self.failed(id, e, false);
        }
    }

    /// An exchange failed; `dialed`: whether a connection was made at all.
    pub fn failed(self: &Arc<Self>, id: ExchangeId, e: &Failed, dialed: bool) {
        let outputs = {
            let mut machine = self.machine();
            machine.handle_failed(id, &e.to_string(), dialed, Instant::now());
            self.drained(&mut machine)
        };
        self.act(outputs);
    }
}
