//! `agent mcp`: an MCP host's own agent (Claude Code, Cursor, VS Code…)
//! serves as the model.
//!
//! The host runs `agent mcp` as a stdio MCP server. Its agent calls the
//! `next_request` tool to take the next waiting editor request (a long
//! poll), and `respond` to answer it, in pieces if it likes. In sampling
//! mode — when the host declared `sampling` in a session-generation
//! `initialize` and `agent mcp` was started with `--sampling` — each editor
//! request goes to the host as `sampling/createMessage` instead (the
//! stateless generation has no server-to-client requests).
//!
//! Sans-IO: [`HostAgent`] reads the host's bytes and the provider's frames
//! and says what to write to each; the runtime only carries them and wakes
//! it at [`HostAgent::poll_timeout`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::quoted;
use crate::agent::relink::Relink;
use crate::agent::to_agent::{Invoke, ToAgent};
use crate::lines::{Line, LineBuffer};
use crate::mcp::{self, Message};

/// Editor requests waiting for the host to take them, at most; more are
/// refused as busy.
pub const MAX_WAITING: usize = 64;
/// Held `next_request` calls, at most; more are answered at once.
pub const MAX_POLLS: usize = 16;
/// The longest a `next_request` call is held.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// How long `next_request` waits when the call does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// What the host's agent is told about serving (the `serve` prompt and the
/// server's instructions).
pub const INSTRUCTIONS: &str = "You are serving as a language model for an editor. \
Call `next_request` to take the next request an editor sent; it waits for one. \
Answer it with `respond`, giving its `request_id` and your answer's text \
(send long answers in several calls with `final: false`, then one with `final: true`; \
to call one of the editor's tools, give `tool_calls`). Then call `next_request` again.";

#[derive(Debug, Clone)]
pub struct HostPlan {
    /// The model name editors ask for.
    pub model: String,
    /// Forward requests as `sampling/createMessage` when the host can.
    pub sampling: bool,
}

/// An editor request not yet taken.
struct Waiting {
    invoke: String,
    payload: Value,
}

/// An editor request the host took and is answering.
struct Taken {
    /// The next chunk's index.
    index: u64,
    /// Tool calls sent so far (their stream indexes).
    tool_calls: u64,
}

/// A `next_request` call held until a request arrives or it times out.
struct Poll {
    id: Value,
    deadline: Instant,
}

pub struct HostAgent {
    plan: HostPlan,
    relink: Relink,
    input: LineBuffer,
    to_host: VecDeque<String>,
    to_provider: VecDeque<String>,
    waiting: VecDeque<Waiting>,
    taken: HashMap<String, Taken>,
    polls: VecDeque<Poll>,
    /// The host declared `sampling` in a session-generation `initialize`.
    host_samples: bool,
    /// Our `sampling/createMessage` requests in flight: id → invoke.
    sampling: HashMap<u64, String>,
    next_id: u64,
}

impl HostAgent {
    /// The first frame for the provider registers the plan's model.
    pub fn new(plan: HostPlan) -> Self {
        let relink = Relink::new(json!({
            "type": "register",
            "agent_id": "mcp-host",
            "label": "MCP host (agent mcp)",
            "models": [plan.model],
            "allowed_scopes": ["inference"],
        }));
        HostAgent {
            plan,
            input: LineBuffer::new(mcp::MAX_LINE),
            to_host: VecDeque::new(),
            to_provider: VecDeque::from([relink.register()]),
            relink,
            waiting: VecDeque::new(),
            taken: HashMap::new(),
            polls: VecDeque::new(),
            host_samples: false,
            sampling: HashMap::new(),
            next_id: 0,
        }
    }

    /// The link dropped: the provider failed the editors' requests it had
    /// sent, so those waiting or taken are forgotten (a `respond` to one
    /// is told it is unknown). The host's own session and its held
    /// `next_request` calls carry on; the next link starts by asking for
    /// the provider session back.
    pub fn link_lost(&mut self) {
        self.waiting.clear();
        self.taken.clear();
        self.sampling.clear();
        self.to_provider.clear();
        self.to_provider.push_back(self.relink.register());
    }

    /// Bytes the host wrote (stdin).
    pub fn handle_host_bytes(&mut self, bytes: &[u8], now: Instant) {
        for line in self.input.push(bytes) {
            match line {
                Line::Text(text) => self.host_line(&text, now),
                Line::TooLong => self.to_host.push_back(mcp::error(
                    &Value::Null,
                    mcp::PARSE_ERROR,
                    "message too long",
                    None,
                )),
            }
        }
    }

