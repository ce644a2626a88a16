//! The settings turned into the core's `Config`.

use std::time::Duration;

use mcp_provider_core::{Approval, Config};

use super::Settings;

impl Settings {
    /// The core's configuration, with the secrets given.
    pub fn core_config(&self, api_keys: &[String], bridge_token: &str, id_seed: u64) -> Config {
        let keys: Vec<&str> = api_keys.iter().map(String::as_str).collect();
        let mut c = Config::new(&keys, bridge_token);
        c.require_api_key = self.require_api_key;
        let file = match self.secrets_file.as_str() {
            "" => String::new(),
            file => format!(" ({file})"),
        };
        c.credentials_hint = format!(
            "The API key and the bridge token are printed when the server starts; \
             unless configured, they are kept in its secrets file{file} as {} and {}.",
            crate::secrets::API_KEY_VAR,
            crate::secrets::BRIDGE_TOKEN_VAR,
        );
        c.approval = if self.approval == "manual" {
            Approval::Manual
        } else {
            Approval::Auto
        };
        c.http.max_body = self.max_body_bytes;
        c.http.max_head = self.max_header_bytes;
        c.request.max_messages = self.max_messages;
        c.request.max_message_bytes = self.max_message_bytes;
        c.request.max_tokens = self.max_tokens;
        c.request_timeout = Duration::from_secs(self.request_timeout_secs);
        c.stream_idle_timeout = Duration::from_secs(self.stream_idle_timeout_secs);
        c.keepalive_interval = Duration::from_millis(self.keepalive_ms.max(1));
        c.agent_ping_interval = Duration::from_secs(self.agent_ping_secs.clamp(1, 3600));
        c.session_ttl = Duration::from_secs(self.session_ttl_secs);
        c.max_sessions = self.max_sessions;
        c.session_grace = Duration::from_secs(self.session_grace_secs);
        c.max_output_bytes = self.max_output_bytes;
        c.max_queued_bytes = self.max_queued_bytes;
        c.store = mcp_provider_core::StoreLimits {
            max_bytes: self.responses_store_bytes,
            max_age: Duration::from_secs(self.responses_store_secs),
        };
        c.max_background = self.max_background_responses;
        c.requests_per_minute = self.requests_per_minute;
        c.tokens_per_minute = self.tokens_per_minute;
        c.allowed_hosts = self.allowed_hosts.clone();
        c.cors_origins = self.cors_origins.clone();
        c.id_seed = id_seed;
        c
    }
}
