//! The bridge driven against a fake child on a virtual clock: client
//! messages and child lines fed in, outputs read back, deadlines asserted
//! to the instant.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::mcp;
use crate::upstream::Outline;

mod strict;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// A bridge, its fake child and clients, and a virtual clock.
struct Rig {
    bridge: BridgedServer,
    t0: Instant,
    now: Instant,
}

/// What came out, sorted by where it goes (order kept within each).
#[derive(Debug, Default)]
struct Out {
    child: Vec<Value>,
    clients: Vec<(ClientId, Value)>,
    process: Vec<BridgeOutput>,
    /// Everything, in order.
    all: Vec<BridgeOutput>,
}

impl Out {
    fn to(&self, client: ClientId) -> Vec<Value> {
        self.clients
            .iter()
            .filter(|(c, _)| *c == client)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

impl Rig {
    fn new() -> Rig {
        Rig::with(|_, _| {})
    }

    fn with(tweak: impl FnOnce(&mut ServerSpec, &mut Limits)) -> Rig {
        let mut spec = ServerSpec::new("echo", vec!["echo-mcp".into(), "--stdio".into()]);
        let mut limits = Limits::default();
        tweak(&mut spec, &mut limits);
        let t0 = Instant::now();
        Rig {
            bridge: BridgedServer::new(spec, limits, t0),
            t0,
            now: t0,
        }
    }

    fn drain(&mut self) -> Out {
        let mut out = Out::default();
        while let Some(o) = self.bridge.poll_output() {
            match &o {
                BridgeOutput::ToChild { line, .. } => {
                    out.child.push(serde_json::from_str(line).unwrap())
                }
                BridgeOutput::ToClient {
                    client, message, ..
                } => out
                    .clients
                    .push((*client, serde_json::from_str(message).unwrap())),
                _ => out.process.push(o.clone()),
            }
            out.all.push(o);
        }
        out
    }

    fn open(&mut self) -> ClientId {
        self.bridge.open_client(self.now)
    }

    fn close(&mut self, client: ClientId) {
        self.bridge.close_client(client, self.now);
    }

    fn client_says(&mut self, client: ClientId, message: Value) {
        let message = mcp::parse(&message.to_string()).unwrap();
        self.bridge.handle_client_message(client, message, self.now);
    }

    fn call(&mut self, client: ClientId, id: Value, method: &str, params: Value) {
        self.client_says(
            client,
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        );
    }

    fn child_says(&mut self, line: Value) {
        self.bridge.handle_child_line(&line.to_string(), self.now);
    }

    fn child_answers(&mut self, id: &Value, result: Value) {
        self.child_says(json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn spawned(&mut self) {
        self.bridge.handle_spawned(self.now);
    }

    fn exit(&mut self) {
        self.bridge.handle_child_exit("", self.now);
    }

    /// Moves the clock to `t0 + at` and delivers the timeout.
    fn at(&mut self, at: Duration) {
        self.now = self.t0 + at;
        self.bridge.handle_timeout(self.now);
    }

    fn deadline(&self) -> Option<Duration> {
        self.bridge.poll_timeout().map(|t| t - self.t0)
    }

    /// The fake child answers the bridge's `initialize` (read from `out`).
    fn child_initializes(&mut self, out: &Out) {
        let init = out
            .child
            .iter()
            .find(|m| m["method"] == "initialize")
            .expect("an initialize for the child");
        self.child_answers(&init["id"], init_result());
    }

    /// A client that initialized, with the child running; outputs drained.
    fn running(&mut self) -> ClientId {
        let client = self.open();
        self.call(client, json!(0), "initialize", initialize_params());
        self.spawned();
        let out = self.drain();
        self.child_initializes(&out);
        self.drain();
        assert_eq!(self.bridge.state(), ChildState::Running);
        client
    }
}

fn initialize_params() -> Value {
    json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {"sampling": {}, "roots": {"listChanged": true}, "elicitation": {}},
        "clientInfo": {"name": "inspector", "version": "0.1"},
    })
}

/// The handshake a shared child gets: the first client's, declaring every
/// capability the bridge can route to some client.
fn shared_initialize_params() -> Value {
    let mut params = initialize_params();
    params["capabilities"] = json!({
        "sampling": {"context": {}, "tools": {}},
        "elicitation": {"form": {}, "url": {}},
        "roots": {"listChanged": true},
    });
    params
}

fn init_result() -> Value {
    json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {"tools": {}, "resources": {"subscribe": true}},
        "serverInfo": {"name": "echo", "version": "1"},
    })
}

/// What the bridge writes to a child: `line`, with the outline its text has.
fn to_child(line: String) -> BridgeOutput {
    let outline = Outline::of(&line).unwrap();
    BridgeOutput::ToChild { line, outline }
}

fn error_of(message: &Value) -> (i64, String) {
    (
        message["error"]["code"].as_i64().unwrap(),
        message["error"]["message"].as_str().unwrap().to_owned(),
    )
}

fn spawn_output() -> BridgeOutput {
    BridgeOutput::Spawn {
        command: vec!["echo-mcp".into(), "--stdio".into()],
        env: vec![],
        cwd: None,
    }
}

// 1. Lazy start and one handshake.

#[test]
fn the_first_request_spawns_the_child_which_is_initialized_before_queued_calls_are_sent() {
    let mut rig = Rig::new();
    let a = rig.open();
    assert!(rig.drain().is_empty(), "opening a client starts nothing");
    assert_eq!(rig.bridge.state(), ChildState::Stopped);

    rig.call(a, json!("init-a"), "initialize", initialize_params());
    assert_eq!(rig.drain().all, [spawn_output()]);
    assert_eq!(rig.bridge.state(), ChildState::Starting);
    rig.call(a, json!(1), "tools/list", Value::Null);
    assert!(rig.drain().is_empty(), "calls wait for the handshake");
    assert_eq!(rig.bridge.in_flight(), 2);

    rig.spawned();
    let out = rig.drain();
    assert_eq!(
        out.child,
        [
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": shared_initialize_params()})
        ]
    );
    rig.child_answers(&json!(1), init_result());
    let out = rig.drain();
    assert_eq!(rig.bridge.state(), ChildState::Running);
    assert_eq!(rig.bridge.initialize_result(), Some(&init_result()));
    assert_eq!(
        out.all,
        [
            to_child(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into()),
            BridgeOutput::ToClient {
                client: a,
                message: mcp::result(&json!("init-a"), init_result()),
                answers: Some(r#""init-a""#.into()),
            },
            to_child(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).to_string()),
        ]
    );
    rig.child_answers(&json!(2), json!({"tools": []}));
    assert_eq!(
        rig.drain().to(a),
        [json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": []}})]
    );
    assert_eq!(rig.bridge.in_flight(), 0);
}

#[test]
fn a_request_before_any_initialize_starts_the_child_with_default_params() {
    let mut rig = Rig::new();
    let a = rig.open();
    rig.call(a, json!(1), "tools/list", json!({}));
    rig.spawned();
    let init = rig.drain().child.remove(0);
    assert_eq!(init["method"], "initialize");
    assert_eq!(init["params"]["protocolVersion"], "2025-11-25");
    assert_eq!(
        init["params"]["capabilities"],
        shared_initialize_params()["capabilities"]
    );
    assert_eq!(init["params"]["clientInfo"]["name"], "mcp-local-provider");
}

// 2. `initialize` replayed.

#[test]
fn every_later_initialize_is_answered_from_the_cache_and_initialized_is_swallowed() {
    let mut rig = Rig::new();
    rig.running();
    let b = rig.open();
    // It asks for another version: it gets the one the child speaks.
    let mut asked = initialize_params();
    asked["protocolVersion"] = json!("2024-11-05");
    rig.call(b, json!("b-init"), "initialize", asked);
    rig.client_says(
        b,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    let out = rig.drain();
    assert!(out.child.is_empty(), "the child is initialized only once");
    assert_eq!(
        out.to(b),
        [json!({"jsonrpc": "2.0", "id": "b-init", "result": init_result()})]
    );
}

// 3. Ids remapped.

#[test]
fn two_clients_using_the_same_id_each_get_only_their_own_answer() {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    rig.call(a, json!(7), "tools/call", json!({"name": "who"}));
    rig.call(b, json!(7), "tools/call", json!({"name": "who"}));
    rig.call(b, json!("s-1"), "tools/call", json!({"name": "who"}));
    let sent: Vec<Value> = rig.drain().child.iter().map(|m| m["id"].clone()).collect();
    assert_eq!(sent, [json!(2), json!(3), json!(4)]);

    rig.child_answers(&json!(3), json!({"for": "b"}));
    rig.child_answers(&json!(2), json!({"for": "a"}));
    rig.child_says(json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32602, "message": "no such tool", "data": 1}}));
    let out = rig.drain();
    assert_eq!(
        out.to(a),
        [json!({"jsonrpc": "2.0", "id": 7, "result": {"for": "a"}})]
    );
    assert_eq!(
        out.to(b),
        [
            json!({"jsonrpc": "2.0", "id": 7, "result": {"for": "b"}}),
            json!({"jsonrpc": "2.0", "id": "s-1", "error": {"code": -32602, "message": "no such tool", "data": 1}}),
        ]
    );
}

