//! `/mcp` driven against two fake children, `files` and `git`, on a
//! virtual clock: what a client sees, and what each child is sent.

use std::time::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use super::super::listing::LISTING_WAIT;
use super::super::Bridge;
use super::owners::MAX_URIS;
use crate::bridge::rig::stateless_headers;
use crate::bridge::{BridgeOutput, ChildId, Limits, Routed, ServerSpec};
use crate::http::{Body, Request, Response};
use crate::provider::{ConnId, Output};

struct Rig {
    bridge: Bridge,
    now: Instant,
    conn: u64,
    /// Every line each child was sent, by server name.
    sent: Vec<(String, Value)>,
    /// What went to clients' open streams.
    events: Vec<String>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(|_| {})
    }

    /// A rig whose two servers' specs are `tweak`ed first.
    fn with(tweak: impl FnOnce(&mut [ServerSpec])) -> Rig {
        let mut specs = ["files", "git"]
            .map(|name| ServerSpec::new(name, vec![format!("{name}-mcp")]))
            .to_vec();
        tweak(&mut specs);
        let now = Instant::now();
        Rig {
            bridge: Bridge::new(specs, Limits::default(), [3; 32], now),
            now,
            conn: 0,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// POSTs `body` to `/mcp` (with `session`, or stateless headers when
    /// `stateless`): the answer, if one came at once.
    fn post(&mut self, session: Option<&str>, body: Value) -> Option<Response> {
        let mut headers = vec![];
        if let Some(s) = session {
            headers.push(("mcp-session-id".to_owned(), s.to_owned()));
        }
        self.request("POST", headers, body)
    }

    /// POSTs `body` to `/mcp` without a session, with the standard
    /// headers of the stateless revision.
    fn post_stateless(&mut self, body: Value) -> Option<Response> {
        self.request("POST", stateless_headers(&body), body)
    }

    fn request(
        &mut self,
        method: &str,
        headers: Vec<(String, String)>,
        body: Value,
    ) -> Option<Response> {
        self.conn += 1;
        let body = match body {
            Value::Null => Bytes::new(),
            body => Bytes::from(body.to_string()),
        };
        let request = Request::new(method, "/mcp", headers, body).unwrap();
        self.bridge
            .handle_request(ConnId(self.conn), request, self.now);
        self.drain()
    }

    /// Carries out what the bridge asked (spawns succeed, lines are kept),
    /// returning the last whole answer to an HTTP request.
    fn drain(&mut self) -> Option<Response> {
        let mut answer = None;
        while let Some(routed) = self.bridge.poll_output() {
            match routed {
                Routed::Http(Output::Respond { response, .. }) => answer = Some(response),
                Routed::Http(Output::Data { data, .. }) => self
                    .events
                    .push(String::from_utf8_lossy(&data).into_owned()),
                Routed::Http(_) => {}
                Routed::Child {
                    child,
                    action: BridgeOutput::Spawn { .. },
                } => self.bridge.handle_spawned(child, self.now),
                Routed::Child {
                    child,
                    action: BridgeOutput::ToChild { line, .. },
                } => {
                    let server = self.server_of(child);
                    self.sent
                        .push((server, serde_json::from_str(&line).unwrap()));
                }
                Routed::Child { .. } | Routed::Login { .. } | Routed::Keep { .. } => {}
            }
        }
        answer
    }

    fn server_of(&self, child: ChildId) -> String {
        let mut children = self.bridge.children();
        children
            .find(|(id, _)| *id == child)
            .map(|(_, c)| c.spec().name.clone())
            .unwrap()
    }

    fn child_of(&self, server: &str) -> ChildId {
        let mut children = self.bridge.children();
        children.find(|(_, c)| c.spec().name == server).unwrap().0
    }

    /// The last message `server`'s child was sent with `method`.
    fn last_sent(&self, server: &str, method: &str) -> Option<Value> {
        let sent = self.sent.iter().rev();
        sent.filter(|(s, m)| s == server && m["method"] == method)
            .map(|(_, m)| m.clone())
            .next()
    }

    /// `server`'s child answers its last `method` request with `result`.
    fn child_answers(&mut self, server: &str, method: &str, result: Value) -> Option<Response> {
        let asked = self.last_sent(server, method).unwrap();
        let line = json!({"jsonrpc": "2.0", "id": asked["id"], "result": result});
        self.child_says(server, line)
    }

    fn child_says(&mut self, server: &str, line: Value) -> Option<Response> {
        let child = self.child_of(server);
        self.bridge
            .handle_child_line(child, &line.to_string(), self.now);
        self.drain()
    }

    /// A request without a body (`GET` opens the session's stream,
    /// `DELETE` ends it) for `session`.
    fn on_session(&mut self, method: &str, session: &str) -> Option<Response> {
        let headers = vec![("mcp-session-id".to_owned(), session.to_owned())];
        self.request(method, headers, Value::Null)
    }

    /// An aggregate session: its id.
    fn session(&mut self, capabilities: Value) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"}}});
        let answer = self.post(None, init).unwrap();
        assert_eq!(
            body(&answer)["result"]["serverInfo"]["name"],
            "mcp-provider"
        );
        answer.header("mcp-session-id").unwrap().to_owned()
    }
    /// Asks `method` (a listing, id 2) through the session, both children
    /// started and through their handshake; nothing answered yet.
    fn list_started(&mut self, session: &str, method: &str) {
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": method});
        assert!(self.post(Some(session), list).is_none(), "waits for both");
        for server in ["files", "git"] {
            self.child_answers(server, "initialize", init_result(server));
        }
    }
}

