//! What the registry of servers and its transports share, below them
//! all: how a session's client hears from its server ([`Transport`],
//! [`Target`], [`StreamStart`]), the shape each waiting request's answer
//! takes ([`Pending`], [`Reply`], [`Answered`]) and the formatting of
//! those answers and events. Nothing here reaches a [`Registry`], so every
//! module above may use it and none of them need each other for it.
//!
//! [`Registry`]: super::Registry

use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::routes::Miss;
use super::{ChildId, ClientId};
use crate::http::Response;
use crate::mcp;
use crate::members::Members;
use crate::provider::{ConnId, RequestId};

/// How a session's client hears from its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Streamable HTTP: an answer goes to the POST that asked, the rest
    /// down the `GET` event stream.
    Streamable,
    /// The 2024-11-05 HTTP+SSE transport: everything, answers included,
    /// goes down the one event stream; closing it ends the session.
    LegacySse,
    /// The REST API: answers to the request that asked, the rest down
    /// `/events/{session}` as `notification` events.
    Rest,
    /// The WebSocket envelope: everything as frames on the socket.
    Socket,
}

/// What an MCP transport's path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/mcp/{name}`: that server (an index into the specs).
    Server(usize),
    /// `/mcp`: every server at once (`aggregate`).
    Every,
}

/// The event name of a session's messages on an MCP transport's stream,
/// and on the REST API's `/events/{id}`.
pub(crate) const MESSAGE_KIND: &str = "message";
pub(crate) const EVENTS_KIND: &str = "notification";

/// How an event stream opens: the head answering its request, its
/// events' name ([`MESSAGE_KIND`] or [`EVENTS_KIND`]), a first event of
/// its own, and the last event its client saw (a reconnect).
pub(crate) struct StreamStart {
    pub(crate) response: Response,
    pub(crate) kind: &'static str,
    pub(crate) greeting: Option<Bytes>,
    pub(crate) last_event: Option<u64>,
}

/// A message from the server as the WebSocket envelope carries it:
/// `{type: response | request | notification, data}`.
pub(crate) fn envelope(message: &str) -> String {
    socket_frame(serde_json::from_str(message).unwrap_or(Value::Null))
}

/// A message, already parsed, as the WebSocket envelope carries it.
pub(crate) fn socket_frame(data: Value) -> String {
    let kind = match (data.get("method").is_some(), data.get("id").is_some()) {
        (false, _) => "response",
        (true, true) => "request",
        (true, false) => "notification",
    };
    json!({"type": kind, "data": data}).to_string()
}

/// A request waiting for its answer from a child.
pub(crate) struct Pending {
    /// Where the answer goes: the HTTP request waiting for it, or a
    /// WebSocket client ([`socket`]).
    pub(crate) to: RequestId,
    pub(crate) reply: Reply,
    /// The client's progress token, when the answer is an event stream
    /// begun at once: the request's progress goes down it, then the
    /// answer ends it, in the order the server sent them.
    pub(crate) progress: Option<Value>,
    /// For a stateless client that asked for the server's log messages
    /// with its answer, the least severe it wants (see `logging`): the
    /// answer is then an event stream too, those messages going first.
    pub(crate) log: Option<usize>,
}

impl Pending {
    /// Whether the answer is an event stream, begun when the request came.
    pub(crate) fn streams(&self) -> bool {
        self.progress.is_some() || self.log.is_some()
    }
}

