//! The bridged servers as network clients reach them: MCP Streamable HTTP
//! at `/mcp/{name}`, in the session revisions (2025-03-26 … 2025-11-25).
//!
//! A client opens a session with `initialize` (answered from the child's
//! cached result, see [`super::BridgedServer`]) and gets an
//! `Mcp-Session-Id`; every later request carries it (400 without it, 404
//! for one this bridge does not know, so the client initializes again).
//! A request is answered with its JSON-RPC response as `application/json`;
//! notifications and responses are accepted with 202. What the server
//! sends on its own (notifications, its requests to the client) goes down
//! the session's `GET` event stream, held (boundedly) until one is open.
//! `DELETE` ends the session.
//!
//! The stateless revision asks `server/discover` first; it is answered
//! "method not found", which clients take as the sign to use `initialize`.
//!
//! Drive it like the other state machines: hand it requests for
//! [`Bridge::handles`] paths (Host, Origin and the API key already
//! checked by the provider), the child processes' lines and exits, and
//! time; carry out every [`Routed`] output.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::{BridgeOutput, BridgedServer, ClientId, Limits, ServerSpec, Share};
use crate::http::{Request, Response};
use crate::mcp::{self, Message};
use crate::provider::{ConnId, Output};

/// Messages held for a session whose event stream is not open; past this
/// the oldest are dropped (a client that never listens cannot grow it).
pub const HELD_PER_SESSION: usize = 256;

/// Sessions open at once; past this `initialize` gets a 503.
pub const MAX_SESSIONS: usize = 1024;

/// How often an open event stream gets a `:` comment, so proxies and
/// clients with read timeouts keep it.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// One running (or startable) child: an index into [`Bridge`]'s children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChildId(pub usize);

/// What the driver carries out.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// An HTTP answer, for the connection it names.
    Http(Output),
    /// Something for a child process to do.
    Child {
        child: ChildId,
        action: BridgeOutput,
    },
}

struct Session {
    child: ChildId,
    client: ClientId,
    /// The connection of its open `GET` event stream.
    stream: Option<ConnId>,
    held: VecDeque<String>,
    /// The last events sent down the stream, for a client that reconnects
    /// with `Last-Event-ID` (at most [`HELD_PER_SESSION`]).
    sent: VecDeque<(u64, String)>,
    next_event: u64,
}

impl Session {
    /// `message` as the stream's next event, remembered for a replay.
    fn event(&mut self, message: String) -> Bytes {
        self.next_event += 1;
        let data = event(self.next_event, &message);
        if self.sent.len() >= HELD_PER_SESSION {
            self.sent.pop_front();
        }
        self.sent.push_back((self.next_event, message));
        data
    }
}

/// Every bridged server, its children and the clients' sessions.
pub struct Bridge {
    specs: Vec<ServerSpec>,
    limits: Limits,
    /// Children by [`ChildId`]; `None` once a per-session child is gone.
    children: Vec<Option<BridgedServer>>,
    /// The shared child of each spec, once started.
    shared: HashMap<usize, ChildId>,
    sessions: HashMap<String, Session>,
    by_client: HashMap<(ChildId, ClientId), String>,
    /// Requests waiting for their response: (child, client, id as JSON) →
    /// the connection that asked, and whether it was `initialize` (its
    /// answer names the session).
    pending: HashMap<(ChildId, ClientId, String), (ConnId, Option<String>)>,
    /// Open event streams: connection → session id.
    streams: HashMap<ConnId, String>,
    /// Seed of session ids, from the driver's randomness.
    seed: [u8; 32],
    /// When the open event streams get their next keep-alive.
    keepalive_at: Option<Instant>,
    next_session: u64,
    out: VecDeque<Routed>,
}