fn body(response: &Response) -> Value {
    match &response.body {
        Body::Full(bytes) => serde_json::from_slice(bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn init_result(name: &str) -> Value {
    json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
           "serverInfo": {"name": name, "version": "1"}})
}

/// `tools/list` through the session, both children answering: the answer.
fn list_tools(rig: &mut Rig, session: &str) -> Value {
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert!(rig.post(Some(session), list).is_none(), "waits for both");
    for server in ["files", "git"] {
        if rig.last_sent(server, "tools/list").is_none() {
            rig.child_answers(server, "initialize", init_result(server));
        }
    }
    rig.child_answers(
        "files",
        "tools/list",
        json!({"tools": [{"name": "read", "inputSchema": {}}]}),
    );
    let answer = rig
        .child_answers(
            "git",
            "tools/list",
            json!({"tools": [{"name": "log", "inputSchema": {}}]}),
        )
        .unwrap();
    body(&answer)
}

#[test]
fn tools_of_every_server_are_listed_under_their_servers_name_and_called_there() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    let listed = list_tools(&mut rig, &session);
    assert_eq!(listed["id"], 2);
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["files__read", "git__log"]);
    // A call goes to its server under the server's own name, and comes
    // back under the client's id.
    let call = json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
                      "params": {"name": "git__log", "arguments": {"n": 1}}});
    assert!(rig.post(Some(&session), call).is_none());
    let at_git = rig.last_sent("git", "tools/call").unwrap();
    assert_eq!(at_git["params"]["name"], "log");
    assert_eq!(rig.last_sent("files", "tools/call"), None);
    let answer = rig
        .child_answers(
            "git",
            "tools/call",
            json!({"content": [{"type": "text", "text": "ok"}]}),
        )
        .unwrap();
    assert_eq!(body(&answer)["id"], "c1");
    assert_eq!(body(&answer)["result"]["content"][0]["text"], "ok");
}

#[test]
fn a_name_without_a_known_server_is_an_unknown_tool_and_reaches_no_child() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    list_tools(&mut rig, &session);
    let before = rig.sent.len();
    for name in ["read", "nosuch__read", "__read", "files__"] {
        let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                          "params": {"name": name, "arguments": {}}});
        let answer = body(&rig.post(Some(&session), call).unwrap());
        assert_eq!(answer["error"]["code"], -32602, "{name}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("Unknown tool: {name}")),
            "{message}"
        );
    }
    assert_eq!(rig.sent.len(), before, "nothing sent to a child");
}

#[test]
fn a_server_that_does_not_answer_in_time_costs_only_its_own_part() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    rig.list_started(&session, "tools/list");
    rig.child_answers("files", "tools/list", json!({"tools": [{"name": "read"}]}));
    assert_eq!(rig.bridge.poll_timeout(), Some(rig.now + LISTING_WAIT));
    rig.now += LISTING_WAIT;
    rig.bridge.handle_timeout(rig.now);
    let answer = body(&rig.drain().unwrap());
    assert_eq!(answer["result"]["tools"], json!([{"name": "files__read"}]));
    // Its late part answers nobody, but the session's client is told its
    // list changed, and listing again gets it at once (kept).
    let stream = rig.on_session("GET", &session);
    assert_eq!(stream.map(|r| r.status), Some(200));
    let late = json!({"tools": [{"name": "log"}]});
    assert!(rig.child_answers("git", "tools/list", late).is_none());
    let told: Vec<&String> = rig
        .events
        .iter()
        .filter(|e| e.contains("notifications/tools/list_changed"))
        .collect();
    assert_eq!(told.len(), 1, "{:?}", rig.events);
    let again = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let answer = body(&rig.post(Some(&session), again).unwrap());
    assert_eq!(
        answer["result"]["tools"],
        json!([{"name": "files__read"}, {"name": "git__log"}])
    );
}

