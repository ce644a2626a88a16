//! Messages from the provider, as an agent reads them: the other direction
//! of [`FromAgent`](crate::agent::message::FromAgent).
//!
//! Every agent (echo, an application's, `agent exec`, `agent acp`, `agent
//! mcp`) and the notices printed for an agent's user read a provider frame
//! with [`ToAgent::parse`], so they all agree on what a frame says. Unknown
//! fields are ignored; a frame that is not one of these messages is an
//! error, which an agent lets be.

use serde::de::Error as _;
use serde::Deserialize;
use serde_json::Value;

use crate::agent::message::ErrorBody;
use crate::telemetry::SpanContext;

/// A message from the provider.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// The answer to `register` (with a new `resume_token`) or `renew`.
    Registered {
        #[serde(default)]
        session_id: Option<String>,
        /// `active`, `pending` or `suspended`.
        #[serde(default)]
        status: Option<String>,
        #[serde(default)]
        resume_token: Option<String>,
    },
    /// A human approved the pending session.
    Approved {
        #[serde(default)]
        session_id: Option<String>,
    },
    /// The session expired: no new requests come until it is renewed.
    Expired {
        #[serde(default)]
        session_id: Option<String>,
    },
    /// The session was revoked: its requests failed, the link closes.
    Revoked {
        #[serde(default)]
        session_id: Option<String>,
    },
    ModelInvoke(Invoke),
    /// The editor of invocation `id` is gone: stop working on it.
    Cancel {
        id: String,
    },
    /// The editor of invocation `id` reads slower than the agent writes:
    /// hold its chunks until `resume`.
    Pause {
        id: String,
    },
    /// The editor of invocation `id` caught up.
    Resume {
        id: String,
    },
    /// The user's answer to the agent's question `id`; one that does not
    /// say it allows refuses.
    PermissionDecision {
        id: String,
        #[serde(default)]
        allow: bool,
        /// Why it was refused without asking anyone.
        #[serde(default)]
        reason: Option<String>,
    },
    Ping,
    Error {
        #[serde(default)]
        id: Option<String>,
        #[serde(default)]
        error: ErrorBody,
    },
}

/// `model_invoke`: an editor's request for the agent to answer.
#[derive(Debug, Deserialize)]
pub struct Invoke {
    pub id: String,
    #[serde(default)]
    pub model_meta: ModelMeta,
    /// What the editor asked: `kind`, then its messages, prompt or input,
    /// and `parameters`.
    #[serde(default)]
    pub payload: Value,
    /// The W3C Trace Context of the provider's span for it, when the
    /// provider exports traces.
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default)]
    tracestate: Option<String>,
}

/// What an invocation says of the model asked for.
#[derive(Debug, Default, Deserialize)]
pub struct ModelMeta {
    /// The model the editor asked for (one the agent registered).
    #[serde(default)]
    pub model: String,
}

impl ToAgent {
    /// Parses one frame. An invocation or a decision without an id names
    /// nothing an agent could answer: it does not read.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let message: ToAgent = serde_json::from_str(text)?;
        match &message {
            ToAgent::ModelInvoke(Invoke { id, .. }) | ToAgent::PermissionDecision { id, .. }
                if id.is_empty() =>
            {
                Err(serde_json::Error::custom("an empty id"))
            }
            _ => Ok(message),
        }
    }
}

