//! MCP Streamable HTTP at `/mcp/{name}`, in the session revisions
//! (2025-03-26 … 2025-11-25).
//!
//! A client opens a session with `initialize` (answered from the child's
//! cached result, see [`super::BridgedServer`]) and gets an
//! `Mcp-Session-Id`; every later request carries it (400 without it, 404
//! for one this bridge does not know, so the client initializes again).
//! A request is answered with its JSON-RPC response as `application/json`;
//! notifications and responses are accepted with 202. What the server
//! sends on its own (notifications, its requests to the client) goes down
//! the session's `GET` event stream, numbered, held (boundedly) until one
//! is open and replayed after `Last-Event-ID`. `DELETE` ends the session.
//! A request without a session that speaks the stateless revision goes to
//! `stateless.rs`.
//!
//! Also the HTTP+SSE transport of the 2024-11-05 revision, which older
//! clients and tools still speak: `GET /mcp/{name}/sse` opens a session
//! and its event stream, whose first event, `endpoint`, names where to
//! POST (`/mcp/{name}/messages?session_id=…`); each POST is accepted with
//! 202 and every message for the client, answers included, comes down the
//! stream as a `message` event. Closing the stream ends the session.

use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;

use super::common::{
    event, progress_token, Pending, Reply, StreamStart, Target, Transport, MESSAGE_KIND,
};
use super::registry::{Event, Registry};
use super::stateless::{is_stateless, stateless_header};
use super::traced::Answering;
use super::verbatim::FromClient;
use crate::http::{Request, Response};
use crate::mcp::{self, Message};
use crate::provider::RequestId;

