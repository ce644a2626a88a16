//! The driver's shared steps on a test executor: smol's, as the smol
//! runtime has, with each editor connection and agent link an in-memory
//! [`Duplex`] whose bounded buffers stand for the sockets'. Every wait is
//! on an event, under [`within`]'s bound.

mod editor;
mod link;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::pin::Pin;
use std::process::{ChildStdout, Command};
use std::task::{Context, Poll};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_lite::future::FutureExt;
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_lite::StreamExt;
use mcp_provider_core::Config;
use serde_json::{json, Value};

use super::link::Shared;
use super::server::{self, Gate};
use super::{spawn_joined, Child, Executor};
use crate::agent::dial::link_request;
use crate::ConnLimits;

/// The driver on smol's global executor and timers; it has no sockets,
/// pipes or processes of its own: tests hand it [`Duplex`]es.
struct Test;

impl Executor for Test {
    type Tcp = Duplex;
    type TcpListener = Infallible;
    type Unix = Duplex;
    type UnixListener = Infallible;
    type PipeReader = piper::Reader;
    type PipeWriter = piper::Writer;
    type Stdout = futures_lite::io::Sink;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        smol::spawn(task).detach();
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        futures_lite::future::yield_now()
    }

    fn listen(_: TcpListener) -> io::Result<Infallible> {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn accept(listener: &Infallible) -> io::Result<Duplex> {
        match *listener {}
    }

    async fn connect(_: &str, _: u16) -> io::Result<Duplex> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn bind_unix(_: &Path) -> io::Result<Infallible> {
        Err(io::ErrorKind::Unsupported.into())
    }

    async fn accept_unix(listener: &Infallible) -> io::Result<Duplex> {
        match *listener {}
    }

    fn spawn_child(_: Command) -> io::Result<Child<Self>> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn pipe(_: ChildStdout) -> io::Result<piper::Reader> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn stdout() -> futures_lite::io::Sink {
        futures_lite::io::sink()
    }
}

/// One end of an in-memory connection: what it writes waits in a buffer
/// of its own until the other end reads it, and a writer finds the buffer
/// full as a socket's would be. Closing shuts the sending side; dropping
/// it is the connection gone, both ways.
struct Duplex {
    reader: piper::Reader,
    writer: piper::Writer,
}

/// A connection whose each direction holds `cap` bytes unread.
fn duplex(cap: usize) -> (Duplex, Duplex) {
    let (a_reader, b_writer) = piper::pipe(cap);
    let (b_reader, a_writer) = piper::pipe(cap);
    let a = Duplex {
        reader: a_reader,
        writer: a_writer,
    };
    let b = Duplex {
        reader: b_reader,
        writer: b_writer,
    };
    (a, b)
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_close(cx)
    }
}

/// The longest any test waits for one event.
const PATIENCE: Duration = Duration::from_secs(5);

/// Runs `test` to its end on this thread, failing it if it outlasts
/// [`PATIENCE`].
fn run<T>(test: impl Future<Output = T>) -> T {
    smol::block_on(within("the test", test))
}

/// `step`'s outcome, or a failure naming `what` once [`PATIENCE`] passed.
async fn within<T>(what: &str, step: impl Future<Output = T>) -> T {
    step.or(async {
        smol::Timer::after(PATIENCE).await;
        panic!("{what} did not happen within {PATIENCE:?}");
    })
    .await
}

/// Bytes an editor connection holds unread each way: small, so a reader
/// that stops fills it at once.
const EDITOR_BUFFER: usize = 16 * 1024;

/// Bytes an agent link holds unread each way: enough for what a test's
/// agent sends.
const LINK_BUFFER: usize = 1 << 20;

/// A provider the driver serves, with editor key `key`, bridge token
/// `bridge`, and model `m` once an agent registered it.
struct Served {
    shared: Shared,
    limits: ConnLimits,
    gate: Gate,
}

impl Served {
    fn new(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new(&["key"], "bridge");
        tweak(&mut config);
        let limits = ConnLimits {
            max_connections: 16,
            read_timeout: config.http.idle_timeout,
            http: config.http,
        };
        Served {
            shared: server::start::<Test>(config, None),
            limits,
            gate: Gate::new(limits.max_connections),
        }
    }

    /// A new connection, served by [`server::connection`] in a task of
    /// its own: the client's end, and what resolves once the task ended.
    fn connect(&self, buffer: usize) -> (Duplex, impl Future<Output = Option<()>>) {
        let (client, server) = duplex(buffer);
        let Some((stream, mut open)) = self.gate.admit::<Test>(server) else {
            panic!("a connection under the cap is admitted");
        };
        let (shared, limits) = (self.shared.clone(), self.limits);
        let ended = spawn_joined::<Test, _>(async move {
            server::connection::<Test>(shared, stream, limits, None, &mut open).await;
        });
        (client, ended)
    }

