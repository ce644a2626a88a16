//! Tool search on `/mcp`: with many servers behind it, a client does
//! better asking for the few tools it needs than reading hundreds. With
//! the mode on ([`ToolSearch`]), `tools/list` gives two tools,
//! `search_tools` and `call_tool` ([`meta`]), then the tools this session
//! has found (at most 20, the latest first: [`found`]); a search's tools
//! join the session's list and its client is told the list changed.
//! Every tool stays callable by its `/mcp` name, listed or not.
//!
//! The search runs over one index of the tools `/mcp` would list, named
//! as it lists them ([`catalog`]): built from the servers' listings as a
//! plain `tools/list` gathers them (kept lists at once), and built again
//! only when a listing changed — a reload, a server's list changing, a
//! server's first listing.
//!
//! In `auto` mode the decision is made at each request from the number of
//! tools `/mcp` would list now: a client listing while there are few sees
//! them all. Whatever can change that number (a reload, a server's list
//! changing) tells the sessions their list changed, so they list again
//! and see the mode that holds then.
//!
//! A server's own tool named `search_tools` or `call_tool` on `/mcp` (an
//! empty prefix) is hidden by the meta tool in search mode; `call_tool`
//! still reaches it.

pub mod catalog;
pub mod found;
pub mod meta;
pub mod seen;

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::super::listing::{Finish, Resolve};
use super::super::Bridge;
use crate::bridge::common::stateless_answer;
use crate::http::Response;
use crate::mcp;
use crate::provider::RequestId;
use catalog::{Catalog, Stamp};
use meta::{CallArgs, SearchArgs, CALL_TOOL, SEARCH_TOOLS};

/// Whether `/mcp` lists its tools or offers to search them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every tool listed (the default: clients that expect every tool,
    /// such as inspectors and test suites, see them all).
    #[default]
    Off,
    /// The meta tools and the session's found tools listed.
    On,
    /// On while `/mcp` would list more tools than the threshold.
    Auto,
}

/// The tool search's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolSearch {
    pub mode: Mode,
    /// In `auto` mode, the most tools listed whole.
    pub threshold: usize,
}

/// The default threshold of `auto` mode.
pub const DEFAULT_THRESHOLD: usize = 30;

