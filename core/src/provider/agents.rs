//! Agent links: registration, renewal, session expiry, and what happens
//! when a link drops.

use std::time::Instant;

use super::{Output, Provider};
use crate::agent::message::{to_agent, FromAgent, Register};
use crate::config::Approval;
use crate::error::ApiError;
use crate::session::{expiry, Scopes, Session, Status};
use crate::time::rfc3339;
use crate::ConnId;

impl Provider {
    pub(super) fn agent_message(&mut self, conn: ConnId, text: &str, now: Instant) {
        if !self.links.contains_key(&conn) {
            return;
        }
        let message = match FromAgent::parse(text) {
            Ok(m) => m,
            Err(e) => {
                let text =
                    to_agent::error(None, &format!("invalid message: {e}"), "invalid_message");
                self.outputs.push_back(Output::ToAgent { conn, text });
                return;
            }
        };
        if let Some(Some(id)) = self.links.get(&conn) {
            if let Some(s) = self.sessions.get_mut(id) {
                s.last_activity = now;
            }
        }
        match message {
            FromAgent::ModelStreamChunk(chunk) => self.on_chunk(conn, chunk, now),
            FromAgent::ModelResult(result) => self.on_result(conn, result, now),
            FromAgent::Error { id, error } => self.on_agent_error(conn, id.as_deref(), &error),
            FromAgent::Register(register) => self.register(conn, register, now),
            FromAgent::Renew {
                session_id,
                ttl_seconds,
            } => self.renew(conn, &session_id, ttl_seconds, now),
            FromAgent::Ping => self.outputs.push_back(Output::ToAgent {
                conn,
                text: r#"{"type":"pong"}"#.to_owned(),
            }),
            FromAgent::Pong => {}
        }
    }

    fn agent_error(&mut self, conn: ConnId, message: &str, code: &str) {
        let text = to_agent::error(None, message, code);
        self.outputs.push_back(Output::ToAgent { conn, text });
    }

    fn register(&mut self, conn: ConnId, r: Register, now: Instant) {
        if let Some(Some(existing)) = self.links.get(&conn) {
            let message =
                format!("this link already serves session {existing}; send renew instead");
            return self.agent_error(conn, &message, "already_registered");
        }
        if r.models.is_empty() || r.models.iter().any(|m| m.trim().is_empty()) {
            return self.agent_error(
                conn,
                "register needs a non-empty list of model names",
                "invalid_message",
            );
        }
        let scopes = Scopes::parse(r.allowed_scopes.as_deref());
        let expires_at = expiry(
            now,
            r.ttl_seconds,
            self.config.session_ttl,
            self.config.max_session_ttl,
        );
        let claim = r
            .session_id
            .as_deref()
            .and_then(|id| self.sessions.get_mut(id));
        let id = match claim {
            Some(s) => {
                let token_ok = match (&s.token, r.session_token.as_deref()) {
                    (None, _) => true,
                    (Some(hash), Some(t)) => hash.matches(t),
                    (Some(_), None) => false,
                };
                if !token_ok {
                    return self.agent_error(
                        conn,
                        "wrong or missing session_token",
                        "unauthorized",
                    );
                }
                if matches!(s.status, Status::Revoked | Status::Expired) || s.link.is_some() {
                    let why = if s.link.is_some() {
                        "is already connected"
                    } else {
                        "has ended"
                    };
                    let message = format!("session {} {why}", s.id);
                    return self.agent_error(conn, &message, "session_unavailable");
                }
                s.link = Some(conn);
                s.models = r.models;
                if r.allowed_scopes.is_some() {
                    s.scopes = scopes;
                }
                if let Some(label) = r.label {
                    s.label = label;
                }
                s.last_activity = now;
                s.id.clone()
            }
            None => {
                if self.sessions.len() >= self.config.max_sessions {
                    return self.agent_error(conn, "too many sessions", "too_many_sessions");
                }
                let id = format!("sess-{}", self.fresh_token());
                let status = match self.config.approval {
                    Approval::Auto => Status::Active,
                    Approval::Manual => Status::Pending,
                };
                self.sessions.insert(Session {
                    id: id.clone(),
                    label: r.label.unwrap_or_else(|| r.agent_id.clone()),
                    agent_id: r.agent_id,
                    models: r.models,
                    scopes,
                    status,
                    created: now,
                    expires_at,
                    max_requests: r.max_requests,
                    requests: 0,
                    tokens: 0,
                    last_activity: now,
                    link: Some(conn),
                    in_flight: 0,
                    token: None,
                });
                id
            }
        };
        self.links.insert(conn, Some(id.clone()));
        self.send_registered(conn, &id);
    }

