//! The bridge's figures, as a snapshot the provider shows: its children
//! and their restarts and calls in `/metrics`, a check per server in
//! `/health/deep` (and so on the dashboard). The bridge makes it; the
//! driver hands it to the provider now and then — the provider holds the
//! figures, never the bridge.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::ChildState;
use crate::metrics::family;

/// Every bridged server's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub servers: Vec<ServerFigures>,
    /// Client sessions open, every transport together.
    pub sessions: usize,
    /// What the aggregate endpoint's tool search did.
    pub searches: SearchFigures,
}

/// The tool search's counts since start-up, and its latest searches
/// (newest first), for `/metrics` and the dashboard.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFigures {
    /// `search_tools` calls answered.
    pub searches: u64,
    /// Tools called through `call_tool`.
    pub calls: u64,
    pub recent: Vec<SearchSeen>,
}

/// One search: what was asked, what it found, and which of those its
/// session then called (through `call_tool` or by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchSeen {
    pub query: String,
    pub found: Vec<String>,
    pub called: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerFigures {
    pub name: String,
    /// Its children's states (one, shared; or one per session).
    pub children: Vec<ChildState>,
    /// Restarts since start-up, children gone included.
    pub restarts: u64,
    /// Client requests sent to its children since start-up.
    pub calls: u64,
    pub in_flight: usize,
    pub remote: Option<RemoteFigures>,
}

/// What is shown of a remote server.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteFigures {
    /// Its URL, without its query (which may hold a key).
    pub url: String,
    pub status: crate::upstream::Status,
    /// Its token's refreshes since start-up: the driver's to count (it
    /// keeps the logins), zero as the bridge reports it.
    pub refreshes: u64,
}

impl ChildState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Stopped => "stopped",
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Stopping => "stopping",
            ChildState::Restarting => "restarting",
            ChildState::Failed => "failed",
        }
    }
}

/// One figure of a server.
type Figure = fn(&ServerFigures) -> u64;

const STATES: [ChildState; 6] = [
    ChildState::Stopped,
    ChildState::Starting,
    ChildState::Running,
    ChildState::Stopping,
    ChildState::Restarting,
    ChildState::Failed,
];

impl ServerFigures {
    /// Down: it failed too often and gave up, or it is a remote server
    /// that cannot be used (unreachable, or waiting for a login).
    pub fn failed(&self) -> bool {
        let remote_down = self.remote.as_ref().is_some_and(|remote| {
            matches!(
                remote.status,
                crate::upstream::Status::NeedsLogin(_) | crate::upstream::Status::Failing(_)
            )
        });
        self.children.contains(&ChildState::Failed) || remote_down
    }
}

impl Report {
    /// Its `/metrics` families.
    pub fn render(&self, out: &mut String) {
        family(
            out,
            "mcp_provider_bridge_children",
            "gauge",
            "Bridged MCP server processes, by server and state.",
        );
        for server in &self.servers {
            for state in STATES {
                let n = server.children.iter().filter(|s| **s == state).count();
                let _ = writeln!(
                    out,
                    "mcp_provider_bridge_children{{server=\"{}\",state=\"{}\"}} {n}",
                    server.name,
                    state.as_str()
                );
            }
        }
        let each: [(&str, &str, &str, Figure); 3] = [
            (
                "mcp_provider_bridge_restarts_total",
                "counter",
                "Restarts of a bridged server's processes.",
                |s| s.restarts,
            ),
            (
                "mcp_provider_bridge_calls_total",
                "counter",
                "Client requests sent to a bridged server.",
                |s| s.calls,
            ),
            (
                "mcp_provider_bridge_in_flight",
                "gauge",
                "Client requests a bridged server has not answered.",
                |s| s.in_flight as u64,
            ),
        ];
        for (name, kind, help, value) in each {
            family(out, name, kind, help);
            for server in &self.servers {
                let _ = writeln!(
                    out,
                    "{name}{{server=\"{}\"}} {}",
                    server.name,
                    value(server)
                );
            }
        }
        family(
            out,
            "mcp_provider_bridge_token_refreshes_total",
            "counter",
            "Access tokens of a remote server refreshed.",
        );
        for server in &self.servers {
            if let Some(remote) = &server.remote {
                let _ = writeln!(
                    out,
                    "mcp_provider_bridge_token_refreshes_total{{server=\"{}\"}} {}",
                    server.name, remote.refreshes
                );
            }
        }
        family(
            out,
            "mcp_provider_bridge_sessions",
            "gauge",
            "MCP bridge client sessions open.",
        );
        let _ = writeln!(out, "mcp_provider_bridge_sessions {}", self.sessions);
        let searches = &self.searches;
        for (name, help, n) in [
            (
                "mcp_provider_tool_searches_total",
                "Tool searches (`search_tools`) answered on /mcp.",
                searches.searches,
            ),
            (
                "mcp_provider_tool_search_calls_total",
                "Tools called through `call_tool` on /mcp.",
                searches.calls,
            ),
        ] {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {n}");
        }
    }

