//! One list asked of several servers at once (or of one) and made into
//! one answer, as the gather's [`Finish`] says:
//!
//! - the REST API's `GET /tools` (`/resources`, `/prompts`) without
//!   `?server=`: every entry tagged with its `server`;
//! - every `…/list` of the aggregate endpoint (`aggregate`): a page of
//!   the merged list;
//! - `GET /openapi.json` and `/openapi/{name}.json`: the OpenAPI document
//!   of the tools (`openapi`);
//! - `POST /tools/{server}/{tool}`: the tool called, once it is seen in
//!   its server's list.
//!
//! Each server is asked through a client given by the caller (a session's
//! member, or a client of its own for this gather); the parts are put
//! together in the servers' configured order once the last has come, or
//! at the gather's deadline. A server that cannot answer, or not in time,
//! is left out with a log line: it never costs the others their part.
//!
//! The document and the call read a list page after page (`nextCursor`),
//! up to [`MAX_PAGES`], since a tool on a later page is as real as one on
//! the first; a listing is a page, as a listing of one server is.
//!
//! A shared child's whole list (one page) is kept, and given again without
//! asking until the child restarts or says its list changed: a client
//! listing tools across ten servers is then answered at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::{json, Value};

use super::listing::{entries, listed, Finish, Source, MAX_PAGES};
use super::Bridge;
use crate::bridge::common::{Answered, Reply};
use crate::bridge::{ChildId, ChildState, ClientId};
use crate::http::Response;
use crate::provider::RequestId;

const MAX_LIST_BYTES: usize = 16 << 20;

/// The largest answer kept for listing again (all servers' lists together
/// stay within servers × 4 × this).
const KEPT_LISTING: usize = 256 * 1024;

/// Late parts waited for at most: past it the oldest is forgotten (its
/// session then learns of that server's list when it lists again).
const MAX_LATE: usize = 1024;

/// An aggregate session's listing that went without some servers' parts:
/// when one of them comes after all, the session is told its list
/// changed, so its client lists again and gets it (kept, at once). A
/// server still starting is the usual late one: its first listing can
/// take longer than [`LISTING_WAIT`].
pub(super) struct Late {
    session: String,
    key: &'static str,
    /// The late servers asked for their first page: a whole one is kept.
    first_pages: BTreeSet<String>,
}

/// A server's whole list, as its shared child answered it.
pub(super) struct Listed {
    child: ChildId,
    /// The child's [`super::BridgedServer::lists`] when it answered.
    lists: u64,
    answer: Value,
}

impl Listed {
    /// Which answer it is: its child, and that child's count of lists.
    pub(super) fn version(&self) -> (ChildId, u64) {
        (self.child, self.lists)
    }
}

