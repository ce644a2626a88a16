//! `login NAME` and `logout NAME`: a remote server's OAuth login, made in
//! the user's browser (or a URL printed for one) and kept in the state
//! directory, where a running `serve` or `bridge` takes it up at its next
//! request to that server; or forgotten. Tokens are never printed.

use std::io::Write;

use mcp_provider_core::oauth::Logins;
use mcp_provider_kit::oauth::{self, browser_configured, open_browser, OAuthServer, Opened, Store};

use crate::settings::Settings;
use crate::{ConfigArgs, Failure};

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
pub fn login(args: LoginArgs) -> Result<(), Failure> {
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
    let show = |url: &str| -> Result<Option<Opened>, String> {
        if !no_browser {
            match open_browser(url) {
                Ok(opened) => {
                    println!(
                        "A browser was opened to log in to `{name}`; waiting for it to come back…"
                    );
                    return flushed().map(|()| Some(opened));
                }
                Err(why) => eprintln!("{why}"),
            }
        }
        println!("Open this URL in a browser on this machine to log in to `{name}`:\n\n  {url}\n\nWaiting for the browser to come back…");
        flushed().map(|()| None)
    };
    let stored = oauth::login(&server, None, logins.clone(), &show)
        .map_err(|why| Failure::Runtime(format!("the login to `{name}` failed: {why}")))?;
    let summary = format!(
        "authorization server {}{}",
        stored.issuer,
        match stored.scopes.join(" ") {
            scopes if scopes.is_empty() => String::new(),
            scopes => format!(", scopes {scopes}"),
        }
    );
    logins.record(stored);
    store.write(&name, &logins).map_err(Failure::Runtime)?;
    println!(
        "Logged in to `{name}` ({summary}); kept in {}. A running server uses it from its next request.",
        store.path(&name).map_err(Failure::Runtime)?.display()
    );
    Ok(())
}

/// `logout NAME`.
pub fn logout(args: LogoutArgs) -> Result<(), Failure> {
    let LogoutArgs { name, sources } = args;
    let settings = load(sources)?;
    let store = store()?;
    let path = store.path(&name).map_err(Failure::Usage)?;
    if store.remove(&name).map_err(Failure::Runtime)? {
        println!("Logged out of `{name}`: {} is removed.", path.display());
    } else if settings.bridge.all_servers().any(|s| s.name == name) {
        println!("`{name}` had no login kept.");
    } else {
        return Err(Failure::Usage(format!(
            "no bridged server is named `{name}`, and no login is kept for that name"
        )));
    }
    Ok(())
}

fn load(sources: ConfigArgs) -> Result<Settings, Failure> {
    let settings = sources
        .source(Vec::new())
        .load()
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(settings)
}

/// The OAuth settings of the remote server `name`.
fn remote(settings: &Settings, name: &str) -> Result<OAuthServer, Failure> {
    let Some(server) = settings.bridge.all_servers().find(|s| s.name == name) else {
        let names: Vec<&str> = settings
            .bridge
            .all_servers()
            .map(|s| s.name.as_str())
            .collect();
        return Err(Failure::Usage(format!(
            "no bridged server is named `{name}` (bridged: {}); give its config with --config, --server NAME=URL or --mcp-json",
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        )));
    };
    server.oauth(false).ok_or_else(|| {
        Failure::Usage(format!(
            "`{name}` runs a command: only a remote server (one with a `url`) logs in"
        ))
    })
}

fn store() -> Result<Store, Failure> {
    Store::default_location().ok_or_else(|| {
        Failure::Runtime(
            "there is no state directory to keep the login in: set HOME or XDG_STATE_HOME"
                .to_owned(),
        )
    })
}

fn flushed() -> Result<(), String> {
    std::io::stdout().flush().map_err(|e| e.to_string())
}
