//! The tool link: how a run's CLI reaches the editor's tools.
//!
//! Each CLI is configured with an MCP server that is this binary in a
//! small relay mode: it connects to the running `agent exec` on a private
//! local socket, says the run's secret on its first line, then carries the
//! CLI's MCP messages (JSON lines) both ways. This module is that server's
//! protocol: the hello, and the MCP requests a CLI makes (`initialize`,
//! `tools/list`, `tools/call`, `ping`). A call of a tool becomes a
//! [`Asked::Call`] the run holds until the editor's result comes. Tools
//! offered behind a search (see [`super::tool_search`]) are found by
//! `search_tools`, answered here, and called by `call_tool`, which becomes
//! the same [`Asked::Call`] of the tool it names.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::tool_search::{self, CALL_TOOL, SEARCH_TOOLS};
use super::tools::Offer;
use super::RunId;
use super::{MAX_CALLS, SERVER};
use crate::agent::quoted;
use crate::lines::{Line, LineBuffer};
use crate::mcp::{self, Message};

/// One connection from a relay, numbered by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// What the runtime should do with a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutput {
    /// Write this line (a newline follows it).
    Send(LinkId, String),
    /// Close it.
    Close(LinkId),
}

/// The longest line a relay may send: tool arguments are small, but an
/// editor's schemas can be long.
pub const MAX_LINE: usize = 1 << 20;

/// A run's secret: what its relay must say first. Derived from the
/// agent's random seed, so it cannot be guessed from the run's number.
pub fn secret(seed: &[u8; 32], run: RunId) -> String {
    derived(seed, b"secret", run.0, 0)
}

/// A call's id as the editor sees it: unique to this agent process, so a
/// history from before a restart never matches a call of a new run.
pub fn call_id(seed: &[u8; 32], run: RunId, n: u64) -> String {
    format!("call_{}", &derived(seed, b"call", run.0, n)[..24])
}

fn derived(seed: &[u8; 32], what: &[u8], a: u64, b: u64) -> String {
    let mut hash = Sha256::new();
    hash.update(seed);
    hash.update(what);
    hash.update(a.to_le_bytes());
    hash.update(b.to_le_bytes());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a relay's first line says `secret`.
pub fn says(hello: &str, secret: &str) -> bool {
    let said = serde_json::from_str::<Value>(hello).ok();
    let said = said.as_ref().and_then(|v| v["secret"].as_str());
    said.is_some_and(|s| bool::from(s.as_bytes().ct_eq(secret.as_bytes())))
}

/// How long a connection may take to say its hello: a relay says it as
/// soon as it connects, so one still silent after this is not a run's.
pub const HELLO_WAIT: Duration = Duration::from_secs(3);

/// The longest a hello may be (a secret is 64 characters): a connection
/// that sends more before its first newline is not a relay.
pub const MAX_HELLO: usize = 4096;

/// Connections that have not said their hello yet, at most: one more
/// closes the oldest of them. Kept apart from the runs' own, so silent
/// connections never take a place a run's relay needs.
pub const MAX_UNSAID: usize = 16;

/// Connections one run may hold (a CLI starts one relay; a few more for
/// one that restarts its MCP server); a further one with its secret is
/// closed.
pub const MAX_PER_RUN: usize = 4;

/// Lines waiting to be written to one connection, at most: a run's
/// results all come at once (up to [`MAX_CALLS`]), and a relay reads all
/// the time. A connection whose outbox is full is not reading: it is
/// closed, and costs no one else a wait.
pub const OUTBOX: usize = 2 * MAX_CALLS;

/// Bytes waiting to be written to one connection, at most, beside
/// [`OUTBOX`]: a CLI that keeps asking for a long tool list and never
/// reads is closed before it holds more than this. A line alone in an
/// empty outbox always goes, however long: it is in memory already.
pub const OUTBOX_BYTES: usize = 16 << 20;

/// A connection's state: lines not yet complete, the run it serves once
/// its hello was right, and when it opened.
pub struct Link {
    pub input: LineBuffer,
    pub run: Option<RunId>,
    pub opened: Instant,
}

impl Link {
    pub fn new(now: Instant) -> Self {
        Link {
            input: LineBuffer::new(MAX_LINE),
            run: None,
            opened: now,
        }
    }

    /// Whether it has not said its hello and its time to is over, or it
    /// has sent more than a hello can be.
    pub fn unsaid_past(&self, now: Instant) -> bool {
        self.run.is_none() && (self.opened + HELLO_WAIT <= now || self.input.pending() > MAX_HELLO)
    }
}

/// The connections that have not said their hello, each with when it
/// opened.
fn unsaid(links: &HashMap<LinkId, Link>) -> impl Iterator<Item = (Instant, LinkId)> + '_ {
    links
        .iter()
        .filter(|(_, l)| l.run.is_none())
        .map(|(&id, l)| (l.opened, id))
}