#[test]
fn an_answer_under_an_unknown_id_is_dropped() {
    let mut rig = Rig::new();
    rig.running();
    rig.child_answers(&json!(999), json!({}));
    rig.child_answers(&json!("2"), json!({}));
    rig.child_answers(&json!(-1), json!({}));
    assert!(rig.drain().is_empty());
}

// 4. Progress.

#[test]
fn progress_reaches_only_the_caller_under_its_own_token() {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    rig.call(
        a,
        json!(1),
        "tools/call",
        json!({"name": "slow", "_meta": {"progressToken": "tok"}}),
    );
    rig.call(
        b,
        json!(1),
        "tools/call",
        json!({"name": "slow", "_meta": {"progressToken": "tok"}}),
    );
    let sent = rig.drain().child;
    let (ta, tb) = (
        &sent[0]["params"]["_meta"]["progressToken"],
        &sent[1]["params"]["_meta"]["progressToken"],
    );
    assert_ne!(ta, tb, "each call gets a token of its own");

    let progress = |token: &Value| json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1, "total": 2}});
    rig.child_says(progress(tb));
    let out = rig.drain();
    assert_eq!(out.to(a), Vec::<Value>::new());
    assert_eq!(
        out.to(b),
        [
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "tok", "progress": 1, "total": 2}})
        ]
    );
    // Once the call is answered its token is forgotten.
    rig.child_answers(&sent[1]["id"], json!({}));
    rig.drain();
    rig.child_says(progress(tb));
    assert!(rig.drain().is_empty());
}

// 5. Cancellation and closing.

#[test]
fn a_cancelled_call_is_cancelled_at_the_child_under_its_id_and_its_late_answer_dropped() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!("c"), "tools/call", json!({"name": "slow"}));
    let child_id = rig.drain().child[0]["id"].clone();
    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "c", "reason": "user"}}),
    );
    assert_eq!(
        rig.drain().child,
        [
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": child_id, "reason": "user"}})
        ]
    );
    assert_eq!(rig.bridge.in_flight(), 0);
    rig.child_answers(&child_id, json!({}));
    assert!(rig.drain().is_empty());
}

#[test]
fn a_call_cancelled_while_queued_is_never_sent() {
    let mut rig = Rig::new();
    let a = rig.open();
    rig.call(a, json!(1), "tools/call", json!({"name": "slow"}));
    rig.call(a, json!(2), "tools/list", Value::Null);
    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}),
    );
    rig.spawned();
    let out = rig.drain();
    rig.child_initializes(&out);
    let methods: Vec<Value> = rig
        .drain()
        .child
        .iter()
        .map(|m| m["method"].clone())
        .collect();
    assert_eq!(
        methods,
        [json!("notifications/initialized"), json!("tools/list")]
    );
}

#[test]
fn closing_a_client_cancels_its_calls_and_releases_its_subscriptions() {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    rig.call(
        a,
        json!(1),
        "resources/subscribe",
        json!({"uri": "file:///a"}),
    );
    rig.call(
        b,
        json!(1),
        "resources/subscribe",
        json!({"uri": "file:///a"}),
    );
    rig.call(
        a,
        json!(2),
        "resources/subscribe",
        json!({"uri": "file:///only-a"}),
    );
    let out = rig.drain();
    for m in &out.child {
        rig.child_answers(&m["id"], json!({}));
    }
    rig.call(
        a,
        json!(3),
        "tools/call",
        json!({"name": "slow", "_meta": {"progressToken": 1}}),
    );
    rig.call(b, json!(3), "tools/call", json!({"name": "slow"}));
    let calls = rig.drain().child;

    rig.close(a);
    let out = rig.drain();
    assert_eq!(
        out.child,
        [
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": calls[0]["id"], "reason": "the client closed"}}),
            json!({"jsonrpc": "2.0", "id": 6, "method": "resources/unsubscribe", "params": {"uri": "file:///only-a"}}),
        ]
    );
    assert!(out.clients.is_empty());
    assert_eq!(rig.bridge.clients(), 1);
    assert_eq!(rig.bridge.in_flight(), 1);
    assert_eq!(
        rig.bridge.state(),
        ChildState::Running,
        "another client's going never stops the child"
    );
    // b still hears about the resource they shared.
    let updated = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": "file:///a"}});
    rig.child_says(updated.clone());
    assert_eq!(rig.drain().clients, [(b, updated)]);
}

// 6. The child's requests to clients.

#[test]
fn the_childs_requests_go_to_the_client_with_the_latest_call_and_answers_go_back_under_the_childs_id(
) {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    rig.call(b, json!(0), "initialize", initialize_params());
    // c cannot sample (it did not say so): never asked, though its call is
    // the latest.
    let c = rig.open();
    rig.drain();
    rig.call(a, json!(1), "tools/call", json!({"name": "think"}));
    rig.call(b, json!(1), "tools/call", json!({"name": "think"}));
    rig.call(c, json!(1), "tools/call", json!({"name": "think"}));
    let calls = rig.drain().child;

    rig.child_says(json!({"jsonrpc": "2.0", "id": "s1", "method": "sampling/createMessage", "params": {"maxTokens": 5}}));
    let out = rig.drain();
    assert_eq!(
        out.clients,
        [(
            b,
            json!({"jsonrpc": "2.0", "id": 1, "method": "sampling/createMessage", "params": {"maxTokens": 5}})
        )]
    );
    rig.client_says(
        b,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"role": "assistant"}}),
    );
    assert_eq!(
        rig.drain().child,
        [json!({"jsonrpc": "2.0", "id": "s1", "result": {"role": "assistant"}})]
    );
    // An answer from another client, or a second one, goes nowhere.
    rig.client_says(a, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    rig.client_says(b, json!({"jsonrpc": "2.0", "id": 1, "result": {}}));
    assert!(rig.drain().is_empty());

    // b's call ends: a's is now the latest in flight.
    rig.child_answers(&calls[1]["id"], json!({}));
    rig.drain();
    rig.child_says(json!({"jsonrpc": "2.0", "id": 9, "method": "roots/list"}));
    let out = rig.drain();
    assert_eq!(
        out.clients,
        [(
            a,
            json!({"jsonrpc": "2.0", "id": 2, "method": "roots/list"})
        )]
    );
    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "id": 2, "error": {"code": -1, "message": "no roots"}}),
    );
    assert_eq!(
        rig.drain().child,
        [json!({"jsonrpc": "2.0", "id": 9, "error": {"code": -1, "message": "no roots"}})]
    );
}

#[test]
fn a_childs_request_goes_to_a_capable_client_even_with_no_call_in_flight() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": 3, "method": "elicitation/create", "params": {}}),
    );
    rig.child_says(json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}));
    let out = rig.drain();
    assert_eq!(out.to(a)[0]["method"], "elicitation/create");
    assert_eq!(
        out.child,
        [json!({"jsonrpc": "2.0", "id": 4, "result": {}})]
    );
}