#[test]
fn pages_go_on_across_servers_each_with_its_own_cursor() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    rig.list_started(&session, "tools/list");
    rig.child_answers(
        "files",
        "tools/list",
        json!({"tools": [{"name": "a"}], "nextCursor": "f2"}),
    );
    let first = body(
        &rig.child_answers("git", "tools/list", json!({"tools": [{"name": "b"}]}))
            .unwrap(),
    );
    let cursor = first["result"]["nextCursor"].as_str().unwrap().to_owned();
    let next =
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"cursor": cursor}});
    assert!(rig.post(Some(&session), next).is_none());
    let asked = rig.last_sent("files", "tools/list").unwrap();
    assert_eq!(asked["params"]["cursor"], "f2");
    let git_lists = rig
        .sent
        .iter()
        .filter(|(s, m)| s == "git" && m["method"] == "tools/list");
    assert_eq!(git_lists.count(), 1, "git had no more to give");
    let second = body(
        &rig.child_answers("files", "tools/list", json!({"tools": [{"name": "c"}]}))
            .unwrap(),
    );
    assert_eq!(second["result"], json!({"tools": [{"name": "files__c"}]}));
    let bad =
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"cursor": "nope"}});
    assert_eq!(
        body(&rig.post(Some(&session), bad).unwrap())["error"]["code"],
        -32602
    );
}

#[test]
fn two_servers_asking_under_the_same_id_are_each_answered_under_their_own() {
    let mut rig = Rig::new();
    let session = rig.session(json!({"sampling": {}}));
    list_tools(&mut rig, &session);
    let stream = rig.on_session("GET", &session);
    assert_eq!(stream.map(|r| r.status), Some(200));
    let ask = json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": {"messages": []}});
    rig.child_says("files", ask.clone());
    rig.child_says("git", ask);
    let asked: Vec<Value> = rig
        .events
        .iter()
        .filter_map(|e| e.split("data: ").nth(1))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(asked.len(), 2, "{:?}", rig.events);
    assert_ne!(asked[0]["id"], asked[1]["id"]);
    // The client answers the second (git's) first: git gets it under its
    // own id 7, files nothing yet.
    for (n, text) in [(1, "for git"), (0, "for files")] {
        let answer = json!({"jsonrpc": "2.0", "id": asked[n]["id"], "result": {"text": text}});
        assert_eq!(
            rig.post(Some(&session), answer).map(|r| r.status),
            Some(202)
        );
    }
    let to = |server: &str| {
        rig.sent
            .iter()
            .filter(|(s, m)| {
                s == server && m.get("method").is_none() && m["result"]["text"].is_string()
            })
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        to("git"),
        [json!({"jsonrpc": "2.0", "id": 7, "result": {"text": "for git"}})]
    );
    assert_eq!(
        to("files"),
        [json!({"jsonrpc": "2.0", "id": 7, "result": {"text": "for files"}})]
    );
}

#[test]
fn a_resource_is_read_from_the_server_that_listed_it() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    rig.list_started(&session, "resources/list");
    rig.child_answers(
        "files",
        "resources/list",
        json!({"resources": [{"uri": "file:///a", "name": "a"}]}),
    );
    let listed = body(
        &rig.child_answers(
            "git",
            "resources/list",
            json!({"resources": [{"uri": "git://HEAD", "name": "head"}]}),
        )
        .unwrap(),
    );
    assert_eq!(
        listed["result"]["resources"][1]["uri"], "git://HEAD",
        "URIs kept"
    );
    let read = json!({"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "git://HEAD"}});
    rig.post(Some(&session), read);
    assert_eq!(
        rig.last_sent("git", "resources/read").unwrap()["params"]["uri"],
        "git://HEAD"
    );
    assert_eq!(rig.last_sent("files", "resources/read"), None);
    let unknown =
        json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {"uri": "x://y"}});
    assert_eq!(
        body(&rig.post(Some(&session), unknown).unwrap())["error"]["code"],
        -32002
    );
}

#[test]
fn ending_the_session_lets_go_of_its_client_on_every_server() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    list_tools(&mut rig, &session);
    let clients = |rig: &Rig| {
        rig.bridge
            .children()
            .map(|(_, c)| c.clients())
            .sum::<usize>()
    };
    assert_eq!(clients(&rig), 2);
    let gone = rig.on_session("DELETE", &session);
    assert_eq!(gone.map(|r| r.status), Some(200));
    assert_eq!(clients(&rig), 0);
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    assert_eq!(rig.post(Some(&session), ping).map(|r| r.status), Some(404));
}

