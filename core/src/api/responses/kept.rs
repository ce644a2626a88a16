//! The shapes of the Responses API's stored routes, as pure functions:
//! their query strings, the list of input items, the errors naming a
//! missing response, and the translations between a stored response and
//! the chat conversation a chained request continues. The provider
//! (`crate::provider`) decides what is kept and when; this module only
//! reads and writes the API's JSON.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::store::Missing;

/// A stored route: which one, and for which response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept<'a> {
    /// `GET /v1/responses/{id}` (with `?stream=true`, its events).
    Get(&'a str),
    /// `GET /v1/responses/{id}/input_items`.
    InputItems(&'a str),
    /// `POST /v1/responses/{id}/cancel`.
    Cancel(&'a str),
    /// `DELETE /v1/responses/{id}`.
    Delete(&'a str),
}

impl<'a> Kept<'a> {
    /// The route for `method` and the path after `/v1/responses/`.
    pub fn of(method: &str, rest: &'a str) -> Result<Kept<'a>, ApiError> {
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match (method, tail) {
            ("GET" | "HEAD", "") => Ok(Kept::Get(id)),
            ("GET" | "HEAD", "input_items") => Ok(Kept::InputItems(id)),
            ("POST", "cancel") => Ok(Kept::Cancel(id)),
            ("DELETE", "") => Ok(Kept::Delete(id)),
            _ => Err(ApiError::not_found(format!(
                "Unknown route: {method} /v1/responses/{rest}"
            ))),
        }
    }
}

/// The 404 for a response that is not there, saying why.
pub fn not_found(id: &str, missing: Missing) -> ApiError {
    match missing {
        Missing::Unknown => ApiError::not_found(format!("Response with id '{id}' not found.")),
        Missing::Evicted => ApiError::not_found(format!(
            "Response with id '{id}' not found: it was evicted from this server's store, which keeps the newest responses within 'responses_store_bytes' and 'responses_store_secs'."
        )),
    }
}

/// The 400 OpenAI gives for a `previous_response_id` it cannot continue.
pub fn previous_not_found(id: &str, missing: Missing) -> ApiError {
    let mut e = ApiError::invalid_param(
        "previous_response_id",
        match missing {
            Missing::Unknown => format!("Previous response with id '{id}' not found."),
            Missing::Evicted => format!(
                "Previous response with id '{id}' not found: it was evicted from this server's store."
            ),
        },
    );
    e.code = Some("previous_response_not_found");
    e
}

/// `DELETE`'s answer.
pub fn deleted(id: &str) -> Value {
    json!({"id": id, "object": "response.deleted", "deleted": true})
}

/// The query string's pairs (no decoding: the values read here are ids,
/// numbers and words).
fn query(target: &str) -> impl Iterator<Item = (&str, &str)> {
    target
        .split_once('?')
        .map_or("", |(_, q)| q)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// `GET /v1/responses/{id}`'s query: stream its events, after which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replay {
    pub stream: bool,
    /// Events with a larger sequence number are sent; all without it.
    pub starting_after: Option<u64>,
}

impl Replay {
    pub fn parse(target: &str) -> Result<Replay, ApiError> {
        let mut replay = Replay::default();
        for (name, value) in query(target) {
            match name {
                "stream" => replay.stream = value == "true",
                "starting_after" => {
                    let n = value.parse::<u64>().map_err(|_| {
                        ApiError::invalid_param(
                            "starting_after",
                            format!("'starting_after' must be a sequence number (0 or more), not '{value}'"),
                        )
                    })?;
                    replay.starting_after = Some(n);
                }
                _ => {}
            }
        }
        Ok(replay)
    }

    /// The index of the first event to send of the `recorded` so far.
    pub fn first(&self, recorded: usize) -> Result<usize, ApiError> {
        let Some(after) = self.starting_after else {
            return Ok(0);
        };
        let first = usize::try_from(after).map_or(usize::MAX, |a| a.saturating_add(1));
        if first > recorded {
            let last = recorded
                .checked_sub(1)
                .map_or("none yet".to_owned(), |l| l.to_string());
            return Err(ApiError::invalid_param(
                "starting_after",
                format!("'starting_after' is {after}, past the last event of this response (sequence number {last})"),
            ));
        }
        Ok(first)
    }
}

/// One page of a response's input items, as `GET …/input_items` lists
/// them (`limit` 1–100, default 20; `order` `desc` by default; `after`
/// and `before` an item id).
pub fn input_items_page(items: &[Value], target: &str) -> Result<Value, ApiError> {
    let mut limit = 20usize;
    let mut descending = true;
    let (mut after, mut before) = (None, None);
    for (name, value) in query(target) {
        match name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid_param("limit", "'limit' must be a number from 1 to 100")
                    })?
            }
            "order" => {
                descending = match value {
                    "desc" => true,
                    "asc" => false,
                    _ => {
                        return Err(ApiError::invalid_param(
                            "order",
                            "'order' must be 'asc' or 'desc'",
                        ))
                    }
                }
            }
            "after" => after = Some(value),
            "before" => before = Some(value),
            _ => {}
        }
    }
    let mut ordered: Vec<&Value> = items.iter().collect();
    if descending {
        ordered.reverse();
    }
    let place = |id: &str, name: &str| {
        ordered
            .iter()
            .position(|item| item["id"] == id)
            .ok_or_else(|| ApiError::invalid_param(name, format!("No input item with id '{id}'")))
    };
    let start = after
        .map(|id| place(id, "after"))
        .transpose()?
        .map_or(0, |i| i + 1);
    let end = before
        .map(|id| place(id, "before"))
        .transpose()?
        .unwrap_or(ordered.len());
    let window = ordered.get(start..end.max(start)).unwrap_or_default();
    let page: Vec<Value> = window.iter().take(limit).map(|v| (*v).clone()).collect();
    Ok(json!({
        "object": "list",
        "first_id": page.first().map(|i| i["id"].clone()),
        "last_id": page.last().map(|i| i["id"].clone()),
        "has_more": window.len() > page.len(),
        "data": page,
    }))
}