#[test]
fn a_childs_request_carrying_a_calls_progress_token_goes_to_that_calls_client() {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    rig.call(b, json!(0), "initialize", initialize_params());
    rig.drain();
    let slow = |token: &str| json!({"name": "slow", "_meta": {"progressToken": token}});
    rig.call(a, json!(1), "tools/call", slow("from-a"));
    rig.call(b, json!(1), "tools/call", slow("from-b"));
    let sent = rig.drain().child;
    let token_of_a = sent[0]["params"]["_meta"]["progressToken"].clone();
    // b's call is the more recent one; the token says the request is a's.
    let sample = json!({"messages": [], "maxTokens": 5, "_meta": {"progressToken": token_of_a}});
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": 7, "method": "sampling/createMessage", "params": sample}),
    );
    let out = rig.drain();
    assert_eq!(out.to(a).len(), 1, "{out:?}");
    assert_eq!(out.to(a)[0]["method"], "sampling/createMessage");
    assert!(out.to(b).is_empty());
    // Without a token, the most recent call's client is asked.
    rig.child_says(json!({"jsonrpc": "2.0", "id": 8, "method": "roots/list"}));
    assert_eq!(rig.drain().to(b)[0]["method"], "roots/list");
}

#[test]
fn a_childs_request_no_connected_client_declared_is_refused_at_once() {
    let mut rig = Rig::new();
    let a = rig.open();
    let mut plain = initialize_params();
    plain["capabilities"] = json!({"elicitation": {}});
    rig.call(a, json!(0), "initialize", plain);
    rig.spawned();
    let out = rig.drain();
    rig.child_initializes(&out);
    rig.drain();
    // A URL elicitation needs `elicitation.url`; sampling, `sampling`.
    let url = json!({"mode": "url", "url": "https://example.com", "message": "m"});
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": 3, "method": "elicitation/create", "params": url}),
    );
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": 5, "method": "sampling/createMessage", "params": {}}),
    );
    let out = rig.drain();
    assert!(out.clients.is_empty());
    for (answer, method) in out
        .child
        .iter()
        .zip(["elicitation/create", "sampling/createMessage"])
    {
        assert_eq!(answer["error"]["code"], INTERNAL_ERROR);
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("no connected client can answer {method}")),
            "{message}"
        );
    }
}

#[test]
fn a_client_gone_before_answering_gets_the_child_an_error() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "tools/call", json!({}));
    rig.drain();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": "e", "method": "elicitation/create", "params": {}}),
    );
    rig.drain();
    rig.close(a);
    let out = rig.drain();
    let refused: Vec<&Value> = out.child.iter().filter(|m| m["id"] == "e").collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(error_of(refused[0]).0, INTERNAL_ERROR);
}

#[test]
fn the_child_cancelling_its_request_tells_the_client_under_the_client_facing_id() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "tools/call", json!({}));
    rig.drain();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": 50, "method": "sampling/createMessage", "params": {}}),
    );
    let ask = rig.drain().clients[0].1["id"].clone();
    rig.child_says(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 50}}),
    );
    assert_eq!(
        rig.drain().clients,
        [(
            a,
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": ask}})
        )]
    );
    rig.client_says(a, json!({"jsonrpc": "2.0", "id": ask, "result": {}}));
    assert!(rig.drain().is_empty(), "the late answer is dropped");
}

// 7. Notifications from the child.

#[test]
fn resource_updates_reach_only_subscribers_and_the_child_sees_one_subscribe_and_one_unsubscribe() {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    let c = rig.open();
    rig.call(a, json!(1), "resources/subscribe", json!({"uri": "x"}));
    let sub = rig.drain().child;
    assert_eq!(sub.len(), 1);
    rig.child_answers(&sub[0]["id"], json!({}));
    assert_eq!(
        rig.drain().to(a),
        [json!({"jsonrpc": "2.0", "id": 1, "result": {}})]
    );
    rig.call(b, json!(1), "resources/subscribe", json!({"uri": "x"}));
    let out = rig.drain();
    assert!(out.child.is_empty(), "a second subscriber is answered here");
    assert_eq!(
        out.to(b),
        [json!({"jsonrpc": "2.0", "id": 1, "result": {}})]
    );

    let updated = |uri: &str| json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": uri}});
    rig.child_says(updated("x"));
    rig.child_says(updated("y"));
    assert_eq!(rig.drain().clients, [(a, updated("x")), (b, updated("x"))]);

    rig.call(a, json!(2), "resources/unsubscribe", json!({"uri": "x"}));
    let out = rig.drain();
    assert!(out.child.is_empty(), "b still listens");
    assert_eq!(
        out.to(a),
        [json!({"jsonrpc": "2.0", "id": 2, "result": {}})]
    );
    rig.child_says(updated("x"));
    assert_eq!(rig.drain().clients, [(b, updated("x"))]);

    rig.call(b, json!(2), "resources/unsubscribe", json!({"uri": "x"}));
    let unsub = rig.drain().child;
    assert_eq!(unsub[0]["method"], "resources/unsubscribe");
    rig.child_answers(&unsub[0]["id"], json!({}));
    assert_eq!(
        rig.drain().to(b),
        [json!({"jsonrpc": "2.0", "id": 2, "result": {}})]
    );
    rig.child_says(updated("x"));
    assert!(rig.drain().is_empty());

    let changed = json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
    rig.child_says(changed.clone());
    assert_eq!(
        rig.drain().clients,
        [(a, changed.clone()), (b, changed.clone()), (c, changed)]
    );
}

#[test]
fn a_refused_subscribe_leaves_the_client_unsubscribed() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "resources/subscribe", json!({"uri": "x"}));
    let sub = rig.drain().child;
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": sub[0]["id"], "error": {"code": -32602, "message": "no"}}),
    );
    rig.drain();
    assert_eq!(rig.bridge.sizes()[5], 0);
    rig.call(a, json!(2), "resources/subscribe", json!({"uri": "x"}));
    assert_eq!(
        rig.drain().child.len(),
        1,
        "the next subscribe goes to the child again"
    );
}

#[test]
fn client_notifications_other_than_the_handshake_and_cancellation_reach_the_child() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}),
    );
    assert_eq!(
        rig.drain().child,
        [json!({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"})]
    );
}

// 8. Crashes, restarts, giving up.

#[test]
fn a_child_that_exits_during_startup_tells_the_client_what_it_said_on_stderr() {
    let mut rig = Rig::new();
    let a = rig.open();
    rig.call(a, json!(1), "tools/list", Value::Null);
    assert_eq!(rig.drain().all, [spawn_output()]);
    rig.spawned();
    rig.drain();
    rig.bridge
        .handle_child_exit("Error: Cannot find module 'missing'", rig.now);
    let out = rig.drain();
    let (_, message) = error_of(&out.to(a)[0]);
    assert!(
        message.contains(
            "did not start (exited during startup; its stderr ended with: Error: Cannot find module 'missing')"
        ),
        "{message}"
    );
}

#[test]
fn a_crash_answers_every_sent_call_with_an_error_and_the_child_restarts_after_backoff() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "resources/subscribe", json!({"uri": "x"}));
    let sub = rig.drain().child;
    rig.child_answers(&sub[0]["id"], json!({}));
    rig.call(a, json!(2), "tools/call", json!({}));
    rig.drain();

    rig.at(5 * SEC);
    rig.exit();
    let out = rig.drain();
    assert_eq!(out.to(a).len(), 1);
    assert_eq!(out.to(a)[0]["id"], 2);
    assert_eq!(
        error_of(&out.to(a)[0]),
        (SERVER_ERROR, "MCP server 'echo' exited".into())
    );
    assert_eq!(rig.bridge.state(), ChildState::Restarting);
    assert_eq!(rig.bridge.in_flight(), 0);
    assert_eq!(rig.deadline(), Some(5 * SEC + 100 * MS));

    rig.call(a, json!(3), "tools/list", Value::Null);
    rig.at(5 * SEC + 99 * MS);
    assert!(rig.drain().is_empty(), "an early timeout does nothing");
    rig.at(5 * SEC + 100 * MS);
    assert_eq!(rig.drain().all, [spawn_output()]);
    assert_eq!(rig.bridge.restarts(), 1);

    rig.spawned();
    let out = rig.drain();
    assert_eq!(out.child[0]["method"], "initialize");
    assert_eq!(
        out.child[0]["params"],
        shared_initialize_params(),
        "the same params every start"
    );
    rig.child_initializes(&out);
    let out = rig.drain();
    let methods: Vec<&Value> = out.child.iter().map(|m| &m["method"]).collect();
    assert_eq!(
        methods,
        [
            "notifications/initialized",
            "resources/subscribe",
            "tools/list"
        ],
        "the subscription is renewed, then what waited is sent"
    );
    assert_eq!(out.child[1]["params"], json!({"uri": "x"}));
    assert!(out.clients.is_empty(), "the renewal is the bridge's own");
}

