//! OpenAI's Responses API (`POST /v1/responses`), the only API codex
//! speaks: input items become chat messages for the agent, and the answer
//! goes back as output items (a message, function calls), streamed as
//! typed events from `response.created` to `response.completed`.
//!
//! What the request asks to be kept (`store`, `background`,
//! `previous_response_id`) is parsed here into [`Keep`]; the provider keeps
//! it (`crate::provider` and [`crate::store`]), and the stored routes'
//! shapes are in [`kept`].

use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use serde_json::{json, Map, Value};

use super::validate::{self, RequestLimits};
use super::{
    parse_object, put_event, put_json, AnswerIds, EditorApi, Encoder, End, Keep, ModelRequest, SSE,
    SSE_KEEPALIVE,
};
use crate::agent::message::Delta;
use crate::answer::{delta_arguments, delta_index, Answer, Run, CANCELLED};
use crate::digits::put_decimal;
use crate::error::{ApiError, Dialect};

pub mod kept;

pub struct Responses;

pub static RESPONSES: Responses = Responses;

impl EditorApi for Responses {
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    fn parse(&self, body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
        parse(body, limits)
    }

    fn encoder(&self, request: &ModelRequest, ids: AnswerIds) -> Box<dyn Encoder> {
        Box::new(ResponseEncoder::new(request, ids))
    }

    fn answer_id(&self, token: &str) -> String {
        format!("resp_{token}")
    }
}

/// Request fields the response object repeats back.
const ECHOED: [&str; 10] = [
    "instructions",
    "max_output_tokens",
    "metadata",
    "parallel_tool_calls",
    "reasoning",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
];

pub fn parse(body: &[u8], limits: &RequestLimits) -> Result<ModelRequest, ApiError> {
    let body = parse_object(body)?;
    let model = validate::model(&body)?;
    if body.get("conversation").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::invalid_param(
            "conversation",
            "This server keeps no conversations: continue a stored response with 'previous_response_id', or send the whole conversation in 'input'.",
        ));
    }
    let keep = keep(&body)?;
    let mut messages = Vec::new();
    match body.get("instructions") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(json!({"role": "system", "content": s})),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "instructions",
                "'instructions' must be a string",
            ))
        }
    }
    match body.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut messages)?;
            }
        }
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param(
                "input",
                "'input' is a required property",
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "input",
                "'input' must be a string or an array of input items",
            ))
        }
    }
    let mut chat = Map::new();
    chat.insert("messages".into(), Value::Array(messages));
    let text_bytes = validate::messages(&chat, limits).map_err(|mut e| {
        e.param = Some("input".into());
        e
    })?;

    let mut parameters = Map::new();
    if let Some(n) = validate::max_tokens(&body, "max_output_tokens", limits)? {
        parameters.insert("max_tokens".into(), n.into());
    }
    for (name, min, max) in [("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)] {
        if let Some(v) = validate::number_in(&body, name, min, max)? {
            parameters.insert(name.into(), v.into());
        }
    }
    if let Some(tools) = tools(&body)? {
        parameters.insert("tools".into(), tools);
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| !v.is_null()) {
        parameters.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(v @ Value::Bool(_)) = body.get("parallel_tool_calls") {
        parameters.insert("parallel_tool_calls".into(), v.clone());
    }
    let effort = body.get("reasoning").and_then(|r| r.get("effort"));
    if let Some(effort) = validate::effort(effort) {
        parameters.insert("reasoning_effort".into(), effort);
    }
    if let Some(format) = body.get("text").and_then(|t| t.get("format")) {
        if let Some(format) = response_format(format) {
            parameters.insert("response_format".into(), format);
        }
    }
    let stream = validate::flag(&body, "stream")?.unwrap_or(false);
    parameters.insert("stream".into(), Value::Bool(stream));
    let mut echo: Map<String, Value> = ECHOED
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), body.get(*k)?.clone())))
        .collect();
    echo.insert("store".into(), keep.store.into());
    echo.insert("background".into(), keep.background.into());
    echo.insert("previous_response_id".into(), keep.previous.clone().into());
    let messages = chat.remove("messages").unwrap_or_default();
    Ok(ModelRequest {
        echo,
        keep: Some(keep),
        ..ModelRequest::chat(&RESPONSES, model, stream, messages, parameters, text_bytes)
    })
}

