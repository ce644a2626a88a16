//! Lazy servers ([`Limits::lazy`](super::Limits::lazy)): what a server
//! answered at its last run — its handshake and the first page of each of
//! its lists — kept on disk by the driver, so that a server whose child is
//! not running is listed (and searched) without starting it.
//!
//! The driver reads each server's file at start, and at a reload for the
//! servers it brings ([`kept_file`] names it: a hash of what the server
//! is, so a changed command, argument, environment or directory, or a
//! remote server's new address or headers, is another server with no
//! kept run), and hands it to
//! [`Bridge::handle_kept`](crate::gateway::Bridge::handle_kept); the core asks
//! for a file to be written with
//! [`Routed::Keep`](super::Routed::Keep) when a child's lists differ from
//! the kept ones.
//!
//! While a lazy server's child is stopped, a client's `initialize` and a
//! first page of a list its last run kept are answered from it; anything
//! else starts the child, as without a kept run. A child that finished its
//! handshake, or says one of its lists changed, is asked every list again:
//! what it answers replaces the kept run, and after a start the clients
//! are told of each list that is not what they were given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ServerSpec;

/// The largest kept run, as JSON: a run with larger lists keeps its
/// handshake alone (those lists then start the child), and a larger file
/// is not read.
pub const MAX_KEPT_RUN: usize = 4 << 20;

/// The lists a run keeps, by the member of the answer that holds each.
const LISTS: [&str; 4] = ["tools", "prompts", "resources", "resourceTemplates"];

/// The version of the file's shape: a file of another is not read.
const FORMAT: u32 = 1;

/// The name of the file `spec`'s last run is kept in: the SHA-256 of what
/// makes it that server (its command, arguments, environment and
/// directory; a remote server's address, transport and headers), in hex.
/// Its name, filters and prefix are left out: they change what clients
/// see of the same listings, not the listings.
pub fn kept_file(spec: &ServerSpec) -> String {
    let remote = spec.remote.as_ref().map(|remote| {
        json!({
            "url": format!("{}{}", remote.url.origin(), remote.url.target()),
            "headers": remote.headers,
            "transport": format!("{:?}", remote.transport),
        })
    });
    let what = json!({
        "command": spec.command,
        "env": spec.env,
        "cwd": spec.cwd,
        "remote": remote,
    });
    let hash = Sha256::digest(what.to_string().as_bytes());
    let hex: String = hash.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{hex}.json")
}

/// What a server answered at its last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastRun {
    format: u32,
    /// Its `initialize` result.
    initialize: Value,
    /// Its answer to each list's first page that was its whole list, by
    /// the list's member (`tools`…).
    lists: BTreeMap<String, Answer>,
}

/// A kept answer, in JSON-RPC's words: `{"result": …}` or `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Answer {
    Result(Value),
    Error(Value),
}

impl LastRun {
    /// A kept run read back from its file; why not, for a file that is not
    /// one (too large, not JSON, not this shape).
    pub fn parse(bytes: &[u8]) -> Result<LastRun, String> {
        if bytes.len() > MAX_KEPT_RUN {
            return Err(format!("larger than {} MiB", MAX_KEPT_RUN >> 20));
        }
        let run: LastRun = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if run.format != FORMAT {
            return Err(format!("format {} is not {FORMAT}", run.format));
        }
        if !run.initialize.is_object() {
            return Err("its `initialize` is not an object".to_owned());
        }
        for (key, answer) in &run.lists {
            let whole = match answer {
                Answer::Result(result) => LISTS.contains(&key.as_str()) && is_whole(result, key),
                Answer::Error(error) => LISTS.contains(&key.as_str()) && error.is_object(),
            };
            if !whole {
                return Err(format!("its `{key}` is not a whole list"));
            }
        }
        Ok(run)
    }

    /// The file's contents.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Its `initialize` result.
    pub(crate) fn initialize(&self) -> &Value {
        &self.initialize
    }

    /// The kept answer to a client's request, when it is the first page of
    /// a list this run kept: its result, or its error.
    pub(crate) fn answer(&self, method: &str, params: &Value) -> Option<Result<Value, Value>> {
        if !params["cursor"].is_null() {
            return None;
        }
        let key = LISTS.into_iter().find(|key| list_method(key) == method)?;
        match self.lists.get(key)? {
            Answer::Result(result) => Some(Ok(result.clone())),
            Answer::Error(error) => Some(Err(error.clone())),
        }
    }
}

