//! Secrets the server makes up when none are configured (the editors' API
//! key, the agents' bridge token), kept between runs in a file of `export`
//! lines that only the user can read: editors stay configured across
//! restarts, and `. <file>` puts both in a shell for curl or a script.

use std::io::Write;
use std::path::{Path, PathBuf};

pub const API_KEY_VAR: &str = "MCP_PROVIDER_API_KEY";
pub use mcp_provider_kit::agent::dial::BRIDGE_TOKEN_VAR;

/// Why the secrets file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read secrets file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write secrets file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// No token was given and none is kept in `file` (empty: there is no
    /// default secrets file).
    #[error(
        "no bridge token: pass --token, set {BRIDGE_TOKEN_VAR}, or start `serve` first (it keeps a generated token in {})",
        named_or_not(.file)
    )]
    NoBridgeToken { file: String },
}

/// The secrets file, as a message names it.
fn named_or_not(file: &str) -> &str {
    if file.is_empty() {
        "its secrets file"
    } else {
        file
    }
}

/// The secrets the configuration left out, filled in.
#[derive(Debug)]
pub struct Filled {
    pub api_key: Option<String>,
    pub bridge_token: Option<String>,
    /// The file they are kept in, if any.
    pub file: Option<PathBuf>,
    /// Whether this run made them (rather than reading them back).
    pub new: bool,
}

/// A secret from random bytes: `prefix` and hex.
fn secret(prefix: &str, random: &[u8]) -> String {
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Fills in the API key (`need_key`) and bridge token (`need_token`): from
/// `file` when it holds them, else made from `random` (36 bytes) and
/// written there. An empty `file` keeps nothing.
pub fn fill(
    file: &str,
    need_key: bool,
    need_token: bool,
    random: &[u8; 36],
) -> Result<Filled, SecretsError> {
    let path = (!file.is_empty()).then(|| PathBuf::from(file));
    let kept = match &path {
        Some(p) if p.exists() => read(p)?,
        _ => Vec::new(),
    };
    let find = |var: &str| kept.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone());
    let mut new = false;
    let mut pick = |needed: bool, var: &str, prefix: &str, bytes: &[u8]| {
        needed.then(|| {
            find(var).unwrap_or_else(|| {
                new = true;
                secret(prefix, bytes)
            })
        })
    };
    let api_key = pick(need_key, API_KEY_VAR, "sk-local-", &random[..18]);
    let bridge_token = pick(need_token, BRIDGE_TOKEN_VAR, "bt-", &random[18..]);
    if let (true, Some(p)) = (new, &path) {
        write(p, api_key.as_deref(), bridge_token.as_deref())?;
    }
    Ok(Filled {
        api_key,
        bridge_token,
        file: path,
        new,
    })
}

/// The bridge token `serve` generated and keeps in its default secrets
/// file, for an agent started on the same machine without `--token`.
pub fn kept_bridge_token() -> Result<String, SecretsError> {
    let file = mcp_provider_kit::agent::dial::default_secrets_file();
    if file.is_empty() || !Path::new(&file).exists() {
        return Err(SecretsError::NoBridgeToken { file });
    }
    read(Path::new(&file))?
        .into_iter()
        .find(|(k, _)| k == BRIDGE_TOKEN_VAR)
        .map(|(_, v)| v)
        .ok_or(SecretsError::NoBridgeToken { file })
}

/// `export NAME=value` lines of a secrets file.
fn read(path: &Path) -> Result<Vec<(String, String)>, SecretsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read {
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|rest| rest.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('\'').to_owned()))
        .filter(|(_, v)| !v.is_empty())
        .collect())
}

fn write(
    path: &Path,
    api_key: Option<&str>,
    bridge_token: Option<&str>,
) -> Result<(), SecretsError> {
    let fail = |source| SecretsError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(fail)?;
    let mut text =
        String::from("# MCP Local Provider's generated secrets: `. this-file` in a shell.\n");
    for (var, value) in [(API_KEY_VAR, api_key), (BRIDGE_TOKEN_VAR, bridge_token)] {
        if let Some(v) = value {
            text.push_str(&format!("export {var}='{v}'\n"));
        }
    }
    f.write_all(text.as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_secrets_once_then_reads_them_back() {
        let dir = std::env::temp_dir().join(format!("secrets-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("state/env");
        let file_name = file.to_string_lossy().into_owned();
        let first = fill(&file_name, true, true, &[1; 36]).unwrap();
        assert!(first.new);
        assert_eq!(
            first.api_key.as_deref(),
            Some(&*format!("sk-local-{}", "01".repeat(18)))
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = fill(&file_name, true, true, &[2; 36]).unwrap();
        assert!(!again.new);
        assert_eq!(
            (again.api_key, again.bridge_token),
            (first.api_key, first.bridge_token)
        );
        // A configured key is neither read nor kept: only the token is.
        let token_only = fill(&file_name, false, true, &[3; 36]).unwrap();
        assert_eq!(token_only.api_key, None);
        let none = fill("", true, false, &[4; 36]).unwrap();
        assert!(none.new && none.file.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