/// `store` (true unless said otherwise, as OpenAI's), `background` (which
/// needs `store`), `previous_response_id`, and the input items to keep.
fn keep(body: &Map<String, Value>) -> Result<Keep, ApiError> {
    let store = validate::flag(body, "store")?.unwrap_or(true);
    let background = validate::flag(body, "background")?.unwrap_or(false);
    if background && !store {
        return Err(ApiError::invalid_param(
            "background",
            "Background responses must be stored: 'background': true needs 'store' true (or left out).",
        ));
    }
    let previous = match body.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "previous_response_id",
                "'previous_response_id' must be a string",
            ))
        }
    };
    let items = match body.get("input") {
        Some(Value::String(text)) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]})],
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    Ok(Keep {
        store,
        background,
        previous,
        items,
    })
}

/// One input item as chat messages. Items an agent cannot use (reasoning,
/// references to stored items, hosted tool calls) are left out.
fn input_item(i: usize, item: &Value, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let param = |field: &str| format!("input[{i}]{field}");
    let Some(item) = item.as_object() else {
        return Err(ApiError::invalid_param(
            &param(""),
            "each input item must be an object",
        ));
    };
    let text_field = |name: &str| match item.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ApiError::invalid_param(
            &param(&format!(".{name}")),
            format!("'{name}' must be a string"),
        )),
    };
    match item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
    {
        "message" => {
            let role = text_field("role")?;
            let content = match item.get("content") {
                Some(Value::String(s)) => Value::String(s.clone()),
                Some(Value::Array(parts)) => Value::Array(parts.iter().filter_map(part).collect()),
                _ => {
                    return Err(ApiError::invalid_param(
                        &param(".content"),
                        "content must be a string or an array of content parts",
                    ))
                }
            };
            messages.push(json!({"role": role, "content": content}));
        }
        "function_call" => {
            let call = json!({"id": text_field("call_id")?, "type": "function",
                "function": {"name": text_field("name")?, "arguments": text_field("arguments")?}});
            // Calls made together go back as one assistant message.
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" && last["tool_calls"].is_array() => {
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => messages
                    .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join(""),
                _ => {
                    return Err(ApiError::invalid_param(
                        &param(".output"),
                        "'output' must be a string or an array of content parts",
                    ))
                }
            };
            messages.push(
                json!({"role": "tool", "tool_call_id": text_field("call_id")?, "content": output}),
            );
        }
        _ => {}
    }
    Ok(())
}

/// A content part in chat shape: text and images; others are left out.
fn part(part: &Value) -> Option<Value> {
    match part["type"].as_str()? {
        "input_text" | "output_text" | "text" => {
            Some(json!({"type": "text", "text": part["text"].as_str()?}))
        }
        "refusal" => Some(json!({"type": "text", "text": part["refusal"].as_str()?})),
        "input_image" => {
            let url = part["image_url"].as_str()?;
            Some(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        _ => None,
    }
}

/// Function tools in chat shape; hosted tools (web search, file search,
/// codex's shell and freeform tools) are not something an agent's model
/// call can run, and are left out.
fn tools(body: &Map<String, Value>) -> Result<Option<Value>, ApiError> {
    let Some(tools) = body.get("tools").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(tools) = tools.as_array() else {
        return Err(ApiError::invalid_param("tools", "'tools' must be an array"));
    };
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        if tool["type"] != "function" {
            continue;
        }
        let Some(name) = tool["name"].as_str() else {
            return Err(ApiError::invalid_param(
                &format!("tools[{i}].name"),
                "a function tool needs a string 'name'",
            ));
        };
        validate::schema(&tool["parameters"], &format!("tools[{i}].parameters"))?;
        let mut function = json!({"name": name});
        for key in ["description", "parameters", "strict"] {
            if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                function[key] = v.clone();
            }
        }
        out.push(json!({"type": "function", "function": function}));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) if ["auto", "none", "required"].contains(&s.as_str()) => {
            Ok(choice.clone())
        }
        Value::Object(o) if o.get("type") == Some(&json!("function")) => match o.get("name") {
            Some(Value::String(name)) => {
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            _ => Err(ApiError::invalid_param(
                "tool_choice.name",
                "a function tool choice needs a string 'name'",
            )),
        },
        Value::Object(_) => Ok(json!("auto")),
        _ => Err(ApiError::invalid_param(
            "tool_choice",
            "'tool_choice' must be \"auto\", \"none\", \"required\" or an object",
        )),
    }
}