    fn send_registered(&mut self, conn: ConnId, id: &str) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let expires = rfc3339(self.wall(s.expires_at));
        let status = if s.status == Status::Pending {
            "pending"
        } else {
            "active"
        };
        let text = to_agent::registered(id, status, &expires);
        self.outputs.push_back(Output::ToAgent { conn, text });
    }

    fn renew(&mut self, conn: ConnId, id: &str, ttl: Option<u64>, now: Instant) {
        let (default, max) = (self.config.session_ttl, self.config.max_session_ttl);
        match self.sessions.get_mut(id) {
            Some(s) if s.link == Some(conn) && s.status != Status::Revoked => {
                s.expires_at = expiry(now, ttl, default, max);
                if s.status == Status::Expired {
                    s.status = Status::Active;
                }
                self.send_registered(conn, id);
            }
            _ => self.agent_error(
                conn,
                &format!("no session {id} on this link"),
                "unknown_session",
            ),
        }
    }

    /// Sessions whose TTL ran out become `expired`: no new requests, the
    /// agent is told, requests in flight may still finish.
    pub(super) fn expire_sessions(&mut self, now: Instant) {
        let due: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| {
                s.expires_at <= now
                    && matches!(
                        s.status,
                        Status::Active | Status::Pending | Status::Suspended
                    )
            })
            .map(|s| s.id.clone())
            .collect();
        for id in due {
            let Some(s) = self.sessions.get_mut(&id) else {
                continue;
            };
            s.status = Status::Expired;
            match s.link {
                Some(conn) => self.outputs.push_back(Output::ToAgent {
                    conn,
                    text: to_agent::session_event("expired", &id),
                }),
                None => {
                    self.sessions.remove(&id);
                }
            }
        }
    }

    /// A link dropped: its requests fail now; its session stays resumable
    /// until it expires.
    pub(super) fn link_closed(&mut self, conn: ConnId, _now: Instant) {
        let error = ApiError::agent("The agent disconnected before finishing its answer.");
        self.fail_where(Self::on_link(conn), &error, false);
        if let Some(Some(id)) = self.links.remove(&conn) {
            let remove = match self.sessions.get_mut(&id) {
                Some(s) => {
                    s.link = None;
                    !matches!(
                        s.status,
                        Status::Active | Status::Pending | Status::Suspended
                    )
                }
                None => false,
            };
            if remove {
                self.sessions.remove(&id);
            }
        }
    }

    /// Answers a WebSocket upgrade on `/v1/agent` (the token was checked).
    pub(super) fn accept_agent(
        &mut self,
        conn: ConnId,
        request: &crate::http::Request,
    ) -> Result<(), ApiError> {
        let key = request
            .header("sec-websocket-key")
            .filter(|_| request.is_websocket_upgrade())
            .ok_or_else(|| {
                ApiError::invalid("/v1/agent expects a WebSocket upgrade (Upgrade: websocket)")
            })?;
        self.links.insert(conn, None);
        self.outputs.push_back(Output::AcceptAgent {
            conn,
            key: key.to_owned(),
        });
        Ok(())
    }
}
