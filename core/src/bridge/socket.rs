//! The WebSocket envelope at `/ws`: `{"type":"create_session","server"?}`
//! or `{"type":"attach_session","session_id"}`, then JSON-RPC messages and
//! batches; everything from the server comes back as
//! `{"type":"response"|"notification"|"request","data":…}`. Any session
//! may be attached, however it was made, by several sockets at once: each
//! request of a socket goes on under an id of the bridge's own, so each
//! socket gets its own answers whatever ids the others use.
//!
//! A frame is parsed by [`SocketFrame::parse`] before the bridge is
//! locked, so a large frame never holds up other clients while it is
//! read, and a batch is read within a bound: at most [`MAX_BATCH`]
//! messages are kept, the rest only counted (a 4 MiB frame of `[1,1,…]`
//! is two million entries: kept whole, and each answered, it took a
//! gigabyte and stalled every client).

use std::fmt;
use std::time::Instant;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::common::{envelope, error, socket, Pending, Reply, Transport};
use super::registry::{Above, Registry, Routed};
use super::traced::Answering;
use super::{ChildId, ClientId};
use crate::http::Request;
use crate::mcp::{self, Message};
use crate::provider::{ConnId, Output, RequestId};

/// The WebSocket subprotocol of the envelope; a browser offers it with
/// `bearer.<API key>`.
const SUBPROTOCOL: &str = "mcp-bridge";

/// Messages one batch may hold; past it the rest of the batch is refused
/// with one error, not one per message.
pub const MAX_BATCH: usize = 256;

/// One frame from a WebSocket client, parsed.
#[derive(Debug)]
pub struct SocketFrame(Frame);

#[derive(Debug)]
enum Frame {
    /// Not JSON, or JSON of no shape the envelope has.
    Invalid(String),
    /// An object with a `type`: the envelope's own.
    Control(Value),
    /// JSON-RPC messages (one, or a batch), each parsed or refused, and
    /// how many a batch held past [`MAX_BATCH`].
    Messages(Vec<Result<Message, mcp::Invalid>>, usize),
}

impl SocketFrame {
    /// Reads a text frame; cheap to call outside any lock.
    pub fn parse(text: &str) -> SocketFrame {
        let first = text.trim_start().as_bytes().first().copied();
        if first == Some(b'[') {
            return SocketFrame(match bounded_batch(text) {
                Ok((kept, dropped)) => {
                    let parsed = kept.iter().map(|raw| mcp::parse(raw.get())).collect();
                    Frame::Messages(parsed, dropped)
                }
                Err(e) => Frame::Invalid(format!("not JSON: {e}")),
            });
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return SocketFrame(Frame::Invalid(format!("not JSON: {e}"))),
        };
        SocketFrame(match value.get("type") {
            Some(_) => Frame::Control(value),
            None => Frame::Messages(vec![mcp::parse(text)], 0),
        })
    }
}

/// The first [`MAX_BATCH`] entries of a JSON array as they were sent, and
/// how many more it had (read, not kept).
fn bounded_batch(text: &str) -> Result<(Vec<Box<RawValue>>, usize), serde_json::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = (Vec<Box<RawValue>>, usize);

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kept = Vec::new();
            while kept.len() < MAX_BATCH {
                match seq.next_element::<Box<RawValue>>()? {
                    Some(raw) => kept.push(raw),
                    None => return Ok((kept, 0)),
                }
            }
            let mut dropped = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                dropped += 1;
            }
            Ok((kept, dropped))
        }
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let batch = (&mut reader).deserialize_seq(Bounded)?;
    reader.end()?;
    Ok(batch)
}

impl<H: Above> Registry<H> {
    pub(crate) fn accept_socket(&mut self, to: RequestId, request: &Request) {
        // A browser offers the key as a subprotocol (see the provider's
        // security checks); the answer must then name one it offered.
        let protocol = request
            .header("sec-websocket-protocol")
            .is_some_and(|offered| offered.split(',').any(|p| p.trim() == SUBPROTOCOL))
            .then_some(SUBPROTOCOL);
        match request
            .header("sec-websocket-key")
            .filter(|_| request.is_websocket_upgrade())
        {
            Some(key) => self.out.push_back(Routed::Http(Output::AcceptSocket {
                conn: to.conn,
                key: key.to_owned(),
                protocol,
            })),
            None => self.respond(
                to,
                error(400, "/ws is a WebSocket: send an upgrade request"),
            ),
        }
    }

    /// A text frame from a WebSocket client ([`SocketFrame::parse`], then
    /// [`Bridge::handle_socket_frame`](crate::gateway::Bridge::handle_socket_frame)).
    pub fn handle_socket_text(&mut self, conn: ConnId, text: &str, now: Instant) {
        self.handle_socket_frame(conn, SocketFrame::parse(text), now);
    }

    /// A frame from a WebSocket client, parsed.
    pub fn handle_socket_frame(&mut self, conn: ConnId, frame: SocketFrame, now: Instant) {
        let (messages, dropped) = match frame.0 {
            Frame::Invalid(why) => return self.socket_error(conn, &why),
            Frame::Control(frame) => return self.socket_control(conn, &frame, now),
            Frame::Messages(messages, dropped) => (messages, dropped),
        };
        let Some(session) = self.streams.get(&conn).and_then(|id| self.sessions.get(id)) else {
            return self.socket_error(conn, "create or attach a session first");
        };
        let (child, client) = (session.child, session.client);
        for message in messages {
            match message {
                Ok(message) => self.socket_message(conn, child, client, message, now),
                Err(invalid) => {
                    let text = envelope(&invalid.reply());
                    self.out
                        .push_back(Routed::Http(Output::ToAgent { conn, text }));
                }
            }
        }
        if dropped > 0 {
            let why = format!(
                "a batch holds at most {MAX_BATCH} messages: the first {MAX_BATCH} were taken, the other {dropped} were not"
            );
            self.socket_error(conn, &why);
        }
    }

