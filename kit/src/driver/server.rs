//! The server: the provider's timer, the accept loops, and each editor
//! connection's task (requests in, responses out; an upgrade becomes an
//! agent link). No protocol logic lives here: bytes go in, outputs come
//! out and are carried to the connection they name.

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_tungstenite::WebSocketStream;
use bytes::BytesMut;
use futures_lite::future::{poll_once, FutureExt};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use mcp_provider_core::http::{HttpError, Request, Response, ServerConn};
use mcp_provider_core::stream::Answering;
use mcp_provider_core::{too_many_connections, Config, Provider};

use super::bell::{BellWaiter, TaskBell};
use super::clock::{sleep, Timer};
use super::link::{self, Backpressure, Shared};
use super::{until, Executor};
use crate::agent::dial::{
    accept_head, handshake_failed, link_request, silence_limit, DialError, HUB_STALL, LINK_BACKOFF,
};
use crate::serve::accept;
use crate::serve::admission::{self, Admission, Admitted, Reclaim, REFUSALS_HELD, REFUSAL_HOLD};
use crate::serve::audit::AuditSink;
use crate::serve::hub::{Hub, Peer};
use crate::serve::mailbox::Bell;
use crate::ConnLimits;
use mcp_provider_core::Backoff;

/// Requests an embedding application answers itself: each request is
/// offered to it before the provider, and those it answers (`Some`) are
/// its own.
pub type AppRoutes = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// Starts the provider and its timer.
pub fn start<E: Executor>(config: Config, audit: Option<AuditSink>) -> Shared {
    let (timer_bell, timer_waiter) = TaskBell::pair();
    let provider = Provider::new(config, Instant::now(), SystemTime::now());
    let shared = Hub::new(provider, audit, move || timer_bell.ring());
    E::spawn(timer_task(shared.clone(), timer_waiter));
    shared
}

/// Starts serving on `listeners`; the tasks run until the process ends.
pub fn serve<E: Executor>(
    shared: &Shared,
    listeners: Vec<TcpListener>,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let gate = Gate::new(limits.max_connections);
    for listener in listeners {
        let listener = E::listen(listener)?;
        E::spawn(accept_loop::<E>(
            shared.clone(),
            listener,
            limits,
            gate.clone(),
            None,
        ));
    }
    Ok(())
}

/// Accepts connections for as long as the process runs, each served in a
/// task of its own once `gate` admits it; `app` answers the requests it
/// claims.
pub async fn accept_loop<E: Executor>(
    shared: Shared,
    listener: E::TcpListener,
    limits: ConnLimits,
    gate: Gate,
    app: Option<AppRoutes>,
) {
    // The connection cap is kept under the file limit, so a failed accept
    // is rare.
    let mut failures = accept::Failures::default();
    loop {
        let stream = accept::next(|| E::accept(&listener), sleep, &mut failures).await;
        let Some((stream, mut admitted)) = gate.admit::<E>(stream) else {
            continue;
        };
        let (shared, app) = (shared.clone(), app.clone());
        E::spawn(async move {
            connection::<E>(shared, stream, limits, app.as_ref(), &mut admitted).await;
        });
    }
}

/// The connection cap, and the refusals held open past it; clones share
/// both.
#[derive(Clone)]
pub struct Gate {
    open: Admission,
    refusals: Admission,
}

impl Gate {
    pub fn new(max_connections: usize) -> Self {
        Gate {
            open: Admission::new(max_connections),
            refusals: Admission::new(REFUSALS_HELD),
        }
    }

    /// Counts `stream` in (reclaiming an idle connection at the cap), or
    /// answers it 503 in a task of its own and returns `None` (past
    /// [`REFUSALS_HELD`], just closes it).
    pub fn admit<E: Executor>(&self, stream: E::Tcp) -> Option<(E::Tcp, Admitted)> {
        let now = Instant::now();
        if let Some(admitted) = self.open.admit(now) {
            return Some((stream, admitted));
        }
        if let Some(held) = self.refusals.admit(now) {
            E::spawn(async move {
                let _held = held;
                refuse::<E>(stream).await;
            });
        }
        None
    }
}

/// Answers a connection past the cap with 503, then reads what the client
/// sent, briefly, so closing does not reset the connection before it reads
/// the answer.
async fn refuse<E: Executor>(mut stream: E::Tcp) {
    let _ = stream.write_all(&too_many_connections()).await;
    let _ = stream.close().await;
    let mut sink = [0u8; 4096];
    let read = async {
        let _ = stream.read(&mut sink).await;
    };
    read.or(async {
        sleep(REFUSAL_HOLD).await;
    })
    .await;
}

