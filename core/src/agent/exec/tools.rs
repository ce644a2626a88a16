//! The editor's tools in a CLI's hands: which tools a request offers (as
//! MCP tools), and which of a request's messages are results for calls a
//! waiting run made.
//!
//! A run that calls one of these tools waits with its MCP call open; the
//! editor runs the tool and sends its result in its next request, whose
//! history then ends with an assistant message holding the calls and one
//! `tool` message per call. [`Results::of`] reads that ending, and
//! [`Results::answers`] says whether it answers exactly the calls a run is
//! waiting on, in that run's own conversation ([`Chat`]).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::conversation::{Key, Transcript};
use super::tool_search::{Indexes, Search, ToolSearch, CALL_TOOL, SEARCH_TOOLS};
use crate::agent::echo::text_of;

/// The tools a request offers a run, as MCP lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// `{name, description, inputSchema}` for each.
    pub tools: Vec<Value>,
    /// What the prompt must say of the request's `tool_choice`, if
    /// anything: a CLI has no such setting.
    pub choice: Option<String>,
    /// The conversation the request belongs to: a request of it that is
    /// not a run's results ends the run waiting in it, and only results in
    /// it answer the run.
    pub chat: Chat,
    /// When the tools are too many to list whole: the search they are
    /// offered behind.
    pub search: Option<Search>,
}

impl Offer {
    /// The offer of a payload: `None` when it has no tools, or
    /// `tool_choice: "none"` offers none.
    pub fn of(payload: &Value) -> Option<Offer> {
        let parameters = &payload["parameters"];
        if parameters["tool_choice"] == "none" || payload["kind"] != "chat" {
            return None;
        }
        let tools: Vec<Value> = parameters["tools"]
            .as_array()?
            .iter()
            .filter_map(mcp_tool)
            .collect();
        if tools.is_empty() {
            return None;
        }
        let choice = match &parameters["tool_choice"] {
            Value::String(s) if s == "required" => {
                Some("Answer by calling one or more of the editor's tools.".to_owned())
            }
            Value::Object(o) => o
                .get("function")
                .and_then(|f| f["name"].as_str())
                .map(|name| format!("Answer by calling the editor's tool `{name}`.")),
            _ => None,
        };
        Some(Offer {
            chat: Chat::of(payload),
            tools,
            choice,
            search: None,
        })
    }

    /// The offer behind a search, when `mode` says its tools are too many
    /// to list whole; its index is `indexes`' for these tools.
    pub fn searched(mut self, mode: ToolSearch, indexes: &mut Indexes) -> Offer {
        if mode.applies(self.tools.len()) {
            self.search = Some(Search::new(indexes.of(&self.tools)));
        }
        self
    }

    /// A later offer of the same conversation keeps the tools `earlier`
    /// found, of those it has.
    pub fn keep_found(&mut self, earlier: Option<&Offer>) {
        let earlier = earlier.and_then(|o| o.search.as_ref());
        if let (Some(search), Some(earlier)) = (self.search.as_mut(), earlier) {
            search.keep_found(earlier);
        }
    }

