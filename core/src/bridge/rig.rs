//! A whole [`Bridge`] driven by the tests of its transports and routes:
//! requests fed in on new connections, the child's actions carried out (a
//! spawn succeeds, its lines are kept), the child played by the test, on a
//! clock the test moves.

use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use super::registry::Routed;
use super::{BridgeOutput, ChildId, Limits, ServerSpec};
use crate::gateway::Bridge;
use crate::http::{Body, Request};
use crate::provider::{ConnId, Output};

/// A bridge whose children the test plays (one server, `echo`, unless
/// made [`Rig::of`] other servers).
pub(crate) struct Rig {
    pub(crate) bridge: Bridge,
    pub(crate) now: Instant,
    conn: u64,
    /// Lines the children were sent, in order.
    pub(crate) child: Vec<Value>,
    /// The same, each with the child it was for.
    pub(crate) lines: Vec<(ChildId, Value)>,
    /// Lazy servers' runs the bridge asked to keep: file and contents.
    pub(crate) kept: Vec<(String, String)>,
}

impl Rig {
    pub(crate) fn new() -> Rig {
        Rig::with(Limits::default())
    }

    pub(crate) fn with(limits: Limits) -> Rig {
        Rig::of(
            vec![ServerSpec::new("echo", vec!["echo-mcp".into()])],
            limits,
        )
    }

    pub(crate) fn of(specs: Vec<ServerSpec>, limits: Limits) -> Rig {
        let now = Instant::now();
        Rig {
            bridge: Bridge::new(specs, limits, [7; 32], now),
            now,
            conn: 0,
            child: Vec::new(),
            lines: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// A request to `/mcp/echo` on a new connection, with its session and
    /// `Last-Event-ID` when given: the connection and the HTTP outputs.
    pub(crate) fn send(
        &mut self,
        method: &str,
        session: Option<&str>,
        body: Value,
        last: Option<u64>,
    ) -> (ConnId, Vec<Output>) {
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
        self.request(method, "/mcp/echo", headers, body)
    }

    /// A stateless POST of `body` to `/mcp/echo`, with the standard
    /// headers a client of that revision sends (see [`stateless_headers`]).
    pub(crate) fn send_stateless(&mut self, body: Value) -> (ConnId, Vec<Output>) {
        let headers = stateless_headers(&body);
        self.request("POST", "/mcp/echo", headers, Bytes::from(body.to_string()))
    }

    /// Any request on a new connection: the connection and the HTTP
    /// outputs.
    pub(crate) fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> (ConnId, Vec<Output>) {
        self.conn += 1;
        let conn = ConnId(self.conn);
        let request = Request::new(method, target, headers, body).expect("a canonical path");
        self.bridge.handle_request(conn, request, self.now);
        (conn, self.drain())
    }

    /// A request as the drivers hand it on (`Hub::pump`): first the checks
    /// every route has (local Host and Origin, the API key), made by a
    /// provider whose API key is `key` and bridge token `bridge`; then, if
    /// it passes them, the bridge. The HTTP outputs.
    pub(crate) fn admitted(
        &mut self,
        method: &str,
        target: &str,
        mut headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Vec<Output> {
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"))
        {
            headers.push(("host".to_owned(), "127.0.0.1:8788".to_owned()));
        }
        let config = crate::Config::new(&["key"], "bridge");
        let wall = std::time::SystemTime::UNIX_EPOCH;
        let mut provider = crate::Provider::new(config, self.now, wall);
        let request =
            Request::new(method, target, headers.clone(), body.clone()).expect("a canonical path");
        let guard = super::guard(method, request.path()).expect("a bridge path");
        if provider.admit_bridge(ConnId(0), &request, guard, self.now) {
            self.request(method, target, headers, body).1
        } else {
            std::iter::from_fn(|| provider.poll_output()).collect()
        }
    }

    /// HTTP outputs; child actions carried out (a spawn or a remote
    /// server's connection succeeds, the child's lines are kept).
    pub(crate) fn drain(&mut self) -> Vec<Output> {
        let mut http = Vec::new();
        while let Some(routed) = self.bridge.poll_output() {
            match routed {
                Routed::Http(o) => http.push(o),
                Routed::Child {
                    child,
                    action: BridgeOutput::Spawn { .. } | BridgeOutput::Connect { .. },
                } => {
                    self.bridge.handle_spawned(child, self.now);
                }
                Routed::Child {
                    child,
                    action: BridgeOutput::ToChild { line, .. },
                } => {
                    let line: Value = serde_json::from_str(&line).unwrap();
                    self.lines.push((child, line.clone()));
                    self.child.push(line);
                }
                Routed::Keep { file, contents } => self.kept.push((file, contents)),
                Routed::Child { .. } | Routed::Login { .. } => {}
            }
        }
        http
    }

    /// The first child says `message`: the HTTP outputs.
    pub(crate) fn child_says(&mut self, message: Value) -> Vec<Output> {
        self.says(ChildId(1), message)
    }

    /// `child` says `message`: the HTTP outputs.
    pub(crate) fn says(&mut self, child: ChildId, message: Value) -> Vec<Output> {
        self.bridge
            .handle_child_line(child, &message.to_string(), self.now);
        self.drain()
    }

    /// The last request `child` was sent.
    pub(crate) fn last_to(&self, child: ChildId) -> Value {
        let sent = self
            .lines
            .iter()
            .rev()
            .find(|(c, m)| *c == child && m["id"] != Value::Null);
        sent.expect("a request for the child").1.clone()
    }

    /// `child` answers the last request it was sent with `result`: the
    /// HTTP outputs.
    pub(crate) fn answers(&mut self, child: ChildId, result: Value) -> Vec<Output> {
        let asked = self.last_to(child)["id"].clone();
        self.says(
            child,
            json!({"jsonrpc": "2.0", "id": asked, "result": result}),
        )
    }

    /// `child` answers the `initialize` it was sent (the last request
    /// it was sent): the HTTP outputs.
    pub(crate) fn initializes(&mut self, child: ChildId) -> Vec<Output> {
        assert_eq!(self.last_to(child)["method"], "initialize");
        let result = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "echo", "version": "1"}});
        self.answers(child, result)
    }

