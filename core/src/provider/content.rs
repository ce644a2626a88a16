//! Content on a model request's span, when the tracer captures it (the
//! GenAI conventions' opt-in): the system instructions and messages the
//! agent was sent (`gen_ai.system_instructions`, `gen_ai.input.messages`)
//! and its answer (`gen_ai.output.messages`), in the conventions' JSON
//! shape: messages of a role and parts (`text`, `reasoning`, `tool_call`,
//! `tool_call_response`).
//!
//! Each attribute is held to [`MAX_VALUE`] bytes while it is built, not
//! cut afterwards: a `Budget` charges every part and every string taken
//! into it, a string is cut where the budget ends and what comes after is
//! left out. So a prompt of megabytes, or a long answer streaming in,
//! costs a few KiB here. Images and files are not captured.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use crate::agent::message::Delta;
use crate::answer::{delta_arguments, delta_index};
use crate::telemetry::{capped_json, prefix, MAX_VALUE};

/// What a part or a message adds to the JSON besides its strings (its
/// keys and punctuation), about.
const OVERHEAD: usize = 48;

/// The bytes of content one attribute has left.
#[derive(Debug)]
struct Budget(usize);

impl Default for Budget {
    fn default() -> Self {
        Budget(MAX_VALUE)
    }
}

impl Budget {
    /// Room for one more part (or message): false once it is spent.
    fn part(&mut self) -> bool {
        match self.0.checked_sub(OVERHEAD) {
            Some(left) if left > 0 => {
                self.0 = left;
                true
            }
            _ => {
                self.0 = 0;
                false
            }
        }
    }

    /// The start of `text` that fits, charged.
    fn take<'t>(&mut self, text: &'t str) -> &'t str {
        let taken = prefix(text, self.0);
        self.0 -= taken.len();
        taken
    }
}

/// Parts being gathered for one attribute, within its budget.
#[derive(Default)]
struct Parts {
    budget: Budget,
    list: Vec<Value>,
}

impl Parts {
    /// `{"type": "text", "content": text}`.
    fn text(&mut self, kind: &str, text: &str) {
        if self.budget.part() {
            let content = self.budget.take(text);
            self.list.push(json!({"type": kind, "content": content}));
        }
    }

    /// A call of tool `name` with `arguments` (JSON text; kept as text when
    /// it is not JSON, or was cut).
    fn tool_call(&mut self, id: &str, name: &str, arguments: &str) {
        if self.budget.part() {
            let (id, name) = (self.budget.take(id), self.budget.take(name));
            let arguments = self.budget.take(arguments);
            let arguments = serde_json::from_str::<Value>(arguments)
                .unwrap_or_else(|_| Value::String(arguments.to_owned()));
            self.list.push(json!({
                "type": "tool_call", "id": id, "name": name, "arguments": arguments,
            }));
        }
    }

    fn tool_call_response(&mut self, id: &str, response: &str) {
        if self.budget.part() {
            let id = self.budget.take(id);
            let response = self.budget.take(response);
            self.list.push(json!({
                "type": "tool_call_response", "id": id, "response": response,
            }));
        }
    }

    /// The parts as JSON text, `None` when there are none.
    fn into_json(self) -> Option<String> {
        (!self.list.is_empty()).then(|| Value::Array(self.list).to_string())
    }
}

/// The system instructions and the other messages of an invocation's
/// `payload` (chat's shape, see the agent protocol) as the conventions'
/// JSON text, each `None` when there is none of it. An embedding request
/// has neither.
pub(super) fn input(payload: &Value) -> (Option<String>, Option<String>) {
    let mut system = Parts::default();
    let mut messages = Parts::default();
    match payload["kind"].as_str() {
        Some("embedding") => {}
        Some("completion") => {
            if let Some(text) = payload["system"].as_str() {
                system.text("text", text);
            }
            if let Some(prompt) = payload["prompt"].as_str() {
                message(&mut messages, "user", |parts| parts.text("text", prompt));
            }
        }
        _ => {
            let list = payload["messages"].as_array().map(Vec::as_slice);
            for m in list.unwrap_or_default() {
                match m["role"].as_str().unwrap_or("user") {
                    "system" | "developer" => {
                        texts(&m["content"]).for_each(|text| system.text("text", text));
                    }
                    role => message(&mut messages, role, |parts| chat_parts(parts, m)),
                }
                if messages.budget.0 == 0 {
                    break;
                }
            }
        }
    }
    (system.into_json(), messages.into_json())
}

/// Adds a message of `role` to `messages`, its parts made by `fill` from
/// the same budget.
fn message(messages: &mut Parts, role: &str, fill: impl FnOnce(&mut Parts)) {
    if !messages.budget.part() {
        return;
    }
    let role = messages.budget.take(role).to_owned();
    let mut parts = Parts {
        budget: std::mem::take(&mut messages.budget),
        list: Vec::new(),
    };
    fill(&mut parts);
    messages.budget = parts.budget;
    messages
        .list
        .push(json!({"role": role, "parts": parts.list}));
}