/// `text.format` as chat's `response_format`.
fn response_format(format: &Value) -> Option<Value> {
    match format["type"].as_str()? {
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            let mut schema = format.clone();
            schema.as_object_mut()?.remove("type");
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => None,
    }
}

/// How each [`Run`] of text looks in this API: an output item of its own,
/// the reasoning (a `reasoning` item) before the message it leads to (a
/// `message` item).
trait ItemShape {
    /// The prefix of the ids of this run's items.
    fn id_prefix(self) -> &'static str;
    /// The content part holding `text`.
    fn part(self, text: &str) -> Value;
    /// The names of the events carrying the text: (delta, done).
    fn events(self) -> (&'static str, &'static str);
    /// What a delta event carries after its text.
    fn delta_tail(self) -> &'static [u8];
    /// The item with `id` holding `content`.
    fn item(self, id: String, status: &str, content: Vec<Value>) -> Value;
}

impl ItemShape for Run {
    fn id_prefix(self) -> &'static str {
        match self {
            Run::Reasoning => "rs",
            Run::Content => "msg",
        }
    }

    fn part(self, text: &str) -> Value {
        match self {
            Run::Reasoning => json!({"type": "reasoning_text", "text": text}),
            Run::Content => text_part(text),
        }
    }

    fn events(self) -> (&'static str, &'static str) {
        match self {
            Run::Reasoning => (
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
            ),
            Run::Content => ("response.output_text.delta", "response.output_text.done"),
        }
    }

    fn delta_tail(self) -> &'static [u8] {
        match self {
            Run::Reasoning => b"}\n\n",
            Run::Content => b",\"logprobs\":[]}\n\n",
        }
    }

    fn item(self, id: String, status: &str, content: Vec<Value>) -> Value {
        match self {
            Run::Reasoning => json!({"id": id, "type": "reasoning", "status": status,
                                     "summary": [], "content": content}),
            Run::Content => json!({"id": id, "type": "message", "status": status,
                                "role": "assistant", "content": content}),
        }
    }
}

/// One output item of the answer.
enum Item {
    /// Reasoning or message text, as a byte range of the answer's text of
    /// that run.
    Text {
        run: Run,
        start: usize,
        end: Option<usize>,
    },
    /// A function call, by its index among the answer's tool calls.
    Call { index: u64 },
}

struct ResponseEncoder {
    id: String,
    token: String,
    created: u64,
    model: String,
    echo: Map<String, Value>,
    sequence: u64,
    items: Vec<Item>,
    /// The reasoning or message item text is going to, if one is open.
    open_run: Option<(Run, usize)>,
    /// A text delta event after its sequence number, up to the text.
    delta_prefix: Vec<u8>,
}

impl ResponseEncoder {
    fn new(request: &ModelRequest, ids: AnswerIds) -> Self {
        ResponseEncoder {
            id: ids.id,
            token: ids.token,
            created: ids.created,
            model: request.model.clone(),
            echo: request.echo.clone(),
            sequence: 0,
            items: Vec::new(),
            open_run: None,
            delta_prefix: Vec::new(),
        }
    }

