//! What an agent has answered so far for one request: text, tool calls,
//! finish reason and usage.
//!
//! Streams keep only counts; whole answers (non-streamed requests, and tool
//! calls, which Ollama sends complete) keep the text too.

use serde_json::{json, Value};

use crate::agent::message::{Delta, Usage};

#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// Accumulated text, when `keep_text` is set.
    pub content: String,
    keep_text: bool,
    content_chars: u64,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: Option<String>,
    reported: Option<Usage>,
    prompt_estimate: u64,
}

/// A tool call assembled from its deltas (same `index`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub index: u64,
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl Answer {
    pub fn new(keep_text: bool, prompt_estimate: u64) -> Self {
        Answer {
            keep_text,
            prompt_estimate,
            ..Answer::default()
        }
    }

    pub fn add_text(&mut self, text: &str) {
        self.content_chars += text.chars().count() as u64;
        if self.keep_text {
            self.content.push_str(text);
        }
    }

    /// Merges tool-call deltas: a delta with a new `index` starts a call,
    /// later ones append to its `arguments`.
    pub fn add_tool_calls(&mut self, calls: &[Value]) {
        for (position, call) in calls.iter().enumerate() {
            let index = call["index"].as_u64().unwrap_or(position as u64);
            let entry = match self.tool_calls.iter_mut().position(|c| c.index == index) {
                Some(i) => &mut self.tool_calls[i],
                None => {
                    self.tool_calls.push(ToolCall {
                        index,
                        ..ToolCall::default()
                    });
                    self.tool_calls.last_mut().expect("just pushed")
                }
            };
            if let Some(id) = call["id"].as_str() {
                entry.id = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                entry.name.push_str(name);
            }
            match &call["function"]["arguments"] {
                Value::String(s) => entry.arguments.push_str(s),
                Value::Null => {}
                other => entry.arguments.push_str(&other.to_string()),
            }
        }
    }

    pub fn add_delta(&mut self, delta: &Delta) {
        if let Some(text) = &delta.content {
            self.add_text(text);
        }
        if let Some(calls) = &delta.tool_calls {
            self.add_tool_calls(calls);
        }
    }

    pub fn finish(&mut self, reason: Option<&str>, usage: Option<Usage>) {
        let reason = match reason {
            Some(r) => r,
            None if !self.tool_calls.is_empty() => "tool_calls",
            None => "stop",
        };
        self.finish_reason = Some(reason.to_owned());
        if usage.is_some() {
            self.reported = usage;
        }
    }

    /// (prompt, completion) tokens: reported by the agent, else estimated.
    pub fn usage(&self) -> (u64, u64) {
        match self.reported {
            Some(u) => (u.prompt_tokens, u.completion_tokens),
            None => (self.prompt_estimate, self.content_chars.div_ceil(4)),
        }
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

    #[test]
    fn tool_call_deltas_merge_by_index() {
        let mut a = Answer::new(true, 3);
        a.add_tool_calls(&[json!({"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}})]);
        a.add_tool_calls(&[json!({"index":0,"function":{"arguments":"{\"city\":"}})]);
        a.add_tool_calls(&[json!({"index":0,"function":{"arguments":"\"Paris\"}"}})]);
        a.finish(None, None);
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
    fn usage_is_estimated_until_reported() {
        let mut a = Answer::new(false, 7);
        a.add_text("12345");
        assert_eq!(a.usage(), (7, 2));
        assert!(a.content.is_empty());
        a.finish(
            Some("stop"),
            Some(Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
            }),
        );
        assert_eq!(a.usage(), (1, 2));
    }
}