#[test]
fn failures_in_a_row_double_the_backoff_up_to_its_cap_then_the_bridge_gives_up() {
    let mut rig = Rig::with(|spec, limits| {
        spec.max_restarts = 5;
        limits.backoff_max = 300 * MS;
    });
    let a = rig.open();
    rig.call(a, json!(1), "tools/list", Value::Null);
    let mut at = Duration::ZERO;
    for wait in [100, 200, 300, 300] {
        assert_eq!(rig.drain().all, [spawn_output()]);
        rig.bridge
            .handle_spawn_failed("its working directory `/gone` does not exist", rig.now);
        assert_eq!(rig.bridge.state(), ChildState::Restarting);
        let out = rig.drain();
        let (_, message) = error_of(&out.to(a)[0]);
        assert!(
            message.contains("did not start (its working directory `/gone` does not exist)"),
            "answered at once, with the reason: {message}"
        );
        at += wait * MS;
        assert_eq!(rig.deadline(), Some(at));
        rig.at(at);
        rig.call(a, json!(1), "tools/list", Value::Null);
    }
    rig.bridge
        .handle_spawn_failed("its working directory `/gone` does not exist", rig.now);
    assert_eq!(rig.bridge.state(), ChildState::Failed);
    assert_eq!(rig.bridge.restarts(), 4);
    assert_eq!(rig.deadline(), None);
    let out = rig.drain();
    let (code, message) = error_of(&out.to(a)[0]);
    assert_eq!(code, SERVER_ERROR);
    assert!(message.contains("failed 5 times"), "{message}");
    assert!(message.contains("`/gone` does not exist"), "{message}");

    rig.call(a, json!(2), "tools/list", Value::Null);
    let out = rig.drain();
    assert_eq!(out.to(a).len(), 1, "refused at once");
    assert!(out.process.is_empty());

    // A new client tries again.
    let b = rig.open();
    assert_eq!(rig.bridge.state(), ChildState::Stopped);
    rig.call(b, json!(1), "tools/list", Value::Null);
    assert_eq!(rig.drain().all, [spawn_output()]);
}

#[test]
fn a_remote_server_given_up_on_is_tried_again_at_the_next_call() {
    let url = crate::http::Url::parse("http://127.0.0.1:9/mcp").unwrap();
    let mut rig = Rig::with(|spec, _| {
        spec.max_restarts = 1;
        spec.remote = Some(crate::upstream::Remote::new(url));
    });
    let a = rig.open();
    rig.call(a, json!(1), "tools/list", Value::Null);
    let connect = |out: &Out| {
        out.all
            .iter()
            .filter(|o| matches!(o, BridgeOutput::Connect { .. }))
            .count()
    };
    assert_eq!(connect(&rig.drain()), 1);
    rig.bridge
        .handle_spawn_failed("the remote MCP server needs a login", rig.now);
    assert_eq!(rig.bridge.state(), ChildState::Failed);
    let out = rig.drain();
    let (_, message) = error_of(&out.to(a)[0]);
    assert!(message.contains("needs a login"), "{message}");

    // The same client's next call dials again (the login may be done).
    rig.call(a, json!(2), "tools/list", Value::Null);
    let out = rig.drain();
    assert_eq!(connect(&out), 1, "{:?}", out.all);
    assert!(out.to(a).is_empty(), "waits for the new connection");
}

#[test]
fn a_run_up_for_healthy_after_forgets_earlier_failures() {
    let mut rig = Rig::new();
    rig.running();
    rig.exit();
    assert_eq!(rig.deadline(), Some(100 * MS));
    rig.at(100 * MS);
    rig.spawned();
    let out = rig.drain();
    rig.child_initializes(&out);
    rig.exit();
    assert_eq!(
        rig.deadline(),
        Some(300 * MS),
        "second failure in a row: 200 ms"
    );
    rig.at(300 * MS);
    rig.spawned();
    let out = rig.drain();
    rig.child_initializes(&out);
    // Up 30 s (answering its pings), then it crashes.
    rig.at(30 * SEC + 300 * MS);
    let ping = rig.drain().child[0]["id"].clone();
    rig.child_answers(&ping, json!({}));
    rig.exit();
    assert_eq!(
        rig.deadline(),
        Some(30 * SEC + 400 * MS),
        "back to the initial wait"
    );
}

// 9. Health.

#[test]
fn a_running_child_is_pinged_every_interval_and_the_answers_reach_no_client() {
    let mut rig = Rig::new();
    let a = rig.running();
    assert_eq!(rig.deadline(), Some(30 * SEC));
    rig.at(30 * SEC);
    let out = rig.drain();
    assert_eq!(
        out.child,
        [json!({"jsonrpc": "2.0", "id": 2, "method": "ping"})]
    );
    assert_eq!(
        rig.deadline(),
        Some(40 * SEC),
        "the ping must be answered by then"
    );
    rig.at(31 * SEC);
    rig.child_answers(&json!(2), json!({}));
    assert!(rig.drain().is_empty());
    assert_eq!(rig.deadline(), Some(60 * SEC));
    assert_eq!(rig.bridge.clients(), 1);
    let _ = a;
}

#[test]
fn a_child_silent_past_ping_timeout_is_killed_its_calls_answered_and_it_restarts() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.at(SEC);
    rig.call(a, json!(1), "tools/call", json!({}));
    rig.drain();
    assert_eq!(
        rig.deadline(),
        Some(11 * SEC),
        "after ping_timeout with no answer while a call waits, the child is asked"
    );
    // Only an answer is a sign of life: a child that stopped reading its
    // input may go on logging.
    rig.at(5 * SEC);
    rig.child_says(
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}}),
    );
    rig.bridge.handle_child_line("starting up...", rig.now);
    rig.drain();
    assert_eq!(rig.deadline(), Some(11 * SEC));

    rig.at(11 * SEC);
    assert_eq!(rig.drain().child[0]["method"], "ping");
    rig.at(15 * SEC);
    rig.child_says(
        json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info"}}),
    );
    rig.drain();
    rig.at(21 * SEC - MS);
    assert!(rig.drain().is_empty());
    rig.at(21 * SEC);
    let out = rig.drain();
    assert_eq!(out.process, [BridgeOutput::Signal(StopSignal::Kill)]);
    assert_eq!(
        error_of(&out.to(a)[0]),
        (SERVER_ERROR, "MCP server 'echo' stopped responding".into())
    );
    assert_eq!(rig.bridge.state(), ChildState::Restarting);
    assert_eq!(rig.deadline(), None, "waiting for it to die");

    rig.call(a, json!(2), "tools/list", Value::Null);
    assert!(
        rig.drain().is_empty(),
        "nothing more goes to the hung child"
    );
    rig.at(21 * SEC + MS);
    rig.exit();
    assert!(rig.drain().is_empty());
    assert_eq!(rig.deadline(), Some(21 * SEC + 101 * MS));
    rig.at(21 * SEC + 101 * MS);
    assert_eq!(rig.drain().all, [spawn_output()]);
}