#[test]
fn a_stateless_client_is_served_without_a_session() {
    let mut rig = Rig::new();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let discover =
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}});
    let found = body(&rig.post_stateless(discover).unwrap());
    assert!(
        found["result"]["capabilities"]["tools"].is_object(),
        "{found}"
    );
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "files__read", "arguments": {}, "_meta": meta}});
    assert!(rig.post_stateless(call).is_none());
    rig.child_answers("files", "initialize", init_result("files"));
    assert_eq!(
        rig.last_sent("files", "tools/call").unwrap()["params"]["name"],
        "read"
    );
    let answer = body(
        &rig.child_answers("files", "tools/call", json!({"content": []}))
            .unwrap(),
    );
    assert_eq!(answer["result"]["resultType"], "complete");
    assert_eq!(answer["id"], 2);
}

#[test]
fn the_stateless_revision_s_rules_hold_at_the_aggregate_too() {
    let mut rig = Rig::new();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let ask = |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 4, "method": method, "params": params});
    let refused = |answer: Option<Response>| {
        let answer = answer.unwrap();
        (answer.status, body(&answer)["error"]["code"].clone())
    };
    // Answered by the aggregate itself in a session, not in this revision.
    for method in [
        "ping",
        "logging/setLevel",
        "initialize",
        "resources/subscribe",
    ] {
        let asked = ask(
            method,
            json!({"uri": "x://y", "level": "info", "_meta": meta}),
        );
        assert_eq!(refused(rig.post_stateless(asked)), (404, json!(-32601)));
    }
    let bare = ask("tools/list", json!({}));
    let mut headers = stateless_headers(&bare);
    headers.push(("mcp-protocol-version".into(), "2026-07-28".into()));
    assert_eq!(
        refused(rig.request("POST", headers, bare)),
        (400, json!(-32602))
    );
    let list = ask("tools/list", json!({"_meta": meta}));
    let mut headers = stateless_headers(&list);
    headers.retain(|(name, _)| name != "mcp-method");
    assert_eq!(
        refused(rig.request("POST", headers, list)),
        (400, json!(-32020))
    );
    assert!(rig.sent.is_empty(), "{:?}", rig.sent);
    // A URI no server lists is not found, and the error says which.
    let read = ask(
        "resources/read",
        json!({"uri": "x://nowhere", "_meta": meta}),
    );
    let answer = body(&rig.post_stateless(read).unwrap());
    assert_eq!(answer["error"]["data"]["uri"], "x://nowhere", "{answer}");
}

#[test]
fn a_session_of_the_aggregate_is_not_one_of_a_single_server() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    let ping = json!({"jsonrpc": "2.0", "id": 9, "method": "ping"});
    let request = Request::new(
        "POST",
        "/mcp/files",
        vec![("mcp-session-id".into(), session)],
        Bytes::from(ping.to_string()),
    )
    .unwrap();
    rig.bridge.handle_request(ConnId(99), request, rig.now);
    assert_eq!(rig.drain().map(|r| r.status), Some(404));
}

#[test]
fn a_whole_list_is_kept_until_its_child_says_it_changed() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    let first = list_tools(&mut rig, &session);
    let asked = |rig: &Rig, server: &str| {
        let sent = rig.sent.iter();
        sent.filter(|(s, m)| s == server && m["method"] == "tools/list")
            .count()
    };
    // Listed again at once, without asking either child.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let again = body(&rig.post(Some(&session), list.clone()).unwrap());
    assert_eq!(again, first);
    assert_eq!((asked(&rig, "files"), asked(&rig, "git")), (1, 1));
    // git's list changed: only git is asked, and its new list shown.
    let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    rig.child_says("git", changed);
    assert!(rig.post(Some(&session), list).is_none());
    assert_eq!((asked(&rig, "files"), asked(&rig, "git")), (1, 2));
    let new = json!({"tools": [{"name": "log"}, {"name": "blame"}]});
    let listed = body(&rig.child_answers("git", "tools/list", new).unwrap());
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["files__read", "git__log", "git__blame"]);
}