/// The connection to close so a new one fits under [`MAX_UNSAID`]: the
/// oldest silent one, when that many are open.
pub fn crowded_out(links: &HashMap<LinkId, Link>) -> Option<LinkId> {
    let oldest = unsaid(links).min()?;
    (unsaid(links).count() >= MAX_UNSAID).then_some(oldest.1)
}

/// The connections to close at `now`: silent past [`HELLO_WAIT`], or
/// sending more than a hello.
pub fn silent(links: &HashMap<LinkId, Link>, now: Instant) -> Vec<LinkId> {
    let mut ids: Vec<_> = links
        .iter()
        .filter(|(_, l)| l.unsaid_past(now))
        .map(|(&id, _)| id)
        .collect();
    ids.sort_unstable();
    ids
}

/// When the next silent connection's time to say its hello is over.
pub fn hello_due(links: &HashMap<LinkId, Link>) -> Option<Instant> {
    unsaid(links).min().map(|(opened, _)| opened + HELLO_WAIT)
}

/// How many connections `run` holds.
pub fn held_by(links: &HashMap<LinkId, Link>, run: RunId) -> usize {
    links.values().filter(|l| l.run == Some(run)).count()
}

/// What a CLI's MCP message asks of us.
#[derive(Debug, Clone, PartialEq)]
pub enum Asked {
    /// Answered at once with this line.
    Reply(String),
    /// Answered at once with this line, after which the tools listed
    /// changed (a search found some): the CLI is to be told so.
    Relisted(String),
    /// A call of one of the editor's tools: answered with its result.
    Call {
        rpc: Value,
        name: String,
        arguments: Value,
    },
    /// Nothing to answer (a notification, a response).
    Nothing,
}

/// The answer to one line from a run's CLI, offered `offer` (whose tools
/// found so far a search changes).
pub fn asked(line: &Line, offer: &mut Offer) -> Asked {
    let text = match line {
        Line::Text(text) => text,
        Line::TooLong => {
            return Asked::Reply(mcp::error(
                &Value::Null,
                mcp::PARSE_ERROR,
                "message too long",
                None,
            ))
        }
    };
    let (id, method, params) = match mcp::parse(text) {
        Ok(Message::Request { id, method, params }) => (id, method, params),
        Ok(_) => return Asked::Nothing,
        Err(invalid) => return Asked::Reply(invalid.reply()),
    };
    if let Some(refusal) = mcp::unsupported_version(&id, &params) {
        return Asked::Reply(refusal);
    }
    // Behind a search the listing changes as tools are found.
    let capabilities = match offer.search {
        Some(_) => json!({"tools": {"listChanged": true}}),
        None => json!({"tools": {}}),
    };
    let server_info = json!({"name": SERVER, "version": env!("CARGO_PKG_VERSION")});
    let result = match method.as_str() {
        "initialize" => json!({
            "protocolVersion": mcp::negotiate(params["protocolVersion"].as_str().unwrap_or_default()),
            "capabilities": capabilities,
            "serverInfo": server_info,
        }),
        "server/discover" => mcp::discover_result(capabilities, server_info, ""),
        "ping" => json!({}),
        "tools/list" => mcp::listing("tools", Value::Array(offer.listing())),
        "tools/call" => return called(id, &params, offer),
        _ => {
            let message = format!("method {} is not supported", quoted(&method));
            return Asked::Reply(mcp::error(&id, mcp::METHOD_NOT_FOUND, &message, None));
        }
    };
    Asked::Reply(mcp::result(&id, result))
}

