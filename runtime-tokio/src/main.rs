//! `mcp-provider-tokio`: MCP Local Provider on the tokio runtime.

use std::process::ExitCode;

/// Most of a call's small allocations live for one wake; mimalloc's
/// thread-local free lists serve them in a fraction of glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    mcp_provider_cli::main::<mcp_provider_tokio::Runtime>()
}
