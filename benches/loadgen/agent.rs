//! The agent end of a run: answers every invocation with its stream's
//! chunks, stamped as they are sent, over the provider's real agent link
//! (or, for the direct baseline, straight to each editor's socket).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use futures_util::SinkExt;
use serde_json::{json, Value};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use smol::net::{TcpListener, TcpStream};
use smol::stream::StreamExt;

use mcp_provider_kit::agent::dial::link_request;
use mcp_provider_kit::RING_EVERY;

use crate::stamp::{chunk_frame, Clock};
use crate::Mode;

/// What the agent end is told.
pub enum Event {
    /// The provider (or a direct editor) asks for stream `stream`; the
    /// direct baseline hands over that editor's socket.
    Invoke {
        id: String,
        stream: u32,
        socket: Option<TcpStream>,
    },
    /// Latency mode: the editor has read chunk `index` of `stream`.
    Read { stream: u32, index: u32 },
    /// Scale mode: every stream is open, send the rest.
    Release,
    /// The provider pinged the link.
    Ping,
}

/// Where chunk frames go.
enum Sink {
    Link(WebSocketSender<TcpStream>),
    Direct(HashMap<u32, BufWriter<TcpStream>>),
}

/// Sends chunks: round-robin over the streams with a chunk due, flushing
/// whenever it runs out of due chunks (and every batch).
pub struct Writer {
    mode: Mode,
    chunks: u32,
    clock: Clock,
    sink: Sink,
    ids: HashMap<u32, String>,
    due: VecDeque<(u32, u32)>,
    pong_due: bool,
    frame: String,
    /// When the first chunk went out, for the throughput window.
    pub first_sent_ns: Arc<AtomicU64>,
}

const BATCH: usize = 64;