/// The shape an answer is given for the client that waits for it.
pub(crate) enum Reply {
    /// Streamable HTTP: the JSON-RPC answer as JSON, naming the session an
    /// `initialize` opened.
    Json { opened: Option<String> },
    /// A stateless client (see `stateless::stateless_answer`): its own id
    /// and the method it asked. Its client closes with the answer.
    Stateless { id: Value, method: String },
    /// The REST API: the result alone (a JSON-RPC error as 502), or, for
    /// a session it opened, the session and the server's capabilities.
    /// Without a session, its client closes with the answer.
    Rest {
        opened: Option<String>,
        ephemeral: bool,
    },
    /// A WebSocket client's `create_session`: `session_created`.
    SocketSession { session: String },
    /// A page of one server's list for a gather (see `gather`), through
    /// a client that closes with the answer when it is `ephemeral`, unless
    /// it asks for the next page or makes the gather's call.
    Gathered {
        gather: u64,
        server: String,
        ephemeral: bool,
    },
    /// An aggregate session's own request to one of its servers (its
    /// `initialize`, `logging/setLevel`): the answer is not the client's.
    Member,
    /// A tool called as an OpenAPI operation (see `openapi`): the result
    /// alone, a JSON-RPC error as 400 or 502. Its client closes with the
    /// answer.
    Operation,
    /// A socket's request, under the id the socket gave it.
    Socket { id: Value },
}

/// Where a WebSocket client's frames go: its connection. Frames belong to
/// no HTTP request (the connection carries them once upgraded), so the
/// number is 0, and nothing checks it.
pub(crate) fn socket(conn: ConnId) -> RequestId {
    RequestId { conn, seq: 0 }
}

/// One message as a server-sent event of `kind`, numbered `id`.
pub(crate) fn event(id: u64, kind: &str, message: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: {kind}\ndata: {message}\n\n"))
}

/// A child's answer to a stateless client's `method`: its own id back,
/// and the result as the revision has it: `server/discover`'s from the
/// `initialize` result it was asked as, a list marked complete and not to
/// be cached (as [`mcp::listing`] marks the bridge's own), every result
/// tagged `resultType`. Read from the answer's text and written back with
/// every other member as the child wrote it (a listed tool's input schema
/// byte for byte); text that is no JSON object goes on as it is.
pub(crate) fn stateless_answer(answer: &str, id: &Value, method: &str) -> String {
    let Some(mut members) = Members::of(answer) else {
        return answer.to_owned();
    };
    if let Ok(id) = serde_json::value::to_raw_value(id) {
        members.set("id", id);
    }
    let result = members.get("result").and_then(|result| match method {
        "server/discover" => discovered(result),
        _ => marked(result, method),
    });
    if let Some(result) = result {
        members.set("result", result);
    }
    members.text()
}

/// `server/discover`'s result, from the `initialize` result it was asked as.
fn discovered(initialized: &RawValue) -> Option<Box<RawValue>> {
    let result: Value = serde_json::from_str(initialized.get()).ok()?;
    let instructions = result["instructions"].as_str().unwrap_or_default();
    let discovered = mcp::discover_result(
        result["capabilities"].clone(),
        result["serverInfo"].clone(),
        instructions,
    );
    serde_json::value::to_raw_value(&discovered).ok()
}

