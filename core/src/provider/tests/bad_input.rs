//! Bad input from an editor, answered in its API's own error shape with the
//! status it calls for and the field it names: bodies that are no JSON or
//! carry a field of the wrong type or range, an unknown model, a missing or
//! wrong key (each told where the key is kept), an unknown route or method,
//! a message over the configured size. And requests the HTTP reader refuses
//! for their framing: a 400 in OpenAI's shape that closes the connection,
//! known from the bytes already sent, never waiting for more.

use bytes::BytesMut;

use super::*;
use crate::http::{Limits, ServerConn};

const CHAT: &str = "/v1/chat/completions";

/// A provider with an agent serving the model `echo`.
fn serving_echo(tweak: impl FnOnce(&mut Config)) -> Pair {
    let mut t = Pair::new(tweak);
    t.connect_agent(
        AGENT,
        json!({"type": "register", "agent_id": "a", "models": ["echo"], "ttl_seconds": 3600}),
    );
    t.agent_frames(AGENT);
    t
}

/// A chat request for `echo` with `fields` set over the good one's.
fn chat_with(fields: Value) -> Value {
    let mut body = json!({"model": "echo", "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    body
}

/// The answer to a request carrying exactly `headers` (and a local
/// `Host`): its status, content type and body as JSON.
fn answer(
    t: &mut Pair,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Option<String>, Value) {
    let mut all = vec![("host".to_owned(), "127.0.0.1:8788".to_owned())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let request = Request::new(method, path, all, Bytes::copy_from_slice(body)).unwrap();
    t.p.handle_request(EDITOR, request, t.now);
    t.drain();
    let response = t.response(EDITOR);
    let Body::Full(bytes) = &response.body else {
        panic!("a whole answer to {method} {path}");
    };
    let json = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let content_type = response.header("content-type").map(str::to_owned);
    (response.status, content_type, json)
}

const KEY: (&str, &str) = ("authorization", "Bearer key");

/// The answer to `body` posted to `path` with the key.
fn post(t: &mut Pair, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    answer(t, "POST", path, &[KEY], body.to_string().as_bytes())
}

#[test]
fn the_chat_route_refuses_bad_bodies_naming_the_field() {
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = [
        (b"{not json".to_vec(), 400, None),
        (b"\xff\xfe".to_vec(), 400, None),
        (b"[1, 2]".to_vec(), 400, None),
    ]
    .into_iter()
    .chain(
        [
            (
                json!({"messages": [{"role": "user", "content": "x"}]}),
                400,
                Some("model"),
            ),
            (json!({"model": "echo"}), 400, Some("messages")),
            (
                json!({"model": "echo", "messages": "hi"}),
                400,
                Some("messages"),
            ),
            (
                json!({"model": "echo", "messages": [{"role": "wizard", "content": "x"}]}),
                400,
                Some("messages[0].role"),
            ),
            (
                json!({"model": "echo", "messages": [{"role": "user", "content": 5}]}),
                400,
                Some("messages[0].content"),
            ),
            (
                chat_with(json!({"max_tokens": -1})),
                400,
                Some("max_tokens"),
            ),
            (
                chat_with(json!({"max_tokens": 1.5})),
                400,
                Some("max_tokens"),
            ),
            (
                chat_with(json!({"temperature": "hot"})),
                400,
                Some("temperature"),
            ),
            (chat_with(json!({"top_p": 2})), 400, Some("top_p")),
            (chat_with(json!({"stream": "yes"})), 400, Some("stream")),
            (
                chat_with(json!({"model": "no-such-model"})),
                404,
                Some("model"),
            ),
        ]
        .into_iter()
        .map(|(body, status, param)| (body.to_string().into_bytes(), status, param)),
    )
    .collect();
    let mut t = serving_echo(|_| {});
    for (body, status, param) in cases {
        let case = String::from_utf8_lossy(&body).into_owned();
        let got = answer(&mut t, "POST", CHAT, &[KEY], &body);
        assert_eq!(
            (got.0, got.1.as_deref()),
            (status, Some("application/json")),
            "{case}"
        );
        let error = got.2["error"].as_object().expect("an error object");
        let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["code", "message", "param", "type"], "{case}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{case}"
        );
        assert_eq!(error["param"].as_str(), param, "{case}");
    }
}

#[test]
fn ollama_routes_answer_in_ollama_shape() {
    let mut t = serving_echo(|_| {});
    let (status, _, body) = answer(&mut t, "POST", "/api/chat", &[KEY], b"{oops");
    assert_eq!(status, 400);
    assert!(body["error"].is_string(), "{body}");
    let bad_option = json!({"model": "echo", "prompt": "x", "options": {"top_p": 9}});
    let (status, _, body) = post(&mut t, "/api/generate", &bad_option);
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("top_p"), "{body}");
}

#[test]
fn a_missing_or_wrong_key_is_401_and_the_right_one_is_served() {
    let mut t = serving_echo(|_| {});
    let (status, _, body) = answer(&mut t, "GET", "/v1/models", &[], b"");
    assert_eq!(
        (status, &body["error"]["type"]),
        (401, &json!("authentication_error"))
    );
    let wrong = [("authorization", "Bearer wrong")];
    let (status, _, body) = answer(&mut t, "GET", "/v1/models", &wrong, b"");
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("invalid_api_key"))
    );
    assert_eq!(answer(&mut t, "GET", "/v1/models", &[KEY], b"").0, 200);
}

