//! Lazy servers' last runs on disk (see the core's `bridge::lazy`): one
//! file per server in `<state dir>/servers/`, named by the core
//! ([`kept_file`]), read for the core at start and at a reload, and
//! written whole when it asks ([`Routed::Keep`](mcp_provider_core::bridge::Routed::Keep)).

use std::path::{Path, PathBuf};

use mcp_provider_core::bridge::{kept_file, ServerSpec, MAX_KEPT_RUN};

/// The folder of kept runs (`None`: there is no state directory).
pub(super) fn dir() -> Option<PathBuf> {
    crate::agent::dial::state_dir().map(|d| d.join("servers"))
}

/// The kept runs of `specs` there are in `dir`, by file: for
/// [`Bridge::handle_kept`](mcp_provider_core::gateway::Bridge). A file
/// that cannot be read is left out, with a log line.
pub(super) fn read(dir: &Path, specs: &[ServerSpec]) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for spec in specs {
        let file = kept_file(spec);
        match crate::private_file::read(&dir.join(&file), MAX_KEPT_RUN as u64) {
            Ok(Some(contents)) => found.push((file, contents)),
            Ok(None) => {}
            Err(why) => tracing::warn!(
                server = %spec.name,
                "the kept listing of this MCP server is ignored: {why}"
            ),
        }
    }
    found
}

/// Keeps `contents` in `dir/file` in place of what it held.
pub(super) fn write(dir: &Path, file: &str, contents: &str) {
    if let Err(why) = crate::private_file::replace(dir, file, contents.as_bytes()) {
        tracing::warn!("an MCP server's listing could not be kept: {why}");
    }
}
