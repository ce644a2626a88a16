//! The smol driver: sockets, tasks and timers around the core's
//! `Provider`. No protocol logic lives here: bytes go in, outputs come out
//! and are carried to the connection they name.

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use bytes::BytesMut;
use mcp_provider_cli::dial::link_request;
use mcp_provider_cli::ConnLimits;
use mcp_provider_core::http::{websocket_accept, ServerConn};
use mcp_provider_core::switchboard::Switchboard;
use mcp_provider_core::{too_many_connections, Config, ConnId, Output, Provider};
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt;

/// A connection's mailbox: the provider's outputs for it, in order.
type Mailbox = Receiver<Output>;

type Core = Switchboard<Sender<Output>>;

fn post(mailbox: &Sender<Output>, output: Output) {
    let _ = mailbox.try_send(output);
}

/// The provider shared by every task.
#[derive(Clone)]
pub struct Shared {
    core: Arc<Mutex<Core>>,
    timer: Sender<()>,
    next_conn: Arc<AtomicU64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug; keep serving regardless.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection id with its mailbox.
    pub fn connect(&self) -> (ConnId, Mailbox) {
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = channel::unbounded();
        self.lock().attach(id, tx);
        (id, rx)
    }

    /// Runs `f` on the provider, then carries out everything it output.
    pub fn with<R>(&self, f: impl FnOnce(&mut Provider, Instant) -> R) -> R {
        let (result, rearm) = self.lock().with(Instant::now(), f, post);
        if rearm {
            let _ = self.timer.try_send(());
        }
        result
    }

    /// A connection ended: the provider is told, its mailbox dropped.
    pub fn disconnect(&self, id: ConnId) {
        if self.lock().detach(id, Instant::now(), post) {
            let _ = self.timer.try_send(());
        }
    }
}

/// Starts serving on `listeners`; the tasks run until the process ends.
pub fn serve(
    config: Config,
    listeners: Vec<StdListener>,
    limits: ConnLimits,
) -> std::io::Result<Shared> {
    let (timer_tx, timer_rx) = channel::bounded(1);
    let provider = Provider::new(config, Instant::now(), SystemTime::now());
    let shared = Shared {
        core: Arc::new(Mutex::new(Switchboard::new(provider))),
        timer: timer_tx,
        next_conn: Arc::new(AtomicU64::new(1)),
    };
    smol::spawn(timer_task(shared.clone(), timer_rx)).detach();
    let open = Arc::new(AtomicUsize::new(0));
    for listener in listeners {
        let listener = TcpListener::try_from(listener)?;
        smol::spawn(accept_loop(shared.clone(), listener, limits, open.clone())).detach();
    }
    Ok(shared)
}