impl Registry {
    /// A request for `/mcp/NAME`, or for `/mcp` (every server: see
    /// `aggregate`).
    pub(crate) fn streamable(
        &mut self,
        to: RequestId,
        target: Target,
        request: &Request,
        now: Instant,
    ) {
        let session = request.header("mcp-session-id").map(str::to_owned);
        let stateless = session.is_none() && stateless_header(request);
        match request.method.as_ref() {
            "POST" => {
                let FromClient {
                    mut message,
                    verbatim,
                } = match parse_one(&request.body) {
                    Ok(read) => read,
                    Err(reply) => return self.respond(to, reply),
                };
                if let Message::Request { id, method, params } = &mut message {
                    let answering = Answering::Http(to);
                    let (method, id) = (method.as_str(), Some(&*id));
                    let session = session.as_deref();
                    self.traces.request_written(
                        answering,
                        Some(request),
                        method,
                        id,
                        params,
                        session,
                        now,
                    );
                }
                if session.is_none() && (stateless || is_stateless(&message)) {
                    self.stateless(to, target, request, message, now);
                } else {
                    let read = FromClient { message, verbatim };
                    self.post(to, target, session, read, now);
                }
            }
            "GET" | "DELETE" if stateless => self.stateless_refusal(to),
            "GET" => match self.session_of(target, session) {
                Ok(id) => {
                    let last = request
                        .header("last-event-id")
                        .and_then(|v| v.trim().parse().ok());
                    let response = Response::stream("text/event-stream")
                        .with_header("mcp-session-id", id.clone());
                    let start = StreamStart {
                        response,
                        kind: MESSAGE_KIND,
                        greeting: None,
                        last_event: last,
                    };
                    self.attach_stream(to, &id, start, now);
                }
                Err((status, message)) => {
                    self.reply_error(to, status, mcp::INVALID_REQUEST, &message)
                }
            },
            "DELETE" => match self.session_of(target, session) {
                Ok(id) => {
                    self.end_session(&id, now);
                    self.respond(to, Response::json(200, "{}"));
                }
                Err((status, message)) => {
                    self.reply_error(to, status, mcp::INVALID_REQUEST, &message)
                }
            },
            _ => self.respond(
                to,
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

    fn post(
        &mut self,
        to: RequestId,
        target: Target,
        session: Option<String>,
        read: FromClient,
        now: Instant,
    ) {
        let FromClient { message, verbatim } = read;
        let is_initialize =
            matches!(&message, Message::Request { method, .. } if method == "initialize");
        if is_initialize && session.is_some() {
            return self.reply_error(
                to,
                400,
                mcp::INVALID_REQUEST,
                "initialize opens a session: send it without Mcp-Session-Id",
            );
        }
        let id = match (target, is_initialize) {
            (Target::Every, true) => {
                if let Message::Request { id, params, .. } = message {
                    self.up(Event::Open {
                        to,
                        id,
                        params: params.into(),
                        now,
                    });
                }
                return;
            }
            (Target::Server(spec), true) => {
                match self.open_session(spec, Transport::Streamable, now) {
                    Ok(id) => id,
                    Err(full) => {
                        return self.reply_error(to, 503, mcp::INVALID_REQUEST, &full.message())
                    }
                }
            }
            (_, false) => match self.session_of(target, session) {
                Ok(id) => id,
                Err((status, message)) => {
                    return self.reply_error(to, status, mcp::INVALID_REQUEST, &message)
                }
            },
        };
        if target == Target::Every {
            let session = id;
            return self.up(Event::Message {
                to,
                session,
                message,
                now,
            });
        }
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let (child, client) = (session.child, session.client);
        let wait = match &message {
            Message::Request { params, .. } => {
                let progress = progress_token(params.meta());
                if progress.is_some() {
                    self.respond(to, Response::stream("text/event-stream"));
                }
                let opened = is_initialize.then_some(id);
                Some(Pending {
                    to,
                    reply: Reply::Json { opened },
                    progress,
                    log: None,
                })
            }
            Message::Notification { .. } | Message::Response { .. } => {
                self.respond(to, Response::full(202, "application/json", Bytes::new()));
                None
            }
        };
        self.forward(child, client, FromClient { message, verbatim }, wait, now);
    }

    // ---- the HTTP+SSE transport (2024-11-05) ----

    /// `GET /mcp/NAME/sse`.
    pub(crate) fn open_legacy(&mut self, to: RequestId, spec: usize, now: Instant) {
        let id = match self.open_session(spec, Transport::LegacySse, now) {
            Ok(id) => id,
            Err(full) => return self.reply_error(to, 503, mcp::INVALID_REQUEST, &full.message()),
        };
        let endpoint = format!("/mcp/{}/messages?session_id={id}", self.specs[spec].name);
        let greeting = event(0, "endpoint", &endpoint);
        let stream = Response::stream("text/event-stream");
        let start = StreamStart {
            response: stream,
            kind: MESSAGE_KIND,
            greeting: Some(greeting),
            last_event: None,
        };
        self.attach_stream(to, &id, start, now);
    }

    /// `POST /mcp/NAME/messages?session_id=…`.
    pub(crate) fn post_legacy(
        &mut self,
        to: RequestId,
        spec: usize,
        request: &Request,
        now: Instant,
    ) {
        let session = request.target().split_once('?').and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("session_id="))
        });
        let id = match self.session_of(Target::Server(spec), session) {
            Ok(id) => id,
            Err((status, message)) => {
                return self.reply_error(to, status, mcp::INVALID_REQUEST, &message)
            }
        };
        let FromClient {
            mut message,
            verbatim,
        } = match parse_one(&request.body) {
            Ok(read) => read,
            Err(reply) => return self.respond(to, reply),
        };
        let Some(session) = self.sessions.get(&id) else {
            return;
        };
        let (child, client) = (session.child, session.client);
        if let Message::Request {
            id: asked,
            method,
            params,
        } = &mut message
        {
            // Its answer comes down the session's stream.
            let answering = Answering::Call(child, client, mcp::id_text(asked).into());
            let (method, asked) = (method.as_str(), Some(&*asked));
            self.traces.request_written(
                answering,
                Some(request),
                method,
                asked,
                params,
                Some(&id),
                now,
            );
        }
        self.respond(
            to,
            Response::full(202, "text/plain", Bytes::from_static(b"Accepted")),
        );
        self.forward(child, client, FromClient { message, verbatim }, None, now);
    }
}

/// One JSON-RPC message from a POST body, or the 400 to answer with.
pub(crate) fn parse_one(body: &[u8]) -> Result<FromClient, Response> {
    let text = crate::text::lossy(body);
    if text.trim_start().starts_with('[') {
        let reply = mcp::error(
            &Value::Null,
            mcp::INVALID_REQUEST,
            "batches are not supported: send one message per request",
            None,
        );
        return Err(Response::json(400, reply));
    }
    FromClient::parse(&text).map_err(|invalid| Response::json(400, invalid.reply()))
}

