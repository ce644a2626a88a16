//! Anthropic's Messages API (`POST /v1/messages`), the only API Claude
//! Code speaks: content blocks become chat messages for the agent, and the
//! answer goes back as `thinking`, `text` and `tool_use` blocks, streamed
//! as `message_start` … `message_stop` events.

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use serde_json::{json, Map, Value};

use super::validate::{self, RequestLimits};
use super::{
    arguments_object, parse_object, put_event, put_json_str, AnswerIds, EditorApi, Encoder, End,
    ModelRequest, SSE,
};
use crate::agent::message::Delta;
use crate::answer::{delta_arguments, delta_index, Answer, Run};
use crate::error::{ApiError, Dialect};

pub struct Messages;

pub static MESSAGES: Messages = Messages;

impl EditorApi for Messages {
    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse(body, limits, true)
    }

    fn encoder(&self, request: &ModelRequest, ids: AnswerIds) -> Box<dyn Encoder> {
        Box::new(MessageEncoder {
            id: ids.id,
            token: ids.token,
            model: request.model.clone(),
            input_tokens: request.prompt_tokens,
            blocks: Vec::new(),
            open_run: None,
        })
    }

    fn answer_id(&self, token: &str) -> String {
        format!("msg_{token}")
    }
}

/// `POST /v1/messages/count_tokens`: the prompt estimate the rate limiter
/// charges for the same request.
pub fn count_tokens(body: &[u8], limits: &RequestLimits) -> Result<u64, ApiError> {
    parse(body, limits, false).map(|r| r.prompt_tokens)
}

/// The event that keeps an idle Messages stream open.
const PING: &[u8] = b"event: ping\ndata: {\"type\":\"ping\"}\n\n";

pub fn parse(
    body: &[u8],
    limits: &RequestLimits,
    needs_max_tokens: bool,
) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    let max_tokens = validate::max_tokens(&body, "max_tokens", limits)?;
    if needs_max_tokens && max_tokens.is_none() {
        return Err(ApiError::invalid_param(
            "max_tokens",
            "max_tokens: Field required",
        ));
    }
    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(Value::Array(blocks)) => {
            let text: Vec<&str> = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
            messages.push(json!({"role": "system", "content": text.join("\n")}));
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "system",
                "'system' must be a string or an array of text blocks",
            ))
        }
    }
    let Some(Value::Array(input)) = body.get("messages") else {
        return Err(ApiError::invalid_param(
            "messages",
            "'messages' is a required array",
        ));
    };
    for (i, message) in input.iter().enumerate() {
        translate(i, message, &mut messages)?;
    }
    let mut chat = Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    let text_bytes = validate::messages(&chat, limits)?;

    let mut parameters = Map::new();
    if let Some(n) = max_tokens {
        parameters.insert("max_tokens".into(), n.into());
    }
    for (name, min, max) in [("temperature", 0.0, 1.0), ("top_p", 0.0, 1.0)] {
        if let Some(v) = validate::number_in(&body, name, min, max)? {
            parameters.insert(name.into(), v.into());
        }
    }
    if let Some(stop) = validate::stop(&body, "stop_sequences")? {
        parameters.insert("stop".into(), stop);
    }
    if let Some(tools) = tools(&body)? {
        parameters.insert("tools".into(), tools);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        let (choice, parallel) = tool_choice(choice)?;
        parameters.insert("tool_choice".into(), choice);
        if let Some(parallel) = parallel {
            parameters.insert("parallel_tool_calls".into(), parallel.into());
        }
    }
    // Extended thinking's budget, as the effort other APIs name.
    let thinking = body.get("thinking").filter(|t| t["type"] == "enabled");
    if let Some(budget) = thinking.and_then(|t| t["budget_tokens"].as_u64()) {
        let effort = validate::effort_of_budget(budget);
        parameters.insert("reasoning_effort".into(), effort.into());
    }
    let stream = validate::flag(&body, "stream")?.unwrap_or(false);
    parameters.insert("stream".into(), Value::Bool(stream));
    let messages = chat.remove("messages").unwrap_or_default();
    Ok(ModelRequest::chat(
        &MESSAGES, model, stream, messages, parameters, text_bytes,
    ))
}

