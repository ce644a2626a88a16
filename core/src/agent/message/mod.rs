//! The agent link protocol v1: one JSON object per WebSocket text frame.
//!
//! Messages an agent sends are parsed into [`FromAgent`] by
//! [`FromAgent::parse`]; unknown fields are ignored. Messages to the agent
//! are built by the `to_agent` functions.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

mod scan;
#[cfg(fuzzing)]
pub use scan::agrees_with_serde as scan_agrees_with_serde;

/// A message from an agent. A stream chunk borrows its text from the frame.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromAgent<'a> {
    Register(Register),
    Renew {
        session_id: String,
        ttl_seconds: Option<u64>,
    },
    #[serde(borrow)]
    ModelStreamChunk(StreamChunk<'a>),
    ModelResult(ModelResult),
    Error {
        id: Option<String>,
        #[serde(default)]
        error: ErrorBody,
    },
    Pong,
    Ping,
    /// The agent asks the user whether it may run one of its own tools.
    PermissionRequest(PermissionRequest),
    /// The agent no longer waits for the answer to question `id`.
    PermissionWithdrawn {
        id: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

impl<'a> FromAgent<'a> {
    /// Parses one frame. Stream chunks, nearly every frame of a busy link,
    /// are read in one pass when they have the common shape (the `scan`
    /// module), else straight into [`StreamChunk`] without the copy into
    /// an intermediate tree that a tagged enum needs; any other frame (or
    /// a chunk that does not read that way) goes through the enum.
    pub fn parse(text: &'a str) -> Result<Self, Invalid> {
        if let Some(chunk) = scan::chunk(text) {
            return Ok(FromAgent::ModelStreamChunk(chunk));
        }
        if let Ok(chunk) = serde_json::from_str::<StreamChunk>(text) {
            if chunk.kind.as_deref() == Some("model_stream_chunk") {
                return Ok(FromAgent::ModelStreamChunk(chunk));
            }
        }
        serde_json::from_str(text).map_err(|error| Invalid {
            answers: answered_id(text),
            error,
        })
    }
}

/// A frame that is not a message of the protocol: the agent is told why
/// (an `error` message) and the link stays up.
#[derive(Debug)]
pub struct Invalid {
    pub error: serde_json::Error,
    /// The invocation the frame answers, when it is an answer
    /// (`model_stream_chunk`, `model_result` or `error`) whose `id` still
    /// reads. That answer can no longer be completed as the agent meant it,
    /// so the provider ends the invocation instead of leaving its editor
    /// waiting for a piece that will never come. A frame whose `id` does
    /// not read names nothing, and ends nothing.
    pub answers: Option<String>,
}

/// The `id` of an answer frame that did not read as a whole message: its
/// `type` and `id` alone, every other field skipped unread.
fn answered_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    let envelope: Envelope = serde_json::from_str(text).ok()?;
    matches!(
        envelope.kind.as_ref(),
        "model_stream_chunk" | "model_result" | "error"
    )
    .then(|| envelope.id.into_owned())
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
    /// Resume a session after a reconnect (with `resume_token`), or claim
    /// one made through the control API (with `session_token`).
    #[serde(default)]
    pub session_id: Option<String>,
    /// The claim secret of a session made through `POST /control/register`.
    #[serde(default)]
    pub session_token: Option<String>,
    /// The secret the last `registered` for `session_id` handed out: the
    /// proof that the agent resuming is the one that held the session.
    #[serde(default)]
    pub resume_token: Option<String>,
}

/// A question for the user: may the agent run this tool, during the
/// answer to `invoke`? Answered with `permission_decision`.
#[derive(Debug, Deserialize)]
pub struct PermissionRequest {
    /// The agent's own id for the question, unique among those it has
    /// waiting on its link.
    pub id: String,
    /// The invocation whose answer waits for it.
    pub invoke: String,
    #[serde(default)]
    pub tool: ToolAsked,
    /// How long the agent waits for the answer, in milliseconds.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

/// What a question shows of the tool call.
#[derive(Debug, Default, Deserialize)]
pub struct ToolAsked {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    /// Its input: text, or any JSON (shown as its text).
    #[serde(default)]
    pub input: Option<Value>,
}

#[derive(Debug, Deserialize, PartialEq)]
pub struct StreamChunk<'a> {
    /// The frame's `type`, present when the chunk is read on its own by
    /// [`FromAgent::parse`] (the enum consumes it otherwise).
    #[serde(default, rename = "type", borrow, deserialize_with = "text")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    pub chunk_index: u64,
    #[serde(default, borrow)]
    pub delta: Delta<'a>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub finish_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

/// A piece of an answer, in OpenAI's delta shape. Text is borrowed from
/// the frame while it is written out at once, owned while it waits. Its
/// `role` is not kept: every answer is the assistant's. A piece is moved
/// through several steps on its way to the editor, so it is kept small
/// (its rare tool calls boxed).
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
pub struct Delta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub content: Option<Cow<'a, str>>,
    /// The model's reasoning (thinking) text, which every API shows apart
    /// from the answer's content (the field DeepSeek and vLLM stream).
    #[serde(
        default,
        rename = "reasoning_content",
        borrow,
        deserialize_with = "text"
    )]
    pub reasoning: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "tool_calls")]
    pub tool_calls: Option<ToolCalls>,
}

