//! Live reload of the bridge's servers, the same for every runtime: when
//! the config file (`--config`) or an `mcpServers` file (`--mcp-json`,
//! `bridge.mcp_json`) changes, or on SIGHUP, the settings are read again
//! and the bridge takes its new servers ([`Bridged::reconfigure`]: added
//! ones start when first needed, removed and changed ones end, unchanged
//! ones are untouched). Servers given by `--server` read the same every
//! time, so they never change; those added at run time are the bridge's
//! own business.
//!
//! One thread does it all. It waits on the SIGHUP self-pipe for at most
//! [`POLL`], then compares each file's metadata with what it was: no
//! file-watching library (none covers every system alike, and a second a
//! poll costs a `stat` per file). A file that cannot be read, or reads
//! wrong, is refused with one log line naming it and the problem, and the
//! bridge keeps the configuration it has; the same version is not tried
//! again, only its next change. Each reload logs one line of what
//! changed. Settings other than the bridge's are read at start only: a
//! change of them is said once, and waits for a restart.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mcp_provider_kit::bridge::Bridged;
use mcp_provider_kit::outbound::oauth::OAuthCredentials;
use signal_hook::consts::SIGHUP;

use crate::settings::sources::Source;
use crate::settings::Settings;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_secs(1);

/// Starts the thread that reloads from `source` (whose settings read
/// `loaded` at start) into `bridged` and its remote servers' `credentials`,
/// on change and on SIGHUP.
pub fn watch(
    bridged: Arc<Bridged>,
    credentials: Arc<OAuthCredentials>,
    source: Source,
    loaded: Settings,
) -> std::io::Result<()> {
    let (mut hangups, pipe) = UnixStream::pair()?;
    hangups.set_read_timeout(Some(POLL))?;
    signal_hook::low_level::pipe::register(SIGHUP, pipe)?;
    let mut reloader = Reloader::new(bridged, source, loaded);
    reloader.credentials = Some(credentials);
    std::thread::Builder::new()
        .name("config-reload".into())
        .spawn(move || loop {
            let hangup = hung_up(&mut hangups);
            reloader.tick(hangup);
        })?;
    Ok(())
}

/// Waits up to [`POLL`] for SIGHUP: whether one came (any number that
/// came since count as one).
fn hung_up(hangups: &mut UnixStream) -> bool {
    let mut bytes = [0u8; 64];
    match hangups.read(&mut bytes) {
        Ok(1..) => true,
        // Never: the write end lives as long as the process.
        Ok(0) => {
            std::thread::sleep(POLL);
            false
        }
        Err(_) => false,
    }
}

/// A file's metadata, as far as a change shows in it: size, times (to
/// the nanosecond) and identity (an editor that saves by renaming a new
/// file over the old one changes the inode). `None`: it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, i64, i64, i64, i64, u64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        Stamp(std::fs::metadata(path).ok().map(|m| {
            (
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
                m.dev(),
            )
        }))
    }
}

/// The settings in force, the files they come from and how those looked.
struct Reloader {
    bridged: Arc<Bridged>,
    /// Where remote servers' OAuth settings go.
    credentials: Option<Arc<OAuthCredentials>>,
    source: Source,
    current: Settings,
    files: Vec<(PathBuf, Stamp)>,
}

impl Reloader {
    fn new(bridged: Arc<Bridged>, source: Source, current: Settings) -> Reloader {
        let files = stamps(source.files(&current));
        Reloader {
            bridged,
            credentials: None,
            source,
            current,
            files,
        }
    }

    /// One look: a reload if SIGHUP came or a file changed.
    fn tick(&mut self, hangup: bool) {
        let now = stamps(self.files.iter().map(|(path, _)| path.clone()).collect());
        let changed: Vec<String> = now
            .iter()
            .zip(&self.files)
            .filter(|(new, old)| new != old)
            .map(|((path, _), _)| path.display().to_string())
            .collect();
        if !hangup && changed.is_empty() {
            return;
        }
        // Whatever comes of it, this version of the files is done with:
        // a bad one is refused once, not every second.
        self.files = now;
        let why = match hangup {
            true => "SIGHUP".to_owned(),
            false => format!("{} changed", changed.join(", ")),
        };
        self.reload(&why);
    }

    /// Reads the settings again and hands the bridge its servers; on any
    /// error, says so and keeps what is in force.
    fn reload(&mut self, why: &str) {
        let refused = |problem: &dyn std::fmt::Display| {
            tracing::error!(
                "the MCP bridge's configuration was not reloaded ({why}): {}; the previous one stays in force",
                one_line(&problem.to_string())
            );
        };
        let new = match self.source.load() {
            Ok(new) => new,
            Err(e) => return refused(&e),
        };
        let specs = new.bridge.all_servers().map(|s| s.spec()).collect();
        match self.bridged.reconfigure(specs, new.bridge_limits()) {
            Ok(done) => {
                self.bridged.set_names(new.bridge.names());
                self.bridged.set_tool_search(new.bridge.tool_search());
                if let Some(credentials) = &self.credentials {
                    credentials.set_servers(crate::login::servers(&new));
                }
                tracing::info!("the MCP bridge's configuration was reloaded ({why}): {done}")
            }
            Err(e) => return refused(&e),
        }
        for note in new
            .bridge
            .notes
            .iter()
            .filter(|n| !self.current.bridge.notes.contains(n))
        {
            tracing::warn!("{note}");
        }
        if new.differs_beyond_the_bridge(&self.current) {
            tracing::warn!(
                "settings other than the MCP bridge's changed too: they take effect when the server starts again"
            );
        }
        // The files named now are the ones watched (the config file may
        // name other `mcpServers` files than before).
        let files = self.source.files(&new);
        if files.iter().ne(self.files.iter().map(|(path, _)| path)) {
            self.files = stamps(files);
        }
        self.current = new;
    }
}