/// One Messages message as chat messages: tool results become `tool`
/// messages (ahead of the rest of the turn, right after the calls they
/// answer), tool uses become `tool_calls`, thinking is left out.
fn translate(i: usize, message: &Value, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let param = |field: &str| format!("messages[{i}]{field}");
    // Claude Code also sends `system` messages between turns.
    let role = match message["role"].as_str() {
        Some(role @ ("user" | "assistant" | "system")) => role,
        _ => {
            return Err(ApiError::invalid_param(
                &param(".role"),
                "each message needs a role of \"user\", \"assistant\" or \"system\"",
            ))
        }
    };
    let blocks = match &message["content"] {
        Value::String(s) => {
            messages.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(ApiError::invalid_param(
                &param(".content"),
                "content must be a string or an array of content blocks",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let field = |name: &str| format!("messages[{i}].content[{j}].{name}");
        let bad = |name: &str, what: &str| ApiError::invalid_param(&field(name), what.to_owned());
        match block["type"].as_str() {
            Some("text") => {
                let text = block["text"]
                    .as_str()
                    .ok_or_else(|| bad("text", "text must be a string"))?;
                parts.push(json!({"type": "text", "text": text}));
            }
            Some("image") => {
                let source = &block["source"];
                let url = match source["type"].as_str() {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source["media_type"].as_str().unwrap_or("image/png"),
                        source["data"].as_str().unwrap_or_default()
                    ),
                    Some("url") => source["url"].as_str().unwrap_or_default().to_owned(),
                    _ => return Err(bad("source", "an image needs a base64 or url source")),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_use") => {
                let id = block["id"]
                    .as_str()
                    .ok_or_else(|| bad("id", "id must be a string"))?;
                let name = block["name"]
                    .as_str()
                    .ok_or_else(|| bad("name", "name must be a string"))?;
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}}));
            }
            Some("tool_result") => {
                let id = block["tool_use_id"]
                    .as_str()
                    .ok_or_else(|| bad("tool_use_id", "tool_use_id must be a string"))?;
                let content = match &block["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(inner) => inner
                        .iter()
                        .filter_map(|b| b["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                let mut result = json!({"role": "tool", "tool_call_id": id, "content": content});
                // Chat messages have no such flag; agents that read it (agent
                // exec gives it to the CLI as an MCP error result) get it.
                if block["is_error"] == true {
                    result["is_error"] = json!(true);
                }
                messages.push(result);
            }
            Some(_) => {}
            None => return Err(bad("type", "each content block needs a string type")),
        }
    }
    if role != "user" {
        let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        let mut m = json!({"role": role, "content": text.join("")});
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(calls);
        }
        messages.push(m);
    } else if !parts.is_empty() {
        messages.push(json!({"role": "user", "content": parts}));
    }
    Ok(())
}

/// Client tools in chat shape; Anthropic's server tools (web search, code
/// execution…) are not something an agent's model call runs, and are left
/// out.
fn tools(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let Some(tools) = body.get("tools").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(tools) = tools.as_array() else {
        return Err(ApiError::invalid_param("tools", "'tools' must be an array"));
    };
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "custom")
        {
            continue;
        }
        let Some(name) = tool["name"].as_str() else {
            return Err(ApiError::invalid_param(
                &format!("tools[{i}].name"),
                "each tool needs a string 'name'",
            ));
        };
        validate::schema(&tool["input_schema"], &format!("tools[{i}].input_schema"))?;
        let mut function = json!({"name": name, "parameters": tool["input_schema"]});
        if let Some(d) = tool["description"].as_str() {
            function["description"] = json!(d);
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// `tool_choice` in chat shape, and `parallel_tool_calls` when it says.
fn tool_choice(choice: &Value) -> Result<(Value, Option<bool>), ApiError> {
    let parallel = choice["disable_parallel_tool_use"].as_bool().map(|d| !d);
    let chat = match choice["type"].as_str() {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice["name"].as_str() {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => {
                return Err(ApiError::invalid_param(
                    "tool_choice.name",
                    "a tool choice of type \"tool\" needs a 'name'",
                ))
            }
        },
        _ => {
            return Err(ApiError::invalid_param(
                "tool_choice.type",
                "tool_choice.type must be one of auto, any, tool, none",
            ))
        }
    };
    Ok((chat, parallel))
}

/// How each [`Run`] of text looks in this API: blocks of its own, the
/// reasoning (`thinking` blocks) before the text it leads to (`text`
/// blocks).
trait BlockShape {
    /// A block of this run holding `text`.
    fn block(self, text: &str) -> Value;
    /// The delta event of the block at `at`, up to its text.
    fn delta_prefix(self, at: usize) -> Vec<u8>;
}

impl BlockShape for Run {
    /// A thinking block's signature is empty: the provider has none to
    /// give, and takes thinking blocks sent back without checking one.
    fn block(self, text: &str) -> Value {
        match self {
            Run::Reasoning => json!({"type": "thinking", "thinking": text, "signature": ""}),
            Run::Content => json!({"type": "text", "text": text}),
        }
    }

    fn delta_prefix(self, at: usize) -> Vec<u8> {
        let (kind, field) = match self {
            Run::Reasoning => ("thinking_delta", "thinking"),
            Run::Content => ("text_delta", "text"),
        };
        format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{at},\"delta\":{{\"type\":\"{kind}\",\"{field}\":"
        )
        .into_bytes()
    }
}

/// One content block of the answer.
enum Block {
    /// Thinking or text.
    Text { open: bool },
    /// A tool use, by its index among the answer's tool calls.
    Tool { index: u64, open: bool },
}

/// The thinking or text block being written.
struct OpenRun {
    run: Run,
    at: usize,
    /// Its delta event up to the text.
    prefix: Vec<u8>,
}

struct MessageEncoder {
    id: String,
    token: String,
    model: String,
    input_tokens: u64,
    blocks: Vec<Block>,
    open_run: Option<OpenRun>,
}

impl MessageEncoder {
    /// Makes sure text of `run` goes to an open block of its own: the
    /// block open for the other run ends first, so thinking and text
    /// blocks follow each other in the order their text came.
    fn start_run(&mut self, run: Run, out: &mut BytesMut) {
        if self.open_run.as_ref().is_some_and(|o| o.run == run) {
            return;
        }
        self.stop_run(out);
        let at = self.blocks.len();
        self.blocks.push(Block::Text { open: true });
        put_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": at, "content_block": run.block("")}),
        );
        self.open_run = Some(OpenRun {
            run,
            at,
            prefix: run.delta_prefix(at),
        });
    }

    /// Streams `delta`'s text of `run`, opening its block first if needed.
    fn put_run(&mut self, run: Run, delta: &Delta, out: &mut BytesMut) {
        let text = run.of(delta);
        if text.is_empty() {
            return;
        }
        self.start_run(run, out);
        if let Some(open) = &self.open_run {
            out.reserve(open.prefix.len() + text.len() + 6);
            out.extend_from_slice(&open.prefix);
            put_json_str(out, text);
            out.extend_from_slice(b"}}\n\n");
        }
    }

    /// Closes the block at `at` if it is open.
    fn stop(&mut self, at: usize, out: &mut BytesMut) {
        let open = match self.blocks.get_mut(at) {
            Some(Block::Text { open } | Block::Tool { open, .. }) => open,
            None => return,
        };
        if std::mem::take(open) {
            put_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": at}),
            );
        }
    }

    /// Closes the open thinking or text block. A thinking block gets its
    /// (empty) signature first, as the API sends one before every
    /// thinking block ends and clients wait for it.
    fn stop_run(&mut self, out: &mut BytesMut) {
        let Some(OpenRun { run, at, .. }) = self.open_run.take() else {
            return;
        };
        if run == Run::Reasoning {
            put_event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": at,
                        "delta": {"type": "signature_delta", "signature": ""}}),
            );
        }
        self.stop(at, out);
    }

    fn tool_use(&self, index: u64, answer: &Answer, with_input: bool) -> Value {
        let call = answer.tool_call(index);
        let input = match call.filter(|_| with_input) {
            Some(c) => arguments_object(&c.arguments),
            None => json!({}),
        };
        json!({"type": "tool_use", "id": call.map(|c| c.id_or("toolu_", &self.token)),
               "name": call.map_or("", |c| c.name.as_str()), "input": input})
    }
}

