//! Spans of the bridge, by the OpenTelemetry semantic conventions for MCP:
//! a SERVER span for each request a client makes, and a CLIENT span, its
//! child, for each request the bridge writes to a server for it.
//!
//! A request's own `params._meta` carries the trace inside the bridge as
//! it does between processes (SEP-414): the registry puts its SERVER
//! span's context there when the request comes in, and the mux, when it
//! writes the request to the server, reads it as the parent of its CLIENT
//! span and puts that span's context there instead. So a request the
//! aggregate endpoint asks of every server (whose `_meta` it copies) gets
//! one CLIENT span per server, each a child of the one SERVER span.
//!
//! With tracing off nothing here runs: no span, no `_meta` touched, the
//! bytes forwarded as they always were. A tool call's arguments and result
//! go on its SERVER span only when the tracer captures content (the GenAI
//! conventions' opt-in), cut to the attribute bound as they are read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{ChildId, ClientId};
use crate::http::Request;
use crate::mcp;
use crate::provider::RequestId;
use crate::telemetry::{Kind, Span, SpanContext, Tracer};

/// SERVER spans open at once, per way of answering; past it a request is
/// not traced (its answer may never come: the map must not grow for it).
pub(crate) const MAX_OPEN: usize = 4096;

/// Where a traced request's answer goes, which is where its span ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Answering<'a> {
    /// The HTTP request that asked (Streamable HTTP, stateless, REST, `/mcp`).
    Http(RequestId),
    /// A session's stream or socket (HTTP+SSE, WebSocket): the child, the
    /// client and the request's id there as JSON text, as the mux names
    /// the answer (borrowed where it is only looked up).
    Call(ChildId, ClientId, Cow<'a, str>),
}

/// The registry's tracing: its tracer, and the SERVER spans of requests
/// not answered yet (see `requests`).
pub(crate) struct Traces {
    /// Records the spans; off unless the driver gave one.
    tracer: Tracer,
    by_request: HashMap<RequestId, Span>,
    by_call: HashMap<(ChildId, ClientId, String), Span>,
    /// The instant of the input being handled: an answer sent for it ends
    /// its span then (the registry's outputs are made without a clock).
    clock: Option<Instant>,
}

/// The registry's tracer lent to a child for one input, and the instant
/// of that input (see `Registry::on_child`).
pub(crate) struct Lent {
    pub(crate) tracer: Tracer,
    pub(crate) now: Instant,
}

/// What a client request is about, as spans name it.
pub(crate) struct About<'a> {
    pub(crate) method: &'a str,
    /// The client's or the bridge's id of the request, when it has one.
    pub(crate) id: Option<&'a Value>,
    pub(crate) params: &'a Value,
}

/// Starts a span of `kind` for a request: named `{method} {target}` (the
/// tool, prompt or resource it is about, when it names one), with the
/// method's attributes.
pub(crate) fn start(
    tracer: &mut Tracer,
    kind: Kind,
    about: &About,
    parent: Option<&SpanContext>,
    now: Instant,
) -> Option<Span> {
    let target = target(about.method, about.params);
    let name = match target {
        Some(target) => format!("{} {target}", about.method),
        None => about.method.to_owned(),
    };
    let mut span = tracer.start(name, kind, parent, now)?;
    span.set("mcp.method.name", about.method);
    if about.method == "tools/call" {
        span.set("gen_ai.operation.name", "execute_tool");
        if let Some(tool) = target {
            span.set("gen_ai.tool.name", tool);
        }
    }
    if let Some(id) = about.id.filter(|id| !id.is_null()) {
        let id = match id {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        span.set("jsonrpc.request.id", id);
    }
    Some(span)
}

/// The tool, prompt or resource a request is about.
fn target<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    match method {
        "tools/call" | "prompts/get" => params["name"].as_str(),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            params["uri"].as_str()
        }
        _ => None,
    }
}

/// Puts `context` in `params._meta` as `traceparent` (and `tracestate`),
/// the other members of `_meta` kept. Params that are not an object, or a
/// `_meta` that is not one, are left alone; none at all become
/// `{"_meta": {…}}`.
pub(crate) fn carry(context: &SpanContext, params: &mut Value) {
    if params.is_null() {
        *params = Value::Object(Map::new());
    }
    let Some(fields) = params.as_object_mut() else {
        return;
    };
    let meta = fields
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        context.put_in_meta(meta);
    }
}

