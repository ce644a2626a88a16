//! OAuth for remote MCP servers: the core's [`Login`] driven with real
//! requests ([`crate::outbound::fetch`]), a loopback listener for the browser's
//! redirect and the user's browser; tokens kept in the state directory
//! ([`Store`]) and refreshed; and [`OAuthCredentials`], the bridge's
//! [`crate::outbound::upstream::Credentials`] over them.
//!
//! A login runs on the thread that asks for it and blocks it (it waits
//! for the user in the browser, [`LOGIN_TIMEOUT`] at most): the command
//! line's `login`, or a bridge worker answering a server's `401`.

mod browser;
mod credentials;
mod redirect;
mod store;

use std::time::{Duration, SystemTime};

use mcp_provider_core::http::{Outgoing, Url};
use mcp_provider_core::oauth::{
    ClientSettings, Login, LoginOutput, LoginPlan, Logins, OAuthError, Random, Stored, MAX_RESPONSE,
};

use crate::outbound::fetch::{fetch, FetchError, Fetched};

pub use browser::{configured as browser_configured, open as open_browser, NoBrowser, Opened};
pub use credentials::OAuthCredentials;
pub use redirect::{NoRedirect, Redirect, RedirectError, WaitEnded};
pub use store::{FileError, Stamp, Store, StoreError};

/// How long one request of a login may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a login waits for the browser to come back.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

/// A remote server's OAuth settings.
#[derive(Debug, Clone)]
pub struct OAuthServer {
    /// The bridged server's name (its file in the store).
    pub name: String,
    pub url: Url,
    /// Roots trusted for the server's own host (its authorization server
    /// elsewhere is checked against the system's).
    pub ca_file: Option<String>,
    pub client: ClientSettings,
    /// The loopback port of the redirect (0: any free one).
    pub redirect_port: u16,
    /// Whether the running server may open a browser for a login it
    /// needs (`$BROWSER` set allows it too).
    pub open_browser: bool,
}

impl OAuthServer {
    /// A server at `url` with every OAuth setting its default.
    pub fn new(name: &str, url: Url) -> OAuthServer {
        OAuthServer {
            name: name.to_owned(),
            url,
            ca_file: None,
            client: ClientSettings {
                name: "MCP Local Provider".to_owned(),
                ..ClientSettings::default()
            },
            redirect_port: 0,
            open_browser: false,
        }
    }

    fn fetch(&self, request: &Outgoing) -> Result<Fetched, FetchError> {
        let ca_file = self
            .ca_file
            .as_deref()
            .filter(|_| request.url.host() == self.url.host());
        fetch(request, MAX_RESPONSE, FETCH_TIMEOUT, ca_file)
    }
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    #[error("no OS random source: {0}")]
    NoRandom(getrandom::Error),
    /// The authorization server, or the user, refused it.
    #[error(transparent)]
    Failed(OAuthError),
    #[error("the login stopped without an outcome")]
    NoOutcome,
}

/// Why the authorization page could not be shown to the user.
#[derive(Debug, thiserror::Error)]
pub enum NotShown {
    #[error(transparent)]
    NoBrowser(#[from] NoBrowser),
    /// Its URL could not be printed.
    #[error(transparent)]
    Print(#[from] std::io::Error),
}

/// Why a token could not be refreshed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The authorization server refused it, or answered what a client
    /// must not accept.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("{0}")]
    Fetch(FetchError),
}

/// Logs in to `server` (`challenge`: its `WWW-Authenticate`, if it sent
/// one; `known`: the logins kept for it), showing the authorization page
/// with `show` (open a browser, which it gives back, or print the URL)
/// and waiting for the redirect. The new credentials, not yet kept.
///
/// Fails with a [`LoginError`].
pub fn login(
    server: &OAuthServer,
    challenge: Option<&str>,
    known: Logins,
    show: &dyn Fn(&str) -> Result<Option<Opened>, NotShown>,
) -> Result<Stored, LoginError> {
    let redirect = Redirect::bind(server.redirect_port)?;
    let mut random = [0u8; 48];
    getrandom::fill(&mut random).map_err(LoginError::NoRandom)?;
    let plan = LoginPlan {
        server: server.url.clone(),
        challenge: challenge.map(str::to_owned),
        known,
        client: server.client.clone(),
        redirect_uri: redirect.uri().to_owned(),
    };
    let mut login = Login::new(plan, Random::from_bytes(&random));
    loop {
        match login.poll_output() {
            Some(LoginOutput::Fetch(request)) => match server.fetch(&request) {
                Ok(fetched) => login.handle_response(&fetched.head, &fetched.body, unix_now()),
                Err(FetchError::Unreachable(why)) => login.handle_unreachable(&why),
                Err(FetchError::Failed(why)) => login.handle_failed(&why),
            },
            Some(LoginOutput::Authorize(url)) => {
                let ours = |query: &str| login.check_redirect(query);
                let back = show(&url.to_string())
                    .map(|browser| redirect.wait(LOGIN_TIMEOUT, &ours, browser.as_ref()));
                match back {
                    Ok(Ok(query)) => login.handle_redirect(&query),
                    Ok(Err(why)) => login.handle_failed(&why.to_string()),
                    Err(why) => login.handle_failed(&why.to_string()),
                }
            }
            Some(LoginOutput::Done(stored)) => return Ok(*stored),
            Some(LoginOutput::Failed(why)) => return Err(LoginError::Failed(why)),
            None => return Err(LoginError::NoOutcome),
        }
    }
}

/// `stored` refreshed (`None`: it has no refresh token).
pub fn refresh(server: &OAuthServer, stored: &Stored) -> Result<Option<Stored>, RefreshError> {
    let Some(request) = stored.refresh_request()? else {
        return Ok(None);
    };
    let fetched = server.fetch(&request).map_err(RefreshError::Fetch)?;
    let refreshed = stored.refreshed(&fetched.head, &fetched.body, unix_now())?;
    Ok(Some(refreshed))
}

/// The time as Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