/// Anthropic's stop reason for a chat finish reason.
fn stop_reason(answer: &Answer) -> &'static str {
    match answer.finish_reason.as_deref() {
        Some("tool_calls") => "tool_use",
        Some("length") => "max_tokens",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

impl Encoder for MessageEncoder {
    fn stream_type(&self) -> &'static str {
        SSE
    }

    fn open(&mut self, out: &mut BytesMut) {
        let message = json!({"id": self.id, "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0}});
        put_event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": message}),
        );
        out.put_slice(PING);
    }

    fn delta(&mut self, delta: &Delta, answer: &Answer, _: SystemTime, out: &mut BytesMut) {
        self.put_run(Run::Reasoning, delta, out);
        self.put_run(Run::Content, delta, out);
        for (position, call) in delta.tool_calls.iter().flatten().enumerate() {
            let index = delta_index(call, position);
            let at = self
                .blocks
                .iter()
                .position(|b| matches!(b, Block::Tool { index: n, .. } if *n == index));
            let at = match at {
                Some(at) => at,
                None => {
                    self.stop_run(out);
                    let at = self.blocks.len();
                    self.blocks.push(Block::Tool { index, open: true });
                    let block = self.tool_use(index, answer, false);
                    put_event(
                        out,
                        "content_block_start",
                        &json!({"type": "content_block_start", "index": at, "content_block": block}),
                    );
                    at
                }
            };
            if let Some(piece) = delta_arguments(call).filter(|a| !a.is_empty()) {
                put_event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": at,
                            "delta": {"type": "input_json_delta", "partial_json": piece}}),
                );
            }
        }
    }

    fn close(&mut self, end: &End, out: &mut BytesMut) {
        self.stop_run(out);
        for at in 0..self.blocks.len() {
            self.stop(at, out);
        }
        let (input, output) = end.answer.usage();
        put_event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
                    "delta": {"stop_reason": stop_reason(end.answer), "stop_sequence": null},
                    "usage": {"input_tokens": input, "output_tokens": output}}),
        );
        put_event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    fn whole(&self, end: &End) -> Value {
        let answer = end.answer;
        let mut content = Vec::new();
        if !answer.reasoning.is_empty() {
            content.push(Run::Reasoning.block(&answer.reasoning));
        }
        if !answer.content.is_empty() {
            content.push(Run::Content.block(&answer.content));
        }
        content.extend(
            answer
                .tool_calls
                .iter()
                .map(|c| self.tool_use(c.index, answer, true)),
        );
        let (input, output) = answer.usage();
        json!({"id": self.id, "type": "message", "role": "assistant", "model": self.model,
               "content": content, "stop_reason": stop_reason(answer), "stop_sequence": null,
               "usage": {"input_tokens": input, "output_tokens": output}})
    }

    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        out.put_slice(b"event: error\ndata: ");
        out.put_slice(&error.body(Dialect::Anthropic));
        out.put_slice(b"\n\n");
    }

    fn keepalive(&self) -> Option<&'static [u8]> {
        Some(PING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: Value) -> Result<ModelRequest, ApiError> {
        parse(body.to_string().as_bytes(), &RequestLimits::default(), true)
    }

    #[test]
    fn blocks_become_chat_messages() {
        let r = parsed(json!({"model": "m", "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "thanks"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}],
            "tools": [{"name": "get", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"]}))
        .unwrap();
        let m = &r.payload["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[2]["content"], "Checking.");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"})
        );
        assert_eq!(m[4]["content"][0]["text"], "thanks");
        assert_eq!(
            m[4]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA=="
        );
        let p = &r.payload["parameters"];
        assert_eq!(p["tools"].as_array().unwrap().len(), 1);
        assert_eq!(p["tool_choice"], "required");
        assert_eq!(p["parallel_tool_calls"], false);
        assert_eq!(p["stop"], json!(["END"]));
        assert_eq!(p["max_tokens"], 100);
    }

    #[test]
    fn max_tokens_is_required_except_to_count() {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]});
        let e = parsed(body.clone()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("max_tokens")));
        let n = count_tokens(body.to_string().as_bytes(), &RequestLimits::default()).unwrap();
        assert_eq!(n, 3);
        let e = parsed(
            json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn reasoning_is_a_thinking_block_before_the_text_streamed_and_whole() {
        use crate::api::testing::{answer, said, sse, thought};
        let body = json!({"model": "m", "max_tokens": 10, "stream": true,
                          "messages": [{"role": "user", "content": "hi"}]});
        let deltas = [thought("Let me "), thought("think."), said("Hi"), said("!")];
        let (stream, whole) = answer(&MESSAGES, &body, &deltas);
        let events = sse(&stream);
        let seen: Vec<(&str, Value, Value)> = events
            .iter()
            .map(|(n, d)| (n.as_str(), d["index"].clone(), d["delta"]["type"].clone()))
            .collect();
        let none = Value::Null;
        assert_eq!(
            seen,
            [
                ("message_start", none.clone(), none.clone()),
                ("ping", none.clone(), none.clone()),
                ("content_block_start", json!(0), none.clone()),
                ("content_block_delta", json!(0), json!("thinking_delta")),
                ("content_block_delta", json!(0), json!("thinking_delta")),
                ("content_block_delta", json!(0), json!("signature_delta")),
                ("content_block_stop", json!(0), none.clone()),
                ("content_block_start", json!(1), none.clone()),
                ("content_block_delta", json!(1), json!("text_delta")),
                ("content_block_delta", json!(1), json!("text_delta")),
                ("content_block_stop", json!(1), none.clone()),
                ("message_delta", none.clone(), none.clone()),
                ("message_stop", none.clone(), none),
            ]
        );
        assert_eq!(
            events[2].1["content_block"],
            json!({"type": "thinking", "thinking": "", "signature": ""})
        );
        assert_eq!(events[3].1["delta"]["thinking"], "Let me ");
        assert_eq!(events[8].1["delta"]["text"], "Hi");
        assert_eq!(
            whole["content"],
            json!([{"type": "thinking", "thinking": "Let me think.", "signature": ""},
                   {"type": "text", "text": "Hi!"}])
        );
    }
}
