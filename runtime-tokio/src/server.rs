//! The tokio driver: sockets, tasks and timers around the core's
//! `Provider`. No protocol logic lives here: bytes go in, outputs come out
//! and are carried to the connection they name.

use std::collections::VecDeque;
use std::future::Future;
use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::WebSocketStream;
use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use mcp_provider_core::backlog::Backlog;
use mcp_provider_core::http::{HttpError, Request, Response, ServerConn};
use mcp_provider_core::stream::Answering;
use mcp_provider_core::{too_many_connections, Config, ConnId, Output, Provider};
use mcp_provider_kit::admission::{Admission, Admitted, REFUSALS_HELD, REFUSAL_HOLD};
use mcp_provider_kit::audit::AuditSink;
use mcp_provider_kit::dial::{accept_head, handshake_failed, link_request, Backoff, DialError};
use mcp_provider_kit::hub::{Hub, Peer};
use mcp_provider_kit::task_link::{self, Backpressure, HUB_STALL};
use mcp_provider_kit::ConnLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, sleep_until, timeout, timeout_at};

pub use mcp_provider_kit::task_link::{Mail, Shared};

/// A WebSocket over a tokio TCP stream.
pub type Ws = WebSocketStream<TokioAdapter<TcpStream>>;

/// Requests an embedding application answers itself: each request is
/// offered to it before the provider, and those it answers (`Some`) are
/// its own.
pub type AppRoutes = Arc<dyn Fn(&Request) -> Option<Response> + Send + Sync>;

/// Starts the provider and its timer on the current tokio runtime.
pub fn start(config: Config, audit: Option<AuditSink>) -> Shared {
    let (timer_tx, timer_rx) = async_channel::bounded(1);
    let provider = Provider::new(config, Instant::now(), SystemTime::now());
    let shared = Hub::new(provider, audit, move || {
        let _ = timer_tx.try_send(());
    });
    tokio::spawn(timer_task(shared.clone(), timer_rx));
    shared
}

/// Starts serving on `listeners`; the tasks run until the process ends.
pub fn serve(
    shared: &Shared,
    listeners: Vec<StdListener>,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let gate = Gate::new(limits.max_connections);
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        tokio::spawn(accept_loop(
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
pub async fn accept_loop(
    shared: Shared,
    listener: TcpListener,
    limits: ConnLimits,
    gate: Gate,
    app: Option<AppRoutes>,
) {
    let mut last_warning = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Some((stream, admitted)) = gate.admit(stream) else {
                    continue;
                };
                let (shared, app) = (shared.clone(), app.clone());
                tokio::spawn(async move {
                    let _open = admitted;
                    connection(shared, stream, limits, app.as_ref()).await;
                });
            }
            Err(e) => {
                // Out of files or memory: wait a little rather than spin.
                // The connection cap is kept under the file limit, so this
                // is rare; say it once a second at most.
                if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("accept failed: {e}");
                    last_warning = Some(Instant::now());
                }
                sleep(Duration::from_millis(50)).await;
            }
        }
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

    /// Counts `stream` in, or answers it 503 in a task of its own and
    /// returns `None` (past [`REFUSALS_HELD`], just closes it).
    pub fn admit(&self, stream: TcpStream) -> Option<(TcpStream, Admitted)> {
        if let Some(admitted) = self.open.admit() {
            return Some((stream, admitted));
        }
        if let Some(held) = self.refusals.admit() {
            tokio::spawn(async move {
                let _held = held;
                refuse(stream).await;
            });
        }
        None
    }
}

/// Answers a connection past the cap with 503, then reads what the client
/// sent, briefly, so closing does not reset the connection before it reads
/// the answer.
async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(&too_many_connections()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = timeout(REFUSAL_HOLD, stream.read(&mut sink)).await;
}

/// Sleeps until the provider's next deadline, or until woken because an
/// earlier one was set.
async fn timer_task(shared: Shared, wake: async_channel::Receiver<()>) {
    loop {
        let next = shared.lock().armed();
        let fired = match next {
            Some(at) => timeout_at(at.into(), wake.recv()).await.is_err(),
            None => {
                let _ = wake.recv().await;
                false
            }
        };
        if fired {
            shared.lock().disarm();
            shared.with(|p, now| p.handle_timeout(now));
        }
    }
}

enum Event {
    Read(std::io::Result<usize>),
    /// The mailbox was rung (`false`: it closed).
    Mail(bool),
    /// An idle connection sent no whole request in time.
    TimedOut,
}

/// Writes `bytes`, or fails once `limit` passes: a peer that stops reading
/// must not hold its connection (and what waits for it) forever.
async fn write_within(stream: &mut TcpStream, bytes: &[u8], limit: Duration) -> bool {
    matches!(timeout(limit, stream.write_all(bytes)).await, Ok(Ok(())))
}