    /// A message from a socket for its session's child. Several sockets
    /// may view one session and use the same ids: each request goes on
    /// under an id of the bridge's own, its answer coming back to this
    /// socket under the id it was sent with; a cancellation of one is
    /// renamed the same way.
    fn socket_message(
        &mut self,
        conn: ConnId,
        child: ChildId,
        client: ClientId,
        message: Message,
        now: Instant,
    ) {
        let message = match message {
            Message::Request {
                id,
                method,
                mut params,
            } => {
                self.next_request += 1;
                let own = json!(format!("ws-{}", self.next_request));
                let answering = Answering::Call(child, client, own.to_string());
                let session = self.streams.get(&conn).cloned();
                let about = (method.as_str(), Some(&id));
                let session = session.as_deref();
                self.trace_request(answering, None, about.0, about.1, &mut params, session, now);
                let wait = Pending {
                    to: socket(conn),
                    reply: Reply::Socket { id },
                    progress: None,
                };
                let request = Message::Request {
                    id: own,
                    method,
                    params,
                };
                return self.forward(child, client, request, Some(wait), now);
            }
            Message::Notification { method, mut params } if method == "notifications/cancelled" => {
                let asked = &params["requestId"];
                let own = self.pending.iter().find_map(|((c, k, own), p)| {
                    let mine = (*c, *k) == (child, client) && p.to.conn == conn;
                    match &p.reply {
                        Reply::Socket { id } if mine && id == asked => Some(own.clone()),
                        _ => None,
                    }
                });
                if let Some(own) = own.and_then(|own| serde_json::from_str::<Value>(&own).ok()) {
                    params["requestId"] = own;
                }
                Message::Notification { method, params }
            }
            other => other,
        };
        self.forward(child, client, message, None, now);
    }

    /// `create_session`, `attach_session`, or a type the envelope has not.
    fn socket_control(&mut self, conn: ConnId, frame: &Value, now: Instant) {
        match frame["type"].as_str() {
            Some("create_session") => {
                let spec = match self.spec_named(frame["server"].as_str()) {
                    Ok(spec) => spec,
                    Err(_) => {
                        return self.socket_error(
                            conn,
                            "name the server: {\"type\":\"create_session\",\"server\":NAME}",
                        )
                    }
                };
                let id = match self.open_session(spec, Transport::Socket, now) {
                    Ok(id) => id,
                    Err(full) => return self.socket_error(conn, &full.message()),
                };
                if let Err(why) = self.attach_socket(conn, &id) {
                    return self.socket_error(conn, &why);
                }
                let reply = Reply::SocketSession {
                    session: id.clone(),
                };
                self.initialize(socket(conn), &id, frame, reply, now);
            }
            Some("attach_session") => {
                // Any session, however it was made: REST, Streamable HTTP
                // or another socket's. One socket views one session.
                let id = frame["session_id"].as_str().unwrap_or_default().to_owned();
                let Some(session) = self.sessions.get(&id) else {
                    return self.socket_error(conn, "no such session");
                };
                if self.streams.contains_key(&conn) {
                    return self.socket_error(conn, "this socket views a session already");
                }
                let server = self.child_name(session.child);
                let attached =
                    json!({"type": "session_attached", "session_id": id, "server": server});
                self.out.push_back(Routed::Http(Output::ToAgent {
                    conn,
                    text: attached.to_string(),
                }));
                if let Err(why) = self.attach_socket(conn, &id) {
                    self.socket_error(conn, &why);
                }
            }
            Some(other) => self.socket_error(conn, &format!("unknown type `{other}`")),
            None => self.socket_error(conn, "`type` is a string"),
        }
    }

    fn socket_error(&mut self, conn: ConnId, message: &str) {
        let text = json!({"type": "error", "error": message}).to_string();
        self.out
            .push_back(Routed::Http(Output::ToAgent { conn, text }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> (usize, usize) {
        match SocketFrame::parse(text).0 {
            Frame::Messages(kept, dropped) => (kept.len(), dropped),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_is_kept_up_to_its_cap_and_the_rest_only_counted() {
        assert_eq!(
            messages(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#),
            (1, 0)
        );
        let huge = format!("[{}1]", "1,".repeat(2_000_000));
        assert_eq!(messages(&huge), (MAX_BATCH, 2_000_001 - MAX_BATCH));
        assert_eq!(
            messages(r#" {"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            (1, 0)
        );
    }

    #[test]
    fn what_is_not_the_envelope_is_invalid_at_once() {
        for text in ["[1,", "[1] x", "nope", "", "[[[["] {
            assert!(
                matches!(SocketFrame::parse(text).0, Frame::Invalid(_)),
                "{text}"
            );
        }
        assert!(matches!(
            SocketFrame::parse(r#"{"type":"create_session"}"#).0,
            Frame::Control(_)
        ));
    }
}