/// The request that asks for the list in member `key` of its answer.
pub(crate) fn list_method(key: &str) -> &'static str {
    match key {
        "tools" => "tools/list",
        "prompts" => "prompts/list",
        "resources" => "resources/list",
        _ => "resources/templates/list",
    }
}

/// Whether `result` holds the whole list `key`: one page, none after it.
fn is_whole(result: &Value, key: &str) -> bool {
    result[key].is_array() && result["nextCursor"].is_null()
}

/// The notice that tells a client its list `key` changed.
fn changed_notice(key: &str) -> &'static str {
    match key {
        "tools" => "notifications/tools/list_changed",
        "prompts" => "notifications/prompts/list_changed",
        _ => "notifications/resources/list_changed",
    }
}

/// A lazy server's run as its child is asked for it, and the run kept:
/// the part of a [`BridgedServer`](super::BridgedServer) that is lazy's.
#[derive(Debug, Default)]
pub(crate) struct Recall {
    on: bool,
    /// The run answered from while the child is stopped.
    last: Option<LastRun>,
    /// The lists asked of the running child: `None` until answered, then
    /// the answer kept (`None`: nothing to keep).
    asked: BTreeMap<&'static str, Option<Option<Answer>>>,
    /// Whether the lists asked follow a start: clients may have been
    /// answered from the kept run, and are told what differs.
    after_start: bool,
    /// A run learned that is to be written.
    learned: Option<LastRun>,
    /// The last `logging/setLevel` params a client sent while the child
    /// was stopped: the child is told as it starts.
    level: Option<Value>,
}

impl Recall {
    /// `on`: the server is lazy; off, it keeps nothing and asks nothing.
    pub(crate) fn new(on: bool) -> Self {
        Recall {
            on,
            ..Recall::default()
        }
    }

    /// Takes a run kept from an earlier process, unless a fresher one is
    /// known already: whether it was taken.
    pub(crate) fn remember(&mut self, run: LastRun) -> bool {
        let take = self.on && self.last.is_none();
        if take {
            self.last = Some(run);
        }
        take
    }

    /// The kept answer to a client's request, when there is one. A
    /// logging level is held for the child, and taken; a `ping` asks
    /// whether the bridge is there, and is answered (clients ping on a
    /// timer: that alone must not start every server).
    pub(crate) fn answer(&mut self, method: &str, params: &Value) -> Option<Result<Value, Value>> {
        let last = self.last.as_ref()?;
        match method {
            "logging/setLevel" => self.level = Some(params.clone()),
            "ping" => {}
            _ => return last.answer(method, params),
        }
        Some(Ok(json!({})))
    }

    /// The logging level held for the child while it was stopped.
    pub(crate) fn take_level(&mut self) -> Option<Value> {
        self.level.take()
    }

    /// The child (just started, or its lists changed) is to be asked for
    /// every list anew: the requests to send, none when not lazy.
    pub(crate) fn ask_again(&mut self, after_start: bool) -> Vec<&'static str> {
        if !self.on {
            return Vec::new();
        }
        self.after_start = after_start || (self.after_start && !self.asked.is_empty());
        self.asked = LISTS.into_iter().map(|key| (key, None)).collect();
        LISTS.to_vec()
    }

    /// What the method asked for list `key` answered (`None`: nothing
    /// usable, such as a page with more after it). Once every list is in:
    /// the notices for the clients, of each list that is not what the
    /// kept run gave them (after a start only).
    pub(crate) fn listed(
        &mut self,
        key: &str,
        outcome: Result<Value, Value>,
        initialize: Option<&Value>,
    ) -> Vec<&'static str> {
        let Some(slot) = self.asked.get_mut(key) else {
            return Vec::new();
        };
        *slot = Some(match outcome {
            Ok(result) => is_whole(&result, key).then_some(Answer::Result(result)),
            Err(error) => error.is_object().then_some(Answer::Error(error)),
        });
        if self.asked.values().any(Option::is_none) {
            return Vec::new();
        }
        let lists = std::mem::take(&mut self.asked)
            .into_iter()
            .filter_map(|(key, answer)| Some((key.to_owned(), answer??)))
            .collect();
        let Some(initialize) = initialize.cloned() else {
            return Vec::new();
        };
        let mut run = LastRun {
            format: FORMAT,
            initialize,
            lists,
        };
        if run.to_json().len() > MAX_KEPT_RUN {
            tracing::warn!(
                "an MCP server's lists are over {} MiB: they are not kept, and listing them starts it",
                MAX_KEPT_RUN >> 20
            );
            run.lists.clear();
        }
        let notices = match (&self.last, self.after_start) {
            (Some(last), true) => differing(last, &run),
            _ => Vec::new(),
        };
        if self.last.as_ref() != Some(&run) {
            self.learned = Some(run.clone());
            self.last = Some(run);
        }
        self.after_start = false;
        notices
    }

    /// A run learned since the last call, to be written.
    pub(crate) fn take_learned(&mut self) -> Option<LastRun> {
        self.learned.take()
    }
}

