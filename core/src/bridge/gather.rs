//! One listing asked of several servers at once and answered as one: the
//! REST API's `GET /tools` (`/resources`, `/prompts`) without `?server=`,
//! and every `…/list` of the aggregate endpoint (`aggregate`). Each server
//! is asked through a client given by the caller (a session's member, or a
//! client of its own for this listing); the parts are put together in the
//! servers' configured order once the last has come, or at
//! [`LISTING_WAIT`]. A server that cannot answer, or not in time, is left
//! out with a log line: it never costs the others their part.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::aggregate::Page;
use super::registry::{Bridge, Pending, Reply};
use super::{ChildId, ClientId};
use crate::http::Response;
use crate::mcp::Message;
use crate::provider::RequestId;

/// How long a listing waits for its slowest server before it is sent
/// without that server's part.
pub(super) const LISTING_WAIT: Duration = Duration::from_secs(5);

/// Where one server's part is asked.
pub(super) struct Source {
    pub(super) server: String,
    pub(super) child: ChildId,
    pub(super) client: ClientId,
    /// A client made for this listing alone: it ends with its answer.
    pub(super) ephemeral: bool,
    /// The `…/list` request's params for this server (its own cursor).
    pub(super) params: Value,
}

/// How the parts become the answer.
pub(super) enum Finish {
    /// The REST API's: every entry tagged with its `server`, the servers
    /// that could not answer named under `unavailable`.
    Tagged,
    /// A page of the aggregate endpoint's listing.
    Merged(Page),
}

/// One listing on its way.
pub(super) struct Gather {
    pub(super) to: RequestId,
    /// The list's member in each answer: `tools`, `resources`,
    /// `resourceTemplates`, `prompts`.
    pub(super) key: &'static str,
    /// Servers not heard from yet.
    waiting: BTreeSet<String>,
    /// Each server's answer (`None`: it could not give one, and why).
    pub(super) parts: Vec<(String, Result<Value, String>)>,
    deadline: Instant,
    pub(super) finish: Finish,
}

/// The request that asks for a listing's `key`.
pub(super) fn list_method(key: &str) -> String {
    match key {
        "resourceTemplates" => "resources/templates/list".to_owned(),
        key => format!("{key}/list"),
    }
}

impl Bridge {
    /// Asks every source for its `key` list; `missing` are the servers
    /// that could not be asked, with why.
    pub(super) fn gather(
        &mut self,
        to: RequestId,
        key: &'static str,
        sources: Vec<Source>,
        missing: Vec<(String, String)>,
        finish: Finish,
        now: Instant,
    ) {
        self.next_request += 1;
        let number = self.next_request;
        let waiting = sources.iter().map(|s| s.server.clone()).collect();
        let parts = missing.into_iter().map(|(s, why)| (s, Err(why))).collect();
        let gather = Gather {
            to,
            key,
            waiting,
            parts,
            deadline: now + LISTING_WAIT,
            finish,
        };
        self.gathers.insert(number, gather);
        for source in sources {
            self.next_request += 1;
            let message = Message::Request {
                id: json!(self.next_request),
                method: list_method(key),
                params: source.params,
            };
            let wait = Pending {
                to,
                reply: Reply::Gathered {
                    gather: number,
                    server: source.server,
                    ephemeral: source.ephemeral,
                },
                progress: None,
            };
            self.forward(source.child, source.client, message, Some(wait), now);
        }
        self.gathered(number, None);
    }

    /// A client of its own on each server of `asks`, asking with its
    /// params: the sources of a listing, and the servers that could not
    /// take one more client, with why.
    pub(super) fn ephemeral_sources(
        &mut self,
        asks: Vec<(usize, Value)>,
        now: Instant,
    ) -> (Vec<Source>, Vec<(String, String)>) {
        let mut sources = Vec::new();
        let mut missing = Vec::new();
        for (spec, params) in asks {
            let Some(server) = self.specs.get(spec).map(|s| s.name.clone()) else {
                continue;
            };
            match self.ephemeral_client(spec, now) {
                Ok((child, client)) => sources.push(Source {
                    server,
                    child,
                    client,
                    ephemeral: true,
                    params,
                }),
                Err(full) => missing.push((server, full.message())),
            }
        }
        (sources, missing)
    }

    /// `server`'s answer to gather `number` (`None` in the answer: not
    /// JSON); the last one sends the listing.
    pub(super) fn gathered(&mut self, number: u64, part: Option<(&str, Option<Value>)>) {
        let Some(gather) = self.gathers.get_mut(&number) else {
            return;
        };
        if let Some((server, answer)) = part {
            if !gather.waiting.remove(server) {
                return;
            }
            let key = gather.key;
            let part = match answer {
                Some(answer) if answer["result"][key].is_array() => Ok(answer),
                answer => Err(answer
                    .as_ref()
                    .and_then(|a| a["error"]["message"].as_str())
                    .unwrap_or("no list in its answer")
                    .to_owned()),
            };
            gather.parts.push((server.to_owned(), part));
        }
        if gather.waiting.is_empty() {
            self.send_gathered(number);
        }
    }

    /// Listings whose slowest servers are past [`LISTING_WAIT`] go
    /// without them.
    pub(super) fn expire_gathers(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .gathers
            .iter()
            .filter(|(_, g)| g.deadline <= now)
            .map(|(n, _)| *n)
            .collect();
        for number in late {
            if let Some(gather) = self.gathers.get_mut(&number) {
                let why = format!("no answer within {} s", LISTING_WAIT.as_secs());
                let late = std::mem::take(&mut gather.waiting);
                gather
                    .parts
                    .extend(late.into_iter().map(|server| (server, Err(why.clone()))));
            }
            self.send_gathered(number);
        }
    }

    /// When the earliest listing gives up on its slowest server.
    pub(super) fn gathers_deadline(&self) -> Option<Instant> {
        self.gathers.values().map(|g| g.deadline).min()
    }

    fn send_gathered(&mut self, number: u64) {
        let Some(mut done) = self.gathers.remove(&number) else {
            return;
        };
        let order = |server: &str| self.specs.iter().position(|s| s.name == server);
        done.parts.sort_by_key(|(server, _)| order(server));
        for (server, part) in &done.parts {
            if let Err(why) = part {
                tracing::warn!(
                    server,
                    "a listing of several servers goes without this one: {why}"
                );
            }
        }
        match done.finish {
            Finish::Tagged => {
                let body = tagged(done.key, done.parts);
                self.respond(done.to, Response::json(200, body.to_string()));
            }
            Finish::Merged(page) => self.send_page(done.to, done.key, page, done.parts),
        }
    }
}

/// The REST API's merged listing: each entry tagged with its `server`.
fn tagged(key: &str, parts: Vec<(String, Result<Value, String>)>) -> Value {
    let mut items = Vec::new();
    let mut unavailable = Vec::new();
    for (server, part) in parts {
        match part {
            Ok(mut answer) => {
                let entries = answer["result"][key].as_array_mut().map(std::mem::take);
                items.extend(entries.unwrap_or_default().into_iter().map(|mut entry| {
                    if let Some(fields) = entry.as_object_mut() {
                        fields.insert("server".into(), json!(server));
                    }
                    entry
                }));
            }
            Err(why) => unavailable.push(json!({"server": server, "error": why})),
        }
    }
    let mut body = json!({ key: items });
    if !unavailable.is_empty() {
        body["unavailable"] = Value::Array(unavailable);
    }
    body
}
