//! The agent link protocol v1: one JSON object per WebSocket text frame.
//!
//! Messages an agent sends are parsed into [`FromAgent`]; unknown fields are
//! ignored. Messages to the agent are built by the `to_agent` functions.

use serde::Deserialize;
use serde_json::{json, Value};

/// A message from an agent.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromAgent {
    Register(Register),
    Renew {
        session_id: String,
        ttl_seconds: Option<u64>,
    },
    ModelStreamChunk(StreamChunk),
    ModelResult(ModelResult),
    Error {
        id: Option<String>,
        #[serde(default)]
        error: ErrorBody,
    },
    Pong,
    Ping,
}

#[derive(Debug, Deserialize)]
pub struct Register {
    pub agent_id: String,
    #[serde(default)]
    pub label: Option<String>,
    pub models: Vec<String>,
    #[serde(default)]
    pub allowed_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    #[serde(default)]
    pub max_requests: Option<u64>,
    /// Resume (or claim a control-registered) session.
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct StreamChunk {
    pub id: String,
    pub chunk_index: u64,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// A piece of an answer, in OpenAI's delta shape.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
pub struct Delta {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<Value>>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

#[derive(Debug, Deserialize)]
pub struct ModelResult {
    pub id: String,
    #[serde(default = "ok")]
    pub status: String,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

fn ok() -> String {
    "ok".to_owned()
}

#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub code: Option<Value>,
}

impl ErrorBody {
    pub fn message_or(&self, fallback: &str) -> String {
        self.message.clone().unwrap_or_else(|| fallback.to_owned())
    }
}

/// Messages to an agent.
pub mod to_agent {
    use super::*;

    pub fn registered(session_id: &str, status: &str, expires_at: &str) -> String {
        json!({"type": "registered", "session_id": session_id, "status": status, "expires_at": expires_at})
            .to_string()
    }

    pub fn session_event(kind: &str, session_id: &str) -> String {
        json!({"type": kind, "session_id": session_id}).to_string()
    }

    pub fn cancel(id: &str) -> String {
        json!({"type": "cancel", "id": id}).to_string()
    }

    pub fn ping() -> String {
        r#"{"type":"ping"}"#.to_owned()
    }

    pub fn error(id: Option<&str>, message: &str, code: &str) -> String {
        json!({"type": "error", "id": id, "error": {"message": message, "code": code}}).to_string()
    }

    pub fn invoke(id: &str, session_id: &str, model: &str, payload: &Value) -> String {
        json!({
            "type": "model_invoke",
            "id": id,
            "session_id": session_id,
            "model_meta": {"provider": "mcp-local-provider", "model": model},
            "payload": payload,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_agent_message() {
        let m: FromAgent =
            serde_json::from_str(r#"{"type":"register","agent_id":"a1","models":["m"],"extra":1}"#)
                .unwrap();
        assert!(
            matches!(m, FromAgent::Register(r) if r.models == ["m"] && r.ttl_seconds.is_none())
        );
        let m: FromAgent = serde_json::from_str(
            r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":3,"delta":{"content":"x"},"finish_reason":null}"#,
        )
        .unwrap();
        assert!(
            matches!(m, FromAgent::ModelStreamChunk(c) if c.chunk_index == 3 && c.delta.content.as_deref() == Some("x"))
        );
        let m: FromAgent =
            serde_json::from_str(r#"{"type":"error","id":"inv-2","error":{"message":"boom"}}"#)
                .unwrap();
        assert!(matches!(m, FromAgent::Error { id: Some(_), .. }));
        assert!(serde_json::from_str::<FromAgent>(r#"{"type":"nope"}"#).is_err());
        assert!(serde_json::from_str::<FromAgent>(r#"{"type":"pong"}"#).is_ok());
    }
}
