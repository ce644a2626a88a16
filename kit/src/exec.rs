//! `agent exec` as a runtime runs it: where it dials, which CLI it runs per
//! request and how (the plan), and where the runs start and find the
//! editor's tools.

use std::path::PathBuf;

use mcp_provider_core::agent::exec::ExecPlan;

/// `agent exec` dialing a provider.
#[derive(Debug, Clone)]
pub struct RemoteExec {
    pub link: crate::dial::Link,
    pub plan: ExecPlan,
    /// Where the runs start (default: where `agent exec` was started).
    pub cwd: Option<PathBuf>,
    /// Our own variables (`MCP_PROVIDER_*`) the runs get all the same.
    pub pass_env: Vec<String>,
    /// Where runs' tool relays connect, when the CLI is given the editor's
    /// tools.
    pub tool_socket: Option<PathBuf>,
    /// Where runs whose CLI gets a home of its own have it (in the tool
    /// directory).
    pub run_homes: Option<PathBuf>,
}