    fn host_line(&mut self, line: &str, now: Instant) {
        match mcp::parse(line) {
            Ok(Message::Request { id, method, params }) => {
                self.host_request(id, &method, &params, now)
            }
            Ok(Message::Notification { method, params }) => {
                if method == "notifications/cancelled" {
                    let id = &params["requestId"];
                    self.polls.retain(|p| &p.id != id);
                }
            }
            Ok(Message::Response { id, outcome }) => self.sampled(&id, outcome),
            Err(invalid) => self.to_host.push_back(invalid.reply()),
        }
    }

    fn host_request(&mut self, id: Value, method: &str, params: &Value, now: Instant) {
        if let Some(refusal) = mcp::unsupported_version(&id, params) {
            self.to_host.push_back(refusal);
            return;
        }
        let server_info =
            json!({"name": "mcp-provider agent mcp", "version": env!("CARGO_PKG_VERSION")});
        let capabilities = json!({"tools": {}, "prompts": {}});
        let result = match method {
            "initialize" => {
                let requested = params["protocolVersion"].as_str().unwrap_or_default();
                self.host_samples = params["capabilities"]["sampling"].is_object();
                json!({
                    "protocolVersion": mcp::negotiate(requested),
                    "capabilities": capabilities,
                    "serverInfo": server_info,
                    "instructions": INSTRUCTIONS,
                })
            }
            "server/discover" => mcp::discover_result(capabilities, server_info, INSTRUCTIONS),
            "ping" => json!({}),
            "tools/list" => mcp::listing("tools", tools()),
            "prompts/list" => mcp::listing(
                "prompts",
                json!([{"name": "serve", "description": "How to serve editors' requests as their model."}]),
            ),
            "prompts/get" if params["name"] == "serve" => json!({
                "description": "How to serve editors' requests as their model.",
                "messages": [{"role": "user", "content": {"type": "text", "text": INSTRUCTIONS}}],
                "resultType": "complete",
            }),
            "prompts/get" => {
                let message = format!("no prompt named {}", quoted(&params["name"].to_string()));
                self.to_host
                    .push_back(mcp::error(&id, mcp::INVALID_PARAMS, &message, None));
                return;
            }
            "tools/call" => {
                let args = &params["arguments"];
                match params["name"].as_str() {
                    Some("next_request") => return self.next_request(id, args, now),
                    Some("respond") => self.respond(args),
                    _ => {
                        let message =
                            format!("no tool named {}", quoted(&params["name"].to_string()));
                        self.to_host.push_back(mcp::error(
                            &id,
                            mcp::INVALID_PARAMS,
                            &message,
                            None,
                        ));
                        return;
                    }
                }
            }
            _ => {
                let message = format!("method {} is not supported", quoted(method));
                self.to_host
                    .push_back(mcp::error(&id, mcp::METHOD_NOT_FOUND, &message, None));
                return;
            }
        };
        self.to_host.push_back(mcp::result(&id, result));
    }

    /// `next_request`: the oldest waiting request, or the call is held.
    fn next_request(&mut self, id: Value, args: &Value, now: Instant) {
        if let Some(waiting) = self.waiting.pop_front() {
            let result = self.take(waiting);
            self.to_host.push_back(mcp::result(&id, result));
            return;
        }
        if self.polls.len() >= MAX_POLLS {
            self.to_host.push_back(mcp::result(
                &id,
                nothing_waiting("too many calls are waiting"),
            ));
            return;
        }
        let wait = args["wait_seconds"]
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            // Capped before it becomes a `Duration`: past its range, the
            // conversion panics.
            .map_or(DEFAULT_WAIT, |s| {
                Duration::from_secs_f64(s.min(MAX_WAIT.as_secs_f64()))
            });
        self.polls.push_back(Poll {
            id,
            deadline: now + wait,
        });
    }

    /// Hands a request to the host: what its agent reads.
    fn take(&mut self, waiting: Waiting) -> Value {
        let Waiting { invoke, payload } = waiting;
        self.taken.insert(
            invoke.clone(),
            Taken {
                index: 0,
                tool_calls: 0,
            },
        );
        let parameters = &payload["parameters"];
        let request = json!({
            "request_id": invoke,
            "kind": payload["kind"],
            "messages": payload["messages"],
            "prompt": payload["prompt"],
            "max_tokens": parameters["max_tokens"],
            "tools": parameters["tools"],
            "tool_choice": parameters["tool_choice"],
        });
        let text = format!(
            "An editor asks model `{}` for the next message of this conversation. \
             Answer with `respond` and request_id `{invoke}`.\n\n{}",
            self.plan.model,
            serde_json::to_string_pretty(&request).unwrap_or_default()
        );
        json!({
            "content": [{"type": "text", "text": text}],
            "structuredContent": request,
            "isError": false,
            "resultType": "complete",
        })
    }

