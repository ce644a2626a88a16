//! A list asked of several servers at once, or of one: each server is
//! asked as a client of its own, as a REST call without a session is, and
//! what is made of the lists once every server answered is the gather's
//! [`Finish`]:
//!
//! - `GET /tools`, `/resources` and `/prompts` without `?server=`, with
//!   several servers bridged: the lists merged into one answer, each entry
//!   tagged with the `server` it came from;
//! - `GET /openapi.json` and `/openapi/{name}.json`: the OpenAPI document
//!   of the tools (`openapi`);
//! - `POST /tools/{server}/{tool}`: the tool called, by the same client,
//!   once it is seen in its server's list.
//!
//! A server that cannot answer is named with why (and logged); it never
//! costs the others their part. The document and the call read a list
//! page after page (`nextCursor`), up to [`MAX_PAGES`], since a tool on a
//! later page is as real as one on the first; the merged listing is each
//! server's first page, as a listing of one server is.

use std::time::Instant;

use serde_json::{json, Value};

use super::registry::{Bridge, Reply};
use super::rest::error;
use super::{ChildId, ClientId};
use crate::http::Response;
use crate::provider::RequestId;

/// Pages of one server's list read at most, and bytes of their JSON: a
/// server still offering more past either is taken at its word so far
/// (and logged).
pub(super) const MAX_PAGES: usize = 32;
pub(super) const MAX_LIST_BYTES: usize = 16 << 20;

/// What a gather makes of the lists.
pub(super) enum Finish {
    /// The merged listing: `{key: [entries, each with "server"],
    /// "unavailable"?: [{server, error}]}`.
    Listing,
    /// The OpenAPI document of the tools, of `server` alone when named.
    Document { server: Option<String> },
    /// A call of `tool` with `arguments`, made once the tool is seen in
    /// `server`'s list; a tool not there is a 404.
    Call {
        server: String,
        tool: String,
        arguments: Value,
    },
}

impl Finish {
    /// Whether a server's next page is wanted, given its `entries` so far.
    fn wants_more(&self, entries: &[Value]) -> bool {
        match self {
            Finish::Listing => false,
            Finish::Document { .. } => true,
            Finish::Call { tool, .. } => !listed(entries, tool),
        }
    }

    /// What a server that cannot answer is left out of, for the log.
    fn what(&self) -> &'static str {
        match self {
            Finish::Listing => "a merged listing",
            Finish::Document { .. } => "the OpenAPI document",
            Finish::Call { .. } => "an OpenAPI tool call",
        }
    }
}

/// Whether a tool called `tool` is among `entries`.
fn listed(entries: &[Value], tool: &str) -> bool {
    entries.iter().any(|entry| entry["name"] == tool)
}

/// One gather on its way.
pub(super) struct Gather {
    to: RequestId,
    /// The list's member in each answer: `tools`, `resources`, `prompts`.
    key: String,
    /// Servers not done yet.
    waiting: usize,
    /// Each server's entries so far, in the order the servers answered.
    parts: Vec<Part>,
    /// Each server that could not answer, and why.
    unavailable: Vec<(String, String)>,
    /// Whether a server could not even be asked: a cap of the bridge was
    /// reached (a call is then refused with 503, as a REST call is).
    full: bool,
    finish: Finish,
}

/// One server's entries.
struct Part {
    server: String,
    entries: Vec<Value>,
    /// The JSON of the pages they came in, in bytes.
    bytes: usize,
}

/// A page of a server's list that a gather waits for (in
/// `Reply::Gathered`).
pub(super) struct Page {
    gather: u64,
    server: String,
    /// Counting from 0.
    number: usize,
}

impl Bridge {
    /// Asks each of the `servers` (indices of [`Bridge::specs`]) for its
    /// `key` list (`{key}/list`); `finish` says what is then made of them.
    pub(super) fn gather(
        &mut self,
        to: RequestId,
        key: &str,
        servers: Vec<usize>,
        finish: Finish,
        now: Instant,
    ) {
        self.next_request += 1;
        let number = self.next_request;
        let names: Vec<(usize, String)> = servers
            .into_iter()
            .filter_map(|spec| Some((spec, self.specs.get(spec)?.name.clone())))
            .collect();
        self.gathers.insert(
            number,
            Gather {
                to,
                key: key.to_owned(),
                waiting: names.len(),
                parts: Vec::new(),
                unavailable: Vec::new(),
                full: false,
                finish,
            },
        );
        if names.is_empty() {
            self.finish_gather(number, None, now);
            return;
        }
        for (spec, server) in names {
            let page = Page {
                gather: number,
                server,
                number: 0,
            };
            match self.ephemeral_client(spec, now) {
                Ok(asker) => self.ask_page(asker, page, None, now),
                Err(full) => {
                    if let Some(gather) = self.gathers.get_mut(&number) {
                        gather.full = true;
                    }
                    let error = json!({"error": {"message": full.message()}});
                    self.gathered(None, page, Some(error), 0, now);
                }
            }
        }
    }