/// `resources/list` (or `resources/templates/list`, by `key`) through the
/// session, `git` answering before `files`, each with its `uri` (or
/// `uriTemplate`) entries.
fn list_resources(rig: &mut Rig, session: &str, key: &str, files: &[&str], git: &[&str]) {
    let (method, field) = match key {
        "resources" => ("resources/list", "uri"),
        _ => ("resources/templates/list", "uriTemplate"),
    };
    rig.list_started(session, method);
    let entries = |uris: &[&str]| -> Vec<Value> {
        let entry = |uri: &&str| json!({ field: uri, "name": "r" });
        uris.iter().map(entry).collect()
    };
    rig.child_answers("git", method, json!({ key: entries(git) }));
    let listed = rig.child_answers("files", method, json!({ key: entries(files) }));
    assert_eq!(listed.map(|r| r.status), Some(200));
}

/// Reads `uri` through the session: the server it reached, or the error
/// code it was answered with.
fn read(rig: &mut Rig, session: &str, uri: &str) -> Result<String, Value> {
    let before = rig.sent.len();
    let read =
        json!({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": uri}});
    if let Some(answer) = rig.post(Some(session), read) {
        return Err(body(&answer)["error"]["code"].clone());
    }
    let reached = rig.sent[before..]
        .iter()
        .filter(|(_, m)| m["method"] == "resources/read" && m["params"]["uri"] == uri);
    let servers: Vec<String> = reached.map(|(s, _)| s.clone()).collect();
    match &servers[..] {
        [server] => Ok(server.clone()),
        other => panic!("{uri} reached {other:?}"),
    }
}

#[test]
fn a_uri_two_servers_list_is_read_from_the_first_in_the_configuration_and_logged_once() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    // git answers first, yet files, first in the configuration, keeps it.
    list_resources(
        &mut rig,
        &session,
        "resources",
        &["file:///a"],
        &["file:///a", "git://HEAD"],
    );
    assert_eq!(read(&mut rig, &session, "file:///a"), Ok("files".into()));
    assert_eq!(read(&mut rig, &session, "git://HEAD"), Ok("git".into()));
    let conflict = vec![("file:///a".to_owned(), "git".to_owned())];
    assert_eq!(rig.bridge.owners.conflicts(), conflict);
    // Listed again (the kept lists): the same owner, the conflict not
    // logged again.
    let again = json!({"jsonrpc": "2.0", "id": 6, "method": "resources/list"});
    assert_eq!(rig.post(Some(&session), again).map(|r| r.status), Some(200));
    assert_eq!(read(&mut rig, &session, "file:///a"), Ok("files".into()));
    assert_eq!(rig.bridge.owners.conflicts(), conflict);
}

#[test]
fn a_later_servers_broad_or_longer_template_takes_no_uri_of_the_first() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    let git = ["file:///{path}", "file:///home/me/{path}"];
    list_resources(
        &mut rig,
        &session,
        "resourceTemplates",
        &["file:///home/{path}"],
        &git,
    );
    assert_eq!(
        read(&mut rig, &session, "file:///home/me/key"),
        Ok("files".into())
    );
    // What only git's template covers is git's; a template that starts
    // with a variable claims nothing.
    assert_eq!(
        read(&mut rig, &session, "file:///etc/hosts"),
        Ok("git".into())
    );
    assert_eq!(read(&mut rig, &session, "x://y"), Err(json!(-32002)));
}

#[test]
fn a_uri_a_later_server_lists_inside_the_first_ones_template_stays_the_first_ones() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    list_resources(
        &mut rig,
        &session,
        "resourceTemplates",
        &["file:///home/{path}"],
        &[],
    );
    list_resources(
        &mut rig,
        &session,
        "resources",
        &[],
        &["file:///home/me/key"],
    );
    assert_eq!(
        read(&mut rig, &session, "file:///home/me/key"),
        Ok("files".into())
    );
    let conflict = ("file:///home/me/key".to_owned(), "git".to_owned());
    assert_eq!(rig.bridge.owners.conflicts(), [conflict]);
}

#[test]
fn a_server_listing_past_its_bound_loses_only_its_own_oldest() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    let flood: Vec<String> = (0..MAX_URIS + 5).map(|n| format!("git://n/{n}")).collect();
    let flood: Vec<&str> = flood.iter().map(String::as_str).collect();
    list_resources(&mut rig, &session, "resources", &["file:///a"], &flood);
    assert_eq!(rig.bridge.owners.uris_of("git"), MAX_URIS);
    assert_eq!(rig.bridge.owners.uris_of("files"), 1);
    assert_eq!(read(&mut rig, &session, "file:///a"), Ok("files".into()));
    let newest = format!("git://n/{}", MAX_URIS + 4);
    assert_eq!(read(&mut rig, &session, &newest), Ok("git".into()));
    assert_eq!(read(&mut rig, &session, "git://n/0"), Err(json!(-32002)));
}

