//! The stateless revision (2026-07-28) at `/mcp/{name}`, in front of a
//! server that speaks only the session revisions (most stdio servers
//! today): a modern client gets a modern exchange, without falling back.
//!
//! There is no handshake and no session: `server/discover` is answered
//! from the child's cached `initialize` result (its capabilities, server
//! info and instructions, and the versions this bridge speaks); every other
//! request carries its protocol version and client in `params._meta`
//! (taken off for a session child, kept for a stateless one: see
//! [`super::generation`]), and is answered as JSON. The
//! `Mcp-Method` and `Mcp-Name` headers must agree with the body; `GET` and
//! `DELETE` get 405. Each stateless request is a client of the child of its
//! own for as long as it waits, so ids and progress tokens that clients
//! pick freely never cross. A request with a progress token is answered as
//! an event stream: its progress, then its answer. The child's own
//! requests to such a client (sampling, elicitation) cannot reach it and
//! are refused.

use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use super::common::{progress_token, Parked, Pending, Reply, Target};
use super::generation::CLIENT_INFO_META;
use super::parked::{INPUT, MAX_PARKED, PARK_TTL};
use super::registry::{Event, Registry};
use super::{ChildId, ClientId};
use crate::http::{Request, Response};
use crate::mcp::{self, Message};
use crate::provider::RequestId;

/// The session revision the bridge's own `initialize` asks for when a
/// stateless client is the first to need the child.
const HANDSHAKE_VERSION: &str = "2025-11-25";

/// Whether a request's `MCP-Protocol-Version` header names the stateless
/// revision.
pub(crate) fn stateless_header(request: &Request) -> bool {
    request
        .header("mcp-protocol-version")
        .is_some_and(|v| mcp::STATELESS_VERSIONS.contains(&v.trim()))
}

/// Whether a message sent without a session (and without the revision's
/// header) speaks the stateless revision: it asks `server/discover`, or
/// names the revision in its `_meta`.
pub(crate) fn is_stateless(message: &Message) -> bool {
    match message {
        Message::Request { method, params, .. } => {
            method == "server/discover" || params["_meta"][mcp::PROTOCOL_VERSION_META].is_string()
        }
        _ => false,
    }
}

impl Registry {
    /// `GET` or `DELETE` in the stateless revision: there is no session.
    pub(crate) fn stateless_refusal(&mut self, to: RequestId) {
        let reply = mcp::error(
            &Value::Null,
            mcp::INVALID_REQUEST,
            "the stateless revision has no session to GET or DELETE",
            None,
        );
        self.respond(to, Response::json(405, reply).with_header("allow", "POST"));
    }

    /// A stateless request (a POST's message) for `/mcp/NAME`, or for
    /// `/mcp` (`aggregate`, which finds the server by the name or URI it
    /// is for).
    pub(crate) fn stateless(
        &mut self,
        to: RequestId,
        target: Target,
        request: &Request,
        message: Message,
        now: Instant,
    ) {
        let (id, method, params) = match message {
            Message::Request { id, method, params } => (id, method, params),
            // Nothing to correlate a notification or a response with.
            _ => return self.respond(to, Response::full(202, "application/json", Bytes::new())),
        };
        if let Some(reply) = mcp::unsupported_version(&id, &params) {
            return self.respond(to, Response::json(400, reply));
        }
        if let Err(why) = headers_agree(request, &method, &params) {
            return self.respond(
                to,
                Response::json(400, mcp::error(&id, mcp::HEADER_MISMATCH, &why, None)),
            );
        }
        match target {
            Target::Server(spec) => self.stateless_forward(to, spec, id, method, params, now),
            Target::Every => self.up(Event::Stateless {
                to,
                id,
                method,
                params,
                now,
            }),
        }
    }

