//! The bridge's [`Credentials`] over kept logins: the token a remote
//! server gets is read from its file in the [`Store`] (again whenever the
//! file changed, looked at once a second at most between messages, and at
//! every renewal: a `login` run in another process is taken up within a
//! second, or at once by a server that refused the old token), refreshed
//! ahead of its expiry on a thread of its own, and renewed when the server refuses it — refreshed once, or, for a
//! server that wants more scope or when no refresh is possible, logged in
//! again in a browser if the server may open one. Otherwise its clients
//! are told the command to run.
//!
//! One renewal runs at a time per server (a lock each); a call that waited
//! finds the token the first one got and takes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use mcp_provider_core::oauth::{Challenge, Logins, Stored};
use mcp_provider_core::IdMap;

use super::{login, open_browser, refresh, unix_now, LoginError, OAuthServer, Stamp, Store};
use crate::outbound::upstream::{Credentials, NoToken, NotBegun};

/// A refresh ahead of expiry that failed is not tried again sooner than
/// this (a refused call still renews its token at once).
const REFRESH_RETRY: Duration = Duration::from_secs(30);
/// A login that failed is not started again sooner than this (a server
/// refused at every restart of the bridge's client would open a browser
/// tab each time): its error is the answer meanwhile.
const LOGIN_RETRY: Duration = Duration::from_secs(30);
/// How often the token for each message looks at the login file (a
/// `stat` per message is a tenth of a remote call's own cost).
const RECHECK: Duration = Duration::from_secs(1);

/// Kept logins as the bridge's credentials.
pub struct OAuthCredentials {
    /// Where logins are kept (`None`: no state directory; they live in
    /// memory only).
    store: Option<Store>,
    servers: RwLock<IdMap<String, Arc<OAuthServer>>>,
    /// Each server's logins as last read or written (none kept: empty).
    /// Both maps are asked of every message, by configured names.
    kept: Mutex<IdMap<String, Kept>>,
    /// One renewal at a time per server.
    gates: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Per server, when a refresh ahead of expiry may start again: held
    /// while one runs, and for [`REFRESH_RETRY`] after one that left the
    /// token due.
    ahead: Mutex<HashMap<String, Instant>>,
    /// Tokens refreshed since start-up, per server, for its figures.
    refreshes: Mutex<HashMap<String, u64>>,
    /// When a login last failed, and why, per server.
    failed: Mutex<HashMap<String, (Instant, Arc<LoginError>)>>,
    /// Itself, for the threads that refresh ahead of expiry.
    this: Weak<OAuthCredentials>,
}

/// A server's logins as last read or written.
struct Kept {
    /// How its file looked then (`None`: there was none, so a missing
    /// file is not opened again and again).
    stamp: Option<Stamp>,
    /// When the file was last looked at.
    checked: Instant,
    logins: Logins,
}

impl OAuthCredentials {
    /// Credentials for `servers` (the remote ones), kept in `store`.
    pub fn new(store: Option<Store>, servers: Vec<OAuthServer>) -> Arc<OAuthCredentials> {
        let credentials = Arc::new_cyclic(|this| OAuthCredentials {
            store,
            servers: RwLock::default(),
            kept: Mutex::default(),
            gates: Mutex::default(),
            ahead: Mutex::default(),
            refreshes: Mutex::default(),
            failed: Mutex::default(),
            this: this.clone(),
        });
        credentials.set_servers(servers);
        credentials
    }

    /// The servers from a new configuration.
    pub fn set_servers(&self, servers: Vec<OAuthServer>) {
        let servers = servers
            .into_iter()
            .map(|s| (s.name.clone(), Arc::new(s)))
            .collect();
        *self.servers.write().unwrap_or_else(|e| e.into_inner()) = servers;
    }

    fn server(&self, name: &str) -> Option<Arc<OAuthServer>> {
        let servers = self.servers.read().unwrap_or_else(|e| e.into_inner());
        servers.get(name).cloned()
    }

    fn kept(&self) -> MutexGuard<'_, IdMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The logins kept for `server`: read again if its file changed;
    /// none if they are for another URL (the configuration changed).
    fn logins(&self, server: &OAuthServer) -> Logins {
        self.look(server, Duration::ZERO);
        self.with_kept(server, Logins::clone)
            .unwrap_or_else(|| Logins::new(&server.url))
    }