/// A `tools/call`: of one of the editor's tools, by its name or through
/// `call_tool`, or (behind a search) `search_tools`.
fn called(id: Value, params: &Value, offer: &mut Offer) -> Asked {
    let invalid = |message: &str| Asked::Reply(mcp::error(&id, mcp::INVALID_PARAMS, message, None));
    let (name, arguments) = match (params["name"].as_str(), offer.search.as_mut()) {
        (Some(SEARCH_TOOLS), Some(search)) => {
            return match search.search(&params["arguments"]) {
                Ok((result, true)) => Asked::Relisted(mcp::result(&id, result)),
                Ok((result, false)) => Asked::Reply(mcp::result(&id, result)),
                Err(why) => invalid(&format!("{SEARCH_TOOLS}: {why}")),
            };
        }
        (Some(CALL_TOOL), Some(_)) => match tool_search::called(&params["arguments"]) {
            Ok((name, arguments)) => (Value::from(name), arguments),
            Err(why) => return invalid(&format!("{CALL_TOOL}: {why}")),
        },
        _ => (params["name"].clone(), params["arguments"].clone()),
    };
    match name.as_str().filter(|name| offer.has(name)) {
        Some(name) => Asked::Call {
            rpc: id,
            name: name.to_owned(),
            arguments: match arguments {
                Value::Null => json!({}),
                arguments => arguments,
            },
        },
        None => invalid(&format!("no tool named {}", quoted(&name.to_string()))),
    }
}

