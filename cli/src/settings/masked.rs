//! The effective settings printed back as a config file, secrets hidden.

use std::fmt::Write as _;

use super::Settings;

impl Settings {
    /// The effective settings as a config file `--config` reads back:
    /// every key with its value, secrets and unset keys as comments (a
    /// secret's value is never shown).
    pub fn masked(&self, default_max_connections: usize) -> String {
        let mut shown = self.clone();
        shown.max_connections = Some(self.max_connections.unwrap_or(default_max_connections));
        // A remote server's headers and OAuth client secret are
        // credentials.
        for server in &mut shown.bridge.servers {
            for value in server.headers.values_mut() {
                *value = "(hidden)".to_owned();
            }
            if let Some(secret) = &mut server.client_secret {
                *secret = "(hidden)".to_owned();
            }
        }
        let mut out = String::from("# MCP Local Provider: effective configuration\n");
        let secret = |set: bool, name: &str, var: &str| {
            if set {
                format!("# {name}: set (hidden); give it with {var} or in a config file\n")
            } else if self.secrets_file.is_empty() {
                format!("# {name}: generated at start-up\n")
            } else {
                format!(
                    "# {name}: generated at start-up, kept in {}\n",
                    self.secrets_file
                )
            }
        };
        out.push_str(&secret(
            !self.api_key.is_empty(),
            "api_key",
            "MCP_PROVIDER_API_KEY",
        ));
        out.push_str(&secret(
            self.bridge_token.is_some(),
            "bridge_token",
            "MCP_PROVIDER_BRIDGE_TOKEN",
        ));
        if self.agent_hub.is_none() {
            out.push_str("# agent_hub: not set (ws://… of a hub to dial out to)\n");
        }
        if !self.telemetry.headers.is_empty() {
            let names: Vec<&str> = self.telemetry.headers.keys().map(String::as_str).collect();
            let _ = writeln!(
                out,
                "# telemetry.headers: {} set (values hidden)",
                names.join(", ")
            );
        }
        if self.audit_log.is_none() {
            out.push_str("# audit_log: not set (a file for the audit trail)\n");
        }
        match toml::to_string(&shown) {
            Ok(text) => out.push_str(&text),
            Err(e) => {
                let _ = writeln!(out, "# cannot show the settings: {e}");
            }
        }
        out
    }
}
