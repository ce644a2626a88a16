//! The provider with the built-in echo agent on its link, the frames
//! carried both ways as a driver carries them: what an editor gets from
//! each API, bytes in and bytes out, without a runtime.

use super::*;
use crate::agent::echo::{EchoAgent, BUILT_IN};

/// A provider whose model `echo` is the built-in echo agent's.
struct Echoed {
    t: Pair,
    echo: EchoAgent,
}

impl Echoed {
    fn new() -> Echoed {
        let mut t = Pair::new(|_| {});
        t.p.open_agent(AGENT, "echo");
        let echo = EchoAgent::new("echo", BUILT_IN, Duration::ZERO);
        let mut echoed = Echoed { t, echo };
        echoed.carry();
        echoed
    }

    /// Carries the frames each side has for the other until neither has
    /// more.
    fn carry(&mut self) {
        loop {
            let to_provider = self.echo.poll_batch(self.t.now);
            let to_echo = self.t.agent_frames(AGENT);
            if to_provider.is_empty() && to_echo.is_empty() {
                return;
            }
            for frame in to_echo {
                self.echo.handle_message(&frame.to_string(), self.t.now);
            }
            for frame in to_provider {
                self.t.p.handle_agent_text(AGENT, &frame, self.t.now);
                self.t.drain();
            }
        }
    }

    /// The answer to `method` `path` with `body` (none for null) and the
    /// key (`key`): its head and every byte of its body.
    fn ask(&mut self, method: &str, path: &str, key: &str, body: Value) -> (Response, String) {
        let authorization = format!("Bearer {key}");
        let headers = [("authorization", authorization.as_str())];
        self.t.request(EDITOR, method, path, &headers, body);
        self.carry();
        let mut head = None;
        let mut bytes = Vec::new();
        for output in std::mem::take(&mut self.t.seen) {
            match output {
                Output::Respond { to, response } if to.conn == EDITOR => {
                    if let Body::Full(b) = &response.body {
                        bytes.extend_from_slice(b);
                    }
                    head = Some(response);
                }
                Output::Data { to, data } if to.conn == EDITOR => bytes.extend_from_slice(&data),
                _ => {}
            }
        }
        let head = head.unwrap_or_else(|| panic!("no answer to {method} {path}"));
        (head, String::from_utf8(bytes).unwrap())
    }
}