impl Bridge {
    pub fn new(specs: Vec<ServerSpec>, limits: Limits, seed: [u8; 32]) -> Self {
        Bridge {
            specs,
            limits,
            children: Vec::new(),
            shared: HashMap::new(),
            sessions: HashMap::new(),
            by_client: HashMap::new(),
            pending: HashMap::new(),
            streams: HashMap::new(),
            seed,
            keepalive_at: None,
            next_session: 0,
            out: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// Whether a request for `path` is the bridge's.
    pub fn handles(path: &str) -> bool {
        path == "/mcp" || path.starts_with("/mcp/")
    }

    /// The configured servers.
    pub fn specs(&self) -> &[ServerSpec] {
        &self.specs
    }

    /// Every child there is, by id.
    pub fn children(&self) -> impl Iterator<Item = (ChildId, &BridgedServer)> {
        self.children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((ChildId(i), c.as_ref()?)))
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    // ---- input ----

    /// A request for a [`Bridge::handles`] path.
    pub fn handle_request(&mut self, conn: ConnId, request: Request, now: Instant) {
        let name = request
            .path()
            .strip_prefix("/mcp/")
            .unwrap_or_default()
            .trim_end_matches('/');
        let Some(spec) = self.specs.iter().position(|s| s.name == name) else {
            let known: Vec<&str> = self.specs.iter().map(|s| s.name.as_str()).collect();
            let message = format!(
                "no bridged MCP server is called `{name}`; configured: {}",
                if known.is_empty() {
                    "none (start with --server NAME=COMMAND)".to_owned()
                } else {
                    known.join(", ")
                }
            );
            return self.reply_error(conn, 404, mcp::INVALID_REQUEST, &message);
        };
        let session = request.header("mcp-session-id").map(str::to_owned);
        match request.method.as_str() {
            "POST" => self.post(conn, spec, session, &request.body, now),
            "GET" => {
                let last = request
                    .header("last-event-id")
                    .and_then(|v| v.trim().parse().ok());
                self.open_stream(conn, spec, session, last, now);
            }
            "DELETE" => match self.session_of(spec, session.as_deref()) {
                Ok(id) => {
                    self.end_session(&id, now);
                    self.respond(conn, Response::json(200, "{}"));
                }
                Err((status, message)) => {
                    self.reply_error(conn, status, mcp::INVALID_REQUEST, &message)
                }
            },
            _ => self.respond(
                conn,
                Response::json(
                    405,
                    mcp::error(
                        &Value::Null,
                        mcp::INVALID_REQUEST,
                        "use POST, GET or DELETE",
                        None,
                    ),
                )
                .with_header("allow", "GET, POST, DELETE"),
            ),
        }
    }

    /// The connection closed: its event stream, or its wait for an answer,
    /// ends (the session stays until `DELETE`).
    pub fn handle_conn_closed(&mut self, conn: ConnId) {
        if let Some(id) = self.streams.remove(&conn) {
            if let Some(session) = self.sessions.get_mut(&id) {
                session.stream = None;
            }
        }
        self.pending.retain(|_, (c, _)| *c != conn);
    }

    pub fn handle_spawned(&mut self, child: ChildId, now: Instant) {
        self.on_child(child, |c| c.handle_spawned(now));
    }

    pub fn handle_spawn_failed(&mut self, child: ChildId, error: &str, now: Instant) {
        self.on_child(child, |c| c.handle_spawn_failed(error, now));
    }

    pub fn handle_child_line(&mut self, child: ChildId, line: &str, now: Instant) {
        self.on_child(child, |c| c.handle_child_line(line, now));
    }

    pub fn handle_child_exit(&mut self, child: ChildId, now: Instant) {
        self.on_child(child, |c| c.handle_child_exit(now));
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.keepalive_at.is_some_and(|at| at <= now) {
            self.keepalive_at = (!self.streams.is_empty()).then(|| now + KEEPALIVE);
            for &conn in self.streams.keys() {
                self.out.push_back(Routed::Http(Output::Data {
                    conn,
                    data: Bytes::from_static(b":\n\n"),
                }));
            }
        }
        for i in 0..self.children.len() {
            if self.children[i]
                .as_ref()
                .and_then(BridgedServer::poll_timeout)
                .is_some_and(|at| at <= now)
            {
                self.on_child(ChildId(i), |c| c.handle_timeout(now));
            }
        }
    }

    // ---- commands ----

    /// Stops every child (the process is shutting down).
    pub fn stop(&mut self, now: Instant) {
        for i in 0..self.children.len() {
            self.on_child(ChildId(i), |c| c.stop(now));
        }
    }

    // ---- output ----

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.children
            .iter()
            .flatten()
            .filter_map(BridgedServer::poll_timeout)
            .chain(self.keepalive_at)
            .min()
    }

    pub fn poll_output(&mut self) -> Option<Routed> {
        self.out.pop_front()
    }

    // ---- the transport ----

    fn post(
        &mut self,
        conn: ConnId,
        spec: usize,
        session: Option<String>,
        body: &[u8],
        now: Instant,
    ) {
        let text = String::from_utf8_lossy(body);
        if text.trim_start().starts_with('[') {
            return self.reply_error(
                conn,
                400,
                mcp::INVALID_REQUEST,
                "batches are not supported: send one message per request",
            );
        }
        let message = match mcp::parse(&text) {
            Ok(message) => message,
            Err(invalid) => return self.respond(conn, Response::json(400, invalid.reply())),
        };
        let is_initialize =
            matches!(&message, Message::Request { method, .. } if method == "initialize");
        if let Message::Request { id, method, .. } = &message {
            if method == "server/discover" && session.is_none() {
                let reply = mcp::error(
                    id,
                    mcp::METHOD_NOT_FOUND,
                    "server/discover: this bridge speaks the initialize handshake",
                    None,
                );
                return self.respond(conn, Response::json(200, reply));
            }
        }
        let id = if is_initialize {
            if session.is_some() {
                return self.reply_error(
                    conn,
                    400,
                    mcp::INVALID_REQUEST,
                    "initialize opens a session: send it without Mcp-Session-Id",
                );
            }
            match self.open_session(spec, now) {
                Some(id) => id,
                None => {
                    return self.reply_error(
                        conn,
                        503,
                        mcp::INVALID_REQUEST,
                        "too many MCP sessions are open",
                    )
                }
            }
        } else {
            match self.session_of(spec, session.as_deref()) {
                Ok(id) => id,
                Err((status, message)) => {
                    return self.reply_error(conn, status, mcp::INVALID_REQUEST, &message)
                }
            }
        };
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let (child, client) = (session.child, session.client);
        match &message {
            Message::Request { id: request_id, .. } => {
                let named = is_initialize.then(|| id.clone());
                self.pending
                    .insert((child, client, request_id.to_string()), (conn, named));
            }
            Message::Notification { .. } | Message::Response { .. } => {
                self.respond(conn, Response::full(202, "application/json", Bytes::new()));
            }
        }
        self.on_child(child, |c| c.handle_client_message(client, message, now));
    }

    /// A session's `GET` event stream; with `Last-Event-ID`, the events
    /// after that one are sent again first.
    fn open_stream(
        &mut self,
        conn: ConnId,
        spec: usize,
        session: Option<String>,
        last_event: Option<u64>,
        now: Instant,
    ) {
        let id = match self.session_of(spec, session.as_deref()) {
            Ok(id) => id,
            Err((status, message)) => {
                return self.reply_error(conn, status, mcp::INVALID_REQUEST, &message)
            }
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            return;
        };
        let replaced = session.stream.replace(conn);
        let mut events: Vec<Bytes> = match last_event {
            Some(last) => session
                .sent
                .iter()
                .filter(|(n, _)| *n > last)
                .map(|(n, message)| event(*n, message))
                .collect(),
            None => Vec::new(),
        };
        let held: Vec<String> = session.held.drain(..).collect();
        events.extend(held.into_iter().map(|message| session.event(message)));
        if let Some(old) = replaced {
            self.streams.remove(&old);
            self.out.push_back(Routed::Http(Output::End { conn: old }));
        }
        self.streams.insert(conn, id.clone());
        self.keepalive_at.get_or_insert(now + KEEPALIVE);
        self.respond(
            conn,
            Response::stream("text/event-stream").with_header("mcp-session-id", id),
        );
        for data in events {
            self.out
                .push_back(Routed::Http(Output::Data { conn, data }));
        }
    }

    /// A new session's id, its client opened on the right child.
    fn open_session(&mut self, spec: usize, now: Instant) -> Option<String> {
        if self.sessions.len() >= MAX_SESSIONS {
            return None;
        }
        let child = match (self.specs[spec].share, self.shared.get(&spec)) {
            (Share::Shared, Some(&child)) => child,
            (share, _) => {
                let child = ChildId(self.children.len());
                self.children.push(Some(BridgedServer::new(
                    self.specs[spec].clone(),
                    self.limits.clone(),
                    now,
                )));
                if share == Share::Shared {
                    self.shared.insert(spec, child);
                }
                child
            }
        };
        let client = self.children[child.0].as_mut()?.open_client(now);
        self.next_session += 1;
        let id = crate::auth::derive_token(&[&self.seed, &self.next_session.to_le_bytes()]);
        self.sessions.insert(
            id.clone(),
            Session {
                child,
                client,
                stream: None,
                held: VecDeque::new(),
                sent: VecDeque::new(),
                next_event: 0,
            },
        );
        self.by_client.insert((child, client), id.clone());
        Some(id)
    }

    /// The session `id` names, if it belongs to server `spec`; else the
    /// status and message to answer with.
    fn session_of(&self, spec: usize, id: Option<&str>) -> Result<String, (u16, String)> {
        let id = id.ok_or((
            400,
            "missing Mcp-Session-Id: send initialize first".to_owned(),
        ))?;
        let known = self.sessions.get(id).is_some_and(|s| {
            self.children
                .get(s.child.0)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.spec().name == self.specs[spec].name)
        });
        if known {
            Ok(id.to_owned())
        } else {
            Err((
                404,
                "unknown or expired MCP session: initialize again".to_owned(),
            ))
        }
    }

