//! Outbound HTTP: remote MCP servers' exchanges ([`upstream`]) over
//! [`tls`] where the URL says `https`, one whole request for the rest
//! ([`fetch`]), OAuth logins ([`oauth`]), and TCP [`keepalive`] on every
//! connection this process dials.

pub mod fetch;
pub mod keepalive;
pub mod oauth;
pub mod tls;
pub mod upstream;