/// The JSON of each `data:` line of an event stream, `[DONE]` left out.
fn data_lines(stream: &str) -> Vec<Value> {
    let data = stream
        .lines()
        .filter_map(|line| line.strip_prefix("data: "));
    data.filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn every_model_api_names_its_answer_and_each_is_then_completed_with_its_tokens() {
    let mut e = Echoed::new();
    let user = json!([{"role": "user", "content": "alpha beta gamma"}]);
    let mut ids = Vec::new();
    let mut named = |e: &mut Echoed, path: &str, body: Value| {
        let (head, answer) = e.ask("POST", path, "key", body);
        assert_eq!(head.status, 200, "{path}: {answer}");
        let id = head.header("x-completion-id").map(str::to_owned);
        let id = id.unwrap_or_else(|| panic!("{path} answered without x-completion-id"));
        ids.push(id.clone());
        (id, answer)
    };
    let whole = |answer: &str| serde_json::from_str::<Value>(answer).unwrap();
    for (path, body, prefix) in [
        (
            "/v1/chat/completions",
            json!({"model": "echo", "messages": user}),
            "chatcmpl-",
        ),
        (
            "/v1/responses",
            json!({"model": "echo", "input": "alpha beta gamma"}),
            "resp_",
        ),
        (
            "/v1/messages",
            json!({"model": "echo", "max_tokens": 50, "messages": user}),
            "msg_",
        ),
        (
            "/v1/completions",
            json!({"model": "echo", "prompt": "alpha beta gamma"}),
            "",
        ),
    ] {
        let (id, answer) = named(&mut e, path, body);
        assert_eq!(whole(&answer)["id"], id.as_str(), "{path}");
        assert!(id.starts_with(prefix), "{path}: {id}");
    }
    // Ollama's answers have no id: the header alone names them.
    for (path, body) in [
        (
            "/api/chat",
            json!({"model": "echo", "stream": false, "messages": user}),
        ),
        (
            "/api/generate",
            json!({"model": "echo", "stream": false, "prompt": "alpha beta gamma"}),
        ),
    ] {
        let (id, answer) = named(&mut e, path, body);
        assert!(!answer.contains(&id), "{path}: {answer}");
    }
    // Streamed: every chunk's id is the header's.
    let stream = json!({"model": "echo", "stream": true, "messages": user});
    let (id, answer) = named(&mut e, "/v1/chat/completions", stream);
    let chunks = data_lines(&answer);
    assert!(!chunks.is_empty() && chunks.iter().all(|c| c["id"] == id.as_str()));
    let stream = json!({"model": "echo", "stream": true, "input": "alpha beta gamma"});
    let (id, answer) = named(&mut e, "/v1/responses", stream);
    let first = data_lines(&answer).remove(0);
    assert_eq!(
        (&first["type"], &first["response"]["id"]),
        (&json!("response.created"), &json!(id))
    );
    let stream = json!({"model": "echo", "max_tokens": 50, "stream": true, "messages": user});
    let (id, answer) = named(&mut e, "/v1/messages", stream);
    let first = data_lines(&answer).remove(0);
    assert_eq!(
        (&first["type"], &first["message"]["id"]),
        (&json!("message_start"), &json!(id))
    );
    let (id, answer) = named(
        &mut e,
        "/api/chat",
        json!({"model": "echo", "messages": user}),
    );
    let last = answer
        .lines()
        .last()
        .map(|line| whole(line)["done"].clone());
    assert_eq!(last, Some(json!(true)));
    assert!(!answer.contains(&id));

    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    for (n, id) in ids.iter().enumerate() {
        let path = if n % 2 == 1 {
            format!("/v1/completions/{id}")
        } else {
            format!("/completions/{id}")
        };
        let (head, info) = e.ask("GET", &path, "key", Value::Null);
        assert_eq!(head.status, 200, "{path}: {info}");
        let info = whole(&info);
        assert_eq!(
            (
                &info["id"],
                &info["status"],
                &info["model"],
                &info["tokens"]
            ),
            (&json!(id), &json!("completed"), &json!("echo"), &json!(3)),
            "{info}"
        );
        assert!(
            info["agent"].as_str().is_some_and(|a| !a.is_empty()),
            "{info}"
        );
        assert!(info["created"].as_u64().is_some_and(|c| c > 0), "{info}");
    }
}

#[test]
fn an_unknown_answer_is_not_found_and_a_finished_one_cannot_be_cancelled() {
    let mut e = Echoed::new();
    for method in ["GET", "DELETE"] {
        for path in [
            "/completions/cmpl-never-made",
            "/v1/completions/chatcmpl-never-made",
        ] {
            let (head, body) = e.ask(method, path, "key", Value::Null);
            assert_eq!(head.status, 404, "{method} {path}: {body}");
        }
    }
    let chat = json!({"model": "echo", "messages": [{"role": "user", "content": "done already"}]});
    let (head, _) = e.ask("POST", "/v1/chat/completions", "key", chat);
    let id = head.header("x-completion-id").unwrap().to_owned();
    let path = format!("/completions/{id}");
    let (head, body) = e.ask("DELETE", &path, "key", Value::Null);
    assert_eq!(head.status, 400, "{body}");
    let (_, info) = e.ask("GET", &path, "key", Value::Null);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["status"], "completed");
    // An API key or the bridge token, nothing else.
    assert_eq!(e.ask("GET", &path, "sk-wrong", Value::Null).0.status, 401);
    assert_eq!(
        e.ask("DELETE", &path, "sk-wrong", Value::Null).0.status,
        401
    );
}

#[test]
fn a_streamed_message_has_every_event_of_anthropic_s_stream() {
    let mut e = Echoed::new();
    let body = json!({"model": "echo", "max_tokens": 10, "stream": true,
                      "messages": [{"role": "user", "content": "a b"}]});
    let (head, stream) = e.ask("POST", "/v1/messages", "key", body);
    assert_eq!(head.status, 200);
    let content_type = head.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    let events: Vec<&str> = stream
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(
        events[..3],
        ["message_start", "ping", "content_block_start"]
    );
    assert_eq!(
        events[events.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let deltas = events.iter().filter(|e| **e == "content_block_delta");
    assert_eq!(deltas.count(), 2, "{events:?}");
}
