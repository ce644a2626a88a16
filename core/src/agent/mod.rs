//! The agent side: the link protocol's messages and the built-in echo agent.

pub mod echo;
pub mod message;
