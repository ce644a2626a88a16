//! `/mcp`: every bridged server behind one MCP endpoint, in both protocol
//! generations, so a client configured once sees all of a developer's
//! servers.
//!
//! Tools and prompts are listed under `{prefix}__{name}` ([`names`]): the
//! prefix is the server's name unless configured, and may be empty (names
//! bare); a name longer than the clients take is shortened, and a call
//! of any name listed is found in the names' [`names::Directory`] (a name
//! not found there is looked for in a fresh listing first);
//! resources keep their URIs, and a URI goes to the server configured to
//! own its beginning, else to the first server in the configuration that
//! listed it or has a template it starts like (`owners`). Each listing
//! is asked of every server at once and merged (`gather`), pages
//! included: the cursor carries each server's own. A call goes to its server with the prefix
//! taken off, and its answer (progress first) comes back as the server
//! gave it.
//!
//! A session here is a session of the bridge's like any other (its event
//! stream, its cap, its idle end), whose "child" is the bridge itself
//! (`BRIDGE`): behind it, a `Fan` keeps one member client per server,
//! made when first needed and initialized with the session's own
//! `initialize`, so a server's requests (sampling, elicitation, roots)
//! reach this session only when its client declared it can answer them.
//! Their ids are renumbered here, since two servers may use the same.
//! The session's logging level (`logging/setLevel`) is kept, and given to
//! each member as it joins as well as to those there when it is set: a
//! client sets it once, before it has used any server.
//! A stateless request is a client of its own on the server it goes to,
//! as at `/mcp/{name}`.

pub mod names;
mod owners;
pub mod search;
#[cfg(test)]
mod tests;

pub(super) use owners::Owners;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use super::gather::Part;
use super::listing::{Finish, Page, Resolve, Source};
use super::Bridge;
use crate::bridge::common::{progress_token, stateless_answer, Pending, Reply, Transport};
use crate::bridge::{ChildId, ClientId, BRIDGE, SERVER_ERROR};
use crate::http::Response;
use crate::mcp::{self, Message};
use crate::provider::RequestId;
use names::Kind;

/// MCP's "resource not found".
const RESOURCE_NOT_FOUND: i64 = -32002;

/// What an aggregate session holds behind its one client.
#[derive(Default)]
pub(super) struct Fan {
    /// The client's `initialize` params: each member's own.
    init: Value,
    /// The client's last `logging/setLevel` params: each member's too.
    level: Option<Value>,
    /// Its client on each server's child, by server name.
    members: BTreeMap<String, (ChildId, ClientId)>,
    /// Servers' requests passed on to the client, by the id it sees: the
    /// member asked and the server's own id.
    asks: BTreeMap<u64, (ChildId, ClientId, Value)>,
    next_ask: u64,
    /// The tools it found with `search_tools`, listed in search mode.
    found: search::found::Found,
}

impl Bridge {
    /// An `initialize` at `/mcp`: a new aggregate session, answered by the
    /// bridge (what the servers offer is learned when it is asked for).
    pub(super) fn open_aggregate(&mut self, to: RequestId, id: Value, params: Value, now: Instant) {
        if let Err(full) = self.registry.admit_session(now) {
            return self
                .registry
                .reply_error(to, 503, mcp::INVALID_REQUEST, &full.message());
        }
        let session = self
            .registry
            .insert_session(BRIDGE, ClientId(0), Transport::Streamable, now);
        let requested = params["protocolVersion"].as_str().unwrap_or_default();
        let result = json!({
            "protocolVersion": mcp::negotiate(requested),
            "capabilities": capabilities(),
            "serverInfo": server_info(),
            "instructions": self.instructions(),
        });
        self.fans.insert(
            session.clone(),
            Fan {
                init: params,
                ..Fan::default()
            },
        );
        let response = Response::json(200, mcp::result(&id, result));
        self.registry
            .respond(to, response.with_header("mcp-session-id", session));
    }