    fn editor(&self) -> Editor {
        Editor {
            conn: self.connect(EDITOR_BUFFER).0,
            read: Vec::new(),
        }
    }

    /// An agent linked by WebSocket upgrade and registered for model `m`.
    async fn agent(&self) -> Agent {
        let (conn, _) = self.connect(LINK_BUFFER);
        let (request, _, _) = match link_request("ws://127.0.0.1:8788/v1/agent", "bridge") {
            Ok(made) => made,
            Err(e) => panic!("a link request: {e}"),
        };
        let ws = match async_tungstenite::client_async(request, conn).await {
            Ok((ws, _)) => ws,
            Err(e) => panic!("the upgrade is accepted: {e}"),
        };
        let mut agent = Agent { ws };
        agent
            .send(
                json!({"type": "register", "agent_id": "a1", "label": "test",
                "models": ["m"], "allowed_scopes": ["inference"]}),
            )
            .await;
        agent.next_of("registered").await;
        agent
    }
}

/// An editor's end of a connection, and what it read and did not look at
/// yet.
struct Editor {
    conn: Duplex,
    read: Vec<u8>,
}

/// An editor's request to `path` with the editor key, `body` as JSON.
fn request(method: &str, path: &str, body: Option<Value>) -> String {
    let body = body.map_or_else(String::new, |b| b.to_string());
    format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:8788\r\nauthorization: Bearer key\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chat request for model `m`.
fn chat(stream: bool) -> String {
    let body = json!({"model": "m", "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]});
    request("POST", "/v1/chat/completions", Some(body))
}

impl Editor {
    async fn send(&mut self, bytes: &str) {
        let sent = self.conn.write_all(bytes.as_bytes()).await;
        assert!(sent.is_ok(), "the server reads the request");
    }

    /// Reads more; false at the end of the connection.
    async fn read_more(&mut self) -> bool {
        let mut buf = [0; 4096];
        let n = self.conn.read(&mut buf).await.unwrap_or(0);
        self.read.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// The next whole response (its length given): its status and body.
    async fn response(&mut self) -> (u16, String) {
        let head_len = loop {
            if let Some(at) = self.read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(self.read_more().await, "a response head before the end");
        };
        let head = String::from_utf8_lossy(&self.read[..head_len]).to_lowercase();
        let status = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {head}"));
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("a content length: {head}"));
        while self.read.len() < head_len + length {
            assert!(self.read_more().await, "the whole body before the end");
        }
        let body = self.read.drain(..head_len + length).skip(head_len);
        (
            status,
            String::from_utf8_lossy(&body.collect::<Vec<_>>()).into(),
        )
    }

    /// Everything read until it holds `marker`, or the connection ended:
    /// the text, and whether the marker came.
    async fn until(&mut self, marker: &str) -> (String, bool) {
        self.until_count(marker, 1).await
    }

    /// Everything read until it holds `marker` `count` times, or the
    /// connection ended: the text, and whether they all came.
    async fn until_count(&mut self, marker: &str, count: usize) -> (String, bool) {
        let text = |read: &[u8]| String::from_utf8_lossy(read).into_owned();
        loop {
            if text(&self.read).matches(marker).count() >= count {
                return (text(&std::mem::take(&mut self.read)), true);
            }
            if !self.read_more().await {
                return (text(&std::mem::take(&mut self.read)), false);
            }
        }
    }
}

/// An agent's end of its link.
struct Agent {
    ws: WebSocketStream<Duplex>,
}

impl Agent {
    async fn send(&mut self, frame: Value) {
        let sent = self.ws.send(Message::text(frame.to_string())).await;
        assert!(sent.is_ok(), "the link takes the frame");
    }

    /// The next text frame, as JSON.
    async fn next(&mut self) -> Value {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                    Ok(frame) => return frame,
                    Err(e) => panic!("a JSON frame: {e}: {text}"),
                },
                Some(Ok(_)) => {}
                other => panic!("a text frame, not {other:?}"),
            }
        }
    }

    /// The next text frame whose type is `kind`; those of other types
    /// are passed over.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The id of the next invocation the provider sends.
    async fn invoked(&mut self) -> String {
        let invoke = self.next_of("model_invoke").await;
        match invoke["id"].as_str() {
            Some(id) => id.to_owned(),
            None => panic!("an invocation with an id: {invoke}"),
        }
    }

    /// Sends the chunk `index` of the answer `id`, saying `content`.
    async fn chunk(&mut self, id: &str, index: u64, content: &str) {
        self.send(
            json!({"type": "model_stream_chunk", "id": id, "chunk_index": index,
            "delta": {"content": content}, "finish_reason": null}),
        )
        .await;
    }
}