/// `text` on one line: a TOML error shows the bad line and a caret under
/// it on lines of their own, which a log line cannot hold.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn stamps(files: Vec<PathBuf>) -> Vec<(PathBuf, Stamp)> {
    files
        .into_iter()
        .map(|path| {
            let stamp = Stamp::of(&path);
            (path, stamp)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::sources::Added;
    use mcp_provider_core::bridge::Limits;

    /// A folder of its own for a test's files.
    fn folder(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reload-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        dir
    }

    fn servers(names: &[(&str, &str)]) -> String {
        let entries: Vec<String> = names
            .iter()
            .map(|(name, arg)| format!(r#""{name}": {{"command": "cat", "args": ["{arg}"]}}"#))
            .collect();
        format!(r#"{{"mcpServers": {{{}}}}}"#, entries.join(", "))
    }

    fn bridged_names(bridged: &Arc<Bridged>) -> Vec<String> {
        bridged_specs(bridged).into_iter().map(|(n, _)| n).collect()
    }

    fn bridged_specs(bridged: &Arc<Bridged>) -> Vec<(String, Vec<String>)> {
        bridged.with(|b, _| {
            b.specs()
                .iter()
                .map(|s| (s.name.clone(), s.command.clone()))
                .collect()
        })
    }

    fn reloader(dir: &std::path::Path, flags: &[&str]) -> (Reloader, Arc<Bridged>, PathBuf) {
        let file = dir.join("mcp.json");
        std::fs::write(&file, servers(&[("a", "1"), ("b", "1")])).expect("written");
        let source = Source {
            added: Added {
                servers: flags.iter().map(|f| f.to_string()).collect(),
                mcp_json: vec![file.display().to_string()],
            },
            ..Source::default()
        };
        let loaded = source.load().expect("good settings");
        let specs = loaded.bridge.all_servers().map(|s| s.spec()).collect();
        let bridged = Bridged::start(specs, Limits::default(), [1; 32]);
        (
            Reloader::new(bridged.clone(), source, loaded),
            bridged,
            file,
        )
    }

    /// Writes `text` over `file` the way editors save: a new file renamed
    /// over the old one.
    fn save(file: &PathBuf, text: &str) {
        let new = file.with_extension("new");
        std::fs::write(&new, text).expect("written");
        std::fs::rename(&new, file).expect("renamed");
    }

    #[test]
    fn a_changed_file_is_taken_and_a_bad_one_refused_with_the_old_kept() {
        let dir = folder("change");
        let (mut reloader, bridged, file) = reloader(&dir, &["flag=cat"]);
        let cat = |arg: &str| vec!["cat".to_owned(), arg.to_owned()];
        let two = [
            ("flag".to_owned(), vec!["cat".to_owned()]),
            ("a".to_owned(), cat("1")),
            ("b".to_owned(), cat("1")),
        ];
        assert_eq!(bridged_specs(&bridged), two);
        reloader.tick(false);
        assert_eq!(bridged_specs(&bridged), two, "nothing changed");

        save(&file, &servers(&[("b", "2"), ("c", "1")]));
        reloader.tick(false);
        let three = [
            ("flag".to_owned(), vec!["cat".to_owned()]),
            ("b".to_owned(), cat("2")),
            ("c".to_owned(), cat("1")),
        ];
        assert_eq!(bridged_specs(&bridged), three);

        // Not JSON, then two servers of one name: refused, the old kept.
        save(&file, "{ not json");
        reloader.tick(false);
        assert_eq!(bridged_specs(&bridged), three);
        save(&file, &servers(&[("flag", "1")]));
        reloader.tick(false);
        assert_eq!(bridged_specs(&bridged), three);
        assert!(reloader
            .source
            .load()
            .is_err_and(|e| e.0.contains("two servers have this name")
                && e.0.contains("mcp.json")
                && e.0.contains("--server flag=")),);
        // Put right: taken.
        save(&file, &servers(&[("c", "1")]));
        reloader.tick(false);
        assert_eq!(
            bridged_specs(&bridged),
            [
                ("flag".to_owned(), vec!["cat".to_owned()]),
                ("c".to_owned(), cat("1"))
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_hangup_reloads_even_when_no_file_looks_changed() {
        let dir = folder("hangup");
        let (mut reloader, bridged, file) = reloader(&dir, &[]);
        // Changed behind the watcher's back (its stamps taken again since):
        // no poll sees it.
        std::fs::write(&file, servers(&[("a", "1"), ("z", "1")])).expect("written");
        reloader.files = stamps(vec![file.clone()]);
        reloader.tick(false);
        assert_eq!(bridged_names(&bridged), ["a", "b"]);
        reloader.tick(true);
        assert_eq!(bridged_names(&bridged), ["a", "z"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_the_config_names_later_is_watched_from_then_on() {
        let dir = folder("named");
        let other = dir.join("other.json");
        std::fs::write(&other, servers(&[("o", "1")])).expect("written");
        let config = dir.join("config.toml");
        std::fs::write(&config, "").expect("written");
        let source = Source {
            file: Some(config.clone()),
            ..Source::default()
        };
        let loaded = source.load().expect("good settings");
        let bridged = Bridged::start(Vec::new(), Limits::default(), [1; 32]);
        let mut reloader = Reloader::new(bridged.clone(), source, loaded);
        save(
            &config,
            &format!("[bridge]\nmcp_json = [{:?}]\n", other.display().to_string()),
        );
        reloader.tick(false);
        assert_eq!(bridged_specs(&bridged).len(), 1);
        save(&other, &servers(&[("o", "1"), ("p", "1")]));
        reloader.tick(false);
        assert_eq!(bridged_specs(&bridged).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