    /// A message for aggregate session `session` (known to be one).
    pub(super) fn aggregate_message(
        &mut self,
        to: RequestId,
        session: &str,
        message: Message,
        now: Instant,
    ) {
        self.registry.touch(session, now);
        match message {
            Message::Request { id, method, params } => {
                self.aggregate_incoming(to, Some(session), id, method, params.into(), now)
            }
            Message::Notification { method, params } => {
                self.registry
                    .respond(to, Response::full(202, "application/json", Bytes::new()));
                self.aggregate_notification(session, &method, params.into(), now);
            }
            Message::Response { id, outcome } => {
                self.registry
                    .respond(to, Response::full(202, "application/json", Bytes::new()));
                let asked = id
                    .as_u64()
                    .and_then(|n| self.fans.get_mut(session)?.asks.remove(&n));
                if let Some((child, client, id)) = asked {
                    let answer = Message::Response { id, outcome };
                    self.registry.forward(child, client, answer, None, now);
                }
            }
        }
    }

    /// A stateless request at `/mcp` (its version and headers checked).
    pub(super) fn aggregate_stateless(
        &mut self,
        to: RequestId,
        id: Value,
        method: String,
        params: Value,
        now: Instant,
    ) {
        if method == "server/discover" {
            let result = mcp::discover_result(capabilities(), server_info(), &self.instructions());
            return self
                .registry
                .respond(to, Response::json(200, mcp::result(&id, result)));
        }
        self.aggregate_incoming(to, None, id, method, params, now);
    }