    /// `respond`: a piece of an answer (text and/or tool calls), the last
    /// one when `final` (the default).
    fn respond(&mut self, args: &Value) -> Value {
        let invoke = args["request_id"].as_str().unwrap_or_default();
        let Some(taken) = self.taken.get_mut(invoke) else {
            return tool_error(&format!(
                "no request {invoke:?} is being answered (it was answered, cancelled or never taken)"
            ));
        };
        let text = args["text"].as_str().unwrap_or_default();
        let calls = match tool_calls(&args["tool_calls"], taken.tool_calls) {
            Ok(calls) => calls,
            Err(why) => return tool_error(&why),
        };
        let last = args["final"].as_bool().unwrap_or(true);
        let mut delta = json!({"content": text});
        if taken.index == 0 {
            delta["role"] = json!("assistant");
        }
        taken.tool_calls += calls.len() as u64;
        if !calls.is_empty() {
            delta["tool_calls"] = Value::Array(calls);
        }
        let finish = match (last, taken.tool_calls > 0) {
            (false, _) => Value::Null,
            (true, true) => json!("tool_calls"),
            (true, false) => json!("stop"),
        };
        self.to_provider.push_back(
            json!({"type": "model_stream_chunk", "id": invoke, "chunk_index": taken.index,
                   "delta": delta, "finish_reason": finish})
            .to_string(),
        );
        taken.index += 1;
        if last {
            self.taken.remove(invoke);
        }
        json!({
            "content": [{"type": "text", "text": if last { "Sent; the answer is complete." } else { "Sent; send more, the last with final: true." }}],
            "isError": false,
            "resultType": "complete",
        })
    }

    /// The host's answer to our `sampling/createMessage`.
    fn sampled(&mut self, id: &Value, outcome: Result<Value, Value>) {
        let Some(invoke) = id.as_u64().and_then(|n| self.sampling.remove(&n)) else {
            return;
        };
        let frame = match outcome {
            Ok(result) => {
                let text = result["content"]["text"].as_str().unwrap_or_default();
                json!({"type": "model_stream_chunk", "id": invoke, "chunk_index": 0,
                       "delta": {"role": "assistant", "content": text},
                       "finish_reason": if result["stopReason"] == "maxTokens" { "length" } else { "stop" }})
            }
            Err(error) => json!({"type": "error", "id": invoke, "error": {
                "message": format!("the MCP host refused to sample: {}", error["message"].as_str().unwrap_or("error")),
                "code": "agent_failed"}}),
        };
        self.to_provider.push_back(frame.to_string());
    }

    /// A frame from the provider.
    pub fn handle_provider_message(&mut self, text: &str) {
        let Some(message) = self.relink.read(text, &mut self.to_provider) else {
            return;
        };
        match message {
            ToAgent::ModelInvoke(invoke) => self.invoked(invoke),
            ToAgent::Cancel { id } => self.cancelled(&id),
            // The host's agent answers in pieces as it likes, and asks no
            // questions of the provider's user.
            _ => {}
        }
    }

    /// An editor request: to the host as sampling, to a held
    /// `next_request`, or waiting for one (refused as busy past
    /// [`MAX_WAITING`]).
    fn invoked(&mut self, invoke: Invoke) {
        let waiting = Waiting {
            invoke: invoke.id,
            payload: invoke.payload,
        };
        if self.plan.sampling && self.host_samples {
            self.sample(waiting);
        } else if let Some(poll) = self.polls.pop_front() {
            let result = self.take(waiting);
            self.to_host.push_back(mcp::result(&poll.id, result));
        } else if self.waiting.len() < MAX_WAITING {
            self.waiting.push_back(waiting);
        } else {
            let frame = json!({"type": "error", "id": waiting.invoke, "error": {
                "message": format!("{MAX_WAITING} requests already wait for the MCP host"),
                "code": "busy"}});
            self.to_provider.push_back(frame.to_string());
        }
    }

    /// The editor of request `id` went away: it is forgotten, and a
    /// sampling of it cancelled.
    fn cancelled(&mut self, id: &str) {
        self.waiting.retain(|w| w.invoke != id);
        self.taken.remove(id);
        let sampled = self
            .sampling
            .iter()
            .find(|(_, i)| *i == id)
            .map(|(n, _)| *n);
        if let Some(n) = sampled {
            self.sampling.remove(&n);
            self.to_host.push_back(mcp::notification(
                "notifications/cancelled",
                json!({"requestId": n, "reason": "the editor went away"}),
            ));
        }
    }

