//! Agent links: registration, renewal, session expiry, and what happens
//! when a link drops.

use std::time::Instant;

use super::{Link, Output, Provider};
use crate::agent::close::LinkClose;
use crate::agent::message::{to_agent, FromAgent, Invalid, Register};
use crate::auth::{derive_token, SecretHash};
use crate::config::Approval;
use crate::error::ApiError;
use crate::session::{expiry, Scopes, Session, Status};
use crate::time::{later, rfc3339};
use crate::ConnId;

/// Why a new session is refused at `max_sessions`: none of them can be
/// freed ([`Provider::room_for_a_session`]).
pub(super) const NO_ROOM: &str = "too many sessions: each one has an agent connected, \
                                  or was made through the control API";

impl Provider {
    pub(super) fn agent_message(
        &mut self,
        conn: ConnId,
        message: Result<FromAgent<'_>, Invalid>,
        now: Instant,
    ) {
        let Some(link) = self.links.get_mut(&conn) else {
            return;
        };
        if let Some(heard) = &mut link.heard {
            *heard = now;
        }
        let message = match message {
            Ok(m) => m,
            Err(Invalid { error, answers }) => {
                let why = format!("invalid message: {error}");
                self.agent_error(conn, &why, "invalid_message");
                if let Some(id) = answers {
                    self.on_unreadable_answer(conn, &id, &why);
                }
                return;
            }
        };
        if let Some(id) = self.links.get(&conn).and_then(|l| l.session.as_ref()) {
            self.sessions.touch(id, now);
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
            FromAgent::PermissionRequest(r) => self.on_permission_request(conn, r, now),
            FromAgent::PermissionWithdrawn { id, reason } => {
                self.on_permission_withdrawn(conn, &id, reason.as_deref(), now)
            }
        }
    }

    /// The session `conn` registered, if it is an agent link that did.
    fn session_of(&self, conn: ConnId) -> Option<&String> {
        self.links.get(&conn)?.session.as_ref()
    }

    fn agent_error(&mut self, conn: ConnId, message: &str, code: &str) {
        let text = to_agent::error(None, message, code);
        self.outputs.push_back(Output::ToAgent { conn, text });
    }

