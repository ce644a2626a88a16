//! The built-in `echo` agent: answers with the last user message, one word
//! per chunk.
//!
//! Sans-IO like the rest of the core: it reads provider messages and returns
//! the frames to send back; the runtime carries them over a WebSocket or
//! in memory, and sleeps until [`EchoAgent::poll_timeout`].
//!
//! It produces only as fast as each editor reads: an answer's chunks are
//! made one at a time as they are polled, and an answer the provider
//! `pause`s makes none until it is resumed. So a huge prompt costs its text
//! once, never its whole answer at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::relink::Relink;
use crate::agent::to_agent::{Invoke, ToAgent};
use crate::time::later;
use crate::tokens::estimate_tokens;

/// Frames a driver should send in one go before it reads what the
/// provider sent (a `pause` among it takes effect then).
pub const BATCH: usize = 64;

/// The echo agent. Frames to send come out of [`EchoAgent::poll_transmit`];
/// with a chunk delay, an answer's frames fall due one delay apart; `cancel`
/// drops what is left of an answer, `pause` and `resume` hold and release it.
pub struct EchoAgent {
    delay: Duration,
    relink: Relink,
    /// Frames to send now, in order.
    ready: VecDeque<String>,
    /// Answers still being sent, oldest first.
    answering: Vec<Answering>,
}

/// One answer in progress: its text, and how far it has been sent.
struct Answering {
    id: String,
    text: String,
    /// Where the next word starts.
    at: usize,
    /// The next chunk's index.
    index: u64,
    /// Words allowed (`max_tokens`).
    limit: u64,
    prompt_tokens: u64,
    due: Instant,
    paused: bool,
}

impl Answering {
    /// The next chunk, and whether it was the last.
    fn next_frame(&mut self) -> (String, bool) {
        if self.text.is_empty() || self.limit == 0 {
            let finish = if self.text.is_empty() {
                "stop"
            } else {
                "length"
            };
            let frame = json!({"type": "model_stream_chunk", "id": self.id, "chunk_index": 0,
                   "delta": {"role": "assistant", "content": ""}, "finish_reason": finish,
                   "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": 0}});
            return (frame.to_string(), true);
        }
        let end = next_word_end(&self.text, self.at);
        let word = self.text.get(self.at..end).unwrap_or_default();
        let mut delta = json!({"content": word});
        if self.index == 0 {
            delta["role"] = json!("assistant");
        }
        let mut chunk = json!({"type": "model_stream_chunk", "id": self.id,
                               "chunk_index": self.index, "delta": delta, "finish_reason": null});
        self.at = end;
        self.index += 1;
        let done = end >= self.text.len();
        let last = done || self.index >= self.limit;
        if last {
            chunk["finish_reason"] = json!(if done { "stop" } else { "length" });
            chunk["usage"] =
                json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.index});
        }
        (chunk.to_string(), last)
    }
}

/// Which echo agent it is, as the dashboard and the control API show it.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub agent_id: &'static str,
    pub label: &'static str,
}

/// The one `serve` runs beside the server, in memory.
pub const BUILT_IN: Identity = Identity {
    agent_id: "echo-in-process",
    label: "Built-in echo agent",
};

/// `mcp-provider agent echo`, a process of its own over the agent link.
pub const REMOTE: Identity = Identity {
    agent_id: "echo",
    label: "Echo agent (agent echo)",
};

impl EchoAgent {
    /// The first frame polled registers `model` as `who`.
    pub fn new(model: &str, who: Identity, delay: Duration) -> Self {
        let relink = Relink::new(json!({
            "type": "register",
            "agent_id": who.agent_id,
            "label": who.label,
            "models": [model],
            "allowed_scopes": ["inference", "embedding"],
        }));
        EchoAgent {
            delay,
            ready: VecDeque::from([relink.register()]),
            relink,
            answering: Vec::new(),
        }
    }

    /// A frame from the provider.
    pub fn handle_message(&mut self, text: &str, now: Instant) {
        let Some(message) = self.relink.read(text, &mut self.ready) else {
            return;
        };
        match message {
            ToAgent::ModelInvoke(invoke) => self.start(invoke, now),
            ToAgent::Cancel { id } => self.answering.retain(|a| a.id != id),
            ToAgent::Pause { id } => self.hold(&id, true),
            ToAgent::Resume { id } => self.hold(&id, false),
            // It asks no questions, and what the rest say of its session
            // the relink kept.
            _ => {}
        }
    }

    /// Holds (`paused`) or releases answer `id`'s chunks.
    fn hold(&mut self, id: &str, paused: bool) {
        for a in self.answering.iter_mut().filter(|a| a.id == id) {
            a.paused = paused;
        }
    }

    /// The link dropped: its answers died with it (the provider failed
    /// their editors' requests), and the next link starts by asking for the
    /// session back.
    pub fn link_lost(&mut self) {
        self.answering.clear();
        self.ready.clear();
        self.ready.push_back(self.relink.register());
    }