async fn accept_loop(
    shared: Shared,
    listener: TcpListener,
    limits: ConnLimits,
    open: Arc<AtomicUsize>,
) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                if open.load(Ordering::Relaxed) >= limits.max_connections {
                    smol::spawn(async move {
                        let _ = stream.write_all(&too_many_connections()).await;
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                        // Read what the client sent, briefly, so closing
                        // does not reset the connection before it reads
                        // the answer.
                        let mut sink = [0u8; 4096];
                        let _ = stream
                            .read(&mut sink)
                            .or(async {
                                smol::Timer::after(Duration::from_secs(1)).await;
                                Ok(0)
                            })
                            .await;
                    })
                    .detach();
                    continue;
                }
                let _ = stream.set_nodelay(true);
                open.fetch_add(1, Ordering::Relaxed);
                let (shared, open) = (shared.clone(), open.clone());
                smol::spawn(async move {
                    connection(shared, stream, limits).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                smol::Timer::after(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Sleeps until the provider's next deadline, or until woken because an
/// earlier one was set.
async fn timer_task(shared: Shared, wake: Receiver<()>) {
    loop {
        let next = shared.lock().armed();
        let woken = async {
            let _ = wake.recv().await;
            false
        };
        let fired = async {
            match next {
                Some(at) => {
                    smol::Timer::at(at).await;
                    true
                }
                None => std::future::pending().await,
            }
        };
        if woken.or(fired).await {
            shared.lock().disarm();
            shared.with(|p, now| p.handle_timeout(now));
        }
    }
}

enum Event {
    Read(std::io::Result<usize>),
    Mail(Option<Output>),
    /// An idle connection sent no whole request in time.
    TimedOut,
}

/// One editor connection: requests in, responses out; may become an agent
/// link by WebSocket upgrade.
async fn connection(shared: Shared, mut stream: TcpStream, limits: ConnLimits) {
    let (id, mail) = shared.connect();
    let mut http = ServerConn::new(limits.http);
    let mut buf = vec![0u8; mcp_provider_cli::READ_BUFFER];
    let mut out = BytesMut::new();
    let mut idle_since = Instant::now();
    let upgrade = 'conn: loop {
        let deadline = http.is_idle().then(|| idle_since + limits.read_timeout);
        let event = async { Event::Read(stream.read(&mut buf).await) }
            .or(async { Event::Mail(mail.recv().await.ok()) })
            .or(async {
                match deadline {
                    Some(at) => {
                        smol::Timer::at(at).await;
                        Event::TimedOut
                    }
                    None => std::future::pending().await,
                }
            })
            .await;
        match event {
            Event::Read(Ok(0)) | Event::Read(Err(_)) | Event::Mail(None) | Event::TimedOut => {
                break None
            }
            Event::Read(Ok(n)) => http.handle_data(&buf[..n]),
            Event::Mail(Some(first)) => {
                let mut next = Some(first);
                while let Some(output) = next {
                    match output {
                        Output::Respond { response, .. } => {
                            http.encode_response(&response, &mut out)
                        }
                        Output::Data { data, .. } => http.encode_data(&data, &mut out),
                        Output::End { .. } => http.encode_end(&mut out),
                        Output::AcceptAgent { key, .. } => break 'conn Some(key),
                        Output::ToAgent { .. } | Output::CloseAgent { .. } => {}
                    }
                    next = mail.try_recv().ok();
                }
                if stream.write_all(&out).await.is_err() {
                    break None;
                }
                out.clear();
                if http.wants_close() {
                    break None;
                }
                if http.is_idle() {
                    idle_since = Instant::now();
                }
            }
        }
        let mut handled = false;
        loop {
            match http.poll_request() {
                Ok(Some(request)) => {
                    shared.with(|p, now| p.handle_request(id, request, now));
                    handled = true;
                }
                Ok(None) => break,
                Err(e) => {
                    shared.with(|p, _| p.handle_http_error(id, &e));
                    break;
                }
            }
        }
        if handled {
            // A request usually posted an invocation to an agent link's
            // task as well as a response head to this one: let the link
            // send it first, since the first chunk waits on the agent and
            // the head can go out while the agent works.
            smol::future::yield_now().await;
        }
    };
    if let Some(key) = upgrade {
        let leftover = http.take_upgrade_bytes();
        let head = websocket_accept(&derive_accept_key(key.as_bytes()));
        if stream.write_all(&head).await.is_ok() {
            let ws =
                WebSocketStream::from_partially_read(stream, leftover.to_vec(), Role::Server, None)
                    .await;
            agent_link(&shared, id, ws, mail).await;
        }
    } else {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    shared.disconnect(id);
}

/// An upgraded agent link: frames in to the provider, mail out as frames.
/// Ends when either side closes.
async fn agent_link(shared: &Shared, id: ConnId, ws: WebSocketStream<TcpStream>, mail: Mailbox) {
    let (mut tx, mut rx) = ws.split();
    let reader = async {
        while let Some(Ok(frame)) = rx.next().await {
            match frame {
                Message::Text(text) => {
                    shared.with(|p, now| p.handle_agent_text(id, text.as_str(), now))
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let writer = async {
        while let Ok(output) = mail.recv().await {
            let open = match output {
                Output::ToAgent { text, .. } => tx.send(Message::text(text)).await.is_ok(),
                Output::CloseAgent { .. } => {
                    let _ = tx.close(None).await;
                    false
                }
                _ => true,
            };
            if !open {
                break;
            }
        }
    };
    reader.or(writer).await;
}

/// Opens a WebSocket to `url` with the bridge token.
pub async fn dial(url: &str, token: &str) -> Result<WebSocketStream<TcpStream>, String> {
    let (request, host, port) = link_request(url, token)?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (ws, _) = async_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))?;
    Ok(ws)
}

/// Dials out to an agent hub and serves that connection as an agent link,
/// reconnecting with backoff (0.1 s doubling up to 30 s) whenever it drops.
pub async fn dial_hub(shared: Shared, url: String, token: String) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match dial(&url, &token).await {
            Ok(ws) => {
                tracing::info!("agent hub {url} connected");
                backoff = Duration::from_millis(100);
                let (id, mail) = shared.connect();
                shared.with(|p, _| p.open_agent(id));
                agent_link(&shared, id, ws, mail).await;
                shared.disconnect(id);
                tracing::warn!("agent hub {url} disconnected");
            }
            Err(e) => tracing::warn!("agent hub: {e}"),
        }
        smol::Timer::after(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
