//! One login, as a state machine: the discovery, registration,
//! authorization and token exchange of the MCP authorization spec, each
//! step an output for the driver to carry out and an input it hands
//! back.
//!
//! The steps, in order: the server's challenge (asked for with an
//! unauthenticated `initialize` when the driver has none); its
//! protected-resource metadata; its authorization server's metadata (else
//! the 2025-03-26 revision's fallbacks); the client's identity (configured,
//! a Client ID Metadata Document, kept from an earlier registration, or
//! registered now); the authorization in a browser, whose redirect the
//! driver hands back; the code exchanged for tokens.

use std::collections::VecDeque;

use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::challenge::{add_scopes, split_scopes, Challenge};
use super::pkce::{base64url, Pkce, Random};
use super::registration::{self, Registering};
use super::resource::{self, ResourceMetadata};
use super::server_metadata::{self, AuthServer, ServerMetadata};
use super::stored::{Logins, Stored};
use super::token::{self, AuthMethod, ClientAuth};
use super::{form, Guard, OAuthError};
use crate::http::{Outgoing, ResponseHead, Url};

/// Redirects followed in one login, for metadata only.
const MAX_REDIRECTS: u8 = 5;

/// What the login must know before it starts.
#[derive(Debug, Clone)]
pub struct LoginPlan {
    /// The MCP server's URL, as configured.
    pub server: Url,
    /// The server's `WWW-Authenticate` that asked for a token; `None`:
    /// the login asks the server first.
    pub challenge: Option<String>,
    /// Logins kept for this server (an earlier registration may be
    /// reused; a new login asks for the scopes granted before, too).
    pub known: Logins,
    pub client: ClientSettings,
    /// Where the authorization server sends the browser back: the
    /// driver's loopback listener.
    pub redirect_uri: String,
}

/// How the client presents itself, as configured for the server.
#[derive(Clone, Default)]
pub struct ClientSettings {
    /// Its name in a dynamic registration.
    pub name: String,
    /// A pre-registered client.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Its Client ID Metadata Document, used as its id where the
    /// authorization server takes one.
    pub metadata_url: Option<String>,
    /// The scopes to ask for when the server's challenge names none.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "(hidden)"),
            )
            .field("metadata_url", &self.metadata_url)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginOutput {
    /// Send this request and hand back its whole response
    /// ([`Login::handle_response`], at most [`super::MAX_RESPONSE`] bytes
    /// of body, redirects not followed) or why there is none
    /// ([`Login::handle_failed`]).
    Fetch(Outgoing),
    /// Open this URL in the user's browser and hand back the query of the
    /// request that comes to the redirect URI ([`Login::handle_redirect`]).
    Authorize(Url),
    /// Logged in: keep these.
    Done(Box<Stored>),
    /// The login cannot go on.
    Failed(OAuthError),
}

/// Where the login is.
#[derive(Debug)]
enum Stage {
    /// Asking the server for its challenge.
    Probe,
    /// Looking for the protected-resource metadata at these URLs (one
    /// fetched now, the rest to try).
    Resource(VecDeque<Result<Url, String>>),
    /// Looking for the authorization server's metadata.
    Server {
        issuer: String,
        url: Url,
        left: VecDeque<Url>,
    },
    /// Registering, having asked for this method.
    Register(AuthMethod),
    /// Waiting for the browser's redirect.
    Authorize,
    /// Exchanging the code.
    Token,
    Over,
}

/// One login.
#[derive(Debug)]
pub struct Login {
    plan: LoginPlan,
    guard: Guard,
    pkce: Pkce,
    state: String,
    stage: Stage,
    out: Option<LoginOutput>,
    challenge: Challenge,
    /// Whether the server asked for a token (a server that did not, and
    /// publishes no metadata, needs no login).
    challenged: bool,
    found: Option<ResourceMetadata>,
    server: Option<AuthServer>,
    client: Option<ClientAuth>,
    registered_for: Option<String>,
    scopes: Vec<String>,
    /// The URL being fetched, which a redirect is resolved against.
    fetching: Option<Url>,
    redirects: u8,
}

