//! The built-in `echo` agent: answers with the last user message, one word
//! per chunk.
//!
//! Sans-IO like the rest of the core: it reads provider messages and returns
//! the frames to send back; the runtime carries them over a WebSocket or
//! in memory, and applies any delay between chunks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::tokens::estimate_tokens;

/// The echo agent. Frames to send come out of [`EchoAgent::poll_transmit`];
/// with a chunk delay, an answer's frames fall due one delay apart and a
/// `cancel` drops what is left of it.
pub struct EchoAgent {
    delay: Duration,
    /// Frames to send now, in order.
    ready: VecDeque<String>,
    /// Answers still being paced, oldest first.
    paced: Vec<Paced>,
}

struct Paced {
    id: String,
    due: Instant,
    frames: VecDeque<String>,
}

impl EchoAgent {
    /// The first frame polled registers `model` under `agent_id`.
    pub fn new(model: &str, agent_id: &str, delay: Duration) -> Self {
        let register = json!({
            "type": "register",
            "agent_id": agent_id,
            "label": "Built-in echo agent",
            "models": [model],
            "allowed_scopes": ["inference", "embedding"],
        })
        .to_string();
        EchoAgent {
            delay,
            ready: VecDeque::from([register]),
            paced: Vec::new(),
        }
    }

    /// A frame from the provider.
    pub fn handle_message(&mut self, text: &str, now: Instant) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let id = msg["id"].as_str().unwrap_or_default();
        match msg["type"].as_str() {
            Some("ping") => self.ready.push_back(r#"{"type":"pong"}"#.to_owned()),
            Some("model_invoke") => {
                let mut frames = Vec::new();
                answer(&msg, &mut frames);
                if self.delay.is_zero() {
                    self.ready.extend(frames);
                } else {
                    self.paced.push(Paced {
                        id: id.to_owned(),
                        due: now + self.delay,
                        frames: frames.into(),
                    });
                }
            }
            Some("cancel") => self.paced.retain(|p| p.id != id),
            _ => {}
        }
    }

    /// The next frame to send at `now`, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<String> {
        if let Some(frame) = self.ready.pop_front() {
            return Some(frame);
        }
        let (i, _) = self
            .paced
            .iter()
            .enumerate()
            .filter(|(_, p)| p.due <= now)
            .min_by_key(|(_, p)| p.due)?;
        let paced = &mut self.paced[i];
        let frame = paced.frames.pop_front();
        paced.due += self.delay;
        if paced.frames.is_empty() {
            self.paced.remove(i);
        }
        frame
    }

    /// When the next paced frame falls due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.paced.iter().map(|p| p.due).min()
    }
}

fn answer(msg: &Value, out: &mut Vec<String>) {
    let id = msg["id"].as_str().unwrap_or_default();
    let payload = &msg["payload"];
    match payload["kind"].as_str() {
        Some("embedding") => {
            let inputs: Vec<String> = match &payload["input"] {
                Value::Array(items) => items.iter().map(text_of).collect(),
                other => vec![text_of(other)],
            };
            let data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"index": i, "embedding": embed(s)}))
                .collect();
            let prompt_tokens: u64 = inputs.iter().map(|s| estimate_tokens(s)).sum();
            out.push(
                json!({"type": "model_result", "id": id, "status": "ok",
                       "result": {"data": data, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0}}})
                .to_string(),
            );
        }
        kind => {
            let (text, prompt_tokens) = if kind == Some("completion") {
                let prompt = text_of(&payload["prompt"]);
                let tokens = estimate_tokens(&prompt);
                (prompt, tokens)
            } else {
                let messages = payload["messages"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let last_user = messages
                    .iter()
                    .rev()
                    .find(|m| m["role"] == "user")
                    .map(|m| text_of(&m["content"]))
                    .unwrap_or_default();
                let tokens = messages
                    .iter()
                    .map(|m| estimate_tokens(&text_of(&m["content"])))
                    .sum();
                (last_user, tokens)
            };
            let limit = payload["parameters"]["max_tokens"]
                .as_u64()
                .unwrap_or(u64::MAX);
            let words = split_words(&text);
            let (words, finish) = if words.len() as u64 > limit {
                (&words[..limit as usize], "length")
            } else {
                (&words[..], "stop")
            };
            let last = words.len().saturating_sub(1);
            for (i, word) in words.iter().enumerate() {
                let mut delta = json!({"content": word});
                if i == 0 {
                    delta["role"] = json!("assistant");
                }
                let mut chunk = json!({"type": "model_stream_chunk", "id": id, "chunk_index": i, "delta": delta, "finish_reason": null});
                if i == last {
                    chunk["finish_reason"] = json!(finish);
                    chunk["usage"] =
                        json!({"prompt_tokens": prompt_tokens, "completion_tokens": words.len()});
                }
                out.push(chunk.to_string());
            }
            if words.is_empty() {
                out.push(
                    json!({"type": "model_stream_chunk", "id": id, "chunk_index": 0,
                           "delta": {"role": "assistant", "content": ""}, "finish_reason": finish,
                           "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0}})
                    .to_string(),
                );
            }
        }
    }
}

/// The text of a message content: a string, or the text parts of an array.
pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.as_str().or_else(|| p["text"].as_str()))
            .collect(),
        _ => String::new(),
    }
}

