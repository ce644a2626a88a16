//! What `agent acp` runs, and the limits it runs it in.

use std::time::Duration;

use serde_json::Value;

use super::permission::Policy;
use crate::agent::exec::ToolLink;

/// How the editor's tools reach the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EditorTools {
    /// As the session's MCP server, unless the agent's first session never
    /// listed the tools of the one it was given: then as text.
    #[default]
    Auto,
    /// As the session's MCP server.
    Mcp,
    /// As text in the prompt, calls read back from the answer.
    Text,
}

/// What to run, and the limits to run it in.
#[derive(Debug, Clone)]
pub struct AcpPlan {
    /// The model name editors ask for.
    pub model: String,
    /// The agent's command line.
    pub command: Vec<String>,
    /// Variables set for it, beside the inherited ones.
    pub env: Vec<(String, String)>,
    /// The directory its sessions work in (absolute, as ACP wants).
    pub cwd: String,
    /// The longest a turn may take, waiting for the agent included.
    pub timeout: Duration,
    /// The longest the agent may take to answer `initialize`.
    pub start_timeout: Duration,
    /// Sessions at once in one agent process.
    pub max_sessions: usize,
    /// Agent processes at once: another starts when every session of
    /// those running is busy.
    pub max_processes: usize,
    /// How long an idle session is kept.
    pub idle: Duration,
    /// Requests waiting for the agent or a session; more are refused.
    pub max_queued: usize,
    /// Which of its own tools the agent may run.
    pub policy: Policy,
    /// Show the agent's own tool calls and plan as reasoning.
    pub show_tools: bool,
    /// What logs the agent in, when known: said to an editor whose turn
    /// the agent refused for want of a login.
    pub login: Option<String>,
    /// How sessions reach the editor's tools; without it a request's
    /// tools are not offered.
    pub tools: Option<ToolLink>,
    /// How the tools reach the agent, when it is given them.
    pub editor_tools: EditorTools,
    /// The agent keeps the MCP servers of its sessions by name for its
    /// whole working directory, not per session: a session's relay may
    /// carry another's calls.
    pub shared_servers: bool,
    /// A process's spare session is opened only while it runs no turn:
    /// for an agent that locks a store its processes share while it opens
    /// a session, left locked a while by a process killed meanwhile (a
    /// process is mostly killed mid-turn).
    pub spare_when_idle: bool,
    /// The `_meta` of a `session/new` that turns the agent's own tools off
    /// (for an agent that can), sent when the session gets the editor's
    /// tools and the agent may not run its own anyway.
    pub own_tools_off: Option<Value>,
}