    /// Forwards an editor request to the host as `sampling/createMessage`.
    fn sample(&mut self, waiting: Waiting) {
        let payload = &waiting.payload;
        let mut system = Vec::new();
        let mut messages = Vec::new();
        for m in payload["messages"].as_array().into_iter().flatten() {
            let text = crate::agent::echo::text_of(&m["content"]);
            match m["role"].as_str() {
                Some("system" | "developer") => system.push(text),
                Some("assistant") => messages
                    .push(json!({"role": "assistant", "content": {"type": "text", "text": text}})),
                _ => messages
                    .push(json!({"role": "user", "content": {"type": "text", "text": text}})),
            }
        }
        if payload["kind"] == "completion" {
            let prompt = crate::agent::echo::text_of(&payload["prompt"]);
            messages.push(json!({"role": "user", "content": {"type": "text", "text": prompt}}));
        }
        let mut params = json!({
            "messages": messages,
            "maxTokens": payload["parameters"]["max_tokens"].as_u64().unwrap_or(4096),
        });
        if !system.is_empty() {
            params["systemPrompt"] = json!(system.join("\n\n"));
        }
        let n = self.next_id;
        self.next_id += 1;
        self.sampling.insert(n, waiting.invoke);
        self.to_host
            .push_back(mcp::request(&json!(n), "sampling/createMessage", params));
    }

    /// Held `next_request` calls past their deadline are answered: nothing
    /// came.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Every due one, wherever it is: a call that waits less may come
        // after one that waits more.
        let to_host = &mut self.to_host;
        self.polls.retain(|poll| {
            let due = poll.deadline <= now;
            if due {
                to_host.push_back(mcp::result(
                    &poll.id,
                    nothing_waiting("no editor request came in time"),
                ));
            }
            !due
        });
    }

    /// The next line for the host (stdout), without its newline.
    pub fn poll_host(&mut self) -> Option<String> {
        self.to_host.pop_front()
    }

    /// The next frame for the provider.
    pub fn poll_provider(&mut self) -> Option<String> {
        self.to_provider.pop_front()
    }

    /// When the oldest held `next_request` call is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.polls.iter().map(|p| p.deadline).min()
    }
}

/// The `next_request` result when none came.
fn nothing_waiting(why: &str) -> Value {
    json!({
        "content": [{"type": "text", "text": format!("No editor request is waiting ({why}). Call next_request again to keep serving.")}],
        "isError": false,
        "resultType": "complete",
    })
}

fn tool_error(message: &str) -> Value {
    json!({"content": [{"type": "text", "text": message}], "isError": true, "resultType": "complete"})
}

/// `respond`'s `tool_calls` as delta tool calls, numbered from `first`.
fn tool_calls(calls: &Value, first: u64) -> Result<Vec<Value>, String> {
    let calls = match calls {
        Value::Null => return Ok(Vec::new()),
        Value::Array(calls) => calls,
        _ => return Err("tool_calls must be a list".to_owned()),
    };
    calls
        .iter()
        .zip(first..)
        .map(|(call, index)| {
            let name = call["name"].as_str().ok_or("each tool call needs a name")?;
            let arguments = match &call["arguments"] {
                Value::String(s) => s.clone(),
                Value::Null => "{}".to_owned(),
                other => other.to_string(),
            };
            Ok(
                json!({"index": index, "id": format!("call_{index}"), "type": "function",
                      "function": {"name": name, "arguments": arguments}}),
            )
        })
        .collect()
}

/// The tools the host's agent gets.
fn tools() -> Value {
    json!([
        {
            "name": "next_request",
            "description": "Wait for the next request an editor sent to this model, and take it. \
                            Returns the conversation to answer and its request_id.",
            "inputSchema": {"type": "object", "properties": {
                "wait_seconds": {"type": "number", "description": "How long to wait for a request (default 30, at most 300)."}
            }},
        },
        {
            "name": "respond",
            "description": "Answer a request taken with next_request: text, tool calls, or both. \
                            Send an answer in pieces with final: false, the last with final: true (the default).",
            "inputSchema": {"type": "object", "required": ["request_id"], "properties": {
                "request_id": {"type": "string"},
                "text": {"type": "string", "description": "The next piece of the answer."},
                "final": {"type": "boolean", "description": "Whether this is the last piece (default true)."},
                "tool_calls": {"type": "array", "description": "Calls of the editor's tools.", "items": {
                    "type": "object", "required": ["name"], "properties": {
                        "name": {"type": "string"},
                        "arguments": {"type": "object"}
                    }
                }}
            }},
        }
    ])
}

#[cfg(test)]
mod tests;
