//! What a `session/update` says, as the editor is shown it: the agent's
//! message as the answer's text, its thoughts as reasoning, and — unless
//! hidden — its own tool calls and plan as reasoning too, so an editor
//! sees what the agent is doing while its answer waits.

use std::collections::HashMap;

use serde_json::Value;

/// The tool calls a turn keeps the titles of at most; later ones are not
/// named.
const MAX_SHOWN_CALLS: usize = 256;

/// One update, for the editor.
#[derive(Debug, PartialEq, Eq)]
pub enum Shown {
    Text(String),
    Reasoning(String),
}

/// What a turn has shown of the agent's tool calls: each is named once,
/// whether the agent announced it (`tool_call`) or only updated it
/// (`tool_call_update`, as some agents do), and its title is kept (a
/// permission request may name a call by its id alone).
#[derive(Debug, Default)]
pub struct Shows {
    /// Show the agent's own tool calls and plan.
    pub tools: bool,
    calls: HashMap<String, String>,
}

impl Shows {
    pub fn new(tools: bool) -> Self {
        Shows {
            tools,
            calls: HashMap::new(),
        }
    }

    /// The title of the call `id`, when it had one.
    pub fn title(&self, id: &str) -> Option<&str> {
        self.calls.get(id).map(String::as_str)
    }

    /// What `update` (a `session/update`'s `update`) shows, if anything.
    pub fn of(&mut self, update: &Value) -> Option<Shown> {
        match update["sessionUpdate"].as_str()? {
            "agent_message_chunk" => text(&update["content"]).map(Shown::Text),
            "agent_thought_chunk" => text(&update["content"]).map(Shown::Reasoning),
            "tool_call" | "tool_call_update" => self.call(update),
            "plan" if self.tools => plan(&update["entries"]),
            _ => None,
        }
    }

    /// A tool call, named the first time it has a title (when shown).
    fn call(&mut self, update: &Value) -> Option<Shown> {
        let id = update["toolCallId"].as_str()?;
        let title = update["title"].as_str().filter(|t| !t.is_empty())?;
        if self.calls.contains_key(id) || self.calls.len() >= MAX_SHOWN_CALLS {
            return None;
        }
        self.calls.insert(id.to_owned(), title.to_owned());
        self.tools
            .then(|| Shown::Reasoning(format!("\n[{title}]\n")))
    }
}

/// A content block's text (other kinds are not shown).
fn text(content: &Value) -> Option<String> {
    (content["type"] == "text")
        .then(|| content["text"].as_str())
        .flatten()
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A plan as a list, each entry with its status.
fn plan(entries: &Value) -> Option<Shown> {
    let lines: Vec<String> = entries
        .as_array()?
        .iter()
        .filter_map(|e| {
            let content = e["content"].as_str()?;
            let mark = match e["status"].as_str() {
                Some("completed") => "x",
                Some("in_progress") => "~",
                _ => " ",
            };
            Some(format!("- [{mark}] {content}"))
        })
        .collect();
    (!lines.is_empty()).then(|| Shown::Reasoning(format!("\nPlan:\n{}\n", lines.join("\n"))))
}

/// The `finish_reason` a prompt's `stopReason` comes to; `None` for a
/// cancelled turn, which no editor waits for.
pub fn finish_reason(stop: &str) -> Option<&'static str> {
    match stop {
        "cancelled" => None,
        "max_tokens" | "max_turn_requests" => Some("length"),
        "refusal" => Some("content_filter"),
        _ => Some("stop"),
    }
}

/// The token counts a prompt's answer reports, when it does (`usage` with
/// `inputTokens` and `outputTokens`).
pub fn usage(result: &Value) -> Option<(u64, u64)> {
    let usage = &result["usage"];
    Some((
        usage["inputTokens"].as_u64()?,
        usage["outputTokens"].as_u64()?,
    ))
}

/// The tokens in the session's context a `usage_update` reports (`used`,
/// of its context window's `size`).
pub fn context_used(update: &Value) -> Option<u64> {
    (update["sessionUpdate"] == "usage_update")
        .then(|| update["used"].as_u64())
        .flatten()
}