    /// A stateless request for server `spec`, its headers checked: the
    /// retry of a parked call, or a client of its own on the child.
    pub(crate) fn stateless_forward(
        &mut self,
        to: RequestId,
        spec: usize,
        id: Value,
        method: String,
        params: Value,
        now: Instant,
    ) {
        if self.unpark(to, spec, &id, &params, now) {
            return;
        }
        let (child, client) = match self.ephemeral_client(spec, now) {
            Ok(ephemeral) => ephemeral,
            Err(full) => {
                let reply = mcp::error(&id, mcp::INVALID_REQUEST, &full.message(), None);
                return self.respond(to, Response::json(503, reply));
            }
        };
        let progress = progress_token(&params);
        if progress.is_some() {
            self.respond(to, Response::stream("text/event-stream"));
        }
        let (asked, params) = if method == "server/discover" {
            ("initialize".to_owned(), initialize_params(&params))
        } else {
            (method.clone(), params)
        };
        let wait = Pending {
            to,
            reply: Reply::Stateless {
                id: id.clone(),
                method,
            },
            progress,
        };
        let message = Message::Request {
            id,
            method: asked,
            params,
        };
        self.forward(child, client, message, Some(wait), now);
    }

    /// A message from the child for a stateless request's client that is
    /// neither its answer nor its progress: a request is asked of the
    /// client by answering its call `input_required` (see `parked`), or
    /// refused when that cannot be; anything else is dropped.
    pub(crate) fn stateless_message(
        &mut self,
        child: ChildId,
        client: ClientId,
        message: Option<Value>,
        now: Instant,
    ) {
        let Some(message) = message else {
            return;
        };
        if let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) {
            if self.park(child, client, id, method, &message["params"], now) {
                return;
            }
            let error = json!({
                "code": mcp::METHOD_NOT_FOUND,
                "message": format!("{method}: a stateless client cannot be asked"),
            });
            let refusal = Message::Response {
                id: id.clone(),
                outcome: Err(error),
            };
            self.forward(child, client, refusal, None, now);
        }
    }

    // ---- parked calls (see `parked`) ----

    /// The child asks `method` of a stateless client: if that client has a
    /// call waiting, the call is answered `input_required` with the
    /// request and parked. False when it cannot be (no call waiting, too
    /// many parked): the request is then refused.
    pub(crate) fn park(
        &mut self,
        child: ChildId,
        client: ClientId,
        ask: &Value,
        method: &str,
        params: &Value,
        now: Instant,
    ) -> bool {
        if self.parked.len() >= MAX_PARKED {
            return false;
        }
        // The call the client waits on: its key, its own id and method.
        let waiting = self
            .pending
            .iter()
            .find_map(|(key, pending)| match &pending.reply {
                Reply::Stateless { id, method } if (key.0, key.1) == (child, client) => {
                    Some((key.clone(), id.clone(), method.clone()))
                }
                _ => None,
            });
        let Some(((_, _, call), id, call_method)) = waiting else {
            return false;
        };
        let Some(pending) = self.pending.remove(&(child, client, call.clone())) else {
            return false;
        };
        self.next_request += 1;
        let state =
            crate::auth::derive_token(&[&self.seed, b"parked", &self.next_request.to_le_bytes()]);
        let mut request = json!({"method": method});
        if !params.is_null() {
            request["params"] = params.clone();
        }
        let result = json!({
            "resultType": "input_required",
            "inputRequests": {INPUT: request},
            "requestState": state,
        });
        let answer = mcp::result(&id, result);
        match pending.progress {
            Some(_) => self.end_answer_stream(pending.to, &answer),
            None => self.respond(pending.to, Response::json(200, answer)),
        }
        let parked = Parked {
            child,
            client,
            call,
            method: call_method,
            ask: ask.clone(),
            expires: now + PARK_TTL,
        };
        self.parked.insert(state, parked);
        true
    }

    /// A stateless request for server `spec` that retries a parked call
    /// (its `requestState` names it): the client's answer goes to the
    /// child, and this request waits for the call's result. False when the
    /// state names no call parked for that server.
    pub(crate) fn unpark(
        &mut self,
        to: RequestId,
        spec: usize,
        id: &Value,
        params: &Value,
        now: Instant,
    ) -> bool {
        let Some(state) = params["requestState"].as_str() else {
            return false;
        };
        let server = self.specs.get(spec).map(|s| s.name.as_str());
        let mine = |p: &Parked| self.child(p.child).map(|c| c.spec().name.as_str()) == server;
        if !self.parked.get(state).is_some_and(mine) {
            return false;
        }
        let Some(parked) = self.parked.remove(state) else {
            return false;
        };
        let outcome = match &params["inputResponses"][INPUT] {
            Value::Null => Err(json!({
                "code": mcp::INVALID_PARAMS,
                "message": "the client retried without an answer to the request",
            })),
            answer => Ok(answer.clone()),
        };
        let wait = Pending {
            to,
            reply: Reply::Stateless {
                id: id.clone(),
                method: parked.method,
            },
            progress: None,
        };
        self.pending
            .insert((parked.child, parked.client, parked.call), wait);
        let answer = Message::Response {
            id: parked.ask,
            outcome,
        };
        self.forward(parked.child, parked.client, answer, None, now);
        true
    }

    /// Parked calls whose clients never came back are cancelled at their
    /// child (the client made for them ends).
    pub(crate) fn expire_parked(&mut self, now: Instant) {
        let gone: Vec<String> = self
            .parked
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(state, _)| state.clone())
            .collect();
        for state in gone {
            if let Some(parked) = self.parked.remove(&state) {
                tracing::debug!("a stateless client never retried its parked call");
                self.release_client(parked.child, parked.client, now);
            }
        }
    }
}