/// One editor connection: requests in, responses out; may become an agent
/// link by WebSocket upgrade. The requests `app` claims are answered here,
/// in turn with the provider's.
pub async fn connection(
    shared: Shared,
    mut stream: TcpStream,
    limits: ConnLimits,
    app: Option<&AppRoutes>,
) {
    let _ = stream.set_nodelay(true);
    let (attached, mail, backlog) = shared.connect();
    let id = attached.id;
    let mut http = ServerConn::new(limits.http, Instant::now());
    let mut answering = Answering::default();
    let mut buf = vec![0u8; mcp_provider_kit::READ_BUFFER];
    let mut out = BytesMut::new();
    let mut outputs = VecDeque::new();
    let mut eof = false;
    // A later deadline does not move the timer: when the earlier one
    // fires, the loop checks the deadline it has now and waits again.
    let idle = sleep(Duration::ZERO);
    tokio::pin!(idle);
    let mut armed: Option<Instant> = None;
    let upgrade = 'conn: loop {
        if let Some(at) = http
            .poll_timeout()
            .filter(|at| armed.is_none_or(|a| *at < a))
        {
            idle.as_mut().reset(at.into());
            armed = Some(at);
        }
        // A connection whose pipeline is full is not read until the
        // response in progress ends; its peer then waits on TCP.
        let reading = !eof && http.wants_read();
        let event = tokio::select! {
            biased;
            read = stream.read(&mut buf), if reading => Event::Read(read),
            rung = mail.waiter().recv() => Event::Mail(rung.is_ok()),
            () = &mut idle, if armed.is_some() => {
                armed = None;
                Event::TimedOut
            }
        };
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
            Event::Read(Err(_)) | Event::Mail(false) | Event::TimedOut => break None,
            Event::Read(Ok(n)) => http.handle_data(buf.get(..n).unwrap_or_default()),
            Event::Mail(true) => {
                mail.take(&mut outputs);
                let mut carried = 0;
                while let Some(output) = outputs.pop_front() {
                    carried += output.backlog_bytes();
                    if let Some(upgrade) = output.encode_http(&mut http, &mut answering, &mut out) {
                        break 'conn Some(upgrade);
                    }
                }
                if !write_within(&mut stream, &out, limits.read_timeout).await {
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
            if !write_within(&mut stream, &out, limits.read_timeout).await {
                break None;
            }
            out.clear();
            http.handle_written(Instant::now());
        }
        if !pumped.handled {
            // Nothing handed on: an `Expect: 100-continue` may want its
            // interim answer.
            if let Some(interim) = http.poll_interim() {
                if !write_within(&mut stream, &interim, limits.read_timeout).await {
                    break None;
                }
            }
        } else {
            // A request usually posted an invocation to an agent link's
            // task as well as a response head to this one: let the link
            // send it first.
            tokio::task::yield_now().await;
        }
        if http.wants_close() {
            break None;
        }
    };
    if let Some(upgrade) = upgrade {
        let leftover = http.take_upgrade_bytes();
        let head = accept_head(&upgrade);
        if write_within(&mut stream, &head, limits.read_timeout).await {
            let stream = TokioAdapter::new(stream);
            let ws = task_link::accept(stream, leftover.to_vec(), limits.read_timeout).await;
            let peer = Peer::from(&upgrade);
            agent_link(&shared, id, ws, (mail, outputs), &backlog, peer).await;
        }
    } else {
        let _ = stream.shutdown().await;
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

/// tokio's ways to yield and sleep, for the kit's agent link.
struct Tokio;

impl task_link::Executor for Tokio {
    fn yield_now() -> impl Future<Output = ()> {
        tokio::task::yield_now()
    }

    fn sleep(wait: Duration) -> impl Future<Output = ()> {
        sleep(wait)
    }
}

/// Serves an upgraded agent link (or a bridge client's WebSocket) until
/// either side closes.
async fn agent_link(
    shared: &Shared,
    id: ConnId,
    ws: WebSocketStream<Backpressure<TokioAdapter<TcpStream>>>,
    mail: (Mail, VecDeque<Output>),
    backlog: &Backlog,
    peer: Peer,
) {
    task_link::serve::<Tokio, _>(shared, id, ws, mail, backlog, peer).await;
}

/// Opens a WebSocket to `url` with the bridge token.
pub async fn dial(url: &str, token: &str) -> Result<Ws, DialError> {
    dial_over(url, token, |tcp| tcp).await
}

/// Opens a WebSocket to `url` with the bridge token, over what `wrap`
/// makes of the TCP stream.
async fn dial_over<S: AsyncRead + AsyncWrite + Unpin>(
    url: &str,
    token: &str,
    wrap: impl FnOnce(TokioAdapter<TcpStream>) -> S,
) -> Result<WebSocketStream<S>, DialError> {
    let (request, host, port) = link_request(url, token).map_err(DialError::Final)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| DialError::Unreachable(format!("cannot connect to {url}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let (ws, _) = async_tungstenite::client_async(request, wrap(TokioAdapter::new(tcp)))
        .await
        .map_err(|e| handshake_failed(url, e))?;
    Ok(ws)
}

/// Dials out to an agent hub and serves that connection as an agent link,
/// reconnecting with [`Backoff`] whenever it drops.
pub async fn dial_hub(shared: Shared, url: String, token: String) {
    let mut backoff = Backoff::new();
    loop {
        let stall = |tcp| Backpressure::new(tcp, HUB_STALL);
        match dial_over(&url, &token, stall).await {
            Ok(ws) => {
                tracing::info!("agent hub {url} connected");
                backoff.reset();
                let (attached, mail, backlog) = shared.connect();
                let id = attached.id;
                shared.with(|p, _| p.open_agent(id, mcp_provider_kit::AGENT_HUB));
                let mail = (mail, VecDeque::new());
                agent_link(&shared, id, ws, mail, &backlog, Peer::Agent).await;
                drop(attached);
                tracing::warn!("agent hub {url} disconnected");
            }
            Err(e) => tracing::warn!("agent hub: {}", e.message()),
        }
        sleep_until((Instant::now() + backoff.next_wait()).into()).await;
    }
}
