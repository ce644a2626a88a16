//! Which models are served, and which session serves a model request:
//! the model it names resolved, a session routed to, and the request
//! booked against it.

use std::time::Instant;

use super::links::Links;
use crate::api::ModelRequest;
use crate::error::ApiError;
use crate::session::{RouteError, Sessions, Status};
use crate::ConnId;

/// The session booked for a request.
pub(super) struct Booked<'a> {
    pub(super) id: &'a str,
    /// The link of its agent.
    pub(super) agent: ConnId,
    /// Its agent, as it registered.
    pub(super) name: &'a str,
}

/// Routes `request` (pinned to session `pin`, if named) to a session
/// whose agent is connected and reading, and books it there: one more
/// request, one more in flight, suspended once its budget is spent. The
/// model served, and the session.
pub(super) fn book<'a>(
    sessions: &'a mut Sessions,
    links: &Links,
    request: &ModelRequest,
    pin: Option<&str>,
    now: Instant,
) -> Result<(String, Booked<'a>), ApiError> {
    let Some(model) = sessions.resolve_model(&request.model) else {
        return Err(if links.is_empty() {
            no_agent()
        } else {
            ApiError::model_not_found(&request.model, &served_names(sessions))
        });
    };
    let closed = |link| links.is_congested(link);
    let session_id = match sessions.route(&model, request.embedding, pin, closed) {
        Ok(id) => id.to_owned(),
        Err(RouteError::NoAgents) => return Err(no_agent()),
        Err(RouteError::UnknownModel) => {
            return Err(ApiError::model_not_found(
                &request.model,
                &served_names(sessions),
            ))
        }
        Err(RouteError::WrongScope(why)) => {
            return Err(ApiError::forbidden(format!(
                "Model `{model}` cannot serve this request: {why}"
            )))
        }
        Err(RouteError::Unavailable(why)) => {
            return Err(ApiError::unavailable(format!(
                "Model `{model}` is not available: {why}"
            )))
        }
    };
    let Some(session) = sessions.get_mut(&session_id) else {
        return Err(no_agent());
    };
    let Some(agent) = session.link else {
        return Err(no_agent());
    };
    if links.is_congested(agent) {
        return Err(busy(&format!(
            "the agent serving `{model}` is not reading what it was sent"
        )));
    }
    session.requests += 1;
    session.in_flight += 1;
    session.last_activity = now;
    if session
        .max_requests
        .is_some_and(|max| session.requests >= max)
    {
        session.status = Status::Suspended;
    }
    let booked = Booked {
        id: &session.id,
        agent,
        name: &session.agent_id,
    };
    Ok((model, booked))
}

/// 503 for a request the server is too backed up to take now.
pub(super) fn busy(why: &str) -> ApiError {
    let mut e = ApiError::unavailable(format!("Busy: {why}; retry shortly."));
    e.retry_after = Some(1);
    e
}

fn no_agent() -> ApiError {
    ApiError::unavailable(
        "No agent is connected. Start one with `mcp-provider agent echo`, or run `mcp-provider serve` without --no-echo-agent.",
    )
}

/// The names of the models served, sorted.
pub(super) fn served_names(sessions: &Sessions) -> Vec<String> {
    served_models(sessions)
        .into_iter()
        .map(|(m, _, _)| m)
        .collect()
}

/// Models that an active, connected session serves right now:
/// (name, owner, latest expiry), sorted by name.
pub(super) fn served_models(sessions: &Sessions) -> Vec<(String, String, Instant)> {
    let mut out: Vec<(String, String, Instant)> = Vec::new();
    for s in sessions.iter() {
        if s.status != Status::Active || s.link.is_none() {
            continue;
        }
        for m in &s.models {
            match out.iter_mut().find(|(name, _, _)| name == m) {
                Some(entry) => entry.2 = entry.2.max(s.expires_at),
                None => out.push((m.clone(), s.agent_id.clone(), s.expires_at)),
            }
        }
    }
    out.sort();
    out
}
