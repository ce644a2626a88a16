//! The MCP message layer: JSON-RPC 2.0 messages as MCP frames them, one per
//! line on stdio, and the two protocol generations.
//!
//! - The session generation (2024-11-05 … 2025-11-25): a client opens with
//!   `initialize`, the server answers with the version it speaks, and
//!   requests carry nothing more.
//! - The stateless generation (2026-07-28): no handshake; a client may ask
//!   `server/discover`, and every request carries its protocol version and
//!   client capabilities in `params._meta`. A request naming a version the
//!   server does not speak gets error -32022 listing the ones it does.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};

mod envelope;
mod params;

pub use params::Params;

/// Revisions reached through the `initialize` handshake, oldest first.
pub const SESSION_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Stateless revisions.
pub const STATELESS_VERSIONS: [&str; 1] = ["2026-07-28"];
/// The newest stateless revision: the one the bridge asks for first.
pub const NEWEST_STATELESS_VERSION: &str = STATELESS_VERSIONS[STATELESS_VERSIONS.len() - 1];
/// The requests a client may make in the stateless revision. The session
/// revisions' handshake, `ping`, `logging/setLevel` and the subscribe pair
/// are not among them: asked in this generation, they are methods not
/// found, like any other.
pub const STATELESS_METHODS: [&str; 10] = [
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "completion/complete",
];

/// What a client asks of a server in either generation, besides
/// [`STATELESS_METHODS`]: the names [`known_method`] keeps borrowed.
const SESSION_CLIENT_METHODS: [&str; 9] = [
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

/// `method` as one of the methods a client sends, borrowed, when it is
/// one: a posted message's method is kept, and sent as `Mcp-Method`, with
/// every request.
pub fn known_method(method: &str) -> Cow<'static, str> {
    crate::text::known_or_owned(
        STATELESS_METHODS.iter().chain(&SESSION_CLIENT_METHODS),
        method,
    )
}

/// `version` as one of the revisions above, borrowed, when it is one:
/// a version kept to be sent again with every request needs no copy.
pub fn known_version(version: &str) -> Cow<'static, str> {
    crate::text::known_or_owned(SESSION_VERSIONS.iter().chain(&STATELESS_VERSIONS), version)
}

/// Where a stateless request carries its protocol version.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// Where a stateless request carries the client's capabilities.
pub const CLIENT_CAPABILITIES_META: &str = "io.modelcontextprotocol/clientCapabilities";
/// Where a stateless result carries the server's name and version.
pub const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// 2026-07-28: a standard header (`Mcp-Method`, `Mcp-Name`,
/// `MCP-Protocol-Version`) malformed or contradicting the body; HTTP 400.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a capability its client did not
/// declare; HTTP 400.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// The HTTP status of a stateless (2026-07-28) answer sent as JSON, by
/// its error: 404 for a method not found, 400 for the revision's own
/// refusals of a request (a header that disagrees, a capability not
/// declared, a version not spoken), 200 for a result and any other error.
/// A server's refusal keeps its status through the bridge.
pub fn stateless_status(answer: &str) -> u16 {
    #[derive(serde::Deserialize)]
    struct Code {
        code: i64,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        error: Option<Code>,
    }
    match serde_json::from_str::<Answer>(answer)
        .ok()
        .and_then(|a| a.error)
    {
        Some(Code {
            code: METHOD_NOT_FOUND,
        }) => 404,
        Some(Code {
            code: HEADER_MISMATCH | MISSING_CLIENT_CAPABILITY | UNSUPPORTED_PROTOCOL_VERSION,
        }) => 400,
        _ => 200,
    }
}

/// The longest line accepted from a peer; a longer one is dropped with a
/// parse error instead of growing a buffer without end.
pub const MAX_LINE: usize = 4 << 20;

/// One JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Request {
        id: Value,
        method: String,
        params: Params,
    },
    Notification {
        method: String,
        params: Params,
    },
    /// A result (`Ok`) or an error object (`Err`) for one of our requests.
    Response {
        id: Value,
        outcome: Result<Value, Value>,
    },
}

/// A message that is not valid JSON-RPC: the error to answer with (its id
/// is `null` when the request's own id could not be read).
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub id: Value,
    pub code: i64,
    pub message: String,
}

