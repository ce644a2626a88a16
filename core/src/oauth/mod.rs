//! The OAuth 2.1 client of the MCP authorization spec (revisions
//! 2025-11-25 and 2026-07-28, with the 2025-03-26 fallbacks), for remote
//! MCP servers that want a token.
//!
//! Like the rest of the core it does no I/O: a [`Login`] says what to
//! fetch and which page to open in a browser ([`LoginOutput`]), and is
//! handed back the responses and the browser's redirect. The driver owns
//! the sockets, the loopback listener, the browser and the file tokens
//! are kept in; random bytes and the time come in as arguments.
//!
//! ```no_run
//! use mcp_provider_core::http::Url;
//! use mcp_provider_core::oauth::{Login, LoginOutput, LoginPlan, Logins, Random};
//! # fn fetch(_: &mcp_provider_core::http::Outgoing) -> Result<(mcp_provider_core::http::ResponseHead, Vec<u8>), String> { Err("no network here".into()) }
//! # fn open_and_wait(_: &Url) -> String { String::new() }
//! # fn unix_now() -> u64 { 0 }
//! let server = Url::parse("https://mcp.example.com/mcp").unwrap();
//! let plan = LoginPlan {
//!     known: Logins::new(&server),
//!     server,
//!     challenge: None,
//!     client: Default::default(),
//!     redirect_uri: "http://127.0.0.1:33418/callback".into(),
//! };
//! let mut login = Login::new(plan, Random::from_bytes(&[7; 48]));
//! loop {
//!     match login.poll_output() {
//!         Some(LoginOutput::Fetch(request)) => match fetch(&request) {
//!             Ok((head, body)) => login.handle_response(&head, &body, unix_now()),
//!             Err(why) => login.handle_failed(&why),
//!         },
//!         Some(LoginOutput::Authorize(url)) => login.handle_redirect(&open_and_wait(&url)),
//!         Some(LoginOutput::Done(stored)) => break, // keep `stored`
//!         Some(LoginOutput::Failed(why)) => break,  // tell the user
//!         None => break,
//!     }
//! }
//! ```
//!
//! What a hostile server or authorization server may send is refused
//! with the reason, before anything is kept: metadata naming another
//! resource or issuer, private or clear-text endpoints for a public
//! server, a redirect whose `state` or `iss` is not this login's, a token
//! endpoint answering anything but JSON.

mod challenge;
mod form;
mod guard;
mod login;
mod pkce;
mod registration;
mod reply;
mod resource;
mod server_metadata;
mod stored;
mod token;

#[cfg(test)]
mod tests;

pub use challenge::Challenge;
pub use guard::Guard;
pub use login::{ClientSettings, Login, LoginOutput, LoginPlan};
pub use pkce::Random;
pub use stored::{Logins, Stored};
pub use token::AuthMethod;

/// The most of any response a login reads (metadata, registration,
/// tokens): a body past it is an error, not memory.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Why a login (or a refresh) did not succeed, by whose doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The server or its authorization server sent what a client must
    /// not accept.
    #[error("{0}")]
    Refused(String),
    /// Something could not be reached, or answered with an error.
    #[error("{0}")]
    Unavailable(String),
    /// The authorization server (or the user) said no.
    #[error("{0}")]
    Denied(String),
    /// The configuration lacks what this server needs.
    #[error("{0}")]
    Config(String),
}
