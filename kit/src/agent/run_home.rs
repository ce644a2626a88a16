//! The homes of runs whose CLI gets one of its own (see the core's
//! `agent::exec::home`): made before the spawn in the tool directory,
//! removed once the run's process group is gone.

use std::collections::HashSet;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use mcp_provider_core::agent::exec::home::OwnHome;
use mcp_provider_core::agent::process::RunId;

/// Why a run's own home could not be made.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("no directory for the run's home")]
    NoDirectory,
    /// Neither the home's own variable nor `HOME` is set.
    #[error("neither {var} nor HOME is set")]
    NoUserHome { var: &'static str },
    #[error("cannot make {}: {source}", path.display())]
    Make {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The home of `run` in `homes`.
fn path(homes: &Path, run: RunId) -> PathBuf {
    homes.join(run.0.to_string())
}

/// Makes `run`'s home in `homes` for `home`, the user's being `user` (the
/// directory holding the CLI's own, `home.dir`): each entry of the user's
/// linked but for the settings file, which is written merged. Returns the
/// run's home, for `home.var`.
pub fn make(homes: &Path, run: RunId, home: &OwnHome, user: &Path) -> Result<PathBuf, HomeError> {
    let fail = |what: &Path, source| HomeError::Make {
        path: what.to_owned(),
        source,
    };
    let mine = path(homes, run);
    let _ = std::fs::remove_dir_all(&mine);
    let dir = mine.join(home.dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(&dir, e))?;
    let theirs = user.join(home.dir);
    for shared in home.shared {
        let shared = theirs.join(shared);
        std::fs::create_dir_all(&shared).map_err(|e| fail(&shared, e))?;
    }
    let entries = std::fs::read_dir(&theirs).map_err(|e| fail(&theirs, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == home.settings {
            continue;
        }
        let link = dir.join(&name);
        std::os::unix::fs::symlink(entry.path(), &link).map_err(|e| fail(&link, e))?;
    }
    let user_settings = std::fs::read_to_string(theirs.join(home.settings)).ok();
    let settings = home.settings_for(user_settings.as_deref());
    let file = dir.join(home.settings);
    let text = serde_json::to_string_pretty(&settings).unwrap_or_default();
    std::fs::write(&file, text).map_err(|e| fail(&file, e))?;
    Ok(mine)
}

/// The user's home for `home`: its variable's value, else `HOME`.
pub fn user(home: &OwnHome) -> Option<PathBuf> {
    [home.var, "HOME"]
        .into_iter()
        .filter_map(std::env::var_os)
        .find(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Removes the homes in `homes` of runs not in `live` (the links in them,
/// never what they point to).
pub fn sweep(homes: &Path, live: &HashSet<RunId>) {
    let Ok(entries) = std::fs::read_dir(homes) else {
        return;
    };
    for entry in entries.flatten() {
        let run = entry.file_name().to_str().and_then(|n| n.parse().ok());
        if run.is_some_and(|run| !live.contains(&RunId(run))) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gemini_home() -> OwnHome {
        OwnHome {
            var: "TEST_CLI_HOME",
            dir: ".cli",
            settings: "settings.json",
            shared: &["tmp"],
            overlay: json!({"mcpServers": {"editor": {"command": "relay"}}}),
            whole: &["mcpServers"],
        }
    }

    #[test]
    fn a_home_links_the_user_s_files_merges_the_settings_and_is_swept_alone() {
        let root = std::env::temp_dir().join(format!("run-home-test-{}", std::process::id()));
        let user = root.join("user");
        std::fs::create_dir_all(user.join(".cli/sessions")).unwrap();
        std::fs::write(user.join(".cli/oauth.json"), "token").unwrap();
        let settings = r#"{"auth": "key", "mcpServers": {"mine": {}}}"#;
        std::fs::write(user.join(".cli/settings.json"), settings).unwrap();
        let homes = root.join("homes");
        let made = make(&homes, RunId(7), &gemini_home(), &user).unwrap();
        assert_eq!(made, homes.join("7"));
        let dir = made.join(".cli");
        assert_eq!(
            std::fs::read_to_string(dir.join("oauth.json")).unwrap(),
            "token"
        );
        assert!(dir
            .join("sessions")
            .symlink_metadata()
            .unwrap()
            .is_symlink());
        // The shared directory is made in the user's, and linked.
        assert!(user.join(".cli/tmp").is_dir());
        std::fs::write(dir.join("tmp/session.json"), "{}").unwrap();
        assert!(user.join(".cli/tmp/session.json").exists());
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("settings.json")).unwrap())
                .unwrap();
        assert_eq!(
            written,
            json!({"auth": "key", "mcpServers": {"editor": {"command": "relay"}}})
        );
        assert_eq!(
            std::fs::read_to_string(user.join(".cli/settings.json")).unwrap(),
            settings
        );
        sweep(&homes, &HashSet::from([RunId(7)]));
        assert!(made.exists(), "a live run's home is kept");
        sweep(&homes, &HashSet::new());
        assert!(!made.exists(), "a gone run's home is removed");
        assert_eq!(
            std::fs::read_to_string(user.join(".cli/oauth.json")).unwrap(),
            "token"
        );
        assert!(user.join(".cli/tmp/session.json").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_user_with_no_directory_of_the_cli_gets_one_with_the_shared_directories() {
        let root = std::env::temp_dir().join(format!("run-home-new-{}", std::process::id()));
        let user = root.join("user");
        let made = make(&root.join("homes"), RunId(1), &gemini_home(), &user).unwrap();
        assert!(user.join(".cli/tmp").is_dir());
        let settings = std::fs::read_to_string(made.join(".cli/settings.json")).unwrap();
        assert!(settings.contains("relay"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