/// A result with the stateless marks it lacks: `resultType`, and a list's
/// cache hints.
fn marked(result: &RawValue, method: &str) -> Option<Box<RawValue>> {
    let mut fields = Members::of(result.get())?;
    let mut marks = vec![("resultType", r#""complete""#)];
    if method.ends_with("/list") {
        marks.extend([("ttlMs", "0"), ("cacheScope", r#""private""#)]);
    }
    for (key, value) in marks {
        if fields.get(key).is_none() {
            fields.set(key, RawValue::from_string(value.to_owned()).ok()?);
        }
    }
    fields.raw()
}

/// A request's progress token, from its params' `_meta`: its answer is
/// then an event stream, its progress first.
pub(crate) fn progress_token(meta: &Value) -> Option<Value> {
    Some(meta.get("progressToken")?.clone())
}

/// The answer to a request no row of the route table takes.
pub(crate) fn missed(miss: Miss) -> Response {
    match miss {
        Miss::Method => error(
            405,
            "this method is not allowed on this route of the MCP bridge",
        ),
        Miss::Path => error(404, "no such route of the MCP bridge"),
    }
}

/// A REST call's answer: for a session it opened, the session and the
/// server's capabilities (201); else the result alone, or the JSON-RPC
/// error as 502.
pub(crate) fn rest_answer(answer: Value, opened: Option<String>, server: &str) -> Response {
    if let Some(session) = opened {
        let result = &answer["result"];
        let body = json!({
            "session_id": session,
            "server": server,
            "capabilities": result["capabilities"],
            "server_info": result["serverInfo"],
        });
        return Response::json(201, body.to_string());
    }
    result_or_error(&answer, 502)
}

/// A JSON-RPC answer as HTTP: the result alone (200), or the error as
/// `{"error": …}` with `error_status`; anything else a 502.
pub(crate) fn result_or_error(answer: &Value, error_status: u16) -> Response {
    match (answer.get("result"), answer.get("error")) {
        (Some(result), _) => Response::json(200, result.to_string()),
        (_, Some(error)) => Response::json(error_status, json!({"error": error}).to_string()),
        _ => error(502, "the server's answer was not JSON-RPC"),
    }
}

pub(crate) fn error(status: u16, message: &str) -> Response {
    Response::json(status, json!({"error": {"message": message}}).to_string())
}

/// A call waiting for its stateless client's retry.
pub(crate) struct Parked {
    pub(crate) child: ChildId,
    pub(crate) client: ClientId,
    /// The call's id at the child's client, as the pending key holds it.
    pub(crate) call: String,
    pub(crate) method: String,
    /// The id the server's request has at the client.
    pub(crate) ask: Value,
    pub(crate) expires: Instant,
}

/// One server's answer to a listing, as `Registry::answer` has it.
#[derive(Debug)]
pub(crate) struct Answered {
    /// The gather it is a part of.
    pub(crate) gather: u64,
    pub(crate) server: String,
    pub(crate) child: ChildId,
    pub(crate) client: ClientId,
    /// Whether `client` was made for this gather alone.
    pub(crate) ephemeral: bool,
    pub(crate) answer: Option<Value>,
    pub(crate) size: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stateless_answer_is_marked_under_its_clients_id_with_the_rest_as_the_child_wrote_it() {
        let tool = r##"{"name":"lookup","inputSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","$defs":{"id":{"type":"string"}},"properties":{"id":{"$ref":"#/$defs/id"}},"additionalProperties":false}}"##;
        let answer = format!(r#"{{"jsonrpc":"2.0","id":41,"result":{{"tools":[{tool}]}}}}"#);
        assert_eq!(
            stateless_answer(&answer, &json!("c-1"), "tools/list"),
            format!(
                r#"{{"jsonrpc":"2.0","id":"c-1","result":{{"tools":[{tool}],"resultType":"complete","ttlMs":0,"cacheScope":"private"}}}}"#
            )
        );
        let answer =
            r#"{"jsonrpc":"2.0","id":2,"result":{"resultType":"input_required","content":[]}}"#;
        assert_eq!(
            stateless_answer(answer, &json!(9), "tools/call"),
            r#"{"jsonrpc":"2.0","id":9,"result":{"resultType":"input_required","content":[]}}"#
        );
        let error = r#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"no"}}"#;
        assert_eq!(
            stateless_answer(error, &json!(9), "tools/call"),
            r#"{"jsonrpc":"2.0","id":9,"error":{"code":-32601,"message":"no"}}"#
        );
        assert_eq!(stateless_answer("not json", &json!(9), "x"), "not json");
    }

    #[test]
    fn discovery_is_answered_from_the_initialize_result_it_was_asked_as() {
        let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}"#;
        let discovered: Value =
            serde_json::from_str(&stateless_answer(answer, &json!(5), "server/discover")).unwrap();
        assert_eq!(discovered["id"], 5);
        assert_eq!(
            discovered["result"],
            mcp::discover_result(
                json!({"tools": {}}),
                json!({"name": "s", "version": "1"}),
                ""
            )
        );
    }
}