impl Invalid {
    pub fn reply(&self) -> String {
        error(&self.id, self.code, &self.message, None)
    }
}

/// A field of a message as it was sent, `null` included (an `Option`
/// alone would read `null` as absent, and `"id": null` is an error where a
/// missing id makes a notification).
struct Present<T>(Option<T>);

impl<T> Default for Present<T> {
    fn default() -> Self {
        Present(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|v| Present(Some(v)))
    }
}

/// The members of a message, read in one pass without a map of them (the
/// id as written, so where it stands in the line is known): serde_json's
/// reading, for the messages [`envelope::members`] gives up on.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Present<&'a RawValue>,
    #[serde(default, borrow)]
    id: Present<&'a RawValue>,
    #[serde(default)]
    method: Present<Value>,
    #[serde(default, borrow)]
    params: Present<&'a RawValue>,
    #[serde(default)]
    result: Present<Value>,
    #[serde(default)]
    error: Present<Value>,
}

/// A message's members as either reader found them: the version, id and
/// params as their text, the rest built.
struct Fields<'a> {
    jsonrpc: Option<&'a str>,
    id: Option<&'a str>,
    method: Option<Value>,
    params: Option<Params>,
    result: Option<Value>,
    error: Option<Value>,
}

impl<'a> Fields<'a> {
    /// The members the walk found, built; `None` when one does not build
    /// (a number past `f64`'s range), which serde_json then reports.
    fn walked(members: envelope::Members<'a>) -> Option<Fields<'a>> {
        let built = |text: Option<&str>| text.map(envelope::value).transpose().ok();
        let params = members.params.map(|text| match members.params_head {
            Some((name, meta)) => Params::written_with_head(text.into(), name, meta),
            None => Params::written(text.into()),
        });
        Some(Fields {
            jsonrpc: members.jsonrpc,
            id: members.id,
            method: built(members.method)?,
            params,
            result: built(members.result)?,
            error: built(members.error)?,
        })
    }

    fn read(envelope: Envelope<'a>) -> Fields<'a> {
        Fields {
            jsonrpc: envelope.jsonrpc.0.map(RawValue::get),
            id: envelope.id.0.map(RawValue::get),
            method: envelope.method.0,
            params: envelope
                .params
                .0
                .map(|text| Params::written(text.get().into())),
            result: envelope.result.0,
            error: envelope.error.0,
        }
    }
}

/// Whether `jsonrpc` is the string "2.0", read where it stands: the
/// text is compared, and read as a string only when it has escapes.
fn is_version_2(text: &str) -> bool {
    text == r#""2.0""#
        || (text.contains('\\') && serde_json::from_str::<String>(text).is_ok_and(|v| v == "2.0"))
}

/// Whether `line` holds a JSON object: a struct also reads from an array,
/// and only an object is a message.
pub(crate) fn is_object(line: &str) -> bool {
    line.trim_start().starts_with('{')
}

/// Parses one line.
pub fn parse(line: &str) -> Result<Message, Invalid> {
    parse_placed(line).map(|(message, _)| message)
}

/// [`parse`], and for a request, where its id stands in `line` (so it can
/// be passed on as it was written, under another id).
pub fn parse_placed(line: &str) -> Result<(Message, Option<Range<usize>>), Invalid> {
    match envelope::members(line).and_then(Fields::walked) {
        Some(fields) => message(line, fields),
        None => read_placed(line),
    }
}

/// [`parse_placed`] by serde_json, for the lines the walk gives up on.
fn read_placed(line: &str) -> Result<(Message, Option<Range<usize>>), Invalid> {
    match serde_json::from_str::<Envelope>(line) {
        Ok(envelope) if is_object(line) => message(line, Fields::read(envelope)),
        // Why it is not a message: not JSON, not an object, or a member
        // given twice.
        _ => Err(why_not_a_message(line)),
    }
}

/// The error for a line that is no message at all.
fn why_not_a_message(line: &str) -> Invalid {
    match serde_json::from_str::<Value>(line) {
        Err(e) => Invalid {
            id: Value::Null,
            code: PARSE_ERROR,
            message: format!("parse error: {e}"),
        },
        Ok(Value::Object(_)) => invalid(&Value::Null, "a member appears twice"),
        Ok(_) => invalid(&Value::Null, "a message must be a JSON object"),
    }
}

fn invalid(id: &Value, message: &str) -> Invalid {
    Invalid {
        id: id.clone(),
        code: INVALID_REQUEST,
        message: message.to_owned(),
    }
}

/// The message `fields` make, read out of `line`.
fn message(line: &str, fields: Fields<'_>) -> Result<(Message, Option<Range<usize>>), Invalid> {
    let placed = fields.id.and_then(|raw| place(line, raw));
    let id = match fields.id.map(envelope::value) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Err(invalid(&Value::Null, "an id must be a string or a number")),
        None => None,
    };
    if let Some(id) = &id {
        if !(id.is_string() || id.is_number()) {
            return Err(invalid(&Value::Null, "an id must be a string or a number"));
        }
    }
    if !fields.jsonrpc.is_some_and(is_version_2) {
        return Err(invalid(
            id.as_ref().unwrap_or(&Value::Null),
            "jsonrpc must be \"2.0\"",
        ));
    }
    let params = fields.params.unwrap_or_default();
    match (fields.method, id) {
        (Some(Value::String(method)), Some(id)) => {
            Ok((Message::Request { id, method, params }, placed))
        }
        (Some(Value::String(method)), None) => Ok((Message::Notification { method, params }, None)),
        (Some(_), id) => Err(invalid(
            id.as_ref().unwrap_or(&Value::Null),
            "method must be a string",
        )),
        (None, Some(id)) => {
            let outcome = match (fields.result, fields.error) {
                (Some(result), None) => Ok(result),
                (None, Some(error)) => Err(error),
                _ => {
                    return Err(invalid(
                        &id,
                        "a response needs exactly one of result and error",
                    ))
                }
            };
            Ok((Message::Response { id, outcome }, None))
        }
        (None, None) => Err(invalid(&Value::Null, "neither a request nor a response")),
    }
}

/// For the fuzz targets: a line the walk reads, as a message or as an
/// answer, reads the same by serde_json.
#[cfg(fuzzing)]
pub(crate) fn assert_walk_reads_as_serde_json(line: &str) {
    let Some(members) = envelope::members(line) else {
        return;
    };
    if let Some(fields) = Fields::walked(members.clone()) {
        assert_eq!(message(line, fields), read_placed(line), "{line}");
    }
    let walked = walked_answer(members).map(|a| (a.id, a.outcome));
    assert_eq!(
        walked,
        read_answer(line).map(|a| (a.id, a.outcome)),
        "{line}"
    );
}

/// An answer as it came: its numeric id, and its result or error left as
/// the JSON text it is, nothing built from it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub id: u64,
    /// The result's or the error's JSON text, checked as JSON.
    pub outcome: Result<&'a str, &'a str>,
}