    /// The latest searches, as the control API shows them.
    pub fn searches_json(&self) -> Value {
        let s = &self.searches;
        let recent: Vec<Value> = s
            .recent
            .iter()
            .map(|seen| json!({"query": seen.query, "found": seen.found, "called": seen.called}))
            .collect();
        json!({"searches": s.searches, "calls": s.calls, "recent": recent})
    }

    /// A `/health/deep` check per server.
    pub fn checks(&self) -> Vec<Value> {
        self.servers
            .iter()
            .map(|s| {
                let states: Vec<&str> = s.children.iter().map(|c| c.as_str()).collect();
                let mut detail = match states.is_empty() {
                    true => "not started (the first request starts it)".to_owned(),
                    false => format!("{}; {} restarts, {} calls", states.join(", "), s.restarts, s.calls),
                };
                if let Some(remote) = &s.remote {
                    let status = &remote.status;
                    let why = status.why().map(|why| format!(": {why}")).unwrap_or_default();
                    detail = format!("{} {}{why}; {detail}", remote.url, status.as_str());
                    if remote.refreshes > 0 {
                        detail.push_str(&format!(", {} token refreshes", remote.refreshes));
                    }
                }
                json!({"name": format!("MCP server {}", s.name), "ok": !s.failed(), "detail": detail})
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_render_as_metrics_and_checks() {
        let report = Report {
            servers: vec![ServerFigures {
                name: "files".into(),
                children: vec![ChildState::Running],
                restarts: 2,
                calls: 7,
                in_flight: 1,
                remote: None,
            }],
            sessions: 3,
            ..Report::default()
        };
        let mut page = String::new();
        report.render(&mut page);
        assert!(
            page.contains("mcp_provider_bridge_children{server=\"files\",state=\"running\"} 1\n")
        );
        assert!(
            page.contains("mcp_provider_bridge_children{server=\"files\",state=\"failed\"} 0\n")
        );
        assert!(page.contains("mcp_provider_bridge_restarts_total{server=\"files\"} 2\n"));
        assert!(page.contains("mcp_provider_bridge_calls_total{server=\"files\"} 7\n"));
        assert!(page.contains("mcp_provider_bridge_sessions 3\n"));
        assert_eq!(report.checks()[0]["ok"], true);
        let mut failed = report.clone();
        failed.servers[0].children = vec![ChildState::Failed];
        assert_eq!(failed.checks()[0]["ok"], false);
        let mut locked = report.clone();
        let why = "run `mcp-provider login files`".to_owned();
        locked.servers[0].remote = Some(RemoteFigures {
            url: "https://mcp.example.com/mcp".into(),
            status: crate::upstream::Status::NeedsLogin(why),
            refreshes: 0,
        });
        let check = &locked.checks()[0];
        assert_eq!(check["ok"], false);
        assert!(check["detail"].as_str().unwrap().starts_with(
            "https://mcp.example.com/mcp needs login: run `mcp-provider login files`"
        ));
        assert!(!page.contains("token_refreshes_total{"));
        let mut refreshed = locked;
        if let Some(remote) = &mut refreshed.servers[0].remote {
            remote.status = crate::upstream::Status::Connected;
            remote.refreshes = 4;
        }
        let mut page = String::new();
        refreshed.render(&mut page);
        assert!(page.contains("mcp_provider_bridge_token_refreshes_total{server=\"files\"} 4\n"));
        let check = &refreshed.checks()[0];
        assert_eq!(check["ok"], true);
        assert!(check["detail"]
            .as_str()
            .unwrap()
            .ends_with(", 4 token refreshes"));
    }
}