    fn start(&mut self, invoke: Invoke, now: Instant) {
        let Invoke { id, payload, .. } = invoke;
        let payload = &payload;
        if payload["kind"] == "embedding" {
            self.ready.push_back(embeddings(&id, payload));
            return;
        }
        let (text, prompt_tokens) = if payload["kind"] == "completion" {
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
                .fold(0u64, u64::saturating_add);
            (last_user, tokens)
        };
        let limit = payload["parameters"]["max_tokens"]
            .as_u64()
            .unwrap_or(u64::MAX);
        self.answering.push(Answering {
            id,
            text,
            at: 0,
            index: 0,
            limit,
            prompt_tokens,
            due: later(now, self.delay),
            paused: false,
        });
    }

    /// The next frame to send at `now`, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<String> {
        if let Some(frame) = self.ready.pop_front() {
            return Some(frame);
        }
        let (i, _) = self
            .answering
            .iter()
            .enumerate()
            .filter(|(_, a)| a.due <= now && !a.paused)
            .min_by_key(|(_, a)| a.due)?;
        let answering = self.answering.get_mut(i)?;
        let (frame, last) = answering.next_frame();
        answering.due += self.delay;
        if last {
            self.answering.remove(i);
        }
        Some(frame)
    }

    /// The frames due at `now`, at most [`BATCH`]: what a driver sends in
    /// one go before it reads what the provider sent.
    pub fn poll_batch(&mut self, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| self.poll_transmit(now))
            .take(BATCH)
            .collect()
    }

    /// When the next frame falls due (an answer that is not paused).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.answering
            .iter()
            .filter(|a| !a.paused)
            .map(|a| a.due)
            .min()
    }
}

/// The whole answer to an embedding request.
fn embeddings(id: &str, payload: &Value) -> String {
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
    json!({"type": "model_result", "id": id, "status": "ok",
           "result": {"data": data, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 0}}})
    .to_string()
}

/// Where the word starting at `at` ends: past its trailing whitespace (and,
/// for the first word, past any leading whitespace too), as in
/// [`split_words`].
fn next_word_end(text: &str, at: usize) -> usize {
    let rest = text.get(at..).unwrap_or_default();
    let mut seen_word = false;
    let mut in_space = false;
    for (i, c) in rest.char_indices() {
        let space = c.is_whitespace();
        if !space && in_space && seen_word {
            return at + i;
        }
        seen_word |= !space;
        in_space = space;
    }
    text.len()
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
        let mut agent = EchoAgent::new("echo", REMOTE, Duration::ZERO);
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
        let mut agent = EchoAgent::new("echo", REMOTE, Duration::ZERO);
        agent.poll_transmit(now).unwrap();
        let invoke = json!({"type":"model_invoke","id":"inv-1","payload":{"kind":"completion",
            "prompt":"a b c","parameters":{"max_tokens":2}}});
        agent.handle_message(&invoke.to_string(), now);
        let out: Vec<String> = std::iter::from_fn(|| agent.poll_transmit(now)).collect();
        assert_eq!(out.len(), 2);
        assert!(out[1].contains(r#""finish_reason":"length""#));
    }

    fn contents(frames: &[String]) -> Vec<String> {
        frames
            .iter()
            .map(|f| {
                let v: Value = serde_json::from_str(f).unwrap();
                v["delta"]["content"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn chunks_made_one_at_a_time_are_the_words() {
        let now = Instant::now();
        for text in [
            "",
            "one",
            "  lead and  trail  ",
            "tab\tnew\nline",
            "ünï çødé  words ",
        ] {
            let mut agent = EchoAgent::new("echo", REMOTE, Duration::ZERO);
            agent.poll_transmit(now).unwrap();
            agent.handle_message(&invoke("a", text), now);
            let frames: Vec<String> = std::iter::from_fn(|| agent.poll_transmit(now)).collect();
            let words = contents(&frames);
            assert_eq!(words.concat(), text);
            if !text.is_empty() {
                assert_eq!(words, split_words(text));
            }
            assert!(frames.last().unwrap().contains(r#""finish_reason":"stop""#));
        }
    }

    #[test]
    fn a_paused_answer_waits_for_resume() {
        let now = Instant::now();
        let mut agent = EchoAgent::new("echo", REMOTE, Duration::ZERO);
        agent.poll_transmit(now).unwrap();
        agent.handle_message(&invoke("a", "one two three"), now);
        assert!(agent.poll_transmit(now).unwrap().contains("one"));
        agent.handle_message(r#"{"type":"pause","id":"a"}"#, now);
        assert_eq!(agent.poll_transmit(now), None);
        assert_eq!(agent.poll_timeout(), None, "nothing to wake up for");
        agent.handle_message(r#"{"type":"resume","id":"a"}"#, now);
        assert_eq!(agent.poll_timeout(), Some(now));
        let rest: Vec<String> = std::iter::from_fn(|| agent.poll_transmit(now)).collect();
        assert_eq!(contents(&rest), ["two ", "three"]);
    }

    fn invoke(id: &str, prompt: &str) -> String {
        json!({"type":"model_invoke","id":id,"payload":{"kind":"completion","prompt":prompt}})
            .to_string()
    }

    #[test]
    fn paced_answers_fall_due_one_delay_apart_and_stop_on_cancel() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut agent = EchoAgent::new("echo", REMOTE, ms(100));
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