/// Where `raw`, read out of `line` without a copy, stands in it: its
/// text borrows from the line, so its place is its offset in it.
fn place(line: &str, raw: &str) -> Option<Range<usize>> {
    let start = (raw.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let at = start..start + raw.len();
    (line.get(at.clone()) == Some(raw)).then_some(at)
}

impl Answer<'_> {
    /// Where its parts stand in `line`, the line it was read from.
    pub fn placed(&self, line: &str) -> Option<Placed> {
        let at = |raw: &str| place(line, raw);
        let outcome = match self.outcome {
            Ok(result) => Ok(at(result)?),
            Err(error) => Err(at(error)?),
        };
        Some(Placed {
            id: self.id,
            outcome,
        })
    }
}

/// Where an answer's parts stand in its line: read once, by whoever read
/// the line first, and not again by whoever it goes to next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub id: u64,
    /// Where its result, or its error, stands.
    pub outcome: Result<Range<usize>, Range<usize>>,
}

/// A line of a server's, and what was read of it already.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub text: &'a str,
    /// Where its parts stand, when it is an answer read as [`answer`]
    /// reads one.
    pub answer: Option<&'a Placed>,
}

impl<'a> Line<'a> {
    /// The answer it holds: as it was placed, or read now.
    pub fn answer(&self) -> Option<PlacedAnswer<'a>> {
        let text = self.text;
        match self.answer {
            Some(placed) => {
                let (range, ok) = match &placed.outcome {
                    Ok(range) => (range, true),
                    Err(range) => (range, false),
                };
                let part = text.get(range.clone())?;
                Some(PlacedAnswer {
                    id: placed.id,
                    outcome: if ok { Ok(part) } else { Err(part) },
                })
            }
            None => {
                let read = answer(text)?;
                Some(PlacedAnswer {
                    id: read.id,
                    outcome: read.outcome,
                })
            }
        }
    }
}

