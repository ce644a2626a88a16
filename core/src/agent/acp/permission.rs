//! `session/request_permission`: the agent asks before it runs one of its
//! own tools. An editor asking a model has no way to answer that, so a
//! policy does: at once (never, read-only, always), or by asking the user
//! on the server's dashboard ([`Policy::Ask`]), for a bounded time. No
//! turn ever waits on a question nobody sees: a question nobody decides
//! in time, whose turn ends, or whose link is lost is rejected.
//! Option ids differ between agents (`allow`, `approved`,
//! `proceed_once`…); the option is chosen by its `kind`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{AcpAgent, At};
use crate::mcp;
use crate::text::bounded;
use crate::time::later;

/// How long a question waits for the user by default.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// Questions waiting at once; past it a question is rejected at once.
pub const MAX_ASKS: usize = 64;

/// The most of a tool's input (its JSON text) a question shows.
pub const MAX_INPUT: usize = 2048;

/// The most of a tool's title a question shows.
pub const MAX_TITLE: usize = 256;

/// Which of the agent's own tools it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// None: every request is rejected.
    #[default]
    Never,
    /// Those that only look (reading, searching, thinking).
    ReadOnly,
    /// All of them.
    Always,
    /// The user decides on the dashboard, within `timeout`; rejected
    /// past it.
    Ask { timeout: Duration },
}

impl Policy {
    pub fn from_name(name: &str) -> Option<Policy> {
        match name {
            "never" => Some(Policy::Never),
            "read-only" => Some(Policy::ReadOnly),
            "always" => Some(Policy::Always),
            "ask" => Some(Policy::Ask {
                timeout: ASK_TIMEOUT,
            }),
            _ => None,
        }
    }

    /// Whether a call of this ACP tool `kind` is allowed at once (a
    /// question that cannot be asked is rejected).
    fn allows(self, kind: &str) -> bool {
        match self {
            Policy::Never | Policy::Ask { .. } => false,
            Policy::ReadOnly => matches!(kind, "read" | "search" | "think"),
            Policy::Always => true,
        }
    }
}

/// The answer to a `session/request_permission`'s `params`: the option of
/// the kind the policy picks (once rather than always) — allowed, for one
/// of the `editors` tools — or `cancelled` when the agent offers none of
/// that kind.
pub fn answer(policy: Policy, params: &Value, editors: bool) -> Value {
    let kind = params["toolCall"]["kind"].as_str().unwrap_or("other");
    choose(params, editors || policy.allows(kind))
}

/// The option allowing (once) or rejecting (once) the call, chosen by
/// kind; `cancelled` when the agent offers none of that kind.
fn choose(params: &Value, allow: bool) -> Value {
    let wanted: &[&str] = if allow {
        &["allow_once", "allow_always"]
    } else {
        &["reject_once", "reject_always"]
    };
    let options = params["options"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let chosen = wanted.iter().find_map(|want| {
        options
            .iter()
            .find(|o| o["kind"] == *want)
            .and_then(|o| o["optionId"].as_str())
    });
    match chosen {
        Some(id) => json!({"outcome": {"outcome": "selected", "optionId": id}}),
        None => cancelled(),
    }
}

/// The answer to a question whose turn was cancelled, as ACP asks.
fn cancelled() -> Value {
    json!({"outcome": {"outcome": "cancelled"}})
}

/// What a question shows of the tool call in `params`: its title, kind
/// and input (`rawInput` as JSON text; without it, what the call's
/// `content` says: its texts, and its diffs as JSON text), each bounded.
pub fn tool_of(params: &Value) -> Value {
    let call = &params["toolCall"];
    let input = match &call["rawInput"] {
        Value::Null => content_of(&call["content"]),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    json!({
        "title": bounded(call["title"].as_str().unwrap_or_default(), MAX_TITLE),
        "kind": bounded(call["kind"].as_str().unwrap_or("other"), 32),
        "input": bounded(&input, MAX_INPUT),
    })
}

/// The texts and diffs of a tool call's `content`, a line each (agents
/// such as Gemini CLI say no `rawInput`: its shell call's content is the
/// directory it runs in, its edit's the diff).
fn content_of(content: &Value) -> String {
    let shown =
        content
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| match c["type"].as_str()? {
                "content" => Some(c["content"]["text"].as_str()?.to_owned()),
                "diff" => Some(
                    json!({"path": c["path"], "oldText": c["oldText"], "newText": c["newText"]})
                        .to_string(),
                ),
                _ => None,
            });
    shown.collect::<Vec<_>>().join("\n")
}

/// One question waiting for the user.
#[derive(Debug)]
struct Ask {
    /// Its id on the agent link.
    id: String,
    /// The id of the agent's `session/request_permission`, answered with
    /// the decision.
    request: Value,
    /// The ACP session whose turn waits.
    session: At,
    deadline: Instant,
    /// The answers for each decision, chosen when it was asked.
    allow: Value,
    reject: Value,
}

/// The questions waiting for the user, at most [`MAX_ASKS`]. Sans-IO:
/// each call says what to write to the agent (JSON-RPC answers) and what
/// to send the server (frames).
#[derive(Debug, Default)]
pub(super) struct Asks {
    next: u64,
    waiting: Vec<Ask>,
}

/// What settling questions asks for: answers for the agent process, and
/// frames for the server.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Settled {
    /// Each for the process of its slot.
    pub lines: Vec<(usize, String)>,
    pub frames: Vec<String>,
}