#[test]
fn a_configured_uri_beginning_decides_before_any_listing() {
    let mut rig = Rig::with(|specs| {
        specs[1].resources = vec!["file:///repo/".into(), "file:///repo/src/".into()];
        specs[0].resources = vec!["file:///repo/src/main.rs".into()];
    });
    let session = rig.session(json!({}));
    let files = ["file:///repo/a", "file:///repo/src/main.rs", "file:///b"];
    list_resources(&mut rig, &session, "resources", &files, &[]);
    assert_eq!(read(&mut rig, &session, "file:///repo/a"), Ok("git".into()));
    // The longest configured beginning wins.
    let main = "file:///repo/src/main.rs";
    assert_eq!(read(&mut rig, &session, main), Ok("files".into()));
    assert_eq!(read(&mut rig, &session, "file:///b"), Ok("files".into()));
}

#[test]
fn a_removed_server_takes_its_resources_with_it() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    list_resources(
        &mut rig,
        &session,
        "resources",
        &["file:///a"],
        &["git://HEAD"],
    );
    assert_eq!(rig.bridge.owners.uris_of("git"), 1);
    let files = vec![ServerSpec::new("files", vec!["files-mcp".into()])];
    let changed = rig.bridge.reconfigure(files, Limits::default(), rig.now);
    assert_eq!(changed.unwrap().removed, ["git"]);
    assert_eq!(rig.bridge.owners.uris_of("git"), 0);
    assert_eq!(rig.bridge.owners.uris_of("files"), 1);
}

#[test]
fn the_level_set_before_any_server_is_used_reaches_each_as_it_joins() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    let set = |level: &str| json!({"jsonrpc": "2.0", "id": 3, "method": "logging/setLevel", "params": {"level": level}});
    let answer = rig.post(Some(&session), set("debug")).unwrap();
    assert_eq!(body(&answer)["result"], json!({}));
    assert!(rig.sent.is_empty(), "no server used yet: {:?}", rig.sent);
    // Each member is given it once it is initialized, before the listing.
    list_tools(&mut rig, &session);
    for server in ["files", "git"] {
        let methods: Vec<&Value> = rig
            .sent
            .iter()
            .filter(|(s, _)| s == server)
            .map(|(_, m)| &m["method"])
            .collect();
        let at = |method: &str| methods.iter().position(|m| *m == method);
        assert!(at("initialize") < at("logging/setLevel"), "{methods:?}");
        assert!(at("logging/setLevel") < at("tools/list"), "{methods:?}");
        let sent = rig.last_sent(server, "logging/setLevel").unwrap();
        assert_eq!(sent["params"], json!({"level": "debug"}));
    }
    // A new level goes to the members there at once.
    assert!(rig.post(Some(&session), set("error")).is_some());
    for server in ["files", "git"] {
        let sent = rig.last_sent(server, "logging/setLevel").unwrap();
        assert_eq!(sent["params"], json!({"level": "error"}));
    }
}

/// The names of a `tools/list` answer.
fn tool_names(listed: &Value) -> Vec<String> {
    let tools = listed["result"]["tools"].as_array().cloned();
    let tools = tools.unwrap_or_default().into_iter();
    tools
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `tools/list` through the session, `files` and `git` answering with
/// tools of these names: the answer.
fn list_named(rig: &mut Rig, session: &str, files: &[&str], git: &[&str]) -> Value {
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert!(rig.post(Some(session), list).is_none(), "waits for both");
    for server in ["files", "git"] {
        if rig.last_sent(server, "tools/list").is_none() {
            rig.child_answers(server, "initialize", init_result(server));
        }
    }
    let tools = |names: &[&str]| {
        let tools: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {}, "annotations": {"readOnlyHint": true}}))
            .collect();
        json!({ "tools": tools })
    };
    rig.child_answers("files", "tools/list", tools(files));
    let answer = rig.child_answers("git", "tools/list", tools(git)).unwrap();
    body(&answer)
}

/// Calls `name` through `session` (or stateless): what reached which
/// child under which name.
fn call(rig: &mut Rig, session: Option<&str>, name: &str) -> Option<Response> {
    let call = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                      "params": {"name": name, "arguments": {}}});
    rig.post(session, call)
}

const LONG: &str = "create_or_update_a_pull_request_review_comment_with_suggestions_for_a_file";

