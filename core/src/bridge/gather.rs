//! `GET /tools`, `/resources` and `/prompts` without `?server=` when
//! several servers are bridged: every server is asked (each as a client of
//! its own, as a REST call without a session is), and the lists are merged
//! into one answer, each entry tagged with the `server` it came from. A
//! server that cannot answer is named under `unavailable` with why; it
//! never costs the others their part.

use std::time::Instant;

use serde_json::{json, Value};

use super::registry::{Bridge, Pending, Reply};
use crate::http::Response;
use crate::mcp::Message;
use crate::provider::RequestId;

/// One merged listing on its way.
pub(super) struct Gather {
    to: RequestId,
    /// The list's member in each answer: `tools`, `resources`, `prompts`.
    key: String,
    /// Servers not heard from yet.
    waiting: usize,
    items: Vec<Value>,
    unavailable: Vec<Value>,
}

impl Bridge {
    /// Asks every server for its `key` list (`{key}/list`).
    pub(super) fn gather(&mut self, to: RequestId, key: &str, now: Instant) {
        self.next_request += 1;
        let number = self.next_request;
        let names: Vec<String> = self.specs.iter().map(|s| s.name.clone()).collect();
        self.gathers.insert(
            number,
            Gather {
                to,
                key: key.to_owned(),
                waiting: names.len(),
                items: Vec::new(),
                unavailable: Vec::new(),
            },
        );
        for (spec, server) in names.into_iter().enumerate() {
            let (child, client) = match self.ephemeral_client(spec, now) {
                Ok(ephemeral) => ephemeral,
                Err(full) => {
                    let error = json!({"error": {"message": full.message()}});
                    self.gathered(number, &server, Some(error));
                    continue;
                }
            };
            self.next_request += 1;
            let message = Message::Request {
                id: json!(self.next_request),
                method: format!("{key}/list"),
                params: Value::Null,
            };
            let wait = Pending {
                to,
                reply: Reply::Gathered {
                    gather: number,
                    server,
                },
                progress: None,
            };
            self.forward(child, client, message, Some(wait), now);
        }
    }

    /// `server`'s answer (`None`: not JSON) to gather `number`; the last
    /// one sends the merged listing.
    pub(super) fn gathered(&mut self, number: u64, server: &str, answer: Option<Value>) {
        let Some(gather) = self.gathers.get_mut(&number) else {
            return;
        };
        gather.waiting = gather.waiting.saturating_sub(1);
        let listed = answer
            .as_ref()
            .and_then(|a| a["result"][gather.key.as_str()].as_array());
        match listed {
            Some(entries) => gather.items.extend(entries.iter().map(|entry| {
                let mut entry = entry.clone();
                if let Some(fields) = entry.as_object_mut() {
                    fields.insert("server".into(), json!(server));
                }
                entry
            })),
            None => {
                let why = answer
                    .as_ref()
                    .and_then(|a| a["error"]["message"].as_str())
                    .unwrap_or("no list in its answer");
                tracing::warn!(server, "a merged listing goes without this server: {why}");
                gather
                    .unavailable
                    .push(json!({"server": server, "error": why}));
            }
        }
        if gather.waiting > 0 {
            return;
        }
        let Some(done) = self.gathers.remove(&number) else {
            return;
        };
        let mut body = json!({ done.key.as_str(): done.items });
        if !done.unavailable.is_empty() {
            body["unavailable"] = Value::Array(done.unavailable);
        }
        self.respond(done.to, Response::json(200, body.to_string()));
    }
}