#[test]
fn a_ping_the_child_passed_over_is_asked_again_and_time_moves_on() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.at(30 * SEC);
    let ping = rig.drain().child;
    assert_eq!(ping[0]["method"], "ping", "never answered");
    // The child answers a call sent after the ping: alive, the ping
    // passed over.
    rig.at(31 * SEC);
    rig.call(a, json!(1), "tools/call", json!({}));
    let first = rig.drain().child;
    rig.child_answers(&first[0]["id"], json!({"content": []}));
    rig.drain();
    rig.at(32 * SEC);
    rig.call(a, json!(2), "tools/call", json!({}));
    rig.drain();
    assert_eq!(rig.deadline(), Some(42 * SEC));
    // Asked again when the call has waited `ping_timeout`, and no
    // deadline already handled is the next one.
    rig.at(42 * SEC);
    let again = rig.drain().child;
    assert_eq!(again[0]["method"], "ping");
    assert_ne!(again[0]["id"], ping[0]["id"]);
    assert_eq!(rig.deadline(), Some(52 * SEC));
    rig.at(52 * SEC);
    let out = rig.drain();
    assert_eq!(out.process, [BridgeOutput::Signal(StopSignal::Kill)]);
    assert_eq!(
        error_of(&out.to(a)[0]),
        (SERVER_ERROR, "MCP server 'echo' stopped responding".into())
    );
}

#[test]
fn a_long_call_is_not_a_hang_while_the_child_answers_its_ping() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.at(SEC);
    rig.call(a, json!(1), "tools/call", json!({}));
    let sent = rig.drain().child;
    rig.at(11 * SEC);
    let probe = rig.drain().child;
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0]["method"], "ping");
    assert_eq!(
        rig.deadline(),
        Some(21 * SEC),
        "the probe must be answered by then"
    );
    rig.at(12 * SEC);
    rig.child_answers(&probe[0]["id"], json!({}));
    assert!(rig.drain().is_empty());
    rig.at(25 * SEC);
    rig.drain();
    assert_eq!(
        rig.bridge.state(),
        ChildState::Running,
        "a tool may work for minutes"
    );
    rig.child_answers(&sent[0]["id"], json!({"content": []}));
    assert_eq!(rig.drain().to(a).len(), 1);
}

#[test]
fn an_initialize_unanswered_within_startup_timeout_is_a_failed_start() {
    let mut rig = Rig::new();
    let a = rig.open();
    rig.call(a, json!(1), "tools/list", Value::Null);
    rig.at(SEC);
    rig.spawned();
    rig.drain();
    assert_eq!(rig.deadline(), Some(31 * SEC));
    rig.at(31 * SEC);
    let out = rig.drain();
    assert_eq!(out.process, [BridgeOutput::Signal(StopSignal::Kill)]);
    assert_eq!(rig.bridge.state(), ChildState::Restarting);
    // The waiting call is answered now, with the reason, not held through
    // every retry.
    let (code, message) = error_of(&out.to(a)[0]);
    assert_eq!(code, SERVER_ERROR);
    assert!(
        message.contains("did not answer initialize within 30s"),
        "{message}"
    );
    assert_eq!(rig.bridge.in_flight(), 0);
    rig.child_answers(&json!(1), init_result());
    assert!(rig.drain().is_empty(), "a late answer is too late");
    rig.exit();
    assert_eq!(
        rig.deadline(),
        Some(31 * SEC + 100 * MS),
        "tried again all the same"
    );
}

// 11. Bad lines and a refused handshake.

#[test]
fn a_child_that_refuses_initialize_and_server_discover_fails_its_start() {
    let mut rig = Rig::new();
    let a = rig.open();
    rig.call(a, json!(1), "initialize", initialize_params());
    rig.spawned();
    rig.drain();
    rig.child_says(json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "unsupported version"}}));
    let discover = rig.drain().child.remove(0);
    assert_eq!(discover["method"], "server/discover");
    rig.child_says(json!({"jsonrpc": "2.0", "id": discover["id"], "error": {"code": -32601, "message": "unknown"}}));
    assert_eq!(rig.drain().all, [BridgeOutput::Signal(StopSignal::Kill)]);
    rig.exit();
    assert_eq!(rig.bridge.state(), ChildState::Restarting);
    assert_eq!(rig.bridge.initialize_result(), None);
    // The next start speaks the session generation first again.
    rig.at(SEC);
    rig.spawned();
    assert_eq!(rig.drain().child[0]["method"], "initialize");
}

#[test]
fn bad_lines_from_the_child_are_ignored() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "tools/list", Value::Null);
    rig.drain();
    for line in [
        "hello",
        "[1,2]",
        r#"{"jsonrpc":"2.0"}"#,
        r#"{"id":2,"result":{}}"#,
        "{",
        "",
    ] {
        rig.bridge.handle_child_line(line, rig.now);
    }
    assert!(rig.drain().is_empty());
    rig.child_answers(&json!(2), json!({"tools": []}));
    assert_eq!(rig.drain().to(a).len(), 1);
}

// 10. Stopping.

#[test]
fn an_idle_child_is_stopped_by_closing_stdin_then_term_then_kill_and_the_next_request_starts_it() {
    let mut rig = Rig::with(|spec, limits| {
        spec.idle_timeout = Some(60 * SEC);
        limits.ping_interval = Duration::from_secs(3600);
    });
    let a = rig.running();
    rig.call(a, json!(1), "tools/list", Value::Null);
    rig.drain();
    rig.at(5 * SEC);
    rig.child_answers(&json!(2), json!({}));
    rig.drain();
    assert_eq!(rig.deadline(), Some(3600 * SEC), "a client is still open");
    rig.at(10 * SEC);
    rig.close(a);
    assert_eq!(rig.deadline(), Some(70 * SEC));
    rig.at(70 * SEC);
    assert_eq!(rig.drain().all, [BridgeOutput::CloseStdin]);
    assert_eq!(rig.bridge.state(), ChildState::Stopping);
    assert_eq!(rig.deadline(), Some(72 * SEC));
    rig.at(72 * SEC);
    assert_eq!(rig.drain().all, [BridgeOutput::Signal(StopSignal::Term)]);
    assert_eq!(rig.deadline(), Some(74 * SEC));
    rig.at(74 * SEC);
    assert_eq!(rig.drain().all, [BridgeOutput::Signal(StopSignal::Kill)]);
    assert_eq!(rig.deadline(), None);
    rig.exit();
    assert_eq!(rig.bridge.state(), ChildState::Stopped);
    assert!(rig.drain().is_empty(), "a stopped child is not restarted");
    assert_eq!(rig.bridge.restarts(), 0);

    let b = rig.open();
    rig.call(b, json!("again"), "initialize", initialize_params());
    let out = rig.drain();
    assert_eq!(out.to(b).len(), 1, "initialize is answered from the cache");
    assert!(out.process.is_empty());
    rig.call(b, json!(1), "tools/list", Value::Null);
    assert_eq!(rig.drain().all, [spawn_output()]);
}

#[test]
fn a_request_while_stopping_is_sent_to_the_next_child() {
    let mut rig = Rig::with(|spec, _| spec.idle_timeout = Some(SEC));
    let a = rig.running();
    rig.close(a);
    rig.at(SEC);
    assert_eq!(rig.drain().all, [BridgeOutput::CloseStdin]);
    let b = rig.open();
    rig.call(b, json!(1), "tools/list", Value::Null);
    assert!(rig.drain().is_empty());
    rig.exit();
    assert_eq!(rig.drain().all, [spawn_output()]);
    assert_eq!(rig.bridge.in_flight(), 1);
}

#[test]
fn stop_answers_the_calls_in_flight_and_refuses_later_ones_for_good() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "tools/call", json!({}));
    rig.drain();
    rig.at(SEC);
    rig.bridge.stop(rig.now);
    let out = rig.drain();
    assert_eq!(
        error_of(&out.to(a)[0]),
        (SERVER_ERROR, "MCP server 'echo' was stopped".into())
    );
    assert_eq!(out.process, [BridgeOutput::CloseStdin]);
    assert_eq!(rig.deadline(), Some(3 * SEC));

    rig.call(a, json!(2), "tools/list", Value::Null);
    assert_eq!(error_of(&rig.drain().to(a)[0]).0, SERVER_ERROR);
    rig.child_answers(&json!(2), json!({}));
    assert!(rig.drain().is_empty(), "answers after stop are dropped");
    rig.exit();
    let b = rig.open();
    rig.call(b, json!(1), "tools/list", Value::Null);
    let out = rig.drain();
    assert!(out.process.is_empty(), "never started again");
    assert_eq!(out.to(b).len(), 1);
    assert_eq!(rig.bridge.state(), ChildState::Stopped);
}