    /// What `tools/list` answers: the tools whole, or the search's two and
    /// the tools found.
    pub fn listing(&self) -> Vec<Value> {
        match &self.search {
            Some(search) => search.listing(&self.tools),
            None => self.tools.clone(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t["name"] == name)
    }

    /// Whether `text` (an agent's title for a call) names one of the tools
    /// (or, behind a search, one of its two).
    pub fn named_in(&self, text: &str) -> bool {
        let searching = self.search.as_ref().map(|_| [SEARCH_TOOLS, CALL_TOOL]);
        self.tools
            .iter()
            .filter_map(|t| t["name"].as_str())
            .chain(searching.into_iter().flatten())
            .any(|name| text.contains(name))
    }
}

/// The calls given to the editor, as a chunk's `tool_calls` (the OpenAI
/// delta shape every editor API is translated from).
pub fn calls_delta(given: &[Given]) -> Value {
    let calls = given.iter().enumerate().map(|(index, g)| {
        json!({"index": index, "id": g.id, "type": "function",
               "function": {"name": g.name, "arguments": g.arguments.to_string()}})
    });
    Value::Array(calls.collect())
}

/// A chat tool (`{type: "function", function: {name, description,
/// parameters}}`) as an MCP tool. A tool without parameters takes none.
///
/// Every tool is marked `readOnlyHint`: nothing runs on our side (the
/// editor runs it, after its own approval), and a CLI calls tools so
/// marked side by side, so parallel calls of one model turn reach the
/// editor together instead of one round trip each.
fn mcp_tool(tool: &Value) -> Option<Value> {
    let function = &tool["function"];
    let name = function["name"].as_str()?;
    let schema = match &function["parameters"] {
        Value::Object(schema) => Value::Object(schema.clone()),
        _ => json!({"type": "object", "properties": {}}),
    };
    let mut out = json!({"name": name, "inputSchema": schema,
                         "annotations": {"readOnlyHint": true}});
    if let Some(description) = function["description"].as_str() {
        out["description"] = json!(description);
    }
    Some(out)
}

/// What tells one conversation from another, hashed (a request's messages
/// are never kept).
///
/// The history up to a call is what identifies the conversation the call
/// was made in: results that carry no call id (Ollama's) answer a waiting
/// run only when the messages before the calls are exactly the ones the
/// run was asked with. Two conversations of one editor window share their
/// system text and tools, so those alone never tell them apart; an edited
/// or regenerated conversation keeps its opening (a first message edited
/// looks like a new conversation, and its old run waits out its wait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// The system text and the tools' names: what every request of one
    /// editor's agent-mode chat shares, whatever its messages.
    pub setup: Key,
    /// The messages up to and including the first that is not a system
    /// message.
    pub opening: Key,
    /// Every message of the request: the results of a call its answer
    /// makes come after exactly these.
    pub history: Key,
}

impl Chat {
    pub fn of(payload: &Value) -> Chat {
        let messages = payload["messages"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let system = |m: &Value| m["role"] == "system" || m["role"] == "developer";
        let mut setup = Sha256::new();
        for message in messages.iter().filter(|m| system(m)) {
            setup.update(text_of(&message["content"]).as_bytes());
            setup.update([0]);
        }
        let tools = payload["parameters"]["tools"]
            .as_array()
            .into_iter()
            .flatten();
        for name in tools.filter_map(|t| t["function"]["name"].as_str()) {
            setup.update(name.as_bytes());
            setup.update([0x1e]);
        }
        let opened = messages
            .iter()
            .position(|m| !system(m))
            .map_or(messages.len(), |first| first + 1);
        Chat {
            setup: setup.finalize().into(),
            opening: Transcript::of(&messages[..opened]).key(),
            history: Transcript::of(messages).key(),
        }
    }

    /// Whether `other` is a request of this conversation (a later turn, an
    /// edit or a regeneration of it), not merely of the same window.
    pub fn same_conversation(&self, other: &Chat) -> bool {
        self.setup == other.setup && self.opening == other.opening
    }
}

/// One result the editor sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResult {
    /// The call it answers, when the API carries call ids (Ollama's does
    /// not: its results answer the calls in order).
    pub id: Option<String>,
    pub text: String,
    /// The editor said the tool failed (Anthropic's `is_error`).
    pub is_error: bool,
}

/// The results a request's history ends with, and the calls they answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    /// The last assistant message's calls: (id, name, arguments).
    pub calls: Vec<(String, String, Value)>,
    pub results: Vec<ToolResult>,
    /// The conversation of the request that carries them.
    pub chat: Chat,
    /// The messages before the assistant message holding the calls.
    pub before: Key,
}

