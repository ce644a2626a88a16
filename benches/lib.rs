//! Fixtures shared by the benchmarks: a provider with one agent and one
//! open request, fed agent frames the way a runtime would feed them; and
//! what the load generators share: response heads, `/proc` figures of the
//! server, latency quantiles; and what the baseline relays share: reading
//! a request, and the few JSON-RPC steps of the MCP relays; and what the
//! tool search's evaluation and bench share: real servers' listings.

pub mod head;
pub mod listings;
pub mod mcp_relay;
pub mod procfs;
pub mod request;
pub mod stats;

use std::time::{Instant, SystemTime};

use mcp_provider_core::http::Request;
use mcp_provider_core::stream::Answering;
use mcp_provider_core::{Config, ConnId, Output, Provider};

pub const EDITOR: ConnId = ConnId(1);
pub const AGENT: ConnId = ConnId(2);

/// A provider with a registered agent and one request waiting on it, in
/// the API at `path` (`/v1/chat/completions`, `/api/chat`,
/// `/v1/responses`, `/v1/messages`), streaming.
/// Returns the provider, the invoke id the agent must answer, and the
/// editor connection's side of the answer, opened.
pub fn open_stream(path: &str) -> (Provider, String, Answering) {
    let now = Instant::now();
    let mut p = Provider::new(Config::new(&["k"], "t"), now, SystemTime::now());
    p.open_agent(AGENT, "bench agent");
    p.handle_agent_text(
        AGENT,
        r#"{"type":"register","agent_id":"b","models":["m"]}"#,
        now,
    );
    // One body every API reads: chat's `messages`, Responses' `input`, and
    // the `max_tokens` Messages requires.
    let body = r#"{"model":"m","stream":true,"max_tokens":100,"input":"hi","messages":[{"role":"user","content":"hi"}]}"#;
    let headers = vec![
        ("host".to_owned(), "127.0.0.1".to_owned()),
        ("authorization".to_owned(), "Bearer k".to_owned()),
    ];
    p.handle_request(
        EDITOR,
        Request::new("POST", path, headers, body.into()).expect("a canonical path"),
        now,
    );
    let mut id = String::new();
    let mut answering = Answering::default();
    while let Some(o) = p.poll_output() {
        match o {
            Output::ToAgent { text, .. } => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if v["type"] == "model_invoke" {
                    id = v["id"].as_str().unwrap_or_default().to_owned();
                }
            }
            Output::Answer { to, event } => answering.handle(to, event, |_| {}),
            _ => {}
        }
    }
    (p, id, answering)
}

/// The agent frames for chunks `0..n` of invocation `id`, small deltas.
pub fn chunk_frames(id: &str, n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"type":"model_stream_chunk","id":"{id}","chunk_index":{i},"delta":{{"content":"tok{i} "}},"finish_reason":null}}"#
            )
        })
        .collect()
}

/// The MCP bridge with one shared server whose child the caller plays, one
/// Streamable HTTP session initialized on it: what one `tools/call` costs
/// the bridge, from the request's bytes to the answer's.
pub struct BridgeCall {
    pub bridge: mcp_provider_core::gateway::Bridge,
    pub child: mcp_provider_core::bridge::ChildId,
    session: String,
    next_id: u64,
}

impl BridgeCall {
    /// A bridge whose child answered `initialize`, and a session on it.
    pub fn new() -> BridgeCall {
        use mcp_provider_core::bridge::{Limits, ServerSpec};
        use mcp_provider_core::gateway::Bridge;
        let now = Instant::now();
        let spec = ServerSpec::new("everything", vec!["mcp-server".into()]);
        let mut call = BridgeCall {
            bridge: Bridge::new(vec![spec], Limits::default(), [7; 32], now),
            child: mcp_provider_core::bridge::ChildId(0),
            session: String::new(),
            next_id: 1,
        };
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;
        call.bridge.handle_request(
            ConnId(1),
            Request::new("POST", "/mcp/everything", vec![], init.into()).expect("a canonical path"),
            now,
        );
        let asked = call.drain_child().unwrap_or_default();
        let id =
            serde_json::from_str::<serde_json::Value>(&asked).unwrap_or_default()["id"].clone();
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-06-18","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"everything","version":"1"}}}}}}"#
        );
        call.bridge.handle_child_line(call.child, &answer, now);
        while let Some(routed) = call.bridge.poll_output() {
            if let mcp_provider_core::bridge::Routed::Http(Output::Respond { response, .. }) =
                routed
            {
                call.session = response
                    .header("mcp-session-id")
                    .unwrap_or_default()
                    .to_owned();
            }
        }
        call
    }

    /// The bytes of the next `tools/call` of `echo`, as a client sends them.
    pub fn request_bytes(&mut self) -> Vec<u8> {
        let id = self.next_id;
        self.next_id += 1;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"client 3 call {id}"}}}}}}"#
        );
        format!(
            "POST /mcp/everything HTTP/1.1\r\nHost: 127.0.0.1:8788\r\nAuthorization: Bearer sk-local-0123456789abcdef\r\n\
             Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
             Mcp-Session-Id: {}\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\n\r\n{body}",
            self.session,
            body.len()
        )
        .into_bytes()
    }

    /// Carries out the bridge's outputs: a spawn succeeds; the last line
    /// for the child is returned.
    pub fn drain_child(&mut self) -> Option<String> {
        use mcp_provider_core::bridge::{BridgeOutput, Routed};
        let mut line = None;
        while let Some(routed) = self.bridge.poll_output() {
            match routed {
                Routed::Child {
                    child,
                    action: BridgeOutput::Spawn { .. },
                } => self.bridge.handle_spawned(child, Instant::now()),
                Routed::Child {
                    child,
                    action: BridgeOutput::ToChild { line: text, .. },
                } => {
                    self.child = child;
                    line = Some(text);
                }
                _ => {}
            }
        }
        line
    }
}

impl Default for BridgeCall {
    fn default() -> Self {
        BridgeCall::new()
    }
}

/// The child's answer to `line`, a `tools/call` of `echo`, as
/// server-everything writes it.
pub fn echo_answer(line: &str) -> String {
    let id = line
        .split_once(r#""id":"#)
        .map(|(_, rest)| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("0")
        })
        .unwrap_or("0");
    format!(
        r#"{{"result":{{"content":[{{"type":"text","text":"Echo: client 3 call {id}"}}]}},"jsonrpc":"2.0","id":{id}}}"#
    )
}
