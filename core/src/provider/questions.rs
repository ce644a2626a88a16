//! Permission questions: an agent asks the user, on the dashboard, whether
//! it may run one of its own tools (`permission_request`); the user's
//! answer goes back as `permission_decision`. Questions are few and
//! bounded — per link and in all — and none outlives what it is about: a
//! question goes when its agent withdraws it, when the answer it belongs
//! to ends, when its link drops, and past its deadline (then the agent is
//! told no). A question over the caps, or about no answer of its link, is
//! answered no at once.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{invoke, Output, Provider};
use crate::agent::message::{to_agent, PermissionRequest};
use crate::error::ApiError;
use crate::text::bounded;
use crate::time::later;
use crate::ConnId;

/// Questions one agent link may have waiting.
pub(super) const MAX_PER_LINK: usize = 16;
/// Questions waiting in all.
pub(super) const MAX_QUESTIONS: usize = 128;
/// The longest a question waits, whatever its agent says.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(600);
/// How long a question waits when its agent does not say.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
/// The most of a tool's title, kind and input kept (bytes).
const MAX_TITLE: usize = 256;
const MAX_KIND: usize = 32;
const MAX_INPUT: usize = 4096;

/// How questions end, as counted in
/// `mcp_provider_permission_questions_total{decision=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The user allowed the call.
    Allow,
    /// The user rejected it.
    Reject,
    /// Nobody decided in time.
    Timeout,
    /// Its agent stopped waiting: the answer it belongs to ended, or the
    /// link dropped.
    Withdrawn,
    /// Answered no at once: over the caps, or about no answer in progress.
    Refused,
}

impl Decision {
    pub const ALL: [Decision; 5] = [
        Decision::Allow,
        Decision::Reject,
        Decision::Timeout,
        Decision::Withdrawn,
        Decision::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Reject => "reject",
            Decision::Timeout => "timeout",
            Decision::Withdrawn => "withdrawn",
            Decision::Refused => "refused",
        }
    }
}

/// One question waiting for the user.
#[derive(Debug, Clone)]
pub(super) struct Question {
    /// Its id on the dashboard and the control API.
    id: String,
    /// The link that asked, and the id it asked under.
    conn: ConnId,
    asked: String,
    /// The invocation whose answer waits for it, and its session.
    invocation: u64,
    session: String,
    title: String,
    kind: String,
    input: String,
    since: Instant,
    deadline: Instant,
}

/// The questions waiting, oldest first.
#[derive(Debug, Default)]
pub(super) struct Questions {
    waiting: Vec<Question>,
}

impl Questions {
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// When the next question runs out of time.
    pub(super) fn due(&self) -> Option<Instant> {
        self.waiting.iter().map(|q| q.deadline).min()
    }

    fn on_link(&self, conn: ConnId) -> usize {
        self.waiting.iter().filter(|q| q.conn == conn).count()
    }

    fn take(&mut self, which: impl Fn(&Question) -> bool) -> Vec<Question> {
        let (gone, kept) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(which);
        self.waiting = kept;
        gone
    }
}

impl Provider {
    /// `permission_request`: the question waits for the user, or is
    /// answered no at once.
    pub(super) fn on_permission_request(
        &mut self,
        conn: ConnId,
        r: PermissionRequest,
        now: Instant,
    ) {
        if r.id.is_empty() || r.id.len() > 128 {
            let why = "permission_request needs an id of 1 to 128 bytes";
            let text = to_agent::error(None, why, "invalid_message");
            return self.outputs.push_back(Output::ToAgent { conn, text });
        }
        let waiting = &self.questions.waiting;
        if waiting.iter().any(|q| q.conn == conn && q.asked == r.id) {
            let why = format!("permission_request {} is already waiting", r.id);
            let text = to_agent::error(None, &why, "invalid_message");
            return self.outputs.push_back(Output::ToAgent { conn, text });
        }
        // Only an answer this link is giving may wait for a question.
        let asked_in = invoke::parse_wire_id(&r.invoke).and_then(|n| {
            let inv = self.invocations.get(&n).filter(|inv| inv.agent() == conn)?;
            Some((n, inv.session().to_owned()))
        });
        let Some((invocation, session)) = asked_in else {
            let why = format!("no answer {} is in progress on this link", r.invoke);
            return self.refuse_question(conn, &r.id, &why);
        };
        if self.questions.on_link(conn) >= MAX_PER_LINK || self.questions.len() >= MAX_QUESTIONS {
            return self.refuse_question(conn, &r.id, "too many permission questions are waiting");
        }
        let wait = r
            .deadline_ms
            .map_or(DEFAULT_WAIT, Duration::from_millis)
            .min(MAX_WAIT);
        let input = match r.tool.input {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text,
            Some(other) => other.to_string(),
        };
        let id = format!("q-{}", self.fresh_token());
        self.questions.waiting.push(Question {
            id,
            conn,
            asked: r.id,
            invocation,
            session,
            title: bounded(r.tool.title.as_deref().unwrap_or_default(), MAX_TITLE),
            kind: bounded(r.tool.kind.as_deref().unwrap_or("other"), MAX_KIND),
            input: bounded(&input, MAX_INPUT),
            since: now,
            deadline: later(now, wait),
        });
    }