impl<'a> From<&'a str> for Line<'a> {
    fn from(text: &'a str) -> Self {
        Line { text, answer: None }
    }
}

impl<'a> From<&'a String> for Line<'a> {
    fn from(text: &'a String) -> Self {
        Line::from(text.as_str())
    }
}

/// An answer's id and its result or error, as the JSON text it came as
/// (checked already).
#[derive(Debug, Clone, Copy)]
pub struct PlacedAnswer<'a> {
    pub id: u64,
    pub outcome: Result<&'a str, &'a str>,
}

/// An id's JSON text, as `Value::to_string` writes it: the key a bridged
/// call's answer is awaited and traced under, made several times a call.
pub fn id_text(id: &Value) -> String {
    let mut text = String::with_capacity(20);
    push_id(&mut text, id);
    text
}

/// Appends `id` as JSON. An id is a whole number or a string with nothing
/// to escape, nearly always: those are written here (the JSON writer
/// costs several times as much); anything else as serde_json writes it.
fn push_id(text: &mut String, id: &Value) {
    match id {
        Value::Number(n) => match n.as_u64() {
            Some(n) => crate::digits::push_decimal(text, n),
            None => text.push_str(&n.to_string()),
        },
        Value::String(s) if crate::swar::json_plain_run(s.as_bytes()) == s.len() => {
            text.push('"');
            text.push_str(s);
            text.push('"');
        }
        _ => text.push_str(&id.to_string()),
    }
}

/// The answer under `id` whose result or error is `outcome`, JSON text
/// checked already (see [`PlacedAnswer`]), written around it as it is.
pub fn response_text(id: &Value, outcome: Result<&str, &str>) -> String {
    let (member, text) = match outcome {
        Ok(result) => (r#","result":"#, result),
        Err(error) => (r#","error":"#, error),
    };
    let mut line = String::with_capacity(text.len() + 48);
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    push_id(&mut line, id);
    line.push_str(member);
    line.push_str(text);
    line.push('}');
    line
}

/// Reads `line` as an answer under a numeric id, if it is a valid one.
/// Most lines a server writes are answers to calls, and a bridge passes
/// their results on as they are: read this way, a result is checked but
/// never built into a JSON tree. Anything else (`None`: a request, a
/// notification, a string id, a `null` result, a line that is not
/// JSON-RPC) is for [`parse`].
pub fn answer(line: &str) -> Option<Answer<'_>> {
    match envelope::members(line) {
        Some(members) => walked_answer(members),
        None => read_answer(line),
    }
}

/// [`answer`] from the members the walk found, read as serde_json reads
/// them for [`read_answer`]: `null` as absent, the version only as a
/// string written without escapes.
fn walked_answer(members: envelope::Members<'_>) -> Option<Answer<'_>> {
    fn present(text: Option<&str>) -> Option<&str> {
        text.filter(|text| *text != "null")
    }
    if members.jsonrpc != Some(r#""2.0""#) || present(members.method).is_some() {
        return None;
    }
    let outcome = match (present(members.result), present(members.error)) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(error),
        _ => return None,
    };
    let id = present(members.id)?;
    let id = match envelope::whole_number(id) {
        Some(id) => id,
        None => serde_json::from_str(id).ok()?,
    };
    Some(Answer { id, outcome })
}

/// [`answer`] by serde_json, for the lines the walk gives up on.
fn read_answer(line: &str) -> Option<Answer<'_>> {
    #[derive(Deserialize)]
    struct Fields<'a> {
        #[serde(default, borrow)]
        jsonrpc: Option<&'a str>,
        #[serde(default)]
        id: Option<u64>,
        #[serde(default)]
        method: Option<IgnoredAny>,
        #[serde(default, borrow)]
        result: Option<&'a RawValue>,
        #[serde(default, borrow)]
        error: Option<&'a RawValue>,
    }
    if !is_object(line) {
        return None;
    }
    let fields: Fields = serde_json::from_str(line).ok()?;
    if fields.jsonrpc != Some("2.0") || fields.method.is_some() {
        return None;
    }
    let outcome = match (fields.result, fields.error) {
        (Some(result), None) => Ok(result.get()),
        (None, Some(error)) => Err(error.get()),
        _ => return None,
    };
    Some(Answer {
        id: fields.id?,
        outcome,
    })
}