    fn text_id(&self, run: Run, at: usize) -> String {
        format!("{}_{}_{at}", run.id_prefix(), self.token)
    }

    fn call_id(&self, at: usize) -> String {
        format!("fc_{}_{at}", self.token)
    }

    /// One event: its `type` and `sequence_number` are added here.
    fn event(&mut self, out: &mut BytesMut, kind: &str, mut value: Value) {
        if let Some(v) = value.as_object_mut() {
            v.insert("type".into(), json!(kind));
            v.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        put_event(out, kind, &value);
    }

    /// The response object in a given state.
    fn response(&self, status: &str, output: Vec<Value>, answer: Option<&Answer>) -> Value {
        let mut r = json!({
            "id": self.id, "object": "response", "created_at": self.created,
            "status": status, "model": self.model, "output": output,
            "error": null, "incomplete_details": null, "store": false,
            "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": null,
        });
        for (k, v) in &self.echo {
            r[k.as_str()] = v.clone();
        }
        if let Some(answer) = answer {
            let (input, output) = answer.usage();
            r["usage"] = json!({
                "input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input.saturating_add(output),
            });
            match answer.finish_reason.as_deref() {
                Some("length") => {
                    r["status"] = json!("incomplete");
                    r["incomplete_details"] = json!({"reason": "max_output_tokens"});
                }
                Some(CANCELLED) => r["status"] = json!("cancelled"),
                _ => {}
            }
        }
        r
    }

    /// The output item at `at`, complete or in progress.
    fn item(&self, at: usize, answer: &Answer, done: bool) -> Value {
        self.items
            .get(at)
            .map_or(Value::Null, |item| self.render(item, at, answer, done))
    }

    /// `item`, placed at `at` in the output, as JSON.
    fn render(&self, item: &Item, at: usize, answer: &Answer, done: bool) -> Value {
        let status = if done { "completed" } else { "in_progress" };
        match item {
            Item::Text { run, start, end } => {
                let source = run.source(answer);
                let content = if done {
                    let end = end.unwrap_or(source.len());
                    vec![run.part(source.get(*start..end).unwrap_or_default())]
                } else {
                    Vec::new()
                };
                run.item(self.text_id(*run, at), status, content)
            }
            Item::Call { index } => {
                let call = answer.tool_call(*index);
                let arguments = call.filter(|_| done).map_or("", |c| c.arguments.as_str());
                json!({"id": self.call_id(at), "type": "function_call", "status": status,
                       "call_id": call.map(|c| c.id_or("call_", &self.token)),
                       "name": call.map_or("", |c| c.name.as_str()), "arguments": arguments})
            }
        }
    }

    /// Makes sure text of `run` goes to an open item of its own, whose
    /// text starts at byte `start` of the run's: the item open for the
    /// other run ends first, so reasoning and message items follow each
    /// other in the order their text came.
    fn start_run(&mut self, run: Run, start: usize, answer: &Answer, out: &mut BytesMut) {
        match self.open_run {
            Some((open, _)) if open == run => return,
            Some(_) => self.close_run(answer, out),
            None => {}
        }
        let at = self.items.len();
        self.items.push(Item::Text {
            run,
            start,
            end: None,
        });
        self.open_run = Some((run, at));
        let item = self.item(at, answer, false);
        self.event(
            out,
            "response.output_item.added",
            json!({"output_index": at, "item": item}),
        );
        let id = self.text_id(run, at);
        self.event(
            out,
            "response.content_part.added",
            json!({"item_id": id, "output_index": at, "content_index": 0, "part": run.part("")}),
        );
        self.delta_prefix.clear();
        self.delta_prefix.extend_from_slice(br#","item_id":"#);
        let mut prefix = BytesMut::new();
        put_json(&mut prefix, &id);
        self.delta_prefix.extend_from_slice(&prefix);
        self.delta_prefix.extend_from_slice(br#","output_index":"#);
        self.delta_prefix
            .extend_from_slice(at.to_string().as_bytes());
        self.delta_prefix
            .extend_from_slice(br#","content_index":0,"delta":"#);
    }

    /// Ends the open reasoning or message item with the text its run has
    /// so far.
    fn close_run(&mut self, answer: &Answer, out: &mut BytesMut) {
        let Some((run, at)) = self.open_run.take() else {
            return;
        };
        if let Some(Item::Text { end, .. }) = self.items.get_mut(at) {
            *end = Some(run.source(answer).len());
        }
        let item = self.item(at, answer, true);
        let text = item["content"][0]["text"].clone();
        let id = self.text_id(run, at);
        let place = json!({"item_id": id, "output_index": at, "content_index": 0});
        let mut done = place.clone();
        done["text"] = text.clone();
        self.event(out, run.events().1, done);
        let mut part_done = place;
        part_done["part"] = item["content"][0].clone();
        self.event(out, "response.content_part.done", part_done);
        self.event(
            out,
            "response.output_item.done",
            json!({"output_index": at, "item": item}),
        );
    }

    /// A text delta event of `run`, written straight into `out`.
    fn put_text_delta(&mut self, run: Run, text: &str, out: &mut BytesMut) {
        let name = run.events().0;
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_slice(b"\ndata: {\"type\":\"");
        out.put_slice(name.as_bytes());
        out.put_slice(b"\",\"sequence_number\":");
        put_decimal(out, self.sequence);
        self.sequence += 1;
        out.put_slice(&self.delta_prefix);
        put_json(out, &text);
        out.put_slice(run.delta_tail());
    }

    /// Streams `delta`'s text of `run`, opening its item first if needed.
    fn put_run(&mut self, run: Run, delta: &Delta, answer: &Answer, out: &mut BytesMut) {
        let text = run.of(delta);
        if text.is_empty() {
            return;
        }
        // `answer` already holds this delta: its text ends the run's.
        let start = run.source(answer).len().saturating_sub(text.len());
        self.start_run(run, start, answer, out);
        self.put_text_delta(run, text, out);
    }

    fn output(&self, answer: &Answer) -> Vec<Value> {
        (0..self.items.len())
            .map(|at| self.item(at, answer, true))
            .collect()
    }
}

fn text_part(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": []})
}

impl Encoder for ResponseEncoder {
    fn stream_type(&self) -> &'static str {
        SSE
    }

    fn open(&mut self, out: &mut BytesMut) {
        let response = self.response("in_progress", Vec::new(), None);
        self.event(
            out,
            "response.created",
            json!({"response": response.clone()}),
        );
        self.event(out, "response.in_progress", json!({"response": response}));
    }

    fn delta(&mut self, delta: &Delta, answer: &Answer, _: SystemTime, out: &mut BytesMut) {
        self.put_run(Run::Reasoning, delta, answer, out);
        self.put_run(Run::Content, delta, answer, out);
        for (position, call) in delta.tool_calls.iter().flatten().enumerate() {
            let index = delta_index(call, position);
            let at = self
                .items
                .iter()
                .position(|i| matches!(i, Item::Call { index: n } if *n == index));
            let at = match at {
                Some(at) => at,
                None => {
                    self.close_run(answer, out);
                    let at = self.items.len();
                    self.items.push(Item::Call { index });
                    let item = self.item(at, answer, false);
                    self.event(
                        out,
                        "response.output_item.added",
                        json!({"output_index": at, "item": item}),
                    );
                    at
                }
            };
            if let Some(piece) = delta_arguments(call).filter(|a| !a.is_empty()) {
                let id = self.call_id(at);
                self.event(
                    out,
                    "response.function_call_arguments.delta",
                    json!({"item_id": id, "output_index": at, "delta": piece}),
                );
            }
        }
    }

    fn close(&mut self, end: &End, out: &mut BytesMut) {
        let answer = end.answer;
        // An answer of reasoning alone still has its (empty) message.
        let answered = self.items.iter().any(|i| {
            !matches!(
                i,
                Item::Text {
                    run: Run::Reasoning,
                    ..
                }
            )
        });
        if !answered {
            self.start_run(Run::Content, answer.content.len(), answer, out);
        }
        self.close_run(answer, out);
        for at in 0..self.items.len() {
            if let Some(Item::Call { .. }) = self.items.get(at) {
                let item = self.item(at, answer, true);
                let id = self.call_id(at);
                self.event(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": at, "arguments": item["arguments"]}),
                );
                self.event(
                    out,
                    "response.output_item.done",
                    json!({"output_index": at, "item": item}),
                );
            }
        }
        let response = self.response("completed", self.output(answer), Some(answer));
        // The API's events name no cancellation: a cancelled answer's last
        // event is named after its status, as the others are.
        let last = match answer.finish_reason.as_deref() {
            Some(CANCELLED) => "response.cancelled",
            _ => "response.completed",
        };
        self.event(out, last, json!({"response": response}));
    }

    fn whole(&self, end: &End) -> Value {
        let answer = end.answer;
        let mut items = Vec::new();
        let whole = |run| Item::Text {
            run,
            start: 0,
            end: None,
        };
        if !answer.reasoning.is_empty() {
            items.push(whole(Run::Reasoning));
        }
        if !answer.content.is_empty() || answer.tool_calls.is_empty() {
            items.push(whole(Run::Content));
        }
        items.extend(
            answer
                .tool_calls
                .iter()
                .map(|c| Item::Call { index: c.index }),
        );
        let output = items
            .iter()
            .enumerate()
            .map(|(at, item)| self.render(item, at, answer, true))
            .collect();
        self.response("completed", output, Some(answer))
    }

    fn fail(&mut self, error: &ApiError, out: &mut BytesMut) {
        let code = error.code.unwrap_or(error.kind);
        self.event(
            out,
            "error",
            json!({"code": code, "message": error.message, "param": error.param}),
        );
        let mut response = self.response("failed", Vec::new(), None);
        response["error"] = json!({"code": code, "message": error.message});
        self.event(out, "response.failed", json!({"response": response}));
    }

    fn keepalive(&self) -> Option<&'static [u8]> {
        Some(SSE_KEEPALIVE)
    }

    fn keeps_text(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: Value) -> Result<ModelRequest, ApiError> {
        parse(body.to_string().as_bytes(), &RequestLimits::default())
    }

    #[test]
    fn items_become_chat_messages() {
        let r = parsed(json!({"model": "m", "instructions": "be brief", "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "get", "arguments": "{\"x\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {"type": "reasoning", "summary": []},
        ], "tools": [{"type": "function", "name": "get", "parameters": {"type": "object"}},
                     {"type": "web_search"}],
           "tool_choice": {"type": "function", "name": "get"}, "max_output_tokens": 20}))
        .unwrap();
        let m = &r.payload["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(
            m[1]["content"][0],
            json!({"type": "text", "text": "weather?"})
        );
        assert_eq!(m[2]["tool_calls"][1]["id"], "c2");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "sunny"})
        );
        assert_eq!(m.as_array().unwrap().len(), 4);
        let p = &r.payload["parameters"];
        assert_eq!(p["tools"].as_array().unwrap().len(), 1);
        assert_eq!(p["tools"][0]["function"]["name"], "get");
        assert_eq!(p["tool_choice"]["function"]["name"], "get");
        assert_eq!(p["max_tokens"], 20);
    }

    #[test]
    fn what_is_kept_is_parsed_and_bad_types_are_refused_naming_the_field() {
        let r = parsed(json!({"model": "m", "input": "x", "previous_response_id": "r"})).unwrap();
        let keep = r.keep.unwrap();
        assert_eq!(
            (keep.store, keep.background, keep.previous.as_deref()),
            (true, false, Some("r"))
        );
        assert_eq!(keep.items[0]["content"][0]["text"], "x");
        for (body, param) in [
            (
                json!({"model": "m", "input": "x", "background": true, "store": false}),
                "background",
            ),
            (
                json!({"model": "m", "input": "x", "previous_response_id": 5}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "conversation": "c"}),
                "conversation",
            ),
        ] {
            let e = parsed(body).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(param)));
        }
        let e = parsed(json!({"model": "m", "input": 5})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let e = parsed(json!({"model": "m"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let e = parsed(json!({"model": "m", "input": "x", "tools": {}})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tools"));
        let e =
            parsed(json!({"model": "m", "input": [{"type": "function_call_output"}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input[0].output"));
    }

    #[test]
    fn reasoning_is_an_item_before_the_message_streamed_and_whole() {
        use crate::api::testing::{answer, said, sse, thought};
        let body = json!({"model": "m", "input": "hi", "stream": true});
        let deltas = [thought("Let me "), thought("think."), said("Hi"), said("!")];
        let (stream, whole) = answer(&RESPONSES, &body, &deltas);
        let events = sse(&stream);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.reasoning_text.delta",
                "response.reasoning_text.delta",
                "response.reasoning_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (at, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], at);
        }
        let data = |n: usize| &events[n].1;
        assert_eq!(data(2)["item"]["type"], "reasoning");
        assert_eq!(data(2)["output_index"], 0);
        assert_eq!(
            data(3)["part"],
            json!({"type": "reasoning_text", "text": ""})
        );
        assert_eq!(
            (data(4)["delta"].clone(), data(4)["item_id"].clone()),
            (json!("Let me "), json!("rs_t_0"))
        );
        assert_eq!(data(6)["text"], "Let me think.");
        assert_eq!(data(9)["item"]["type"], "message");
        assert_eq!(data(9)["output_index"], 1);
        assert_eq!(data(11)["item_id"], "msg_t_1");
        assert_eq!(data(13)["text"], "Hi!");
        let reasoning = json!({"id": "rs_t_0", "type": "reasoning", "status": "completed",
            "summary": [], "content": [{"type": "reasoning_text", "text": "Let me think."}]});
        let completed = &data(16)["response"]["output"];
        assert_eq!(completed[0], reasoning);
        assert_eq!(completed[1]["content"][0]["text"], "Hi!");
        assert_eq!(whole["output"][0], reasoning);
        assert_eq!(whole["output"][1]["content"][0]["text"], "Hi!");
        assert_eq!(whole["output"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn reasoning_alone_still_has_its_message_and_a_call_closes_it() {
        use crate::api::testing::{answer, sse, thought};
        let body = json!({"model": "m", "input": "hi", "stream": true});
        let (stream, whole) = answer(&RESPONSES, &body, &[thought("hm")]);
        let kinds: Vec<Value> = sse(&stream)
            .into_iter()
            .filter(|(n, _)| n == "response.output_item.done")
            .map(|(_, d)| d["item"]["type"].clone())
            .collect();
        assert_eq!(kinds, [json!("reasoning"), json!("message")]);
        assert_eq!(whole["output"][1]["content"][0]["text"], "");
        let call: crate::agent::message::ToolCallDelta = serde_json::from_value(
            json!({"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}),
        )
        .unwrap();
        let calling = Delta {
            tool_calls: Some(Box::new([call])),
            ..Delta::default()
        };
        let (stream, whole) = answer(&RESPONSES, &body, &[thought("hm"), calling]);
        let done: Vec<(Value, Value)> = sse(&stream)
            .into_iter()
            .filter(|(n, _)| n == "response.output_item.done")
            .map(|(_, d)| (d["output_index"].clone(), d["item"]["type"].clone()))
            .collect();
        assert_eq!(
            done,
            [
                (json!(0), json!("reasoning")),
                (json!(1), json!("function_call"))
            ]
        );
        let types: Vec<&Value> = whole["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["type"])
            .collect();
        assert_eq!(types, [&json!("reasoning"), &json!("function_call")]);
    }
}