impl Login {
    /// A login for `plan`, its PKCE verifier and `state` made from
    /// `random`. Its first output is ready at once.
    pub fn new(plan: LoginPlan, random: Random) -> Login {
        let challenge = plan
            .challenge
            .as_deref()
            .map(Challenge::parse)
            .unwrap_or_default();
        let mut login = Login {
            guard: Guard::for_server(&plan.server),
            pkce: Pkce::new(&random.verifier),
            state: base64url(&random.state),
            stage: Stage::Probe,
            out: None,
            challenged: plan.challenge.is_some(),
            challenge,
            found: None,
            server: None,
            client: None,
            registered_for: None,
            scopes: Vec::new(),
            fetching: None,
            redirects: 0,
            plan,
        };
        if login.challenged {
            login.go(Login::find_resource);
        } else {
            let probe = probe(&login.plan.server);
            login.fetching = Some(login.plan.server.clone());
            login.out = Some(LoginOutput::Fetch(probe));
        }
        login
    }

    // Getters.

    /// Whether `query`, of a request to the redirect URI, is this login's
    /// redirect: the login waits for the browser, and the request carries
    /// the `state` the authorization URL was sent with (compared in
    /// constant time). Any process on this machine can reach the loopback
    /// listener, so a request that is not the login's must not end it:
    /// the driver answers it with an error, keeps this refusal to report
    /// should the login time out, and waits on for the browser.
    pub fn check_redirect(&self, query: &str) -> Result<(), OAuthError> {
        let pairs = form::decode(query);
        let state = form::get(&pairs, "state").unwrap_or_default();
        let ours = matches!(self.stage, Stage::Authorize)
            && bool::from(state.as_bytes().ct_eq(self.state.as_bytes()));
        if ours {
            Ok(())
        } else {
            Err(OAuthError::Refused(
                "the redirect's `state` is not this login's: refused (a forged or stale redirect)"
                    .to_owned(),
            ))
        }
    }

    // Output.

    /// The next thing to do; one at a time, each answered before the next
    /// is ready.
    pub fn poll_output(&mut self) -> Option<LoginOutput> {
        self.out.take()
    }

    // Input.

    /// The whole response to the last [`LoginOutput::Fetch`]; `now` in
    /// Unix seconds (when tokens it grants expire is counted from it).
    pub fn handle_response(&mut self, head: &ResponseHead, body: &[u8], now: u64) {
        let outcome = self.respond(head, body, now);
        self.settle(outcome);
    }

    /// The last [`LoginOutput::Fetch`] got no response: metadata is looked
    /// for elsewhere; anything else fails.
    pub fn handle_failed(&mut self, why: &str) {
        let outcome = match &self.stage {
            Stage::Probe => self.find_resource(),
            Stage::Resource(_) => self.next_resource(),
            Stage::Server { .. } => self.next_server(),
            Stage::Register(_) => Err(OAuthError::Unavailable(format!(
                "the registration endpoint: {why}"
            ))),
            Stage::Token => Err(OAuthError::Unavailable(format!(
                "the token endpoint: {why}"
            ))),
            Stage::Authorize => Err(OAuthError::Unavailable(why.to_owned())),
            Stage::Over => Ok(()),
        };
        self.settle(outcome);
    }

    /// The last [`LoginOutput::Fetch`] could not even connect. At the
    /// first request, to the server itself, the login fails now: every
    /// place its metadata could be is on the same origin, and each would
    /// wait out the same dial. Anything else is [`Login::handle_failed`].
    pub fn handle_unreachable(&mut self, why: &str) {
        match self.stage {
            Stage::Probe => self.settle(Err(OAuthError::Unavailable(format!(
                "{} cannot be reached: {why}",
                self.plan.server
            )))),
            _ => self.handle_failed(why),
        }
    }

    /// The query of the request the browser made to the redirect URI
    /// (one [`Login::check_redirect`] passes; any other ends the login).
    pub fn handle_redirect(&mut self, query: &str) {
        if matches!(self.stage, Stage::Authorize) {
            let outcome = self.redirected(query);
            self.settle(outcome);
        }
    }

    fn settle(&mut self, outcome: Result<(), OAuthError>) {
        if let Err(e) = outcome {
            self.stage = Stage::Over;
            self.out = Some(LoginOutput::Failed(e));
        }
    }

    fn go(&mut self, step: fn(&mut Login) -> Result<(), OAuthError>) {
        let outcome = step(self);
        self.settle(outcome);
    }