/// Sleeps until the provider's next deadline, or until woken because an
/// earlier one was set.
async fn timer_task(shared: Shared, wake: BellWaiter) {
    loop {
        let next = shared.lock().armed();
        let woken = async {
            let _ = wake.recv().await;
            false
        };
        let fired = async {
            until(next).await;
            true
        };
        if woken.or(fired).await {
            shared.lock().disarm();
            shared.with(|p, now| p.handle_timeout(now));
        }
    }
}

/// A connection's idle deadline. A later deadline does not move the
/// timer: when the earlier one fires, the caller checks the deadline it
/// has now and waits again if it moved on.
struct IdleTimer {
    timer: Option<Timer>,
    armed: Option<Instant>,
}

impl IdleTimer {
    fn new() -> Self {
        IdleTimer {
            timer: None,
            armed: None,
        }
    }

    /// Makes sure the timer fires no later than `deadline`.
    fn arm(&mut self, deadline: Option<Instant>) {
        if let Some(at) = deadline.filter(|at| self.armed.is_none_or(|a| *at < a)) {
            self.timer = Some(Timer::at(at));
            self.armed = Some(at);
        }
    }

    /// Resolves when the armed time passes (never if none is armed).
    async fn fired(&mut self) {
        match &mut self.timer {
            Some(timer) => {
                timer.await;
            }
            None => std::future::pending().await,
        }
        self.timer = None;
        self.armed = None;
    }
}

enum Event {
    Read(std::io::Result<usize>),
    /// The mailbox was rung (`false`: it closed).
    Mail(bool),
    /// An idle connection sent no whole request in time.
    TimedOut,
    /// An idle connection was reclaimed for a new one, at the cap.
    Reclaimed,
}

/// Writes `bytes`, or fails once `limit` passes: a peer that stops reading
/// must not hold its connection (and what waits for it) forever. Most
/// writes complete at once; only one that has to wait gets a timer.
async fn write_within<E: Executor>(stream: &mut E::Tcp, bytes: &[u8], limit: Duration) -> bool {
    let mut write = std::pin::pin!(async { stream.write_all(bytes).await.is_ok() });
    if let Some(done) = poll_once(&mut write).await {
        return done;
    }
    write
        .or(async {
            sleep(limit).await;
            false
        })
        .await
}

/// One editor connection: requests in, responses out; may become an agent
/// link by WebSocket upgrade. The requests `app` claims are answered here,
/// in turn with the provider's. While it waits for its client, `open` may
/// be reclaimed for a new connection: then it ends.
pub async fn connection<E: Executor>(
    shared: Shared,
    mut stream: E::Tcp,
    limits: ConnLimits,
    app: Option<&AppRoutes>,
    open: &mut Admitted,
) {
    let (attached, mail, backlog) = shared.connect();
    let id = attached.id;
    let mut http = ServerConn::new(limits.http, Instant::now());
    let mut answering = Answering::default();
    let mut buf = vec![0u8; crate::READ_BUFFER];
    let mut out = BytesMut::new();
    let mut outputs = VecDeque::new();
    let mut eof = false;
    let mut idle = IdleTimer::new();
    let (reclaim_bell, reclaimed) = TaskBell::pair();
    let reclaim: Reclaim = Arc::new(move || reclaim_bell.ring());
    let upgrade = 'conn: loop {
        idle.arm(http.poll_timeout());
        // Everything encoded is written by now.
        if admission::waiting(&http) {
            open.idle(&reclaim, Instant::now());
        }
        // A connection whose pipeline is full is not read until the
        // response in progress ends; its peer then waits on TCP.
        let reading = !eof && http.wants_read();
        let event = async {
            match reading {
                true => Event::Read(stream.read(&mut buf).await),
                false => std::future::pending().await,
            }
        }
        .or(async { Event::Mail(mail.waiter().recv().await.is_ok()) })
        .or(async {
            idle.fired().await;
            Event::TimedOut
        })
        .or(async {
            let _ = reclaimed.recv().await;
            Event::Reclaimed
        })
        .await;
        match event {
            Event::Read(Ok(0)) => {
                // The peer shut its side: what it sent in full is still
                // answered, and handed on first, as blocking does.
                eof = true;
                http.handle_eof();
                shared.pump(id, || next_request(&mut http, app, &mut out));
                shared.peer_shut(id);
            }
            Event::TimedOut if http.poll_timeout().is_none_or(|at| at > Instant::now()) => {
                // The deadline moved on (or went) since the timer was armed.
            }
            Event::Read(Err(_)) | Event::Mail(false) | Event::TimedOut | Event::Reclaimed => {
                break None
            }
            Event::Read(Ok(n)) => {
                if !open.busy() {
                    // Reclaimed as the request came: it is for a
                    // connection that is closing.
                    break None;
                }
                http.handle_data(buf.get(..n).unwrap_or_default());
            }
            Event::Mail(true) => {
                mail.take(&mut outputs);
                let mut carried = 0;
                while let Some(output) = outputs.pop_front() {
                    carried += output.backlog_bytes();
                    if let Some(upgrade) = output.encode_http(&mut http, &mut answering, &mut out) {
                        break 'conn Some(upgrade);
                    }
                }
                if !write_within::<E>(&mut stream, &out, limits.read_timeout).await {
                    break None;
                }
                out.clear();
                http.handle_written(Instant::now());
                shared.written(id, &backlog, carried);
            }
        }
        let pumped = shared.pump(id, || next_request(&mut http, app, &mut out));
        if !out.is_empty() {
            // The application answered requests of its own.
            if !write_within::<E>(&mut stream, &out, limits.read_timeout).await {
                break None;
            }
            out.clear();
            http.handle_written(Instant::now());
        }
        if !pumped.handled {
            // Nothing handed on: an `Expect: 100-continue` may want its
            // interim answer.
            if let Some(interim) = http.poll_interim() {
                if !write_within::<E>(&mut stream, &interim, limits.read_timeout).await {
                    break None;
                }
            }
        } else if pumped.provider {
            // A request usually posted an invocation to an agent link's
            // task as well as a response head to this one: let the link
            // send it first, since the first chunk waits on the agent and
            // the head can go out while the agent works. (A bridged call's
            // exchange is another task's already, and this one has nothing
            // more to do until its answer comes: it waits anyway.)
            E::yield_now().await;
        }
        if http.wants_close() {
            break None;
        }
    };
    if let Some(upgrade) = upgrade {
        let leftover = http.take_upgrade_bytes();
        let head = accept_head(&upgrade);
        if write_within::<E>(&mut stream, &head, limits.read_timeout).await {
            let ws = link::accept(stream, leftover.to_vec(), limits.read_timeout).await;
            let peer = Peer::from(&upgrade);
            link::serve::<E, _>(&shared, id, ws, (mail, outputs), &backlog, peer).await;
        }
    } else {
        let _ = stream.close().await;
    }
    drop(attached);
}