    /// Asks `asker` for `page` of its server's list (after `cursor`).
    fn ask_page(
        &mut self,
        asker: (ChildId, ClientId),
        page: Page,
        cursor: Option<String>,
        now: Instant,
    ) {
        let Some(gather) = self.gathers.get(&page.gather) else {
            return;
        };
        let (to, method) = (gather.to, format!("{}/list", gather.key));
        let params = cursor.map_or(Value::Null, |cursor| json!({ "cursor": cursor }));
        self.ask(asker, to, &method, params, Reply::Gathered(page), now);
    }

    /// The answer to `page` (`None`: not JSON; `bytes` long), from `asker`
    /// (`None`: it could not be asked). The last server's answer finishes
    /// the gather. Whether `asker` goes on (for the next page, or for the
    /// gather's call) rather than closing.
    pub(super) fn gathered(
        &mut self,
        asker: Option<(ChildId, ClientId)>,
        page: Page,
        answer: Option<Value>,
        bytes: usize,
        now: Instant,
    ) -> bool {
        let Some(gather) = self.gathers.get_mut(&page.gather) else {
            return false;
        };
        let server = page.server.as_str();
        let result = answer.as_ref().map(|answer| &answer["result"]);
        match result.and_then(|r| r[gather.key.as_str()].as_array()) {
            Some(entries) => {
                let at = match gather.parts.iter().position(|p| p.server == server) {
                    Some(at) => at,
                    None => {
                        gather.parts.push(Part {
                            server: server.to_owned(),
                            entries: Vec::new(),
                            bytes: 0,
                        });
                        gather.parts.len() - 1
                    }
                };
                let Some(part) = gather.parts.get_mut(at) else {
                    return false;
                };
                part.entries.extend(entries.iter().cloned());
                part.bytes += bytes;
                let cursor = result
                    .and_then(|r| r["nextCursor"].as_str())
                    .filter(|cursor| !cursor.is_empty());
                match (cursor, asker) {
                    (Some(cursor), Some(asker)) if gather.finish.wants_more(&part.entries) => {
                        if page.number + 1 < MAX_PAGES && part.bytes < MAX_LIST_BYTES {
                            let cursor = Some(cursor.to_owned());
                            let next = Page {
                                number: page.number + 1,
                                ..page
                            };
                            self.ask_page(asker, next, cursor, now);
                            return true;
                        }
                        tracing::warn!(
                            server,
                            "{} reads no more than {MAX_PAGES} pages or {} MiB of {}: the rest is left out",
                            gather.finish.what(),
                            MAX_LIST_BYTES >> 20,
                            gather.key,
                        );
                    }
                    _ => {}
                }
            }
            None => {
                let why = answer
                    .as_ref()
                    .and_then(|a| a["error"]["message"].as_str())
                    .unwrap_or("no list in its answer");
                tracing::warn!(
                    server,
                    "{} goes without this server: {why}",
                    gather.finish.what()
                );
                gather.unavailable.push((server.to_owned(), why.to_owned()));
            }
        }
        gather.waiting = gather.waiting.saturating_sub(1);
        if gather.waiting > 0 {
            return false;
        }
        self.finish_gather(page.gather, asker, now)
    }

    /// Every server is done: the gather's [`Finish`]. Whether `asker` (the
    /// last to answer) goes on, making the call.
    fn finish_gather(
        &mut self,
        number: u64,
        asker: Option<(ChildId, ClientId)>,
        now: Instant,
    ) -> bool {
        let Some(done) = self.gathers.remove(&number) else {
            return false;
        };
        // In the order the servers are configured, whatever order they
        // answered in: the same answer every time (and in a document, an
        // operation id two tools would share goes to the same one).
        let configured = |server: &String| self.specs.iter().position(|s| &s.name == server);
        let mut parts: Vec<(String, Vec<Value>)> = done
            .parts
            .into_iter()
            .map(|part| (part.server, part.entries))
            .collect();
        parts.sort_by_key(|(server, _)| configured(server));
        let mut unavailable = done.unavailable;
        unavailable.sort_by_key(|(server, _)| configured(server));
        let response = match done.finish {
            Finish::Listing => {
                let entries = parts.into_iter().flat_map(|(server, entries)| {
                    entries.into_iter().map(move |mut entry| {
                        if let Some(fields) = entry.as_object_mut() {
                            fields.insert("server".into(), json!(server));
                        }
                        entry
                    })
                });
                let mut body = json!({ done.key.as_str(): entries.collect::<Vec<_>>() });
                if !unavailable.is_empty() {
                    let named = unavailable
                        .iter()
                        .map(|(server, why)| json!({"server": server, "error": why}));
                    body["unavailable"] = named.collect();
                }
                Response::json(200, body.to_string())
            }
            Finish::Document { server } => {
                let document = super::openapi::document(server.as_deref(), &parts, &unavailable);
                Response::json(200, document.to_string())
            }
            Finish::Call {
                server,
                tool,
                arguments,
            } => {
                let found = parts.iter().any(|(_, entries)| listed(entries, &tool));
                match (found, asker, unavailable.first()) {
                    (true, Some(asker), _) => {
                        self.call_listed(asker, done.to, tool, arguments, now);
                        return true;
                    }
                    (_, _, Some((_, why))) => error(if done.full { 503 } else { 502 }, why),
                    _ => super::openapi::no_such_tool(&server, &tool),
                }
            }
        };
        self.respond(done.to, response);
        false
    }
}
