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

use std::collections::VecDeque;

use super::ids::Ids;
use super::invocations::Invocations;
use super::outcome::Decision;
use super::Output;
use crate::agent::message::{to_agent, PermissionRequest};
use crate::error::ApiError;
use crate::session::Sessions;
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

impl Question {
    /// Its id on the dashboard and the control API.
    pub(super) fn id(&self) -> &str {
        &self.id
    }

    /// The audit line of its end (its tool and the decision, never its
    /// input).
    pub(super) fn audit_fields(&self, decision: Decision, sessions: &Sessions) -> Value {
        let session = sessions.get(&self.session);
        json!({
            "question": self.id,
            "session_id": self.session,
            "agent_id": session.map(|s| s.agent_id.as_str()),
            "tool": self.title,
            "kind": self.kind,
            "decision": decision.as_str(),
        })
    }
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

    /// Invocation `n` ended: its questions go (its agent stopped waiting).
    pub(super) fn of_invocation(&mut self, n: u64) -> Vec<Question> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.take(|q| q.invocation == n)
    }

    /// Link `conn` dropped: its questions go.
    pub(super) fn of_link(&mut self, conn: ConnId) -> Vec<Question> {
        self.take(|q| q.conn == conn)
    }

    fn take(&mut self, which: impl Fn(&Question) -> bool) -> Vec<Question> {
        let (gone, kept) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(which);
        self.waiting = kept;
        gone
    }

    /// `permission_request` from link `conn`, about an answer in
    /// `invocations`: the question waits for the user, or is answered at
    /// once. Whether it was refused (answered no).
    pub(super) fn ask(
        &mut self,
        conn: ConnId,
        r: PermissionRequest,
        invocations: &Invocations,
        ids: &mut Ids,
        now: Instant,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if r.id.is_empty() || r.id.len() > 128 {
            let why = "permission_request needs an id of 1 to 128 bytes";
            let text = to_agent::error(None, why, "invalid_message");
            out.push_back(Output::ToAgent { conn, text });
            return false;
        }
        if self
            .waiting
            .iter()
            .any(|q| q.conn == conn && q.asked == r.id)
        {
            let why = format!("permission_request {} is already waiting", r.id);
            let text = to_agent::error(None, &why, "invalid_message");
            out.push_back(Output::ToAgent { conn, text });
            return false;
        }
        // Only an answer this link is giving may wait for a question.
        let asked_in = super::invocations::parse_wire_id(&r.invoke).and_then(|n| {
            let inv = invocations.get(n).filter(|inv| inv.agent == conn)?;
            Some((n, inv.session.clone()))
        });
        let Some((invocation, session)) = asked_in else {
            let why = format!("no answer {} is in progress on this link", r.invoke);
            refuse(conn, &r.id, &why, out);
            return true;
        };
        if self.on_link(conn) >= MAX_PER_LINK || self.len() >= MAX_QUESTIONS {
            refuse(
                conn,
                &r.id,
                "too many permission questions are waiting",
                out,
            );
            return true;
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
        let id = format!("q-{}", ids.token());
        self.waiting.push(Question {
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
        false
    }

    /// `permission_withdrawn`: the agent no longer waits (it gave up in
    /// time, or the answer ended). One it never asked is ignored. The
    /// questions that went, and how they ended.
    pub(super) fn withdraw(
        &mut self,
        conn: ConnId,
        asked: &str,
        reason: Option<&str>,
    ) -> (Vec<Question>, Decision) {
        let gone = self.take(|q| q.conn == conn && q.asked == asked);
        let decision = match reason {
            Some("timeout") => Decision::Timeout,
            _ => Decision::Withdrawn,
        };
        (gone, decision)
    }

    /// Questions past their deadline: the agent is told no. The questions
    /// that went.
    pub(super) fn expire(&mut self, now: Instant, out: &mut VecDeque<Output>) -> Vec<Question> {
        let gone = self.take(|q| q.deadline <= now);
        for q in &gone {
            let text =
                to_agent::permission_decision(&q.asked, false, Some("nobody answered in time"));
            out.push_back(Output::ToAgent { conn: q.conn, text });
        }
        gone
    }

    /// `POST /control/permission` `{"id", "allow"}`: the user's decision
    /// goes to the agent. The question, and the decision.
    pub(super) fn decide(
        &mut self,
        body: &[u8],
        out: &mut VecDeque<Output>,
    ) -> Result<(Question, Decision), ApiError> {
        let body = super::control::body_object(body)?;
        let id = super::control::required(&body, "id")?;
        let allow = body
            .get("allow")
            .and_then(Value::as_bool)
            .ok_or_else(|| ApiError::invalid_param("allow", "'allow' must be true or false"))?;
        let Some(q) = self.take(|q| q.id == id).pop() else {
            return Err(ApiError::not_found(format!(
                "No permission question '{id}' is waiting: it was answered, withdrawn or timed out."
            )));
        };
        let text = to_agent::permission_decision(&q.asked, allow, None);
        out.push_back(Output::ToAgent { conn: q.conn, text });
        let decision = if allow {
            Decision::Allow
        } else {
            Decision::Reject
        };
        Ok((q, decision))
    }

    /// `GET /control/permissions`: the questions waiting, oldest first,
    /// with the agent and answer each is about.
    pub(super) fn list(
        &self,
        invocations: &Invocations,
        sessions: &Sessions,
        now: Instant,
    ) -> Value {
        let list: Vec<Value> = self
            .waiting
            .iter()
            .map(|q| {
                let inv = invocations.get(q.invocation);
                let session = sessions.get(&q.session);
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
}

/// Answers question `asked` no at once, saying why.
fn refuse(conn: ConnId, asked: &str, why: &str, out: &mut VecDeque<Output>) {
    let text = to_agent::permission_decision(asked, false, Some(why));
    out.push_back(Output::ToAgent { conn, text });
}
