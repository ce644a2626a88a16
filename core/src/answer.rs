//! What an agent has answered so far for one request: text, reasoning,
//! tool calls, finish reason and usage.
//!
//! Streams keep only counts; whole answers (non-streamed requests, and tool
//! calls, which Ollama sends complete) keep the text too.

use std::borrow::Cow;

use serde_json::{json, Value};

use crate::agent::message::{Delta, ToolCallDelta, Usage};

/// Distinct tool calls one answer may hold.
pub(crate) const MAX_TOOL_CALLS: usize = 256;

/// Runs of reasoning and of text one answer may alternate in: each opens
/// an output item (Responses) or a content block (Messages) that the
/// encoder keeps and the last event lists again, whatever the text's
/// size, so an agent switching at every byte would grow them far past
/// the answer's byte cap. Real answers switch a few times.
pub(crate) const MAX_TEXT_RUNS: usize = 4096;

/// Token counts are clamped to what a JSON number holds exactly, so sums
/// never wrap and every client reads them as sent.
const MAX_TOKEN_COUNT: u64 = (1 << 53) - 1;

/// The finish reasons editors understand; anything else an agent sends
/// becomes `stop` (or `tool_calls` when the answer has calls).
/// [`CANCELLED`] is the provider's own.
const FINISH_REASONS: [&str; 5] = ["stop", "length", "tool_calls", "content_filter", CANCELLED];

/// The finish reason of an answer cancelled by its id
/// (`DELETE /completions/{id}`, a background response's cancel): the
/// Responses API says `cancelled`; APIs without the word end as a normal
/// stop ([`Answer::api_finish_reason`]).
pub const CANCELLED: &str = "cancelled";

/// Why an answer cannot grow any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Overflow {
    #[error("the answer has more than {MAX_TOOL_CALLS} tool calls")]
    ToolCalls,
    #[error("the answer is larger than {0} bytes")]
    Bytes(usize),
    #[error("the answer switches between reasoning and text more than {MAX_TEXT_RUNS} times")]
    TextRuns,
}

/// What an answer may hold, and what it used, counted without keeping
/// anything: the router runs one per answer in flight, the one count of
/// it. It enforces the caps before a piece is posted, so the editor side's
/// [`Answer`], which keeps what this counts, never grows past them; and it
/// gives the usage that is billed and that the answer's last event reports.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    keep_text: bool,
    /// Cap on what is kept (text and tool-call arguments), in bytes.
    max_kept: usize,
    kept: usize,
    content_chars: u64,
    /// The indices of the tool calls seen so far.
    calls: Vec<u64>,
    /// Runs of reasoning or text so far, and whether the last one is
    /// reasoning.
    runs: usize,
    in_reasoning: Option<bool>,
    reported: Option<Usage>,
    prompt_estimate: u64,
}

impl Tally {
    /// `keep_text`: the answer keeps its text (a whole answer, or an API
    /// whose last events repeat it); `max_kept` bounds what it keeps.
    pub fn new(keep_text: bool, prompt_estimate: u64, max_kept: usize) -> Self {
        Tally {
            keep_text,
            max_kept,
            prompt_estimate: prompt_estimate.min(MAX_TOKEN_COUNT),
            ..Tally::default()
        }
    }

    /// Counts `bytes` more kept in memory.
    fn keep(&mut self, bytes: usize) -> Result<(), Overflow> {
        self.kept = self.kept.saturating_add(bytes);
        if self.kept > self.max_kept {
            return Err(Overflow::Bytes(self.max_kept));
        }
        Ok(())
    }

    fn add_text(&mut self, text: &str) -> Result<(), Overflow> {
        self.content_chars = self
            .content_chars
            .saturating_add(text.chars().count() as u64);
        if self.keep_text {
            self.keep(text.len())?;
        }
        Ok(())
    }

    /// Counts a run of reasoning (or of text) that `text` starts, if the
    /// last one was of the other kind.
    fn enter_run(&mut self, reasoning: bool, text: &str) -> Result<(), Overflow> {
        if text.is_empty() || self.in_reasoning == Some(reasoning) {
            return Ok(());
        }
        self.in_reasoning = Some(reasoning);
        self.runs += 1;
        if self.runs > MAX_TEXT_RUNS {
            return Err(Overflow::TextRuns);
        }
        Ok(())
    }

