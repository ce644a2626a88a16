//! The bridge's own API, for web clients and scripts that do not speak an
//! MCP transport: REST calls, an event stream per session, a WebSocket
//! envelope, the servers added and removed at run time, figures, and a
//! test page.
//!
//! - `POST /sessions` (`{"server"?, "client_id"?}`) opens a session on a
//!   server (the only one, if `server` is left out) and answers 201 with
//!   its id and the server's capabilities; `GET|DELETE /sessions/{id}`.
//! - `POST /tools/discover` and `POST /tools/call` (`{"session_id"?,
//!   "server"?, "tool"|"name", "params"|"arguments"}`), `GET /tools`,
//!   `GET /resources`, `GET /prompts` (`?server=`): the result alone, a
//!   JSON-RPC error as 502. Without a session, the call is a client of its
//!   own for as long as it waits. The three listings without `?server=`,
//!   with several servers bridged, are every server's, merged (`gather`).
//! - `GET /openapi.json`, `GET /openapi/{name}.json` and
//!   `POST /tools/{server}/{tool}`: the tools as an OpenAPI service
//!   (`openapi`).
//! - `GET /events/{session_id}`: `connected`, then the session's
//!   notifications as `notification` events, and a `heartbeat` every 15 s,
//!   for a session made any way (see `Session` for its views).
//! - `GET /ws` (a WebSocket): `{"type":"create_session","server"?}` or
//!   `{"type":"attach_session","session_id"}`, then JSON-RPC messages and
//!   batches; everything from the server comes back as
//!   `{"type":"response"|"notification"|"request","data":…}`, the session
//!   as `session_created`/`session_attached`, mistakes as
//!   `{"type":"error","error":…}`.
//! - `GET /stats`; `GET /integrations[/{name}]`, `POST /integrations`
//!   (a server's settings) and `DELETE /integrations/{name}` — these three
//!   run commands on this machine, so they take the bridge token, not an
//!   API key.

use std::time::Instant;

use serde_json::{json, Value};

use super::common::{
    envelope, error, event, missed, socket, Pending, Reply, StreamStart, Transport, EVENTS_KIND,
};
use super::registry::{Event, Registry, Routed};
use super::report::{RemoteFigures, Report, ServerFigures};
use super::routes::{Found, Miss, Route};
use super::socket::{Frame, SocketFrame, MAX_BATCH, SUBPROTOCOL};
use super::traced::Answering;
use super::{ChildId, ClientId, ServerSpec, Share};
use crate::http::{Request, Response};
use crate::mcp::{self, Message};
use crate::provider::{ConnId, Output, RequestId};

/// The page that tries a bridged server from a browser.
const TEST_CLIENT: &str = include_str!("../../assets/test_client.html");

impl Registry {
    /// A request for one of the REST routes of [`super::routes`], found
    /// there with its parameters.
    pub(crate) fn rest(&mut self, to: RequestId, request: &Request, found: &Found, now: Instant) {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let param = found.params.first().copied().unwrap_or_default();
        let response = match found.route {
            Route::Socket => return self.accept_socket(to, request),
            Route::OpenSession => return self.open_rest_session(to, &body, now),
            Route::SessionInfo => self.session_info(param),
            Route::EndSession => match self.sessions.contains_key(param) {
                true => {
                    self.end_session(param, now);
                    Response::json(200, json!({"deleted": param}).to_string())
                }
                false => error(404, "no such session"),
            },
            Route::Discover => return self.rest_call(to, request, &body, None, "tools/list", Value::Null, now),
            Route::Call => {
                let name = body.get("tool").or(body.get("name")).cloned().unwrap_or(Value::Null);
                let arguments = body.get("params").or(body.get("arguments")).cloned().unwrap_or(json!({}));
                let params = json!({"name": name, "arguments": arguments});
                return self.rest_call(to, request, &body, None, "tools/call", params, now);
            }
            Route::List => {
                let list = request.path().trim_start_matches('/');
                let server = super::routes::query(request, "server");
                // Without `?server=`, of several servers: the gateway's.
                let method = format!("{list}/list");
                return self.rest_call(to, request, &Value::Null, server, &method, Value::Null, now);
            }
            Route::Stats => Response::json(200, self.stats().to_string()),
            Route::Events => return self.open_events(to, param, now),
            Route::Integrations => {
                let all: Vec<Value> = self.specs.iter().map(|s| self.integration(s)).collect();
                Response::json(200, json!({"integrations": all}).to_string())
            }
            Route::Integration => match self.specs.iter().find(|s| s.name == param) {
                Some(spec) => Response::json(200, self.integration(spec).to_string()),
                None => error(404, "no such integration"),
            },
            Route::AddIntegration => self.add_integration(&body),
            Route::RemoveIntegration => self.remove_integration(param, now),
            Route::Login => match self.specs.iter().find(|s| s.name == param) {
                Some(spec) if spec.remote.is_some() => {
                    let server = spec.name.clone();
                    return self.push(super::Routed::Login { to, server });
                }
                Some(_) => error(400, "not a remote server: it has no login"),
                None => error(404, "no such integration"),
            },
            Route::TestPage => Response::full(200, "text/html; charset=utf-8", TEST_CLIENT)
                .with_header("content-security-policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'"),
            // Dispatched to the transports, or claimed by the gateway (the
            // OpenAPI service's), before it gets here.
            Route::Mcp | Route::Document | Route::Operation => missed(Miss::Path),
        };
        self.respond(to, response);
    }

