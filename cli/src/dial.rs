//! The flags an agent command dials a provider with, turned into the
//! kit's [`Link`].

use mcp_provider_kit::agent::dial::Link;

use crate::secrets::SecretsError;

/// The flags every agent command dials with.
#[derive(clap::Args, Clone)]
pub struct LinkArgs {
    /// The provider's agent link.
    #[arg(
        long,
        env = "MCP_PROVIDER_URL",
        default_value = "ws://127.0.0.1:8788/v1/agent"
    )]
    url: String,
    /// Bridge token (default: $MCP_PROVIDER_BRIDGE_TOKEN, else the one
    /// `serve` generated and keeps in its secrets file).
    #[arg(long, env = "MCP_PROVIDER_BRIDGE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Stop when the link ends, instead of reconnecting with backoff
    /// (and resuming the session) until the provider is back.
    #[arg(long)]
    once: bool,
}

impl LinkArgs {
    /// The link, its token found where the user keeps it.
    pub fn resolve(self) -> Result<Link, SecretsError> {
        let token = self
            .token
            .map_or_else(crate::secrets::kept_bridge_token, Ok)?;
        Ok(Link {
            url: self.url,
            token,
            once: self.once,
        })
    }
}