impl Writer {
    fn new(mode: Mode, chunks: u32, clock: Clock, sink: Sink) -> Self {
        Writer {
            mode,
            chunks,
            clock,
            sink,
            ids: HashMap::new(),
            due: VecDeque::new(),
            pong_due: false,
            frame: String::with_capacity(256),
            first_sent_ns: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    pub async fn run(mut self, events: Receiver<Event>) -> Result<(), String> {
        let mut unflushed = 0;
        loop {
            while let Ok(event) = events.try_recv() {
                self.on_event(event);
            }
            if std::mem::take(&mut self.pong_due) {
                self.frame.clear();
                self.frame.push_str(r#"{"type":"pong"}"#);
                self.put(u32::MAX, false).await?;
            }
            if self.due.is_empty() {
                self.flush().await?;
                unflushed = 0;
                match events.recv().await {
                    Ok(event) => self.on_event(event),
                    Err(_) => return Ok(()),
                }
                continue;
            }
            for _ in 0..BATCH {
                let Some((stream, index)) = self.due.pop_front() else {
                    break;
                };
                self.send_chunk(stream, index).await?;
                unflushed += 1;
            }
            // The link is flushed every batch, as an agent would. The direct
            // baseline writes each stream's socket as the provider writes
            // each editor's: once per burst of up to `RING_EVERY` frames
            // (the provider's own batching), so the ratio compares the
            // provider with the best one hop can do, not with a socket write
            // per chunk.
            if matches!(self.sink, Sink::Link(_)) || unflushed >= RING_EVERY {
                self.flush().await?;
                unflushed = 0;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Invoke { id, stream, socket } => {
                self.ids.insert(stream, id);
                if let (Some(socket), Sink::Direct(sockets)) = (socket, &mut self.sink) {
                    sockets.insert(stream, BufWriter::new(socket));
                }
                self.due.push_back((stream, 0));
            }
            Event::Read { stream, index } => {
                if self.mode == Mode::Latency && index + 1 < self.chunks {
                    self.due.push_back((stream, index + 1));
                }
            }
            Event::Release => {
                let mut streams: Vec<u32> = self.ids.keys().copied().collect();
                streams.sort_unstable();
                self.due.extend(streams.into_iter().map(|s| (s, 1)));
            }
            Event::Ping => self.pong_due = true,
        }
    }

    async fn send_chunk(&mut self, stream: u32, index: u32) -> Result<(), String> {
        let last = index + 1 == self.chunks;
        let id = self.ids.get(&stream).map_or("", String::as_str);
        let now = self.clock.ns();
        self.first_sent_ns.fetch_min(now, Ordering::Relaxed);
        chunk_frame(&mut self.frame, id, stream, index, last, now);
        let next_now = match self.mode {
            Mode::Throughput => true,
            Mode::Latency => false,
            // The first chunks open every stream; the rest wait for Release.
            Mode::Scale => index > 0,
        };
        if next_now && !last {
            self.due.push_back((stream, index + 1));
        }
        self.put(stream, last).await
    }

    /// Writes the frame built in `self.frame` for `stream` (the link
    /// carries every stream; the direct baseline has a socket per stream).
    async fn put(&mut self, stream: u32, last: bool) -> Result<(), String> {
        match &mut self.sink {
            Sink::Link(ws) => ws
                .feed(Message::text(self.frame.as_str()))
                .await
                .map_err(|e| format!("agent link: {e}")),
            Sink::Direct(sockets) => {
                let Some(socket) = sockets.get_mut(&stream) else {
                    return Ok(());
                };
                self.frame.push('\n');
                let sent = socket.write_all(self.frame.as_bytes()).await;
                if last {
                    // Closing tells the editor its stream is complete.
                    let _ = socket.flush().await;
                    sockets.remove(&stream);
                }
                sent.map_err(|e| format!("direct socket: {e}"))
            }
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match &mut self.sink {
            Sink::Link(ws) => ws.flush().await.map_err(|e| format!("agent link: {e}")),
            Sink::Direct(sockets) => {
                for socket in sockets.values_mut() {
                    if !socket.buffer().is_empty() {
                        socket
                            .flush()
                            .await
                            .map_err(|e| format!("direct socket: {e}"))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Connects to the provider's agent link, registers `model`, and returns
/// the writer and a task reading the link into `events`.
pub async fn connect(
    url: &str,
    token: &str,
    model: &str,
    mode: Mode,
    chunks: u32,
    clock: Clock,
    events: Sender<Event>,
) -> Result<(Writer, smol::Task<()>), String> {
    let (request, host, port) = link_request(url, token).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut ws, _) = async_tungstenite::client_async(request, tcp)
        .await
        .map_err(|e| format!("agent link handshake with {url} failed: {e}"))?;
    register(&mut ws, model).await?;
    let (sender, receiver) = ws.split();
    let writer = Writer::new(mode, chunks, clock, Sink::Link(sender));
    Ok((writer, smol::spawn(read_link(receiver, events))))
}

async fn register(ws: &mut WebSocketStream<TcpStream>, model: &str) -> Result<(), String> {
    let register = json!({"type": "register", "agent_id": model, "models": [model]});
    ws.send(Message::text(register.to_string()))
        .await
        .map_err(|e| format!("agent link: {e}"))?;
    while let Some(frame) = ws.next().await {
        let frame = frame.map_err(|e| format!("agent link: {e}"))?;
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        match v["type"].as_str() {
            Some("registered") if v["status"] == "active" => return Ok(()),
            Some("registered") => {
                return Err(format!(
                    "the agent session is {} (needs approval?)",
                    v["status"]
                ))
            }
            Some("error") => return Err(format!("registration refused: {}", v["error"])),
            _ => {}
        }
    }
    Err("the agent link closed during registration".to_owned())
}

/// Turns provider frames into events until the link closes.
async fn read_link(mut link: WebSocketReceiver<TcpStream>, events: Sender<Event>) {
    while let Some(Ok(frame)) = link.next().await {
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let event = match v["type"].as_str() {
            Some("model_invoke") => {
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                let messages = v["payload"]["messages"].as_array();
                let last = messages.and_then(|m| m.last());
                let stream = last.and_then(|m| m["content"].as_str()?.parse().ok());
                match stream {
                    Some(stream) => Event::Invoke {
                        id,
                        stream,
                        socket: None,
                    },
                    None => {
                        eprintln!("loadgen: an invocation without a stream number: {text}");
                        continue;
                    }
                }
            }
            Some("ping") => Event::Ping,
            Some("cancel") => {
                eprintln!("loadgen: the provider cancelled {}", v["id"]);
                continue;
            }
            Some("error") => {
                eprintln!("loadgen: the provider reported {}", v["error"]);
                continue;
            }
            _ => continue,
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// The direct baseline's agent end: a loopback listener where each editor
/// names its stream on one line and then reads frames.
pub async fn listen_direct(
    mode: Mode,
    chunks: u32,
    clock: Clock,
    events: Sender<Event>,
) -> Result<(Writer, String, smol::Task<()>), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen: {e}"))?
        .to_string();
    let accept = smol::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let _ = socket.set_nodelay(true);
            let events = events.clone();
            smol::spawn(async move {
                let mut line = String::new();
                let mut reader = BufReader::new(socket.clone());
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                if let Ok(stream) = line.trim().parse() {
                    let socket = Some(socket);
                    let id = format!("direct-{stream}");
                    let _ = events.send(Event::Invoke { id, stream, socket }).await;
                }
            })
            .detach();
        }
    });
    let writer = Writer::new(mode, chunks, clock, Sink::Direct(HashMap::new()));
    Ok((writer, addr, accept))
}