#[test]
fn stop_while_the_backoff_runs_needs_no_signal() {
    let mut rig = Rig::new();
    rig.running();
    rig.exit();
    rig.drain();
    rig.bridge.stop(rig.now);
    assert!(rig.drain().is_empty());
    assert_eq!(rig.bridge.state(), ChildState::Stopped);
    assert_eq!(rig.deadline(), None);
}

// 13. A child of the stateless generation.

impl Rig {
    /// A session client's bridge to a child that refuses `initialize` and
    /// answers `server/discover`; outputs drained.
    fn running_stateless(&mut self) -> ClientId {
        let client = self.open();
        self.call(client, json!(0), "initialize", initialize_params());
        self.spawned();
        let out = self.drain();
        let init = &out.child[0];
        self.child_says(json!({"jsonrpc": "2.0", "id": init["id"],
            "error": {"code": mcp::METHOD_NOT_FOUND, "message": "no initialize here"}}));
        let out = self.drain();
        let discover = &out.child[0];
        assert_eq!(discover["method"], "server/discover");
        let meta = &discover["params"]["_meta"];
        assert_eq!(meta[mcp::PROTOCOL_VERSION_META], "2026-07-28");
        assert_eq!(
            meta[mcp::CLIENT_CAPABILITIES_META]["elicitation"],
            json!({"form": {}, "url": {}})
        );
        self.child_answers(
            &discover["id"],
            json!({
                "supportedVersions": ["2026-07-28"],
                "capabilities": {"tools": {}},
                "resultType": "complete",
                "_meta": {mcp::SERVER_INFO_META: {"name": "modern", "version": "3"}},
            }),
        );
        let out = self.drain();
        assert!(
            out.child
                .iter()
                .all(|m| m["method"] != "notifications/initialized"),
            "the stateless generation has no handshake to confirm: {:?}",
            out.child
        );
        let answer = &out.to(client)[0];
        assert_eq!(answer["id"], 0);
        assert_eq!(answer["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(answer["result"]["serverInfo"]["name"], "modern");
        assert_eq!(self.bridge.state(), ChildState::Running);
        client
    }
}

#[test]
fn a_session_client_s_requests_reach_a_stateless_child_in_its_envelope() {
    let mut rig = Rig::new();
    let a = rig.running_stateless();
    rig.call(
        a,
        json!(5),
        "tools/call",
        json!({"name": "echo", "_meta": {"progressToken": "p"}}),
    );
    let out = rig.drain();
    let sent = &out.child[0];
    let meta = &sent["params"]["_meta"];
    assert_eq!(meta[mcp::PROTOCOL_VERSION_META], "2026-07-28");
    assert_eq!(
        meta["io.modelcontextprotocol/clientInfo"]["name"],
        "inspector"
    );
    assert!(
        meta["progressToken"].is_u64(),
        "the token is still remapped"
    );
    rig.child_answers(
        &sent["id"],
        json!({"content": [], "resultType": "complete"}),
    );
    assert_eq!(
        rig.drain().to(a),
        [json!({"jsonrpc": "2.0", "id": 5, "result": {"content": []}})]
    );

    // A later session client is answered at the version it asked for.
    let b = rig.open();
    let mut asked = initialize_params();
    asked["protocolVersion"] = json!("2024-11-05");
    rig.call(b, json!(1), "initialize", asked);
    assert_eq!(
        rig.drain().to(b)[0]["result"]["protocolVersion"],
        "2024-11-05"
    );
    // `ping` is not in the stateless generation: the bridge answers it.
    rig.call(b, json!(2), "ping", Value::Null);
    let out = rig.drain();
    assert!(out.child.is_empty());
    assert_eq!(
        out.to(b),
        [json!({"jsonrpc": "2.0", "id": 2, "result": {}})]
    );
}

#[test]
fn input_required_from_a_stateless_child_is_asked_of_the_session_client_and_the_call_retried() {
    let mut rig = Rig::new();
    let a = rig.running_stateless();
    rig.call(a, json!("c"), "tools/call", json!({"name": "ask"}));
    let sent = rig.drain().child.remove(0);
    rig.child_answers(
        &sent["id"],
        json!({
            "resultType": "input_required",
            "inputRequests": {
                "who": {"method": "elicitation/create", "params": {"message": "name?"}},
                "where": {"method": "roots/list"},
            },
            "requestState": "state-1",
        }),
    );
    let mut asks = rig.drain().to(a);
    asks.sort_by_key(|ask| ask["method"].to_string());
    assert_eq!(asks.len(), 2);
    assert_eq!(asks[0]["method"], "elicitation/create");
    assert_eq!(asks[1]["method"], "roots/list");
    assert_eq!(rig.bridge.in_flight(), 1);

    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "id": asks[1]["id"], "result": {"roots": []}}),
    );
    assert!(rig.drain().is_empty(), "the call waits for every answer");
    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "id": asks[0]["id"], "result": {"action": "accept"}}),
    );
    let retried = rig.drain().child.remove(0);
    assert_eq!(retried["method"], "tools/call");
    assert_ne!(retried["id"], sent["id"]);
    assert_eq!(retried["params"]["name"], "ask");
    assert_eq!(retried["params"]["requestState"], "state-1");
    assert_eq!(
        retried["params"]["inputResponses"]["who"]["action"],
        "accept"
    );
    assert_eq!(
        retried["params"]["inputResponses"]["where"]["roots"],
        json!([])
    );
    rig.child_answers(
        &retried["id"],
        json!({"content": [{"type": "text", "text": "hi"}], "resultType": "complete"}),
    );
    let answer = rig.drain().to(a);
    assert_eq!(answer[0]["id"], "c");
    assert_eq!(answer[0]["result"]["content"][0]["text"], "hi");
    assert_eq!(rig.bridge.sizes(), [0; 7]);
}

#[test]
fn a_refused_round_fails_the_call_and_a_closed_client_leaves_no_round() {
    let mut rig = Rig::new();
    let a = rig.running_stateless();
    let input_required = json!({
        "resultType": "input_required",
        "inputRequests": {"who": {"method": "elicitation/create", "params": {}}},
    });
    rig.call(a, json!(1), "tools/call", json!({"name": "ask"}));
    let sent = rig.drain().child.remove(0);
    rig.child_answers(&sent["id"], input_required.clone());
    let ask = rig.drain().to(a).remove(0);
    rig.client_says(
        a,
        json!({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -1, "message": "declined"}}),
    );
    let out = rig.drain();
    assert!(out.child.is_empty());
    assert_eq!(error_of(&out.to(a)[0]), (-1, "declined".into()));

    rig.call(a, json!(2), "tools/call", json!({"name": "ask"}));
    let sent = rig.drain().child.remove(0);
    rig.child_answers(&sent["id"], input_required);
    rig.drain();
    rig.close(a);
    rig.drain();
    assert_eq!(rig.bridge.sizes(), [0; 7]);
}

#[test]
fn a_stateless_client_s_envelope_is_taken_off_for_a_session_child_and_kept_for_a_stateless_one() {
    let envelope = json!({"_meta": {
        mcp::PROTOCOL_VERSION_META: "2026-07-28",
        mcp::CLIENT_CAPABILITIES_META: {},
    }, "name": "echo"});

    let mut old = Rig::new();
    let a = old.running();
    let b = old.open();
    old.call(b, json!(1), "tools/call", envelope.clone());
    let sent = old.drain().child.remove(0);
    assert_eq!(sent["params"], json!({"name": "echo"}));
    let _ = a;

    let mut modern = Rig::new();
    let a = modern.running_stateless();
    let b = modern.open();
    modern.call(b, json!(1), "tools/call", envelope.clone());
    let sent = modern.drain().child.remove(0);
    assert_eq!(sent["params"], envelope);
    // Its answer goes back as the child gave it, marks and all.
    let marked = json!({"content": [], "resultType": "complete"});
    modern.child_answers(&sent["id"], marked.clone());
    assert_eq!(modern.drain().to(b)[0]["result"], marked);
    let _ = a;
}