#[test]
fn an_empty_prefix_lists_names_bare_a_long_one_is_shortened_and_each_is_called_exactly() {
    let mut rig = Rig::with(|specs| {
        specs[0].prefix = Some(String::new());
        specs[1].prefix = Some("gh".into());
    });
    let session = rig.session(json!({}));
    let listed = list_named(&mut rig, &session, &["read"], &["log", LONG]);
    let names = tool_names(&listed);
    assert_eq!(names[..2], ["read", "gh__log"]);
    let short = &names[2];
    assert_eq!(short.len(), 64, "{short}");
    assert!(short.starts_with("gh__create_or_update"), "{short}");
    // What else a tool says passes unchanged.
    assert_eq!(
        listed["result"]["tools"][2]["annotations"]["readOnlyHint"],
        true
    );
    assert!(call(&mut rig, Some(&session), short).is_none());
    let at_git = rig.last_sent("git", "tools/call").unwrap();
    assert_eq!(at_git["params"]["name"], LONG);
    assert!(call(&mut rig, Some(&session), "read").is_none());
    let at_files = rig.last_sent("files", "tools/call").unwrap();
    assert_eq!(at_files["params"]["name"], "read");
    // Listed again (the kept lists, at once): the same names.
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let again = body(&rig.post(Some(&session), list).unwrap());
    assert_eq!(tool_names(&again), names);
}

/// A name no server listed goes to the one server whose names are bare,
/// as it was written (a server may take tools it does not list); with
/// two bare servers, or none, it is an unknown tool.
#[test]
fn an_unlisted_name_goes_to_the_one_bare_server_and_is_unknown_with_two() {
    let mut rig = Rig::with(|specs| specs[0].prefix = Some(String::new()));
    let session = rig.session(json!({}));
    list_named(&mut rig, &session, &["read"], &["log"]);
    for name in ["hidden", "nosuch__hidden"] {
        assert!(call(&mut rig, Some(&session), name).is_none(), "{name}");
        let at_files = rig.last_sent("files", "tools/call").unwrap();
        assert_eq!(at_files["params"]["name"], name);
    }
    assert_eq!(rig.last_sent("git", "tools/call"), None);
    // A prefixed name still goes to its server.
    assert!(call(&mut rig, Some(&session), "git__log").is_none());
    assert_eq!(
        rig.last_sent("git", "tools/call").unwrap()["params"]["name"],
        "log"
    );

    let mut rig = Rig::with(|specs| {
        for spec in specs.iter_mut() {
            spec.prefix = Some(String::new());
        }
    });
    let session = rig.session(json!({}));
    list_named(&mut rig, &session, &["read"], &["log"]);
    let before = rig.sent.len();
    let answer = body(&call(&mut rig, Some(&session), "hidden").unwrap());
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert_eq!(rig.sent.len(), before, "nothing sent to a child");
}

#[test]
fn a_bare_name_another_bare_server_has_gets_the_later_server_its_prefix() {
    let mut rig = Rig::with(|specs| {
        for spec in specs.iter_mut() {
            spec.prefix = Some(String::new());
        }
    });
    let session = rig.session(json!({}));
    let listed = list_named(&mut rig, &session, &["read", "stat"], &["read", "log"]);
    assert_eq!(
        tool_names(&listed),
        ["read", "stat", "git__read", "git__log"]
    );
    assert!(call(&mut rig, Some(&session), "git__read").is_none());
    let at_git = rig.last_sent("git", "tools/call").unwrap();
    assert_eq!(at_git["params"]["name"], "read");
    assert!(call(&mut rig, Some(&session), "read").is_none());
    assert_eq!(
        rig.last_sent("files", "tools/call").unwrap()["params"]["name"],
        "read"
    );
}

#[test]
fn a_shortened_name_called_before_any_listing_is_found_by_listing_first() {
    let mut rig = Rig::with(|specs| specs[0].prefix = Some(String::new()));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let short = super::names::Names::default()
        .name(super::names::Kind::Tool, "git", LONG)
        .unwrap();
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": short, "arguments": {}, "_meta": meta}});
    assert!(rig.post_stateless(call).is_none());
    for server in ["files", "git"] {
        rig.child_answers(server, "initialize", init_result(server));
    }
    assert_eq!(rig.last_sent("git", "tools/call"), None, "listed first");
    rig.child_answers("files", "tools/list", json!({"tools": [{"name": "read"}]}));
    rig.child_answers("git", "tools/list", json!({"tools": [{"name": LONG}]}));
    let at_git = rig.last_sent("git", "tools/call").unwrap();
    assert_eq!(at_git["params"]["name"], LONG);
    assert_eq!(rig.last_sent("files", "tools/call"), None);
}

