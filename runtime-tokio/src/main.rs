//! `mcp-provider-tokio`: MCP Local Provider on the tokio runtime.

use std::process::ExitCode;

fn main() -> ExitCode {
    mcp_provider_cli::main::<mcp_provider_tokio::Runtime>()
}