    /// A call to a server: through a session, or as a client of its own.
    #[allow(clippy::too_many_arguments)]
    fn rest_call(
        &mut self,
        to: RequestId,
        request: &Request,
        body: &Value,
        server: Option<String>,
        method: &str,
        mut params: Value,
        now: Instant,
    ) {
        let session = body["session_id"].as_str();
        self.traces.request(
            Answering::Http(to),
            Some(request),
            method,
            None,
            &mut params,
            session,
            now,
        );
        let (asker, ephemeral) = match body["session_id"].as_str() {
            Some(id) => match self.sessions.get(id) {
                Some(session) => ((session.child, session.client), false),
                None => return self.respond(to, error(404, "no such session")),
            },
            None => {
                let server = server.or_else(|| body["server"].as_str().map(str::to_owned));
                let spec = match self.spec_named(server.as_deref()) {
                    Ok(spec) => spec,
                    Err(response) => return self.respond(to, response),
                };
                match self.ephemeral_client(spec, false, now) {
                    Ok(asker) => (asker, true),
                    Err(full) => return self.respond(to, error(503, &full.message())),
                }
            }
        };
        let reply = Reply::Rest {
            opened: None,
            ephemeral,
        };
        self.ask(asker, to, method, params, reply, now);
    }

    /// The server `name` names, or the only one there is.
    pub(crate) fn spec_named(&self, name: Option<&str>) -> Result<usize, Response> {
        match name {
            Some(name) => self
                .specs
                .iter()
                .position(|s| s.name == name)
                .ok_or_else(|| error(404, &format!("no bridged server is called `{name}`"))),
            None if self.specs.len() == 1 => Ok(0),
            None => Err(error(
                400,
                "name the server: `server` in the body, or ?server= (several are bridged)",
            )),
        }
    }

    /// `POST /sessions`: a session, initialized (its answer names it).
    fn open_rest_session(&mut self, to: RequestId, body: &Value, now: Instant) {
        let spec = match self.spec_named(body["server"].as_str()) {
            Ok(spec) => spec,
            Err(response) => return self.respond(to, response),
        };
        let id = match self.open_session(spec, Transport::Rest, now) {
            Ok(id) => id,
            Err(full) => return self.respond(to, error(503, &full.message())),
        };
        let reply = Reply::Rest {
            opened: Some(id.clone()),
            ephemeral: false,
        };
        self.initialize(to, &id, body, reply, now);
    }

    /// The session's `initialize`, answered from the child's cache.
    pub(crate) fn initialize(
        &mut self,
        to: RequestId,
        id: &str,
        body: &Value,
        reply: Reply,
        now: Instant,
    ) {
        let Some(session) = self.sessions.get(id) else {
            return;
        };
        let asker = (session.child, session.client);
        let name = body["client_id"].as_str().unwrap_or("bridge client");
        let params = json!({
            "protocolVersion": mcp::SESSION_VERSIONS[mcp::SESSION_VERSIONS.len() - 1],
            "capabilities": {},
            "clientInfo": {"name": name, "version": "0"},
        });
        self.ask(asker, to, "initialize", params, reply, now);
    }

