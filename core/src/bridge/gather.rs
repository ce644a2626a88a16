//! One listing asked of several servers at once and answered as one: the
//! REST API's `GET /tools` (`/resources`, `/prompts`) without `?server=`,
//! and every `…/list` of the aggregate endpoint (`aggregate`). Each server
//! is asked through a client given by the caller (a session's member, or a
//! client of its own for this listing); the parts are put together in the
//! servers' configured order once the last has come, or at
//! [`LISTING_WAIT`]. A server that cannot answer, or not in time, is left
//! out with a log line: it never costs the others their part.
//!
//! A shared child's whole list (one page) is kept, and given again without
//! asking until the child restarts or says its list changed: a client
//! listing tools across ten servers is then answered at once.

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

/// The largest answer kept for listing again (all servers' lists together
/// stay within servers × 4 × this).
const KEPT_LISTING: usize = 256 * 1024;

/// A server's whole list, as its shared child answered it.
pub(super) struct Listed {
    child: ChildId,
    /// The child's [`super::BridgedServer::lists`] when it answered.
    lists: u64,
    answer: Value,
}

/// One server's part of a listing: its answer, or why there is none.
pub(super) type Part = (String, Result<Value, String>);

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
    /// Each server's answer, or why it has none.
    pub(super) parts: Vec<Part>,
    /// The servers asked for their first page: a whole list may be kept.
    first_pages: BTreeSet<String>,
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
    /// Asks every source for its `key` list; `parts` are those known
    /// already (kept, or why a server could not be asked).
    pub(super) fn gather(
        &mut self,
        to: RequestId,
        key: &'static str,
        sources: Vec<Source>,
        parts: Vec<Part>,
        finish: Finish,
        now: Instant,
    ) {
        self.next_request += 1;
        let number = self.next_request;
        let waiting = sources.iter().map(|s| s.server.clone()).collect();
        let first_pages = sources
            .iter()
            .filter(|s| s.params["cursor"].is_null())
            .map(|s| s.server.clone())
            .collect();
        let gather = Gather {
            to,
            key,
            waiting,
            parts,
            first_pages,
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

    /// The kept lists of `key` for the first pages of `asks`, taken out of
    /// it: those whose shared child still runs and has not said its list
    /// changed since.
    pub(super) fn kept_parts(&self, key: &str, asks: &mut Vec<(usize, Value)>) -> Vec<Part> {
        let mut parts = Vec::new();
        asks.retain(|(spec, params)| {
            let Some(server) = self.specs.get(*spec).map(|s| &s.name) else {
                return true;
            };
            let current = self
                .listings
                .get(&(server.clone(), key.to_owned()))
                .filter(|kept| {
                    self.shared.get(server) == Some(&kept.child)
                        && self.child(kept.child).is_some_and(|c| {
                            c.state() == super::ChildState::Running && c.lists() == kept.lists
                        })
                });
            match current {
                Some(kept) if params["cursor"].is_null() => {
                    parts.push((server.clone(), Ok(kept.answer.clone())));
                    false
                }
                _ => true,
            }
        });
        parts
    }

    /// A client of its own on each server of `asks`, asking with its
    /// params: the sources of a listing, and the servers that could not
    /// take one more client, with why.
    pub(super) fn ephemeral_sources(
        &mut self,
        asks: Vec<(usize, Value)>,
        now: Instant,
    ) -> (Vec<Source>, Vec<Part>) {
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
                Err(full) => missing.push((server, Err(full.message()))),
            }
        }
        (sources, missing)
    }

    /// `server`'s answer to gather `number` from `child` (`None` in the
    /// answer: not JSON; `size`: its length as written); the last one
    /// sends the listing. A whole first page of a shared child is kept.
    pub(super) fn gathered(&mut self, number: u64, part: Option<Answered>) {
        if let Some(answered) = part {
            let Some(gather) = self.gathers.get_mut(&number) else {
                return;
            };
            if !gather.waiting.remove(answered.server) {
                return;
            }
            let key = gather.key;
            let first_page = gather.first_pages.contains(answered.server);
            let part = match &answered.answer {
                Some(answer) if answer["result"][key].is_array() => Ok(answer.clone()),
                answer => Err(answer
                    .as_ref()
                    .and_then(|a| a["error"]["message"].as_str())
                    .unwrap_or("no list in its answer")
                    .to_owned()),
            };
            gather.parts.push((answered.server.to_owned(), part));
            if first_page {
                self.keep_listing(key, answered);
            }
        }
        if self
            .gathers
            .get(&number)
            .is_some_and(|g| g.waiting.is_empty())
        {
            self.send_gathered(number);
        }
    }

    /// Keeps a first page of `key` for listing again, when it is a shared
    /// child's whole list, not too large.
    fn keep_listing(&mut self, key: &str, answered: Answered) {
        let Some(answer) = answered.answer else {
            return;
        };
        let whole = answer["result"][key].is_array() && answer["result"]["nextCursor"].is_null();
        let shared = self.shared.get(answered.server) == Some(&answered.child);
        let Some(child) = self.children.get(&answered.child) else {
            return;
        };
        if whole && shared && answered.size <= KEPT_LISTING {
            let listed = Listed {
                child: answered.child,
                lists: child.lists(),
                answer,
            };
            let at = (answered.server.to_owned(), key.to_owned());
            self.listings.insert(at, listed);
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

/// One server's answer to a listing, as `Bridge::answer` has it.
pub(super) struct Answered<'a> {
    pub(super) server: &'a str,
    pub(super) child: ChildId,
    pub(super) answer: Option<Value>,
    pub(super) size: usize,
}

/// The REST API's merged listing: each entry tagged with its `server`.
fn tagged(key: &str, parts: Vec<Part>) -> Value {
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
