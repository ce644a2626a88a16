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

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use super::common::{event, progress_token, Parked, Pending, Reply, Target};
use super::generation::{self, CLIENT_INFO_META};
use super::listen::{Filter, Listener, MAX_LISTENERS};
use super::logging;
use super::parked::{INPUT, MAX_PARKED, PARK_TTL};
use super::registry::{Event, Registry, Routed};
use super::{ChildId, ClientId};
use crate::http::{Request, Response};
use crate::mcp::{self, Message};
use crate::provider::{Output, RequestId};

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
            method == "server/discover" || generation::is_enveloped(params.meta())
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
            Message::Request { id, method, params } => (id, method, params.into_value()),
            // Nothing to correlate a notification or a response with.
            _ => return self.respond(to, Response::full(202, "application/json", Bytes::new())),
        };
        if let Err(refusal) = admit(request, &id, &method, &params) {
            return self.respond(to, refusal);
        }
        if method == "subscriptions/listen" {
            return self.listen(to, target, id, &params, now);
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
        let (child, client) = match self.ephemeral_client(spec, true, now) {
            Ok(ephemeral) => ephemeral,
            Err(full) => {
                let reply = mcp::error(&id, mcp::INVALID_REQUEST, &full.message(), None);
                return self.respond(to, Response::json(503, reply));
            }
        };
        let progress = progress_token(&params["_meta"]);
        let log = logging::asked(&params).ok().flatten();
        if progress.is_some() || log.is_some() {
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
            log,
        };
        let message = Message::Request {
            id,
            method: asked,
            params: params.into(),
        };
        self.forward(child, client, message, Some(wait), now);
    }

    /// A message from the child for a client with no session (a
    /// stateless request's, or a listen stream's) that is neither an
    /// answer nor progress: the child's request is asked of a stateless
    /// request's client by answering its call `input_required` (see
    /// `parked`), else refused so the child does not wait for it; a
    /// notification goes down a listen stream whose filter asks for it;
    /// anything else (the answers to a listener's subscriptions) is
    /// dropped.
    pub(crate) fn sessionless_message(
        &mut self,
        child: ChildId,
        client: ClientId,
        message: Option<Value>,
        now: Instant,
    ) {
        let Some(message) = message else {
            return;
        };
        let listener = self.listeners.get(&(child, client));
        if let (Some(id), Some(method)) = (message.get("id"), message["method"].as_str()) {
            if listener.is_some() || !self.park(child, client, id, method, &message["params"], now)
            {
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
            return;
        }
        if let Some(listener) = listener {
            if let Some(line) = listener.relay(&message) {
                let (to, data) = (listener.to, event(0, "message", &line));
                self.push(Routed::Http(Output::Data { to, data }));
            }
        }
    }

    // ---- listen streams (see `listen`) ----

    /// `subscriptions/listen` for `target`: an event stream that opens
    /// with its acknowledgement, then carries what its filter asks for of
    /// the server's child — at `/mcp`, of every server whose child runs
    /// (one not started has told no client anything yet). Each resource
    /// it follows is subscribed to at the server for as long as the
    /// stream lasts. A malformed filter is refused (`-32602`, HTTP 400);
    /// at [`MAX_LISTENERS`] streams, a new one is refused with 503 (each
    /// is a client someone is holding open).
    fn listen(&mut self, to: RequestId, target: Target, id: Value, params: &Value, now: Instant) {
        let refuse = |code, why: &str| mcp::error(&id, code, why, None);
        let filter = match Filter::parse(params) {
            Ok(filter) => filter,
            Err(why) => {
                let reply = refuse(mcp::INVALID_PARAMS, &why);
                return self.respond(to, Response::json(400, reply));
            }
        };
        if self.listeners.len() >= MAX_LISTENERS {
            let why = format!("{MAX_LISTENERS} listen streams are open: try again later");
            let reply = refuse(mcp::INVALID_REQUEST, &why);
            return self.respond(to, Response::json(503, reply));
        }
        // A server with a child apart for this revision's clients is heard
        // through that child: what it says of its own in this revision
        // reaches that child's listen stream, not the session's.
        let children = match target {
            Target::Server(spec) => match self.child_for(spec, true, now) {
                Ok(child) => vec![child],
                Err(full) => {
                    let reply = refuse(mcp::INVALID_REQUEST, &full.message());
                    return self.respond(to, Response::json(503, reply));
                }
            },
            Target::Every => {
                // Each server's child apart, where it has one, else its
                // shared one.
                let mut running: HashMap<&String, ChildId> = HashMap::new();
                running.extend(self.shared.iter().map(|(name, child)| (name, *child)));
                running.extend(self.modern.iter().map(|(name, child)| (name, *child)));
                running.into_values().collect()
            }
        };
        let listener = Listener::new(to, id.clone(), filter.clone());
        self.respond(to, Response::stream("text/event-stream"));
        let data = event(0, "message", &listener.acknowledgement());
        self.push(Routed::Http(Output::Data { to, data }));
        for child in children {
            let Some(client) = self.open_client(child, now) else {
                continue;
            };
            let listener = Listener::new(to, id.clone(), filter.clone());
            self.listeners.insert((child, client), listener);
            for uri in filter.uris() {
                let subscribe = Message::Request {
                    id: json!(format!("listen:{uri}")),
                    method: "resources/subscribe".into(),
                    params: json!({ "uri": uri }).into(),
                };
                self.forward(child, client, subscribe, None, now);
            }
        }
    }

    /// Ends the listen streams whose client `gone` picks: each client
    /// leaves its child (its subscriptions with it), and, when `close`,
    /// the stream ends with its request's answer (a stream whose
    /// connection closed has no one to tell).
    pub(crate) fn end_listeners(
        &mut self,
        gone: impl Fn(ChildId, &Listener) -> bool,
        close: bool,
        now: Instant,
    ) {
        let ended: Vec<(ChildId, ClientId)> = self
            .listeners
            .iter()
            .filter(|((child, _), listener)| gone(*child, listener))
            .map(|(key, _)| *key)
            .collect();
        for (child, client) in ended {
            let Some(listener) = self.listeners.remove(&(child, client)) else {
                continue;
            };
            let still = self.listeners.values().any(|l| l.to == listener.to);
            if close && !still {
                let to = listener.to;
                self.end_answer_stream(to, &listener.ended());
            }
            self.release_client(child, client, now);
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
        match pending.streams() {
            true => self.end_answer_stream(pending.to, &answer),
            false => self.respond(pending.to, Response::json(200, answer)),
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
            log: logging::asked(params).ok().flatten(),
        };
        if wait.log.is_some() {
            self.respond(to, Response::stream("text/event-stream"));
        }
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

/// Whether a stateless request may be served, checked in the revision's
/// order before it reaches any server: its envelope (`-32602`), then its
/// standard headers against the body (`-32020`: a client that disagrees
/// with itself is told so, not that the version it named is unknown),
/// then the version (`-32022`), then the method (`-32601`, HTTP 404: the
/// session revisions' methods are not this one's, and never reach a
/// child in it). The refusal to answer with otherwise.
fn admit(request: &Request, id: &Value, method: &str, params: &Value) -> Result<(), Response> {
    let refuse = |status, code, why: &str| Response::json(status, mcp::error(id, code, why, None));
    envelope(params).map_err(|why| refuse(400, mcp::INVALID_PARAMS, &why))?;
    headers_agree(request, method, params)
        .map_err(|why| refuse(400, mcp::HEADER_MISMATCH, &why))?;
    if let Some(reply) = mcp::unsupported_version(id, params) {
        return Err(Response::json(400, reply));
    }
    if !mcp::STATELESS_METHODS.contains(&method) {
        let why = format!("Method not found: {method} (not a method of the stateless revision)");
        return Err(refuse(404, mcp::METHOD_NOT_FOUND, &why));
    }
    Ok(())
}

/// A stateless request's `params._meta` names its protocol version and
/// its client's capabilities (its client info is optional): without them
/// a server cannot know what the client speaks or can be asked.
fn envelope(params: &Value) -> Result<(), String> {
    let Some(meta) = params.get("_meta").and_then(Value::as_object) else {
        return Err("params._meta is missing: a stateless request carries its protocol version and client capabilities there".into());
    };
    let version = meta
        .get(mcp::PROTOCOL_VERSION_META)
        .is_some_and(Value::is_string);
    let capabilities = meta
        .get(mcp::CLIENT_CAPABILITIES_META)
        .is_some_and(Value::is_object);
    let missing: Vec<&str> = [
        (version, mcp::PROTOCOL_VERSION_META),
        (capabilities, mcp::CLIENT_CAPABILITIES_META),
    ]
    .into_iter()
    .filter_map(|(present, key)| (!present).then_some(key))
    .collect();
    match missing[..] {
        [] => logging::asked(params).map(|_| ()),
        _ => Err(format!("params._meta lacks {}", missing.join(" and "))),
    }
}

/// The param whose value a request of `method` must repeat in `Mcp-Name`.
fn named_param(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// `MCP-Protocol-Version` and `Mcp-Method`, on every stateless POST, and
/// `Mcp-Name` on one that names a tool, prompt or resource, say what the
/// body says: an intermediary routes by them, so a request whose headers
/// are missing or tell another story is refused rather than served. A
/// header that contradicts the body is named before one that is missing.
fn headers_agree(request: &Request, method: &str, params: &Value) -> Result<(), String> {
    let version = params["_meta"][mcp::PROTOCOL_VERSION_META].as_str();
    if let (Some(raw), Some(version)) = (request.header("mcp-protocol-version"), version) {
        if raw.trim() != version {
            return Err(format!(
                "MCP-Protocol-Version says `{}` but the body's _meta names `{version}`",
                raw.trim()
            ));
        }
    }
    let sent_method = request.header("mcp-method");
    if let Some(raw) = sent_method {
        let header = header_value("Mcp-Method", raw)?;
        if header != method {
            return Err(format!(
                "Mcp-Method says `{header}` but the body asks `{method}`"
            ));
        }
    }
    let sent_name = request.header("mcp-name");
    if let Some(raw) = sent_name {
        let header = header_value("Mcp-Name", raw)?;
        let named = match named_param(method) {
            Some(key) => params[key].as_str(),
            None => params["name"].as_str().or(params["uri"].as_str()),
        };
        let named = named.unwrap_or_default();
        if header != named {
            return Err(format!(
                "Mcp-Name says `{header}` but the body names `{named}`"
            ));
        }
    }
    if request.header("mcp-protocol-version").is_none() {
        return Err("the MCP-Protocol-Version header is missing".into());
    }
    if sent_method.is_none() {
        return Err(format!(
            "the Mcp-Method header is missing (the body asks `{method}`)"
        ));
    }
    let named = named_param(method).and_then(|key| params[key].as_str());
    if let (None, Some(named)) = (sent_name, named) {
        return Err(format!(
            "the Mcp-Name header is missing (the body names `{named}`)"
        ));
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

#[cfg(test)]
mod tests {
    use super::super::listen::SUBSCRIPTION_ID_META as SUBSCRIPTION_ID;
    use super::super::rig::{answered, stateless_headers, status, Rig};
    use super::super::ServerSpec;
    use super::*;

    const META: &str = r#"{"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}"#;

    fn request(method: &str, params: Value) -> Value {
        json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params})
    }

    fn meta() -> Value {
        serde_json::from_str(META).unwrap()
    }

    /// POSTs `body` with `headers` (names as sent): the answer's status
    /// and JSON, when answered at once.
    fn post(rig: &mut Rig, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let out = rig.request("POST", "/mcp/echo", headers, Bytes::from(body.to_string()));
        (status(&out.1), answered(&out.1))
    }

    /// POSTs `body` with the headers a stateless client sends, then
    /// `change`d: the answer's status and JSON.
    fn post_with(
        rig: &mut Rig,
        body: &Value,
        change: impl FnOnce(&mut Vec<(String, String)>),
    ) -> (u16, Value) {
        let mut headers = stateless_headers(body);
        change(&mut headers);
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        post(rig, body, &pairs)
    }

    fn refusal(answer: &Value) -> (i64, String) {
        let error = &answer["error"];
        let message = error["message"].as_str().unwrap_or_default().to_owned();
        (error["code"].as_i64().unwrap_or_default(), message)
    }

    #[test]
    fn a_request_without_its_envelope_is_invalid_params_and_says_what_is_missing() {
        let mut rig = Rig::new();
        let version = "io.modelcontextprotocol/protocolVersion";
        let capabilities = "io.modelcontextprotocol/clientCapabilities";
        let headers = [
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "server/discover"),
        ];
        let cases = [
            (json!({}), "params._meta is missing"),
            (json!({"_meta": {capabilities: {}}}), version),
            (json!({"_meta": {version: "2026-07-28"}}), capabilities),
            (
                json!({"_meta": {version: "2026-07-28", capabilities: "all"}}),
                capabilities,
            ),
        ];
        for (params, missing) in cases {
            let (status, answer) = post(&mut rig, &request("server/discover", params), &headers);
            let (code, message) = refusal(&answer);
            assert_eq!((status, code), (400, mcp::INVALID_PARAMS), "{answer}");
            assert!(message.contains(missing), "{message}");
            assert_eq!(answer["id"], 7);
        }
        // A tools/call too; nothing reached the child.
        let call = request("tools/call", json!({"name": "echo"}));
        let (status, answer) = post_with(&mut rig, &call, |h| {
            h.push(("mcp-protocol-version".into(), "2026-07-28".into()))
        });
        assert_eq!((status, refusal(&answer).0), (400, mcp::INVALID_PARAMS));
        assert!(rig.child.is_empty(), "{:?}", rig.child);
        // Client info is optional: served.
        let discover = request("server/discover", json!({"_meta": meta()}));
        let (_, out) = rig.send_stateless(discover);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(rig.child.last().unwrap()["method"], "initialize");
    }

    #[test]
    fn headers_that_contradict_the_body_are_named_before_an_unsupported_version() {
        let mut rig = Rig::new();
        let mut future = meta();
        future["io.modelcontextprotocol/protocolVersion"] = json!("v999");
        let discover = request("server/discover", json!({"_meta": future}));
        let (status, answer) = post_with(&mut rig, &discover, |h| {
            h[0].1 = "2026-07-28".into();
        });
        let (code, message) = refusal(&answer);
        assert_eq!((status, code), (400, mcp::HEADER_MISMATCH), "{answer}");
        assert!(message.contains("MCP-Protocol-Version"), "{message}");
        // Header and body agreeing on a version not spoken: -32022.
        let (status, answer) = post_with(&mut rig, &discover, |_| {});
        assert_eq!(
            (status, refusal(&answer).0),
            (400, mcp::UNSUPPORTED_PROTOCOL_VERSION)
        );
        assert_eq!(answer["error"]["data"]["requested"], "v999");
        assert!(rig.child.is_empty());
    }

    #[test]
    fn removed_and_unknown_methods_are_not_found_and_never_reach_the_child() {
        let mut rig = Rig::new();
        for method in [
            "initialize",
            "ping",
            "logging/setLevel",
            "resources/subscribe",
            "resources/unsubscribe",
            "unknown/method",
        ] {
            let asked = request(method, json!({"uri": "x://y", "_meta": meta()}));
            let (status, answer) = post_with(&mut rig, &asked, |_| {});
            let (code, message) = refusal(&answer);
            assert_eq!((status, code), (404, mcp::METHOD_NOT_FOUND), "{method}");
            assert!(message.contains(method), "{message}");
            assert_eq!(answer["id"], 7);
        }
        assert!(rig.child.is_empty(), "{:?}", rig.child);
    }

    #[test]
    fn every_stateless_post_names_its_method_and_what_it_names_in_headers() {
        let mut rig = Rig::new();
        let list = request("tools/list", json!({"_meta": meta()}));
        let drop =
            |name: &'static str| move |h: &mut Vec<(String, String)>| h.retain(|(k, _)| k != name);
        for (body, header) in [
            (list.clone(), "mcp-method"),
            (list.clone(), "mcp-protocol-version"),
            (
                request("tools/call", json!({"name": "echo", "_meta": meta()})),
                "mcp-name",
            ),
            (
                request("prompts/get", json!({"name": "hi", "_meta": meta()})),
                "mcp-name",
            ),
            (
                request("resources/read", json!({"uri": "x://y", "_meta": meta()})),
                "mcp-name",
            ),
        ] {
            let (status, answer) = post_with(&mut rig, &body, drop(header));
            let (code, message) = refusal(&answer);
            assert_eq!((status, code), (400, mcp::HEADER_MISMATCH), "{header}");
            assert!(
                message.to_lowercase().contains(header) && message.contains("missing"),
                "{message}"
            );
        }
        // Values are case-sensitive; whitespace around them is not a value's.
        let (status, _) = post_with(&mut rig, &list, |h| h[1].1 = "TOOLS/LIST".into());
        assert_eq!(status, 400);
        assert!(rig.child.is_empty());
        let call = request("tools/call", json!({"name": "echo", "_meta": meta()}));
        let (_, out) = {
            let mut headers = stateless_headers(&call);
            headers[2].1 = "  echo  ".into();
            rig.request("POST", "/mcp/echo", headers, Bytes::from(call.to_string()))
        };
        assert!(out.is_empty(), "served: {out:?}");
        rig.child_initializes();
        assert_eq!(rig.child.last().unwrap()["method"], "tools/call");
        // A name's header is asked only of requests that name something.
        let (_, out) = rig.send_stateless(list);
        assert!(!matches!(&out[..], [Output::Respond { .. }]), "{out:?}");
        assert_eq!(rig.child.last().unwrap()["method"], "tools/list");
    }

    /// The messages of the `Data` outputs in `out` (one SSE event each).
    fn events(out: &[Output]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                Output::Data { data, .. } => {
                    let text = std::str::from_utf8(data).unwrap();
                    let line = text.lines().find_map(|l| l.strip_prefix("data: "));
                    Some(serde_json::from_str(line.unwrap()).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_listen_stream_opens_with_its_acknowledgement_and_carries_only_what_it_asked_for() {
        let mut rig = Rig::new();
        let filter = json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]});
        let listen = request(
            "subscriptions/listen",
            json!({"_meta": meta(), "notifications": filter}),
        );
        let (conn, out) = rig.send_stateless(listen);
        assert_eq!(status(&out), 200);
        let ack = events(&out);
        assert_eq!(ack.len(), 1, "{out:?}");
        assert_eq!(ack[0]["method"], "notifications/subscriptions/acknowledged");
        assert_eq!(ack[0]["params"]["notifications"], filter);
        assert_eq!(ack[0]["params"]["_meta"][SUBSCRIPTION_ID], 7);
        // The resource is subscribed to at the server once it is up.
        assert!(events(&rig.child_initializes()).is_empty());
        let subscribe = rig.last_to(ChildId(1));
        assert_eq!(subscribe["method"], "resources/subscribe");
        assert_eq!(subscribe["params"]["uri"], "file:///a");
        let subscribed = json!({"jsonrpc": "2.0", "id": subscribe["id"], "result": {}});
        assert!(
            rig.child_says(subscribed).is_empty(),
            "its answer is not news"
        );
        // What it asked for, tagged; nothing else.
        let changed = |what: &str| json!({"jsonrpc": "2.0", "method": format!("notifications/{what}/list_changed")});
        let carried = events(&rig.child_says(changed("tools")));
        assert_eq!(carried.len(), 1);
        assert_eq!(carried[0]["method"], "notifications/tools/list_changed");
        assert_eq!(carried[0]["params"]["_meta"][SUBSCRIPTION_ID], 7);
        assert!(events(&rig.child_says(changed("prompts"))).is_empty());
        let updated = |uri: &str| json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
        let carried = events(&rig.child_says(updated("file:///a")));
        assert_eq!(carried[0]["params"]["uri"], "file:///a");
        assert!(events(&rig.child_says(updated("file:///b"))).is_empty());
        // The child asking anything of a listener is refused at once.
        let ask = json!({"jsonrpc": "2.0", "id": 41, "method": "roots/list"});
        let before = rig.child.len();
        rig.child_says(ask);
        let refused = &rig.child[before..];
        assert!(
            refused
                .iter()
                .any(|m| m["id"] == 41 && m["error"].is_object()),
            "{refused:?}"
        );
        // Closed by its client: the subscription is released, and the
        // stream hears nothing more.
        rig.bridge.handle_conn_closed(conn, rig.now);
        rig.drain();
        assert_eq!(rig.last_to(ChildId(1))["method"], "resources/unsubscribe");
        assert!(rig.child_says(changed("tools")).is_empty());
        // One whose client does not read is ended, its subscription
        // released, so it costs no one else.
        let listen = request(
            "subscriptions/listen",
            json!({"_meta": meta(), "notifications": {"resourceSubscriptions": ["file:///c"]}}),
        );
        let (slow, _) = rig.send_stateless(listen);
        assert_eq!(rig.last_to(ChildId(1))["params"]["uri"], "file:///c");
        rig.bridge.handle_slow_conn(slow, rig.now);
        let out = rig.drain();
        assert!(
            matches!(out.last(), Some(Output::End { to }) if to.conn == slow),
            "{out:?}"
        );
        let released = rig.last_to(ChildId(1));
        assert_eq!(
            (&released["method"], &released["params"]["uri"]),
            (&json!("resources/unsubscribe"), &json!("file:///c"))
        );
        // Ended by the bridge (the provider stopping): the stream's last
        // message answers its request, then it ends.
        let listen = request(
            "subscriptions/listen",
            json!({"_meta": meta(), "notifications": {"promptsListChanged": true}}),
        );
        rig.send_stateless(listen);
        rig.bridge.stop(rig.now);
        let out = rig.drain();
        let last = events(&out);
        assert_eq!(last.len(), 1, "{out:?}");
        assert_eq!(
            (&last[0]["id"], &last[0]["result"]["resultType"]),
            (&json!(7), &json!("complete"))
        );
        assert!(matches!(out.last(), Some(Output::End { .. })), "{out:?}");
    }

    #[test]
    fn a_listen_request_with_a_malformed_filter_is_invalid_params() {
        let mut rig = Rig::new();
        for params in [
            json!({"_meta": meta()}),
            json!({"_meta": meta(), "notifications": {"toolsListChanged": 1}}),
        ] {
            let listen = request("subscriptions/listen", params);
            let (status, answer) = post_with(&mut rig, &listen, |_| {});
            assert_eq!(
                (status, refusal(&answer).0),
                (400, mcp::INVALID_PARAMS),
                "{answer}"
            );
            assert_eq!(answer["id"], 7);
        }
        assert!(rig.child.is_empty());
    }

    #[test]
    fn a_request_naming_a_log_level_hears_the_servers_log_messages_at_or_above_it_then_its_answer()
    {
        let mut rig = Rig::new();
        let mut asking = meta();
        asking["io.modelcontextprotocol/logLevel"] = json!("warning");
        let call = request("tools/call", json!({"name": "echo", "_meta": asking}));
        let (_, out) = rig.send_stateless(call);
        assert!(
            matches!(&out[..], [Output::Respond { response, .. }] if response.header("content-type") == Some("text/event-stream")),
            "{out:?}"
        );
        rig.child_initializes();
        let sent = rig.last_to(ChildId(1));
        assert_eq!(sent["method"], "tools/call");
        let log = |level: &str| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": level, "data": level}});
        assert!(events(&rig.child_says(log("info"))).is_empty());
        let heard = events(&rig.child_says(log("error")));
        assert_eq!(heard.len(), 1);
        assert_eq!(
            heard[0]["params"],
            json!({"level": "error", "data": "error"})
        );
        let out = rig.answers(ChildId(1), json!({"content": []}));
        let answer = events(&out);
        assert_eq!(
            (&answer[0]["id"], &answer[0]["result"]["resultType"]),
            (&json!(7), &json!("complete"))
        );
        assert!(matches!(out.last(), Some(Output::End { .. })), "{out:?}");
        // One that names no level hears none, and is answered as JSON.
        let call = request("tools/call", json!({"name": "echo", "_meta": meta()}));
        let (_, out) = rig.send_stateless(call);
        assert!(out.is_empty(), "{out:?}");
        assert!(events(&rig.child_says(log("emergency"))).is_empty());
        // A level that is none is refused.
        let mut wrong = meta();
        wrong["io.modelcontextprotocol/logLevel"] = json!("loud");
        let call = request("tools/call", json!({"name": "echo", "_meta": wrong}));
        let (status, answer) = post_with(&mut rig, &call, |_| {});
        assert_eq!(
            (status, refusal(&answer).0),
            (400, mcp::INVALID_PARAMS),
            "{answer}"
        );
    }

    #[test]
    fn a_remote_servers_stateless_clients_have_a_child_that_speaks_their_revision_to_it() {
        let mut spec = ServerSpec::new("far", vec![]);
        spec.remote = Some(crate::upstream::Remote::new(
            crate::http::Url::parse("http://127.0.0.1:7000/mcp").unwrap(),
        ));
        let mut rig = Rig::of(vec![spec], Default::default());
        let post = |rig: &mut Rig, body: Value| {
            let headers = stateless_headers(&body);
            rig.request("POST", "/mcp/far", headers, Bytes::from(body.to_string()))
        };
        // A session's client: the server keeps its session.
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        rig.request("POST", "/mcp/far", vec![], Bytes::from(init.to_string()));
        rig.initializes(ChildId(1));
        assert!(rig
            .lines
            .iter()
            .all(|(_, m)| m["method"] != "server/discover"));
        // A stateless client: a child of its own, which asks the server
        // for the revision before any handshake and, offered it, speaks it.
        post(&mut rig, request("tools/list", json!({"_meta": meta()})));
        let discover = rig.last_to(ChildId(2));
        assert_eq!(discover["method"], "server/discover");
        assert_eq!(
            discover["params"]["_meta"][mcp::PROTOCOL_VERSION_META],
            "2026-07-28"
        );
        assert!(rig
            .lines
            .iter()
            .all(|(child, m)| child.0 != 2 || m["method"] != "initialize"));
        let offered = json!({"supportedVersions": ["2025-11-25", "2026-07-28"],
            "capabilities": {"tools": {}}, "resultType": "complete",
            "_meta": {mcp::SERVER_INFO_META: {"name": "far", "version": "1"}}});
        rig.answers(ChildId(2), offered);
        let sent: Vec<&Value> = (rig.lines.iter())
            .filter(|(child, m)| child.0 == 2 && m["id"] != Value::Null)
            .map(|(_, m)| m)
            .collect();
        let [.., listed, listen] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(listed["method"], "tools/list");
        assert_eq!(
            listed["params"]["_meta"][mcp::PROTOCOL_VERSION_META],
            "2026-07-28"
        );
        // Then the server's own news is listened for, of the lists it
        // offers.
        assert_eq!(listen["method"], "subscriptions/listen");
        assert_eq!(
            listen["params"]["notifications"],
            json!({"toolsListChanged": true})
        );
        // The next one goes to the same child; the session's stays its own.
        post(&mut rig, request("tools/list", json!({"_meta": meta()})));
        assert!(
            rig.lines.iter().all(|(child, _)| child.0 <= 2),
            "{:?}",
            rig.lines
        );
    }
}
