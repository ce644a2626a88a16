//! The agent side: the link protocol's messages, why links close, and the
//! built-in echo agent.

pub mod acp;
pub mod app;
pub mod close;
pub mod echo;
pub mod exec;
pub mod host;
pub mod message;
pub mod process;
pub mod relink;
