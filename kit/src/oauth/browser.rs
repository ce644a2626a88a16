//! Opening the authorization page in the user's browser: `$BROWSER` when
//! set (a `:`-separated list of commands, each run with the URL as its
//! last argument, or in place of `%s`, the first that starts winning),
//! else the desktop's opener (`xdg-open`, or `open` on macOS). The
//! browser is left running; only its launcher is waited for, on a thread
//! of its own.

use std::process::{Command, Stdio};

/// Whether `$BROWSER` names a browser: then a running server may open
/// one for a login it needs.
pub fn configured() -> bool {
    std::env::var_os("BROWSER").is_some_and(|b| !b.is_empty())
}

/// Opens `url`; an error says which commands were tried.
pub fn open(url: &str) -> Result<(), String> {
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
        let started = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match started {
            Ok(mut child) => {
                let _ = std::thread::Builder::new()
                    .name("browser".into())
                    .spawn(move || child.wait());
                return Ok(());
            }
            Err(e) => tried.push(format!("{program}: {e}")),
        }
    }
    Err(format!("no browser could be opened ({})", tried.join("; ")))
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
}
