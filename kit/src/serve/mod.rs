//! The server's fan-out, the same in every runtime: the [`hub`] that keeps
//! the core's provider under one lock, the connections' [`mailbox`]es, an
//! agent link's [`burst`]s of frames and its [`link_writes`], the
//! [`admission`] of editor connections, what an [`accept`] loop does when
//! an accept fails, an agent attached [`in_process`], the served
//! WebSockets' settings ([`ws`]), graceful [`shutdown`] and the [`audit`]
//! log.

pub mod accept;
pub mod admission;
pub mod audit;
pub mod burst;
pub mod hub;
pub mod in_process;
pub mod link_writes;
pub mod mailbox;
pub mod shutdown;
pub mod ws;
