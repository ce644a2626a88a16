//! The agent side: the link protocol's messages both ways ([`message`],
//! [`to_agent`]), why links close, an agent's session across links
//! (`relink`), and the agents: the built-in echo, an application's own,
//! an MCP host's ([`host`]), and those that run processes ([`exec`],
//! [`acp`]), which share what a runtime does for them ([`process`]) and
//! their invocations in flight (`ledger`).

pub mod acp;
pub mod app;
pub mod close;
pub mod echo;
pub mod exec;
pub mod host;
mod ledger;
pub mod message;
pub mod process;
mod relink;
pub mod to_agent;

/// The most of a peer's method (or tool) name an error quotes back to it:
/// enough to recognise it, and a line of its own no bigger than that
/// whatever the peer sent.
pub const QUOTED_NAME: usize = 100;

/// `name`, as an error quotes it back to the peer that sent it: at most
/// [`QUOTED_NAME`] bytes of it.
pub fn quoted(name: &str) -> String {
    crate::text::bounded(name, QUOTED_NAME)
}