impl Invoke {
    /// The provider's span for this invocation, which the agent's own
    /// spans (and what it runs) are children of.
    pub fn trace(&self) -> Option<SpanContext> {
        SpanContext::parse(self.traceparent.as_deref()?, self.tracestate.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::agent::message::to_agent;

    #[test]
    fn reads_every_message_the_provider_builds() {
        let registered = to_agent::registered("s1", "active", "2026-01-01T00:00:00Z", Some("t1"));
        assert!(matches!(
            ToAgent::parse(&registered),
            Ok(ToAgent::Registered { session_id: Some(s), status: Some(a), resume_token: Some(t) })
                if s == "s1" && a == "active" && t == "t1"
        ));
        let renewed = to_agent::registered("s1", "active", "2026-01-01T00:00:00Z", None);
        assert!(matches!(
            ToAgent::parse(&renewed),
            Ok(ToAgent::Registered {
                resume_token: None,
                ..
            })
        ));
        for (kind, read) in [
            ("approved", "approved"),
            ("expired", "expired"),
            ("revoked", "revoked"),
        ] {
            let frame = to_agent::session_event(kind, "s1");
            let message = ToAgent::parse(&frame).unwrap();
            let (said, session) = match message {
                ToAgent::Approved { session_id } => ("approved", session_id),
                ToAgent::Expired { session_id } => ("expired", session_id),
                ToAgent::Revoked { session_id } => ("revoked", session_id),
                other => panic!("{other:?}"),
            };
            assert_eq!((said, session.as_deref()), (read, Some("s1")));
        }
        assert!(
            matches!(ToAgent::parse(&to_agent::cancel("inv-1")), Ok(ToAgent::Cancel { id }) if id == "inv-1")
        );
        assert!(
            matches!(ToAgent::parse(&to_agent::pause("inv-1")), Ok(ToAgent::Pause { id }) if id == "inv-1")
        );
        assert!(
            matches!(ToAgent::parse(&to_agent::resume("inv-1")), Ok(ToAgent::Resume { id }) if id == "inv-1")
        );
        assert!(matches!(
            ToAgent::parse(&to_agent::ping()),
            Ok(ToAgent::Ping)
        ));
        let decision = to_agent::permission_decision("perm-1", false, Some("too many"));
        assert!(matches!(
            ToAgent::parse(&decision),
            Ok(ToAgent::PermissionDecision { id, allow: false, reason: Some(r) })
                if id == "perm-1" && r == "too many"
        ));
        let error = to_agent::error(None, "boom", "invalid_message");
        assert!(matches!(
            ToAgent::parse(&error),
            Ok(ToAgent::Error { id: None, error }) if error.message.as_deref() == Some("boom")
        ));
    }

    #[test]
    fn an_invocation_reads_its_model_payload_and_trace() {
        let trace = SpanContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-7a085853722dc6d2-01",
            Some("vendor=opaque"),
        );
        let payload = json!({"kind": "chat", "messages": [{"role": "user", "content": "Hi"}]});
        let frame = to_agent::invoke("inv-1", "s1", "m", &payload, trace.as_ref());
        let Ok(ToAgent::ModelInvoke(invoke)) = ToAgent::parse(&frame) else {
            panic!("not an invocation: {frame}");
        };
        assert_eq!(invoke.id, "inv-1");
        assert_eq!(invoke.model_meta.model, "m");
        assert_eq!(invoke.payload, payload);
        assert_eq!(invoke.trace(), trace);
        let untraced = to_agent::invoke("inv-2", "s1", "m", &payload, None);
        let Ok(ToAgent::ModelInvoke(invoke)) = ToAgent::parse(&untraced) else {
            panic!("not an invocation: {untraced}");
        };
        assert_eq!(invoke.trace(), None);
    }

    #[test]
    fn a_frame_that_is_no_message_does_not_read() {
        for text in [
            "",
            "not json",
            "[]",
            r#"{"id":"inv-1"}"#,
            r#"{"type":"teleport","id":"inv-1"}"#,
            r#"{"type":"model_invoke","payload":{}}"#,
            r#"{"type":"model_invoke","id":"","payload":{}}"#,
            r#"{"type":"model_invoke","id":7,"payload":{}}"#,
            r#"{"type":"cancel"}"#,
            r#"{"type":"pause","id":null}"#,
            r#"{"type":"permission_decision","id":"","allow":true}"#,
            r#"{"type":"permission_decision","id":"perm-1","allow":"yes"}"#,
            r#"{"type":"registered","session_id":5}"#,
            r#"{"type":"ping"} trailing"#,
        ] {
            assert!(ToAgent::parse(text).is_err(), "read: {text}");
        }
        // Unknown fields are ignored; a bare invocation reads, and so does
        // a decision that does not say it allows, as a refusal.
        assert!(matches!(
            ToAgent::parse(r#"{"type":"ping","extra":[1]}"#),
            Ok(ToAgent::Ping)
        ));
        let Ok(ToAgent::ModelInvoke(bare)) = ToAgent::parse(r#"{"type":"model_invoke","id":"i"}"#)
        else {
            panic!("a bare invocation does not read");
        };
        assert_eq!(
            (bare.model_meta.model.as_str(), &bare.payload),
            ("", &Value::Null)
        );
        assert!(matches!(
            ToAgent::parse(r#"{"type":"permission_decision","id":"perm-1"}"#),
            Ok(ToAgent::PermissionDecision { allow: false, .. })
        ));
    }
}