    fn add_tool_calls(&mut self, calls: &[ToolCallDelta]) -> Result<(), Overflow> {
        for (position, call) in calls.iter().enumerate() {
            let index = delta_index(call, position);
            if !self.calls.contains(&index) {
                if self.calls.len() >= MAX_TOOL_CALLS {
                    return Err(Overflow::ToolCalls);
                }
                self.calls.push(index);
            }
            let function = call.get("function");
            let id = call.get("id").and_then(Value::as_str);
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            let size = id.map_or(0, str::len)
                + name.map_or(0, str::len)
                + delta_arguments(call).map_or(0, |a| a.len());
            self.keep(size)?;
        }
        Ok(())
    }

    /// Counts one delta; an error when the answer would grow past its caps.
    /// Reasoning counts as answer text: the real APIs bill it as
    /// completion tokens.
    pub fn add_delta(&mut self, delta: &Delta) -> Result<(), Overflow> {
        if let Some(text) = &delta.reasoning {
            self.enter_run(true, text)?;
            self.add_text(text)?;
        }
        if let Some(text) = &delta.content {
            self.enter_run(false, text)?;
            self.add_text(text)?;
        }
        if let Some(calls) = &delta.tool_calls {
            self.add_tool_calls(calls)?;
        }
        Ok(())
    }

    /// The agent's own count, when it sent one, clamped.
    pub fn report(&mut self, usage: Option<Usage>) {
        if let Some(u) = usage {
            self.reported = Some(Usage {
                prompt_tokens: u.prompt_tokens.min(MAX_TOKEN_COUNT),
                completion_tokens: u.completion_tokens.min(MAX_TOKEN_COUNT),
            });
        }
    }

    /// The tokens used: reported by the agent, else estimated.
    pub fn usage(&self) -> Usage {
        self.reported.unwrap_or(Usage {
            prompt_tokens: self.prompt_estimate,
            completion_tokens: self.content_chars.div_ceil(4),
        })
    }
}

/// An answer as gathered from the agent's deltas: what a whole body is
/// written from, and what the last events of a stream repeat. It keeps
/// without counting: the router's [`Tally`] has counted every delta
/// against the caps before it reaches here.
#[derive(Debug, Default)]
pub struct Answer {
    /// Accumulated text, when the answer keeps text.
    pub content: String,
    /// Accumulated reasoning text, when the answer keeps text.
    pub reasoning: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    keep_text: bool,
    /// The router's count, given when the answer finishes.
    usage: Usage,
}

/// The two kinds of text an answer streams: the model's reasoning and the
/// answer's content. APIs that show each in items or blocks of its own
/// (Responses, Messages) follow which one is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Reasoning,
    Content,
}

impl Run {
    /// This run's text in `delta` (empty when it has none).
    pub fn of<'a>(self, delta: &'a Delta) -> &'a str {
        let text = match self {
            Run::Reasoning => &delta.reasoning,
            Run::Content => &delta.content,
        };
        text.as_deref().unwrap_or_default()
    }

    /// All of this run's text `answer` keeps.
    pub fn source(self, answer: &Answer) -> &str {
        match self {
            Run::Reasoning => &answer.reasoning,
            Run::Content => &answer.content,
        }
    }
}

/// A tool call assembled from its deltas (same `index`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub index: u64,
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl ToolCall {
    /// The call's id, or one made from `prefix`, the answer's `token` and
    /// the call's index when the agent sent none.
    pub fn id_or(&self, prefix: &str, token: &str) -> String {
        if self.id.is_empty() {
            format!("{prefix}{token}_{}", self.index)
        } else {
            self.id.clone()
        }
    }
}

/// The index of the tool call a delta belongs to: its `index`, else its
/// place in the message.
pub fn delta_index(call: &ToolCallDelta, position: usize) -> u64 {
    call.get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

/// A tool-call delta's piece of the arguments text (a JSON value an agent
/// sent instead of text counts as its JSON text).
pub fn delta_arguments(call: &ToolCallDelta) -> Option<Cow<'_, str>> {
    match call.get("function")?.get("arguments")? {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Null => None,
        other => Some(Cow::Owned(other.to_string())),
    }
}

impl Answer {
    /// Whether the answer keeps its text.
    pub fn keeps_text(&self) -> bool {
        self.keep_text
    }

    /// The tool call with this index.
    pub fn tool_call(&self, index: u64) -> Option<&ToolCall> {
        self.tool_calls.iter().find(|c| c.index == index)
    }