/// The next request for the provider; those `app` claims before it are
/// answered into `out` on the way (a streamed answer ends at once, empty).
fn next_request(
    http: &mut ServerConn,
    app: Option<&AppRoutes>,
    out: &mut BytesMut,
) -> Result<Option<Request>, HttpError> {
    loop {
        let Some(request) = http.poll_request()? else {
            return Ok(None);
        };
        match app.and_then(|app| app(&request)) {
            Some(response) => {
                http.encode_response(&response, out);
                http.encode_end(out);
            }
            None => return Ok(Some(request)),
        }
    }
}

/// Opens a WebSocket to `url` with the bridge token, over what `wrap`
/// makes of the TCP stream; with it comes how long the peer may stay
/// silent (see [`silence_limit`]).
pub async fn dial<E: Executor, S: AsyncRead + AsyncWrite + Unpin>(
    url: &str,
    token: &str,
    wrap: impl FnOnce(E::Tcp) -> S,
) -> Result<(WebSocketStream<S>, Duration), DialError> {
    let (request, host, port) =
        link_request(url, token).map_err(|e| DialError::Final(e.to_string()))?;
    let tcp = E::connect(&host, port)
        .await
        .map_err(|e| DialError::Unreachable(format!("cannot connect to {url}: {e}")))?;
    let (ws, response) = async_tungstenite::client_async(request, wrap(tcp))
        .await
        .map_err(|e| handshake_failed(url, e))?;
    Ok((ws, silence_limit(&response)))
}

/// Dials out to an agent hub and serves that connection as an agent link,
/// reconnecting with [`Backoff`] whenever it drops.
pub async fn dial_hub<E: Executor>(shared: Shared, url: String, token: String) {
    let mut backoff = Backoff::new(LINK_BACKOFF);
    loop {
        let stall = |tcp| Backpressure::new(tcp, HUB_STALL);
        match dial::<E, _>(&url, &token, stall).await {
            // The hub is pinged by the provider, not the other way round:
            // its silence is no sign of anything.
            Ok((ws, _)) => {
                tracing::info!("agent hub {url} connected");
                backoff.reset();
                let (attached, mail, backlog) = shared.connect();
                let id = attached.id;
                shared.with(|p, _| p.open_agent(id, crate::AGENT_HUB));
                let mail = (mail, VecDeque::new());
                link::serve::<E, _>(&shared, id, ws, mail, &backlog, Peer::Agent).await;
                drop(attached);
                tracing::warn!("agent hub {url} disconnected");
            }
            Err(e) => tracing::warn!("agent hub: {}", e.message()),
        }
        sleep(backoff.next_wait()).await;
    }
}
