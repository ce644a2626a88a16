//! `relay`: the physical limit of any two-hop relay on this machine, for
//! `loadgen` to measure the provider against (`scripts/loadgen relay`).
//!
//! It does what the provider must do between an agent and its editors and
//! nothing else: it takes one agent link (a WebSocket on `/v1/agent`),
//! answers each editor's streamed chat request by sending the agent an
//! invocation, and writes every chunk the agent sends to that editor's
//! socket as an SSE event in a chunked body, one write per editor per
//! burst of frames (at most [`RING_EVERY`] × [`YIELD_EVERY`], the frames
//! the provider's link handles before its editors write).
//! No keys, limits, sessions, reordering, validation or timeouts: what the
//! provider costs beyond this is the provider's own.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use serde::Deserialize;
use smol::channel::{self, Receiver, Sender};
use smol::future::poll_once;
use smol::io::AsyncWriteExt;
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt;
use smol::LocalExecutor;

use mcp_provider_benches::request::Requests;
use mcp_provider_kit::{RING_EVERY, YIELD_EVERY};

/// The editors waiting for chunks, by invocation id, and where frames for
/// the agent go once it is connected.
#[derive(Default)]
struct Relay {
    editors: HashMap<String, TcpStream>,
    agent: Option<Sender<String>>,
    next: u64,
}

type Shared = Rc<RefCell<Relay>>;

/// The one thread's executor, for the tasks a connection starts.
type Executor = Rc<LocalExecutor<'static>>;

fn main() -> std::io::Result<()> {
    let executor = Rc::new(LocalExecutor::new());
    smol::block_on(executor.run(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        println!("relay listening on http://{}", listener.local_addr()?);
        let shared = Shared::default();
        loop {
            let (socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            executor
                .spawn(connection(socket, shared.clone(), executor.clone()))
                .detach();
        }
    }))
}

/// One connection: the agent's upgrade, or an editor's request.
async fn connection(mut socket: TcpStream, shared: Shared, executor: Executor) {
    let Some((head, body)) = Requests::default().next(&mut socket).await else {
        return;
    };
    match head.websocket_key {
        Some(key) => {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let ws = WebSocketStream::from_raw_socket(socket, Role::Server, None).await;
            agent(ws, shared, executor).await;
        }
        None => editor(socket, &body, &shared).await,
    }
}

/// An editor's streamed chat: the agent is asked, and the answer's head
/// goes out; the chunks are written by the agent's task.
async fn editor(mut socket: TcpStream, body: &[u8], shared: &Shared) {
    #[derive(Deserialize)]
    struct Chat {
        messages: Vec<serde_json::Value>,
    }
    let Ok(chat) = serde_json::from_slice::<Chat>(body) else {
        return;
    };
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                transfer-encoding: chunked\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut relay = shared.borrow_mut();
    let id = format!("r{}", relay.next);
    relay.next += 1;
    let invoke = serde_json::json!({"type": "model_invoke", "id": id,
                                    "payload": {"kind": "chat", "messages": chat.messages}});
    if let Some(agent) = &relay.agent {
        let _ = agent.try_send(invoke.to_string());
        relay.editors.insert(id, socket);
    }
}

/// A chunk frame from the agent, as far as a relay reads it.
#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(default, borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    delta: Delta<'a>,
    #[serde(default)]
    finish_reason: Option<&'a str>,
}

#[derive(Deserialize, Default)]
struct Delta<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// The agent's link: registration is accepted at once, invocations go
/// out from a task of their own, and each burst of chunk frames is
/// written to its editors, one write each.
async fn agent(ws: WebSocketStream<TcpStream>, shared: Shared, executor: Executor) {
    let (mut sink, mut frames) = ws.split();
    let (tx, rx): (Sender<String>, Receiver<String>) = channel::unbounded();
    shared.borrow_mut().agent = Some(tx.clone());
    executor
        .spawn(async move {
            while let Ok(text) = rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    let mut out: HashMap<String, (Vec<u8>, bool)> = HashMap::new();
    while let Some(Ok(first)) = frames.next().await {
        take(first, &mut out, &tx);
        for _ in 1..RING_EVERY * YIELD_EVERY {
            match poll_once(frames.next()).await {
                Some(Some(Ok(frame))) => take(frame, &mut out, &tx),
                _ => break,
            }
        }
        for (id, (events, ended)) in out.drain() {
            let socket = shared.borrow().editors.get(&id).cloned();
            let Some(mut socket) = socket else { continue };
            let mut body = format!("{:x}\r\n", events.len()).into_bytes();
            body.extend_from_slice(&events);
            body.extend_from_slice(b"\r\n");
            if ended {
                body.extend_from_slice(b"0\r\n\r\n");
                shared.borrow_mut().editors.remove(&id);
            }
            let _ = socket.write_all(&body).await;
        }
    }
    shared.borrow_mut().agent = None;
}

/// What an event holds around its text: by default only the choices, the
/// least a client reads; with `RELAY_EVENT=openai` every field of an
/// OpenAI chunk as the provider writes it (id, object, created, model,
/// finish reason), so the two write the same bytes and their clients do
/// the same work reading them.
fn event_shape() -> (&'static [u8], &'static [u8]) {
    static SHAPE: std::sync::OnceLock<(&[u8], &[u8])> = std::sync::OnceLock::new();
    *SHAPE.get_or_init(|| match std::env::var("RELAY_EVENT").as_deref() {
        Ok("openai") => (
            br#"data: {"created":1795956476,"id":"chatcmpl-e77129e29f113256","model":"loadgen-12345","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"#,
            b"},\"finish_reason\":null}]}\n\n",
        ),
        _ => (
            br#"data: {"choices":[{"index":0,"delta":{"content":"#,
            b"}}]}\n\n",
        ),
    })
}

/// Adds a frame's chunk to its editor's events (and answers a register).
fn take(frame: Message, out: &mut HashMap<String, (Vec<u8>, bool)>, agent: &Sender<String>) {
    let Message::Text(text) = frame else { return };
    let Ok(chunk) = serde_json::from_str::<Chunk>(text.as_str()) else {
        return;
    };
    match chunk.kind {
        "register" => {
            let registered = r#"{"type":"registered","session_id":"relay","status":"active"}"#;
            let _ = agent.try_send(registered.to_owned());
        }
        "model_stream_chunk" => {
            let (events, ended) = out.entry(chunk.id.into_owned()).or_default();
            let content = serde_json::to_string(chunk.delta.content.as_deref().unwrap_or(""));
            let (head, tail) = event_shape();
            events.extend_from_slice(head);
            events.extend_from_slice(content.unwrap_or_default().as_bytes());
            events.extend_from_slice(tail);
            if chunk.finish_reason.is_some() {
                events.extend_from_slice(b"data: [DONE]\n\n");
                *ended = true;
            }
        }
        _ => {}
    }
}