// 12. Bounds.

#[test]
fn calls_past_max_in_flight_are_refused_at_once() {
    let mut rig = Rig::with(|_, limits| limits.max_in_flight = 2);
    let a = rig.open();
    rig.call(a, json!(1), "tools/list", Value::Null);
    rig.call(a, json!(2), "tools/list", Value::Null);
    rig.drain();
    rig.call(a, json!(3), "tools/list", Value::Null);
    let out = rig.drain();
    assert_eq!(out.to(a)[0]["id"], 3);
    assert_eq!(error_of(&out.to(a)[0]).0, SERVER_ERROR);
    assert_eq!(rig.bridge.in_flight(), 2);
}

#[test]
fn every_map_is_empty_again_once_calls_end_and_clients_close() {
    let mut rig = Rig::new();
    let a = rig.running();
    let b = rig.open();
    rig.call(
        a,
        json!(1),
        "tools/call",
        json!({"_meta": {"progressToken": "p"}}),
    );
    rig.call(b, json!(1), "resources/subscribe", json!({"uri": "x"}));
    rig.call(
        b,
        json!(2),
        "tools/call",
        json!({"_meta": {"progressToken": "q"}}),
    );
    rig.drain();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": "s", "method": "sampling/createMessage", "params": {}}),
    );
    rig.call(a, json!(2), "tools/call", json!({}));
    rig.drain();
    assert_ne!(rig.bridge.sizes(), [0; 7]);
    rig.close(a);
    rig.close(b);
    // The child answers what the bridge still asks of it (the release of
    // the last subscription).
    for message in rig.drain().child {
        if message.get("method").is_some() && message.get("id").is_some() {
            rig.child_answers(&message["id"], json!({}));
        }
    }
    assert_eq!(rig.bridge.sizes(), [0; 7]);
    assert_eq!(rig.bridge.in_flight(), 0);
    assert_eq!(rig.bridge.clients(), 0);
}

#[test]
fn a_crash_while_a_client_is_asked_something_tells_that_client_it_is_off() {
    let mut rig = Rig::new();
    let a = rig.running();
    rig.call(a, json!(1), "tools/call", json!({}));
    rig.drain();
    rig.child_says(
        json!({"jsonrpc": "2.0", "id": "s", "method": "sampling/createMessage", "params": {}}),
    );
    let ask = rig.drain().clients[0].1["id"].clone();
    rig.exit();
    let to_a = rig.drain().to(a);
    assert_eq!(to_a.len(), 2);
    assert_eq!(to_a[0]["id"], 1);
    assert_eq!(to_a[1]["method"], "notifications/cancelled");
    assert_eq!(to_a[1]["params"]["requestId"], ask);
    rig.client_says(a, json!({"jsonrpc": "2.0", "id": ask, "result": {}}));
    assert!(rig.drain().is_empty());
}

/// The law behind all of the above: whatever clients, the child and the
/// clock do, no answer is lost or duplicated, none reaches a closed client,
/// there is never more than one child, and the bridge holds nothing once
/// its clients are gone.
mod laws {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Open,
        Close(usize),
        /// A client request: 0 a tool call with a progress token, 1
        /// `initialize`, 2 subscribe, 3 unsubscribe, else a plain call.
        Call(usize, u8, u8),
        Cancel(usize, usize),
        Spawned,
        SpawnFailed,
        ChildAnswers(usize, bool),
        ChildAsks,
        ClientAnswersAsk(usize),
        ChildProgress(u64),
        ChildNotifies(u8),
        ChildGarbage,
        ChildExits,
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => Just(Op::Open),
            1 => any::<usize>().prop_map(Op::Close),
            6 => (any::<usize>(), 0..6u8, 0..3u8).prop_map(|(c, k, u)| Op::Call(c, k, u)),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(c, k)| Op::Cancel(c, k)),
            3 => Just(Op::Spawned),
            1 => Just(Op::SpawnFailed),
            6 => (any::<usize>(), any::<bool>()).prop_map(|(k, e)| Op::ChildAnswers(k, e)),
            1 => Just(Op::ChildAsks),
            1 => any::<usize>().prop_map(Op::ClientAnswersAsk),
            1 => (0..8u64).prop_map(Op::ChildProgress),
            1 => (0..3u8).prop_map(Op::ChildNotifies),
            1 => Just(Op::ChildGarbage),
            1 => Just(Op::ChildExits),
            2 => (0..45_000u64).prop_map(Op::Advance),
        ]
    }

    /// The world around the bridge, and what it expects to hear.
    #[derive(Default)]
    struct Model {
        open: Vec<ClientId>,
        next_request: u64,
        /// Client requests not answered yet.
        waiting: BTreeSet<(ClientId, u64)>,
        /// Requests the child received and has not answered.
        child_owes: Vec<Value>,
        /// The child's requests that reached a client.
        asks: Vec<(ClientId, Value)>,
        next_ask: u64,
        spawn_asked: bool,
        alive: bool,
    }

    impl Model {
        fn pick(&self, i: usize) -> Option<ClientId> {
            (!self.open.is_empty()).then(|| self.open[i % self.open.len()])
        }

        fn absorb(&mut self, rig: &mut Rig) {
            let out = rig.drain();
            for o in &out.all {
                match o {
                    BridgeOutput::Spawn { .. } | BridgeOutput::Connect { .. } => {
                        assert!(!self.alive && !self.spawn_asked, "never two children");
                        self.spawn_asked = true;
                    }
                    BridgeOutput::ToChild { line, outline } => {
                        assert_eq!(
                            Some(outline),
                            Outline::of(line).as_ref(),
                            "a message comes with the outline its text has"
                        );
                        let m: Value = serde_json::from_str(line).unwrap();
                        assert!(
                            self.alive,
                            "nothing is written to a child that is not there"
                        );
                        if m.get("method").is_some() && m.get("id").is_some() {
                            self.child_owes.push(m["id"].clone());
                        }
                    }
                    BridgeOutput::ToClient {
                        client,
                        message,
                        answers,
                    } => {
                        assert!(
                            self.open.contains(client),
                            "nothing reaches a closed client"
                        );
                        let m: Value = serde_json::from_str(message).unwrap();
                        let named = m.get("method").is_none().then(|| m["id"].to_string());
                        assert_eq!(
                            answers, &named,
                            "an answer, and only one, says what it answers: {m}"
                        );
                        if m.get("method").is_some() {
                            if m.get("id").is_some() {
                                self.asks.push((*client, m["id"].clone()));
                            }
                        } else {
                            let id = m["id"].as_u64().unwrap();
                            assert!(
                                self.waiting.remove(&(*client, id)),
                                "one answer per request, only to its client: {m}"
                            );
                        }
                    }
                    BridgeOutput::CloseStdin | BridgeOutput::Signal(_) => {}
                }
            }
            let limit = 4;
            assert!(rig.bridge.in_flight() <= limit);
            assert!(rig.bridge.sizes().iter().all(|&n| n <= limit + 3));
        }

        fn apply(&mut self, rig: &mut Rig, op: Op) {
            match op {
                Op::Open => self.open.push(rig.open()),
                Op::Close(i) => {
                    if let Some(c) = self.pick(i) {
                        rig.close(c);
                        self.open.retain(|o| *o != c);
                        self.waiting.retain(|(w, _)| *w != c);
                    }
                }
                Op::Call(i, kind, uri) => {
                    if let Some(c) = self.pick(i) {
                        let id = self.next_request;
                        self.next_request += 1;
                        let uri = format!("file:///{uri}");
                        let (method, params) = match kind {
                            0 => ("tools/call", json!({"_meta": {"progressToken": id}})),
                            1 => ("initialize", initialize_params()),
                            2 => ("resources/subscribe", json!({"uri": uri})),
                            3 => ("resources/unsubscribe", json!({"uri": uri})),
                            _ => ("tools/list", Value::Null),
                        };
                        self.waiting.insert((c, id));
                        rig.call(c, json!(id), method, params);
                    }
                }
                Op::Cancel(i, k) => {
                    if let Some(c) = self.pick(i) {
                        let mine: Vec<u64> = self
                            .waiting
                            .iter()
                            .filter(|(w, _)| *w == c)
                            .map(|(_, id)| *id)
                            .collect();
                        if !mine.is_empty() {
                            let id = mine[k % mine.len()];
                            self.waiting.remove(&(c, id));
                            rig.client_says(
                                c,
                                json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}),
                            );
                        }
                    }
                }
                Op::Spawned if self.spawn_asked => {
                    self.spawn_asked = false;
                    self.alive = true;
                    rig.spawned();
                }
                Op::SpawnFailed if self.spawn_asked => {
                    self.spawn_asked = false;
                    rig.bridge.handle_spawn_failed("no such file", rig.now);
                }
                Op::ChildAnswers(k, error) if self.alive && !self.child_owes.is_empty() => {
                    let id = self.child_owes.remove(k % self.child_owes.len());
                    if error {
                        rig.child_says(json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1, "message": "no"}}));
                    } else {
                        rig.child_answers(&id, init_result());
                    }
                }
                Op::ChildAsks if self.alive => {
                    self.next_ask += 1;
                    let id = format!("ask-{}", self.next_ask);
                    rig.child_says(json!({"jsonrpc": "2.0", "id": id, "method": "sampling/createMessage", "params": {}}));
                }
                Op::ClientAnswersAsk(k) if !self.asks.is_empty() => {
                    let (c, id) = self.asks.remove(k % self.asks.len());
                    if self.open.contains(&c) {
                        rig.client_says(c, json!({"jsonrpc": "2.0", "id": id, "result": {}}));
                    }
                }
                Op::ChildProgress(token) if self.alive => rig.child_says(
                    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}),
                ),
                Op::ChildNotifies(uri) if self.alive => rig.child_says(
                    json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {"uri": format!("file:///{uri}")}}),
                ),
                Op::ChildGarbage if self.alive => rig.bridge.handle_child_line("]]", rig.now),
                Op::ChildExits if self.alive => {
                    self.alive = false;
                    self.child_owes.clear();
                    rig.exit();
                }
                Op::Advance(ms) => rig.at(rig.now - rig.t0 + Duration::from_millis(ms)),
                _ => {}
            }
            self.absorb(rig);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_answer_is_lost_or_duplicated_and_nothing_is_left_behind(
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut rig = Rig::with(|spec, limits| {
                spec.max_restarts = 3;
                spec.idle_timeout = Some(20 * SEC);
                limits.max_in_flight = 4;
            });
            let mut model = Model::default();
            for op in ops {
                model.apply(&mut rig, op);
            }
            // Stopping answers everything still in flight.
            rig.bridge.stop(rig.now);
            model.absorb(&mut rig);
            prop_assert!(model.waiting.is_empty(), "left waiting: {:?}", model.waiting);
            if model.spawn_asked {
                model.apply(&mut rig, Op::Spawned);
            }
            model.apply(&mut rig, Op::ChildExits);
            prop_assert_eq!(rig.bridge.state(), ChildState::Stopped);
            for c in model.open.clone() {
                model.apply(&mut rig, Op::Close(model.open.iter().position(|o| *o == c).unwrap()));
            }
            prop_assert_eq!(rig.bridge.sizes(), [0; 7]);
            prop_assert_eq!(rig.bridge.clients(), 0);
        }
    }
}

