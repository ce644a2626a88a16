//! A settings file's text (the config file, an `mcpServers` file), read
//! with a cap on its size.

use std::path::Path;

use super::BadSettings;

/// The largest config or `mcpServers` file read: far past any real one
/// (Claude Code's `~/.claude.json` keeps history beside its servers),
/// while a wrong path to something huge is refused, not read whole.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The text of a settings file, at most [`MAX_FILE_BYTES`]; the error
/// says which file (`what`) and why.
pub fn read_file(path: &Path, what: &str) -> Result<String, BadSettings> {
    use std::io::Read as _;
    let cannot =
        |e: std::io::Error| BadSettings(format!("cannot read {what} {}: {e}", path.display()));
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(cannot)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(BadSettings(format!(
            "cannot read {what} {}: it is larger than {} MiB",
            path.display(),
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    Ok(text)
}