/// A delta's tool-call pieces.
pub type ToolCalls = Box<[ToolCallDelta]>;

/// One tool-call piece in OpenAI's delta shape. A JSON object by type, so
/// nothing downstream has to guess what shape an agent sent.
pub type ToolCallDelta = serde_json::Map<String, Value>;

/// Tool calls one message may carry. Agents stream a call in a few pieces
/// per message; thousands in one frame are an attack on the CPU, not an
/// answer.
pub const MAX_TOOL_CALLS_PER_MESSAGE: usize = 64;

/// Tool-call deltas: a list of objects, at most
/// [`MAX_TOOL_CALLS_PER_MESSAGE`] of them.
fn tool_calls<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ToolCalls>, D::Error> {
    struct Calls;
    impl<'de> serde::de::Visitor<'de> for Calls {
        type Value = Option<ToolCalls>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(
                f,
                "a list of at most {MAX_TOOL_CALLS_PER_MESSAGE} tool-call objects"
            )
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut calls = Vec::new();
            while let Some(call) = seq.next_element::<ToolCallDelta>()? {
                if calls.len() == MAX_TOOL_CALLS_PER_MESSAGE {
                    return Err(serde::de::Error::custom(format!(
                        "more than {MAX_TOOL_CALLS_PER_MESSAGE} tool calls in one message"
                    )));
                }
                calls.push(call);
            }
            Ok(Some(calls.into_boxed_slice()))
        }
    }
    d.deserialize_option(Calls)
}

/// An optional string borrowed from the frame unless it has escapes (serde
/// borrows a bare `Cow<str>` but copies one inside an `Option`).
fn text<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