/// The notices of the lists `new` has otherwise than `old`, each once.
fn differing(old: &LastRun, new: &LastRun) -> Vec<&'static str> {
    let mut notices: Vec<&'static str> = LISTS
        .into_iter()
        .filter(|key| old.lists.get(*key) != new.lists.get(*key))
        .map(changed_notice)
        .collect();
    notices.dedup();
    notices
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::bridge::{BridgeOutput, BridgedServer, ChildState, ClientId, Limits};
    use crate::mcp;

    fn spec() -> ServerSpec {
        ServerSpec::new("files", vec!["files-mcp".into(), "/srv".into()])
    }

    fn tools(names: &[&str]) -> Value {
        let tools: Vec<Value> = names
            .iter()
            .map(|name| json!({"name": name, "inputSchema": {"type": "object"}}))
            .collect();
        json!({ "tools": tools })
    }

    fn initialize() -> Value {
        json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {"listChanged": true}}, "serverInfo": {"name": "files", "version": "1"}})
    }

    /// A run that kept `names` as its tools and refused the other lists.
    fn run_of(names: &[&str]) -> LastRun {
        let refused = Answer::Error(json!({"code": -32601, "message": "Method not found"}));
        let mut lists: BTreeMap<String, Answer> = LISTS[1..]
            .iter()
            .map(|key| (key.to_string(), refused.clone()))
            .collect();
        lists.insert("tools".into(), Answer::Result(tools(names)));
        LastRun {
            format: FORMAT,
            initialize: initialize(),
            lists,
        }
    }

    /// A lazy server (or not) of `spec`, and what it output, by kind.
    struct Lazy {
        server: BridgedServer,
        now: Instant,
    }

    #[derive(Default)]
    struct Out {
        spawned: bool,
        child: Vec<Value>,
        clients: Vec<(ClientId, Value)>,
    }

    impl Lazy {
        fn new(spec: ServerSpec, lazy: bool) -> Lazy {
            let now = Instant::now();
            let limits = Limits {
                lazy,
                ..Limits::default()
            };
            Lazy {
                server: BridgedServer::new(spec, limits, now),
                now,
            }
        }

        fn call(&mut self, client: ClientId, id: u64, method: &str, params: Value) -> Out {
            let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            let message = mcp::parse(&line.to_string()).unwrap();
            self.server.handle_client_message(client, message, self.now);
            self.drain()
        }

        fn child_says(&mut self, message: Value) -> Out {
            self.server
                .handle_child_line(&message.to_string(), self.now);
            self.drain()
        }

        fn drain(&mut self) -> Out {
            let mut out = Out::default();
            while let Some(output) = self.server.poll_output() {
                match output {
                    BridgeOutput::Spawn { .. } | BridgeOutput::Connect { .. } => {
                        out.spawned = true;
                        self.server.handle_spawned(self.now);
                    }
                    BridgeOutput::ToChild { line, .. } => {
                        out.child.push(serde_json::from_str(&line).unwrap())
                    }
                    BridgeOutput::ToClient {
                        client, message, ..
                    } => out
                        .clients
                        .push((client, serde_json::from_str(&message).unwrap())),
                    _ => {}
                }
            }
            out
        }

        /// The child answers the bridge's `initialize`, then each list it
        /// is asked for: tools `names`, the rest refused. Everything sent
        /// from the handshake on.
        fn child_starts_with(&mut self, sent: &[Value], names: &[&str]) -> Out {
            let init = sent.iter().find(|m| m["method"] == "initialize").unwrap();
            let id = init["id"].clone();
            let out = self.child_says(json!({"jsonrpc": "2.0", "id": id, "result": initialize()}));
            let mut all = self.child_lists(&out.child, names, out.clients);
            all.child.splice(0..0, out.child);
            all
        }

        /// The child answers the lists in `sent`: tools `names`, the rest
        /// refused. What the clients got, `before` first.
        fn child_lists(
            &mut self,
            sent: &[Value],
            names: &[&str],
            before: Vec<(ClientId, Value)>,
        ) -> Out {
            let mut all = Out {
                clients: before,
                ..Out::default()
            };
            let lists: Vec<&Value> = sent
                .iter()
                .filter(|m| m["method"].as_str().is_some_and(|m| m.ends_with("/list")))
                .collect();
            // The bridge's own come last (a client's listing may wait before).
            let asked = &lists[lists.len().saturating_sub(4)..];
            let methods: Vec<&str> = asked.iter().filter_map(|m| m["method"].as_str()).collect();
            let every = [
                "tools/list",
                "prompts/list",
                "resources/list",
                "resources/templates/list",
            ];
            assert_eq!(methods, every, "{sent:?}");
            for request in asked {
                let answer = match request["method"].as_str() {
                    Some("tools/list") => {
                        json!({"jsonrpc": "2.0", "id": request["id"], "result": tools(names)})
                    }
                    _ => {
                        json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "Method not found"}})
                    }
                };
                let out = self.child_says(answer);
                all.child.extend(out.child);
                all.clients.extend(out.clients);
            }
            all
        }
    }

    fn names(result: &Value) -> Vec<&str> {
        result["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_kept_run_reads_back_as_written_and_anything_else_is_refused() {
        let run = run_of(&["read_file"]);
        assert_eq!(LastRun::parse(run.to_json().as_bytes()), Ok(run.clone()));
        let mut paged = run.clone();
        paged.lists.insert(
            "tools".into(),
            Answer::Result(json!({"tools": [], "nextCursor": "2"})),
        );
        let mut other = serde_json::to_value(&run).unwrap();
        other["format"] = json!(2);
        let mut unknown = serde_json::to_value(&run).unwrap();
        unknown["lists"]["secrets"] = json!({"result": {"secrets": []}});
        let large = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_KEPT_RUN));
        for bad in [
            b"{".to_vec(),
            b"[]".to_vec(),
            paged.to_json().into_bytes(),
            other.to_string().into_bytes(),
            unknown.to_string().into_bytes(),
            large.into_bytes(),
        ] {
            assert!(LastRun::parse(&bad).is_err());
        }
    }

    #[test]
    fn the_file_is_the_servers_command_arguments_environment_and_directory() {
        let base = kept_file(&spec());
        assert!(base.ends_with(".json") && base.len() == 64 + 5, "{base}");
        let mut renamed = spec();
        renamed.name = "other".into();
        renamed.prefix = Some("fs".into());
        renamed.tools.exclude = vec!["write_*".into()];
        assert_eq!(kept_file(&renamed), base);
        let mut argued = spec();
        argued.command.push("/tmp".into());
        let mut with_env = spec();
        with_env.env.push(("TOKEN".into(), "1".into()));
        let mut moved = spec();
        moved.cwd = Some("/home".into());
        for changed in [argued, with_env, moved] {
            assert_ne!(kept_file(&changed), base);
        }
    }

    #[test]
    fn a_stopped_lazy_server_lists_from_its_last_run_and_starts_for_a_call() {
        let mut lazy = Lazy::new(spec(), true);
        lazy.server.remember(run_of(&["read_file", "write_file"]));
        let client = lazy.server.open_client(lazy.now);
        let init = json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}});
        let out = lazy.call(client, 1, "initialize", init);
        assert!(!out.spawned && out.child.is_empty());
        assert_eq!(out.clients[0].1["result"], initialize());
        let out = lazy.call(client, 2, "tools/list", json!({}));
        assert!(!out.spawned);
        assert_eq!(names(&out.clients[0].1), ["read_file", "write_file"]);
        // A list the run has as refused is refused the same way.
        let out = lazy.call(client, 3, "prompts/list", Value::Null);
        assert!(!out.spawned);
        assert_eq!(out.clients[0].1["error"]["code"], -32601);
        assert_eq!(lazy.server.state(), ChildState::Stopped);
        let out = lazy.call(client, 4, "tools/call", json!({"name": "read_file"}));
        assert!(out.spawned);
        assert_eq!(lazy.server.state(), ChildState::Starting);
    }

    #[test]
    fn the_fresh_lists_replace_the_kept_run_and_clients_hear_what_changed() {
        let mut lazy = Lazy::new(spec(), true);
        lazy.server.remember(run_of(&["read_file"]));
        let client = lazy.server.open_client(lazy.now);
        lazy.call(client, 1, "tools/list", json!({}));
        let out = lazy.call(client, 2, "tools/call", json!({"name": "read_file"}));
        let out = lazy.child_starts_with(&out.child, &["read_file", "search"]);
        let notices: Vec<&Value> = out
            .clients
            .iter()
            .map(|(_, m)| m)
            .filter(|m| m["method"].is_string())
            .collect();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0]["method"], "notifications/tools/list_changed");
        let learned = lazy.server.take_learned().expect("a run to keep");
        assert_eq!(learned, run_of(&["read_file", "search"]));
        assert_eq!(lazy.server.take_learned(), None);
        // The child's own notice: asked again; the same lists keep nothing
        // new and tell nobody more.
        let out = lazy
            .child_says(json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}));
        assert_eq!(out.clients.len(), 1, "the child's notice alone");
        let out = lazy.child_lists(&out.child, &["read_file", "search"], Vec::new());
        assert!(out.clients.is_empty());
        assert_eq!(lazy.server.take_learned(), None);
    }

    #[test]
    fn a_level_set_while_stopped_is_held_for_the_start() {
        let mut lazy = Lazy::new(spec(), true);
        lazy.server.remember(run_of(&["read_file"]));
        let client = lazy.server.open_client(lazy.now);
        let out = lazy.call(client, 1, "logging/setLevel", json!({"level": "debug"}));
        assert!(!out.spawned);
        assert_eq!(out.clients[0].1["result"], json!({}));
        let out = lazy.call(client, 2, "tools/call", json!({"name": "read_file"}));
        let out = lazy.child_starts_with(&out.child, &["read_file"]);
        let level = out.child.iter().find(|m| m["method"] == "logging/setLevel");
        assert_eq!(
            level.expect("the level")["params"],
            json!({"level": "debug"})
        );
    }

    #[test]
    fn a_ping_while_stopped_is_answered_without_a_start() {
        let mut lazy = Lazy::new(spec(), true);
        lazy.server.remember(run_of(&["read_file"]));
        let client = lazy.server.open_client(lazy.now);
        let out = lazy.call(client, 1, "ping", json!({}));
        assert!(!out.spawned);
        assert_eq!(out.clients[0].1["result"], json!({}));
    }

    #[test]
    fn a_remote_server_is_listed_from_its_last_run_with_no_connection() {
        let url = crate::http::Url::parse("https://mcp.example.com/mcp").unwrap();
        let mut remote = ServerSpec::new("docs", Vec::new());
        remote.remote = Some(crate::upstream::Remote::new(url));
        let mut lazy = Lazy::new(remote, true);
        lazy.server.remember(run_of(&["search_docs"]));
        let client = lazy.server.open_client(lazy.now);
        let out = lazy.call(client, 1, "tools/list", json!({}));
        assert!(!out.spawned);
        assert_eq!(names(&out.clients[0].1), ["search_docs"]);
        let out = lazy.call(client, 2, "tools/call", json!({"name": "search_docs"}));
        assert!(out.spawned, "connected for the call");
    }

    #[test]
    fn a_first_run_learns_its_lists_to_keep() {
        let mut lazy = Lazy::new(spec(), true);
        let client = lazy.server.open_client(lazy.now);
        let out = lazy.call(client, 1, "tools/list", json!({}));
        assert!(out.spawned, "nothing kept: the child starts to list");
        let out = lazy.child_starts_with(&out.child, &["read_file"]);
        // The client's own listing is answered by the child; no notice.
        assert!(out.clients.iter().all(|(_, m)| m["method"].is_null()));
        assert_eq!(lazy.server.take_learned(), Some(run_of(&["read_file"])));
    }

    #[test]
    fn a_kept_listing_goes_through_the_tool_filter_and_a_later_page_starts_the_child() {
        let mut filtered = spec();
        filtered.tools.exclude = vec!["write_*".into()];
        let mut lazy = Lazy::new(filtered, true);
        lazy.server.remember(run_of(&["read_file", "write_file"]));
        let client = lazy.server.open_client(lazy.now);
        let out = lazy.call(client, 1, "tools/list", json!({}));
        assert_eq!(names(&out.clients[0].1), ["read_file"]);
        let out = lazy.call(client, 2, "tools/list", json!({"cursor": "2"}));
        assert!(out.spawned && out.clients.is_empty());
    }

    #[test]
    fn the_aggregate_lists_a_kept_run_with_no_child_and_a_call_keeps_the_fresh_one() {
        use crate::bridge::rig::{answered, Rig};
        use crate::bridge::ChildId;
        let spec = ServerSpec::new("echo", vec!["echo-mcp".into()]);
        let limits = Limits {
            lazy: true,
            ..Limits::default()
        };
        let mut rig = Rig::of(vec![spec.clone()], limits);
        let file = kept_file(&spec);
        let kept = run_of(&["read_file"]).to_json();
        let now = rig.now;
        rig.bridge.handle_kept(&file, kept.as_bytes(), now);
        let post = |rig: &mut Rig, session: Option<&str>, body: Value| {
            let headers = session
                .map(|s| vec![("mcp-session-id".to_owned(), s.to_owned())])
                .unwrap_or_default();
            let body = bytes::Bytes::from(body.to_string());
            rig.request("POST", "/mcp", headers, body).1
        };
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let session = match &post(&mut rig, None, init)[..] {
            [crate::provider::Output::Respond { response, .. }] => {
                response.header("mcp-session-id").unwrap().to_owned()
            }
            other => panic!("{other:?}"),
        };
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let listed = answered(&post(&mut rig, Some(&session), list));
        assert_eq!(names(&listed), ["echo__read_file"]);
        assert!(rig.child.is_empty(), "no child: {:?}", rig.child);
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "echo__read_file", "arguments": {}}});
        post(&mut rig, Some(&session), call);
        let child = ChildId(1);
        let init = rig.last_to(child);
        assert_eq!(init["method"], "initialize");
        rig.says(
            child,
            json!({"jsonrpc": "2.0", "id": init["id"], "result": initialize()}),
        );
        let asked: Vec<Value> = rig.child.clone();
        for request in asked
            .iter()
            .filter(|m| m["method"].as_str().is_some_and(|m| m.ends_with("/list")))
        {
            let answer = match request["method"].as_str() {
                Some("tools/list") => {
                    json!({"jsonrpc": "2.0", "id": request["id"], "result": tools(&["read_file", "grep"])})
                }
                _ => {
                    json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "Method not found"}})
                }
            };
            rig.says(child, answer);
        }
        assert_eq!(rig.kept.len(), 1);
        assert_eq!(rig.kept[0].0, file);
        let fresh = LastRun::parse(rig.kept[0].1.as_bytes()).unwrap();
        assert_eq!(fresh, run_of(&["read_file", "grep"]));
    }

    #[test]
    fn a_server_not_lazy_takes_no_run_and_asks_no_lists() {
        let mut eager = Lazy::new(spec(), false);
        eager.server.remember(run_of(&["read_file"]));
        let client = eager.server.open_client(eager.now);
        let out = eager.call(client, 1, "tools/list", json!({}));
        assert!(out.spawned);
        let init = out
            .child
            .iter()
            .find(|m| m["method"] == "initialize")
            .unwrap();
        let id = init["id"].clone();
        let out = eager.child_says(json!({"jsonrpc": "2.0", "id": id, "result": initialize()}));
        let methods: Vec<&str> = out
            .child
            .iter()
            .filter_map(|m| m["method"].as_str())
            .collect();
        assert_eq!(methods, ["notifications/initialized", "tools/list"]);
        assert_eq!(eager.server.take_learned(), None);
    }
}