    /// The first child answers its `initialize`: the HTTP outputs.
    pub(crate) fn child_initializes(&mut self) -> Vec<Output> {
        self.initializes(ChildId(1))
    }

    /// An initialized session: its id.
    pub(crate) fn session(&mut self) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        self.send("POST", None, init, None);
        match &self.child_initializes()[..] {
            [Output::Respond { response, .. }] => {
                response.header("mcp-session-id").unwrap().to_owned()
            }
            other => panic!("{other:?}"),
        }
    }
}

/// The status of the first answer in `out`.
pub(crate) fn status(out: &[Output]) -> u16 {
    match out {
        [Output::Respond { response, .. }, ..] => response.status,
        other => panic!("{other:?}"),
    }
}

/// The JSON of the one whole answer in `out`.
pub(crate) fn answered(out: &[Output]) -> Value {
    match out {
        [Output::Respond { response, .. }] => match &response.body {
            Body::Full(bytes) => serde_json::from_slice(bytes).unwrap(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

/// The headers a stateless client sends with `body`: its protocol
/// version, its method, and the name of what it names.
pub(crate) fn stateless_headers(body: &Value) -> Vec<(String, String)> {
    let params = &body["params"];
    let version = params["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str();
    let name = params["name"].as_str().or(params["uri"].as_str());
    let headers = [
        ("mcp-protocol-version", version),
        ("mcp-method", body["method"].as_str()),
        ("mcp-name", name),
    ];
    let sent = headers.into_iter().filter_map(|(k, v)| Some((k, v?)));
    sent.map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}
