//! A new configuration of the bridged servers, taken while the bridge
//! serves: the servers it adds are started lazily like any other (when a
//! client first needs one), the ones it drops end, the ones it changes end
//! and come back under their new spec, and the ones it leaves as they were
//! keep their children and sessions untouched, so their clients never
//! notice.
//!
//! Ending a server is what `DELETE /integrations/{name}` does
//! (`Registry::retire`): its sessions end, so their next request gets 404
//! and an MCP client initializes again (on a changed server, with a child
//! of the new spec), and its children stop, every call in flight answered
//! with an error. Only servers that came from the configuration are
//! compared: one added at run time (`POST /integrations`) is not in it and
//! stays as it is, even when the new configuration names a server the
//! same (that entry is left out, and said so).
//!
//! Which server is what is decided by [`diff`], a pure function of the
//! old and new specs; [`Bridge::reconfigure`] carries it out.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::bridge::{bad_server_name, ServerSpec};

/// What a new configuration changed, by server name, each list in the
/// order the configuration (or, for `removed`, the bridge) lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// New: started when a client first needs them.
    pub added: Vec<String>,
    /// Gone: their sessions ended, their children stopped.
    pub removed: Vec<String>,
    /// Different in any way (command, arguments, environment, working
    /// directory, share mode, restarts, idle timeout, tool filters): ended,
    /// and started again under the new spec when a client needs them.
    pub changed: Vec<String>,
    /// As they were: children and sessions untouched.
    pub unchanged: Vec<String>,
    /// Named by the configuration, but a server added at run time has the
    /// name: that one stays, this entry is not used.
    pub shadowed: Vec<String>,
}