    /// Answers question `asked` no at once, saying why.
    fn refuse_question(&mut self, conn: ConnId, asked: &str, why: &str) {
        self.count_question(Decision::Refused);
        let text = to_agent::permission_decision(asked, false, Some(why));
        self.outputs.push_back(Output::ToAgent { conn, text });
    }

    /// `permission_withdrawn`: the agent no longer waits (it gave up in
    /// time, or the answer ended). One it never asked is ignored.
    pub(super) fn on_permission_withdrawn(
        &mut self,
        conn: ConnId,
        asked: &str,
        reason: Option<&str>,
        now: Instant,
    ) {
        let gone = self.questions.take(|q| q.conn == conn && q.asked == asked);
        let decision = match reason {
            Some("timeout") => Decision::Timeout,
            _ => Decision::Withdrawn,
        };
        for q in gone {
            self.question_ended(&q, decision, now);
        }
    }

    /// Invocation `n` ended: its questions go (its agent stopped waiting).
    pub(super) fn end_questions_of(&mut self, n: u64) {
        if self.questions.waiting.is_empty() {
            return;
        }
        let now = self.now;
        for q in self.questions.take(|q| q.invocation == n) {
            self.question_ended(&q, Decision::Withdrawn, now);
        }
    }

    /// A link dropped: its questions go.
    pub(super) fn end_questions_on(&mut self, conn: ConnId, now: Instant) {
        for q in self.questions.take(|q| q.conn == conn) {
            self.question_ended(&q, Decision::Withdrawn, now);
        }
    }

    /// Questions past their deadline: the agent is told no.
    pub(super) fn expire_questions(&mut self, now: Instant) {
        for q in self.questions.take(|q| q.deadline <= now) {
            let text =
                to_agent::permission_decision(&q.asked, false, Some("nobody answered in time"));
            self.outputs
                .push_back(Output::ToAgent { conn: q.conn, text });
            self.question_ended(&q, Decision::Timeout, now);
        }
    }

    /// `POST /control/permission` `{"id", "allow"}`: the user's decision
    /// goes to the agent.
    pub(super) fn control_permission(
        &mut self,
        body: &[u8],
        now: Instant,
    ) -> Result<Value, ApiError> {
        let body = super::control::body_object(body)?;
        let id = super::control::required(&body, "id")?;
        let allow = body
            .get("allow")
            .and_then(Value::as_bool)
            .ok_or_else(|| ApiError::invalid_param("allow", "'allow' must be true or false"))?;
        let Some(q) = self.questions.take(|q| q.id == id).pop() else {
            return Err(ApiError::not_found(format!(
                "No permission question '{id}' is waiting: it was answered, withdrawn or timed out."
            )));
        };
        let text = to_agent::permission_decision(&q.asked, allow, None);
        self.outputs
            .push_back(Output::ToAgent { conn: q.conn, text });
        let decision = if allow {
            Decision::Allow
        } else {
            Decision::Reject
        };
        self.question_ended(&q, decision, now);
        Ok(json!({"id": q.id, "allow": allow}))
    }

    /// `GET /control/permissions`: the questions waiting, oldest first,
    /// with the agent and answer each is about.
    pub(super) fn control_permissions(&self, now: Instant) -> Value {
        let list: Vec<Value> = self
            .questions
            .waiting
            .iter()
            .map(|q| {
                let inv = self.invocations.get(&q.invocation);
                let session = self.sessions.get(&q.session);
                json!({
                    "id": q.id,
                    "agent_id": session.map(|s| s.agent_id.as_str()),
                    "label": session.map(|s| s.label.as_str()),
                    "session_id": q.session,
                    "model": inv.map(|inv| inv.model.as_str()),
                    "completion_id": inv.map(|inv| inv.id.as_str()),
                    "tool": {"title": q.title, "kind": q.kind, "input": q.input},
                    "age_ms": now.saturating_duration_since(q.since).as_millis() as u64,
                    "expires_in_ms": q.deadline.saturating_duration_since(now).as_millis() as u64,
                })
            })
            .collect();
        json!({"questions": list})
    }

    /// Counts and audits a question that ended (its tool and the
    /// decision, never its input).
    fn question_ended(&mut self, q: &Question, decision: Decision, now: Instant) {
        self.count_question(decision);
        if !self.audit.enabled() {
            return;
        }
        let session = self.sessions.get(&q.session);
        let fields = json!({
            "question": q.id,
            "session_id": q.session,
            "agent_id": session.map(|s| s.agent_id.as_str()),
            "tool": q.title,
            "kind": q.kind,
            "decision": decision.as_str(),
        });
        let wall = self.wall(now);
        self.audit.record(wall, "permission_decided", fields);
    }

    fn count_question(&mut self, decision: Decision) {
        self.metrics.count_question(decision);
    }
}
