//! The control API (bridge token): register, approve and revoke sessions,
//! and list them.

use std::time::Instant;

use serde_json::{json, Value};

use super::{Output, Provider};
use crate::agent::message::to_agent;
use crate::auth::SecretHash;
use crate::error::ApiError;
use crate::session::{expiry, Scopes, Session, Status};
use crate::time::rfc3339;

pub(super) fn body_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::invalid("The request body must be a JSON object.")),
    }
}

pub(super) fn required<'a>(
    body: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::invalid_param(name, format!("'{name}' is required")))
}

impl Provider {
    /// Creates a session in advance; an agent claims it by registering with
    /// its `session_id` and `session_token`.
    pub(super) fn control_register(
        &mut self,
        body: &[u8],
        now: Instant,
    ) -> Result<Value, ApiError> {
        let body = body_object(body)?;
        let id = required(&body, "session_id")?.to_owned();
        let token = required(&body, "session_token")?;
        let agent_id = required(&body, "agent_id")?.to_owned();
        if self.sessions.get(&id).is_some() {
            return Err(ApiError::invalid_param(
                "session_id",
                format!("session {id} already exists"),
            ));
        }
        if !self.room_for_a_session() {
            return Err(ApiError::unavailable(super::agents::NO_ROOM));
        }
        let scopes: Option<Vec<String>> = body
            .get("allowed_scopes")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let models: Vec<String> = body
            .get("models")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let ttl = body.get("ttl_seconds").and_then(Value::as_u64);
        let expires_at = expiry(
            now,
            ttl,
            self.config.session_ttl,
            self.config.max_session_ttl,
        );
        let mut session = Session {
            id: id.clone(),
            label: body
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or(&agent_id)
                .to_owned(),
            agent_id,
            models,
            scopes: Scopes::parse(scopes.as_deref()),
            status: Status::Active,
            created: now,
            expires_at,
            max_requests: body.get("max_requests").and_then(Value::as_u64),
            requests: 0,
            tokens: 0,
            last_activity: now,
            link: None,
            in_flight: 0,
            claim: Some(SecretHash::of(token)),
            resume: None,
            // Whoever holds the bridge token to call this approves it.
            approved: true,
            detached_until: None,
        };
        // `max_requests: 0` leaves no request to serve: suspended at once.
        session.status = session.live_status();
        let status = session.status.as_str();
        self.sessions.insert(session);
        self.audit_session("session_created", &id, now);
        Ok(
            json!({"session_id": id, "status": status, "expires_at": rfc3339(self.wall(expires_at))}),
        )
    }

    pub(super) fn control_approve(&mut self, body: &[u8], now: Instant) -> Result<Value, ApiError> {
        let body = body_object(body)?;
        let id = required(&body, "session_id")?;
        let s = self
            .sessions
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
        if s.status != Status::Pending {
            return Err(ApiError::invalid(format!(
                "session {id} is {}, not pending",
                s.status.as_str()
            )));
        }
        s.approved = true;
        // Approval does not refill a spent budget (`max_requests: 0`).
        s.status = s.live_status();
        let status = s.status.as_str();
        if let Some(conn) = s.link {
            let text = to_agent::session_event("approved", id);
            self.outputs.push_back(Output::ToAgent { conn, text });
        }
        self.audit_session("session_approved", id, now);
        Ok(json!({"session_id": id, "status": status}))
    }

    /// Revokes a session: its requests in flight fail, its agent is told.
    pub(super) fn control_revoke(&mut self, body: &[u8], now: Instant) -> Result<Value, ApiError> {
        let body = body_object(body)?;
        let id = required(&body, "session_id")?.to_owned();
        // A revoked session whose link is still closing is gone already
        // for this API: revoking it again finds nothing, however soon.
        let s = self
            .sessions
            .get_mut(&id)
            .filter(|s| s.status != Status::Revoked)
            .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
        s.status = Status::Revoked;
        let link = s.link;
        self.audit_session("session_revoked", &id, now);
        // Editors read this: no session id in it.
        let error = ApiError::unavailable("The agent's session was revoked.");
        self.fail_where(Self::in_session(&id), &error, true);
        match link {
            Some(conn) => {
                // The link served only this session: tell the agent, then close it.
                let text = to_agent::session_event("revoked", &id);
                self.outputs.push_back(Output::ToAgent { conn, text });
                self.outputs.push_back(Output::CloseAgent {
                    conn,
                    why: crate::agent::close::LinkClose::Revoked,
                });
            }
            None => {
                self.sessions.remove(&id);
            }
        }
        Ok(json!({"session_id": id, "status": "revoked"}))
    }

    pub(super) fn control_sessions(&self, now: Instant) -> Value {
        let mut sessions: Vec<&Session> = self.sessions.iter().collect();
        sessions.sort_by_key(|s| s.created);
        let list: Vec<Value> = sessions
            .into_iter()
            .map(|s| {
                json!({
                    "session_id": s.id,
                    "agent_id": s.agent_id,
                    "label": s.label,
                    "models": s.models,
                    "allowed_scopes": s.scopes.names(),
                    "status": s.status.as_str(),
                    "expires_at": rfc3339(self.wall(s.expires_at)),
                    "requests": s.requests,
                    "max_requests": s.max_requests,
                    "tokens": s.tokens,
                    "in_flight": s.in_flight,
                    "connected": s.link.is_some(),
                    "idle_seconds": now.saturating_duration_since(s.last_activity).as_secs(),
                })
            })
            .collect();
        json!({"sessions": list})
    }
}