/// The embedder's hint (where the key is kept) follows each 401 an
/// editor gets, and an unknown model's 404 names the served ones: what a
/// first-time user needs to go on.
#[test]
fn a_missing_or_wrong_key_hears_where_the_key_is_and_an_unknown_model_what_is_served() {
    let hint = "Unless configured, it is kept in its secrets file as MCP_PROVIDER_API_KEY.";
    let mut t = serving_echo(|c| c.credentials_hint = hint.to_owned());
    let message = |answer: (u16, Option<String>, Value)| {
        let message = answer.2["error"]["message"].as_str().map(str::to_owned);
        (answer.0, message.unwrap_or_default())
    };
    let body = chat_with(json!({})).to_string();
    let (status, missing) = message(answer(&mut t, "POST", CHAT, &[], body.as_bytes()));
    assert_eq!(status, 401);
    assert!(
        missing.starts_with("You didn't provide an API key"),
        "{missing}"
    );
    assert!(missing.ends_with(hint), "{missing}");
    let wrong = [("authorization", "Bearer sk-wrong")];
    let (status, wrong) = message(answer(&mut t, "POST", CHAT, &wrong, body.as_bytes()));
    assert_eq!(status, 401);
    assert!(wrong.starts_with("Incorrect API key provided"), "{wrong}");
    assert!(wrong.ends_with(hint), "{wrong}");
    let typo = chat_with(json!({"model": "ecoh"}));
    let (status, unknown) = message(post(&mut t, CHAT, &typo));
    assert_eq!(status, 404);
    assert!(
        unknown.contains("The model `ecoh` does not exist"),
        "{unknown}"
    );
    assert!(unknown.contains("Served models: `echo`"), "{unknown}");
}

#[test]
fn an_unknown_route_is_404_and_a_wrong_method_405() {
    let mut t = serving_echo(|_| {});
    assert_eq!(answer(&mut t, "GET", "/v1/nothing", &[KEY], b"").0, 404);
    assert_eq!(answer(&mut t, "GET", CHAT, &[KEY], b"").0, 405);
}

#[test]
fn a_message_over_the_configured_size_is_400_naming_it() {
    let mut t = serving_echo(|c| c.request.max_message_bytes = 10);
    let body = chat_with(json!({"messages": [{"role": "user", "content": "x".repeat(11)}]}));
    let (status, _, body) = post(&mut t, CHAT, &body);
    assert_eq!(
        (status, &body["error"]["param"]),
        (400, &json!("messages[0].content"))
    );
}