    /// `f` of the logins kept for `server`, unless there are none or they
    /// are for another URL.
    fn with_kept<R>(&self, server: &OAuthServer, f: impl FnOnce(&Logins) -> R) -> Option<R> {
        let kept = self.kept();
        let logins = &kept.get(&server.name)?.logins;
        logins.is_for(&server.url).then(|| f(logins))
    }

    /// Reads `server`'s file again if it changed since it was last looked
    /// at, unless that was less than `recheck` ago.
    fn look(&self, server: &OAuthServer, recheck: Duration) {
        let Some(store) = &self.store else {
            return;
        };
        let name = &server.name;
        let now = Instant::now();
        let last = self.kept().get(name).map(|kept| kept.checked);
        if last.is_some_and(|at| now.duration_since(at) < recheck) {
            return;
        }
        let stamp = store.stamp(name);
        if let Some(kept) = self.kept().get_mut(name).filter(|kept| kept.stamp == stamp) {
            kept.checked = now;
            return;
        }
        let logins = store
            .read(name)
            .unwrap_or_else(|why| {
                tracing::warn!(server = %name, "the kept login cannot be used: {why}");
                None
            })
            .unwrap_or_else(|| Logins::new(&server.url));
        let kept = Kept {
            stamp,
            checked: now,
            logins,
        };
        self.kept().insert(name.clone(), kept);
    }

    /// Whether `name`'s file was looked at within [`RECHECK`] and held no
    /// login: then its token is `None` without more ado, under one lock
    /// (most servers need none, and each batch of messages asks).
    fn none_lately(&self, name: &str) -> bool {
        let kept = self.kept();
        kept.get(name)
            .is_some_and(|kept| kept.logins.current().is_none() && kept.checked.elapsed() < RECHECK)
    }

    /// Keeps `logins` for `server` (in memory if the file cannot be
    /// written, which is said).
    fn keep(&self, server: &OAuthServer, logins: &Logins) {
        let stamp = match &self.store {
            Some(store) => match store.write(&server.name, logins) {
                Ok(()) => store.stamp(&server.name),
                Err(why) => {
                    tracing::warn!(server = %server.name, "the login cannot be kept: {why}");
                    None
                }
            },
            None => None,
        };
        let kept = Kept {
            stamp,
            checked: Instant::now(),
            logins: logins.clone(),
        };
        self.kept().insert(server.name.clone(), kept);
    }

    fn gate(&self, name: &str) -> Arc<Mutex<()>> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.entry(name.to_owned()).or_default().clone()
    }

    /// Refreshes `server`'s tokens on a thread of its own, unless one is
    /// under way or failed just now.
    fn refresh_ahead(&self, server: Arc<OAuthServer>) {
        {
            let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            if ahead.get(&server.name).is_some_and(|at| now < *at) {
                return;
            }
            ahead.insert(server.name.clone(), now + REFRESH_RETRY);
        }
        let this = self.this.clone();
        let name = server.name.clone();
        let spawned = std::thread::Builder::new()
            .name("oauth-refresh".into())
            .spawn(move || {
                if let Some(this) = this.upgrade() {
                    let gate = this.gate(&server.name);
                    let _one = gate.lock().unwrap_or_else(|e| e.into_inner());
                    this.refresh_now(&server, true);
                    if !this.refresh_due(&server) {
                        // Fresh (by this refresh or another): the next one
                        // may start when it is due.
                        let mut ahead = this.ahead.lock().unwrap_or_else(|e| e.into_inner());
                        ahead.remove(&server.name);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(server = %name, "no thread to refresh the login: {e}");
        }
    }

    /// Whether `server`'s token is due for a refresh.
    fn refresh_due(&self, server: &OAuthServer) -> bool {
        self.with_kept(server, |logins| {
            logins
                .current()
                .is_some_and(|current| current.refresh_due(unix_now()))
        })
        .unwrap_or(false)
    }

    /// Refreshes `server`'s tokens if they can be (and, `if_due`, only if
    /// a refresh is due): the new access token.
    fn refresh_now(&self, server: &OAuthServer, if_due: bool) -> Option<String> {
        let mut logins = self.logins(server);
        let current = logins.current()?;
        if if_due && !current.refresh_due(unix_now()) {
            return None;
        }
        match refresh(server, current) {
            Ok(Some(stored)) => {
                let token = stored.access_token.clone();
                logins.record(stored);
                // Counted before it is kept: whoever sees the new token
                // sees it counted.
                *self
                    .refreshes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(server.name.clone())
                    .or_default() += 1;
                self.keep(server, &logins);
                tracing::info!(server = %server.name, "the remote MCP server's token was refreshed");
                Some(token)
            }
            Ok(None) => None,
            Err(why) => {
                tracing::warn!(server = %server.name, "the remote MCP server's token could not be refreshed: {why}");
                None
            }
        }
    }
}

impl OAuthCredentials {
    /// A login in a browser, unless one failed just now (then its error).
    fn login(
        &self,
        server: &OAuthServer,
        challenge: Option<&str>,
        known: Logins,
    ) -> Result<Stored, NoToken> {
        let name = &server.name;
        let failure = |why: Arc<LoginError>| NoToken::LoginFailed {
            server: name.clone(),
            why,
        };
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, why)) = failed.get(name) {
            if at.elapsed() < LOGIN_RETRY {
                return Err(failure(why.clone()));
            }
        }
        tracing::info!(server = %name, "the remote MCP server wants a login: opening a browser");
        let show = |url: &str| Ok(Some(open_browser(url)?));
        match login(server, challenge, known, &show) {
            Ok(stored) => {
                failed.remove(name);
                Ok(stored)
            }
            Err(why) => {
                let why = Arc::new(why);
                failed.insert(name.clone(), (Instant::now(), why.clone()));
                Err(failure(why))
            }
        }
    }
}