    fn end_session(&mut self, id: &str, now: Instant) {
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        self.by_client.remove(&(session.child, session.client));
        if let Some(conn) = session.stream {
            self.streams.remove(&conn);
            self.out.push_back(Routed::Http(Output::End { conn }));
        }
        self.pending
            .retain(|(child, client, _), _| (*child, *client) != (session.child, session.client));
        let per_session = self.specs.iter().any(|s| {
            s.share == Share::PerSession
                && self
                    .children
                    .get(session.child.0)
                    .and_then(Option::as_ref)
                    .is_some_and(|c| c.spec().name == s.name)
        });
        self.on_child(session.child, |c| {
            c.close_client(session.client, now);
            if per_session {
                c.stop(now);
            }
        });
    }

    /// Runs `f` on a child, then routes what it output.
    fn on_child(&mut self, child: ChildId, f: impl FnOnce(&mut BridgedServer)) {
        let Some(Some(server)) = self.children.get_mut(child.0) else {
            return;
        };
        f(server);
        let outputs: Vec<BridgeOutput> = std::iter::from_fn(|| server.poll_output()).collect();
        for output in outputs {
            match output {
                BridgeOutput::ToClient { client, message } => {
                    self.out_for_client(child, client, message)
                }
                action => self.out.push_back(Routed::Child { child, action }),
            }
        }
        // A per-session child that stopped for good is forgotten.
        let gone = self
            .children
            .get(child.0)
            .and_then(Option::as_ref)
            .is_some_and(|c| {
                c.spec().share == Share::PerSession
                    && c.clients() == 0
                    && c.state() == super::ChildState::Stopped
            });
        if gone {
            self.children[child.0] = None;
        }
    }

