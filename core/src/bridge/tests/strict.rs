//! The stateless revision (2026-07-28) served strictly, at `/mcp/NAME` and
//! at the aggregate `/mcp` alike, by a bridge of two servers, `probe` and
//! `other`, played as a recording server plays them: each request answered
//! as it asks, everything each was sent kept, so that what must never
//! reach a server is seen not to.
//!
//! Every request of the revision carries its envelope in `params._meta`
//! (else -32602, HTTP 400) and the standard headers (missing or
//! contradicting the body: -32020, HTTP 400, named before an unsupported
//! version is, -32022). Methods outside the revision are not found (-32601,
//! HTTP 404). A resource no server has is not found with its URI in the
//! error's data, in both generations.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::bridge::rig::{answered, status, Rig};
use crate::bridge::{Limits, ServerSpec};
use crate::mcp;
use crate::provider::Output;

const VERSION: &str = "2026-07-28";
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
/// What the probes that must not reach a server carry.
const MARK: &str = "must-not-reach-the-server";
const PATHS: [&str; 2] = ["/mcp/probe", "/mcp"];

fn meta() -> Value {
    json!({VERSION_KEY: VERSION, CAPABILITIES_KEY: {},
           INFO_KEY: {"name": "strict-test", "version": "1"}})
}

/// The envelope without `key`.
fn meta_without(key: &str) -> Value {
    let mut meta = meta();
    if let Some(fields) = meta.as_object_mut() {
        fields.remove(key);
    }
    meta
}

fn ask(method: &str, params: Value, id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The tool `echo` of `probe` as `path` names it.
fn tool(path: &str) -> &'static str {
    if path == "/mcp" {
        "probe__echo"
    } else {
        "echo"
    }
}

/// What the recording server answers `request`.
fn recorded_answer(request: &Value) -> Value {
    let params = &request["params"];
    let mut answer = json!({"jsonrpc": "2.0", "id": request["id"]});
    let (key, value) = match request["method"].as_str().unwrap_or_default() {
        "initialize" => (
            "result",
            json!({"protocolVersion": params["protocolVersion"],
                   "capabilities": {"tools": {}, "resources": {}, "logging": {}},
                   "serverInfo": {"name": "recording", "version": "1"}}),
        ),
        "tools/list" => (
            "result",
            json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}),
        ),
        "tools/call" => {
            let arguments = params.get("arguments").cloned().unwrap_or(json!({}));
            let text = arguments.to_string();
            (
                "result",
                json!({"content": [{"type": "text", "text": text}]}),
            )
        }
        "resources/list" => ("result", json!({"resources": []})),
        "resources/read" => (
            "error",
            json!({"code": mcp::INVALID_PARAMS, "message": "Resource not found",
                   "data": {"uri": params["uri"]}}),
        ),
        "ping" | "logging/setLevel" | "resources/subscribe" | "resources/unsubscribe" => {
            ("result", json!({}))
        }
        _ => (
            "error",
            json!({"code": mcp::METHOD_NOT_FOUND, "message": "no such method"}),
        ),
    };
    answer[key] = value;
    answer
}

/// The bridge of `probe` and `other`, its servers answering as the
/// recording server does.
struct Strict {
    rig: Rig,
    /// The lines the servers were sent that have been read.
    read: usize,
}

impl Strict {
    fn new() -> Strict {
        let specs =
            ["probe", "other"].map(|name| ServerSpec::new(name, vec![format!("{name}-mcp")]));
        Strict {
            rig: Rig::of(specs.to_vec(), Limits::default()),
            read: 0,
        }
    }