/// How long a login begun from the dashboard may take to find its
/// authorization page (metadata, registration) before the user is told.
const BEGIN_WAIT: Duration = Duration::from_secs(60);

impl Credentials for OAuthCredentials {
    fn begin_login(&self, name: &str) -> Result<String, NotBegun> {
        let Some(server) = self.server(name) else {
            return Err(NotBegun::NotRemote(name.to_owned()));
        };
        let Some(this) = self.this.upgrade() else {
            return Err(NoToken::NeedsLogin(name.to_owned()).into());
        };
        let (page_tx, page) = std::sync::mpsc::sync_channel::<Result<String, NotBegun>>(1);
        let failed_tx = page_tx.clone();
        let begun = std::thread::Builder::new()
            .name("oauth-login".into())
            .spawn(move || {
                let gate = this.gate(&server.name);
                let _one = match gate.try_lock() {
                    Ok(one) => one,
                    Err(std::sync::TryLockError::Poisoned(one)) => one.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {
                        let why = NotBegun::UnderWay(server.name.clone());
                        let _ = failed_tx.try_send(Err(why));
                        return;
                    }
                };
                let mut logins = this.logins(&server);
                let show = |url: &str| {
                    let _ = page_tx.try_send(Ok(url.to_owned()));
                    Ok(None)
                };
                match login(&server, None, logins.clone(), &show) {
                    Ok(stored) => {
                        tracing::info!(server = %server.name, "logged in from the dashboard");
                        logins.record(stored);
                        this.keep(&server, &logins);
                    }
                    Err(why) => {
                        tracing::warn!(server = %server.name, "the login begun from the dashboard failed: {why}");
                        let _ = failed_tx.try_send(Err(NotBegun::Failed(Arc::new(why))));
                    }
                }
            });
        if begun.is_err() {
            return Err(NotBegun::NoThread);
        }
        page.recv_timeout(BEGIN_WAIT).unwrap_or_else(|_| {
            Err(NotBegun::NoPage {
                server: name.to_owned(),
                waited: BEGIN_WAIT,
            })
        })
    }

    fn refreshes(&self, name: &str) -> u64 {
        let refreshes = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
        refreshes.get(name).copied().unwrap_or(0)
    }

    fn current(&self, name: &str) -> Option<String> {
        if self.none_lately(name) {
            return None;
        }
        let server = self.server(name)?;
        self.look(&server, RECHECK);
        let (token, due) = {
            let kept = self.kept();
            let logins = &kept.get(&server.name)?.logins;
            // Asked before each batch of messages: a server nobody logged
            // in to is done with before its URL is compared.
            let current = logins.current()?;
            if !logins.is_for(&server.url) {
                return None;
            }
            (
                current.access_token.clone(),
                current.refresh_due(unix_now()),
            )
        };
        if due {
            self.refresh_ahead(server);
        }
        Some(token)
    }