#[cfg(test)]
mod tests {
    use super::super::rig::{answered, status, Rig};
    use super::super::{ChildId, Limits, KEEPALIVE};
    use super::*;
    use crate::http::Body;
    use crate::provider::Output;
    use serde_json::json;

    /// Another session on the child that answered `initialize` already:
    /// its id, or the refusal's status and body.
    fn another_session(rig: &mut Rig) -> Result<String, (u16, String)> {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        match &rig.send("POST", None, init, None).1[..] {
            [Output::Respond { response, .. }] => match response.header("mcp-session-id") {
                Some(id) => Ok(id.to_owned()),
                None => Err((response.status, format!("{:?}", response.body))),
            },
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
            [Output::Respond { to, response }] => {
                assert_eq!(to.conn, conn);
                assert_eq!(
                    response.body,
                    Body::Full(Bytes::from(r#"{"jsonrpc":"2.0","id":9,"result":{}}"#))
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

    /// A `method` request for `target` with `body` (none for null) through
    /// the provider's checks, with the API key and `headers` (one named as
    /// a header already there replaces it): the HTTP outputs.
    fn checked(
        rig: &mut Rig,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Vec<Output> {
        let mut all = vec![("authorization".to_owned(), "Bearer key".to_owned())];
        for (name, value) in headers {
            all.retain(|(k, _)| k != name);
            all.push((name.to_string(), value.to_string()));
        }
        let body = match body {
            Value::Null => Bytes::new(),
            body => Bytes::from(body.to_string()),
        };
        rig.admitted(method, target, all, body)
    }

    /// What a client meets of a session's rules through the provider's
    /// checks: the server's own `serverInfo` in the answer to
    /// `initialize`; a body that is no JSON-RPC message, a wrong key and a
    /// foreign page each refused, in JSON-RPC's shape where a client reads
    /// it; a server that is not there named among those that are; a
    /// deleted session gone.
    #[test]
    fn a_session_s_refusals_are_answers_an_mcp_client_reads() {
        let mut rig = Rig::new();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        assert!(checked(&mut rig, "POST", "/mcp/echo", &[], &init).is_empty());
        let out = rig.child_initializes();
        assert_eq!(status(&out), 200);
        assert_eq!(answered(&out)["result"]["serverInfo"]["name"], "echo");
        let session = match &out[..] {
            [Output::Respond { response, .. }] => response.header("mcp-session-id"),
            _ => None,
        };
        let session = session.expect("a session").to_owned();
        assert!(session.len() >= 32);
        let (id, version) = (
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        );
        let out = checked(
            &mut rig,
            "POST",
            "/mcp/echo",
            &[id, version],
            &json!({"hello": 1}),
        );
        let refused = (status(&out), answered(&out)["error"]["code"].clone());
        assert_eq!(refused, (400, json!(mcp::INVALID_REQUEST)));
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        let wrong = [id, version, ("authorization", "Bearer wrong")];
        let out = checked(&mut rig, "POST", "/mcp/echo", &wrong, &ping);
        let refused = answered(&out);
        assert_eq!(status(&out), 401);
        assert_eq!(
            (&refused["jsonrpc"], &refused["error"]["code"]),
            (&json!("2.0"), &json!(mcp::INVALID_REQUEST)),
            "{refused}"
        );
        let foreign = [id, version, ("origin", "https://evil.example")];
        assert_eq!(
            status(&checked(&mut rig, "POST", "/mcp/echo", &foreign, &ping)),
            403
        );
        let out = checked(&mut rig, "POST", "/mcp/nothing", &[], &init);
        assert_eq!(status(&out), 404);
        let message = answered(&out)["error"]["message"].clone();
        assert!(
            message.as_str().unwrap_or_default().contains("echo"),
            "{message}"
        );
        assert_eq!(
            status(&checked(
                &mut rig,
                "DELETE",
                "/mcp/echo",
                &[id],
                &Value::Null
            )),
            200
        );
        assert_eq!(
            status(&checked(
                &mut rig,
                "POST",
                "/mcp/echo",
                &[id, version],
                &ping
            )),
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
        assert!(matches!(&out[..], [Output::Data { to, .. }] if to.conn == stream));
        assert_eq!(data(&out[0]), ":\n\n");
        // A reconnect after event 1 gets 2 and 3 again; the old stream ends.
        let (_, out) = rig.send("GET", Some(&session), Value::Null, Some(1));
        assert!(matches!(out[0], Output::End { to } if to.conn == stream));
        let events: Vec<String> = out[2..].iter().map(data).collect();
        assert_eq!(events.len(), 2);
        assert!(events[0].starts_with("id: 2\n") && events[0].contains(r#""n":2"#));
        assert!(events[1].starts_with("id: 3\n") && events[1].contains(r#""n":3"#));
    }

    #[test]
    fn a_session_unused_for_an_hour_without_a_stream_expires() {
        let mut rig = Rig::new();
        let session = rig.session();
        rig.now += Limits::default().session_idle - std::time::Duration::from_secs(61);
        rig.bridge.handle_timeout(rig.now);
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        assert!(
            rig.send("POST", Some(&session), ping.clone(), None)
                .1
                .is_empty(),
            "still there: answered by the child"
        );
        rig.now += Limits::default().session_idle;
        rig.bridge.handle_timeout(rig.now);
        rig.drain();
        assert_eq!(status(&rig.send("POST", Some(&session), ping, None).1), 404);
    }

    #[test]
    fn a_stateless_clients_call_waits_parked_for_its_input_and_the_retry_gets_its_result() {
        let mut rig = Rig::new();
        rig.session();
        let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {"sampling": {}}});
        let call = |id: &str, extra: Value| {
            let mut params = json!({"name": "ask", "arguments": {}, "_meta": meta});
            if let (Some(p), Some(more)) = (params.as_object_mut(), extra.as_object()) {
                p.extend(more.clone());
            }
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
        };
        assert!(rig.send_stateless(call("c1", json!({}))).1.is_empty());
        let at_child = rig.child.last().unwrap()["id"].clone();
        // The session server asks the client mid-call: the call is
        // answered `input_required` with that request.
        let sample = json!({"messages": [], "maxTokens": 5});
        let out = rig.child_says(json!({"jsonrpc": "2.0", "id": 9, "method": "sampling/createMessage", "params": sample}));
        let answer = answered(&out);
        assert_eq!(answer["id"], "c1");
        let result = &answer["result"];
        assert_eq!(result["resultType"], "input_required");
        assert_eq!(
            result["inputRequests"]["input"],
            json!({"method": "sampling/createMessage", "params": sample})
        );
        let state = result["requestState"].as_str().unwrap().to_owned();
        // The retry carries the answer: it reaches the server's request,
        // and the same call's result answers the retry.
        let sampled =
            json!({"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"});
        let retry = call(
            "c2",
            json!({"requestState": state, "inputResponses": {"input": sampled}}),
        );
        assert!(rig.send_stateless(retry.clone()).1.is_empty());
        assert_eq!(
            rig.child.last().unwrap(),
            &json!({"jsonrpc": "2.0", "id": 9, "result": sampled})
        );
        let out =
            rig.child_says(json!({"jsonrpc": "2.0", "id": at_child, "result": {"content": []}}));
        assert_eq!(
            answered(&out),
            json!({"jsonrpc": "2.0", "id": "c2", "result": {"content": [], "resultType": "complete"}})
        );
        // The state was used once: a second retry is a new call.
        rig.send_stateless(retry);
        assert_eq!(rig.child.last().unwrap()["method"], "tools/call");
    }

    #[test]
    fn a_parked_call_whose_client_never_retries_is_cancelled_at_the_server() {
        let mut rig = Rig::new();
        rig.session();
        let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
        let call = json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
                          "params": {"name": "ask", "arguments": {}, "_meta": meta}});
        rig.send_stateless(call);
        let at_child = rig.child.last().unwrap()["id"].clone();
        let out = rig.child_says(json!({"jsonrpc": "2.0", "id": 9, "method": "elicitation/create", "params": {"message": "name?"}}));
        assert_eq!(answered(&out)["result"]["resultType"], "input_required");
        rig.now += super::super::parked::PARK_TTL + std::time::Duration::from_secs(61);
        rig.bridge.handle_timeout(rig.now);
        rig.drain();
        let cancelled = rig.child.iter().any(|m| {
            m["method"] == "notifications/cancelled" && m["params"]["requestId"] == at_child
        });
        assert!(cancelled, "{:?}", rig.child);
    }

    #[test]
    fn at_the_session_cap_the_least_recently_used_idle_session_makes_room() {
        let second = std::time::Duration::from_secs(1);
        let mut rig = Rig::with(Limits {
            max_sessions: 4,
            ..Limits::default()
        });
        let streaming = rig.session();
        rig.now += second;
        let calling = another_session(&mut rig).unwrap();
        rig.now += second;
        let older = another_session(&mut rig).unwrap();
        rig.now += second;
        let newer = another_session(&mut rig).unwrap();
        rig.now += second;
        // The oldest two are busy: a stream open, a call in flight.
        assert_eq!(
            status(&rig.send("GET", Some(&streaming), Value::Null, None).1),
            200
        );
        let call =
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "slow"}});
        assert!(rig.send("POST", Some(&calling), call, None).1.is_empty());
        // A fifth client: the idle session used longest ago ends for it,
        // then the other idle one; the busy ones stay.
        let fifth = another_session(&mut rig).unwrap();
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        assert_eq!(
            status(&rig.send("POST", Some(&older), ping.clone(), None).1),
            404
        );
        rig.now += second;
        let sixth = another_session(&mut rig).unwrap();
        assert_eq!(
            status(&rig.send("POST", Some(&newer), ping.clone(), None).1),
            404
        );
        for session in [&fifth, &sixth] {
            assert_eq!(
                status(&rig.send("GET", Some(session), Value::Null, None).1),
                200
            );
        }
        // Every session busy now: only then is a newcomer refused, told why.
        let (status, body) = another_session(&mut rig).unwrap_err();
        assert_eq!(status, 503);
        assert!(
            body.contains("every MCP session is busy") && body.contains("cap is 4"),
            "{body}"
        );
        assert!(rig.send("POST", Some(&streaming), ping, None).1.is_empty());
    }

    #[test]
    fn a_stream_read_too_slowly_is_cut_and_its_messages_kept_for_a_reconnect() {
        let mut rig = Rig::new();
        let session = rig.session();
        let (stream, _) = rig.send("GET", Some(&session), Value::Null, None);
        rig.bridge.handle_slow_conn(stream, rig.now);
        assert!(matches!(rig.drain()[..], [Output::End { to }] if to.conn == stream));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {}});
        assert!(
            rig.child_says(note).is_empty(),
            "held, not sent to the cut stream"
        );
        let (_, out) = rig.send("GET", Some(&session), Value::Null, None);
        assert_eq!(out.len(), 2, "the stream's head, then what was held");
    }

    #[test]
    fn a_call_whose_client_left_is_cancelled_at_the_child_and_answered() {
        let mut rig = Rig::new();
        let session = rig.session();
        let call = json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call", "params": {"name": "wait"}});
        let (conn, out) = rig.send("POST", Some(&session), call, None);
        assert!(out.is_empty());
        let sent = rig.child.last().unwrap()["id"].clone();
        rig.bridge.handle_conn_closed(conn, rig.now);
        let out = rig.drain();
        let cancel = rig.child.last().unwrap();
        assert_eq!(cancel["method"], "notifications/cancelled");
        assert_eq!(cancel["params"]["requestId"], sent, "under the child's id");
        match &out[..] {
            [Output::Respond { to, response }] => {
                assert_eq!(to.conn, conn);
                let Body::Full(body) = &response.body else {
                    panic!("{response:?}")
                };
                let answer: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(answer["id"], "c1");
                assert!(answer["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("cancelled"));
            }
            other => panic!("{other:?}"),
        }
        // Its slot is free: the child's late answer reaches no one.
        let late = json!({"jsonrpc": "2.0", "id": sent, "result": {}});
        assert!(rig.child_says(late).is_empty());
        assert_eq!(rig.bridge.child(ChildId(1)).map(|c| c.in_flight()), Some(0));
    }
}