impl Asks {
    /// Questions waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// When the first question waiting runs out of time.
    pub fn due(&self) -> Option<Instant> {
        self.waiting.iter().map(|a| a.deadline).min()
    }

    /// Puts the agent's request `request` (`params`), in `session` during
    /// the turn of `invoke`, to the user for `timeout`: the frame for the
    /// server, or `None` when too many wait already (then it is rejected
    /// at once).
    pub fn ask(
        &mut self,
        request: &Value,
        params: &Value,
        (session, invoke): (&At, &str),
        timeout: Duration,
        now: Instant,
    ) -> Option<String> {
        if self.waiting.len() >= MAX_ASKS {
            return None;
        }
        self.next += 1;
        let id = format!("perm-{}", self.next);
        let frame = json!({
            "type": "permission_request",
            "id": id,
            "invoke": invoke,
            "tool": tool_of(params),
            "deadline_ms": timeout.as_millis() as u64,
        });
        self.waiting.push(Ask {
            id,
            request: request.clone(),
            session: session.clone(),
            deadline: later(now, timeout),
            allow: choose(params, true),
            reject: choose(params, false),
        });
        Some(frame.to_string())
    }

    /// The user decided question `id`: the answer for the agent, or
    /// `None` for a question that no longer waits.
    pub fn decided(&mut self, id: &str, allow: bool) -> Option<(usize, String)> {
        let at = self.waiting.iter().position(|a| a.id == id)?;
        let ask = self.waiting.remove(at);
        let answer = if allow { ask.allow } else { ask.reject };
        Some((ask.session.slot, mcp::result(&ask.request, answer)))
    }

    /// Questions past their deadline are rejected, and withdrawn from the
    /// server.
    pub fn expire(&mut self, now: Instant) -> Settled {
        self.settle(|a| a.deadline <= now, |a| a.reject.clone(), "timeout")
    }

    /// The turn in `session` ended: its questions are answered `cancelled`
    /// (as ACP asks of a cancelled turn), and withdrawn.
    pub fn end_session(&mut self, session: &At) -> Settled {
        self.settle(|a| a.session == *session, |_| cancelled(), "ended")
    }

    /// The agent process of `slot` ended: nothing is left to answer; its
    /// questions are withdrawn.
    pub fn end_all(&mut self, slot: usize) -> Settled {
        let mut settled = self.settle(|a| a.session.slot == slot, |_| cancelled(), "ended");
        settled.lines.clear();
        settled
    }

    /// Answers and withdraws (saying `reason`) the questions `which`
    /// picks.
    fn settle(
        &mut self,
        which: impl Fn(&Ask) -> bool,
        answer: impl Fn(&Ask) -> Value,
        reason: &str,
    ) -> Settled {
        let mut settled = Settled::default();
        let (gone, kept): (Vec<Ask>, Vec<Ask>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|a| which(a));
        self.waiting = kept;
        for ask in gone {
            settled
                .lines
                .push((ask.session.slot, mcp::result(&ask.request, answer(&ask))));
            settled.frames.push(
                json!({"type": "permission_withdrawn", "id": ask.id, "reason": reason}).to_string(),
            );
        }
        settled
    }
}

/// The agent's side: the narrow hooks `mod.rs` calls.
impl AcpAgent {
    /// Asks the user about the agent's request `id` when the policy says
    /// so and the session has a turn to ask in; false when it is to be
    /// answered at once instead.
    pub(super) fn ask_the_user(
        &mut self,
        slot: usize,
        id: &Value,
        params: &Value,
        now: Instant,
    ) -> bool {
        let Policy::Ask { timeout } = self.plan.policy else {
            return false;
        };
        if self.asks_for_editor_tool(slot, params) {
            return false;
        }
        let Some((session, invoke)) = params["sessionId"].as_str().and_then(|id| {
            let session = At {
                slot,
                id: id.to_owned(),
            };
            let turn = self.sessions.get(&session)?.turn.as_ref()?;
            (!turn.parked()).then(|| (session, turn.invoke.clone()))
        }) else {
            return false;
        };
        let Some(frame) = self.asks.ask(id, params, (&session, &invoke), timeout, now) else {
            return false;
        };
        tracing::debug!(
            "ACP agent asked permission for {}: asking the user",
            params["toolCall"]["title"]
        );
        self.ready.push_back(frame);
        true
    }

    /// The user decided question `id` (a `permission_decision`).
    pub(super) fn permission_decided(&mut self, id: &str, allow: bool) {
        if let Some((slot, line)) = self.asks.decided(id, allow) {
            tracing::debug!("ACP agent: the user decided {id}: allow {allow}");
            self.pool.write(slot, line);
        }
    }

