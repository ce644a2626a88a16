//! The agent side: the link protocol's messages, why links close, and the
//! built-in echo agent.

pub mod acp;
pub mod app;
pub mod close;
pub mod echo;
pub mod exec;
pub mod host;
pub mod ledger;
pub mod message;
pub mod process;
pub mod relink;
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