impl Reconfigured {
    /// Whether no server was added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for Reconfigured {
    /// One line for the log: what changed, and what was left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("changed", &self.changed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} {}", quoted(names)));
            }
        }
        if parts.is_empty() {
            parts.push("no server added, removed or changed".to_owned());
        }
        parts.push(format!("{} unchanged", self.unchanged.len()));
        if !self.shadowed.is_empty() {
            parts.push(format!(
                "{} left out: a server added at run time has the name",
                quoted(&self.shadowed)
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

/// `a`, `b` as the log writes names.
fn quoted(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    quoted.join(", ")
}

/// Why a configuration cannot be taken: the bridge keeps the one it has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadConfiguration {
    #[error("two servers are called `{0}`")]
    Duplicate(String),
    #[error("server `{name}`: {why}")]
    BadName { name: String, why: &'static str },
}

/// Sorts the servers of a new configuration, `new`, against the bridge's
/// servers now, `live`, of which those named in `configured` came from
/// the old configuration (the others were added at run time).
pub fn diff(live: &[ServerSpec], configured: &HashSet<String>, new: &[ServerSpec]) -> Reconfigured {
    let by_name: HashMap<&str, &ServerSpec> = live.iter().map(|s| (s.name.as_str(), s)).collect();
    let wanted: HashSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
    let mut diff = Reconfigured::default();
    for spec in new {
        let name = spec.name.clone();
        match by_name.get(spec.name.as_str()) {
            None => diff.added.push(name),
            Some(_) if !configured.contains(&spec.name) => diff.shadowed.push(name),
            Some(old) if *old == spec => diff.unchanged.push(name),
            Some(_) => diff.changed.push(name),
        }
    }
    diff.removed = live
        .iter()
        .filter(|s| configured.contains(&s.name) && !wanted.contains(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    diff
}

/// Whether every server of `specs` can be served: names usable in a URL,
/// and each once.
pub(super) fn check(specs: &[ServerSpec]) -> Result<(), BadConfiguration> {
    let mut seen = HashSet::new();
    for spec in specs {
        if let Some(why) = bad_server_name(&spec.name) {
            let name = spec.name.clone();
            return Err(BadConfiguration::BadName { name, why });
        }
        let prefix = spec.prefix.as_deref().unwrap_or_default();
        if let Some(why) = crate::gateway::aggregate::names::bad_prefix(prefix) {
            let name = spec.name.clone();
            return Err(BadConfiguration::BadName { name, why });
        }
        if !seen.insert(spec.name.as_str()) {
            return Err(BadConfiguration::Duplicate(spec.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use bytes::Bytes;
    use serde_json::{json, Value};

    use std::time::Instant;

    use super::*;
    use crate::bridge::{BridgeOutput, ChildId, Limits, Routed, Share, StopSignal};
    use crate::gateway::Bridge;
    use crate::http::{Body, Request};
    use crate::provider::{ConnId, Output};

    fn spec(name: &str) -> ServerSpec {
        ServerSpec::new(name, vec![format!("{name}-mcp")])
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_diff_sorts_servers_into_added_removed_changed_unchanged_and_shadowed() {
        let mut tools = spec("tools");
        tools.tools.exclude = vec!["rm".into()];
        let live = vec![spec("keep"), spec("drop"), spec("env"), tools, spec("mine")];
        let configured: HashSet<String> = names(&["keep", "drop", "env", "tools"])
            .into_iter()
            .collect();
        let mut env = spec("env");
        env.env = vec![("A".into(), "2".into())];
        let new = vec![spec("new"), env, spec("keep"), spec("tools"), spec("mine")];
        let diff = diff(&live, &configured, &new);
        assert_eq!(
            diff,
            Reconfigured {
                added: names(&["new"]),
                removed: names(&["drop"]),
                changed: names(&["env", "tools"]),
                unchanged: names(&["keep"]),
                shadowed: names(&["mine"]),
            }
        );
        assert_eq!(
            diff.to_string(),
            "added `new`; removed `drop`; changed `env`, `tools`; 1 unchanged; \
             `mine` left out: a server added at run time has the name"
        );
    }

    #[test]
    fn every_difference_of_a_spec_counts_as_a_change() {
        let old = spec("s");
        let tweaks: [fn(&mut ServerSpec); 8] = [
            |s| s.command.push("--flag".into()),
            |s| s.command[0] = "other".into(),
            |s| s.env.push(("K".into(), "V".into())),
            |s| s.cwd = Some("/tmp".into()),
            |s| s.share = Share::PerSession,
            |s| s.max_restarts = 0,
            |s| s.idle_timeout = Some(Duration::from_secs(60)),
            |s| s.tools.allow = vec!["echo".into()],
        ];
        let configured: HashSet<String> = names(&["s"]).into_iter().collect();
        for tweak in tweaks {
            let mut new = old.clone();
            tweak(&mut new);
            let diff = diff(std::slice::from_ref(&old), &configured, &[new]);
            assert_eq!(diff.changed, names(&["s"]));
        }
        let same = diff(
            std::slice::from_ref(&old),
            &configured,
            std::slice::from_ref(&old),
        );
        assert!(same.is_empty());
        assert_eq!(
            same.to_string(),
            "no server added, removed or changed; 1 unchanged"
        );
    }

    /// A bridge of several servers whose children the test plays: each
    /// spawn succeeds and each child answers the bridge's `initialize` at
    /// once; other lines for children are kept for the test to answer.
    struct Rig {
        bridge: Bridge,
        now: Instant,
        conn: u64,
        /// Lines each child was sent, `initialize` and its notification
        /// left out.
        lines: BTreeMap<usize, Vec<Value>>,
        /// Each child's spawn, in order.
        spawned: Vec<(ChildId, BridgeOutput)>,
        /// Each child's stop steps, in order.
        stopping: Vec<(ChildId, BridgeOutput)>,
    }

    impl Rig {
        fn new(specs: Vec<ServerSpec>) -> Rig {
            let now = Instant::now();
            Rig {
                bridge: Bridge::new(specs, Limits::default(), [3; 32], now),
                now,
                conn: 0,
                lines: BTreeMap::new(),
                spawned: Vec::new(),
                stopping: Vec::new(),
            }
        }

        /// Takes `specs`: what changed, and the HTTP outputs.
        fn reconfigure(&mut self, specs: Vec<ServerSpec>) -> (Reconfigured, Vec<Output>) {
            self.now += Duration::from_millis(10);
            let done = self.bridge.reconfigure(specs, Limits::default(), self.now);
            (done.expect("a good configuration"), self.drain())
        }

        fn request(
            &mut self,
            method: &str,
            path: &str,
            session: Option<&str>,
            body: Value,
        ) -> (ConnId, Vec<Output>) {
            self.conn += 1;
            let conn = ConnId(self.conn);
            let headers = session
                .map(|s| vec![("mcp-session-id".to_owned(), s.to_owned())])
                .unwrap_or_default();
            let body = match body {
                Value::Null => Bytes::new(),
                body => Bytes::from(body.to_string()),
            };
            let request = Request::new(method, path, headers, body).expect("a canonical path");
            self.bridge.handle_request(conn, request, self.now);
            (conn, self.drain())
        }

        /// What came out for HTTP; child actions carried out as the
        /// fake children would.
        fn drain(&mut self) -> Vec<Output> {
            let mut http = Vec::new();
            while let Some(routed) = self.bridge.poll_output() {
                match routed {
                    Routed::Http(output) => http.push(output),
                    Routed::Child {
                        child,
                        action: action @ BridgeOutput::Spawn { .. },
                    } => {
                        self.spawned.push((child, action));
                        self.bridge.handle_spawned(child, self.now);
                    }
                    Routed::Child {
                        child,
                        action: BridgeOutput::ToChild { line, .. },
                    } => {
                        let message: Value = serde_json::from_str(&line).expect("JSON");
                        match message["method"].as_str() {
                            Some("initialize") => {
                                let result = json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "fake", "version": "1"}});
                                let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                                self.bridge
                                    .handle_child_line(child, &answer.to_string(), self.now);
                            }
                            Some("notifications/initialized") => {}
                            _ => self.lines.entry(child.0).or_default().push(message),
                        }
                    }
                    Routed::Child { child, action } => self.stopping.push((child, action)),
                    Routed::Login { .. } | Routed::Keep { .. } => {}
                }
            }
            http
        }

        /// An initialized Streamable HTTP session on server `name`.
        fn session(&mut self, name: &str) -> String {
            let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
            let (_, out) = self.request("POST", &format!("/mcp/{name}"), None, init);
            match &out[..] {
                [Output::Respond { response, .. }] => response
                    .header("mcp-session-id")
                    .expect("a session")
                    .to_owned(),
                other => panic!("{other:?}"),
            }
        }

        /// A `tools/call` of `echo` on the session: the connection and
        /// what came out at once.
        fn call(&mut self, name: &str, session: &str, id: u64) -> (ConnId, Vec<Output>) {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"message": id}}});
            self.request("POST", &format!("/mcp/{name}"), Some(session), call)
        }

        /// The child answers the last call it was sent.
        fn child_answers_last(&mut self, child: ChildId) -> Vec<Output> {
            let asked = self.lines[&child.0].last().expect("a call")["id"].clone();
            let answer = json!({"jsonrpc": "2.0", "id": asked, "result": {"content": []}});
            self.bridge
                .handle_child_line(child, &answer.to_string(), self.now);
            self.drain()
        }

        fn child_of(&self, name: &str) -> Vec<ChildId> {
            let mut ids: Vec<ChildId> = self
                .bridge
                .children()
                .filter(|(_, c)| c.spec().name == name)
                .map(|(id, _)| id)
                .collect();
            ids.sort_by_key(|id| id.0);
            ids
        }
    }

    fn status(out: &[Output]) -> u16 {
        match out {
            [Output::Respond { response, .. }, ..] => response.status,
            other => panic!("{other:?}"),
        }
    }

    fn body(out: &[Output]) -> String {
        match out {
            [Output::Respond { response, .. }, ..] => match &response.body {
                Body::Full(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_removed_servers_call_in_flight_is_answered_its_session_gets_404_and_its_child_stops() {
        let mut rig = Rig::new(vec![spec("a"), spec("b")]);
        let a = rig.session("a");
        let [child] = rig.child_of("a")[..] else {
            panic!("one child")
        };
        let (waiting, out) = rig.call("a", &a, 7);
        assert!(out.is_empty(), "waits for the child");

        let (done, out) = rig.reconfigure(vec![spec("b")]);
        assert_eq!(done.removed, names(&["a"]));
        // The call in flight is answered with an error, not left hanging.
        match &out[..] {
            [Output::Respond { to, response }] => {
                assert_eq!(to.conn, waiting);
                let Body::Full(bytes) = &response.body else {
                    panic!("{response:?}")
                };
                let answer: Value = serde_json::from_slice(bytes).expect("JSON");
                assert_eq!(answer["id"], 7);
                assert_eq!(answer["error"]["code"], crate::bridge::SERVER_ERROR);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rig.stopping, [(child, BridgeOutput::CloseStdin)]);
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        let (_, out) = rig.request("POST", "/mcp/a", Some(&a), ping);
        assert_eq!(status(&out), 404);
        assert!(
            body(&out).contains("no bridged MCP server is called `a`"),
            "{}",
            body(&out)
        );
        // The child goes on its way out: SIGTERM, then forgotten at its exit.
        rig.now += Limits::default().stop_grace;
        rig.bridge.handle_timeout(rig.now);
        rig.drain();
        assert_eq!(
            rig.stopping.last(),
            Some(&(child, BridgeOutput::Signal(StopSignal::Term)))
        );
        rig.bridge.handle_child_exit(child, "", rig.now);
        rig.drain();
        assert!(rig.bridge.children().next().is_none(), "forgotten");
    }

    #[test]
    fn a_removed_servers_open_event_stream_ends() {
        let mut rig = Rig::new(vec![spec("a")]);
        let a = rig.session("a");
        let (stream, out) = rig.request("GET", "/mcp/a", Some(&a), Value::Null);
        assert_eq!(status(&out), 200);
        let (_, out) = rig.reconfigure(Vec::new());
        assert!(
            matches!(&out[..], [Output::End { to }] if to.conn == stream),
            "{out:?}"
        );
        assert_eq!(rig.bridge.sessions(), 0);
    }

    #[test]
    fn an_unchanged_servers_child_and_sessions_are_untouched() {
        let mut rig = Rig::new(vec![spec("a"), spec("b")]);
        let b = rig.session("b");
        let [child] = rig.child_of("b")[..] else {
            panic!()
        };
        let (waiting, out) = rig.call("b", &b, 7);
        assert!(out.is_empty());
        let mut a = spec("a");
        a.command.push("--v2".into());

        let (done, _) = rig.reconfigure(vec![a, spec("b"), spec("c")]);
        assert_eq!(done.unchanged, names(&["b"]));
        assert!(
            rig.stopping.is_empty(),
            "nothing stopped: {:?}",
            rig.stopping
        );
        // The call in flight is answered to the connection that waits.
        let out = rig.child_answers_last(child);
        assert!(
            matches!(&out[..], [Output::Respond { to, response }] if to.conn == waiting && response.status == 200),
            "{out:?}"
        );
        // The same session goes on, on the same child.
        let (_, out) = rig.call("b", &b, 8);
        assert!(out.is_empty());
        assert_eq!(rig.child_of("b"), [child]);
        assert_eq!(rig.spawned.len(), 1, "no spawn but b's first");
        assert_eq!(rig.bridge.sessions(), 1);
    }

    #[test]
    fn a_changed_server_ends_its_sessions_and_starts_under_its_new_spec() {
        let mut rig = Rig::new(vec![spec("a")]);
        let old_session = rig.session("a");
        let [old] = rig.child_of("a")[..] else {
            panic!()
        };
        let mut changed = spec("a");
        changed.env = vec![("VERSION".into(), "2".into())];

        let (done, _) = rig.reconfigure(vec![changed]);
        assert_eq!(done.changed, names(&["a"]));
        assert_eq!(rig.stopping, [(old, BridgeOutput::CloseStdin)]);
        let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
        let (_, out) = rig.request("POST", "/mcp/a", Some(&old_session), ping);
        assert_eq!(status(&out), 404, "{}", body(&out));
        // A client initializing again gets a new child, of the new spec,
        // while the old one is still stopping.
        rig.session("a");
        let spawned = rig.spawned.clone();
        let [(first, _), (second, spawn)] = &spawned[..] else {
            panic!("{:?}", rig.spawned)
        };
        let (first, second) = (*first, *second);
        assert_eq!(first, old);
        assert_ne!(second, old);
        assert_eq!(
            *spawn,
            BridgeOutput::Spawn {
                command: vec!["a-mcp".into()],
                env: vec![("VERSION".into(), "2".into())],
                cwd: None,
            }
        );
        // The old child's exit is its own: the new one is untouched, and
        // the old one forgotten.
        rig.bridge.handle_child_exit(old, "", rig.now);
        rig.drain();
        assert_eq!(rig.child_of("a"), [second]);
    }

    #[test]
    fn an_added_server_starts_when_a_client_first_needs_it() {
        let mut rig = Rig::new(vec![spec("a")]);
        let (done, _) = rig.reconfigure(vec![spec("a"), spec("new")]);
        assert_eq!(done.added, names(&["new"]));
        assert!(rig.spawned.is_empty(), "nothing started yet");
        rig.session("new");
        assert_eq!(rig.spawned.len(), 1);
        assert_eq!(rig.child_of("new").len(), 1);
    }

    #[test]
    fn servers_added_at_run_time_are_left_alone() {
        let mut rig = Rig::new(vec![spec("a")]);
        let add = json!({"name": "mine", "command": "mine-mcp"});
        let (_, out) = rig.request("POST", "/integrations", None, add);
        assert_eq!(status(&out), 201);
        let mine = rig.session("mine");

        let (done, _) = rig.reconfigure(vec![spec("a")]);
        assert!(done.removed.is_empty(), "{done:?}");
        let mut other = spec("mine");
        other.command = vec!["something-else".into()];
        let (done, _) = rig.reconfigure(vec![spec("a"), other]);
        assert_eq!(done.shadowed, names(&["mine"]));
        assert!(done.is_empty());
        assert!(rig.stopping.is_empty());
        let [child] = rig.child_of("mine")[..] else {
            panic!()
        };
        let command = &rig.bridge.child(child).map(|c| c.spec().command.clone());
        assert_eq!(command.as_deref(), Some(&["mine-mcp".to_owned()][..]));
        let (_, out) = rig.call("mine", &mine, 3);
        assert!(out.is_empty(), "the session goes on");
        // Once it is removed at run time, the configuration's entry is taken.
        let (_, out) = rig.request("DELETE", "/integrations/mine", None, Value::Null);
        assert_eq!(status(&out), 200);
        let mut other = spec("mine");
        other.command = vec!["something-else".into()];
        let (done, _) = rig.reconfigure(vec![spec("a"), other]);
        assert_eq!(done.added, names(&["mine"]));
    }

    #[test]
    fn a_configuration_naming_a_server_twice_changes_nothing() {
        let mut rig = Rig::new(vec![spec("a")]);
        let session = rig.session("a");
        rig.now += Duration::from_millis(10);
        let refused =
            rig.bridge
                .reconfigure(vec![spec("b"), spec("b")], Limits::default(), rig.now);
        assert_eq!(refused, Err(BadConfiguration::Duplicate("b".into())));
        let refused = rig
            .bridge
            .reconfigure(vec![spec("a/b")], Limits::default(), rig.now);
        assert!(matches!(refused, Err(BadConfiguration::BadName { .. })));
        assert!(rig.drain().is_empty());
        let (_, out) = rig.call("a", &session, 1);
        assert!(out.is_empty(), "still served");
        let (_, out) = rig.request("POST", "/mcp/b", None, json!({}));
        assert_eq!(status(&out), 404);
    }

    #[test]
    fn new_limits_apply_to_sessions_at_once() {
        let mut rig = Rig::new(vec![spec("a")]);
        rig.session("a");
        rig.now += Duration::from_millis(10);
        let limits = Limits {
            session_idle: Duration::from_secs(60),
            ..Limits::default()
        };
        let done = rig.bridge.reconfigure(vec![spec("a")], limits, rig.now);
        assert!(done.is_ok_and(|d| d.is_empty()));
        rig.now += Duration::from_secs(121);
        rig.bridge.handle_timeout(rig.now);
        rig.drain();
        assert_eq!(
            rig.bridge.sessions(),
            0,
            "the idle session expired under the new limit"
        );
    }
}