    /// Questions nobody decided in time are rejected.
    pub(super) fn asks_due(&mut self, now: Instant) {
        let settled = self.asks.expire(now);
        self.carry(settled);
    }

    /// The turn in `session` ended: its questions go.
    pub(super) fn end_asks(&mut self, session: &At) {
        let settled = self.asks.end_session(session);
        self.carry(settled);
    }

    /// The agent process of `slot` ended: its questions go.
    pub(super) fn end_all_asks(&mut self, slot: usize) {
        let settled = self.asks.end_all(slot);
        self.carry(settled);
    }

    fn carry(&mut self, settled: Settled) {
        for (slot, line) in settled.lines {
            self.pool.write(slot, line);
        }
        self.ready.extend(settled.frames);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(kind: &str) -> Value {
        json!({"sessionId": "s", "toolCall": {"toolCallId": "c", "kind": kind},
               "options": [
                   {"optionId": "proceed_always", "kind": "allow_always", "name": "Always"},
                   {"optionId": "proceed_once", "kind": "allow_once", "name": "Yes"},
                   {"optionId": "cancel", "kind": "reject_once", "name": "No"}]})
    }

    fn chosen(answer: Value) -> String {
        answer["outcome"]["optionId"]
            .as_str()
            .unwrap_or("-")
            .to_owned()
    }

    #[test]
    fn the_option_is_chosen_by_kind_once_rather_than_always() {
        assert_eq!(
            chosen(answer(Policy::Never, &asked("read"), false)),
            "cancel"
        );
        assert_eq!(
            chosen(answer(Policy::ReadOnly, &asked("read"), false)),
            "proceed_once"
        );
        assert_eq!(
            chosen(answer(Policy::ReadOnly, &asked("edit"), false)),
            "cancel"
        );
        assert_eq!(
            chosen(answer(Policy::Always, &asked("execute"), false)),
            "proceed_once"
        );
    }

    #[test]
    fn without_an_option_of_its_kind_the_request_is_cancelled() {
        let only_allow = json!({"toolCall": {"kind": "edit"},
                                "options": [{"optionId": "ok", "kind": "allow_once"}]});
        assert_eq!(
            answer(Policy::Never, &only_allow, false),
            json!({"outcome": {"outcome": "cancelled"}})
        );
        assert_eq!(
            answer(Policy::Always, &json!({"options": "nonsense"}), false),
            json!({"outcome": {"outcome": "cancelled"}})
        );
    }

    #[test]
    fn ask_is_a_policy_whose_questions_are_bounded() {
        assert_eq!(
            Policy::from_name("ask"),
            Some(Policy::Ask {
                timeout: ASK_TIMEOUT
            })
        );
        // Asked nothing at once, it rejects.
        let ask = Policy::Ask {
            timeout: ASK_TIMEOUT,
        };
        assert_eq!(chosen(answer(ask, &asked("read"), false)), "cancel");
        let now = Instant::now();
        let mut asks = Asks::default();
        let s = At {
            slot: 0,
            id: "s".into(),
        };
        for n in 0..MAX_ASKS {
            let frame = asks.ask(&json!(n), &asked("edit"), (&s, "inv-1"), ASK_TIMEOUT, now);
            assert!(frame.is_some());
        }
        let over = asks.ask(
            &json!("over"),
            &asked("edit"),
            (&s, "inv-1"),
            ASK_TIMEOUT,
            now,
        );
        assert_eq!(over, None);
        assert_eq!(asks.len(), MAX_ASKS);
        assert_eq!(asks.end_session(&s).lines.len(), MAX_ASKS);
        assert!(asks.is_empty() && asks.due().is_none());
    }

    #[test]
    fn a_tool_shows_its_title_kind_and_input_bounded() {
        let long = "é".repeat(MAX_TITLE);
        let params = json!({"toolCall": {"title": long, "rawInput": "ls -la"}});
        let tool = tool_of(&params);
        assert_eq!(tool["kind"], "other");
        assert_eq!(tool["input"], "ls -la");
        let title = tool["title"].as_str().unwrap_or_default();
        assert!(title.ends_with('…') && title.len() <= MAX_TITLE + 3);
        assert_eq!(tool_of(&json!({}))["input"], "");
    }

    #[test]
    fn without_raw_input_a_tool_shows_its_contents_texts_and_diffs() {
        let content = json!([
            {"type": "content", "content": {"type": "text", "text": "[cwd /tmp/w]"}},
            {"type": "terminal", "terminalId": "t1"},
            {"type": "diff", "path": "/tmp/w/a.txt", "oldText": null, "newText": "hi"},
        ]);
        let tool = tool_of(&json!({"toolCall": {"title": "touch a", "content": content}}));
        let diff = r#"{"newText":"hi","oldText":null,"path":"/tmp/w/a.txt"}"#;
        assert_eq!(tool["input"], format!("[cwd /tmp/w]\n{diff}"));
        let raw = json!({"toolCall": {"rawInput": {"command": "ls"}, "content": content}});
        assert_eq!(tool_of(&raw)["input"], r#"{"command":"ls"}"#);
    }
}