impl Delta<'_> {
    /// A copy that owns its text, to be held past its frame.
    pub fn into_owned(self) -> Delta<'static> {
        Delta {
            content: self.content.map(|c| Cow::Owned(c.into_owned())),
            reasoning: self.reasoning.map(|r| Cow::Owned(r.into_owned())),
            tool_calls: self.tool_calls,
        }
    }
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
    use crate::telemetry::SpanContext;

    /// The answer to `register` (with the session's new `resume_token`) or
    /// to `renew` (without: the token from `register` stays valid).
    pub fn registered(
        session_id: &str,
        status: &str,
        expires_at: &str,
        resume_token: Option<&str>,
    ) -> String {
        let mut m = json!({"type": "registered", "session_id": session_id, "status": status, "expires_at": expires_at});
        if let (Some(token), Some(m)) = (resume_token, m.as_object_mut()) {
            m.insert("resume_token".to_owned(), Value::from(token));
        }
        m.to_string()
    }

    pub fn session_event(kind: &str, session_id: &str) -> String {
        json!({"type": kind, "session_id": session_id}).to_string()
    }

    pub fn cancel(id: &str) -> String {
        json!({"type": "cancel", "id": id}).to_string()
    }

    /// Flow control: the editor of invocation `id` reads slower than the
    /// agent writes; hold its chunks until `resume`.
    pub fn pause(id: &str) -> String {
        json!({"type": "pause", "id": id}).to_string()
    }

    /// Flow control: the editor of invocation `id` caught up.
    pub fn resume(id: &str) -> String {
        json!({"type": "resume", "id": id}).to_string()
    }

    /// The user's answer to the agent's question `id`; `reason` says why
    /// a question was refused without asking anyone.
    pub fn permission_decision(id: &str, allow: bool, reason: Option<&str>) -> String {
        let mut m = json!({"type": "permission_decision", "id": id, "allow": allow});
        if let (Some(reason), Some(m)) = (reason, m.as_object_mut()) {
            m.insert("reason".to_owned(), Value::from(reason));
        }
        m.to_string()
    }

    pub fn ping() -> String {
        r#"{"type":"ping"}"#.to_owned()
    }

    pub fn error(id: Option<&str>, message: &str, code: &str) -> String {
        json!({"type": "error", "id": id, "error": {"message": message, "code": code}}).to_string()
    }

    /// `trace`: the context of the provider's span for this invocation,
    /// which the agent's own spans (and what it runs) are children of.
    /// Serialized from borrowed parts: the payload (the editor's whole
    /// conversation) is written where it stands, not copied into a tree
    /// of the frame first.
    pub fn invoke(
        id: &str,
        session_id: &str,
        model: &str,
        payload: &Value,
        trace: Option<&SpanContext>,
    ) -> String {
        let frame = Invoke {
            kind: "model_invoke",
            id,
            session_id,
            model_meta: ModelMeta {
                provider: "mcp-local-provider",
                model,
            },
            payload,
            traceparent: trace.map(SpanContext::traceparent),
            tracestate: trace.and_then(|t| t.state.as_deref()),
        };
        // Strings and a JSON value always serialize.
        serde_json::to_string(&frame).unwrap_or_default()
    }

    /// A `model_invoke` frame, as written.
    #[derive(serde::Serialize)]
    struct Invoke<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        session_id: &'a str,
        model_meta: ModelMeta<'a>,
        payload: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        traceparent: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tracestate: Option<&'a str>,
    }

    #[derive(serde::Serialize)]
    struct ModelMeta<'a> {
        provider: &'static str,
        model: &'a str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_agent_message() {
        let m = FromAgent::parse(r#"{"type":"register","agent_id":"a1","models":["m"],"extra":1}"#)
            .unwrap();
        assert!(
            matches!(m, FromAgent::Register(r) if r.models == ["m"] && r.ttl_seconds.is_none())
        );
        let text = r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":3,"delta":{"content":"x"},"finish_reason":null}"#;
        let m = FromAgent::parse(text).unwrap();
        assert!(
            matches!(&m, FromAgent::ModelStreamChunk(c) if c.chunk_index == 3 && c.delta.content.as_deref() == Some("x"))
        );
        // Plain text is borrowed from the frame, not copied.
        let FromAgent::ModelStreamChunk(c) = m else {
            unreachable!()
        };
        assert!(matches!(c.delta.content, Some(Cow::Borrowed(_))));
        let m = FromAgent::parse(r#"{"type":"error","id":"inv-2","error":{"message":"boom"}}"#)
            .unwrap();
        assert!(matches!(m, FromAgent::Error { id: Some(_), .. }));
        assert!(FromAgent::parse(r#"{"type":"nope"}"#).is_err());
        assert!(FromAgent::parse(r#"{"type":"pong"}"#).is_ok());
    }

    #[test]
    fn stream_chunks_read_whatever_their_layout() {
        // Escapes in the text, `type` after the other fields, an escaped
        // tag: all read as the same chunk.
        for text in [
            r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":0,"delta":{"content":"a\nb"}}"#,
            r#"{"id":"inv-1","chunk_index":0,"delta":{"content":"a\nb"},"type":"model_stream_chunk"}"#,
            r#"{"type":"model_stream\u005fchunk","id":"inv-1","chunk_index":0,"delta":{"content":"a\nb"}}"#,
        ] {
            let Ok(FromAgent::ModelStreamChunk(c)) = FromAgent::parse(text) else {
                panic!("not a chunk: {text}");
            };
            assert_eq!((c.id.as_ref(), c.chunk_index), ("inv-1", 0));
            assert_eq!(c.delta.content.as_deref(), Some("a\nb"));
        }
        // A chunk with a missing field is an error, not something else.
        assert!(FromAgent::parse(r#"{"type":"model_stream_chunk","chunk_index":0}"#).is_err());
    }

    #[test]
    fn a_chunk_reads_its_reasoning_beside_its_content() {
        let text = r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":0,"delta":{"reasoning_content":"hm","content":"a"}}"#;
        let Ok(FromAgent::ModelStreamChunk(c)) = FromAgent::parse(text) else {
            panic!("not a chunk");
        };
        assert_eq!(c.delta.reasoning.as_deref(), Some("hm"));
        assert_eq!(c.delta.content.as_deref(), Some("a"));
        let owned = c.delta.into_owned();
        assert_eq!(owned.reasoning.as_deref(), Some("hm"));
        // Reasoning alone, or a null one, reads too.
        for (delta, reasoning) in [
            (r#"{"reasoning_content":"x"}"#, Some("x")),
            (r#"{"reasoning_content":null,"content":"y"}"#, None),
        ] {
            let text = format!(
                r#"{{"type":"model_stream_chunk","id":"inv-1","chunk_index":0,"delta":{delta}}}"#
            );
            let Ok(FromAgent::ModelStreamChunk(c)) = FromAgent::parse(&text) else {
                panic!("not a chunk: {text}");
            };
            assert_eq!(c.delta.reasoning.as_deref(), reasoning);
        }
    }

    #[test]
    fn an_answer_that_does_not_read_still_names_its_invocation() {
        for text in [
            r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":0,"delta":{"tool_calls":[1]}}"#,
            r#"{"delta":{"content":7},"chunk_index":0,"id":"inv-1","type":"model_stream_chunk"}"#,
            r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":-1}"#,
            r#"{"type":"model_stream_chunk","id":"inv-1"}"#,
            r#"{"type":"model_result","id":"inv-1","status":5}"#,
            r#"{"type":"error","id":"inv-1","error":"boom"}"#,
        ] {
            let Err(invalid) = FromAgent::parse(text) else {
                panic!("read as a message: {text}");
            };
            assert_eq!(invalid.answers.as_deref(), Some("inv-1"), "{text}");
        }
        // An id that does not read, a frame that is not JSON, a message
        // that answers nothing: no invocation is named.
        for text in [
            "not json",
            r#"{"type":"model_stream_chunk","id":7,"chunk_index":0}"#,
            r#"{"type":"model_stream_chunk","id":null,"chunk_index":0}"#,
            r#"{"type":"model_stream_chunk","chunk_index":0,"delta":{"tool_calls":[1]}}"#,
            r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":0"#,
            r#"{"type":"model_stream_chunk","id":"inv-1","chunk_index":0} trailing"#,
            r#"{"type":"register","id":"inv-1"}"#,
            r#"{"type":"teleport","id":"inv-1"}"#,
        ] {
            let Err(invalid) = FromAgent::parse(text) else {
                panic!("read as a message: {text}");
            };
            assert_eq!(invalid.answers, None, "{text}");
        }
    }
}
