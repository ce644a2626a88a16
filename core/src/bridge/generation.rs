//! The child's protocol generation, learned at its handshake, and what a
//! request and a result go through when the caller speaks the other one.
//!
//! Most stdio servers speak only the session revisions; a server written
//! for 2026-07-28 may speak only the stateless one, answering `initialize`
//! with an error. The bridge asks `initialize` first and, when refused,
//! `server/discover`: a child that answers it is stateless, and its
//! discovery result stands in for the `initialize` result every session
//! client is answered from. A remote server that answers `initialize` but
//! keeps no session (a stateless HTTP transport) has no way to ask a
//! client anything in that generation; it is asked `server/discover` too,
//! and spoken to in the stateless generation if it answers. The child of a
//! remote server that speaks for the stateless revision's clients asks
//! `server/discover` before anything else, and does the session handshake
//! only if the server does not speak that revision. From then on:
//!
//! * a session client's request gets the stateless envelope (protocol
//!   version, the client's capabilities and name in `params._meta`);
//! * a stateless client's request to a session child loses it;
//! * the child's result loses the stateless marks (`resultType`, cache
//!   hints) on its way to a session client, and an `input_required`
//!   result — the stateless way to ask the client for sampling, roots or
//!   elicitation — becomes the session way: the bridge asks the client
//!   each request itself and retries the call with the answers (see
//!   [`Round`]).

use serde_json::{json, Map, Value};

use crate::mcp::{self, Params};

/// Where a stateless request carries its client's name and version.
pub(crate) const CLIENT_INFO_META: &str = "io.modelcontextprotocol/clientInfo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// `initialize`, then plain requests (and `ping` for health).
    Session,
    /// No handshake: `server/discover`, and the envelope on every request.
    Stateless,
}

/// Whether a request speaks the stateless generation: it carries the
/// envelope's protocol version.
pub(crate) fn is_enveloped(meta: &Value) -> bool {
    meta[mcp::PROTOCOL_VERSION_META].is_string()
}

/// A request's params as a child of `generation` takes them: a session
/// child gets them without the stateless envelope; a stateless child gets
/// the envelope, the client's own when it sent one, else made from what
/// the client declared at its `initialize` (`declared`: its capabilities
/// and client info).
pub(crate) fn params_for(
    generation: Generation,
    params: impl Into<Params>,
    declared: &Declared,
) -> Params {
    let params = params.into();
    match generation {
        // No `_meta`, no envelope: the params stay as they came.
        Generation::Session if params.meta().is_null() => params,
        Generation::Session => without_envelope(params.into_value()).into(),
        Generation::Stateless if is_enveloped(params.meta()) => params,
        Generation::Stateless => with_envelope(params.into_value(), declared).into(),
    }
}

/// What a session client said of itself at its `initialize`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Declared {
    pub(crate) capabilities: Value,
    pub(crate) client_info: Value,
}

impl Declared {
    pub(crate) fn from_initialize(params: &Value) -> Self {
        Declared {
            capabilities: params["capabilities"].clone(),
            client_info: params["clientInfo"].clone(),
        }
    }

    /// What a stateless request's envelope says of its client.
    pub(crate) fn from_envelope(params: &Value) -> Self {
        let meta = &params["_meta"];
        Declared {
            capabilities: meta[mcp::CLIENT_CAPABILITIES_META].clone(),
            client_info: meta[CLIENT_INFO_META].clone(),
        }
    }
}

/// `params` with the stateless envelope added, at the newest stateless
/// revision this bridge speaks.
fn with_envelope(params: Value, declared: &Declared) -> Value {
    with_envelope_at(params, declared, mcp::NEWEST_STATELESS_VERSION)
}

/// `params` with the stateless envelope of revision `version` added.
fn with_envelope_at(params: Value, declared: &Declared, version: &str) -> Value {
    let mut params = match params {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    if let Some(meta) = mcp::meta_of(&mut params) {
        meta.insert(mcp::PROTOCOL_VERSION_META.to_owned(), json!(version));
        let capabilities = match &declared.capabilities {
            caps @ Value::Object(_) => caps.clone(),
            _ => json!({}),
        };
        meta.insert(mcp::CLIENT_CAPABILITIES_META.to_owned(), capabilities);
        if declared.client_info.is_object() {
            meta.insert(CLIENT_INFO_META.to_owned(), declared.client_info.clone());
        }
    }
    Value::Object(params)
}

/// `params` without the stateless envelope, which a session server does
/// not know (other `_meta`, such as a progress token, stays).
pub(crate) fn without_envelope(mut params: Value) -> Value {
    let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) else {
        return params;
    };
    for key in [
        mcp::PROTOCOL_VERSION_META,
        mcp::CLIENT_CAPABILITIES_META,
        CLIENT_INFO_META,
    ] {
        meta.remove(key);
    }
    if meta.is_empty() {
        if let Some(object) = params.as_object_mut() {
            object.remove("_meta");
        }
    }
    if params.as_object().is_some_and(Map::is_empty) {
        return Value::Null;
    }
    params
}