/// The parts of one chat message: its text, its tool calls, or (a `tool`
/// message) the result it answers a call with.
fn chat_parts(parts: &mut Parts, m: &Value) {
    if m["role"] == "tool" {
        let id = m["tool_call_id"].as_str().unwrap_or_default();
        parts.tool_call_response(id, &joined(&m["content"]));
        return;
    }
    texts(&m["content"]).for_each(|text| parts.text("text", text));
    let calls = m["tool_calls"].as_array().map(Vec::as_slice);
    for call in calls.unwrap_or_default() {
        if parts.budget.0 == 0 {
            break;
        }
        let function = &call["function"];
        let arguments = match &function["arguments"] {
            Value::String(text) => Cow::Borrowed(text.as_str()),
            Value::Null => Cow::Borrowed(""),
            other => Cow::Owned(capped_json(other)),
        };
        parts.tool_call(
            call["id"].as_str().unwrap_or_default(),
            function["name"].as_str().unwrap_or_default(),
            &arguments,
        );
    }
}

/// The texts of a message's `content`: the string, or its `text` parts.
fn texts(content: &Value) -> impl Iterator<Item = &str> {
    let (whole, parts) = match content {
        Value::String(text) => (Some(text.as_str()), None),
        Value::Array(parts) => (None, Some(parts.iter())),
        _ => (None, None),
    };
    whole.into_iter().chain(
        parts
            .into_iter()
            .flatten()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str()),
    )
}

/// The texts of a message's `content` as one, [`MAX_VALUE`] bytes at most.
fn joined(content: &Value) -> Cow<'_, str> {
    if let Value::String(text) = content {
        return Cow::Borrowed(text.as_str());
    }
    let mut all = String::new();
    for text in texts(content) {
        all.push_str(prefix(text, MAX_VALUE.saturating_sub(all.len())));
    }
    Cow::Owned(all)
}

/// An answer's content gathered as it streams, within its budget.
#[derive(Debug)]
pub(super) struct Answer {
    budget: Budget,
    reasoning: String,
    text: String,
    calls: Vec<Call>,
}

/// A tool call the answer makes.
#[derive(Debug)]
struct Call {
    index: u64,
    id: String,
    name: String,
    arguments: String,
}

impl Default for Answer {
    /// Nothing gathered yet (nothing allocated); the budget leaves room
    /// for the message around the parts and its text and reasoning parts.
    fn default() -> Self {
        Answer {
            budget: Budget(MAX_VALUE - 3 * OVERHEAD),
            reasoning: String::new(),
            text: String::new(),
            calls: Vec::new(),
        }
    }
}

impl Answer {
    /// Adds what `delta` brings, as long as the budget lasts.
    pub(super) fn add(&mut self, delta: &Delta) {
        if let Some(reasoning) = &delta.reasoning {
            self.reasoning.push_str(self.budget.take(reasoning));
        }
        if let Some(content) = &delta.content {
            self.text.push_str(self.budget.take(content));
        }
        let calls = delta.tool_calls.as_deref().unwrap_or_default();
        for (position, piece) in calls.iter().enumerate() {
            let index = delta_index(piece, position);
            let at = match self.calls.iter().position(|c| c.index == index) {
                Some(at) => at,
                None if self.budget.part() => {
                    self.calls.push(Call {
                        index,
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    });
                    self.calls.len() - 1
                }
                None => continue,
            };
            let Some(call) = self.calls.get_mut(at) else {
                continue;
            };
            // An id and a name come whole, with a call's first piece (an
            // agent that sends them again sends the same).
            let id = piece.get("id").and_then(Value::as_str);
            if let (true, Some(id)) = (call.id.is_empty(), id) {
                call.id.push_str(self.budget.take(id));
            }
            let function = piece.get("function");
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str);
            if let (true, Some(name)) = (call.name.is_empty(), name) {
                call.name.push_str(self.budget.take(name));
            }
            if let Some(arguments) = delta_arguments(piece) {
                call.arguments.push_str(self.budget.take(&arguments));
            }
        }
    }

    /// The answer as the conventions' output messages: one assistant
    /// message, ended for `finish_reason`.
    pub(super) fn messages(&self, finish_reason: Option<&str>) -> String {
        let mut parts = Parts {
            budget: Budget(usize::MAX),
            list: Vec::new(),
        };
        if !self.reasoning.is_empty() {
            parts.text("reasoning", &self.reasoning);
        }
        if !self.text.is_empty() {
            parts.text("text", &self.text);
        }
        for call in &self.calls {
            parts.tool_call(&call.id, &call.name, &call.arguments);
        }
        let mut message = Map::new();
        message.insert("role".into(), "assistant".into());
        message.insert("parts".into(), Value::Array(parts.list));
        if let Some(reason) = finish_reason {
            message.insert("finish_reason".into(), prefix(reason, 64).into());
        }
        Value::Array(vec![Value::Object(message)]).to_string()
    }
}

#[cfg(test)]
mod tests;