#[test]
fn a_name_in_params_of_any_shape_is_refused_never_a_crash() {
    let mut rig = Rig::new();
    let session = rig.session(json!({}));
    for params in [
        json!([1, 2]),
        json!("files__read"),
        json!({"name": 5}),
        json!({"name": {"a": 1}}),
    ] {
        for method in ["tools/call", "prompts/get"] {
            let request = json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": params});
            let answer = body(&rig.post(Some(&session), request).unwrap());
            assert_eq!(answer["error"]["code"], -32602, "{answer}");
        }
    }
    for reference in [
        json!("x"),
        json!([1]),
        json!({"type": "ref/prompt", "name": 3}),
    ] {
        let request = json!({"jsonrpc": "2.0", "id": 6, "method": "completion/complete",
                             "params": {"ref": reference, "argument": {}}});
        let answer = rig.post(Some(&session), request).map(|a| body(&a));
        assert!(
            answer.as_ref().is_none_or(|a| a["error"].is_object()),
            "{answer:?}"
        );
    }
}

/// Raw JSON-RPC at `/mcp`: a name without the separator, a prefix no
/// server has, a resource no server has, a method there is not: each a
/// clear error in JSON-RPC's shape. A server whose name is too long for a
/// prefix has its tools' names cut to 64 (a head, `-`, and 8 hex digits of
/// the whole name's SHA-256), each called by the name listed, and is
/// still served at its own path.
#[test]
fn names_that_mean_nothing_are_clear_errors_and_a_long_server_name_is_cut() {
    use sha2::{Digest, Sha256};

    let long = "x".repeat(125);
    let mut rig = Rig::with(|specs| specs[1].name = long.clone());
    let session = rig.session(json!({}));
    let ask = |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
    let answered = |rig: &mut Rig, asked: Value| body(&rig.post(Some(&session), asked).unwrap());
    for (name, why) in [
        ("echo", "not listed; names here are PREFIX__NAME"),
        ("nosuch__echo", "no bridged server has the prefix `nosuch`"),
    ] {
        let answer = answered(
            &mut rig,
            ask("tools/call", json!({"name": name, "arguments": {}})),
        );
        let error = &answer["error"];
        assert_eq!(error["code"], -32602, "{answer}");
        assert_eq!(error["message"], format!("Unknown tool: {name} ({why})"));
    }
    let read = answered(
        &mut rig,
        ask("resources/read", json!({"uri": "nowhere://x"})),
    );
    assert_eq!(read["error"]["code"], -32002, "{read}");
    let nonsense = answered(&mut rig, ask("tools/nonsense", json!({})));
    assert_eq!(nonsense["error"]["code"], -32601, "{nonsense}");
    assert!(rig.sent.iter().all(|(_, m)| m["method"] != "tools/call"));

    assert!(rig
        .post(Some(&session), ask("tools/list", json!({})))
        .is_none());
    for server in ["files", long.as_str()] {
        if rig.last_sent(server, "tools/list").is_none() {
            rig.child_answers(server, "initialize", init_result(server));
        }
    }
    let tools = |name: &str| json!({"tools": [{"name": name, "inputSchema": {}}]});
    rig.child_answers("files", "tools/list", tools("echo"));
    let listed = rig.child_answers(&long, "tools/list", tools("echo"));
    let names = tool_names(&body(&listed.unwrap()));
    assert!(names.contains(&"files__echo".to_owned()), "{names:?}");
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    assert!(
        names
            .iter()
            .all(|n| n.len() <= 64 && !n.is_empty() && n.chars().all(allowed)),
        "{names:?}"
    );
    let whole = format!("{long}__echo");
    let hash: String = Sha256::digest(whole.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let short = format!("{}-{}", &whole[..55], &hash[..8]);
    assert!(names.contains(&short), "{short} in {names:?}");
    let echo = ask(
        "tools/call",
        json!({"name": short, "arguments": {"message": "long"}}),
    );
    assert!(rig.post(Some(&session), echo).is_none());
    let sent = rig.last_sent(&long, "tools/call").unwrap();
    assert_eq!(sent["params"]["name"], "echo");
    let text = json!({"content": [{"type": "text", "text": "Echo: long"}]});
    let answer = body(&rig.child_answers(&long, "tools/call", text).unwrap());
    assert_eq!(answer["result"]["content"][0]["text"], "Echo: long");
    // At its own path, under its own name.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let own = Request::new(
        "POST",
        &format!("/mcp/{long}"),
        vec![],
        Bytes::from(init.to_string()),
    );
    rig.bridge
        .handle_request(ConnId(999), own.unwrap(), rig.now);
    let own = rig
        .drain()
        .expect("answered from the server's kept handshake");
    assert_eq!(own.status, 200);
    assert_eq!(body(&own)["result"]["serverInfo"]["name"], long.as_str());
}