/// A call a run made and the editor was given.
#[derive(Debug, Clone, PartialEq)]
pub struct Given {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

impl Results {
    /// The trailing `tool` messages of a chat and the assistant message
    /// before them, if it ends that way.
    pub fn of(payload: &Value) -> Option<Results> {
        let messages = payload["messages"].as_array()?;
        let tail = messages.iter().rev().take_while(|m| m["role"] == "tool");
        let mut results: Vec<ToolResult> = tail
            .map(|m| ToolResult {
                id: m["tool_call_id"].as_str().map(str::to_owned),
                text: text_of(&m["content"]),
                is_error: m["is_error"] == true,
            })
            .collect();
        results.reverse();
        let asked = messages.len().checked_sub(results.len() + 1)?;
        let calls = messages.get(asked)?["tool_calls"]
            .as_array()?
            .iter()
            .map(|call| {
                let function = &call["function"];
                let arguments = match &function["arguments"] {
                    Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                    other => other.clone(),
                };
                (
                    call["id"].as_str().unwrap_or_default().to_owned(),
                    function["name"].as_str().unwrap_or_default().to_owned(),
                    arguments,
                )
            })
            .collect();
        (!results.is_empty()).then(|| Results {
            calls,
            results,
            chat: Chat::of(payload),
            before: Transcript::of(&messages[..asked]).key(),
        })
    }

    /// The result for each of `given`, in its order, when these results
    /// answer exactly those calls of a run asked in conversation `asked`:
    /// by id when the results carry ids (a run's call ids are its own),
    /// else (Ollama) when the messages before the calls are the run's and
    /// the assistant message holds exactly those calls. Either way the
    /// request has the run's system text and tools.
    pub fn answers(&self, given: &[Given], asked: &Chat) -> Option<Vec<ToolResult>> {
        if given.is_empty() || self.results.len() != given.len() || self.chat.setup != asked.setup {
            return None;
        }
        if self.results.iter().all(|r| r.id.is_some()) {
            return given
                .iter()
                .map(|g| {
                    self.results
                        .iter()
                        .find(|r| r.id.as_deref() == Some(g.id.as_str()))
                        .cloned()
                })
                .collect();
        }
        let same = self.before == asked.history
            && self.calls.len() == given.len()
            && self
                .calls
                .iter()
                .zip(given)
                .all(|((_, name, arguments), g)| *name == g.name && *arguments == g.arguments);
        same.then(|| self.results.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(messages: Value, parameters: Value) -> Value {
        json!({"kind": "chat", "messages": messages, "parameters": parameters})
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
               {"type": "function", "function": {"name": "now"}}])
    }

    #[test]
    fn the_tools_are_offered_as_given_unless_the_choice_is_none() {
        let user = json!([{"role": "user", "content": "hi"}]);
        let offer = Offer::of(&payload(user.clone(), json!({"tools": weather()}))).unwrap();
        assert_eq!(
            offer.tools,
            [
                json!({"name": "weather", "description": "Weather now",
                       "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}},
                       "annotations": {"readOnlyHint": true}}),
                json!({"name": "now", "inputSchema": {"type": "object", "properties": {}},
                       "annotations": {"readOnlyHint": true}}),
            ]
        );
        assert!(offer.has("now") && !offer.has("shell"));
        assert_eq!(offer.choice, None);
        let none = json!({"tools": weather(), "tool_choice": "none"});
        assert_eq!(Offer::of(&payload(user.clone(), none)), None);
        assert_eq!(Offer::of(&payload(user.clone(), json!({}))), None);
        let named = json!({"tools": weather(), "tool_choice": {"type": "function", "function": {"name": "now"}}});
        let offer = Offer::of(&payload(user.clone(), named)).unwrap();
        assert!(offer.choice.unwrap().contains("`now`"));
        let required = json!({"tools": weather(), "tool_choice": "required"});
        assert!(Offer::of(&payload(user, required))
            .unwrap()
            .choice
            .is_some());
    }