/// The MCP result of a call, from the editor's result.
pub fn result(rpc: &Value, text: &str, is_error: bool) -> String {
    mcp::result(
        rpc,
        json!({"content": [{"type": "text", "text": text}], "isError": is_error}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer::of(&json!({"kind": "chat", "messages": [],
            "parameters": {"tools": [{"type": "function", "function": {"name": "weather"}}]}}))
        .unwrap()
    }

    fn ask(line: Value) -> Asked {
        asked(&Line::Text(line.to_string()), &mut offer())
    }

    fn reply(asked: Asked) -> Value {
        match asked {
            Asked::Reply(line) => serde_json::from_str(&line).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_cli_lists_exactly_the_offered_tools_and_calls_them() {
        let init = reply(ask(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}}}),
        ));
        assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
        assert!(init["result"]["capabilities"]["tools"].is_object());
        let list = reply(ask(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        ));
        assert_eq!(list["result"]["tools"], json!(offer().tools));
        assert_eq!(
            ask(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                       "params": {"name": "weather", "arguments": {"city": "Oslo"}}})),
            Asked::Call {
                rpc: json!(3),
                name: "weather".into(),
                arguments: json!({"city": "Oslo"})
            }
        );
        let unknown = reply(ask(
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                       "params": {"name": "Bash"}}),
        ));
        assert_eq!(unknown["error"]["code"], mcp::INVALID_PARAMS);
        let method = reply(ask(
            json!({"jsonrpc": "2.0", "id": 5, "method": "resources/list"}),
        ));
        assert_eq!(method["error"]["code"], mcp::METHOD_NOT_FOUND);
        assert_eq!(
            ask(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            Asked::Nothing
        );
        let long = asked(&Line::TooLong, &mut offer());
        assert_eq!(reply(long)["error"]["code"], mcp::PARSE_ERROR);
    }

    fn searched() -> Offer {
        let payload = json!({"kind": "chat", "messages": [],
                             "parameters": {"tools": tool_search::chat_tools(40)}});
        let indexes = &mut tool_search::Indexes::default();
        Offer::of(&payload)
            .unwrap()
            .searched(tool_search::ToolSearch::default(), indexes)
    }

    fn tools_call(name: &str, arguments: Value) -> Line {
        let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}});
        Line::Text(call.to_string())
    }

    fn listed(offer: &mut Offer) -> Vec<String> {
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
        let list = reply(asked(&Line::Text(list.to_string()), offer));
        let tools = list["result"]["tools"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        tools
            .iter()
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn behind_a_search_a_cli_finds_tools_then_calls_them_by_name_or_through_call_tool() {
        let mut offer = searched();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2025-06-18", "capabilities": {}}});
        let init = reply(asked(&Line::Text(init.to_string()), &mut offer));
        assert_eq!(init["result"]["capabilities"]["tools"]["listChanged"], true);
        assert_eq!(listed(&mut offer), [SEARCH_TOOLS, CALL_TOOL]);
        let search = tools_call(
            SEARCH_TOOLS,
            json!({"query": "take a screenshot", "limit": 2}),
        );
        let found = match asked(&search, &mut offer) {
            Asked::Relisted(line) => serde_json::from_str::<Value>(&line).unwrap(),
            other => panic!("expected a search's answer, got {other:?}"),
        };
        assert_eq!(found["id"], 7);
        let tools = &found["result"]["structuredContent"]["tools"];
        assert_eq!(tools[0]["name"], "browser_take_screenshot");
        assert_eq!(
            listed(&mut offer)[..3],
            [SEARCH_TOOLS, CALL_TOOL, "browser_take_screenshot"]
        );
        // Through call_tool: a call of the tool it names, as the editor
        // gives it.
        let through = tools_call(
            CALL_TOOL,
            json!({"name": "browser_take_screenshot",
                                                   "arguments": {"filename": "a.png"}}),
        );
        assert_eq!(
            asked(&through, &mut offer),
            Asked::Call {
                rpc: json!(7),
                name: "browser_take_screenshot".into(),
                arguments: json!({"filename": "a.png"})
            }
        );
        // By its name, found or not.
        let direct = tools_call("chore_20", json!({"level": "high"}));
        assert!(
            matches!(asked(&direct, &mut offer), Asked::Call { name, .. } if name == "chore_20")
        );
        // Bad input: an MCP error, and the listing as it was.
        for bad in [
            tools_call(SEARCH_TOOLS, json!({"query": ""})),
            tools_call(SEARCH_TOOLS, json!({"query": "issue", "limit": 50})),
            tools_call(CALL_TOOL, json!({"name": "shell", "arguments": {}})),
            tools_call(
                CALL_TOOL,
                json!({"name": "create_issue", "arguments": "title"}),
            ),
            tools_call("shell", json!({})),
        ] {
            let refused = reply(asked(&bad, &mut offer));
            assert_eq!(refused["error"]["code"], mcp::INVALID_PARAMS, "{refused}");
        }
        assert_eq!(listed(&mut offer).len(), 3);
    }

    #[test]
    fn without_a_search_the_two_tools_are_not_there() {
        let mut offer = offer();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2025-06-18", "capabilities": {}}});
        let init = reply(asked(&Line::Text(init.to_string()), &mut offer));
        assert_eq!(init["result"]["capabilities"]["tools"], json!({}));
        let search = tools_call(SEARCH_TOOLS, json!({"query": "weather"}));
        assert_eq!(
            reply(asked(&search, &mut offer))["error"]["code"],
            mcp::INVALID_PARAMS
        );
    }

    #[test]
    fn a_relay_is_let_in_only_with_its_runs_secret() {
        let seed = [7; 32];
        let one = secret(&seed, RunId(1));
        assert_ne!(one, secret(&seed, RunId(2)));
        assert_ne!(one, secret(&[8; 32], RunId(1)));
        assert!(says(&json!({"secret": one}).to_string(), &one));
        assert!(!says(&json!({"secret": "nope"}).to_string(), &one));
        assert!(!says("not json", &one));
        assert_ne!(call_id(&seed, RunId(1), 0), call_id(&seed, RunId(1), 1));
        assert!(call_id(&seed, RunId(1), 0).starts_with("call_"));
    }
}