/// A turn's usage, prompt and completion tokens: as its answer reports
/// them; else the prompt as the whole context the agent last reported
/// (`context`, the answer's own tokens taken out — the editor's history is
/// the prompt) and the completion estimated from its text; else both
/// estimated.
pub fn turn_usage(result: &Value, context: Option<u64>, estimated: (u64, u64)) -> (u64, u64) {
    let (prompt, completion) = estimated;
    usage(result).unwrap_or_else(|| match context {
        Some(used) => (used.saturating_sub(completion).max(1), completion),
        None => (prompt, completion),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_the_answers_else_the_context_the_agent_reported_else_estimated() {
        let reported =
            json!({"stopReason": "end_turn", "usage": {"inputTokens": 50, "outputTokens": 7}});
        assert_eq!(turn_usage(&reported, Some(900), (3, 4)), (50, 7));
        let bare = json!({"stopReason": "end_turn"});
        assert_eq!(turn_usage(&bare, Some(900), (3, 4)), (896, 4));
        assert_eq!(turn_usage(&bare, None, (3, 4)), (3, 4));
        let update = json!({"sessionUpdate": "usage_update", "used": 900, "size": 200000,
                            "cost": {"amount": 0.01, "currency": "USD"}});
        assert_eq!(context_used(&update), Some(900));
        assert_eq!(
            context_used(&json!({"sessionUpdate": "plan", "used": 1})),
            None
        );
        assert_eq!(
            context_used(&json!({"sessionUpdate": "usage_update", "used": "x"})),
            None
        );
    }

    #[test]
    fn message_and_thought_chunks_are_text_and_reasoning() {
        let mut shows = Shows::new(false);
        let chunk = |kind: &str, text: &str| json!({"sessionUpdate": kind, "content": {"type": "text", "text": text}});
        assert_eq!(
            shows.of(&chunk("agent_message_chunk", "Hi")),
            Some(Shown::Text("Hi".into()))
        );
        assert_eq!(
            shows.of(&chunk("agent_thought_chunk", "hmm")),
            Some(Shown::Reasoning("hmm".into()))
        );
        assert_eq!(shows.of(&chunk("user_message_chunk", "me")), None);
        assert_eq!(
            shows
                .of(&json!({"sessionUpdate": "agent_message_chunk", "content": {"type": "image"}})),
            None
        );
        let call = json!({"sessionUpdate": "tool_call", "toolCallId": "c1", "title": "Read a.rs"});
        assert_eq!(shows.of(&call), None, "hidden unless asked");
        assert_eq!(shows.title("c1"), Some("Read a.rs"), "but its title kept");
    }

    #[test]
    fn the_agents_own_calls_are_named_once_and_its_plan_listed() {
        let mut shows = Shows::new(true);
        let update = json!({"sessionUpdate": "tool_call_update", "toolCallId": "c1", "title": "Read a.rs", "status": "in_progress"});
        assert_eq!(
            shows.of(&update),
            Some(Shown::Reasoning("\n[Read a.rs]\n".into()))
        );
        assert_eq!(shows.of(&update), None);
        let plan = json!({"sessionUpdate": "plan", "entries": [
            {"content": "look", "status": "completed"}, {"content": "fix", "status": "pending"}]});
        assert_eq!(
            shows.of(&plan),
            Some(Shown::Reasoning("\nPlan:\n- [x] look\n- [ ] fix\n".into()))
        );
    }

    #[test]
    fn stop_reasons_become_finish_reasons() {
        assert_eq!(finish_reason("end_turn"), Some("stop"));
        assert_eq!(finish_reason("max_tokens"), Some("length"));
        assert_eq!(finish_reason("refusal"), Some("content_filter"));
        assert_eq!(finish_reason("cancelled"), None);
        assert_eq!(
            usage(&json!({"usage": {"inputTokens": 5, "outputTokens": 7}})),
            Some((5, 7))
        );
        assert_eq!(usage(&json!({"stopReason": "end_turn"})), None);
    }
}