/// The input items as `input_items` lists them: in the API's own shape
/// whatever shorthand they were sent in (a message with `type`, its text
/// as typed parts), each with an id (one named after the answer if it was
/// sent without).
pub fn input_items(items: Vec<Value>, token: &str) -> Vec<Value> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            let Value::Object(fields) = &mut item else {
                return item;
            };
            let kind = fields
                .entry("type")
                .or_insert_with(|| json!("message"))
                .clone();
            if kind == "message" {
                let part = match fields.get("role").and_then(Value::as_str) {
                    Some("assistant") => "output_text",
                    _ => "input_text",
                };
                if let Some(Value::String(text)) = fields.get("content") {
                    let parts = json!([{"type": part, "text": text}]);
                    fields.insert("content".into(), parts);
                }
            }
            if !fields.get("id").is_some_and(Value::is_string) {
                let prefix = if kind == "message" { "msg" } else { "item" };
                fields.insert("id".into(), json!(format!("{prefix}_{token}_in{i}")));
            }
            item
        })
        .collect()
}

/// The conversation a chained request sends its agent: its own leading
/// system messages (its `instructions`; the earlier ones are not carried
/// over), the stored conversation, then its own input.
pub fn splice(payload: &mut Value, history: Vec<Value>) {
    let Some(messages) = payload["messages"].as_array_mut() else {
        return;
    };
    let leading = messages
        .iter()
        .take_while(|m| m["role"] == "system" || m["role"] == "developer")
        .count();
    let own = messages.split_off(leading);
    messages.extend(history);
    messages.extend(own);
}