    /// The standard headers a client of the revision sends with `body`,
    /// `changes` made (a name set anew, or left out for `None`).
    fn headers(body: &Value, changes: &[(&str, Option<&str>)]) -> Vec<(String, String)> {
        let method = body["method"].as_str().unwrap_or_default();
        let mut headers = vec![("MCP-Protocol-Version", VERSION), ("Mcp-Method", method)];
        let params = &body["params"];
        let named = params["name"].as_str().or(params["uri"].as_str());
        if let (true, Some(named)) = (
            matches!(method, "tools/call" | "prompts/get" | "resources/read"),
            named,
        ) {
            headers.push(("Mcp-Name", named));
        }
        for (name, value) in changes {
            headers.retain(|(k, _)| k != name);
            headers.extend(value.map(|v| (*name, v)));
        }
        headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// POSTs `body` to `path` with `headers`, the servers answering what
    /// they are asked until the client is answered: the answer.
    fn post(&mut self, path: &str, headers: Vec<(String, String)>, body: &Value) -> Vec<Output> {
        let body = Bytes::from(body.to_string());
        let (_, mut out) = self.rig.request("POST", path, headers, body);
        while out.is_empty() {
            out = self.serve().expect("an answer once the servers answered");
        }
        out
    }

    /// POSTs `body` with the revision's headers, `changes` made: the
    /// status and the JSON answered.
    fn send(&mut self, path: &str, body: &Value, changes: &[(&str, Option<&str>)]) -> (u16, Value) {
        let out = self.post(path, Strict::headers(body, changes), body);
        (status(&out), answered(&out))
    }

    /// The next request a server was sent, answered: what that answer
    /// made the bridge write to clients; `None` when none is left.
    fn serve(&mut self) -> Option<Vec<Output>> {
        while let Some((child, line)) = self.rig.lines.get(self.read).cloned() {
            self.read += 1;
            if line.get("method").is_some() && !line["id"].is_null() {
                return Some(self.rig.says(child, recorded_answer(&line)));
            }
        }
        None
    }

    /// Every line `server` was sent.
    fn received(&self, server: &str) -> Vec<&Value> {
        let named = |child| {
            let mut children = self.rig.bridge.children();
            children.any(|(id, c)| id == child && c.spec().name == server)
        };
        let lines = self.rig.lines.iter();
        lines
            .filter(|(child, _)| named(*child))
            .map(|(_, line)| line)
            .collect()
    }

    /// Whether any server was sent a call with `arguments`.
    fn called_with(&self, arguments: &Value) -> bool {
        let mut lines = self.rig.lines.iter();
        lines.any(|(_, line)| &line["params"]["arguments"] == arguments)
    }
}

/// Whether a list of versions has the stateless revision's.
fn lists_the_revision(versions: &Value) -> bool {
    versions
        .as_array()
        .is_some_and(|v| v.contains(&json!(VERSION)))
}

/// The code, id and message of a refusal.
fn refusal(answer: &Value) -> (i64, &Value, &str) {
    let error = &answer["error"];
    let code = error["code"].as_i64().unwrap_or_default();
    (
        code,
        &answer["id"],
        error["message"].as_str().unwrap_or_default(),
    )
}

#[test]
fn a_request_without_its_envelope_is_invalid_params_with_http_400() {
    for path in PATHS {
        let mut strict = Strict::new();
        for method in ["server/discover", "tools/list"] {
            for (params, missing) in [
                (json!({}), "_meta"),
                (json!({"_meta": meta_without(VERSION_KEY)}), VERSION_KEY),
                (
                    json!({"_meta": meta_without(CAPABILITIES_KEY)}),
                    CAPABILITIES_KEY,
                ),
            ] {
                let (status, answer) = strict.send(path, &ask(method, params, 101), &[]);
                let (code, id, message) = refusal(&answer);
                assert_eq!(
                    (status, code, id),
                    (400, mcp::INVALID_PARAMS, &json!(101)),
                    "{path} {method}: {answer}"
                );
                assert!(message.contains(missing), "{path} {method}: {message}");
            }
        }
        // Client info is a SHOULD: a request without it is served.
        let discover = ask(
            "server/discover",
            json!({"_meta": meta_without(INFO_KEY)}),
            1,
        );
        let (status, answer) = strict.send(path, &discover, &[]);
        assert_eq!(status, 200, "{path}: {answer}");
        let versions = &answer["result"]["supportedVersions"];
        assert!(lists_the_revision(versions), "{path}: {answer}");
    }
}

#[test]
fn a_header_that_disagrees_with_the_body_is_named_before_an_unsupported_version() {
    for path in PATHS {
        let mut strict = Strict::new();
        let mut future = meta();
        future[VERSION_KEY] = json!("v999");
        let future = ask("server/discover", json!({"_meta": future}), 302);
        let (status, answer) = strict.send(path, &future, &[]);
        let (code, id, message) = refusal(&answer);
        assert_eq!(
            (status, code, id),
            (400, mcp::HEADER_MISMATCH, &json!(302)),
            "{path}: {answer}"
        );
        assert!(
            message.contains("MCP-Protocol-Version"),
            "{path}: {message}"
        );
        // Header and body agreeing on a version the bridge does not speak.
        let agreeing = [("MCP-Protocol-Version", Some("v999"))];
        let (status, answer) = strict.send(path, &future, &agreeing);
        let code = refusal(&answer).0;
        assert_eq!(
            (status, code),
            (400, mcp::UNSUPPORTED_PROTOCOL_VERSION),
            "{path}: {answer}"
        );
        assert_eq!(answer["error"]["data"]["requested"], "v999");
        let supported = &answer["error"]["data"]["supported"];
        assert!(lists_the_revision(supported), "{path}: {answer}");
    }
}

#[test]
fn removed_and_unknown_methods_are_not_found_and_never_reach_the_server() {
    for path in PATHS {
        let mut strict = Strict::new();
        // The server is up (it has answered a call) before the probes.
        let call = |n: &str| {
            let params = json!({"name": tool(path), "arguments": {"n": n}, "_meta": meta()});
            ask("tools/call", params, 1)
        };
        assert_eq!(strict.send(path, &call("before"), &[]).0, 200, "{path}");
        let probe = json!({"uri": "test://watched", "level": "debug", MARK: true, "_meta": meta()});
        let removed = "initialize ping logging/setLevel resources/subscribe \
                       resources/unsubscribe unknown/method";
        for (id, method) in (500..).zip(removed.split_whitespace()) {
            let (status, answer) = strict.send(path, &ask(method, probe.clone(), id), &[]);
            let (code, answered_id, _) = refusal(&answer);
            assert_eq!(
                (status, code, answered_id),
                (404, mcp::METHOD_NOT_FOUND, &json!(id)),
                "{path} {method}: {answer}"
            );
        }
        // A call after them reaches the server; the probes did not.
        assert_eq!(strict.send(path, &call("after"), &[]).0, 200, "{path}");
        assert!(strict.called_with(&json!({"n": "after"})), "{path}");
        let received = strict.received("probe");
        let probed = received
            .iter()
            .filter(|line| line["params"].get(MARK).is_some());
        assert_eq!(probed.count(), 0, "{path}: {received:?}");
        let initializes = received
            .iter()
            .filter(|line| line["method"] == "initialize");
        assert_eq!(
            initializes.count(),
            1,
            "{path}: only the bridge's own handshake"
        );
    }
}

#[test]
fn every_post_carries_the_standard_headers() {
    for path in PATHS {
        let mut strict = Strict::new();
        let listing = ask("tools/list", json!({"_meta": meta()}), 1);
        let arguments = json!({"n": MARK});
        let call = ask(
            "tools/call",
            json!({"name": tool(path), "arguments": arguments, "_meta": meta()}),
            1,
        );
        for (body, header) in [
            (&listing, "Mcp-Method"),
            (&listing, "MCP-Protocol-Version"),
            (&call, "Mcp-Method"),
            (&call, "Mcp-Name"),
        ] {
            let (status, answer) = strict.send(path, body, &[(header, None)]);
            let (code, _, message) = refusal(&answer);
            assert_eq!(
                (status, code),
                (400, mcp::HEADER_MISMATCH),
                "{path} {header}: {answer}"
            );
            assert!(
                message.contains(header) && message.contains("missing"),
                "{path}: {message}"
            );
        }
        for (body, header, value) in [
            (&listing, "Mcp-Method", "prompts/list"),
            (&listing, "Mcp-Method", "TOOLS/LIST"),
            (&call, "Mcp-Name", "wrong_tool_name"),
        ] {
            let (status, answer) = strict.send(path, body, &[(header, Some(value))]);
            let code = refusal(&answer).0;
            assert_eq!(
                (status, code),
                (400, mcp::HEADER_MISMATCH),
                "{path} {header}: {value}"
            );
        }
        assert!(!strict.called_with(&arguments), "{path}");
        // Header names in any case; whitespace around a value is not the
        // value's.
        for spelled in ["mcp-method", "MCP-METHOD"] {
            let changes = [("Mcp-Method", None), (spelled, Some("tools/list"))];
            let (status, answer) = strict.send(path, &listing, &changes);
            assert_eq!(status, 200, "{path} {spelled}: {answer}");
            let tools = answer["result"]["tools"].as_array();
            assert!(tools.is_some_and(|t| !t.is_empty()), "{path}: {answer}");
        }
        let padded = format!("  {}  ", tool(path));
        let (status, answer) = strict.send(path, &call, &[("Mcp-Name", Some(&padded))]);
        assert_eq!(status, 200, "{path}: {answer}");
        let text = answer["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Value>(text).ok(),
            Some(arguments.clone())
        );
    }
}

#[test]
fn a_resource_not_found_says_its_uri_in_both_generations() {
    let mut strict = Strict::new();
    let uri = "test://nonexistent-resource";
    let read = ask("resources/read", json!({"uri": uri, "_meta": meta()}), 1);
    // The server's own "not found" passes through; the aggregate, which
    // finds no server listing the URI, says it itself.
    for path in PATHS {
        let (_, answer) = strict.send(path, &read, &[]);
        assert_eq!(answer["error"]["data"]["uri"], uri, "{path}: {answer}");
    }
    let initialize = ask(
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {},
               "clientInfo": {"name": "old", "version": "1"}}),
        1,
    );
    let out = strict.post("/mcp", vec![], &initialize);
    assert_eq!(status(&out), 200);
    let session = match &out[..] {
        [Output::Respond { response, .. }, ..] => response.header("mcp-session-id"),
        _ => None,
    };
    let session = session.expect("a session").to_owned();
    let headers = vec![
        ("Mcp-Session-Id".to_owned(), session),
        ("MCP-Protocol-Version".to_owned(), "2025-11-25".to_owned()),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    strict.post("/mcp", headers.clone(), &initialized);
    let read = ask("resources/read", json!({"uri": uri}), 2);
    let answer = answered(&strict.post("/mcp", headers, &read));
    assert_eq!(answer["error"]["data"]["uri"], uri, "{answer}");
}