    fn session_info(&self, id: &str) -> Response {
        let Some(session) = self.sessions.get(id) else {
            return error(404, "no such session");
        };
        let transport = match session.transport {
            Transport::Streamable => "streamable-http",
            Transport::LegacySse => "sse",
            Transport::Rest => "rest",
            Transport::Socket => "websocket",
        };
        let body = json!({
            "session_id": id,
            "server": self.child_name(session.child),
            "transport": transport,
            "listening": session.viewed(),
            "sockets": session.sockets.len(),
        });
        Response::json(200, body.to_string())
    }

    /// `GET /events/{id}`: `connected`, then what the session is sent —
    /// for any session: it views the session beside its sockets, whose
    /// answers still go to them. An MCP transport's open event stream
    /// (a Streamable `GET`, a legacy SSE stream) is its client's own, and
    /// is not taken from it.
    fn open_events(&mut self, to: RequestId, id: &str, now: Instant) {
        let Some(session) = self.sessions.get(id) else {
            return self.respond(to, error(404, "no such session"));
        };
        if session.stream.is_some() && session.stream_kind != EVENTS_KIND {
            let message = "this session's MCP client follows it on its own event stream";
            return self.respond(to, error(409, message));
        }
        let connected = event(0, "connected", &json!({"session_id": id}).to_string());
        let start = StreamStart {
            response: Response::stream("text/event-stream"),
            kind: EVENTS_KIND,
            greeting: Some(connected),
            last_event: None,
        };
        self.attach_stream(to, id, start, now);
    }

    fn stats(&self) -> Value {
        let servers: Vec<Value> = self
            .specs
            .iter()
            .map(|spec| {
                let children: Vec<Value> = self
                    .children()
                    .filter(|(_, c)| c.spec().name == spec.name)
                    .map(|(_, c)| {
                        json!({
                            "state": format!("{:?}", c.state()).to_lowercase(),
                            "restarts": c.restarts(),
                            "in_flight": c.in_flight(),
                            "clients": c.clients(),
                        })
                    })
                    .collect();
                let mut server = json!({"name": spec.name, "children": children});
                if let Some(remote) = &spec.remote {
                    let status = self
                        .children()
                        .filter(|(_, c)| c.spec().name == spec.name)
                        .find_map(|(_, c)| c.remote_status().cloned())
                        .unwrap_or_default();
                    server["remote"] = json!({
                        "url": remote.url.shown(),
                        "status": status.as_str(),
                        "why": status.why(),
                    });
                }
                server
            })
            .collect();
        json!({"servers": servers, "sessions": self.sessions.len(), "streams": self.streams.len()})
    }

    /// How the login [`Routed::Login`](super::Routed::Login) asked for began: the page to open
    /// (the user signs in there, and the server takes the redirect), or
    /// why it could not.
    pub(crate) fn handle_login_started(&mut self, to: RequestId, started: Result<String, String>) {
        let response = match started {
            Ok(page) => Response::json(200, json!({"authorize_url": page}).to_string()),
            Err(why) => error(409, &why),
        };
        self.respond(to, response);
    }

    fn integration(&self, spec: &ServerSpec) -> Value {
        json!({
            "name": spec.name,
            "command": spec.command,
            "cwd": spec.cwd,
            "env": spec.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "share": match spec.share { Share::Shared => "shared", Share::PerSession => "per-session" },
            "max_restarts": spec.max_restarts,
            "idle_timeout_secs": spec.idle_timeout.map(|d| d.as_secs()),
            "tools": spec.tools.allow,
            "exclude_tools": spec.tools.exclude,
            "url": format!("/mcp/{}", spec.name),
            "remote": spec.remote.as_ref().map(|r| r.url.shown()),
        })
    }