    /// A message for a client: the answer some connection waits for, or
    /// an event for its session's stream.
    fn out_for_client(&mut self, child: ChildId, client: ClientId, message: String) {
        let answer_to = serde_json::from_str::<Value>(&message).ok().and_then(|v| {
            let is_response = v.get("method").is_none();
            is_response
                .then(|| v.get("id").map(Value::to_string))
                .flatten()
        });
        if let Some(id) = answer_to {
            if let Some((conn, named)) = self.pending.remove(&(child, client, id)) {
                let mut response = Response::json(200, message);
                if let Some(session) = named {
                    response = response.with_header("mcp-session-id", session);
                }
                return self.respond(conn, response);
            }
        }
        let Some(session) = self
            .by_client
            .get(&(child, client))
            .and_then(|id| self.sessions.get_mut(id))
        else {
            return;
        };
        match session.stream {
            Some(conn) => {
                let data = session.event(message);
                self.out
                    .push_back(Routed::Http(Output::Data { conn, data }));
            }
            None => {
                if session.held.len() >= HELD_PER_SESSION {
                    session.held.pop_front();
                    tracing::warn!(
                        "an MCP session's client is not listening: its oldest message was dropped"
                    );
                }
                session.held.push_back(message);
            }
        }
    }

    fn respond(&mut self, conn: ConnId, response: Response) {
        self.out
            .push_back(Routed::Http(Output::Respond { conn, response }));
    }

