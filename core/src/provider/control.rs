//! The control API (bridge token): register, approve and revoke sessions,
//! and list them; and the cap on sessions, which agents registering meet
//! too.

use std::time::Instant;

use serde_json::{json, Value};

use std::collections::VecDeque;

use super::ids::Epoch;
use super::{ConnId, Output};
use crate::agent::message::to_agent;
use crate::auth::SecretHash;
use crate::config::Config;
use crate::error::ApiError;
use crate::session::{expiry, Scopes, Session, Sessions, Status};
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

/// Why a new session is refused at `max_sessions`: none of them can be
/// freed ([`room_for_a_session`]).
pub(super) const NO_ROOM: &str = "too many sessions: each one has an agent connected, \
                                  or was made through the control API";

/// Whether one more session fits under `max_sessions`, freeing the
/// [`Sessions::reclaimable`] one if that is what it takes: sessions whose
/// link dropped wait for an agent that may never come back, so they give
/// way to one that is here. Its agent, if it does come back, gets a new
/// session, as after the grace period.
pub(super) fn room_for_a_session(sessions: &mut Sessions, max_sessions: usize) -> bool {
    if sessions.len() < max_sessions {
        return true;
    }
    let Some(id) = sessions.reclaimable().map(str::to_owned) else {
        return false;
    };
    sessions.remove(&id);
    true
}

/// `POST /control/register`: a session made in advance, which an agent
/// claims by registering with its `session_id` and `session_token`.
pub(super) fn register(
    sessions: &mut Sessions,
    config: &Config,
    body: &[u8],
    now: Instant,
) -> Result<Session, ApiError> {
    let body = body_object(body)?;
    let id = required(&body, "session_id")?.to_owned();
    let token = required(&body, "session_token")?;
    let agent_id = required(&body, "agent_id")?.to_owned();
    if sessions.get(&id).is_some() {
        return Err(ApiError::invalid_param(
            "session_id",
            format!("session {id} already exists"),
        ));
    }
    if !room_for_a_session(sessions, config.max_sessions) {
        return Err(ApiError::unavailable(NO_ROOM));
    }
    let scopes: Option<Vec<String>> = body
        .get("allowed_scopes")
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let models: Vec<String> = body
        .get("models")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let ttl = body.get("ttl_seconds").and_then(Value::as_u64);
    let expires_at = expiry(now, ttl, config.session_ttl, config.max_session_ttl);
    let mut session = Session {
        id,
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
    Ok(session)
}

/// `POST /control/approve`: a pending session may serve; its agent is
/// told. The session's id and status.
pub(super) fn approve(
    sessions: &mut Sessions,
    body: &[u8],
    out: &mut VecDeque<Output>,
) -> Result<(String, &'static str), ApiError> {
    let body = body_object(body)?;
    let id = required(&body, "session_id")?;
    let s = sessions
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
    if let Some(conn) = s.link {
        let text = to_agent::session_event("approved", id);
        out.push_back(Output::ToAgent { conn, text });
    }
    Ok((id.to_owned(), s.status.as_str()))
}

/// `POST /control/revoke`: the session is revoked. Its id, and the link
/// serving it.
pub(super) fn revoke(
    sessions: &mut Sessions,
    body: &[u8],
) -> Result<(String, Option<ConnId>), ApiError> {
    let body = body_object(body)?;
    let id = required(&body, "session_id")?.to_owned();
    // A revoked session whose link is still closing is gone already
    // for this API: revoking it again finds nothing, however soon.
    let s = sessions
        .get_mut(&id)
        .filter(|s| s.status != Status::Revoked)
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
    s.status = Status::Revoked;
    Ok((id, s.link))
}

/// `GET /control/sessions`: every session, oldest first.
pub(super) fn list(sessions: &Sessions, epoch: Epoch, now: Instant) -> Value {
    let mut sessions: Vec<&Session> = sessions.iter().collect();
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
                "expires_at": rfc3339(epoch.wall(s.expires_at)),
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