    /// `POST /integrations`: `{"name", "command", "args"?, "env"?, "cwd"?,
    /// "share"?, "tools"?, "exclude_tools"?}` — `command` a program, or a
    /// whole argv.
    fn add_integration(&mut self, body: &Value) -> Response {
        let name = body["name"].as_str().unwrap_or_default();
        if let Some(why) = super::bad_server_name(name) {
            return error(400, &format!("`name`: {why}"));
        }
        if self.specs.iter().any(|s| s.name == name) {
            return error(409, "a server of that name is bridged already");
        }
        let strings = |v: &Value| -> Option<Vec<String>> {
            v.as_array()?
                .iter()
                .map(|a| a.as_str().map(str::to_owned))
                .collect()
        };
        let mut command = match &body["command"] {
            Value::String(program) => vec![program.clone()],
            argv => strings(argv).unwrap_or_default(),
        };
        match &body["args"] {
            Value::Null => {}
            args => match strings(args) {
                Some(args) => command.extend(args),
                None => return error(400, "`args` is an array of strings"),
            },
        }
        if command.first().is_none_or(String::is_empty) {
            return error(
                400,
                "`command` is a program, or an array of a program and its arguments",
            );
        }
        let mut spec = ServerSpec::new(name, command);
        if let Some(env) = body["env"].as_object() {
            spec.env = env
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
        }
        spec.cwd = body["cwd"].as_str().map(str::to_owned);
        for (key, list) in [
            ("tools", &mut spec.tools.allow),
            ("exclude_tools", &mut spec.tools.exclude),
        ] {
            match &body[key] {
                Value::Null => {}
                names => match strings(names) {
                    Some(names) => *list = names,
                    None => {
                        return error(400, &format!("`{key}` is an array of tool names or globs"))
                    }
                },
            }
        }
        spec.share = match body["share"].as_str() {
            None | Some("shared") => Share::Shared,
            Some("per-session") => Share::PerSession,
            Some(other) => {
                return error(
                    400,
                    &format!("`share` is shared or per-session, not `{other}`"),
                )
            }
        };
        let created = self.integration(&spec);
        tracing::info!(server = %spec.name, "MCP server added");
        self.specs.push(spec);
        self.up(Event::ServersChanged);
        Response::json(201, created.to_string())
    }

    /// `DELETE /integrations/{name}`: its sessions end, its children stop.
    /// A configured server goes too, until a new configuration names it.
    fn remove_integration(&mut self, name: &str, now: Instant) -> Response {
        let Some(index) = self.specs.iter().position(|s| s.name == name) else {
            return error(404, "no such integration");
        };
        self.retire(name, now);
        self.specs.remove(index);
        self.configured.remove(name);
        tracing::info!(server = %name, "MCP server removed");
        Response::json(200, json!({"deleted": name}).to_string())
    }

    /// The figures now.
    pub(crate) fn report(&self) -> Report {
        let servers = self
            .specs
            .iter()
            .map(|spec| {
                let children: Vec<_> = self
                    .children()
                    .filter(|(_, c)| c.spec().name == spec.name)
                    .map(|(_, c)| c)
                    .collect();
                let past = self.past.get(&spec.name).copied().unwrap_or_default();
                ServerFigures {
                    name: spec.name.clone(),
                    children: children.iter().map(|c| c.state()).collect(),
                    restarts: past.restarts + children.iter().map(|c| c.restarts()).sum::<u64>(),
                    calls: past.calls,
                    in_flight: children.iter().map(|c| c.in_flight()).sum(),
                    remote: spec.remote.as_ref().map(|remote| RemoteFigures {
                        url: remote.url.shown(),
                        status: children
                            .iter()
                            .find_map(|c| c.remote_status())
                            .cloned()
                            .unwrap_or_default(),
                        refreshes: 0,
                    }),
                }
            })
            .collect();
        Report {
            servers,
            sessions: self.sessions.len(),
            // The gateway's to fill in.
            searches: Default::default(),
        }
    }

    // ---- the WebSocket envelope ----

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
            Some(key) => self.push(Routed::Http(Output::AcceptSocket {
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

    /// A frame from a WebSocket client, parsed.
    pub(crate) fn handle_socket_frame(&mut self, conn: ConnId, frame: SocketFrame, now: Instant) {
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
                    self.push(Routed::Http(Output::ToAgent { conn, text }));
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
                let answering = Answering::Call(child, client, own.to_string().into());
                let session = self.streams.get(&conn).cloned();
                let about = (method.as_str(), Some(&id));
                let session = session.as_deref();
                self.traces
                    .request(answering, None, about.0, about.1, &mut params, session, now);
                let wait = Pending {
                    to: socket(conn),
                    reply: Reply::Socket { id },
                    progress: None,
                    log: None,
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
                self.push(Routed::Http(Output::ToAgent {
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
        self.push(Routed::Http(Output::ToAgent { conn, text }));
    }
}