impl Default for ToolSearch {
    fn default() -> Self {
        ToolSearch {
            mode: Mode::Off,
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

/// What the gateway keeps for the tool search.
#[derive(Default)]
pub struct Search {
    setting: ToolSearch,
    /// The index of the tools `/mcp` would list, once built.
    catalog: Option<Catalog>,
    seen: seen::Seen,
}

impl Search {
    /// The index no longer holds what `/mcp` would list (names or servers
    /// changed): it is built again when next needed.
    pub(in crate::gateway) fn forget_catalog(&mut self) {
        self.catalog = None;
    }

    pub(in crate::gateway) fn figures(&self) -> crate::bridge::SearchFigures {
        self.seen.figures()
    }

    /// Whether search mode holds now.
    fn on(&self) -> bool {
        match self.setting.mode {
            Mode::Off => false,
            Mode::On => true,
            Mode::Auto => self
                .catalog
                .as_ref()
                .is_some_and(|c| c.count() > self.setting.threshold),
        }
    }
}

/// A request's parts, kept together while it waits for the index.
struct Asked {
    id: Value,
    method: String,
    params: Value,
}

impl Bridge {
    /// Whether `/mcp` lists its tools or offers to search them (the
    /// aggregate sessions told their tools changed, when it did).
    pub fn set_tool_search(&mut self, setting: ToolSearch) {
        if self.search.setting != setting {
            self.search.setting = setting;
            self.aggregates_changed();
        }
    }

    /// A request at `/mcp`, seen by the tool search first: a tool listing
    /// or a meta tool's call waits for the index to be current; anything
    /// else goes on as it is.
    pub(in crate::gateway) fn aggregate_incoming(
        &mut self,
        to: RequestId,
        session: Option<&str>,
        id: Value,
        method: String,
        params: Value,
        now: Instant,
    ) {
        let search = &mut self.search;
        let name = params["name"].as_str().filter(|_| method == "tools/call");
        let wanted = match (method.as_str(), name) {
            ("tools/list", _) => true,
            (_, Some(name)) => meta::is_meta(name),
            _ => false,
        };
        if search.setting.mode == Mode::Off || !wanted {
            if let Some(name) = name.filter(|_| search.setting.mode != Mode::Off) {
                search.seen.called(session, name, false);
            }
            return self.aggregate_request(to, session, id, method, params, false, now);
        }
        let stamp = self.listing_stamp();
        let current = self.search.catalog.as_ref();
        if current.is_some_and(|c| c.current(stamp.as_ref())) {
            let asked = Asked { id, method, params };
            return self.searched(to, session, asked, now);
        }
        let resolve = Resolve {
            id,
            method,
            params,
            session: session.map(str::to_owned),
        };
        self.list_to_index(to, resolve, now);
    }

    /// Lists the tools of every server on `/mcp` (kept lists at once),
    /// then indexes them and answers the request `resolve` holds.
    fn list_to_index(&mut self, to: RequestId, resolve: Resolve, now: Instant) {
        let asks = self
            .aggregated()
            .into_iter()
            .map(|spec| (spec, json!({})))
            .collect();
        let session = resolve.session.clone();
        let (sources, parts) = self.list_sources(to, session.as_deref(), "tools", asks, now);
        let finish = Finish::Index(Box::new(resolve));
        self.gather(to, "tools", sources, parts, finish, now);
    }

    /// The tools of every server came, named as `/mcp` lists them: they
    /// are indexed (when they changed) and the request answered.
    pub(in crate::gateway) fn indexed(
        &mut self,
        to: RequestId,
        parts: &[super::super::gather::Part],
        resolve: Resolve,
        now: Instant,
    ) {
        let stamp = self.listing_stamp();
        Catalog::renew(&mut self.search.catalog, parts, stamp);
        let asked = Asked {
            id: resolve.id,
            method: resolve.method,
            params: resolve.params,
        };
        self.searched(to, resolve.session.as_deref(), asked, now);
    }

    /// What each server on `/mcp` is listed from now, when every one's
    /// tools are a kept list.
    fn listing_stamp(&self) -> Option<Stamp> {
        self.aggregate_servers()
            .into_iter()
            .map(|(_, server)| {
                let (child, lists) = self.kept_listing(&server.name, "tools")?.version();
                Some((server.name, server.prefix, child, lists))
            })
            .collect()
    }

    /// A tool listing or a meta tool's call, the index current: answered
    /// in search mode, else as any request.
    fn searched(&mut self, to: RequestId, session: Option<&str>, asked: Asked, now: Instant) {
        let Asked { id, method, params } = asked;
        if !self.search.on() {
            return self.aggregate_request(to, session, id, method, params, false, now);
        }
        let arguments = &params["arguments"];
        let answer = match (method.as_str(), params["name"].as_str()) {
            ("tools/list", _) if params.get("cursor").is_some() => {
                Err("invalid cursor (in search mode the tool list is one page)".to_owned())
            }
            ("tools/list", _) => Ok((self.search_list(session), false)),
            (_, Some(SEARCH_TOOLS)) => self.search_tools(session, arguments),
            (_, Some(CALL_TOOL)) => match self.call_tool(session, &params) {
                Ok(called) => {
                    return self.aggregate_request(to, session, id, method, called, false, now)
                }
                Err(why) => Err(why),
            },
            _ => return self.aggregate_request(to, session, id, method, params, false, now),
        };
        let (body, changed) = match answer {
            Ok((result, changed)) if session.is_none() => {
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
                (stateless_answer(&answer.to_string(), &id, &method), changed)
            }
            Ok((result, changed)) => (mcp::result(&id, result), changed),
            Err(why) => (mcp::error(&id, mcp::INVALID_PARAMS, &why, None), false),
        };
        self.registry.respond(to, Response::json(200, body));
        if let Some(session) = session.filter(|_| changed) {
            self.list_changed(session, "tools");
        }
    }

    /// The tool list in search mode: the meta tools, then the session's
    /// found tools as the plain list gives them.
    fn search_list(&self, session: Option<&str>) -> Value {
        let mut tools: Vec<Value> = meta::definitions().into();
        let fan = session.and_then(|s| self.fans.get(s));
        if let (Some(fan), Some(catalog)) = (fan, &self.search.catalog) {
            let found = fan.found.names().iter();
            tools.extend(found.filter_map(|name| catalog.entry(name)).cloned());
        }
        json!({ "tools": tools })
    }

    /// A `search_tools` call's result, the tools found added to the
    /// session's list (and whether that changed it); or what is wrong with
    /// its arguments.
    fn search_tools(
        &mut self,
        session: Option<&str>,
        arguments: &Value,
    ) -> Result<(Value, bool), String> {
        let args = SearchArgs::read(arguments)?;
        if let Some(server) = &args.server {
            let servers = self.aggregated_names();
            if !servers.contains(server) {
                return Err(format!(
                    "{SEARCH_TOOLS}: no server on /mcp is named `{}` (there are: {})",
                    crate::text::bounded(server, 100),
                    servers.join(", ")
                ));
            }
        }
        let Some(catalog) = &self.search.catalog else {
            return Err(format!("{SEARCH_TOOLS}: the tools are not known yet"));
        };
        let hits = catalog
            .index()
            .search(&args.query, args.limit, args.server.as_deref());
        let shown: Vec<meta::Hit> = hits
            .iter()
            .map(|hit| meta::Hit {
                name: &hit.doc.name,
                server: &hit.doc.server,
                description: &hit.doc.description,
                input_schema: &hit.doc.input_schema,
            })
            .collect();
        let result = meta::search_result(&args.query, &shown);
        let names: Vec<String> = hits.iter().map(|hit| hit.doc.name.clone()).collect();
        let search = &mut self.search;
        search.seen.searched(session, &args.query, names.clone());
        let fan = session.and_then(|s| self.fans.get_mut(s));
        let changed = fan.is_some_and(|fan| fan.found.add(names.iter().map(String::as_str)));
        Ok((result, changed))
    }

    /// A `call_tool` call's `params` as those of a direct `tools/call` of
    /// the tool it names (the call's own `_meta`, its progress token,
    /// kept); or what is wrong with its arguments.
    fn call_tool(&mut self, session: Option<&str>, params: &Value) -> Result<Value, String> {
        let CallArgs { name, arguments } = CallArgs::read(&params["arguments"])?;
        let known = self.search.catalog.as_ref();
        if known.and_then(|c| c.entry(&name)).is_none() {
            return Err(format!(
                "{CALL_TOOL}: Unknown tool: {} ({SEARCH_TOOLS} finds the tools there are)",
                crate::text::bounded(&name, 200)
            ));
        }
        self.search.seen.called(session, &name, true);
        let mut called = json!({"name": name, "arguments": arguments});
        if let Some(meta) = params.get("_meta") {
            called["_meta"] = meta.clone();
        }
        Ok(called)
    }
}