    fn renew(
        &self,
        name: &str,
        refused: Option<&str>,
        challenge: Option<&str>,
        step_up: bool,
    ) -> Result<String, NoToken> {
        let Some(server) = self.server(name) else {
            return Err(NoToken::NeedsLogin(name.to_owned()));
        };
        let gate = self.gate(name);
        let _one = gate.lock().unwrap_or_else(|e| e.into_inner());
        let mut logins = self.logins(&server);
        if let Some(current) = logins.current() {
            // A token got while this call waited (another process's login,
            // another run's refresh) is tried first.
            let newer = refused != Some(current.access_token.as_str());
            if newer && !current.expires_within(unix_now(), 0) {
                return Ok(current.access_token.clone());
            }
            if !step_up {
                if let Some(token) = self.refresh_now(&server, false) {
                    return Ok(token);
                }
            }
        }
        if server.open_browser {
            let stored = self.login(&server, challenge, logins.clone())?;
            let token = stored.access_token.clone();
            logins.record(stored);
            self.keep(&server, &logins);
            return Ok(token);
        }
        if step_up {
            let wanted = challenge.map(Challenge::parse).unwrap_or_default();
            logins.want(&wanted.scopes());
            self.keep(&server, &logins);
            return Err(NoToken::MoreScope {
                server: name.to_owned(),
                scope: wanted.scope,
            });
        }
        Err(NoToken::NeedsLogin(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_provider_core::http::Url;
    use mcp_provider_core::oauth::AuthMethod;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn folder(test: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("oauth-credentials-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn server(url: &str) -> OAuthServer {
        OAuthServer::new("remote", Url::parse(url).unwrap())
    }

    fn stored(token_endpoint: &str, token: &str, refresh: Option<&str>) -> Stored {
        Stored {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "c".into(),
            client_secret: None,
            token_endpoint: token_endpoint.into(),
            auth_method: AuthMethod::None,
            resource: "http://127.0.0.1:1/mcp".into(),
            scopes: vec!["mcp:basic".into()],
            access_token: token.into(),
            refresh_token: refresh.map(str::to_owned),
            expires_at: Some(unix_now() + 3600),
            lifetime: Some(3600),
            registered_for: None,
        }
    }

    /// A token endpoint that counts its requests and grants `at-N` for an
    /// hour, slowly enough for a second caller to wait.
    fn token_endpoint() -> (String, Arc<AtomicUsize>) {
        token_endpoint_granting(3600)
    }

    /// The same, granting tokens for `lifetime` seconds.
    fn token_endpoint_granting(lifetime: u64) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_lowercase();
                let length: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = stream.read_exact(&mut body);
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                std::thread::sleep(Duration::from_millis(200));
                let answer = format!(
                    r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":{lifetime}}}"#
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (url, count)
    }

    /// As if every file had been looked at [`RECHECK`] ago.
    fn a_while_later(credentials: &OAuthCredentials) {
        for kept in credentials.kept().values_mut() {
            kept.checked = kept.checked.checked_sub(RECHECK).unwrap();
        }
    }

    #[test]
    fn a_login_kept_by_another_process_is_taken_up() {
        let dir = folder("taken-up");
        let store = Store::new(dir.clone());
        let remote = server("http://127.0.0.1:1/mcp");
        let credentials = OAuthCredentials::new(Some(store.clone()), vec![remote.clone()]);
        assert_eq!(credentials.current("remote"), None);
        assert_eq!(credentials.current("not-remote"), None);
        let mut logins = Logins::new(&remote.url);
        logins.record(stored("http://127.0.0.1:1/token", "at-a", None));
        store.write("remote", &logins).unwrap();
        a_while_later(&credentials);
        assert_eq!(credentials.current("remote").as_deref(), Some("at-a"));
        // A renewal looks at once.
        logins.record(stored("http://127.0.0.1:1/token", "at-bb", None));
        store.write("remote", &logins).unwrap();
        let renewed = credentials.renew("remote", Some("at-a"), None, false);
        assert_eq!(renewed.unwrap(), "at-bb");
        assert_eq!(credentials.current("remote").as_deref(), Some("at-bb"));
        // Logins kept for another URL are not this server's.
        let moved = server("http://127.0.0.1:2/mcp");
        credentials.set_servers(vec![moved]);
        assert_eq!(credentials.current("remote"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_refresh_serves_every_caller_that_waited() {
        let dir = folder("one-refresh");
        let (endpoint, count) = token_endpoint();
        let store = Store::new(dir.clone());
        let remote = server("http://127.0.0.1:1/mcp");
        let mut logins = Logins::new(&remote.url);
        logins.record(stored(&endpoint, "at-0", Some("rt")));
        store.write("remote", &logins).unwrap();
        let credentials = OAuthCredentials::new(Some(store.clone()), vec![remote]);
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let credentials = credentials.clone();
                std::thread::spawn(move || credentials.renew("remote", Some("at-0"), None, false))
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.join().unwrap().unwrap(), "at-1");
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let kept = store.read("remote").unwrap().unwrap();
        let current = kept.current().unwrap();
        assert_eq!(current.access_token, "at-1");
        assert_eq!(current.refresh_token.as_deref(), Some("rt"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_token_about_to_expire_is_refreshed_ahead() {
        let dir = folder("ahead");
        let (endpoint, count) = token_endpoint();
        let store = Store::new(dir.clone());
        let remote = server("http://127.0.0.1:1/mcp");
        let mut logins = Logins::new(&remote.url);
        let mut expiring = stored(&endpoint, "at-0", Some("rt"));
        expiring.expires_at = Some(unix_now() + 10);
        logins.record(expiring);
        store.write("remote", &logins).unwrap();
        let credentials = OAuthCredentials::new(Some(store), vec![remote]);
        // The token in hand is sent meanwhile.
        assert_eq!(credentials.current("remote").as_deref(), Some("at-0"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while credentials.current("remote").as_deref() != Some("at-1") {
            assert!(Instant::now() < deadline, "never refreshed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(credentials.refreshes("remote"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_token_good_for_seconds_is_refreshed_ahead_each_time_it_is_due() {
        let dir = folder("short-lived");
        let (endpoint, count) = token_endpoint_granting(2);
        let store = Store::new(dir.clone());
        let remote = server("http://127.0.0.1:1/mcp");
        let mut logins = Logins::new(&remote.url);
        let mut expiring = stored(&endpoint, "at-0", Some("rt"));
        expiring.expires_at = Some(unix_now() + 1);
        expiring.lifetime = Some(2);
        logins.record(expiring);
        store.write("remote", &logins).unwrap();
        let credentials = OAuthCredentials::new(Some(store), vec![remote]);
        // Each token is due in the last second of its two: three in a row
        // come within a few seconds, none of them held back by the wait
        // after a failed refresh.
        let deadline = Instant::now() + Duration::from_secs(15);
        while credentials.current("remote").as_deref() != Some("at-3") {
            assert!(Instant::now() < deadline, "not refreshed as each came due");
            std::thread::sleep(Duration::from_millis(20));
        }
        // At most one more under way (the next came due meanwhile).
        let refreshes = credentials.refreshes("remote");
        assert!((3..=4).contains(&refreshes), "{refreshes}");
        let asked = count.load(Ordering::SeqCst) as u64;
        assert!((refreshes..=refreshes + 1).contains(&asked), "{asked}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_browser_the_user_is_told_to_log_in() {
        let dir = folder("no-browser");
        let store = Store::new(dir.clone());
        let remote = server("http://127.0.0.1:1/mcp");
        let credentials = OAuthCredentials::new(Some(store.clone()), vec![remote.clone()]);
        let error = credentials
            .renew("remote", None, None, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("run `mcp-provider login remote`"), "{error}");
        let mut logins = Logins::new(&remote.url);
        logins.record(stored("http://127.0.0.1:1/token", "at-0", None));
        store.write("remote", &logins).unwrap();
        let challenge = r#"Bearer error="insufficient_scope", scope="mcp:write""#;
        let error = credentials
            .renew("remote", Some("at-0"), Some(challenge), true)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("more scope than its login has (mcp:write)"),
            "{error}"
        );
        assert_eq!(
            store.read("remote").unwrap().unwrap().wanted_scopes,
            ["mcp:write"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