/// The `server/discover` the bridge asks, at stateless revision
/// `version`, in the envelope of the client the handshake speaks for.
pub(crate) fn discover_params(initialize: &Value, version: &str) -> Value {
    with_envelope_at(Value::Null, &Declared::from_initialize(initialize), version)
}

/// The stateless revision to ask again at, when a server refused the one
/// asked as unsupported (`-32022`) and named those it speaks in
/// `data.supported`: the newest of them this bridge speaks too.
pub(crate) fn supported_instead(error: &Value) -> Option<&'static str> {
    if error["code"].as_i64() != Some(mcp::UNSUPPORTED_PROTOCOL_VERSION) {
        return None;
    }
    let supported = error["data"]["supported"].as_array()?;
    mcp::STATELESS_VERSIONS
        .into_iter()
        .rev()
        .find(|ours| supported.iter().any(|theirs| theirs.as_str() == Some(ours)))
}

/// The `initialize` result a stateless child's discovery result stands
/// for, at `version` (a session revision); `None` when the child speaks
/// no stateless revision this bridge does.
pub(crate) fn initialize_result(discovered: &Value, version: &str) -> Option<Value> {
    let spoken = discovered["supportedVersions"].as_array()?;
    if !spoken.iter().any(|v| {
        v.as_str()
            .is_some_and(|v| mcp::STATELESS_VERSIONS.contains(&v))
    }) {
        return None;
    }
    let server_info = match &discovered["_meta"][mcp::SERVER_INFO_META] {
        info @ Value::Object(_) => info.clone(),
        _ => match &discovered["serverInfo"] {
            info @ Value::Object(_) => info.clone(),
            _ => json!({"name": "stateless server", "version": "0"}),
        },
    };
    let mut result = json!({
        "protocolVersion": mcp::negotiate(version),
        "capabilities": match &discovered["capabilities"] {
            caps @ Value::Object(_) => caps.clone(),
            _ => json!({}),
        },
        "serverInfo": server_info,
    });
    if let Some(instructions) = discovered["instructions"].as_str() {
        result["instructions"] = json!(instructions);
    }
    Some(result)
}

/// A stateless child's result, as a session client reads it.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome {
    Complete(Value),
    /// The child needs the client's input first: ask each request, then
    /// retry the call with the answers and `state`.
    InputRequired {
        requests: Vec<(String, String, Value)>,
        state: Option<Value>,
    },
}

/// Reads a stateless child's result for a session client: the stateless
/// marks go, and an `input_required` result becomes the requests to ask
/// (`(key, method, params)`).
pub(crate) fn session_result(mut result: Value) -> Outcome {
    let Some(fields) = result.as_object_mut() else {
        return Outcome::Complete(result);
    };
    if fields.get("resultType").and_then(Value::as_str) == Some("input_required") {
        let requests = fields
            .get("inputRequests")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(key, request)| {
                let method = request["method"].as_str().unwrap_or_default().to_owned();
                (key.clone(), method, request["params"].clone())
            })
            .collect();
        return Outcome::InputRequired {
            requests,
            state: fields.get("requestState").cloned(),
        };
    }
    for mark in ["resultType", "ttlMs", "cacheScope"] {
        fields.remove(mark);
    }
    Outcome::Complete(result)
}

/// The call retried after an `input_required` round: its params with the
/// client's answers under the keys the child gave, and the child's state
/// passed back as it was.
pub(crate) fn retry_params(
    params: &Value,
    answers: Map<String, Value>,
    state: Option<Value>,
) -> Value {
    let mut params = match params {
        Value::Object(fields) => fields.clone(),
        _ => Map::new(),
    };
    params.insert("inputResponses".to_owned(), Value::Object(answers));
    match state {
        Some(state) => params.insert("requestState".to_owned(), state),
        None => params.remove("requestState"),
    };
    Value::Object(params)
}

