//! What `serve` prints once it serves: where it listens, the base URL of
//! each API, the bridged servers, and the secrets it generated.

use std::io::Write;
use std::net::TcpListener;

use crate::secrets::{self, Filled};
use crate::settings::Settings;

pub(crate) struct Banner {
    /// The addresses listened on, port 0 resolved.
    bound: Vec<String>,
    /// The bridged servers' names.
    bridged: Vec<String>,
    /// Lines about generated secrets.
    notes: Vec<String>,
    /// Whether the built-in echo agent serves.
    echo: bool,
}

impl Banner {
    pub(crate) fn new(listeners: &[TcpListener], settings: &Settings, filled: &Filled) -> Banner {
        Banner {
            bound: listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .map(|a| a.to_string())
                .collect(),
            bridged: settings
                .bridge
                .all_servers()
                .map(|s| s.name.clone())
                .collect(),
            notes: secret_notes(filled),
            echo: settings.echo_agent,
        }
    }

    /// Prints the banner of the runtime named `runtime`, at once.
    pub(crate) fn print(&self, runtime: &str) {
        for addr in &self.bound {
            println!("MCP Local Provider ({runtime} runtime) listening on http://{addr}");
        }
        // The settings name at least one address; none is known only if
        // no bound listener could tell its own, and then there are no URLs
        // to give.
        if let Some(first) = self.bound.first() {
            println!("  OpenAI base URL:  http://{first}/v1");
            println!("  Ollama base URL:  http://{first}");
            println!("  Anthropic base URL: http://{first}");
            println!("  Agent link:       ws://{first}/v1/agent");
            println!(
                "  Dashboard:        http://{first}/ (in a browser; sign in with the bridge token)"
            );
            for name in &self.bridged {
                println!("  MCP server `{name}`: http://{first}/mcp/{name} (Streamable HTTP; the API key as Bearer)");
            }
        }
        for note in &self.notes {
            println!("{note}");
        }
        if self.echo {
            println!("  Model `echo` is served by the built-in echo agent.");
        }
        let _ = std::io::stdout().flush();
    }
}

/// Banner lines about generated secrets: the values, where they are kept
/// and how a shell picks them up.
fn secret_notes(filled: &Filled) -> Vec<String> {
    let how = if filled.new { "generated" } else { "kept" };
    let mut notes = Vec::new();
    if let Some(key) = &filled.api_key {
        notes.push(format!("  API key ({how}):      {key}"));
    }
    if let Some(token) = &filled.bridge_token {
        notes.push(format!("  Bridge token ({how}): {token}"));
    }
    if let (Some(file), false) = (&filled.file, notes.is_empty()) {
        notes.push(format!(
            "  Secrets kept in {}: `. {}` sets {} in a shell",
            file.display(),
            file.display(),
            [
                filled.api_key.as_ref().map(|_| secrets::API_KEY_VAR),
                filled
                    .bridge_token
                    .as_ref()
                    .map(|_| secrets::BRIDGE_TOKEN_VAR),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" and ")
        ));
    }
    notes
}