/// A message as it is written: the fields borrowed, none copied into an
/// intermediate JSON map (every call and answer through the bridge is
/// written this way). A result or error is any JSON: a tree, or the text
/// of one passed on as it came.
#[derive(Serialize)]
struct Wire<'a, R: Serialize + ?Sized = Value> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a Params>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a R>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a R>,
}

impl<R: Serialize + ?Sized> Wire<'_, R> {
    fn blank() -> Self {
        Wire {
            jsonrpc: "2.0",
            id: None,
            method: None,
            params: None,
            result: None,
            error: None,
        }
    }

    fn line(&self) -> String {
        // Serializing borrowed JSON values into a string cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub fn result(id: &Value, result: Value) -> String {
    response(id, Ok(&result))
}

/// The answer under `id`: a result, or an error object.
pub fn response<R: Serialize + ?Sized>(id: &Value, outcome: Result<&R, &R>) -> String {
    let (result, error) = match outcome {
        Ok(result) => (Some(result), None),
        Err(error) => (None, Some(error)),
    };
    Wire {
        id: Some(id),
        result,
        error,
        ..Wire::blank()
    }
    .line()
}

pub fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> String {
    response(id, Err(&error_object(code, message, data)))
}

/// A JSON-RPC error object, for [`response`].
pub fn error_object(code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({"code": code, "message": message});
    if let Some(data) = data {
        error["data"] = data;
    }
    error
}

pub fn request(id: &Value, method: &str, params: impl Into<Params>) -> String {
    Wire::<Value> {
        id: Some(id),
        method: Some(method),
        params: Some(&params.into()),
        ..Wire::blank()
    }
    .line()
}

pub fn notification(method: &str, params: impl Into<Params>) -> String {
    Wire::<Value> {
        method: Some(method),
        params: Some(&params.into()),
        ..Wire::blank()
    }
    .line()
}

/// The `_meta` object of a message's `params`, made first when it has
/// none (or one that is not an object), to write a key of the protocol's
/// own into.
pub fn meta_of(
    params: &mut serde_json::Map<String, Value>,
) -> Option<&mut serde_json::Map<String, Value>> {
    if !params.get("_meta").is_some_and(Value::is_object) {
        params.insert("_meta".to_owned(), Value::Object(serde_json::Map::new()));
    }
    params.get_mut("_meta").and_then(Value::as_object_mut)
}

/// The version to answer an `initialize` asking for `requested`: the same
/// when this side speaks it, else the newest session revision.
pub fn negotiate(requested: &str) -> &'static str {
    SESSION_VERSIONS
        .into_iter()
        .find(|v| *v == requested)
        .unwrap_or(SESSION_VERSIONS[SESSION_VERSIONS.len() - 1])
}

/// Every revision this side speaks, oldest first.
pub fn supported_versions() -> Vec<&'static str> {
    SESSION_VERSIONS
        .into_iter()
        .chain(STATELESS_VERSIONS)
        .collect()
}

/// The error for a stateless request whose `_meta` names a version this
/// side does not speak; `None` when it speaks it (or the request names
/// none: a session-generation request).
pub fn unsupported_version(id: &Value, params: &Value) -> Option<String> {
    let requested = params["_meta"][PROTOCOL_VERSION_META].as_str()?;
    if supported_versions().contains(&requested) {
        return None;
    }
    Some(error(
        id,
        UNSUPPORTED_PROTOCOL_VERSION,
        &format!("unsupported protocol version {requested}"),
        Some(json!({"supported": supported_versions(), "requested": requested})),
    ))
}