#[test]
fn the_responses_route_refuses_bad_bodies_naming_the_field() {
    let mut t = serving_echo(|_| {});
    for (body, param) in [
        (json!({"model": "echo", "input": 5}), "input"),
        (json!({"model": "echo"}), "input"),
        (
            json!({"model": "echo", "input": "x", "tools": {"a": 1}}),
            "tools",
        ),
        (
            json!({"model": "echo", "input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
        ),
        (json!({"model": 7, "input": "x"}), "model"),
    ] {
        let got = post(&mut t, "/v1/responses", &body);
        let error = &got.2["error"];
        assert_eq!(
            (got.0, &error["param"], &error["type"]),
            (400, &json!(param), &json!("invalid_request_error")),
            "{body}"
        );
    }
}

#[test]
fn a_messages_request_without_max_tokens_is_an_anthropic_400() {
    let mut t = serving_echo(|_| {});
    let body = json!({"model": "echo", "messages": [{"role": "user", "content": "x"}]});
    let (status, _, body) = post(&mut t, "/v1/messages", &body);
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
}

/// The chat route's request head over HTTP/1.`minor`, with `host` and the
/// key, then `lines`.
fn chat_head(lines: &str, minor: u8, host: &str) -> Vec<u8> {
    format!("POST {CHAT} HTTP/1.{minor}\r\n{host}Authorization: Bearer key\r\n{lines}\r\n")
        .into_bytes()
}

/// What a connection sent `input` writes back, the reader's error answered
/// by the provider as a driver answers it.
fn refused(input: &[u8]) -> String {
    let mut conn = ServerConn::new(Limits::default(), Instant::now());
    conn.handle_data(input);
    let case = String::from_utf8_lossy(input);
    let error = match conn.poll_request() {
        Err(error) => error,
        Ok(got) => panic!("{case:?} read as {got:?}: no error known from these bytes"),
    };
    let mut t = Pair::new(|_| {});
    t.p.handle_http_error(ConnId(1), &error);
    let response = std::iter::from_fn(|| t.p.poll_output())
        .find_map(|o| match o {
            Output::Refuse { response, .. } => Some(response),
            _ => None,
        })
        .expect("a refusal");
    let mut out = BytesMut::new();
    conn.encode_response(&response, &mut out);
    assert!(conn.wants_close(), "{case:?}: the connection closes");
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn ambiguous_or_broken_framing_is_a_400_that_closes_at_once() {
    const HOST: &str = "Host: 127.0.0.1\r\n";
    const CHUNKED: &str = "Transfer-Encoding: chunked\r\n";
    let good = chat_with(json!({})).to_string();
    let with_body = |lines: &str, minor: u8, body: &[u8]| {
        let mut input = chat_head(lines, minor, HOST);
        input.extend_from_slice(body);
        input
    };
    let length = format!("Content-Length: {}\r\n", good.len());
    let hello = b"5\r\nhello\r\n0\r\n\r\n";
    let mut cases = vec![
        with_body(&format!("{length}{CHUNKED}"), 1, hello),
        with_body(&format!("{CHUNKED}{length}"), 1, hello),
        with_body(CHUNKED, 0, hello),
        with_body(&format!("{CHUNKED}{CHUNKED}"), 1, b"0\r\n\r\n"),
        with_body("Transfer-Encoding: gzip, chunked\r\n", 1, b"0\r\n\r\n"),
        with_body("Transfer-Encoding: identity\r\n", 1, good.as_bytes()),
        with_body(&format!("{HOST}Content-Length: 0\r\n"), 1, b""),
        chat_head("Content-Length: 0\r\n", 1, ""),
    ];
    for value in ["+5", "-5", "5 5", "0x5", "5a", "1, 2", ""] {
        let lines = format!("Content-Length: {value}\r\n");
        cases.push(with_body(&lines, 1, good.as_bytes()));
    }
    for size in ["+5", "-5", " 5", "5 ", "0x5", "fffffffffffffffffffffff"] {
        cases.push(with_body(
            CHUNKED,
            1,
            format!("{size}\r\nhello\r\n0\r\n\r\n").as_bytes(),
        ));
    }
    // Chunked bodies with a bare LF for a line end, at each place one can
    // be or for all of them, or with a CR without its LF: no CRLF will ever
    // come.
    for framed in ["5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n0\r\nX: 1\r\n\r\n"] {
        for (at, _) in framed.match_indices("\r\n") {
            let cut = format!("{}\n", &framed[..at]);
            cases.push(with_body(CHUNKED, 1, cut.as_bytes()));
        }
        let bare = framed.replace("\r\n", "\n");
        cases.push(with_body(CHUNKED, 1, bare.as_bytes()));
    }
    cases.push(with_body(CHUNKED, 1, b"5\rhello"));
    for input in cases {
        let case = String::from_utf8_lossy(&input).into_owned();
        let written = refused(&input);
        let (head, body) = written.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 "), "{case:?}: {head}");
        let head = format!("{}\r\n", head.to_ascii_lowercase());
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{case:?}: {head}"
        );
        assert!(
            head.contains("\r\nconnection: close\r\n"),
            "{case:?}: {head}"
        );
        let error: Value = serde_json::from_str(body).unwrap();
        let error = &error["error"];
        assert_eq!(error["type"], "invalid_request_error", "{case:?}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{case:?}"
        );
    }
}