    fn register(&mut self, conn: ConnId, r: Register, now: Instant) {
        if let Some(existing) = self.session_of(conn) {
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
        // A session id that names no session (it ended, or its grace period
        // ran out) gets a new session: the agent sees the new id.
        let known = r
            .session_id
            .as_deref()
            .filter(|id| self.sessions.get(id).is_some())
            .map(str::to_owned);
        let resuming = known.is_some();
        let id = match known {
            Some(id) => self.resume_session(conn, &id, r, now),
            None => self.new_session(conn, r, now),
        };
        if let Some((id, resume_token)) = id {
            if let Some(link) = self.links.get_mut(&conn) {
                link.session = Some(id.clone());
            }
            self.send_registered(conn, &id, Some(&resume_token));
            let event = if resuming {
                "session_resumed"
            } else {
                "session_registered"
            };
            self.audit_session(event, &id, now);
        }
    }

    /// A session changed, for the audit trail: its id, agent, models and
    /// the status it has now.
    pub(super) fn audit_session(&mut self, event: &str, id: &str, now: Instant) {
        if !self.audit.enabled() {
            return;
        }
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let fields = serde_json::json!({
            "session_id": s.id,
            "agent_id": s.agent_id,
            "models": s.models,
            "status": s.status.as_str(),
        });
        let wall = self.wall(now);
        self.audit.record(wall, event, fields);
    }

    /// Gives session `id` to the link if `r` proves it comes from the
    /// session's agent; returns the id and the session's new resume token.
    /// A failed proof leaves the session exactly as it was, so its owner
    /// can still resume it.
    fn resume_session(
        &mut self,
        conn: ConnId,
        id: &str,
        r: Register,
        now: Instant,
    ) -> Option<(String, String)> {
        let s = self.sessions.get(id)?;
        if !s.may_resume(
            &r.agent_id,
            r.resume_token.as_deref(),
            r.session_token.as_deref(),
        ) {
            self.metrics.counters.auth_failures += 1;
            let wall = self.wall(now);
            let fields = serde_json::json!({"route": "/v1/agent", "session_id": id, "reason": "resume proof refused"});
            self.audit.record(wall, "auth_failure", fields);
            self.agent_error(
                conn,
                "resuming a session needs its agent_id and the resume_token the provider \
                 handed out for it (or, for a session made through the control API, its \
                 session_token)",
                "unauthorized",
            );
            return None;
        }
        // Only the owner gets this far, so telling it why is no leak.
        if matches!(s.status, Status::Revoked | Status::Expired) {
            let why = format!("session {id} has ended");
            self.agent_error(conn, &why, "session_unavailable");
            return None;
        }
        if let Some(old) = s.link.filter(|old| *old != conn) {
            self.hand_over_link(old, now);
        }
        let token = self.fresh_resume_token();
        let s = self.sessions.get_mut(id)?;
        s.link = Some(conn);
        s.detached_until = None;
        // Rotated on every resume: a token that leaked from an earlier
        // connection is worthless once the agent is back.
        s.resume = Some(SecretHash::of(&token));
        s.models = r.models;
        if r.allowed_scopes.is_some() {
            s.scopes = Scopes::parse(r.allowed_scopes.as_deref());
        }
        if let Some(label) = r.label {
            s.label = label;
        }
        s.last_activity = now;
        Some((id.to_owned(), token))
    }

    /// Opens a session for a registering agent; returns its id and resume
    /// token.
    fn new_session(&mut self, conn: ConnId, r: Register, now: Instant) -> Option<(String, String)> {
        if !self.room_for_a_session() {
            self.agent_error(conn, NO_ROOM, "too_many_sessions");
            return None;
        }
        let id = format!("sess-{}", self.fresh_token());
        let token = self.fresh_resume_token();
        let mut session = Session {
            id: id.clone(),
            label: r.label.unwrap_or_else(|| r.agent_id.clone()),
            agent_id: r.agent_id,
            models: r.models,
            scopes: Scopes::parse(r.allowed_scopes.as_deref()),
            status: Status::Pending,
            created: now,
            expires_at: expiry(
                now,
                r.ttl_seconds,
                self.config.session_ttl,
                self.config.max_session_ttl,
            ),
            max_requests: r.max_requests,
            requests: 0,
            tokens: 0,
            last_activity: now,
            link: Some(conn),
            in_flight: 0,
            claim: None,
            resume: Some(SecretHash::of(&token)),
            approved: self.config.approval == Approval::Auto,
            detached_until: None,
        };
        // `max_requests: 0` asks for no requests at all: the session starts
        // suspended (and says so in `registered`).
        session.status = session.live_status();
        self.sessions.insert(session);
        Some((id, token))
    }

    /// Whether one more session fits under `max_sessions`, freeing the
    /// [`Sessions::reclaimable`](crate::session::Sessions::reclaimable)
    /// one if that is what it takes: sessions whose link dropped wait for
    /// an agent that may never come back, so they give way to one that is
    /// here. Its agent, if it does come back, gets a new session, as after
    /// the grace period.
    pub(super) fn room_for_a_session(&mut self) -> bool {
        if self.sessions.len() < self.config.max_sessions {
            return true;
        }
        let Some(id) = self.sessions.reclaimable().map(str::to_owned) else {
            return false;
        };
        self.sessions.remove(&id);
        true
    }

    /// A session's new `resume_token`: a fresh draw of the seeded
    /// generator hashed with the core's secret key. The generator alone is
    /// not one-way and its draws are visible (session and response ids);
    /// the key, random per run and never shown, is what makes the token
    /// unguessable.
    fn fresh_resume_token(&mut self) -> String {
        let draws = [self.fresh_token(), self.fresh_token()];
        derive_token(&[
            b"mcp-provider resume_token v1",
            &self.config.secret,
            draws[0].as_bytes(),
            draws[1].as_bytes(),
        ])
    }

    /// `registered` for session `id`, with its real status; `resume_token`
    /// only when a new one was just made (on `register`, not on `renew`).
    fn send_registered(&mut self, conn: ConnId, id: &str, resume_token: Option<&str>) {
        let Some(s) = self.sessions.get(id) else {
            return;
        };
        let expires = rfc3339(self.wall(s.expires_at));
        let text = to_agent::registered(id, s.status.as_str(), &expires, resume_token);
        self.outputs.push_back(Output::ToAgent { conn, text });
    }

    fn renew(&mut self, conn: ConnId, id: &str, ttl: Option<u64>, now: Instant) {
        let (default, max) = (self.config.session_ttl, self.config.max_session_ttl);
        match self.sessions.get_mut(id) {
            Some(s) if s.link == Some(conn) && s.status != Status::Revoked => {
                s.expires_at = expiry(now, ttl, default, max);
                if s.status == Status::Expired {
                    // Back to what it was: still pending if never approved,
                    // still suspended if its budget is spent.
                    s.status = s.live_status();
                }
                self.send_registered(conn, id, None);
            }
            _ => self.agent_error(
                conn,
                &format!("no session {id} on this link"),
                "unknown_session",
            ),
        }
    }

    /// Sessions whose TTL ran out become `expired`: no new requests, the
    /// agent is told, requests in flight may still finish. Dropped sessions
    /// whose grace period ran out are freed.
    pub(super) fn expire_sessions(&mut self, now: Instant) {
        let freed: Vec<String> = self
            .sessions
            .iter()
            .filter(|s| s.link.is_none() && s.detached_until.is_some_and(|at| at <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in freed {
            self.sessions.remove(&id);
        }
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
            self.audit_session("session_expired", &id, now);
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
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

    /// The session of link `old` was resumed on another: its agent came
    /// back on a new connection before this one was seen to drop (a network
    /// cut sends no reset), and proved it with the latest resume token.
    /// The old link's requests fail now, as if it had dropped, and it is
    /// closed; its session stays with the new link.
    fn hand_over_link(&mut self, old: ConnId, now: Instant) {
        self.fail_link(old, now);
        if let Some(link) = self.links.get_mut(&old) {
            link.session = None;
        }
        self.congested.insert(old, ());
        self.outputs.push_back(Output::CloseAgent {
            conn: old,
            why: LinkClose::Replaced,
        });
    }

    /// What waits on link `conn` (its requests, its agent's permission
    /// questions) ends now, as when the link drops.
    fn fail_link(&mut self, conn: ConnId, now: Instant) {
        let error = ApiError::agent("The agent disconnected before finishing its answer.");
        self.fail_where(Self::on_link(conn), &error, false);
        self.end_questions_on(conn, now);
    }

    /// A link dropped: its requests fail now. Its session stays resumable
    /// for `session_grace` (a control-API session: until it expires), then
    /// it is freed.
    pub(super) fn link_closed(&mut self, conn: ConnId, now: Instant) {
        self.fail_link(conn, now);
        let grace = self.config.session_grace;
        if let Some(Link {
            session: Some(id), ..
        }) = self.links.remove(&conn)
        {
            let remove = match self.sessions.get_mut(&id) {
                Some(s) => {
                    s.link = None;
                    let live = matches!(
                        s.status,
                        Status::Active | Status::Pending | Status::Suspended
                    );
                    if live && s.claim.is_none() {
                        s.detached_until = Some(later(now, grace));
                    }
                    !live
                }
                None => false,
            };
            if remove {
                self.sessions.remove(&id);
            }
        }
    }

    /// Answers a WebSocket upgrade on `/v1/agent` (the token was checked).
    /// While the server shuts down an agent is not let in: it would be
    /// told it is connected, then lose the link when the process exits.
    pub(super) fn accept_agent(
        &mut self,
        conn: ConnId,
        request: &crate::http::Request,
    ) -> Result<(), ApiError> {
        if self.shutting_down {
            return Err(ApiError::unavailable("The server is shutting down."));
        }
        let key = request
            .header("sec-websocket-key")
            .filter(|_| request.is_websocket_upgrade())
            .ok_or_else(|| {
                ApiError::invalid("/v1/agent expects a WebSocket upgrade (Upgrade: websocket)")
            })?;
        let link = Link {
            session: None,
            heard: Some(self.now),
        };
        self.links.insert(conn, link);
        self.outputs.push_back(Output::AcceptAgent {
            conn,
            key: key.to_owned(),
            ping_every: self.config.agent_ping_interval,
        });
        Ok(())
    }
}