/// The messages a response's own conversation adds to the stored one: the
/// payload's, without the leading system messages.
pub fn conversation_of(payload: &Value) -> Vec<Value> {
    let messages = payload["messages"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    messages
        .iter()
        .skip_while(|m| m["role"] == "system" || m["role"] == "developer")
        .cloned()
        .collect()
}

/// A finished response's output as the chat assistant message a chained
/// request's agent sees: its text and its function calls (by the
/// `call_id`s the client answers).
pub fn output_message(response: &Value) -> Option<Value> {
    let output = response["output"].as_array()?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in output {
        match item["type"].as_str() {
            Some("message") => {
                let parts = item["content"].as_array().into_iter().flatten();
                for part in parts {
                    text.push_str(part["text"].as_str().unwrap_or_default());
                }
            }
            Some("function_call") => calls.push(json!({
                "id": item["call_id"], "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            })),
            _ => {}
        }
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    Some(Value::Object(message))
}

/// The response object a lifecycle event (`response.created`, `…completed`,
/// `…failed`, …) carries; `None` for any other event. Only these are
/// parsed: a text delta is passed on as bytes.
pub fn lifecycle(event: &[u8]) -> Option<Value> {
    const NAMES: [&[u8]; 7] = [
        b"response.created",
        b"response.queued",
        b"response.in_progress",
        b"response.completed",
        b"response.incomplete",
        b"response.failed",
        b"response.cancelled",
    ];
    let rest = event.strip_prefix(b"event: ")?;
    let line_end = rest.iter().position(|&b| b == b'\n')?;
    let name = rest.get(..line_end)?;
    if !NAMES.contains(&name) {
        return None;
    }
    let data = rest.get(line_end + 1..)?.strip_prefix(b"data: ")?;
    let mut value: Value = serde_json::from_slice(data.trim_ascii_end()).ok()?;
    Some(value.get_mut("response")?.take())
}

/// Splits a stream's bytes into whole server-sent events (each ends with
/// a blank line; the encoders write whole events only). Comments
/// (keep-alives) are events too, for the caller to tell apart.
pub fn events(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = data.get(at..)?;
        if rest.is_empty() {
            return None;
        }
        let len = rest
            .windows(2)
            .position(|w| w == b"\n\n")
            .map_or(rest.len(), |p| p + 2);
        let event = data.slice(at..at + len);
        at += len;
        Some(event)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_under_a_response() {
        assert_eq!(Kept::of("GET", "resp_1").unwrap(), Kept::Get("resp_1"));
        assert_eq!(
            Kept::of("GET", "resp_1/input_items").unwrap(),
            Kept::InputItems("resp_1")
        );
        assert_eq!(
            Kept::of("POST", "resp_1/cancel").unwrap(),
            Kept::Cancel("resp_1")
        );
        assert_eq!(
            Kept::of("DELETE", "resp_1").unwrap(),
            Kept::Delete("resp_1")
        );
        assert_eq!(Kept::of("POST", "resp_1").unwrap_err().status, 404);
    }

    #[test]
    fn replay_starts_after_the_number_given_and_never_past_the_end() {
        let r = Replay::parse("/v1/responses/r?stream=true&starting_after=10").unwrap();
        assert_eq!(
            r,
            Replay {
                stream: true,
                starting_after: Some(10)
            }
        );
        assert_eq!(r.first(20).unwrap(), 11);
        assert_eq!(r.first(11).unwrap(), 11, "nothing left to send is no error");
        assert_eq!(
            r.first(10).unwrap_err().param.as_deref(),
            Some("starting_after")
        );
        assert_eq!(
            Replay::parse("/x?stream=true").unwrap().first(5).unwrap(),
            0
        );
        let e = Replay::parse("/x?starting_after=-1").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("starting_after"));
    }

    #[test]
    fn input_items_page_both_ways() {
        let items: Vec<Value> = (0..5).map(|i| json!({"id": format!("i{i}")})).collect();
        let page = input_items_page(&items, "/x?limit=2").unwrap();
        assert_eq!(page["data"], json!([{"id": "i4"}, {"id": "i3"}]));
        assert_eq!(
            (page["has_more"].clone(), page["last_id"].clone()),
            (json!(true), json!("i3"))
        );
        let next = input_items_page(&items, "/x?limit=2&after=i3").unwrap();
        assert_eq!(next["first_id"], "i2");
        let asc = input_items_page(&items, "/x?order=asc&after=i2").unwrap();
        assert_eq!(asc["data"], json!([{"id": "i3"}, {"id": "i4"}]));
        assert_eq!(asc["has_more"], false);
        let before = input_items_page(&items, "/x?order=asc&before=i2").unwrap();
        assert_eq!(before["data"], json!([{"id": "i0"}, {"id": "i1"}]));
        assert_eq!(
            input_items_page(&items, "/x?limit=0").unwrap_err().status,
            400
        );
        assert_eq!(
            input_items_page(&items, "/x?after=nope")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn input_items_are_listed_in_the_apis_own_shape() {
        let items = input_items(
            vec![
                json!({"role": "user", "content": "hi"}),
                json!({"type": "message", "role": "assistant", "content": "yo", "id": "m1"}),
                json!({"type": "function_call_output", "call_id": "c", "output": "ok"}),
            ],
            "t",
        );
        assert_eq!(
            items[0],
            json!({"type": "message", "role": "user", "id": "msg_t_in0",
                   "content": [{"type": "input_text", "text": "hi"}]})
        );
        assert_eq!(items[1]["content"][0]["type"], "output_text");
        assert_eq!(items[1]["id"], "m1");
        assert_eq!(items[2]["id"], "item_t_in2");
    }

    #[test]
    fn a_chain_keeps_the_new_instructions_then_the_stored_conversation() {
        let mut payload = json!({"messages": [
            {"role": "system", "content": "new rules"},
            {"role": "user", "content": "second"},
        ]});
        let history = vec![
            json!({"role": "user", "content": "first"}),
            json!({"role": "assistant", "content": "one"}),
        ];
        splice(&mut payload, history);
        let roles: Vec<&str> = payload["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["new rules", "first", "one", "second"]);
        assert_eq!(conversation_of(&payload).len(), 3);
    }

    #[test]
    fn output_becomes_the_assistant_message_with_its_calls() {
        let response = json!({"output": [
            {"type": "message", "content": [{"type": "output_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ]});
        let m = output_message(&response).unwrap();
        assert_eq!(m["content"], "hi");
        assert_eq!(m["tool_calls"][0]["id"], "c1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "f");
    }

    #[test]
    fn lifecycle_events_carry_their_response_and_others_are_passed_by() {
        let created =
            b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"status\":\"in_progress\"}}\n\n";
        assert_eq!(lifecycle(created).unwrap()["status"], "in_progress");
        let delta = b"event: response.output_text.delta\ndata: {\"delta\":\"x\"}\n\n";
        assert!(lifecycle(delta).is_none());
        let data =
            Bytes::from_static(b"event: a\ndata: 1\n\n: keep-alive\n\nevent: b\ndata: 2\n\n");
        let split: Vec<Bytes> = events(&data).collect();
        assert_eq!(split.len(), 3);
        assert_eq!(&split[1][..], b": keep-alive\n\n");
    }
}