    /// `keep_text`: the answer keeps its text (a whole answer, or an API
    /// whose last events repeat it).
    pub fn new(keep_text: bool) -> Self {
        Answer {
            keep_text,
            ..Answer::default()
        }
    }

    /// Keeps one delta: its text and reasoning, if the answer keeps
    /// text, and its tool calls, merged.
    pub fn add_delta(&mut self, delta: &Delta) {
        if self.keep_text {
            if let Some(text) = &delta.reasoning {
                self.reasoning.push_str(text);
            }
            if let Some(text) = &delta.content {
                self.content.push_str(text);
            }
        }
        if let Some(calls) = &delta.tool_calls {
            self.merge_tool_calls(calls);
        }
    }

    /// Merges tool-call deltas: a delta with a new `index` starts a call,
    /// later ones append to its `arguments`.
    fn merge_tool_calls(&mut self, calls: &[ToolCallDelta]) {
        for (position, call) in calls.iter().enumerate() {
            let index = delta_index(call, position);
            let at = match self.tool_calls.iter().position(|c| c.index == index) {
                Some(at) => at,
                None => {
                    self.tool_calls.push(ToolCall {
                        index,
                        ..ToolCall::default()
                    });
                    self.tool_calls.len() - 1
                }
            };
            let Some(entry) = self.tool_calls.get_mut(at) else {
                continue;
            };
            let function = call.get("function");
            if let Some(id) = call.get("id").and_then(Value::as_str) {
                entry.id = id.to_owned();
            }
            if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                entry.name.push_str(name);
            }
            if let Some(arguments) = delta_arguments(call) {
                entry.arguments.push_str(&arguments);
            }
        }
    }

    /// Ends the answer: its finish reason, and the `usage` the router
    /// counted.
    pub fn finish(&mut self, reason: Option<&str>, usage: Usage) {
        let reason = match reason.filter(|r| FINISH_REASONS.contains(r)) {
            Some(r) => r,
            None if !self.tool_calls.is_empty() => "tool_calls",
            None => "stop",
        };
        self.finish_reason = Some(reason.to_owned());
        self.usage = usage;
    }

    /// The finish reason in the words of APIs that have no `cancelled`.
    pub fn api_finish_reason(&self) -> Option<&str> {
        match self.finish_reason.as_deref() {
            Some(CANCELLED) => Some("stop"),
            other => other,
        }
    }

    /// (prompt, completion) tokens, as the router counted them.
    pub fn usage(&self) -> (u64, u64) {
        (self.usage.prompt_tokens, self.usage.completion_tokens)
    }

    pub fn tool_calls_openai(&self) -> Vec<Value> {
        self.tool_calls
            .iter()
            .map(|c| {
                json!({"id": c.id, "type": "function",
                       "function": {"name": c.name, "arguments": c.arguments}})
            })
            .collect()
    }

    /// Ollama's shape: arguments as an object.
    pub fn tool_calls_ollama(&self) -> Vec<Value> {
        self.tool_calls
            .iter()
            .map(|c| {
                let args: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                json!({"function": {"name": c.name, "arguments": args}})
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(value: Value) -> ToolCallDelta {
        let Value::Object(call) = value else {
            unreachable!()
        };
        call
    }

    fn calls(calls: Vec<ToolCallDelta>) -> Delta<'static> {
        Delta {
            tool_calls: Some(calls.into()),
            ..Delta::default()
        }
    }

    fn text(text: &str) -> Delta<'_> {
        Delta {
            content: Some(text.into()),
            ..Delta::default()
        }
    }

    #[test]
    fn tool_call_deltas_merge_by_index() {
        let mut a = Answer::new(true);
        for c in [
            json!({"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}),
            json!({"index":0,"function":{"arguments":"{\"city\":"}}),
            json!({"index":0,"function":{"arguments":"\"Paris\"}"}}),
        ] {
            a.add_delta(&calls(vec![call(c)]));
        }
        a.finish(None, Usage::default());
        assert_eq!(a.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            a.tool_calls_openai()[0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            a.tool_calls_ollama()[0]["function"]["arguments"]["city"],
            "Paris"
        );
    }

    #[test]
    fn an_answer_keeps_text_only_when_asked_and_reports_the_usage_it_is_given() {
        let mut kept = Answer::new(true);
        let mut counted = Answer::new(false);
        for a in [&mut kept, &mut counted] {
            a.add_delta(&text("12"));
            a.add_delta(&text("345"));
        }
        assert_eq!(kept.content, "12345");
        assert!(counted.content.is_empty());
        let usage = Usage {
            prompt_tokens: 4,
            completion_tokens: 9,
        };
        kept.finish(Some("<script>"), usage);
        assert_eq!(kept.finish_reason.as_deref(), Some("stop"));
        assert_eq!(kept.usage(), (4, 9));
    }

    #[test]
    fn reasoning_is_kept_apart_from_the_text_and_counted_with_it() {
        let thought = Delta {
            reasoning: Some("hmm".into()),
            ..Delta::default()
        };
        let mut a = Answer::new(true);
        a.add_delta(&thought);
        a.add_delta(&text("ok"));
        assert_eq!((a.reasoning.as_str(), a.content.as_str()), ("hmm", "ok"));
        let mut counted = Answer::new(false);
        counted.add_delta(&thought);
        assert!(counted.reasoning.is_empty());
        let mut t = Tally::new(true, 0, 4);
        t.add_delta(&thought).unwrap();
        assert_eq!(t.usage().completion_tokens, 1);
        assert_eq!(t.add_delta(&text("ok")), Err(Overflow::Bytes(4)));
    }

    #[test]
    fn usage_is_estimated_until_reported() {
        let mut t = Tally::new(false, 7, 1 << 20);
        t.add_delta(&text("12345")).unwrap();
        t.add_delta(&text("é")).unwrap();
        assert_eq!(
            (t.usage().prompt_tokens, t.usage().completion_tokens),
            (7, 2)
        );
        t.report(Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
        }));
        assert_eq!(
            (t.usage().prompt_tokens, t.usage().completion_tokens),
            (1, 2)
        );
    }

    #[test]
    fn huge_counts_clamp() {
        let mut t = Tally::new(false, u64::MAX, 1 << 20);
        assert_eq!(t.usage().prompt_tokens, MAX_TOKEN_COUNT);
        t.report(Some(Usage {
            prompt_tokens: u64::MAX,
            completion_tokens: u64::MAX,
        }));
        let u = t.usage();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens),
            (MAX_TOKEN_COUNT, MAX_TOKEN_COUNT)
        );
        assert!(u.prompt_tokens.checked_add(u.completion_tokens).is_some());
    }

    #[test]
    fn kept_bytes_and_tool_calls_are_capped() {
        let mut t = Tally::new(true, 0, 8);
        t.add_delta(&text("1234")).unwrap();
        assert_eq!(t.add_delta(&text("56789")), Err(Overflow::Bytes(8)));
        // A stream that keeps no text counts it without a cap.
        let mut t = Tally::new(false, 0, 8);
        t.add_delta(&text("123456789")).unwrap();
        let name = |i: usize| call(json!({"index": i, "function": {"name": "f"}}));
        let mut t = Tally::new(false, 0, 1 << 20);
        for i in 0..MAX_TOOL_CALLS {
            t.add_delta(&calls(vec![name(i)])).unwrap();
        }
        assert_eq!(t.add_delta(&calls(vec![name(0)])), Ok(()));
        assert_eq!(
            t.add_delta(&calls(vec![name(MAX_TOOL_CALLS)])),
            Err(Overflow::ToolCalls)
        );
    }

    #[test]
    fn runs_of_reasoning_and_text_are_capped_in_number() {
        let reasoning = Delta {
            reasoning: Some("r".into()),
            ..Delta::default()
        };
        // Streamed or whole, a byte at a time each way.
        for keep in [false, true] {
            let mut t = Tally::new(keep, 0, 1 << 20);
            for _ in 0..MAX_TEXT_RUNS / 2 {
                t.add_delta(&reasoning).unwrap();
                t.add_delta(&text("t")).unwrap();
                t.add_delta(&text("t")).unwrap();
            }
            assert_eq!(t.add_delta(&reasoning), Err(Overflow::TextRuns));
        }
        // Empty pieces start no run.
        let mut t = Tally::new(false, 0, 1 << 20);
        let both = Delta {
            reasoning: Some("".into()),
            content: Some("t".into()),
            ..Delta::default()
        };
        for _ in 0..2 * MAX_TEXT_RUNS {
            t.add_delta(&both).unwrap();
        }
    }
}