/// Why an answer counts as failed, for its span: the JSON-RPC error's code
/// as `error.type` and its message, or `tool_error` for a tool's result
/// marked `isError` (the conventions' class of a tool that failed).
#[derive(Debug, PartialEq)]
pub(crate) struct Failure {
    pub(crate) kind: String,
    pub(crate) description: String,
}

impl Failure {
    pub(crate) fn error(code: Option<i64>, message: &str) -> Self {
        Failure {
            kind: code.map_or_else(|| "error".to_owned(), |code| code.to_string()),
            description: message.to_owned(),
        }
    }

    pub(crate) fn cancelled(why: &str) -> Self {
        Failure {
            kind: "cancelled".to_owned(),
            description: why.to_owned(),
        }
    }

    fn tool() -> Self {
        Failure {
            kind: "tool_error".to_owned(),
            description: "the tool reported an error".to_owned(),
        }
    }

    /// An answer's outcome as parsed.
    pub(crate) fn of_value(outcome: Result<&Value, &Value>) -> Option<Self> {
        match outcome {
            Err(error) => Some(Failure::error(
                error["code"].as_i64(),
                error["message"].as_str().unwrap_or_default(),
            )),
            Ok(result) => (result["isError"] == true).then(Failure::tool),
        }
    }

    /// An answer's outcome as read without building it (each the JSON
    /// text it came as): the error is read, and of a result only whether
    /// it says `isError`.
    pub(crate) fn of_raw(outcome: Result<&str, &str>) -> Option<Self> {
        match outcome {
            Err(error) => {
                let head: ErrorHead = serde_json::from_str(error).unwrap_or_default();
                Some(Failure::error(head.code, &head.message.unwrap_or_default()))
            }
            Ok(result) => serde_json::from_str::<ResultHead>(result)
                .is_ok_and(|head| head.is_error == Some(true))
                .then(Failure::tool),
        }
    }

    /// A whole answer as sent to a client: a JSON-RPC response, or the
    /// REST API's result alone or `{"error": …}`.
    pub(crate) fn of_answer(text: &[u8]) -> Option<Self> {
        let Ok(answer) = serde_json::from_slice::<AnswerHead>(text) else {
            return None;
        };
        match (answer.error, answer.result) {
            (Some(error), _) => Failure::of_raw(Err(error.get())),
            (None, Some(result)) => Failure::of_raw(Ok(result.get())),
            (None, None) => (answer.is_error == Some(true)).then(Failure::tool),
        }
    }
}

#[derive(Deserialize)]
struct AnswerHead<'a> {
    #[serde(default, borrow)]
    error: Option<&'a RawValue>,
    #[serde(default, borrow)]
    result: Option<&'a RawValue>,
    #[serde(default, rename = "isError")]
    is_error: Option<bool>,
}

#[derive(Deserialize, Default)]
struct ErrorHead {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct ResultHead {
    #[serde(default, rename = "isError")]
    is_error: Option<bool>,
}

/// Ends `span` at `now`, failed when `failure` says so.
pub(crate) fn end(tracer: &mut Tracer, mut span: Span, failure: Option<Failure>, now: Instant) {
    if let Some(failure) = failure {
        span.fail(failure.kind, failure.description);
    }
    tracer.finish(span, now);
}

/// The parent a request names: its `traceparent` header when valid, else
/// its `params._meta.traceparent`.
fn parent_of(request: Option<&Request>, params: &Value) -> Option<SpanContext> {
    request
        .and_then(|r| {
            let parent = r.header("traceparent")?;
            SpanContext::parse(parent, r.header("tracestate"))
        })
        .or_else(|| SpanContext::from_meta(&params["_meta"]))
}

/// The protocol version a request speaks: its header, its stateless
/// envelope's, or what its `initialize` asks.
fn version_of<'a>(
    request: Option<&'a Request>,
    method: &str,
    params: &'a Value,
) -> Option<&'a str> {
    request
        .and_then(|r| r.header("mcp-protocol-version"))
        .map(str::trim)
        .or_else(|| params["_meta"][mcp::PROTOCOL_VERSION_META].as_str())
        .or_else(|| match method {
            "initialize" => params["protocolVersion"].as_str(),
            _ => None,
        })
}

impl Traces {
    fn is_empty(&self) -> bool {
        self.by_request.is_empty() && self.by_call.is_empty()
    }

    fn full(&self, answering: &Answering) -> bool {
        match answering {
            Answering::Http(_) => self.by_request.len() >= MAX_OPEN,
            Answering::Call(..) => self.by_call.len() >= MAX_OPEN,
        }
    }
}

mod requests;
#[cfg(test)]
mod tests;