/// A call whose stateless child asked for the client's input, held until
/// the client has answered every request and the call is retried.
#[derive(Debug)]
pub(crate) struct Round {
    /// The call's method and params as the client sent them (without the
    /// answers of an earlier round).
    pub(crate) method: String,
    pub(crate) params: Value,
    pub(crate) state: Option<Value>,
    /// The answers in so far, under the child's keys (the requests still
    /// unanswered are the mux's asks of this round).
    pub(crate) answers: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Declared {
        Declared {
            capabilities: json!({"sampling": {}}),
            client_info: json!({"name": "old", "version": "1"}),
        }
    }

    #[test]
    fn a_session_request_gets_the_envelope_and_a_stateless_one_keeps_its_own() {
        let added = params_for(Generation::Stateless, json!({"name": "echo"}), &declared());
        let meta = &added["_meta"];
        assert_eq!(meta[mcp::PROTOCOL_VERSION_META], "2026-07-28");
        assert_eq!(meta[mcp::CLIENT_CAPABILITIES_META], json!({"sampling": {}}));
        assert_eq!(meta[CLIENT_INFO_META]["name"], "old");
        assert_eq!(added["name"], "echo");

        let own = json!({"_meta": {mcp::PROTOCOL_VERSION_META: "2026-07-28",
            mcp::CLIENT_CAPABILITIES_META: {}, "progressToken": 3}});
        assert_eq!(
            params_for(Generation::Stateless, own.clone(), &declared()),
            own
        );
        assert_eq!(
            params_for(Generation::Session, own, &declared()),
            json!({"_meta": {"progressToken": 3}})
        );
        let bare = params_for(Generation::Stateless, Value::Null, &Declared::default());
        assert_eq!(bare["_meta"][mcp::CLIENT_CAPABILITIES_META], json!({}));
        assert_eq!(
            params_for(
                Generation::Session,
                json!({"_meta": {mcp::PROTOCOL_VERSION_META: "x"}}),
                &declared()
            ),
            Value::Null
        );
        // Params as a client wrote them, with no envelope: as written.
        let written = crate::mcp::parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
        );
        let Ok(crate::mcp::Message::Request { params, .. }) = written else {
            panic!("a request");
        };
        let kept = params_for(Generation::Session, params, &declared());
        assert_eq!(kept.text(), Some(r#"{"name":"echo"}"#));
    }

    #[test]
    fn a_discovery_result_stands_for_an_initialize_result() {
        let discovered = json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "instructions": "be kind",
            "_meta": {mcp::SERVER_INFO_META: {"name": "modern", "version": "2"}},
        });
        let result = initialize_result(&discovered, "2025-06-18").unwrap();
        assert_eq!(result["protocolVersion"], "2025-06-18");
        assert_eq!(result["capabilities"], json!({"tools": {}}));
        assert_eq!(result["serverInfo"]["name"], "modern");
        assert_eq!(result["instructions"], "be kind");
        let future = json!({"supportedVersions": ["2099-01-01"], "capabilities": {}});
        assert_eq!(initialize_result(&future, "2025-06-18"), None);
        assert_eq!(initialize_result(&json!({}), "2025-06-18"), None);
    }

    #[test]
    fn results_lose_their_marks_and_input_required_becomes_requests() {
        let done =
            json!({"content": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"});
        assert_eq!(
            session_result(done),
            Outcome::Complete(json!({"content": []}))
        );
        let asked = json!({
            "resultType": "input_required",
            "inputRequests": {"who": {"method": "elicitation/create", "params": {"message": "name?"}}},
            "requestState": "s1",
        });
        assert_eq!(
            session_result(asked),
            Outcome::InputRequired {
                requests: vec![(
                    "who".into(),
                    "elicitation/create".into(),
                    json!({"message": "name?"})
                )],
                state: Some(json!("s1")),
            }
        );
        let mut answers = Map::new();
        answers.insert("who".into(), json!({"action": "accept"}));
        let retried = retry_params(
            &json!({"name": "ask", "requestState": "old"}),
            answers,
            Some(json!("s1")),
        );
        assert_eq!(retried["inputResponses"]["who"]["action"], "accept");
        assert_eq!(retried["requestState"], "s1");
        assert_eq!(retried["name"], "ask");
    }
}