    fn respond(&mut self, head: &ResponseHead, body: &[u8], now: u64) -> Result<(), OAuthError> {
        match &self.stage {
            Stage::Probe => {
                if matches!(head.status, 401 | 403) {
                    self.challenged = true;
                    if let Some(header) = head.header("www-authenticate") {
                        self.challenge = Challenge::parse(header);
                    }
                }
                self.find_resource()
            }
            Stage::Resource(_) => {
                if self.follow(head)? {
                    return Ok(());
                }
                match document::<ResourceMetadata>(head, body) {
                    Some(metadata) => self.resource_found(metadata),
                    None => self.next_resource(),
                }
            }
            Stage::Server { issuer, .. } => {
                let issuer = issuer.clone();
                if self.follow(head)? {
                    return Ok(());
                }
                match document::<ServerMetadata>(head, body) {
                    Some(metadata) => {
                        let server = metadata.check(&issuer, &self.guard)?;
                        self.use_server(server)
                    }
                    None => self.next_server(),
                }
            }
            Stage::Register(asked) => {
                let client = registration::registered(head, body, *asked).map_err(|e| match e {
                    OAuthError::Unavailable(why) => OAuthError::Config(format!(
                        "{why}; a server that does not register clients needs `client_id` (and `client_secret`) set for it"
                    )),
                    e => e,
                })?;
                self.client = Some(client);
                self.registered_for = Some(self.plan.redirect_uri.clone());
                self.authorize()
            }
            Stage::Token => {
                let granted = token::granted(head, body)?;
                self.done(granted, now)
            }
            Stage::Authorize | Stage::Over => Ok(()),
        }
    }

    // Discovery.

    fn get(&mut self, url: Url) {
        let request = Outgoing::new("GET", url.clone()).header("accept", "application/json");
        self.fetching = Some(url);
        self.out = Some(LoginOutput::Fetch(request));
    }

    /// A redirect from a metadata URL is followed (once the guard allows
    /// where it leads): true if it was.
    fn follow(&mut self, head: &ResponseHead) -> Result<bool, OAuthError> {
        let (300..=399, Some(location)) = (head.status, head.header("location")) else {
            return Ok(false);
        };
        let from = self
            .fetching
            .clone()
            .unwrap_or_else(|| self.plan.server.clone());
        let to = from.join(location).map_err(|e| {
            OAuthError::Refused(format!(
                "{from} redirected to what is not a URL to use: {e}"
            ))
        })?;
        self.guard.check(&to, &format!("{from} redirected to"))?;
        self.redirects += 1;
        if self.redirects > MAX_REDIRECTS {
            return Err(OAuthError::Refused(format!(
                "more than {MAX_REDIRECTS} redirects while looking for metadata: refused"
            )));
        }
        self.get(to);
        Ok(true)
    }

    fn find_resource(&mut self) -> Result<(), OAuthError> {
        let urls = resource::metadata_urls(
            &self.plan.server,
            self.challenge.resource_metadata.as_deref(),
        );
        self.stage = Stage::Resource(urls.into());
        self.next_resource()
    }

    fn next_resource(&mut self) -> Result<(), OAuthError> {
        let Stage::Resource(left) = &mut self.stage else {
            return Ok(());
        };
        match left.pop_front() {
            Some(Ok(url)) => {
                self.guard
                    .check(&url, "the protected-resource metadata at")?;
                self.get(url);
                Ok(())
            }
            Some(Err(why)) => {
                tracing::debug!("the server's challenge names unusable metadata: {why}");
                self.next_resource()
            }
            None if self.challenged => {
                // A 2025-03-26 server: its origin is its authorization
                // server.
                let origin = self.plan.server.origin();
                self.start_server(origin)
            }
            None => Err(OAuthError::Config(format!(
                "{} publishes no protected-resource metadata and did not ask for a token: it may need no login",
                self.plan.server
            ))),
        }
    }

    fn resource_found(&mut self, metadata: ResourceMetadata) -> Result<(), OAuthError> {
        metadata.check(&self.plan.server)?;
        let issuer = metadata.issuer()?.to_owned();
        self.found = Some(metadata);
        self.start_server(issuer)
    }

    fn start_server(&mut self, issuer: String) -> Result<(), OAuthError> {
        if issuer.contains(['?', '#']) {
            return Err(OAuthError::Refused(format!(
                "the authorization server `{}` has a query or fragment, which an issuer may not",
                crate::text::bounded(&issuer, 200)
            )));
        }
        let url = self.guard.parse(&issuer, "the authorization server")?;
        let left = server_metadata::metadata_urls(&url).into();
        self.stage = Stage::Server { issuer, url, left };
        self.next_server()
    }