/// `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version`, when sent, say
/// what the body says: an intermediary routes by them, so a request whose
/// headers tell another story is refused rather than served.
fn headers_agree(request: &Request, method: &str, params: &Value) -> Result<(), String> {
    if let Some(raw) = request.header("mcp-method") {
        let header = header_value("Mcp-Method", raw)?;
        if header != method {
            return Err(format!(
                "Mcp-Method says `{header}` but the body asks `{method}`"
            ));
        }
    }
    if let Some(raw) = request.header("mcp-name") {
        let header = header_value("Mcp-Name", raw)?;
        let named = params["name"]
            .as_str()
            .or(params["uri"].as_str())
            .unwrap_or_default();
        if header != named {
            return Err(format!(
                "Mcp-Name says `{header}` but the body names `{named}`"
            ));
        }
    }
    let version = params["_meta"][mcp::PROTOCOL_VERSION_META].as_str();
    if let (Some(raw), Some(version)) = (request.header("mcp-protocol-version"), version) {
        if raw.trim() != version {
            return Err(format!(
                "MCP-Protocol-Version says `{}` but the body's _meta names `{version}`",
                raw.trim()
            ));
        }
    }
    Ok(())
}

/// A standard header's value: as sent when plain ASCII, else decoded from
/// the revision's `=?base64?…?=` wrapping of its UTF-8.
fn header_value(name: &str, raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    match raw
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        None => Ok(raw.to_owned()),
        Some(coded) => crate::base64::decode(coded)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| format!("{name} is not valid `=?base64?…?=`: `{raw}`")),
    }
}

/// The `initialize` params a `server/discover` stands for: the client's
/// capabilities and name from its `_meta`.
fn initialize_params(params: &Value) -> Value {
    let meta = &params["_meta"];
    let or_empty = |v: &Value| if v.is_object() { v.clone() } else { json!({}) };
    json!({
        "protocolVersion": HANDSHAKE_VERSION,
        "capabilities": or_empty(&meta[mcp::CLIENT_CAPABILITIES_META]),
        "clientInfo": match &meta[CLIENT_INFO_META] {
            info @ Value::Object(_) => info.clone(),
            _ => json!({"name": "stateless client", "version": "0"}),
        },
    })
}
