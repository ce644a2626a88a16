//! Fixtures shared by the benchmarks: a provider with one agent and one
//! open request, fed agent frames the way a runtime would feed them; and
//! what the load generators share: response heads, `/proc` figures of the
//! server, latency quantiles.

pub mod head;
pub mod procfs;
pub mod stats;

use std::time::{Instant, SystemTime};

use mcp_provider_core::http::Request;
use mcp_provider_core::{Config, ConnId, Output, Provider};

pub const EDITOR: ConnId = ConnId(1);
pub const AGENT: ConnId = ConnId(2);

/// A provider with a registered agent and one request waiting on it, in
/// the API at `path` (`/v1/chat/completions`, `/api/chat`,
/// `/v1/responses`, `/v1/messages`), streaming.
/// Returns the provider and the invoke id the agent must answer.
pub fn open_stream(path: &str) -> (Provider, String) {
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
        Request::new("POST", path, headers, body.into()),
        now,
    );
    let mut id = String::new();
    while let Some(o) = p.poll_output() {
        if let Output::ToAgent { text, .. } = o {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if v["type"] == "model_invoke" {
                id = v["id"].as_str().unwrap_or_default().to_owned();
            }
        }
    }
    (p, id)
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
