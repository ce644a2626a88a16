//! `login NAME` and `logout NAME`: a remote server's OAuth login, made in
//! the user's browser (or a URL printed for one) and kept in the state
//! directory, where a running `serve` or `bridge` takes it up at its next
//! request to that server; or forgotten. Tokens are never printed.

use std::io::Write;

use mcp_provider_core::oauth::Logins;
use mcp_provider_kit::outbound::oauth::{
    self, browser_configured, open_browser, NotShown, OAuthServer, Opened, Store,
};

use crate::settings::{BadSettings, Settings};
use crate::ConfigArgs;

/// Why `login` or `logout` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Settings(#[from] BadSettings),
    /// No server of that name is bridged: the names that are.
    #[error(
        "no bridged server is named `{name}` (bridged: {}); give its config with --config, --server NAME=URL or --mcp-json",
        listed(.bridged)
    )]
    NotBridged { name: String, bridged: Vec<String> },
    #[error("`{0}` runs a command: only a remote server (one with a `url`) logs in")]
    NotRemote(String),
    #[error("no bridged server is named `{0}`, and no login is kept for that name")]
    NothingToForget(String),
    /// A name no login can be kept under.
    #[error("{0}")]
    BadName(String),
    #[error("the login to `{name}` failed: {why}")]
    Failed {
        name: String,
        why: oauth::LoginError,
    },
    /// The kept logins could not be read or written.
    #[error("{0}")]
    Store(String),
    #[error("there is no state directory to keep the login in: set HOME or XDG_STATE_HOME")]
    NoStateDirectory,
}

impl LoginError {
    /// Whether the user named the wrong server (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            LoginError::Settings(_)
                | LoginError::NotBridged { .. }
                | LoginError::NotRemote(_)
                | LoginError::NothingToForget(_)
                | LoginError::BadName(_)
        )
    }
}

/// Bridged servers' names as a message lists them.
fn listed(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The remote server's name (it is bridged at /mcp/NAME).
    name: String,
    /// Print the authorization URL instead of opening a browser (then
    /// wait for the browser to come back).
    #[arg(long)]
    no_browser: bool,
    #[command(flatten)]
    sources: ConfigArgs,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The remote server's name.
    name: String,
    #[command(flatten)]
    sources: ConfigArgs,
}

/// The OAuth settings of every remote server `settings` bridge.
pub fn servers(settings: &Settings) -> Vec<OAuthServer> {
    let browser = browser_configured();
    settings
        .bridge
        .all_servers()
        .filter_map(|s| s.oauth(browser))
        .collect()
}

/// `login NAME`.
pub fn login(args: LoginArgs) -> Result<(), LoginError> {
    let LoginArgs {
        name,
        no_browser,
        sources,
    } = args;
    let settings = load(sources)?;
    let server = remote(&settings, &name)?;
    let store = store()?;
    let mut logins = match store.read(&name) {
        Ok(Some(logins)) if logins.is_for(&server.url) => logins,
        Ok(_) => Logins::new(&server.url),
        Err(why) => {
            eprintln!("The login kept for `{name}` is replaced: {why}");
            Logins::new(&server.url)
        }
    };
    let show = |url: &str| -> Result<Option<Opened>, NotShown> {
        if !no_browser {
            match open_browser(url) {
                Ok(opened) => {
                    println!(
                        "A browser was opened to log in to `{name}`; waiting for it to come back…"
                    );
                    flushed()?;
                    return Ok(Some(opened));
                }
                Err(why) => eprintln!("{why}"),
            }
        }
        println!("Open this URL in a browser on this machine to log in to `{name}`:\n\n  {url}\n\nWaiting for the browser to come back…");
        flushed()?;
        Ok(None)
    };
    let stored =
        oauth::login(&server, None, logins.clone(), &show).map_err(|why| LoginError::Failed {
            name: name.clone(),
            why,
        })?;
    let summary = format!(
        "authorization server {}{}",
        stored.issuer,
        match stored.scopes.join(" ") {
            scopes if scopes.is_empty() => String::new(),
            scopes => format!(", scopes {scopes}"),
        }
    );
    logins.record(stored);
    store.write(&name, &logins).map_err(stored_badly)?;
    println!(
        "Logged in to `{name}` ({summary}); kept in {}. A running server uses it from its next request.",
        store.path(&name).map_err(stored_badly)?.display()
    );
    Ok(())
}

/// `logout NAME`.
pub fn logout(args: LogoutArgs) -> Result<(), LoginError> {
    let LogoutArgs { name, sources } = args;
    let settings = load(sources)?;
    let store = store()?;
    let path = store
        .path(&name)
        .map_err(|why| LoginError::BadName(why.to_string()))?;
    if store.remove(&name).map_err(stored_badly)? {
        println!("Logged out of `{name}`: {} is removed.", path.display());
    } else if settings.bridge.all_servers().any(|s| s.name == name) {
        println!("`{name}` had no login kept.");
    } else {
        return Err(LoginError::NothingToForget(name));
    }
    Ok(())
}

/// The kept logins' error.
fn stored_badly(why: impl std::fmt::Display) -> LoginError {
    LoginError::Store(why.to_string())
}

fn load(sources: ConfigArgs) -> Result<Settings, BadSettings> {
    sources.source(Vec::new()).load()
}

/// The OAuth settings of the remote server `name`.
fn remote(settings: &Settings, name: &str) -> Result<OAuthServer, LoginError> {
    let Some(server) = settings.bridge.all_servers().find(|s| s.name == name) else {
        return Err(LoginError::NotBridged {
            name: name.to_owned(),
            bridged: settings
                .bridge
                .all_servers()
                .map(|s| s.name.clone())
                .collect(),
        });
    };
    server
        .oauth(false)
        .ok_or_else(|| LoginError::NotRemote(name.to_owned()))
}

fn store() -> Result<Store, LoginError> {
    Store::default_location().ok_or(LoginError::NoStateDirectory)
}

/// Flushes what was printed for the user.
fn flushed() -> std::io::Result<()> {
    std::io::stdout().flush()
}
