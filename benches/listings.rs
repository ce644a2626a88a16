//! Real servers' tool listings (`tests/fixtures/listings/`) as the tool
//! search indexes them: one [`ToolDoc`] per tool, named as `/mcp` names it
//! (`server__tool`, the server named for its file), and the same listings
//! replicated under other server names for the larger figures.

use std::path::{Path, PathBuf};

use mcp_provider_core::search::ToolDoc;
use serde_json::Value;

/// `tests/fixtures/listings/` of this workspace.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/listings")
}

/// Every tool of every listing in `dir`, in file-name order.
pub fn load(dir: &Path) -> Result<Vec<ToolDoc>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let server = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let listing: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for tool in tools_of(&listing) {
            docs.push(ToolDoc {
                name: format!("{server}__{}", tool["name"].as_str().unwrap_or_default()),
                server: server.clone(),
                description: tool["description"].as_str().unwrap_or_default().to_string(),
                input_schema: tool["inputSchema"].clone(),
            });
        }
    }
    Ok(docs)
}

/// The `tools` array of a listing: a bare array, a `tools/list` result or
/// a whole answer.
fn tools_of(listing: &Value) -> &[Value] {
    let tools = match listing {
        Value::Array(_) => listing,
        _ => listing
            .get("result")
            .unwrap_or(listing)
            .get("tools")
            .unwrap_or(&Value::Null),
    };
    tools.as_array().map_or(&[], Vec::as_slice)
}

/// At least `at_least` tools: `docs`, then copies of them under the server
/// names `server-2`, `server-3`… (a gateway bridging the same servers
/// several times, or servers much alike).
pub fn replicated(docs: &[ToolDoc], at_least: usize) -> Vec<ToolDoc> {
    let mut out = docs.to_vec();
    let mut copy = 2;
    while out.len() < at_least && !docs.is_empty() {
        out.extend(docs.iter().map(|d| {
            let server = format!("{}-{copy}", d.server);
            let tool = d
                .name
                .strip_prefix(&format!("{}__", d.server))
                .unwrap_or(&d.name);
            ToolDoc {
                name: format!("{server}__{tool}"),
                server,
                ..d.clone()
            }
        }));
        copy += 1;
    }
    out
}