    #[test]
    fn requests_of_one_window_share_their_setup_but_not_their_conversation() {
        let tools = json!({"tools": weather()});
        let a = json!([{"role": "system", "content": "Agent"}, {"role": "user", "content": "a"}]);
        let b = json!([{"role": "system", "content": "Agent"}, {"role": "user", "content": "b"}]);
        let c = json!([{"role": "system", "content": "Title"}, {"role": "user", "content": "a"}]);
        let chat = |m: &Value| Offer::of(&payload(m.clone(), tools.clone())).unwrap().chat;
        assert_eq!(chat(&a).setup, chat(&b).setup);
        assert_ne!(chat(&a).setup, chat(&c).setup);
        assert!(!chat(&a).same_conversation(&chat(&b)));
        assert!(!chat(&a).same_conversation(&chat(&c)));
        // A later turn, or an edit of a later message, keeps the opening.
        let mut later = a.as_array().unwrap().clone();
        later.extend([
            json!({"role": "assistant", "content": "A."}),
            json!({"role": "user", "content": "more"}),
        ]);
        let later = Value::Array(later);
        assert!(chat(&a).same_conversation(&chat(&later)));
        assert_ne!(chat(&a).history, chat(&later).history);
        // Results without tool_choice still tell their conversation.
        let none = json!({"tools": weather(), "tool_choice": "none"});
        assert_eq!(Chat::of(&payload(a.clone(), none)), chat(&a));
    }

    fn given(id: &str, city: &str) -> Given {
        Given {
            id: id.into(),
            name: "weather".into(),
            arguments: json!({"city": city}),
        }
    }

    fn asking() -> Vec<Value> {
        vec![
            json!({"role": "system", "content": "Agent"}),
            json!({"role": "user", "content": "weather?"}),
        ]
    }

    /// The conversation a run was asked in: `asking()`.
    fn asked() -> Chat {
        Chat::of(&payload(Value::Array(asking()), json!({})))
    }

    /// `asking()`, the calls and their results.
    fn answered(calls: Value, results: Value) -> Results {
        let mut messages = asking();
        messages.push(json!({"role": "assistant", "content": "", "tool_calls": calls}));
        messages.extend(results.as_array().unwrap().iter().cloned());
        Results::of(&payload(Value::Array(messages), json!({}))).unwrap()
    }

    #[test]
    fn results_answer_the_calls_by_id_in_the_calls_order() {
        let results = answered(
            json!([
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]),
            json!([
                {"role": "tool", "tool_call_id": "c2", "content": "sun"},
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "rain"}], "is_error": true}]),
        );
        let answered = results
            .answers(&[given("c1", "Oslo"), given("c2", "Rome")], &asked())
            .unwrap();
        assert_eq!(
            answered
                .iter()
                .map(|r| (r.text.as_str(), r.is_error))
                .collect::<Vec<_>>(),
            [("rain", true), ("sun", false)]
        );
        assert_eq!(results.answers(&[given("c1", "Oslo")], &asked()), None);
        assert_eq!(
            results.answers(&[given("c1", "Oslo"), given("c3", "Rome")], &asked()),
            None
        );
        // The same ids from a window with other system text answer nothing.
        let mut elsewhere = asked();
        elsewhere.setup = [7; 32];
        let both = [given("c1", "Oslo"), given("c2", "Rome")];
        assert_eq!(results.answers(&both, &elsewhere), None);
    }

    #[test]
    fn results_without_ids_answer_the_same_calls_after_the_runs_own_history() {
        let results = answered(
            json!([{"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Oslo\"}"}}]),
            json!([{"role": "tool", "content": "rain"}]),
        );
        assert_eq!(
            results
                .answers(&[given("call_x", "Oslo")], &asked())
                .unwrap()[0]
                .text,
            "rain"
        );
        assert_eq!(
            results.answers(&[given("call_x", "Bergen")], &asked()),
            None
        );
        // The same call and result after another conversation's messages
        // (same system text and tools) answer nothing.
        let other = json!([{"role": "system", "content": "Agent"},
                           {"role": "user", "content": "weather, please?"}]);
        let other = Chat::of(&payload(other, json!({})));
        assert_eq!(other.setup, asked().setup);
        assert_eq!(results.answers(&[given("call_x", "Oslo")], &other), None);
    }

    #[test]
    fn a_chat_not_ending_in_results_has_none() {
        let messages = json!([{"role": "tool", "tool_call_id": "c1", "content": "x"},
                              {"role": "user", "content": "and?"}]);
        assert_eq!(Results::of(&payload(messages, json!({}))), None);
        let orphan = json!([{"role": "tool", "tool_call_id": "c1", "content": "x"}]);
        assert_eq!(Results::of(&payload(orphan, json!({}))), None);
    }
}
