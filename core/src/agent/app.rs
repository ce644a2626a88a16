//! An agent whose answers come from the embedding application's own code.
//!
//! An application that embeds the provider answers editors in-process: it
//! takes [`AppRequest`]s and gives back text. This state machine speaks the
//! link protocol for it (register, pong, streamed chunks with their
//! indices, the final chunk with its usage, errors, cancels), so the
//! application never builds a frame. Sans-IO like the echo agent: frames
//! from the provider go in with [`AppAgent::handle_message`], frames to it
//! come out of [`AppAgent::poll_transmit`].

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use crate::agent::echo::text_of;
use crate::agent::message::to_agent;
use crate::agent::relink::Relink;
use crate::agent::to_agent::{Invoke, ToAgent};
use crate::tokens::estimate_tokens;

/// One request for the application to answer.
#[derive(Debug, Clone)]
pub struct AppRequest {
    /// The invocation this answers: pass it back with each piece of text.
    pub id: String,
    /// The model the editor asked for (one the agent registered).
    pub model: String,
    /// The conversation, oldest first; a plain completion's prompt is one
    /// `user` message.
    pub messages: Vec<AppMessage>,
}

/// One message of a conversation, its content flattened to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    pub role: String,
    pub text: String,
}

impl AppRequest {
    /// The text of the last `user` message (empty when there is none).
    pub fn last_user_text(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.text.as_str())
    }
}

/// An answer being streamed.
struct Answer {
    /// The next chunk's index.
    index: u64,
    prompt_tokens: u64,
}

/// The link protocol for an application's agent.
pub struct AppAgent {
    /// Its `register`, and its session as the provider last told it.
    relink: Relink,
    ready: VecDeque<String>,
    requests: VecDeque<AppRequest>,
    /// Answers begun and not finished nor cancelled.
    answering: HashMap<String, Answer>,
}

impl AppAgent {
    /// The first frame polled registers `models` under `agent_id`.
    pub fn new(agent_id: &str, label: &str, models: &[&str]) -> Self {
        let relink = Relink::new(json!({
            "type": "register",
            "agent_id": agent_id,
            "label": label,
            "models": models,
            "allowed_scopes": ["inference"],
        }));
        AppAgent {
            ready: VecDeque::from([relink.register()]),
            relink,
            requests: VecDeque::new(),
            answering: HashMap::new(),
        }
    }

    /// A frame from the provider.
    pub fn handle_message(&mut self, text: &str) {
        let Some(message) = self.relink.read(text, &mut self.ready) else {
            return;
        };
        match message {
            ToAgent::ModelInvoke(invoke) => self.start(invoke),
            ToAgent::Cancel { id } => {
                self.answering.remove(&id);
                self.requests.retain(|r| r.id != id);
            }
            // The application writes its answer as it likes: one whose
            // editor falls behind is held by the provider (and cut past
            // its bound), not here. It asks no questions.
            _ => {}
        }
    }

    fn start(&mut self, invoke: Invoke) {
        let Invoke {
            id,
            model_meta,
            payload,
            ..
        } = invoke;
        if payload["kind"] == "embedding" {
            let why = "this agent does not make embeddings";
            let error = to_agent::error(Some(&id), why, "invalid_request");
            self.ready.push_back(error);
            return;
        }
        let messages: Vec<AppMessage> = if payload["kind"] == "completion" {
            vec![AppMessage {
                role: "user".to_owned(),
                text: text_of(&payload["prompt"]),
            }]
        } else {
            payload["messages"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|m| AppMessage {
                    role: m["role"].as_str().unwrap_or_default().to_owned(),
                    text: text_of(&m["content"]),
                })
                .collect()
        };
        let prompt_tokens = messages
            .iter()
            .map(|m| estimate_tokens(&m.text))
            .fold(0u64, u64::saturating_add);
        let answer = Answer {
            index: 0,
            prompt_tokens,
        };
        self.answering.insert(id.clone(), answer);
        self.requests.push_back(AppRequest {
            id,
            model: model_meta.model,
            messages,
        });
    }

    /// The next request to answer.
    pub fn poll_request(&mut self) -> Option<AppRequest> {
        self.requests.pop_front()
    }

    /// Whether answer `id` is still wanted: false once its editor went away
    /// (the provider sent `cancel`) or it was finished.
    pub fn is_open(&self, id: &str) -> bool {
        self.answering.contains_key(id)
    }