    fn next_server(&mut self) -> Result<(), OAuthError> {
        let Stage::Server { issuer, url, left } = &mut self.stage else {
            return Ok(());
        };
        match left.pop_front() {
            Some(next) => {
                self.get(next);
                Ok(())
            }
            None => {
                let server = AuthServer::fallback(issuer, url);
                self.use_server(server)
            }
        }
    }

    // The client.

    fn use_server(&mut self, server: AuthServer) -> Result<(), OAuthError> {
        self.scopes = self.wanted_scopes(&server);
        let settings = &self.plan.client;
        let kept = self
            .plan
            .known
            .issuers
            .get(&server.issuer)
            .filter(|s| s.registered_for.as_deref() == Some(self.plan.redirect_uri.as_str()));
        let client = if let Some(id) = &settings.client_id {
            let secret = settings.client_secret.clone();
            let method = AuthMethod::choose(server.auth_methods.as_deref(), secret.is_some());
            Some(ClientAuth {
                id: id.clone(),
                secret,
                method,
            })
        } else if let (true, Some(url)) = (server.metadata_documents, &settings.metadata_url) {
            Some(ClientAuth {
                id: url.clone(),
                secret: None,
                method: AuthMethod::None,
            })
        } else if let Some(kept) = kept {
            self.registered_for = kept.registered_for.clone();
            Some(kept.client())
        } else {
            None
        };
        if let Some(client) = client {
            self.client = Some(client);
            self.server = Some(server);
            return self.authorize();
        }
        let Some(endpoint) = server.register.clone() else {
            let issuer = crate::text::bounded(&server.issuer, 200);
            return Err(OAuthError::Config(if server.metadata_documents {
                format!("the authorization server {issuer} takes Client ID Metadata Documents: set `client_metadata_url` (the https URL of this client's metadata document), or `client_id`, for this server")
            } else {
                format!("the authorization server {issuer} does not register clients: set `client_id` (and `client_secret`) for this server")
            }));
        };
        let public = server
            .auth_methods
            .as_ref()
            .is_some_and(|m| m.iter().any(|n| n == "none"));
        let method = if public {
            AuthMethod::None
        } else {
            AuthMethod::choose(server.auth_methods.as_deref(), true)
        };
        let scope = self.scopes.join(" ");
        let request = registration::request(
            &endpoint,
            &Registering {
                client_name: &self.plan.client.name,
                redirect_uri: &self.plan.redirect_uri,
                scope: (!scope.is_empty()).then_some(scope.as_str()),
                method,
            },
        );
        self.server = Some(server);
        self.stage = Stage::Register(method);
        self.out = Some(LoginOutput::Fetch(request));
        Ok(())
    }

    /// The scopes to ask for: the challenge's, else the configured ones,
    /// else all the server publishes; with those granted before by the
    /// same authorization server (a step-up keeps what it had) and those
    /// a step-up asked for while no browser was at hand, and
    /// `offline_access` where the authorization server offers it (for a
    /// refresh token).
    fn wanted_scopes(&self, server: &AuthServer) -> Vec<String> {
        let mut scopes = self.challenge.scopes();
        if scopes.is_empty() {
            scopes = self.plan.client.scopes.clone();
        }
        if scopes.is_empty() {
            let supported = self.found.as_ref().and_then(|f| f.scopes_supported.clone());
            add_scopes(&mut scopes, supported.unwrap_or_default());
        }
        let before = self
            .plan
            .known
            .current()
            .filter(|s| s.issuer == server.issuer)
            .map(|s| s.scopes.clone())
            .unwrap_or_default();
        add_scopes(
            &mut scopes,
            before
                .into_iter()
                .chain(self.plan.known.wanted_scopes.clone()),
        );
        let offline = "offline_access";
        if !scopes.is_empty()
            && server.scopes_supported.iter().any(|s| s == offline)
            && !scopes.iter().any(|s| s == offline)
        {
            scopes.push(offline.to_owned());
        }
        scopes
    }

    // Authorization.

    /// The resource the tokens are for: exactly as the server published
    /// it, or its URL when it published nothing.
    fn resource(&self) -> String {
        self.found
            .as_ref()
            .map_or_else(|| self.plan.server.to_string(), |f| f.resource.clone())
    }