    /// A request of the aggregate endpoint (of a session's client, or a
    /// stateless one): answered here, listed from every server, or sent to
    /// the one server its name or URI names. A name not listed before is
    /// looked for in a listing first, unless `listed` (it just was).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn aggregate_request(
        &mut self,
        to: RequestId,
        session: Option<&str>,
        id: Value,
        method: String,
        params: Value,
        listed: bool,
        now: Instant,
    ) {
        let refuse = |this: &mut Self, code: i64, message: &str| {
            this.registry.respond(
                to,
                Response::json(200, mcp::error(&id, code, message, None)),
            )
        };
        let key = match method.as_str() {
            "ping" => {
                return self
                    .registry
                    .respond(to, Response::json(200, mcp::result(&id, json!({}))))
            }
            "tools/list" => "tools",
            "prompts/list" => "prompts",
            "resources/list" => "resources",
            "resources/templates/list" => "resourceTemplates",
            "logging/setLevel" => {
                if let Some(session) = session {
                    if let Some(fan) = self.fans.get_mut(session) {
                        fan.level = Some(params.clone());
                    }
                    self.ask_every_member(to, session, &method, &params, now);
                }
                return self
                    .registry
                    .respond(to, Response::json(200, mcp::result(&id, json!({}))));
            }
            _ => {
                if let Some(kind) = self.unlisted(&method, &params).filter(|_| !listed) {
                    let resolve = Resolve {
                        id,
                        method,
                        params,
                        session: session.map(str::to_owned),
                    };
                    return self.list_to_resolve(to, kind, resolve, now);
                }
                return match self.owner_of(&method, params) {
                    Ok((spec, params)) => self.route_to(to, session, spec, id, method, params, now),
                    Err(error) => self
                        .registry
                        .respond(to, Response::json(200, mcp::response(&id, Err(&error)))),
                };
            }
        };
        let page = Page {
            id: id.clone(),
            method,
            session: session.map(str::to_owned),
        };
        let wanted: Vec<(usize, Option<String>)> = match params["cursor"].as_str() {
            None => self
                .aggregated()
                .into_iter()
                .map(|spec| (spec, None))
                .collect(),
            Some(cursor) => match names::read_cursor(cursor) {
                Some(rest) => rest
                    .into_iter()
                    .filter_map(|(server, own)| Some((self.aggregated_spec(&server)?, Some(own))))
                    .collect(),
                None => return refuse(self, mcp::INVALID_PARAMS, "invalid cursor"),
            },
        };
        let ask = |own: Option<String>| {
            let mut asked = json!({});
            if let Some(meta) = params.get("_meta") {
                asked["_meta"] = meta.clone();
            }
            if let Some(own) = own {
                asked["cursor"] = json!(own);
            }
            asked
        };
        let asks: Vec<(usize, Value)> = wanted.into_iter().map(|(s, own)| (s, ask(own))).collect();
        let (sources, parts) = self.list_sources(to, session, key, asks, now);
        self.gather(to, key, sources, parts, Finish::Merged(page), now);
    }

    /// Where each of `asks` (a server and its params) is asked for its
    /// `key` list: kept lists at once, else the session's members, else
    /// clients of their own; with the parts known already.
    fn list_sources(
        &mut self,
        to: RequestId,
        session: Option<&str>,
        key: &str,
        mut asks: Vec<(usize, Value)>,
        now: Instant,
    ) -> (Vec<Source>, Vec<Part>) {
        let mut parts = self.kept_parts(key, &mut asks, session.is_none());
        let sources = match session {
            None => {
                let (sources, missing) = self.ephemeral_sources(asks, true, now);
                parts.extend(missing);
                sources
            }
            Some(session) => {
                let mut sources = Vec::new();
                for (spec, params) in asks {
                    let Some(server) = self.registry.specs().get(spec).map(|s| s.name.clone())
                    else {
                        continue;
                    };
                    match self.member(to, session, spec, now) {
                        Ok((child, client)) => sources.push(Source {
                            server,
                            child,
                            client,
                            ephemeral: false,
                            params,
                        }),
                        Err(why) => parts.push((server, Err(why))),
                    }
                }
                sources
            }
        };
        (sources, parts)
    }

    /// The kind of name a request of `method` names, when that name was
    /// not listed and cannot be read without a listing: a server lists
    /// names bare, or the name may be a shortened one.
    fn unlisted(&self, method: &str, params: &Value) -> Option<Kind> {
        let (kind, name) = match method {
            "tools/call" => (Kind::Tool, &params["name"]),
            "prompts/get" => (Kind::Prompt, &params["name"]),
            "completion/complete" if params["ref"]["type"] == "ref/prompt" => {
                (Kind::Prompt, &params["ref"]["name"])
            }
            _ => return None,
        };
        let name = name.as_str()?;
        if self.directory.find(kind, name).is_some() {
            return None;
        }
        let names = &self.names;
        let bare = self
            .aggregate_servers()
            .iter()
            .any(|(_, s)| s.prefix.is_empty());
        (bare || names.looks_shortened(name)).then_some(kind)
    }

    /// Lists `kind` of every server on `/mcp`, to learn their names, then
    /// makes the request `resolve` holds.
    fn list_to_resolve(&mut self, to: RequestId, kind: Kind, resolve: Resolve, now: Instant) {
        let key = match kind {
            Kind::Tool => "tools",
            Kind::Prompt => "prompts",
        };
        let asks = self
            .aggregated()
            .into_iter()
            .map(|spec| (spec, json!({})))
            .collect();
        let session = resolve.session.clone();
        let (sources, parts) = self.list_sources(to, session.as_deref(), key, asks, now);
        let finish = Finish::Resolve(Box::new(resolve));
        self.gather(to, key, sources, parts, finish, now);
    }

    /// Sends a request to server `spec`: through the session's member, or
    /// as a stateless client of its own.
    #[allow(clippy::too_many_arguments)]
    fn route_to(
        &mut self,
        to: RequestId,
        session: Option<&str>,
        spec: usize,
        id: Value,
        method: String,
        params: Value,
        now: Instant,
    ) {
        let Some(session) = session else {
            return self
                .registry
                .stateless_forward(to, spec, id, method, params, now);
        };
        let (child, client) = match self.member(to, session, spec, now) {
            Ok(member) => member,
            Err(why) => {
                let answer = mcp::error(&id, SERVER_ERROR, &why, None);
                return self.registry.respond(to, Response::json(200, answer));
            }
        };
        let progress = progress_token(&params["_meta"]);
        if progress.is_some() {
            self.registry
                .respond(to, Response::stream("text/event-stream"));
        }
        let wait = Pending {
            to,
            reply: Reply::Json { opened: None },
            progress,
            log: None,
        };
        let message = Message::Request {
            id,
            method,
            params: params.into(),
        };
        self.registry
            .forward(child, client, message, Some(wait), now);
    }

    /// The server a named request is for, and its params as that server
    /// reads them (its own name, without the prefix); else the JSON-RPC
    /// error to answer with.
    fn owner_of(&self, method: &str, mut params: Value) -> Result<(usize, Value), Value> {
        let (at, kind) = match method {
            "tools/call" => ("", Kind::Tool),
            "prompts/get" => ("", Kind::Prompt),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params["uri"].as_str().unwrap_or_default();
                let spec = self.resource_owner(uri)?;
                return Ok((spec, params));
            }
            "completion/complete" => match params["ref"]["type"].as_str() {
                Some("ref/prompt") => ("/ref", Kind::Prompt),
                _ => {
                    let uri = params["ref"]["uri"].as_str().unwrap_or_default();
                    let spec = self.resource_owner(uri)?;
                    return Ok((spec, params));
                }
            },
            _ => {
                let why = format!("Method not found: {method}");
                return Err(mcp::error_object(mcp::METHOD_NOT_FOUND, &why, None));
            }
        };
        let what = match kind {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
        };
        // The object that holds the name (a peer's params may be anything).
        let holder = params.pointer_mut(at).and_then(Value::as_object_mut);
        let Some(holder) = holder else {
            let why = format!("the {what}'s name is missing");
            return Err(mcp::error_object(mcp::INVALID_PARAMS, &why, None));
        };
        let full = holder
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let found = self.directory.find(kind, &full);
        if let Some(spec) = found.and_then(|(server, _)| self.aggregated_spec(server)) {
            let own = found.map(|(_, own)| own).unwrap_or_default();
            holder.insert("name".into(), json!(own));
            return Ok((spec, params));
        }
        let prefixed = self.names.split(&full);
        if let Some((spec, own)) =
            prefixed.and_then(|(prefix, own)| Some((self.spec_by_prefix(prefix)?, own)))
        {
            holder.insert("name".into(), json!(own));
            return Ok((spec, params));
        }
        // Listed by no server, and with no server's prefix: the one server
        // whose names are bare may still take it (a server need not list
        // every tool or prompt it answers), as the only server takes a
        // resource no server claims.
        if let Some(spec) = self.sole_bare_server() {
            return Ok((spec, params));
        }
        let unknown = |why: String| {
            let why = format!("Unknown {what}: {full} ({why})");
            mcp::error_object(mcp::INVALID_PARAMS, &why, None)
        };
        Err(match prefixed {
            Some((prefix, _)) => unknown(format!("no bridged server has the prefix `{prefix}`")),
            None => {
                let sep = self.names.separator();
                unknown(format!("not listed; names here are PREFIX{sep}NAME"))
            }
        })
    }

    /// The server whose names `/mcp` lists bare, when exactly one is.
    fn sole_bare_server(&self) -> Option<usize> {
        let unbared = &self.unbared;
        let mut bare = self
            .aggregate_servers()
            .into_iter()
            .filter(|(_, s)| s.prefix.is_empty() && !unbared.contains(&s.name));
        match (bare.next(), bare.next()) {
            (Some((spec, _)), None) => Some(spec),
            _ => None,
        }
    }

    /// The server a resource URI belongs to, or the "not found" error: the
    /// one configured to own the longest beginning of it (the first in the
    /// configuration of two with the same), else the one [`Owners`] names,
    /// else the only server there is. "Not found" carries the URI in its
    /// data, as clients of either generation read it.
    fn resource_owner(&self, uri: &str) -> Result<usize, Value> {
        let servers = self.aggregated();
        let configured = servers
            .iter()
            .filter_map(|&spec| {
                let owned = self.registry.specs()[spec].resources.iter();
                let longest = owned
                    .filter(|start| !start.is_empty() && uri.starts_with(start.as_str()))
                    .map(String::len)
                    .max()?;
                Some((longest, spec))
            })
            .max_by_key(|&(longest, spec)| (longest, Reverse(spec)))
            .map(|(_, spec)| spec);
        let only = match servers[..] {
            [only] => Some(only),
            _ => None,
        };
        configured
            .or_else(|| {
                let order = self.aggregated_names();
                let server = self.owners.owner(uri, &order)?;
                self.aggregated_spec(server)
            })
            .or(only)
            .ok_or_else(|| {
                let why = format!("Resource not found: {uri} (no bridged server listed it)");
                mcp::error_object(RESOURCE_NOT_FOUND, &why, Some(json!({"uri": uri})))
            })
    }

    /// A notification from an aggregate session's client: a cancel goes
    /// to the member that has the call, a roots change to every member.
    fn aggregate_notification(&mut self, session: &str, method: &str, params: Value, now: Instant) {
        let Some(fan) = self.fans.get(session) else {
            return;
        };
        let members: Vec<(ChildId, ClientId)> = match method {
            "notifications/cancelled" => {
                let call = params["requestId"].to_string();
                let has = |m: &&(ChildId, ClientId)| self.registry.awaits(m.0, m.1, &call);
                fan.members.values().filter(has).copied().collect()
            }
            "notifications/roots/list_changed" => fan.members.values().copied().collect(),
            _ => Vec::new(),
        };
        for (child, client) in members {
            let method = method.to_owned();
            let params = params.clone().into();
            self.registry.forward(
                child,
                client,
                Message::Notification { method, params },
                None,
                now,
            );
        }
    }

    /// A request for every server the session has a member on, their
    /// answers not the client's.
    fn ask_every_member(
        &mut self,
        to: RequestId,
        session: &str,
        method: &str,
        params: &Value,
        now: Instant,
    ) {
        let members: Vec<(ChildId, ClientId)> = self
            .fans
            .get(session)
            .map(|fan| fan.members.values().copied().collect())
            .unwrap_or_default();
        for (child, client) in members {
            self.member_request(to, child, client, method, params.clone(), now);
        }
    }

    /// The session's member on server `spec`, made (and initialized with
    /// the session's `initialize`) when it has none; else why not.
    fn member(
        &mut self,
        to: RequestId,
        session: &str,
        spec: usize,
        now: Instant,
    ) -> Result<(ChildId, ClientId), String> {
        let server = self.registry.specs()[spec].name.clone();
        let fan = self.fans.get(session).ok_or("the session ended")?;
        if let Some(&member) = fan.members.get(&server) {
            if self.registry.child(member.0).is_some() {
                return Ok(member);
            }
            // Its child was forgotten: a new member replaces it.
            self.registry.leave(member.0, member.1);
        }
        let (init, level) = (fan.init.clone(), fan.level.clone());
        let child = self
            .registry
            .child_for(spec, false, now)
            .map_err(|full| full.message())?;
        let client = (self.registry.open_client(child, now)).ok_or("the server has no child")?;
        if let Some(fan) = self.fans.get_mut(session) {
            fan.members.insert(server, (child, client));
        }
        self.registry.join(session, child, client);
        self.member_request(to, child, client, "initialize", init, now);
        if let Some(level) = level {
            self.member_request(to, child, client, "logging/setLevel", level, now);
        }
        Ok((child, client))
    }

    /// A request of the session's own to a member, its answer dropped.
    fn member_request(
        &mut self,
        to: RequestId,
        child: ChildId,
        client: ClientId,
        method: &str,
        params: Value,
        now: Instant,
    ) {
        let number = self.registry.next_number();
        let message = Message::Request {
            id: json!(format!("bridge-{number}")),
            method: method.to_owned(),
            params: params.into(),
        };
        let wait = Pending {
            to,
            reply: Reply::Member,
            progress: None,
            log: None,
        };
        self.registry
            .forward(child, client, message, Some(wait), now);
    }

    /// A server's message for an aggregate session's client, as the client
    /// may see it: a request under an id of the session's (two servers may
    /// pick the same), or refused at the server when too many wait.
    pub(super) fn member_said(
        &mut self,
        session: &str,
        child: ChildId,
        client: ClientId,
        message: String,
        now: Instant,
    ) -> Option<String> {
        let is_request = message.contains("\"method\"") && message.contains("\"id\"");
        if !is_request {
            return Some(message);
        }
        let mut parsed: Value = serde_json::from_str(&message).ok()?;
        let (Some(id), true) = (parsed.get("id").cloned(), parsed["method"].is_string()) else {
            return Some(message);
        };
        let cap = self.registry.limits().max_in_flight;
        let fan = self.fans.get_mut(session)?;
        if fan.asks.len() >= cap {
            let error =
                json!({"code": SERVER_ERROR, "message": "too many requests wait for this client"});
            let refusal = Message::Response {
                id,
                outcome: Err(error),
            };
            self.registry.forward(child, client, refusal, None, now);
            return None;
        }
        fan.next_ask += 1;
        fan.asks.insert(fan.next_ask, (child, client, id));
        parsed["id"] = json!(fan.next_ask);
        Some(parsed.to_string())
    }

    /// An aggregate session ended (the registry released its members).
    pub(super) fn end_fan(&mut self, session: &str) {
        self.fans.remove(session);
    }

    /// Server `server` is gone: each aggregate session lets go of its
    /// member there and is told its lists changed; the resources it
    /// claimed are no longer its.
    pub(super) fn drop_members(&mut self, server: &str, now: Instant) {
        self.listings.retain(|(listed, _), _| listed != server);
        self.owners.forget(server);
        self.directory.forget(server);
        self.unbared.remove(server);
        self.search.forget_catalog();
        let mut dropped = Vec::new();
        for (session, fan) in &mut self.fans {
            if let Some(member) = fan.members.remove(server) {
                fan.asks.retain(|_, (c, k, _)| (*c, *k) != member);
                dropped.push((session.clone(), member));
            }
        }
        for (session, (child, client)) in dropped {
            self.registry.leave(child, client);
            self.registry.release_client(child, client, now);
            self.lists_changed(&session);
        }
    }

    /// Every aggregate session is told the servers behind it changed.
    pub(super) fn aggregates_changed(&mut self) {
        // Prefixes may have changed: names are learned anew.
        self.directory.clear();
        self.unbared.clear();
        self.search.forget_catalog();
        let sessions: Vec<String> = self.fans.keys().cloned().collect();
        for session in sessions {
            self.lists_changed(&session);
        }
    }

    fn lists_changed(&mut self, session: &str) {
        for key in ["tools", "prompts", "resources"] {
            self.list_changed(session, key);
        }
    }

    /// Tells `session` its list of `key` changed (templates are
    /// resources' notice).
    pub(super) fn list_changed(&mut self, session: &str, key: &str) {
        let list = match key {
            "resourceTemplates" => "resources",
            key => key,
        };
        let method = format!("notifications/{list}/list_changed");
        self.registry
            .tell_session(session, mcp::notification(&method, json!({})));
    }

    /// A page of the aggregate listing, from its servers' parts in order:
    /// names prefixed, resource URIs learned for routing, and the cursor
    /// of every server that has more.
    pub(super) fn send_page(
        &mut self,
        to: RequestId,
        key: &'static str,
        page: Page,
        mut parts: Vec<Part>,
    ) {
        self.name_parts(key, &mut parts);
        let mut items = Vec::new();
        let mut rest = Vec::new();
        let order = self.aggregated_names();
        for (server, part) in parts {
            let Ok(mut answer) = part else {
                continue;
            };
            let result = &mut answer["result"];
            if let Some(cursor) = result["nextCursor"].as_str() {
                rest.push((server.clone(), cursor.to_owned()));
            }
            let entries = result[key].as_array_mut().map(std::mem::take);
            for entry in entries.unwrap_or_default() {
                self.aggregate_entry(&server, key, &entry, &order);
                items.push(entry);
            }
        }
        let mut result = json!({ key: items });
        if !rest.is_empty() {
            result["nextCursor"] = json!(names::cursor(&rest));
        }
        let answer = json!({"jsonrpc": "2.0", "id": page.id, "result": result});
        let body = match page.session.is_none() {
            true => stateless_answer(&answer.to_string(), &page.id, &page.method),
            false => answer.to_string(),
        };
        self.registry.respond(to, Response::json(200, body));
    }

    /// The tools or prompts of `parts` named as `/mcp` lists them (those
    /// that cannot be left out), each name learned for calls. A server
    /// with an empty prefix that gets its name back as its prefix has its
    /// bare names forgotten, and every session is told the list changed.
    pub(super) fn name_parts(&mut self, key: &str, parts: &mut [Part]) {
        let Some(kind) = Kind::of_key(key) else {
            return;
        };
        let servers: Vec<names::Server> = self
            .aggregate_servers()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let at = |name: &str| servers.iter().position(|s| s.name == name);
        let mut entries = Vec::new();
        for (server, part) in parts.iter() {
            let (Ok(answer), Some(n)) = (part, at(server)) else {
                continue;
            };
            for entry in super::listing::entries(answer, key) {
                let own = entry["name"].as_str().unwrap_or_default();
                entries.push((n, own.to_owned()));
            }
        }
        let gateway = &mut *self;
        let (named, newly) = gateway.names.assign(
            kind,
            &servers,
            &entries,
            &gateway.directory,
            &mut gateway.unbared,
        );
        for server in &newly {
            gateway.directory.forget(server);
        }
        if !newly.is_empty() {
            gateway.search.forget_catalog();
        }
        let mut named = named.into_iter();
        for (server, part) in parts.iter_mut() {
            let Ok(answer) = part else {
                continue;
            };
            let listed = answer["result"][key].as_array_mut();
            let Some(list) = listed.filter(|_| at(server).is_some()) else {
                answer["result"][key] = json!([]);
                continue;
            };
            for mut entry in std::mem::take(list) {
                let Some(Some(name)) = named.next() else {
                    continue;
                };
                let own = entry["name"].as_str().unwrap_or_default();
                gateway.directory.learn(kind, &name, server, own);
                entry["name"] = json!(name);
                list.push(entry);
            }
        }
        if !newly.is_empty() {
            let sessions: Vec<String> = self.fans.keys().cloned().collect();
            for session in sessions {
                self.list_changed(&session, key);
            }
        }
    }

    /// One resource or template of `server`'s list as the aggregate lists
    /// it: learned for routing (`order`: the servers here, in the
    /// configuration's).
    fn aggregate_entry(&mut self, server: &str, key: &str, entry: &Value, order: &[String]) {
        match key {
            "resources" => {
                if let Some(uri) = entry["uri"].as_str() {
                    self.owners.learn_uri(server, uri, order);
                }
            }
            "resourceTemplates" => {
                if let Some(template) = entry["uriTemplate"].as_str() {
                    self.owners.learn_template(server, template);
                }
            }
            _ => {}
        }
    }

    /// The servers on the aggregate endpoint, in their configured order,
    /// with the prefix each is named under: every one whose prefix can be
    /// one ([`names::Names::fits`]; for an empty prefix, its name), each
    /// prefix taken by the first server that has it.
    pub(super) fn aggregate_servers(&self) -> Vec<(usize, names::Server)> {
        let names = &self.names;
        let mut taken = std::collections::HashSet::new();
        let mut servers = Vec::new();
        for (spec, s) in self.registry.specs().iter().enumerate() {
            let prefix = s.prefix.clone().unwrap_or_else(|| s.name.clone());
            let own = if prefix.is_empty() { &s.name } else { &prefix };
            let usable = names::bad_prefix(&prefix).is_none() && names.fits(own);
            if usable && taken.insert(own.clone()) {
                let name = s.name.clone();
                servers.push((spec, names::Server { name, prefix }));
            }
        }
        servers
    }

    /// The servers on the aggregate endpoint, in their configured order.
    fn aggregated(&self) -> Vec<usize> {
        let servers = self.aggregate_servers().into_iter();
        servers.map(|(spec, _)| spec).collect()
    }

    /// The names of [`Bridge::aggregated`]'s servers, in its order.
    fn aggregated_names(&self) -> Vec<String> {
        let servers = self.aggregate_servers().into_iter();
        servers.map(|(_, s)| s.name).collect()
    }

    fn aggregated_spec(&self, server: &str) -> Option<usize> {
        let servers = self.aggregate_servers().into_iter();
        servers
            .filter(|(_, s)| s.name == server)
            .map(|(spec, _)| spec)
            .next()
    }

    /// The server named under `prefix` now (not one listed bare).
    fn spec_by_prefix(&self, prefix: &str) -> Option<usize> {
        let unbared = &self.unbared;
        let servers = self.aggregate_servers().into_iter();
        servers
            .filter(|(_, s)| match s.prefix.is_empty() {
                true => unbared.contains(&s.name) && s.name == prefix,
                false => s.prefix == prefix,
            })
            .map(|(spec, _)| spec)
            .next()
    }

    /// What the endpoint tells a client about itself.
    fn instructions(&self) -> String {
        let servers = self.aggregated_names();
        let sep = self.names.separator();
        format!(
            "Every MCP server this bridge serves, at once: {}. Tools and prompts are named PREFIX{sep}NAME (the prefix is the server's name unless configured; some servers' names may be listed bare, and long names shortened).",
            if servers.is_empty() { "none yet".to_owned() } else { servers.join(", ") }
        )
    }
}

/// What the aggregate endpoint may offer: what any of its servers may.
fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "completions": {},
        "logging": {},
    })
}

fn server_info() -> Value {
    json!({
        "name": "mcp-provider",
        "title": "MCP Local Provider: every bridged server",
        "version": env!("CARGO_PKG_VERSION"),
    })
}