/// One server's part of a listing: its answer, or why there is none.
pub(super) type Part = (String, Result<Value, String>);

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
    /// The servers asked for their first page and not answered yet: a
    /// whole list may be kept.
    first_pages: BTreeSet<String>,
    /// Pages read so far of each server that had more, and their bytes.
    read: BTreeMap<String, (usize, usize)>,
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
        let number = self.registry.next_number();
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
            read: BTreeMap::new(),
            deadline: crate::time::later(now, finish.wait(self.registry.limits().startup_timeout)),
            finish,
        };
        self.gathers.insert(number, gather);
        for source in sources {
            let reply = Reply::Gathered {
                gather: number,
                server: source.server,
                ephemeral: source.ephemeral,
            };
            let asker = (source.child, source.client);
            self.registry
                .ask(asker, to, &list_method(key), source.params, reply, now);
        }
        self.gathered(number, None, now);
    }

    /// Asks each of `specs` (indices of [`Bridge::specs`]) for its whole
    /// `key` list as a client of its own (kept lists given at once).
    /// `ask` is what each server is asked with (`Value::Null`, or the
    /// `_meta` of the request's span: see [`Bridge::traced_ask`]).
    pub(super) fn gather_anew(
        &mut self,
        to: RequestId,
        key: &'static str,
        specs: Vec<usize>,
        ask: Value,
        finish: Finish,
        now: Instant,
    ) {
        let mut asks = specs.into_iter().map(|spec| (spec, ask.clone())).collect();
        let mut parts = self.kept_parts(key, &mut asks, false);
        let (sources, missing) = self.ephemeral_sources(asks, false, now);
        parts.extend(missing);
        self.gather(to, key, sources, parts, finish, now);
    }

    /// The kept lists of `key` for the first pages of `asks`, taken out of
    /// it: those whose shared child still runs and has not said its list
    /// changed since. A `modern` client (of the stateless revision) is not
    /// given the list a server with a child apart for it gave a session.
    pub(super) fn kept_parts(
        &self,
        key: &str,
        asks: &mut Vec<(usize, Value)>,
        modern: bool,
    ) -> Vec<Part> {
        let mut parts = Vec::new();
        asks.retain(|(spec, params)| {
            let Some(server) = self.registry.specs().get(*spec).map(|s| &s.name) else {
                return true;
            };
            if modern && self.registry.modern_apart(*spec) {
                return true;
            }
            match self.kept_listing(server, key) {
                Some(kept) if params["cursor"].is_null() => {
                    parts.push((server.clone(), Ok(kept.answer.clone())));
                    false
                }
                _ => true,
            }
        });
        parts
    }

    /// `server`'s kept list of `key` while it is current: its shared child
    /// still runs and has not said its list changed since.
    pub(super) fn kept_listing(&self, server: &str, key: &str) -> Option<&Listed> {
        let kept = self.listings.get(&(server.to_owned(), key.to_owned()))?;
        let child = self.registry.child(kept.child)?;
        let current = self.registry.shared_child(server) == Some(kept.child)
            && child.state() == ChildState::Running
            && child.lists() == kept.lists;
        current.then_some(kept)
    }

    /// A client of its own on each server of `asks`, asking with its
    /// params (for a client of the stateless revision when `modern`): the
    /// sources of a listing, and the servers that could not take one more
    /// client, with why.
    pub(super) fn ephemeral_sources(
        &mut self,
        asks: Vec<(usize, Value)>,
        modern: bool,
        now: Instant,
    ) -> (Vec<Source>, Vec<Part>) {
        let mut sources = Vec::new();
        let mut missing = Vec::new();
        for (spec, params) in asks {
            let Some(server) = self.registry.specs().get(spec).map(|s| s.name.clone()) else {
                continue;
            };
            match self.registry.ephemeral_client(spec, modern, now) {
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
    /// finishes the gather. A whole first page of a shared child is kept.
    /// Whether the answering client goes on (for the next page, or for the
    /// gather's call) rather than closing.
    pub(super) fn gathered(&mut self, number: u64, part: Option<Answered>, now: Instant) -> bool {
        let mut asker = None;
        if let Some(answered) = part {
            let Some(gather) = self.gathers.get_mut(&number) else {
                self.late_part(number, answered);
                return false;
            };
            if !gather.waiting.contains(&answered.server) {
                return false;
            }
            let key = gather.key;
            let first_page = gather.first_pages.remove(&answered.server);
            let server = answered.server.to_owned();
            let Some(answer) = answered
                .answer
                .as_ref()
                .filter(|a| a["result"][key].is_array())
            else {
                let why = answered
                    .answer
                    .as_ref()
                    .and_then(|a| a["error"]["message"].as_str())
                    .unwrap_or("no list in its answer");
                gather.parts.push((server.clone(), Err(why.to_owned())));
                gather.waiting.remove(&server);
                return self.gathered(number, None, now);
            };
            let entries = match gather.parts.iter_mut().find(|(s, _)| *s == server) {
                Some((_, Ok(earlier))) => {
                    let more = answer["result"][key]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    if let Some(kept) = earlier["result"][key].as_array_mut() {
                        kept.extend(more);
                    }
                    entries(earlier, key)
                }
                _ => {
                    gather.parts.push((server.clone(), Ok(answer.clone())));
                    gather
                        .parts
                        .last()
                        .and_then(|(_, p)| p.as_ref().ok())
                        .map_or(&[][..], |a| entries(a, key))
                }
            };
            let cursor = answer["result"]["nextCursor"]
                .as_str()
                .filter(|cursor| !cursor.is_empty());
            if let Some(cursor) = cursor.filter(|_| gather.finish.wants_more(entries)) {
                let read = gather.read.entry(server.clone()).or_default();
                read.0 += 1;
                read.1 += answered.size;
                if read.0 < MAX_PAGES && read.1 < MAX_LIST_BYTES {
                    let params = json!({ "cursor": cursor });
                    let reply = Reply::Gathered {
                        gather: number,
                        server,
                        ephemeral: answered.ephemeral,
                    };
                    let (to, asker) = (gather.to, (answered.child, answered.client));
                    self.registry
                        .ask(asker, to, &list_method(key), params, reply, now);
                    return true;
                }
                tracing::warn!(
                    server,
                    "{} reads no more than {MAX_PAGES} pages or {} MiB of {key}: the rest is left out",
                    gather.finish.what(),
                    MAX_LIST_BYTES >> 20,
                );
            }
            gather.waiting.remove(&server);
            asker = Some((answered.child, answered.client));
            if first_page {
                self.keep_listing(key, answered);
            }
        }
        if self
            .gathers
            .get(&number)
            .is_some_and(|g| g.waiting.is_empty())
        {
            return self.send_gathered(number, asker, now);
        }
        false
    }

    /// Keeps a first page of `key` for listing again, when it is a shared
    /// child's whole list, not too large.
    fn keep_listing(&mut self, key: &str, answered: Answered) {
        let Some(answer) = answered.answer else {
            return;
        };
        let whole = answer["result"][key].is_array() && answer["result"]["nextCursor"].is_null();
        let shared = self.registry.shared_child(&answered.server) == Some(answered.child);
        let Some(child) = self.registry.child(answered.child) else {
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
            let startup = self.registry.limits().startup_timeout;
            if let Some(gather) = self.gathers.get_mut(&number) {
                let wait = gather.finish.wait(startup).as_secs();
                let why = format!("no answer within {wait} s");
                let late = std::mem::take(&mut gather.waiting);
                let listing = match &gather.finish {
                    Finish::Merged(page) => page.session.as_ref(),
                    Finish::Index(resolve) => resolve.session.as_ref(),
                    _ => None,
                };
                if let Some(session) = listing {
                    let first_pages = late
                        .iter()
                        .filter(|s| gather.first_pages.contains(*s))
                        .cloned()
                        .collect();
                    let notice = Late {
                        session: session.clone(),
                        key: gather.key,
                        first_pages,
                    };
                    if self.late.len() >= MAX_LATE {
                        self.late.pop_first();
                    }
                    self.late.insert(number, notice);
                }
                // A list read in part is no list: its pages so far go.
                gather.parts.retain(|(server, _)| !late.contains(server));
                gather
                    .parts
                    .extend(late.into_iter().map(|server| (server, Err(why.clone()))));
            }
            self.send_gathered(number, None, now);
        }
    }

    /// A part of gather `number` that came after the listing was sent
    /// without it: kept when it is a whole first page, and its session
    /// told the list changed (once: a server later still is waited for
    /// again when the client lists).
    fn late_part(&mut self, number: u64, answered: Answered) {
        let Some(late) = self.late.remove(&number) else {
            return;
        };
        let listed = answered
            .answer
            .as_ref()
            .is_some_and(|a| a["result"][late.key].is_array());
        if !listed {
            return;
        }
        if late.first_pages.contains(&answered.server) {
            self.keep_listing(late.key, answered);
        }
        self.list_changed(&late.session, late.key);
    }

    /// When the earliest listing gives up on its slowest server.
    pub(super) fn gathers_deadline(&self) -> Option<Instant> {
        self.gathers.values().map(|g| g.deadline).min()
    }

    /// Every server is done: the gather's [`Finish`]. Whether `asker`
    /// (the last to answer) goes on, making the call.
    fn send_gathered(
        &mut self,
        number: u64,
        asker: Option<(ChildId, ClientId)>,
        now: Instant,
    ) -> bool {
        let Some(mut done) = self.gathers.remove(&number) else {
            return false;
        };
        let order = |server: &str| self.registry.specs().iter().position(|s| s.name == server);
        done.parts.sort_by_key(|(server, _)| order(server));
        for (server, part) in &done.parts {
            if let Err(why) = part {
                tracing::warn!(
                    server,
                    "{} goes without this server: {why}",
                    done.finish.what()
                );
            }
        }
        let response = match done.finish {
            Finish::Tagged => Response::json(200, tagged(done.key, done.parts).to_string()),
            Finish::Merged(page) => {
                self.send_page(done.to, done.key, page, done.parts);
                return false;
            }
            Finish::Resolve(resolve) => {
                let resolve = *resolve;
                self.name_parts(done.key, &mut done.parts);
                let session = resolve.session.as_deref();
                let (id, method, params) = (resolve.id, resolve.method, resolve.params);
                self.aggregate_request(done.to, session, id, method, params, true, now);
                return false;
            }
            Finish::Index(resolve) => {
                self.name_parts(done.key, &mut done.parts);
                self.indexed(done.to, &done.parts, *resolve, now);
                return false;
            }
            Finish::Document { server } => {
                let (lists, unavailable) = split(done.key, done.parts);
                let document = super::openapi::document(server.as_deref(), &lists, &unavailable);
                Response::json(200, document.to_string())
            }
            Finish::Call {
                server,
                tool,
                params,
            } => {
                let (lists, unavailable) = split(done.key, done.parts);
                let found = lists.iter().any(|(_, entries)| listed(entries, &tool));
                match (found, unavailable.first()) {
                    (true, _) => return self.call_listed(asker, done.to, &server, params, now),
                    (false, Some((_, why))) => crate::bridge::common::error(502, why),
                    (false, None) => super::openapi::no_such_tool(&server, &tool),
                }
            }
        };
        self.registry.respond(done.to, response);
        false
    }
}

/// Each server's entries, in the servers' order.
pub(super) type Lists = Vec<(String, Vec<Value>)>;

/// Each server's entries, and the servers that could not answer with why.
fn split(key: &str, parts: Vec<Part>) -> (Lists, Vec<(String, String)>) {
    let mut lists = Vec::new();
    let mut unavailable = Vec::new();
    for (server, part) in parts {
        match part {
            Ok(mut answer) => {
                let entries = answer["result"][key].as_array_mut().map(std::mem::take);
                lists.push((server, entries.unwrap_or_default()));
            }
            Err(why) => unavailable.push((server, why)),
        }
    }
    (lists, unavailable)
}

/// The REST API's merged listing: each entry tagged with its `server`.
fn tagged(key: &str, parts: Vec<Part>) -> Value {
    let (lists, unavailable) = split(key, parts);
    let items: Vec<Value> = lists
        .into_iter()
        .flat_map(|(server, entries)| {
            entries.into_iter().map(move |mut entry| {
                if let Some(fields) = entry.as_object_mut() {
                    fields.insert("server".into(), json!(server));
                }
                entry
            })
        })
        .collect();
    let mut body = json!({ key: items });
    if !unavailable.is_empty() {
        let named = unavailable
            .into_iter()
            .map(|(server, why)| json!({"server": server, "error": why}));
        body["unavailable"] = named.collect();
    }
    body
}