    fn authorize(&mut self) -> Result<(), OAuthError> {
        let (Some(server), Some(client)) = (&self.server, &self.client) else {
            return Err(OAuthError::Refused("no authorization server".to_owned()));
        };
        let resource = self.resource();
        let scope = self.scopes.join(" ");
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", client.id.as_str()),
            ("redirect_uri", self.plan.redirect_uri.as_str()),
            ("state", self.state.as_str()),
            ("code_challenge", self.pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", resource.as_str()),
        ];
        if !scope.is_empty() {
            query.push(("scope", scope.as_str()));
        }
        let target = server.authorize.target();
        let joint = if target.contains('?') { '&' } else { '?' };
        let url = server
            .authorize
            .with_target(&format!("{target}{joint}{}", form::encode(&query)));
        self.stage = Stage::Authorize;
        self.out = Some(LoginOutput::Authorize(url));
        Ok(())
    }

    fn redirected(&mut self, query: &str) -> Result<(), OAuthError> {
        let (Some(server), Some(client)) = (&self.server, &self.client) else {
            return Err(OAuthError::Refused("no authorization server".to_owned()));
        };
        self.check_redirect(query)?;
        let pairs = form::decode(query);
        if let Some(error) = form::get(&pairs, "error") {
            let description = form::get(&pairs, "error_description")
                .map(|d| format!(" ({})", crate::text::bounded(d, 200)))
                .unwrap_or_default();
            return Err(OAuthError::Denied(format!(
                "the authorization server refused: {}{description}",
                crate::text::bounded(error, 100)
            )));
        }
        match form::get(&pairs, "iss") {
            Some(iss) if iss != server.issuer => {
                return Err(OAuthError::Refused(format!(
                    "the redirect's `iss` ({}) is not the authorization server's issuer ({}): refused",
                    crate::text::bounded(iss, 200),
                    server.issuer
                )))
            }
            None if server.iss_required => {
                return Err(OAuthError::Refused(
                    "the authorization server says its redirects carry `iss`, and this one has none: refused"
                        .to_owned(),
                ))
            }
            _ => {}
        }
        let code = form::get(&pairs, "code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OAuthError::Refused("the redirect has no `code`".to_owned()))?;
        let resource = self.resource();
        let request = token::request(
            &server.token,
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.plan.redirect_uri),
                ("code_verifier", &self.pkce.verifier),
                ("resource", &resource),
            ],
        );
        self.stage = Stage::Token;
        self.out = Some(LoginOutput::Fetch(request));
        Ok(())
    }

    fn done(&mut self, granted: token::Granted, now: u64) -> Result<(), OAuthError> {
        let (Some(server), Some(client)) = (self.server.take(), self.client.take()) else {
            return Err(OAuthError::Refused("no authorization server".to_owned()));
        };
        let stored = Stored {
            resource: self.resource(),
            issuer: server.issuer,
            client_id: client.id,
            client_secret: client.secret,
            token_endpoint: server.token.to_string(),
            auth_method: client.method,
            scopes: granted
                .scope
                .map(|s| split_scopes(&s))
                .unwrap_or_else(|| std::mem::take(&mut self.scopes)),
            access_token: granted.access_token,
            refresh_token: granted.refresh_token,
            expires_at: granted.expires_in.map(|s| now.saturating_add(s)),
            lifetime: granted.expires_in,
            registered_for: self.registered_for.take(),
        };
        self.stage = Stage::Over;
        self.out = Some(LoginOutput::Done(Box::new(stored)));
        Ok(())
    }
}

/// The unauthenticated `initialize` that makes a server say what it
/// wants.
fn probe(server: &Url) -> Outgoing {
    let initialize = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": crate::mcp::SESSION_VERSIONS[3],
            "capabilities": {},
            "clientInfo": {"name": "mcp-provider", "version": env!("CARGO_PKG_VERSION")},
        },
    });
    Outgoing::new("POST", server.clone())
        .header("accept", "application/json, text/event-stream")
        .body("application/json", initialize.to_string())
}

/// A metadata document, if the response is one (anything else means it
/// is not published there).
fn document<T: DeserializeOwned>(head: &ResponseHead, body: &[u8]) -> Option<T> {
    (head.status == 200)
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}