/// A list result (`tools/list`, `prompts/list`…): the stateless
/// generation wants it marked complete and says how long it may be cached
/// (here: not at all, private); the session generation ignores the marks.
pub fn listing(key: &str, items: Value) -> Value {
    json!({key: items, "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
}

/// The `server/discover` result of a stateless server.
pub fn discover_result(capabilities: Value, server_info: Value, instructions: &str) -> Value {
    json!({
        "supportedVersions": supported_versions(),
        "capabilities": capabilities,
        "instructions": instructions,
        "resultType": "complete",
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": {SERVER_INFO_META: server_info},
    })
}

#[cfg(test)]
mod tests {

    /// A revision the provider knows is kept borrowed; any other version
    /// a server names is kept as it said it.
    #[test]
    fn a_known_version_is_borrowed() {
        for version in SESSION_VERSIONS.iter().chain(&STATELESS_VERSIONS) {
            let kept = known_version(version);
            assert!(matches!(kept, Cow::Borrowed(_)), "{version}");
            assert_eq!(kept, *version);
        }
        let other = known_version("2099-01-01");
        assert!(matches!(other, Cow::Owned(_)));
        assert_eq!(other, "2099-01-01");
        assert!(matches!(
            known_method("tools/call"),
            Cow::Borrowed("tools/call")
        ));
        assert!(matches!(
            known_method("initialize"),
            Cow::Borrowed("initialize")
        ));
        assert_eq!(known_method("x/y"), Cow::<str>::Owned("x/y".to_owned()));
    }

    #[test]
    fn a_stateless_answers_status_follows_the_revisions_refusals() {
        let refused = |code: i64| error(&json!(1), code, "no", None);
        assert_eq!(stateless_status(&refused(METHOD_NOT_FOUND)), 404);
        for code in [
            HEADER_MISMATCH,
            MISSING_CLIENT_CAPABILITY,
            UNSUPPORTED_PROTOCOL_VERSION,
        ] {
            assert_eq!(stateless_status(&refused(code)), 400, "{code}");
        }
        assert_eq!(stateless_status(&refused(INVALID_PARAMS)), 200);
        assert_eq!(
            stateless_status(&result(&json!(1), json!({"error": {"code": -32601}}))),
            200
        );
        assert_eq!(stateless_status("not json"), 200);
    }

    use super::*;

    #[test]
    fn an_id_s_text_is_its_json() {
        for id in [
            json!(0),
            json!(u64::MAX),
            json!(-3),
            json!(1.5),
            json!("a\"b"),
            json!("é"),
            json!("tab\there"),
            json!("back\\slash"),
            json!("\u{7f}"),
            json!(""),
            json!(null),
        ] {
            assert_eq!(id_text(&id), id.to_string());
        }
    }

    proptest::proptest! {
        /// Any string id is written as serde_json writes it, escapes
        /// and all.
        #[test]
        fn any_string_id_s_text_is_its_json(id in "\\PC*|[\\x00-\\x7f]*") {
            let id = Value::String(id);
            proptest::prop_assert_eq!(id_text(&id), id.to_string());
        }
    }

    #[test]
    fn messages_of_each_kind_and_the_errors_for_bad_ones() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Ok(Message::Request {
                id: json!(1),
                method: "tools/list".into(),
                params: Params::default()
            })
        );
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Message::Notification { .. })
        ));
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"no"}}"#),
            Ok(Message::Response {
                id: json!("a"),
                outcome: Err(json!({"code":1,"message":"no"}))
            })
        );
        assert_eq!(parse("{oops").unwrap_err().code, PARSE_ERROR);
        for version in [r#""1.0""#, "2.0", "null", r#"["2.0"]"#, r#""2.0 ""#] {
            let bad =
                parse(&format!(r#"{{"jsonrpc":{version},"id":7,"method":"x"}}"#)).unwrap_err();
            assert_eq!((bad.id, bad.code), (json!(7), INVALID_REQUEST), "{version}");
            assert!(
                bad.message.contains("jsonrpc"),
                "{version}: {}",
                bad.message
            );
        }
        // The version written with an escape is still "2.0".
        assert!(matches!(
            parse(r#"{"jsonrpc":"2\u002e0","id":7,"method":"x"}"#),
            Ok(Message::Request { .. })
        ));
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#)
                .unwrap_err()
                .id,
            Value::Null
        );
        assert_eq!(parse("[1]").unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse(r#"["2.0",1,"x"]"#).unwrap_err().code, INVALID_REQUEST);
        assert_eq!(parse("7").unwrap_err().code, INVALID_REQUEST);
        let twice = parse(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#).unwrap_err();
        assert_eq!((twice.id, twice.code), (Value::Null, INVALID_REQUEST));
        let null_id = parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).unwrap_err();
        assert_eq!(
            null_id.code, INVALID_REQUEST,
            "a null id is no notification"
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":3,"result":null}"#),
            Ok(Message::Response {
                id: json!(3),
                outcome: Ok(Value::Null)
            })
        );
    }

    /// An answer placed by whoever read its line first reads the same as
    /// one read again, and is written around its result as it came, under
    /// its client's id.
    #[test]
    fn a_placed_answer_reads_as_one_read_again() {
        for line in [
            r#"{"result":{"content":[{"type":"text","text":"a\"b"}]},"jsonrpc":"2.0","id":7}"#,
            r#"{"jsonrpc":"2.0", "id":8, "error": {"code":1,"message":"no"} }"#,
        ] {
            let read = answer(line).unwrap();
            let placed = read.placed(line).unwrap();
            let again = Line {
                text: line,
                answer: None,
            }
            .answer()
            .unwrap();
            let kept = Line {
                text: line,
                answer: Some(&placed),
            }
            .answer()
            .unwrap();
            assert_eq!((kept.id, kept.outcome), (again.id, again.outcome));
            let id = json!("x");
            let raw = |text| serde_json::from_str::<&RawValue>(text).unwrap();
            assert_eq!(
                response_text(&id, kept.outcome),
                response(&id, read.outcome.map(raw).map_err(raw)),
                "{line}"
            );
        }
    }

    #[test]
    fn an_answer_is_read_without_its_result_and_anything_else_is_left_to_parse() {
        let line =
            r#"{"result":{"content":[{"type":"text","text":"a\"b"}]},"jsonrpc":"2.0","id":7}"#;
        let read = answer(line).unwrap();
        assert_eq!(read.id, 7);
        assert_eq!(
            read.outcome,
            Ok(r#"{"content":[{"type":"text","text":"a\"b"}]}"#)
        );
        assert_eq!(
            response_text(&json!("x"), read.outcome),
            r#"{"jsonrpc":"2.0","id":"x","result":{"content":[{"type":"text","text":"a\"b"}]}}"#
        );
        let error = r#"{"jsonrpc":"2.0","id":8,"error":{"code":1,"message":"no"}}"#;
        assert_eq!(
            answer(error).unwrap().outcome,
            Err(r#"{"code":1,"message":"no"}"#)
        );
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            r#"{"jsonrpc":"2.0","id":"s","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"result":{}}"#,
            r#"["2.0",1,{}]"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"#,
        ] {
            assert!(answer(other).is_none(), "{other}");
        }
    }

    #[test]
    fn versions_are_negotiated_and_checked() {
        assert_eq!(negotiate("2025-03-26"), "2025-03-26");
        assert_eq!(negotiate("2099-01-01"), "2025-11-25");
        let modern = json!({"_meta": {PROTOCOL_VERSION_META: "2026-07-28"}});
        assert_eq!(unsupported_version(&json!(1), &modern), None);
        assert_eq!(unsupported_version(&json!(1), &Value::Null), None);
        let future = json!({"_meta": {PROTOCOL_VERSION_META: "2099-01-01"}});
        let reply: Value =
            serde_json::from_str(&unsupported_version(&json!(1), &future).unwrap()).unwrap();
        assert_eq!(reply["error"]["code"], UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(reply["error"]["data"]["requested"], "2099-01-01");
    }
}
