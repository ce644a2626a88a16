//! Opening the authorization page in the user's browser: `$BROWSER` when
//! set (a `:`-separated list of commands, each run with the URL as its
//! last argument, or in place of `%s`, the first that starts winning),
//! else the desktop's opener (`xdg-open`, or `open` on macOS). The
//! browser is left running; only its launcher is waited for, on a thread
//! of its own, and a launcher that fails ([`Opened::failed`]) means no
//! redirect will come from it.

use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

/// A browser opened on the authorization page.
pub struct Opened {
    /// Its launcher's failure, once it ended with one.
    failure: Arc<OnceLock<String>>,
}

impl Opened {
    /// Why the browser's launcher ended with a failure, if it did: a
    /// command-line browser that could not load the page, or an opener
    /// that found no browser. Nothing will come back from it.
    pub fn failed(&self) -> Option<String> {
        self.failure.get().cloned()
    }
}

/// Whether `$BROWSER` names a browser: then a running server may open
/// one for a login it needs.
pub fn configured() -> bool {
    std::env::var_os("BROWSER").is_some_and(|b| !b.is_empty())
}

/// No browser could be opened: each command tried, with why.
#[derive(Debug, thiserror::Error)]
#[error("no browser could be opened ({})", tried.join("; "))]
pub struct NoBrowser {
    pub tried: Vec<String>,
}

/// Opens `url`; an error says which commands were tried.
pub fn open(url: &str) -> Result<Opened, NoBrowser> {
    let commands: Vec<Vec<String>> = match std::env::var("BROWSER") {
        Ok(list) if !list.trim().is_empty() => list
            .split(':')
            .map(|command| with_url(command, url))
            .filter(|argv| !argv.is_empty())
            .collect(),
        _ => vec![vec![desktop_opener().to_owned(), url.to_owned()]],
    };
    let mut tried = Vec::new();
    for argv in &commands {
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        match launch(program, args) {
            Ok(opened) => return Ok(opened),
            Err(e) => tried.push(format!("{program}: {e}")),
        }
    }
    Err(NoBrowser { tried })
}

/// Starts `program` with `args`; a thread waits for it and keeps its
/// failure.
pub(super) fn launch(program: &str, args: &[String]) -> std::io::Result<Opened> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let failure = Arc::new(OnceLock::new());
    let failed = Arc::clone(&failure);
    let program = program.to_owned();
    let _ = std::thread::Builder::new()
        .name("browser".into())
        .spawn(move || match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => {
                let _ = failed.set(format!("the browser ({program}) ended with {status}"));
            }
            Err(e) => {
                let _ = failed.set(format!("the browser ({program}): {e}"));
            }
        });
    Ok(Opened { failure })
}

/// The words of one `$BROWSER` command, the URL in place of `%s` or
/// after them.
fn with_url(command: &str, url: &str) -> Vec<String> {
    let mut argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    if argv.is_empty() {
        return argv;
    }
    if argv.iter().any(|w| w.contains("%s")) {
        for word in &mut argv {
            *word = word.replace("%s", url);
        }
    } else {
        argv.push(url.to_owned());
    }
    argv
}

fn desktop_opener() -> &'static str {
    if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_goes_where_the_command_says() {
        assert_eq!(
            with_url("firefox --new-tab", "u"),
            ["firefox", "--new-tab", "u"]
        );
        assert_eq!(with_url("w3m %s -dump", "u"), ["w3m", "u", "-dump"]);
        assert!(with_url("  ", "u").is_empty());
    }

    /// Polls `opened` for a failure for up to 10 s.
    fn failure(opened: &Opened) -> Option<String> {
        for _ in 0..200 {
            if let Some(why) = opened.failed() {
                return Some(why);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }

    #[test]
    fn a_launcher_that_fails_is_told_from_one_that_opened_the_page() {
        let failed = launch("false", &[]).unwrap();
        let why = failure(&failed).expect("the failure was seen");
        assert!(
            why.contains("(false)") && why.contains("exit status: 1"),
            "{why}"
        );
        let opened = launch("true", &[]).unwrap();
        let exited = launch("false", &[]).unwrap();
        failure(&exited);
        assert_eq!(opened.failed(), None);
    }
}
