//! `http_relay`: the least any bridge from Streamable HTTP to one remote
//! Streamable HTTP MCP server does, for `scripts/bridge_bench --remote` to
//! measure the bridge against (its `relay` turn), as `stdio_relay` is for
//! a stdio server.
//!
//! ```text
//! http_relay http://HOST:PORT/PATH
//! ```
//!
//! It initializes one session with the server and then, on one thread:
//! answers each client's `initialize` with the server's own result and
//! its notifications with `202`; gives every request an id of its own
//! (clients share the one upstream session, so their ids would collide),
//! posts it in that session over a kept connection (one per request in
//! flight, kept for the next), reads the answer (a JSON body, or the
//! server-sent event carrying it), and writes it to the client with its
//! id given back, as an `application/json` body. No keys, sessions of its
//! own, limits, validation, timeouts, reconnection, TLS or protocol
//! generations: what the bridge costs beyond this is the bridge's own.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use mcp_provider_benches::mcp_relay::{
    initialize_request, respond, serve, with_id, Envelope, PassOn, INITIALIZED, VERSION,
};
use mcp_provider_benches::request::{header, Received};
use serde_json::value::RawValue;
use smol::io::AsyncWriteExt;
use smol::net::TcpStream;
use smol::LocalExecutor;

/// What every connection shares.
struct Relay {
    /// `host:port`, dialled and sent as `Host`.
    authority: String,
    path: String,
    /// The session's id, once the server gave it.
    session: Option<String>,
    /// The server's `initialize` result, given to every client.
    init_result: String,
    /// Connections to the server with no request on them.
    idle: RefCell<Vec<Upstream>>,
    next_id: Cell<u64>,
}

/// A connection to the server, and what was read past its last answer.
struct Upstream {
    socket: TcpStream,
    received: Received,
}

/// One answer of the server's: its `Mcp-Session-Id`, and its body (a chunked
/// body decoded).
struct Answer {
    session: Option<String>,
    event_stream: bool,
    body: Vec<u8>,
}

fn main() -> io::Result<()> {
    let Some((authority, path)) = std::env::args().nth(1).as_deref().and_then(split_url) else {
        eprintln!("usage: http_relay http://HOST:PORT/PATH");
        std::process::exit(2);
    };
    let executor = Rc::new(LocalExecutor::new());
    smol::block_on(executor.run(async {
        let relay = Rc::new(initialize(authority, path).await?);
        serve(&executor, "http relay", relay).await
    }))
}

/// `http://HOST:PORT/PATH` as `HOST:PORT` and `/PATH`.
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    Some((authority.to_owned(), path.to_owned()))
}

/// Opens the one session with the server: its id and `initialize` result.
async fn initialize(authority: String, path: String) -> io::Result<Relay> {
    let mut relay = Relay {
        authority,
        path,
        session: None,
        init_result: String::new(),
        idle: RefCell::default(),
        next_id: Cell::new(0),
    };
    let mut upstream = relay.dial().await?;
    let answer = relay
        .post(&mut upstream, &initialize_request("http_relay"))
        .await?;
    let (Some(session), Some(result)) = (&answer.session, answer_to(&answer, "0", "0")) else {
        return Err(io::Error::other("the server opened no session"));
    };
    let envelope: Envelope = serde_json::from_str(&result)?;
    relay.init_result = envelope
        .result
        .ok_or_else(|| io::Error::other("initialize failed"))?
        .get()
        .to_owned();
    relay.session = Some(session.clone());
    relay.post(&mut upstream, INITIALIZED).await?;
    relay.idle.borrow_mut().push(upstream);
    Ok(relay)
}

impl Relay {
    async fn dial(&self) -> io::Result<Upstream> {
        let socket = TcpStream::connect(self.authority.as_str()).await?;
        socket.set_nodelay(true)?;
        Ok(Upstream {
            socket,
            received: Received::default(),
        })
    }

    /// Posts `message` in the session on `upstream`; the answer.
    async fn post(&self, upstream: &mut Upstream, message: &str) -> io::Result<Answer> {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.path,
            self.authority,
            message.len()
        );
        if let Some(session) = &self.session {
            request.push_str("Mcp-Session-Id: ");
            request.push_str(session);
            request.push_str("\r\nMcp-Protocol-Version: ");
            request.push_str(VERSION);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        request.push_str(message);
        upstream.socket.write_all(request.as_bytes()).await?;
        upstream.answer().await
    }
}