    /// The next piece of answer `id`'s text; dropped if it is not open.
    pub fn send(&mut self, id: &str, text: &str) {
        let Some(answer) = self.answering.get_mut(id) else {
            return;
        };
        let mut delta = json!({"content": text});
        if answer.index == 0 {
            delta["role"] = json!("assistant");
        }
        let chunk = json!({"type": "model_stream_chunk", "id": id,
                           "chunk_index": answer.index, "delta": delta, "finish_reason": null});
        answer.index += 1;
        self.ready.push_back(chunk.to_string());
    }

    /// Ends answer `id`: its editor gets the end of the stream and the
    /// usage.
    pub fn finish(&mut self, id: &str) {
        let Some(answer) = self.answering.remove(id) else {
            return;
        };
        let delta = match answer.index {
            0 => json!({"role": "assistant", "content": ""}),
            _ => json!({"content": ""}),
        };
        let last = json!({"type": "model_stream_chunk", "id": id, "chunk_index": answer.index,
                          "delta": delta, "finish_reason": "stop",
                          "usage": {"prompt_tokens": answer.prompt_tokens,
                                    "completion_tokens": answer.index}});
        self.ready.push_back(last.to_string());
    }

    /// Ends answer `id` with an error its editor sees.
    pub fn fail(&mut self, id: &str, message: &str) {
        if self.answering.remove(id).is_some() {
            let error = to_agent::error(Some(id), message, "internal");
            self.ready.push_back(error);
        }
    }

    /// The next frame to send to the provider.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.ready.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn frames(agent: &mut AppAgent) -> Vec<Value> {
        std::iter::from_fn(|| agent.poll_transmit())
            .map(|f| serde_json::from_str(&f).unwrap())
            .collect()
    }

    fn invoke(id: &str, payload: Value) -> String {
        to_agent::invoke(id, "s1", "shout", &payload, None)
    }

    #[test]
    fn registers_then_streams_an_answer_with_indices_and_usage() {
        let mut agent = AppAgent::new("app", "App", &["shout"]);
        let register = frames(&mut agent);
        assert_eq!(register[0]["type"], "register");
        assert_eq!(register[0]["models"], json!(["shout"]));
        let payload = json!({"kind": "chat", "messages": [
            {"role": "system", "content": "be loud"},
            {"role": "user", "content": [{"type": "text", "text": "hello there"}]}]});
        agent.handle_message(&invoke("inv-1", payload));
        let request = agent.poll_request().unwrap();
        assert_eq!(request.model, "shout");
        assert_eq!(request.last_user_text(), "hello there");
        assert_eq!(request.messages.len(), 2);
        agent.send("inv-1", "HELLO ");
        agent.send("inv-1", "THERE");
        agent.finish("inv-1");
        let sent = frames(&mut agent);
        let indices: Vec<_> = sent.iter().map(|f| f["chunk_index"].as_u64()).collect();
        assert_eq!(indices, [Some(0), Some(1), Some(2)]);
        assert_eq!(
            sent[0]["delta"],
            json!({"role": "assistant", "content": "HELLO "})
        );
        assert_eq!(sent[2]["finish_reason"], "stop");
        assert_eq!(sent[2]["usage"]["completion_tokens"], 2);
        assert!(!agent.is_open("inv-1"));
    }

    #[test]
    fn a_cancelled_answer_sends_nothing_more() {
        let mut agent = AppAgent::new("app", "App", &["shout"]);
        frames(&mut agent);
        agent.handle_message(&invoke(
            "inv-2",
            json!({"kind": "completion", "prompt": "hi"}),
        ));
        assert_eq!(agent.poll_request().unwrap().last_user_text(), "hi");
        agent.handle_message(&to_agent::cancel("inv-2"));
        agent.send("inv-2", "late");
        agent.finish("inv-2");
        agent.fail("inv-2", "late");
        assert!(frames(&mut agent).is_empty());
    }

    #[test]
    fn embeddings_pings_and_failures_are_answered_in_the_protocol() {
        let mut agent = AppAgent::new("app", "App", &["shout"]);
        frames(&mut agent);
        agent.handle_message(&invoke("inv-3", json!({"kind": "embedding", "input": "x"})));
        agent.handle_message(&to_agent::ping());
        agent.handle_message(&invoke("inv-4", json!({"kind": "chat", "messages": []})));
        assert!(agent
            .poll_request()
            .is_some_and(|r| r.last_user_text().is_empty()));
        agent.fail("inv-4", "no words");
        let sent = frames(&mut agent);
        assert_eq!(sent[0]["type"], "error");
        assert_eq!(sent[0]["id"], "inv-3");
        assert_eq!(sent[1]["type"], "pong");
        assert_eq!(sent[2]["error"]["message"], "no words");
        agent.handle_message("not json");
        assert!(agent.poll_transmit().is_none());
    }
}
