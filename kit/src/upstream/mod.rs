//! A remote MCP server run as the bridge's child: the core's [`Upstream`]
//! behind a lock of its own, its HTTP exchanges carried by worker threads
//! (each keeps one connection alive for the next exchange), whatever the
//! runtime — remote servers are few, like children.
//!
//! The bridge hands it lines under the bridge's lock ([`RemoteRun::queue`]);
//! they go to the upstream once that lock is let go ([`RemoteRun::flush`]),
//! in the order queued. What the server sends back reaches the bridge as
//! the child's lines; the upstream's end as the child's exit. The
//! upstream's lock is never held while the bridge's is taken.

pub mod conn;

use std::collections::{HashMap, VecDeque};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use mcp_provider_core::bridge::ChildId;
use mcp_provider_core::gateway::Bridge;
use mcp_provider_core::http::{Outgoing, ResponseEvent};
use mcp_provider_core::upstream::{ExchangeId, Remote, Upstream, UpstreamOutput};

use crate::bridge::Bridged;
use conn::{Conn, Failed};

/// Exchanges carried at once; more wait for a worker.
const MAX_WORKERS: usize = 64;
/// A worker with nothing to do this long ends, and its connection with it
/// (shorter than the bridge's health pings, so an idle server keeps only
/// its event stream's worker).
const WORKER_IDLE: Duration = Duration::from_secs(5);
/// A worker's stack: it parses HTTP and runs TLS, nothing deep.
const WORKER_STACK: usize = 256 * 1024;
/// The most of a response to a post read (a JSON answer is bounded again,
/// tighter, by the core).
const MAX_ANSWER: usize = 64 << 20;

/// One remote server's client, while the bridge has it "running".
pub struct RemoteRun {
    name: String,
    child: ChildId,
    ca_file: Option<String>,
    machine: Mutex<Upstream>,
    /// Lines queued under the bridge's lock, for [`RemoteRun::flush`].
    inbox: Mutex<Vec<String>>,
    work: (Mutex<Work>, Condvar),
    /// The sockets of exchanges under way, to cut one that is aborted.
    active: Mutex<HashMap<ExchangeId, Arc<TcpStream>>>,
    closed: AtomicBool,
    bridged: Weak<Bridged>,
    /// Where a request that needs credentials gets a token.
    credentials: Arc<dyn Credentials>,
}

#[derive(Default)]
struct Work {
    jobs: VecDeque<Job>,
    workers: usize,
    idle: usize,
}

struct Job {
    id: ExchangeId,
    request: Outgoing,
    streaming: bool,
}

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
    ) -> Result<String, String>;
    /// Begins a login to `server` for a user elsewhere (the dashboard's
    /// button): the authorization page to open, once known; the login
    /// then finishes on its own when the browser comes back. Why not, if
    /// it cannot begin.
    fn begin_login(&self, server: &str) -> Result<String, String> {
        Err(needs_login(server))
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
    ) -> Result<String, String> {
        Err(needs_login(server))
    }
}

/// Why a server that wants credentials gets none: nobody logged in.
pub fn needs_login(name: &str) -> String {
    format!("the remote MCP server `{name}` needs a login: run `mcp-provider login {name}`")
}

impl RemoteRun {
    pub fn start(
        bridged: &Arc<Bridged>,
        child: ChildId,
        name: &str,
        remote: Remote,
        credentials: Arc<dyn Credentials>,
    ) -> Arc<RemoteRun> {
        Arc::new(RemoteRun {
            name: name.to_owned(),
            child,
            ca_file: remote.ca_file.clone(),
            machine: Mutex::new(Upstream::new(name, remote)),
            inbox: Mutex::default(),
            work: (Mutex::default(), Condvar::new()),
            active: Mutex::default(),
            closed: AtomicBool::new(false),
            bridged: Arc::downgrade(bridged),
            credentials,
        })
    }

