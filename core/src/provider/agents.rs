//! Agents and their sessions, for every part they touch: agent messages
//! in, registration and renewal, session expiry, the control API's
//! changes to sessions, permission questions, and what happens when a
//! link drops.

use std::time::Instant;

use serde_json::{json, Value};

use super::control::{self, room_for_a_session, NO_ROOM};
use super::outcome::Decision;
use super::questions::Question;
use super::{Output, Provider};
use crate::agent::close::LinkClose;
use crate::agent::message::{to_agent, FromAgent, Invalid, PermissionRequest, Register};
use crate::auth::{derive_token, SecretHash};
use crate::config::Approval;
use crate::error::ApiError;
use crate::session::{expiry, Scopes, Session, Status};
use crate::time::{later, rfc3339};
use crate::ConnId;

impl Provider {
    pub(super) fn agent_message(
        &mut self,
        conn: ConnId,
        message: Result<FromAgent<'_>, Invalid>,
        now: Instant,
    ) {
        let Some(touch_due) = self.links.heard(conn, now) else {
            return;
        };
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
        if touch_due {
            if let Some(id) = self.links.session_due(conn, now) {
                self.sessions.touch(id, now);
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
            FromAgent::PermissionRequest(r) => self.on_permission_request(conn, r, now),
            FromAgent::PermissionWithdrawn { id, reason } => {
                let (gone, decision) = self.questions.withdraw(conn, &id, reason.as_deref());
                for q in gone {
                    self.question_ended(&q, decision, now);
                }
            }
        }
    }

    fn agent_error(&mut self, conn: ConnId, message: &str, code: &str) {
        let text = to_agent::error(None, message, code);
        self.outputs.push_back(Output::ToAgent { conn, text });
    }

    fn register(&mut self, conn: ConnId, r: Register, now: Instant) {
        if let Some(existing) = self.links.session_of(conn) {
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
            self.links.set_session(conn, Some(id.clone()));
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
        if !room_for_a_session(&mut self.sessions, self.config.max_sessions) {
            self.agent_error(conn, NO_ROOM, "too_many_sessions");
            return None;
        }
        let id = format!("sess-{}", self.ids.token());
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

    /// A session's new `resume_token`: a fresh draw of the seeded
    /// generator hashed with the core's secret key. The generator alone is
    /// not one-way and its draws are visible (session and response ids);
    /// the key, random per run and never shown, is what makes the token
    /// unguessable.
    fn fresh_resume_token(&mut self) -> String {
        let draws = [self.ids.token(), self.ids.token()];
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
        self.links.set_session(old, None);
        self.links.congest(old);
        self.outputs.push_back(Output::CloseAgent {
            conn: old,
            why: LinkClose::Replaced,
        });
    }

    /// What waits on link `conn` (its requests, its agent's permission
    /// questions) ends now, as when the link drops.
    fn fail_link(&mut self, conn: ConnId, now: Instant) {
        let error = ApiError::agent("The agent disconnected before finishing its answer.");
        self.fail_where(|inv| inv.agent == conn, &error, false);
        for q in self.questions.of_link(conn) {
            self.question_ended(&q, Decision::Withdrawn, now);
        }
    }

    /// A link dropped: its requests fail now. Its session stays resumable
    /// for `session_grace` (a control-API session: until it expires), then
    /// it is freed.
    pub(super) fn link_closed(&mut self, conn: ConnId, now: Instant) {
        self.fail_link(conn, now);
        let grace = self.config.session_grace;
        if let Some(id) = self.links.close(conn).and_then(|link| link.session) {
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
        self.links.accept(conn, self.now);
        self.outputs.push_back(Output::AcceptAgent {
            conn,
            key: key.to_owned(),
            ping_every: self.config.agent_ping_interval,
        });
        Ok(())
    }

    // ---- the control API ----

    /// `POST /control/register`: see [`control::register`].
    pub(super) fn control_register(
        &mut self,
        body: &[u8],
        now: Instant,
    ) -> Result<Value, ApiError> {
        let session = control::register(&mut self.sessions, &self.config, body, now)?;
        let (id, status, expires_at) = (
            session.id.clone(),
            session.status.as_str(),
            session.expires_at,
        );
        self.sessions.insert(session);
        self.audit_session("session_created", &id, now);
        let expires_at = rfc3339(self.wall(expires_at));
        Ok(json!({"session_id": id, "status": status, "expires_at": expires_at}))
    }

    /// `POST /control/approve`: see [`control::approve`].
    pub(super) fn control_approve(&mut self, body: &[u8], now: Instant) -> Result<Value, ApiError> {
        let (id, status) = control::approve(&mut self.sessions, body, &mut self.outputs)?;
        self.audit_session("session_approved", &id, now);
        Ok(json!({"session_id": id, "status": status}))
    }

    /// Revokes a session: its requests in flight fail, its agent is told.
    pub(super) fn control_revoke(&mut self, body: &[u8], now: Instant) -> Result<Value, ApiError> {
        let (id, link) = control::revoke(&mut self.sessions, body)?;
        self.audit_session("session_revoked", &id, now);
        // Editors read this: no session id in it.
        let error = ApiError::unavailable("The agent's session was revoked.");
        self.fail_where(|inv| inv.session == id, &error, true);
        match link {
            Some(conn) => {
                // The link served only this session: tell the agent, then close it.
                let text = to_agent::session_event("revoked", &id);
                self.outputs.push_back(Output::ToAgent { conn, text });
                self.outputs.push_back(Output::CloseAgent {
                    conn,
                    why: LinkClose::Revoked,
                });
            }
            None => {
                self.sessions.remove(&id);
            }
        }
        Ok(json!({"session_id": id, "status": "revoked"}))
    }

    // ---- permission questions ----

    /// `permission_request`: the question waits for the user, or is
    /// answered no at once.
    fn on_permission_request(&mut self, conn: ConnId, r: PermissionRequest, now: Instant) {
        let out = &mut self.outputs;
        if (self.questions).ask(conn, r, &self.invocations, &mut self.ids, now, out) {
            self.metrics.count_question(Decision::Refused);
        }
    }

    /// `POST /control/permission` `{"id", "allow"}`: the user's decision
    /// goes to the agent.
    pub(super) fn control_permission(
        &mut self,
        body: &[u8],
        now: Instant,
    ) -> Result<Value, ApiError> {
        let (q, decision) = self.questions.decide(body, &mut self.outputs)?;
        self.question_ended(&q, decision, now);
        let allow = decision == Decision::Allow;
        Ok(json!({"id": q.id(), "allow": allow}))
    }

    /// Counts and audits a question that ended (its tool and the
    /// decision, never its input).
    pub(super) fn question_ended(&mut self, q: &Question, decision: Decision, now: Instant) {
        self.metrics.count_question(decision);
        if !self.audit.enabled() {
            return;
        }
        let fields = q.audit_fields(decision, &self.sessions);
        let wall = self.wall(now);
        self.audit.record(wall, "permission_decided", fields);
    }
}