/// Splits text into words, each keeping the whitespace after it (and the
/// first also what comes before it), so the pieces concatenate to the input.
pub fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_space = true;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if !space && in_space && seen_word {
            pieces.push(&text[start..i]);
            start = i;
        }
        if !space {
            seen_word = true;
        }
        in_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A small deterministic embedding: letter-class frequencies, normalised.
fn embed(text: &str) -> Vec<f64> {
    let mut v = [0f64; 8];
    for b in text.bytes() {
        v[(b % 8) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1.0);
    v.iter().map(|x| x / norm).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_concatenate_back_to_the_text() {
        for text in [
            "",
            "one",
            "  lead and  trail  ",
            "tab\tnew\nline",
            "ünï çødé words",
        ] {
            assert_eq!(split_words(text).concat(), text);
        }
        assert_eq!(
            split_words("Hello  big world"),
            ["Hello  ", "big ", "world"]
        );
        assert_eq!(split_words(" x y"), [" x ", "y"]);
    }

    #[test]
    fn answers_a_chat_invoke_with_chunks_and_usage() {
        let now = Instant::now();
        let mut agent = EchoAgent::new("echo", "echo-1", Duration::ZERO);
        let invoke = json!({"type":"model_invoke","id":"inv-1","payload":{"kind":"chat",
            "messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},
                        {"role":"user","content":[{"type":"text","text":"hi there"}]}],
            "parameters":{"stream":true}}});
        let register: Value = serde_json::from_str(&agent.poll_transmit(now).unwrap()).unwrap();
        assert_eq!(register["type"], "register");
        assert_eq!(register["models"][0], "echo");
        agent.handle_message(&invoke.to_string(), now);
        let frames: Vec<Value> = std::iter::from_fn(|| agent.poll_transmit(now))
            .map(|s| serde_json::from_str(&s).unwrap())
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0]["delta"]["content"], "hi ");
        assert_eq!(frames[0]["delta"]["role"], "assistant");
        assert_eq!(frames[1]["chunk_index"], 1);
        assert_eq!(frames[1]["finish_reason"], "stop");
        assert_eq!(frames[1]["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn max_tokens_cuts_with_length() {
        let now = Instant::now();
        let mut agent = EchoAgent::new("echo", "echo-1", Duration::ZERO);
        agent.poll_transmit(now).unwrap();
        let invoke = json!({"type":"model_invoke","id":"inv-1","payload":{"kind":"completion",
            "prompt":"a b c","parameters":{"max_tokens":2}}});
        agent.handle_message(&invoke.to_string(), now);
        let out: Vec<String> = std::iter::from_fn(|| agent.poll_transmit(now)).collect();
        assert_eq!(out.len(), 2);
        assert!(out[1].contains(r#""finish_reason":"length""#));
    }

    fn invoke(id: &str, prompt: &str) -> String {
        json!({"type":"model_invoke","id":id,"payload":{"kind":"completion","prompt":prompt}})
            .to_string()
    }

    #[test]
    fn paced_answers_fall_due_one_delay_apart_and_stop_on_cancel() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut agent = EchoAgent::new("echo", "echo-1", ms(100));
        agent.poll_transmit(t0).unwrap();
        agent.handle_message(&invoke("a", "one two three"), t0);
        agent.handle_message(&invoke("b", "x y"), t0 + ms(50));
        agent.handle_message(r#"{"type":"ping"}"#, t0 + ms(60));
        assert_eq!(
            agent.poll_transmit(t0 + ms(60)).unwrap(),
            r#"{"type":"pong"}"#
        );
        assert_eq!(agent.poll_transmit(t0 + ms(99)), None);
        assert_eq!(agent.poll_timeout(), Some(t0 + ms(100)));
        assert!(agent.poll_transmit(t0 + ms(100)).unwrap().contains("one"));
        assert_eq!(agent.poll_timeout(), Some(t0 + ms(150)));
        assert!(agent
            .poll_transmit(t0 + ms(150))
            .unwrap()
            .contains(r#""x "#));
        agent.handle_message(r#"{"type":"cancel","id":"a"}"#, t0 + ms(160));
        assert!(agent
            .poll_transmit(t0 + ms(250))
            .unwrap()
            .contains(r#""y""#));
        assert_eq!(agent.poll_transmit(t0 + ms(1000)), None);
        assert_eq!(agent.poll_timeout(), None);
    }
}