    fn machine(&self) -> MutexGuard<'_, Upstream> {
        self.machine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A line for the server, queued under the bridge's lock.
    pub fn queue(&self, line: String) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
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
            let lines = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()));
            let now = Instant::now();
            for line in lines {
                machine.send(line, now);
            }
            drain(&mut machine)
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
            drain(&mut machine)
        };
        self.act(outputs);
        let (_, bell) = &self.work;
        bell.notify_all();
        self.ended("");
    }

    /// Tells the bridge the run is over.
    fn ended(&self, why: &str) {
        if let Some(bridged) = self.bridged.upgrade() {
            bridged.remote_ended(self.child, why);
        }
    }

    /// Carries out what the upstream asked.
    fn act(self: &Arc<Self>, outputs: Vec<UpstreamOutput>) {
        let mut lines = Vec::new();
        for output in outputs {
            match output {
                UpstreamOutput::Send {
                    id,
                    request,
                    streaming,
                } => self.push_job(Job {
                    id,
                    request,
                    streaming,
                }),
                UpstreamOutput::Abort(id) => {
                    if let Some(socket) = self.active().remove(&id) {
                        Conn::cut(&socket);
                    }
                }
                UpstreamOutput::Line(line) => lines.push(line),
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
                        let (_, bell) = &self.work;
                        bell.notify_all();
                        self.cut_all();
                        self.ended(&why);
                        return;
                    }
                }
                UpstreamOutput::Unauthorized { challenge, step_up } => {
                    let refused = self.machine().bearer().map(str::to_owned);
                    let token = self.credentials.renew(
                        &self.name,
                        refused.as_deref(),
                        challenge.as_deref(),
                        step_up,
                    );
                    let outputs = {
                        let mut machine = self.machine();
                        machine.handle_token(token, Instant::now());
                        drain(&mut machine)
                    };
                    self.deliver(std::mem::take(&mut lines));
                    self.act(outputs);
                }
            }
        }
        self.deliver(lines);
    }

    /// Tells the bridge something of this run's child.
    fn tell_bridge(&self, f: impl FnOnce(&mut Bridge, ChildId, Instant)) {
        if let Some(bridged) = self.bridged.upgrade() {
            let child = self.child;
            bridged.with(|b, now| f(b, child, now));
        }
    }

    /// The server's messages, to the bridge as the child's lines.
    fn deliver(&self, lines: Vec<String>) {
        if !lines.is_empty() {
            self.tell_bridge(|b, child, now| {
                for line in &lines {
                    b.handle_child_line(child, line, now);
                }
            });
        }
    }

    fn active(&self) -> MutexGuard<'_, HashMap<ExchangeId, Arc<TcpStream>>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cut_all(&self) {
        for (_, socket) in self.active().drain() {
            Conn::cut(&socket);
        }
    }

    fn push_job(self: &Arc<Self>, job: Job) {
        let (work, bell) = &self.work;
        let mut work = work.lock().unwrap_or_else(|e| e.into_inner());
        work.jobs.push_back(job);
        if work.idle > 0 {
            bell.notify_one();
        } else if work.workers < MAX_WORKERS {
            work.workers += 1;
            let run = self.clone();
            let started = std::thread::Builder::new()
                .name("mcp-remote".into())
                .stack_size(WORKER_STACK)
                .spawn(move || run.work());
            if started.is_err() {
                work.workers -= 1;
                tracing::error!(server = %self.name, "no thread could be started for the remote MCP server");
            }
        }
    }

    /// A worker: takes exchanges until there are none for a while, keeping
    /// its connection between them.
    fn work(self: Arc<Self>) {
        let mut conn: Option<Conn> = None;
        while let Some(job) = self.next_job() {
            self.carry(job, &mut conn);
        }
    }

    fn next_job(&self) -> Option<Job> {
        let (work, bell) = &self.work;
        let mut work = work.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.closed.load(Ordering::SeqCst) && work.jobs.is_empty() {
                work.workers -= 1;
                return None;
            }
            if let Some(job) = work.jobs.pop_front() {
                return Some(job);
            }
            work.idle += 1;
            let (guard, waited) = bell
                .wait_timeout(work, WORKER_IDLE)
                .unwrap_or_else(|e| e.into_inner());
            work = guard;
            work.idle -= 1;
            if waited.timed_out() && work.jobs.is_empty() {
                work.workers -= 1;
                return None;
            }
        }
    }

    /// One exchange: on the kept connection if it still serves (once more
    /// on a new one if the server had closed it), else on a new one.
    fn carry(self: &Arc<Self>, job: Job, conn: &mut Option<Conn>) {
        if conn.as_ref().is_some_and(|c| !c.serves(&job.request.url)) {
            *conn = None;
        }
        for _attempt in 0..2 {
            let fresh = conn.is_none();
            if fresh {
                match Conn::dial(&job.request.url, self.ca_file.as_deref()) {
                    Ok(dialed) => *conn = Some(dialed),
                    Err(e) => return self.failed(job.id, &e, false),
                }
            }
            let Some(open) = conn.as_mut() else {
                return;
            };
            self.active().insert(job.id, open.cutter());
            // An event stream that lasts the session is bounded per event,
            // by the core.
            let max = if job.streaming {
                usize::MAX
            } else {
                MAX_ANSWER
            };
            let result = open.exchange(&job.request, max, |events| self.feed(job.id, events));
            let aborted = self.active().remove(&job.id).is_none();
            match result {
                Ok(reusable) => {
                    if !reusable || aborted {
                        *conn = None;
                    }
                    return;
                }
                Err((_, 0)) if !fresh && !aborted => {
                    // The server had closed the kept connection.
                    *conn = None;
                }
                Err((e, _)) => {
                    *conn = None;
                    if !aborted {
                        self.failed(job.id, &e, true);
                    }
                    return;
                }
            }
        }
    }

    /// Pieces of a response, to the upstream; false once the exchange is
    /// no longer wanted.
    fn feed(self: &Arc<Self>, id: ExchangeId, events: Vec<ResponseEvent>) -> bool {
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
            drain(&mut machine)
        };
        self.act(outputs);
        self.active().contains_key(&id)
    }

    fn failed(self: &Arc<Self>, id: ExchangeId, e: &Failed, dialed: bool) {
        let outputs = {
            let mut machine = self.machine();
            machine.handle_failed(id, &e.to_string(), dialed, Instant::now());
            drain(&mut machine)
        };
        self.act(outputs);
    }
}

fn drain(machine: &mut Upstream) -> Vec<UpstreamOutput> {
    std::iter::from_fn(|| machine.poll_output()).collect()
}