    fn reply_error(&mut self, conn: ConnId, status: u16, code: i64, message: &str) {
        let body = mcp::error(&Value::Null, code, message, None);
        self.respond(conn, Response::json(status, body));
    }
}

/// One message as a server-sent event numbered `id`.
fn event(id: u64, message: &str) -> Bytes {
    Bytes::from(format!("id: {id}\nevent: message\ndata: {message}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Body;
    use serde_json::json;

    /// A bridge of one server, `echo`, whose child the test plays.
    struct Rig {
        bridge: Bridge,
        now: Instant,
        conn: u64,
        /// Lines the child was sent.
        child: Vec<Value>,
    }

    impl Rig {
        fn new() -> Rig {
            let spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
            Rig {
                bridge: Bridge::new(vec![spec], Limits::default(), [7; 32]),
                now: Instant::now(),
                conn: 0,
                child: Vec::new(),
            }
        }

        /// Sends a request on a new connection: its id and the HTTP outputs.
        fn send(
            &mut self,
            method: &str,
            session: Option<&str>,
            body: Value,
            last: Option<u64>,
        ) -> (ConnId, Vec<Output>) {
            self.conn += 1;
            let conn = ConnId(self.conn);
            let mut headers = vec![];
            if let Some(s) = session {
                headers.push(("mcp-session-id".to_owned(), s.to_owned()));
            }
            if let Some(n) = last {
                headers.push(("last-event-id".to_owned(), n.to_string()));
            }
            let body = if body.is_null() {
                Bytes::new()
            } else {
                Bytes::from(body.to_string())
            };
            let request = Request::new(method, "/mcp/echo", headers, body);
            self.bridge.handle_request(conn, request, self.now);
            (conn, self.drain())
        }

        /// HTTP outputs; child actions carried out (a spawn succeeds, the
        /// child's lines are kept).
        fn drain(&mut self) -> Vec<Output> {
            let mut http = Vec::new();
            while let Some(routed) = self.bridge.poll_output() {
                match routed {
                    Routed::Http(o) => http.push(o),
                    Routed::Child {
                        child,
                        action: BridgeOutput::Spawn { .. },
                    } => {
                        self.bridge.handle_spawned(child, self.now);
                    }
                    Routed::Child {
                        action: BridgeOutput::ToChild(line),
                        ..
                    } => {
                        self.child.push(serde_json::from_str(&line).unwrap());
                    }
                    Routed::Child { .. } => {}
                }
            }
            http
        }

        fn child_says(&mut self, message: Value) -> Vec<Output> {
            self.bridge
                .handle_child_line(ChildId(0), &message.to_string(), self.now);
            self.drain()
        }

        /// An initialized session: its id.
        fn session(&mut self) -> String {
            let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
            self.send("POST", None, init, None);
            let asked = self
                .child
                .iter()
                .find(|m| m["method"] == "initialize")
                .unwrap()["id"]
                .clone();
            let result = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "echo", "version": "1"}});
            let out = self.child_says(json!({"jsonrpc": "2.0", "id": asked, "result": result}));
            match &out[..] {
                [Output::Respond { response, .. }] => {
                    response.header("mcp-session-id").unwrap().to_owned()
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn status(out: &[Output]) -> u16 {
        match out {
            [Output::Respond { response, .. }, ..] => response.status,
            other => panic!("{other:?}"),
        }
    }

    fn data(out: &Output) -> String {
        match out {
            Output::Data { data, .. } => String::from_utf8_lossy(data).into_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_session_opens_with_initialize_and_later_requests_need_it() {
        let mut rig = Rig::new();
        let session = rig.session();
        assert_eq!(session.len(), 64);
        let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
        assert_eq!(status(&rig.send("POST", None, ping.clone(), None).1), 400);
        assert_eq!(
            status(&rig.send("POST", Some("nope"), ping.clone(), None).1),
            404
        );
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(status(&rig.send("POST", Some(&session), note, None).1), 202);
        let (conn, out) = rig.send("POST", Some(&session), ping, None);
        assert!(out.is_empty(), "answered when the child answers");
        let sent = rig.child.last().unwrap().clone();
        assert_eq!(sent["method"], "ping");
        let out = rig.child_says(json!({"jsonrpc": "2.0", "id": sent["id"], "result": {}}));
        match &out[..] {
            [Output::Respond { conn: c, response }] => {
                assert_eq!(*c, conn);
                assert_eq!(
                    response.body,
                    Body::Full(Bytes::from(r#"{"id":9,"jsonrpc":"2.0","result":{}}"#))
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            status(&rig.send("DELETE", Some(&session), Value::Null, None).1),
            200
        );
        assert_eq!(
            status(&rig.send("GET", Some(&session), Value::Null, None).1),
            404
        );
    }

    #[test]
    fn the_event_stream_numbers_its_events_replays_after_last_event_id_and_keeps_alive() {
        let mut rig = Rig::new();
        let session = rig.session();
        let note = |n: u32| json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": n}});
        // Held until a stream opens, then sent as events 1 and 2.
        rig.child_says(note(1));
        let (stream, out) = rig.send("GET", Some(&session), Value::Null, None);
        assert_eq!(status(&out), 200);
        assert!(data(&out[1]).starts_with("id: 1\nevent: message\ndata: "));
        rig.child_says(note(2));
        rig.child_says(note(3));
        assert_eq!(rig.bridge.poll_timeout(), Some(rig.now + KEEPALIVE));
        rig.now += KEEPALIVE;
        rig.bridge.handle_timeout(rig.now);
        let out = rig.drain();
        assert!(matches!(&out[..], [Output::Data { conn, .. }] if *conn == stream));
        assert_eq!(data(&out[0]), ":\n\n");
        // A reconnect after event 1 gets 2 and 3 again; the old stream ends.
        let (_, out) = rig.send("GET", Some(&session), Value::Null, Some(1));
        assert!(matches!(out[0], Output::End { conn } if conn == stream));
        let events: Vec<String> = out[2..].iter().map(data).collect();
        assert_eq!(events.len(), 2);
        assert!(events[0].starts_with("id: 2\n") && events[0].contains(r#""n":2"#));
        assert!(events[1].starts_with("id: 3\n") && events[1].contains(r#""n":3"#));
    }
}