#[test]
fn a_filtered_tool_is_left_out_of_listings_and_never_called() {
    let mut rig = Rig::with(|spec, _| {
        spec.tools = super::filter::ToolFilter {
            allow: vec!["read_*".into(), "list_*".into()],
            exclude: vec!["read_secret".into()],
        };
    });
    let a = rig.running();
    rig.call(
        a,
        json!(1),
        "tools/call",
        json!({"name": "write_file", "arguments": {}}),
    );
    rig.call(a, json!(2), "tools/call", json!({"name": "read_secret"}));
    let out = rig.drain();
    assert!(
        out.child.is_empty(),
        "never reaches the server: {:?}",
        out.child
    );
    for (answer, tool) in out.to(a).iter().zip(["write_file", "read_secret"]) {
        assert_eq!(answer["error"]["code"], mcp::INVALID_PARAMS);
        assert_eq!(answer["error"]["message"], format!("Unknown tool: {tool}"));
    }
    rig.call(a, json!(3), "tools/list", Value::Null);
    let listed = rig.drain().child;
    let tools =
        ["read_file", "read_secret", "write_file", "list_dir"].map(|name| json!({"name": name}));
    rig.child_answers(&listed[0]["id"], json!({"tools": tools}));
    let answer = &rig.drain().to(a)[0];
    assert_eq!(
        answer["result"]["tools"],
        json!([{"name": "read_file"}, {"name": "list_dir"}])
    );
    rig.call(a, json!(4), "tools/call", json!({"name": "read_file"}));
    assert_eq!(rig.drain().child[0]["params"]["name"], "read_file");
}

#[test]
fn a_remote_call_with_neither_answer_nor_progress_times_out_and_is_cancelled() {
    let url = crate::http::Url::parse("http://127.0.0.1:9/mcp").unwrap();
    let mut rig = Rig::with(|spec, limits| {
        spec.remote = Some(crate::upstream::Remote::new(url));
        limits.call_timeout = 2 * SEC;
    });
    let a = rig.running();
    let params = json!({"name": "slow", "_meta": {"progressToken": "tok"}});
    rig.call(a, json!("c1"), "tools/call", params);
    let sent = rig.drain().child[0].clone();
    assert_eq!(rig.deadline(), Some(2 * SEC));
    // Progress for the call moves its deadline on…
    rig.at(1500 * MS);
    let token = &sent["params"]["_meta"]["progressToken"];
    rig.child_says(json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": 1}}));
    assert_eq!(rig.drain().to(a)[0]["params"]["progressToken"], "tok");
    assert_eq!(rig.deadline(), Some(3500 * MS));
    rig.at(3 * SEC);
    assert!(rig.drain().is_empty());
    // …and without more, the call ends with MCP's timeout error, and the
    // server is told it is cancelled.
    rig.at(3500 * MS);
    let out = rig.drain();
    let (code, message) = error_of(&out.to(a)[0]);
    assert_eq!(code, REQUEST_TIMEOUT);
    assert!(message.contains("did not answer within 2 s"), "{message}");
    assert_eq!(out.child[0]["method"], "notifications/cancelled");
    assert_eq!(out.child[0]["params"]["requestId"], sent["id"]);
    let ping = Limits::default().ping_interval;
    assert_eq!(
        rig.deadline(),
        Some(ping),
        "the health ping's, nothing else"
    );
    // Its late answer reaches no one.
    rig.child_answers(&sent["id"], json!({"content": []}));
    assert!(rig.drain().is_empty());
}

#[test]
fn a_remote_call_that_shows_progress_forever_still_ends_at_ten_timeouts() {
    let url = crate::http::Url::parse("http://127.0.0.1:9/mcp").unwrap();
    let mut rig = Rig::with(|spec, limits| {
        spec.remote = Some(crate::upstream::Remote::new(url));
        limits.call_timeout = 400 * MS;
    });
    let a = rig.running();
    let params = json!({"name": "slow", "_meta": {"progressToken": "tok"}});
    rig.call(a, json!("c1"), "tools/call", params);
    let sent = rig.drain().child[0].clone();
    let token = sent["params"]["_meta"]["progressToken"].clone();
    // Progress every 200 ms keeps it going, up to ten timeouts in all…
    for step in 1..20 {
        rig.at(step * 200 * MS);
        rig.child_says(json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": token, "progress": step}}));
        let out = rig.drain();
        assert_eq!(out.to(a).len(), 1, "progress only, at step {step}");
        assert_eq!(out.to(a)[0]["method"], "notifications/progress");
    }
    assert_eq!(rig.deadline(), Some(4 * SEC));
    // …and there it ends, however much more it shows.
    rig.at(4 * SEC);
    let out = rig.drain();
    let (code, message) = error_of(&out.to(a)[0]);
    assert_eq!(code, REQUEST_TIMEOUT);
    assert!(message.contains("(4 s at most)"), "{message}");
    assert_eq!(out.child[0]["method"], "notifications/cancelled");
}