/// Exactly these headers.
fn exactly(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let owned = headers.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    owned.collect()
}

#[test]
fn a_call_s_standard_headers_are_read_as_they_may_be_written_or_refused() {
    let mut strict = Strict::new();
    let path = "/mcp/probe";
    let call = |version: &str| {
        let mut meta = meta_without(INFO_KEY);
        meta[VERSION_KEY] = json!(version);
        json!({"jsonrpc": "2.0", "id": "a", "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": "x"}, "_meta": meta}})
    };
    let modern = ("MCP-Protocol-Version", VERSION);
    let (method, name) = (("Mcp-Method", "tools/call"), ("Mcp-Name", "echo"));
    let answer = answered(&strict.post(path, exactly(&[modern, method, name]), &call(VERSION)));
    assert_eq!(answer["id"], "a");
    assert_eq!(answer["result"]["content"][0]["text"], r#"{"message":"x"}"#);
    assert_eq!(answer["result"]["resultType"], "complete");
    // A standard header that contradicts the body, or cannot be read, is
    // HeaderMismatch (-32020); a name outside plain ASCII comes wrapped.
    for (headers, named) in [
        (vec![modern, ("Mcp-Method", "tools/list")], "Mcp-Method"),
        (vec![modern, ("Mcp-Name", "get-sum")], "Mcp-Name"),
        (vec![modern, ("Mcp-Name", "=?base64?not base64?=")], ""),
        (
            vec![("MCP-Protocol-Version", "2025-11-25")],
            "MCP-Protocol-Version",
        ),
    ] {
        let out = strict.post(path, exactly(&headers), &call(VERSION));
        let (status, answer) = (status(&out), answered(&out));
        let (code, _, message) = refusal(&answer);
        assert_eq!((status, code), (400, mcp::HEADER_MISMATCH), "{headers:?}");
        assert!(message.contains(named), "{headers:?}: {message}");
    }
    let wrapped = ("Mcp-Name", "=?base64?ZWNobw==?=");
    let out = strict.post(path, exactly(&[modern, method, wrapped]), &call(VERSION));
    assert_eq!(status(&out), 200);
    let text = &answered(&out)["result"]["content"][0]["text"];
    assert_eq!(text, r#"{"message":"x"}"#);
    // The revision has no stream to open and no session to end.
    for verb in ["GET", "DELETE"] {
        let (_, out) = strict
            .rig
            .request(verb, path, exactly(&[modern]), Bytes::new());
        assert_eq!(status(&out), 405, "{verb}");
    }
    let future = ("MCP-Protocol-Version", "2099-01-01");
    let out = strict.post(path, exactly(&[future, method, name]), &call("2099-01-01"));
    let answer = answered(&out);
    assert_eq!(
        (status(&out), refusal(&answer).0),
        (400, mcp::UNSUPPORTED_PROTOCOL_VERSION)
    );
    assert!(
        lists_the_revision(&answer["error"]["data"]["supported"]),
        "{answer}"
    );
}