impl Upstream {
    /// Reads one whole response.
    async fn answer(&mut self) -> io::Result<Answer> {
        let head = loop {
            if let Some(head) = response_head(&self.received.bytes)? {
                break head;
            }
            self.received.fill(&mut self.socket).await?;
        };
        self.received.bytes.drain(..head.len);
        let body = match head.framing {
            Framing::Length(n) => {
                while self.received.bytes.len() < n {
                    self.received.fill(&mut self.socket).await?;
                }
                self.received.bytes.drain(..n).collect()
            }
            Framing::Chunked => loop {
                if let Some((body, used)) = dechunk(&self.received.bytes) {
                    self.received.bytes.drain(..used);
                    break body;
                }
                self.received.fill(&mut self.socket).await?;
            },
        };
        Ok(Answer {
            session: head.session,
            event_stream: head.event_stream,
            body,
        })
    }
}

/// How a response's body is delimited.
#[derive(Debug, PartialEq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// What the relay reads of a response head.
#[derive(Debug, PartialEq)]
struct Head {
    /// Its length in bytes, the blank line included: the body starts there.
    len: usize,
    session: Option<String>,
    event_stream: bool,
    framing: Framing,
}

/// A response head at the start of `buf`; `None` until it is all there.
fn response_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let status = response.parse(buf).map_err(io::Error::other)?;
    let httparse::Status::Complete(len) = status else {
        return Ok(None);
    };
    let header = |name| header(response.headers, name);
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let framing = match header("content-length").and_then(|v| v.parse().ok()) {
        _ if chunked => Framing::Chunked,
        Some(n) => Framing::Length(n),
        None => Framing::Length(0),
    };
    let event_stream = header("content-type").is_some_and(|v| v.starts_with("text/event-stream"));
    let session = header("mcp-session-id").map(str::to_owned);
    Ok(Some(Head {
        len,
        session,
        event_stream,
        framing,
    }))
}

/// A whole chunked body at the start of `buf`, decoded, and the bytes it
/// took; `None` until it is all there.
fn dechunk(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(buf.get(at..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // No trailers from the servers measured: the blank line ends it.
            return (buf.get(at..at + 2)? == b"\r\n").then_some((body, at + 2));
        }
        body.extend_from_slice(buf.get(at..at + size)?);
        at += size + 2;
    }
}

/// The message in `answer` whose id is spelled `mine` (the body itself, or
/// the `data` of the event carrying it), with that id spelled `theirs`.
fn answer_to(answer: &Answer, mine: &str, theirs: &str) -> Option<String> {
    let text = std::str::from_utf8(&answer.body).ok()?;
    let answers = |data: &str| {
        let envelope: Envelope = serde_json::from_str(data).ok()?;
        let id = envelope
            .id
            .filter(|id| id.get() == mine && envelope.method.is_none())?;
        Some(with_id(data, id, theirs))
    };
    if !answer.event_stream {
        return answers(text);
    }
    text.split("\n\n").find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        answers(&data.join("\n"))
    })
}

impl PassOn for Relay {
    fn init_result(&self) -> &str {
        &self.init_result
    }

    /// Posts the request under an id of the relay's, and writes the
    /// server's answer back with the client's id.
    async fn pass_on(&self, socket: &mut TcpStream, body: &str, id: &RawValue) -> io::Result<()> {
        let mine = self.next_id.get() + 1;
        self.next_id.set(mine);
        let mine = mine.to_string();
        let idle = self.idle.borrow_mut().pop();
        let mut upstream = match idle {
            Some(upstream) => upstream,
            None => self.dial().await?,
        };
        let answer = self.post(&mut upstream, &with_id(body, id, &mine)).await?;
        self.idle.borrow_mut().push(upstream);
        match answer_to(&answer, &mine, id.get()) {
            Some(message) => respond(socket, "200 OK", &message).await,
            None => respond(socket, "502 Bad Gateway", "").await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_decoded_once_it_is_all_there() {
        let wire = b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\nNEXT";
        assert_eq!(
            dechunk(wire),
            Some((b"hello world".to_vec(), wire.len() - 4))
        );
        assert_eq!(dechunk(&wire[..20]), None);
        assert_eq!(dechunk(b"zz\r\n"), None);
    }

    #[test]
    fn the_answer_is_found_among_the_events_by_its_id() {
        let body = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n\n\
                    event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
        let answer = Answer {
            session: None,
            event_stream: true,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            answer_to(&answer, "7", "\"a\"").as_deref(),
            Some(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#)
        );
        assert_eq!(answer_to(&answer, "8", "1"), None);
    }

    #[test]
    fn heads_say_how_their_bodies_end() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nmcp-session-id: s1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            response_head(head).unwrap(),
            Some(Head {
                len: head.len(),
                session: Some("s1".into()),
                event_stream: true,
                framing: Framing::Chunked
            })
        );
        let head = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n";
        let parsed = response_head(head).unwrap().unwrap();
        assert_eq!(
            (parsed.session, parsed.event_stream, parsed.framing),
            (None, false, Framing::Length(0))
        );
        assert!(response_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
    }
}
