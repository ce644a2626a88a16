//! Whole logins against scripted servers: every fetch answered from a
//! table, the browser played by a function of the authorization URL.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::*;
use crate::http::{Headers, Outgoing, ResponseHead, Url};

const SERVER: &str = "https://mcp.example.com/mcp";
const AS: &str = "https://auth.example.com";
const REDIRECT: &str = "http://127.0.0.1:5555/callback";

/// A scripted answer: status, fields, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);
/// What the browser brings back, given the authorization URL's query.
type Browser = Box<dyn Fn(&[(String, String)]) -> String>;

/// A scripted world: answers by method and URL (anything else is 404).
struct World {
    answers: HashMap<(String, String), Answer>,
    /// Every request made, in order.
    asked: Vec<Outgoing>,
    /// The authorization URL opened, if one was.
    opened: Option<Url>,
    browser: Browser,
}

impl World {
    fn new() -> World {
        World {
            answers: HashMap::new(),
            asked: Vec::new(),
            opened: None,
            browser: Box::new(|query| {
                let state = form::get(query, "state").unwrap_or_default();
                form::encode(&[("code", "the-code"), ("state", state), ("iss", AS)])
            }),
        }
    }

    fn answer(
        &mut self,
        method: &str,
        url: &str,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        self.answers.insert(
            (method.into(), url.into()),
            (status, headers, body.to_vec()),
        );
    }

    fn json(&mut self, method: &str, url: &str, value: Value) {
        self.answer(
            method,
            url,
            200,
            &[("content-type", "application/json")],
            value.to_string().as_bytes(),
        );
    }

    /// The usual world: a server asking for a token, its metadata at the
    /// path, an authorization server at its root with registration.
    fn usual() -> World {
        let mut world = World::new();
        world.answer(
            "POST",
            SERVER,
            401,
            &[(
                "www-authenticate",
                r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp:basic""#,
            )],
            b"",
        );
        world.json(
            "GET",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            json!({"resource": SERVER, "authorization_servers": [AS], "scopes_supported": ["mcp:basic", "mcp:extra"]}),
        );
        world.json(
            "GET",
            &format!("{AS}/.well-known/oauth-authorization-server"),
            as_metadata(AS, ""),
        );
        world.answer(
            "POST",
            &format!("{AS}/register"),
            201,
            &[("content-type", "application/json")],
            br#"{"client_id":"dyn-client","client_secret":"dyn-secret"}"#,
        );
        world.json(
            "POST",
            &format!("{AS}/token"),
            json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}),
        );
        world
    }

    fn fetch(&mut self, request: Outgoing) -> (ResponseHead, Vec<u8>) {
        let key = (request.method.to_owned(), request.url.to_string());
        self.asked.push(request);
        let (status, fields, body) =
            self.answers
                .get(&key)
                .cloned()
                .unwrap_or((404, Vec::new(), b"not found".to_vec()));
        let mut headers = Headers::default();
        for (name, value) in &fields {
            headers.push(name, value);
        }
        (ResponseHead { status, headers }, body)
    }

    fn urls(&self) -> Vec<String> {
        self.asked.iter().map(|r| r.url.to_string()).collect()
    }

    fn token_request(&self) -> Option<&Outgoing> {
        self.asked.iter().find(|r| r.url.path().ends_with("/token"))
    }
}

fn as_metadata(issuer: &str, prefix: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{AS}{prefix}/authorize"),
        "token_endpoint": format!("{AS}{prefix}/token"),
        "registration_endpoint": format!("{AS}{prefix}/register"),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        "authorization_response_iss_parameter_supported": true,
    })
}

fn plan() -> LoginPlan {
    let server = Url::parse(SERVER).unwrap();
    LoginPlan {
        known: Logins::new(&server),
        server,
        challenge: None,
        client: ClientSettings {
            name: "MCP Local Provider".into(),
            ..ClientSettings::default()
        },
        redirect_uri: REDIRECT.into(),
    }
}

/// Runs a login to its end.
fn run(world: &mut World, plan: LoginPlan) -> Result<Stored, OAuthError> {
    let mut login = Login::new(plan, Random::from_bytes(&[9; 48]));
    for _ in 0..50 {
        match login.poll_output() {
            Some(LoginOutput::Fetch(request)) => {
                let (head, body) = world.fetch(request);
                login.handle_response(&head, &body, 1_000);
            }
            Some(LoginOutput::Authorize(url)) => {
                let query = form::decode(url.target().split_once('?').map_or("", |(_, q)| q));
                world.opened = Some(url);
                let back = (world.browser)(&query);
                login.handle_redirect(&back);
            }
            Some(LoginOutput::Done(stored)) => return Ok(*stored),
            Some(LoginOutput::Failed(why)) => return Err(why),
            None => panic!("the login stopped without an end"),
        }
    }
    panic!("the login never ended");
}

fn opened_query(world: &World) -> Vec<(String, String)> {
    let url = world.opened.as_ref().expect("no authorization was opened");
    form::decode(url.target().split_once('?').map_or("", |(_, q)| q))
}

fn body_of(request: &Outgoing) -> Vec<(String, String)> {
    form::decode(std::str::from_utf8(&request.body).unwrap())
}

#[test]
fn a_login_discovers_registers_authorizes_and_exchanges() {
    let mut world = World::usual();
    let stored = run(&mut world, plan()).unwrap();
    assert_eq!(
        world.urls(),
        [
            SERVER,
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            "https://auth.example.com/.well-known/oauth-authorization-server",
            "https://auth.example.com/register",
            "https://auth.example.com/token",
        ]
    );
    let query = opened_query(&world);
    let get = |name| form::get(&query, name).unwrap_or_default().to_owned();
    assert_eq!(get("client_id"), "dyn-client");
    assert_eq!(get("resource"), SERVER);
    assert_eq!(get("scope"), "mcp:basic");
    assert_eq!(get("code_challenge_method"), "S256");
    assert_eq!(get("redirect_uri"), REDIRECT);
    let token = body_of(world.token_request().unwrap());
    assert_eq!(form::get(&token, "code"), Some("the-code"));
    assert_eq!(form::get(&token, "resource"), Some(SERVER));
    assert_eq!(form::get(&token, "client_id"), Some("dyn-client"));
    let verifier = form::get(&token, "code_verifier").unwrap();
    assert_eq!(
        pkce::base64url(&<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes())),
        get("code_challenge")
    );
    let registration: Value = serde_json::from_slice(&world.asked[3].body).unwrap();
    assert_eq!(registration["application_type"], "native");
    assert_eq!(registration["token_endpoint_auth_method"], "none");
    assert_eq!(stored.issuer, AS);
    assert_eq!(stored.access_token, "at-1");
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(stored.expires_at, Some(4_600));
    assert_eq!(stored.auth_method, AuthMethod::None);
    assert_eq!(stored.scopes, ["mcp:basic"]);
    assert_eq!(stored.registered_for.as_deref(), Some(REDIRECT));
}

#[test]
fn metadata_at_the_root_and_an_issuer_with_a_path() {
    let mut world = World::usual();
    let tenant = format!("{AS}/tenant1");
    world.answer("POST", SERVER, 401, &[("www-authenticate", "Bearer")], b"");
    world.answers.remove(&(
        "GET".into(),
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp".into(),
    ));
    world.json(
        "GET",
        "https://mcp.example.com/.well-known/oauth-protected-resource",
        json!({"resource": "https://mcp.example.com", "authorization_servers": [tenant]}),
    );
    world.json(
        "GET",
        &format!("{AS}/tenant1/.well-known/openid-configuration"),
        as_metadata(&tenant, "/tenant1"),
    );
    world.answer(
        "POST",
        &format!("{AS}/tenant1/register"),
        201,
        &[],
        br#"{"client_id":"c"}"#,
    );
    world.json(
        "POST",
        &format!("{AS}/tenant1/token"),
        json!({"access_token": "at"}),
    );
    world.browser = Box::new(|query| {
        let state = form::get(query, "state").unwrap_or_default();
        form::encode(&[
            ("code", "c"),
            ("state", state),
            ("iss", "https://auth.example.com/tenant1"),
        ])
    });
    let stored = run(&mut world, plan()).unwrap();
    let urls = world.urls();
    assert!(
        !urls.contains(&format!("{AS}/.well-known/oauth-authorization-server")),
        "{urls:?}"
    );
    assert_eq!(
        &urls[1..6],
        [
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
            "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
            "https://auth.example.com/.well-known/openid-configuration/tenant1",
            "https://auth.example.com/tenant1/.well-known/openid-configuration",
        ]
    );
    // The resource exactly as published: no slash added.
    assert_eq!(
        form::get(&opened_query(&world), "resource"),
        Some("https://mcp.example.com")
    );
    assert_eq!(form::get(&opened_query(&world), "scope"), None);
    assert_eq!(stored.resource, "https://mcp.example.com");
    assert_eq!(stored.issuer, tenant);
}

#[test]
fn scopes_come_from_the_challenge_else_the_metadata_else_none() {
    let mut world = World::usual();
    world.answer(
        "POST",
        SERVER,
        401,
        &[(
            "www-authenticate",
            r#"Bearer resource_metadata="/.well-known/oauth-protected-resource/mcp""#,
        )],
        b"",
    );
    run(&mut world, plan()).unwrap();
    assert_eq!(
        form::get(&opened_query(&world), "scope"),
        Some("mcp:basic mcp:extra")
    );
    let mut configured = plan();
    configured.client.scopes = vec!["mine".into()];
    run(&mut world, configured).unwrap();
    assert_eq!(form::get(&opened_query(&world), "scope"), Some("mine"));
}

#[test]
fn a_step_up_asks_for_what_it_had_and_what_it_lacks() {
    let mut world = World::usual();
    let mut plan = plan();
    let mut before = run(&mut World::usual(), plan.clone()).unwrap();
    before.scopes = vec!["mcp:basic".into()];
    plan.known.record(before);
    plan.challenge = Some(
        r#"Bearer error="insufficient_scope", scope="mcp:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#
            .to_owned(),
    );
    run(&mut world, plan).unwrap();
    assert_eq!(
        world.urls()[0],
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        form::get(&opened_query(&world), "scope"),
        Some("mcp:write mcp:basic")
    );
    // The client registered for the same redirect is used again.
    assert!(!world.urls().iter().any(|u| u.ends_with("/register")));
    assert_eq!(
        form::get(&opened_query(&world), "client_id"),
        Some("dyn-client")
    );
}

#[test]
fn a_metadata_document_or_a_configured_client_is_used_instead_of_registering() {
    let cimd = "https://conformance-test.local/client-metadata.json";
    let mut world = World::usual();
    let mut metadata = as_metadata(AS, "");
    metadata["client_id_metadata_document_supported"] = json!(true);
    world.json(
        "GET",
        &format!("{AS}/.well-known/oauth-authorization-server"),
        metadata,
    );
    let mut with_document = plan();
    with_document.client.metadata_url = Some(cimd.into());
    run(&mut world, with_document).unwrap();
    assert_eq!(form::get(&opened_query(&world), "client_id"), Some(cimd));
    assert!(!world.urls().iter().any(|u| u.ends_with("/register")));

    let mut world = World::usual();
    let mut metadata = as_metadata(AS, "");
    metadata
        .as_object_mut()
        .unwrap()
        .remove("registration_endpoint");
    metadata["token_endpoint_auth_methods_supported"] = json!(["client_secret_basic"]);
    world.json(
        "GET",
        &format!("{AS}/.well-known/oauth-authorization-server"),
        metadata,
    );
    let error = run(&mut world, plan()).unwrap_err();
    assert!(
        matches!(&error, OAuthError::Config(why) if why.contains("set `client_id`")),
        "{error}"
    );
    let mut configured = plan();
    configured.client.client_id = Some("pre-registered-client".into());
    configured.client.client_secret = Some("pre-registered-secret".into());
    let stored = run(&mut world, configured).unwrap();
    assert_eq!(stored.auth_method, AuthMethod::ClientSecretBasic);
    let token = world.token_request().unwrap();
    let basic = token
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .unwrap();
    let pair = crate::base64::decode(basic.1.strip_prefix("Basic ").unwrap()).unwrap();
    assert_eq!(pair, b"pre-registered-client:pre-registered-secret");
    assert_eq!(form::get(&body_of(token), "client_secret"), None);
}

#[test]
fn a_2025_03_26_server_is_its_own_authorization_server() {
    let local = "http://localhost:7000/mcp";
    let mut world = World::new();
    world.answer("POST", local, 401, &[("www-authenticate", "Bearer")], b"");
    world.answer(
        "POST",
        "http://localhost:7000/register",
        201,
        &[],
        br#"{"client_id":"c","client_secret":"s"}"#,
    );
    world.json(
        "POST",
        "http://localhost:7000/token",
        json!({"access_token": "at"}),
    );
    world.browser = Box::new(|query| {
        let state = form::get(query, "state").unwrap_or_default();
        form::encode(&[("code", "c"), ("state", state)])
    });
    let mut plan = plan();
    plan.server = Url::parse(local).unwrap();
    let stored = run(&mut world, plan).unwrap();
    assert_eq!(
        world.urls(),
        [
            local,
            "http://localhost:7000/.well-known/oauth-protected-resource/mcp",
            "http://localhost:7000/.well-known/oauth-protected-resource",
            "http://localhost:7000/.well-known/oauth-authorization-server",
            "http://localhost:7000/.well-known/openid-configuration",
            "http://localhost:7000/register",
            "http://localhost:7000/token",
        ]
    );
    assert_eq!(world.opened.as_ref().unwrap().path(), "/authorize");
    assert_eq!(stored.issuer, "http://localhost:7000");
    assert_eq!(stored.auth_method, AuthMethod::ClientSecretBasic);
}

/// Runs the usual login changed by `change`, expecting it to be refused
/// with `says` and no token asked for.
fn refused(change: impl FnOnce(&mut World), says: &str) {
    let mut world = World::usual();
    change(&mut world);
    let error = run(&mut world, plan()).unwrap_err();
    assert!(error.to_string().contains(says), "{error}");
    assert!(
        world.token_request().is_none(),
        "{says}: a token was asked for"
    );
}

#[test]
fn hostile_metadata_is_refused_before_any_authorization() {
    refused(
        |w| {
            w.json(
                "GET",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                json!({"resource": "https://evil.example.com/mcp", "authorization_servers": [AS]}),
            )
        },
        "names the resource `https://evil.example.com/mcp`",
    );
    refused(
        |w| {
            w.json(
                "GET",
                &format!("{AS}/.well-known/oauth-authorization-server"),
                as_metadata("https://attacker.example.com", ""),
            )
        },
        "says its issuer is `https://attacker.example.com`: refused",
    );
    refused(
        |w| {
            w.answer(
                "GET",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                302,
                &[("location", "http://169.254.169.254/latest/meta-data")],
                b"",
            )
        },
        "private address while the MCP server is public",
    );
    refused(
        |w| {
            w.json(
                "GET",
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
                json!({"resource": SERVER, "authorization_servers": ["http://10.0.0.7/"]}),
            )
        },
        "private address",
    );
    refused(
        |w| {
            let mut metadata = as_metadata(AS, "");
            metadata["code_challenge_methods_supported"] = json!(["plain"]);
            w.json(
                "GET",
                &format!("{AS}/.well-known/oauth-authorization-server"),
                metadata,
            );
        },
        "PKCE",
    );
}

#[test]
fn a_redirect_that_is_not_this_logins_is_refused() {
    let back = |code: &'static str, state: Option<&'static str>, iss: Option<&'static str>| {
        move |w: &mut World| {
            w.browser = Box::new(move |query| {
                let ours = form::get(query, "state").unwrap_or_default().to_owned();
                let mut pairs = vec![("code", code)];
                let state = state.map_or(ours, str::to_owned);
                pairs.push(("state", &state));
                if let Some(iss) = iss {
                    pairs.push(("iss", iss));
                }
                form::encode(&pairs)
            })
        }
    };
    refused(
        back("c", Some("forged"), Some(AS)),
        "`state` is not this login's",
    );
    refused(
        back("c", None, Some("https://evil.example.com")),
        "`iss` (https://evil.example.com)",
    );
    refused(
        back("c", None, Some("https://auth.example.com/")),
        "is not the authorization server's issuer",
    );
    refused(back("c", None, None), "carry `iss`");
    refused(back("", None, Some(AS)), "no `code`");
    refused(
        |w| {
            w.browser = Box::new(|query| {
                let state = form::get(query, "state").unwrap_or_default();
                form::encode(&[
                    ("error", "access_denied"),
                    ("error_description", "the user said no"),
                    ("state", state),
                ])
            })
        },
        "refused: access_denied (the user said no)",
    );
}

#[test]
fn a_forged_redirect_is_told_apart_without_ending_the_login() {
    let mut world = World::usual();
    let mut login = Login::new(plan(), Random::from_bytes(&[9; 48]));
    let ours = loop {
        match login.poll_output() {
            Some(LoginOutput::Fetch(request)) => {
                let (head, body) = world.fetch(request);
                login.handle_response(&head, &body, 1_000);
            }
            Some(LoginOutput::Authorize(url)) => {
                let query = form::decode(url.target().split_once('?').map_or("", |(_, q)| q));
                break (world.browser)(&query);
            }
            other => panic!("no authorization: {other:?}"),
        }
    };
    // Before the browser: a request with another `state`, or none.
    for forged in ["code=c&state=forged", "code=c", ""] {
        let refused = login.check_redirect(forged).unwrap_err();
        assert!(refused.to_string().contains("`state` is not this login's"));
    }
    assert_eq!(login.poll_output(), None, "the login went on");
    // The browser comes back, and the login ends as it would have.
    assert_eq!(login.check_redirect(&ours), Ok(()));
    login.handle_redirect(&ours);
    let Some(LoginOutput::Fetch(request)) = login.poll_output() else {
        panic!("no token request");
    };
    assert!(request.url.path().ends_with("/token"));
    let (head, body) = world.fetch(request);
    login.handle_response(&head, &body, 1_000);
    assert!(matches!(login.poll_output(), Some(LoginOutput::Done(_))));
    // Once over, nothing is its redirect.
    assert!(login.check_redirect(&ours).is_err());
}

#[test]
fn a_token_endpoint_that_does_not_answer_json_is_refused() {
    let mut world = World::usual();
    world.answer(
        "POST",
        &format!("{AS}/token"),
        200,
        &[("content-type", "text/html")],
        b"<html>Sign in</html>",
    );
    let error = run(&mut world, plan()).unwrap_err();
    assert!(
        error.to_string().contains("HTML page (text/html)"),
        "{error}"
    );
    world.answer(
        "POST",
        &format!("{AS}/token"),
        307,
        &[("location", "http://127.0.0.1/")],
        b"",
    );
    let error = run(&mut world, plan()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("redirect (HTTP 307 to http://127.0.0.1/): refused"),
        "{error}"
    );
    world.answer("POST", &format!("{AS}/register"), 404, &[], b"");
    let error = run(&mut world, plan()).unwrap_err();
    assert!(
        matches!(&error, OAuthError::Config(why) if why.contains("needs `client_id`")),
        "{error}"
    );
}

#[test]
fn a_server_that_asks_for_nothing_needs_no_login() {
    let mut world = World::new();
    world.json(
        "POST",
        SERVER,
        json!({"jsonrpc": "2.0", "id": 0, "result": {}}),
    );
    let error = run(&mut world, plan()).unwrap_err();
    assert!(error.to_string().contains("may need no login"), "{error}");
}

#[test]
fn unreachable_metadata_is_looked_for_elsewhere() {
    let mut world = World::usual();
    let mut login = Login::new(plan(), Random::from_bytes(&[1; 48]));
    let Some(LoginOutput::Fetch(probe)) = login.poll_output() else {
        panic!()
    };
    let (head, body) = world.fetch(probe);
    login.handle_response(&head, &body, 0);
    let Some(LoginOutput::Fetch(first)) = login.poll_output() else {
        panic!()
    };
    assert!(first.url.path().ends_with("/mcp"));
    login.handle_failed("connection refused");
    let Some(LoginOutput::Fetch(second)) = login.poll_output() else {
        panic!()
    };
    assert_eq!(second.url.path(), "/.well-known/oauth-protected-resource");
    assert!(login.poll_output().is_none());
}

#[test]
fn a_server_that_cannot_be_reached_at_all_fails_the_login_at_once() {
    let mut login = Login::new(plan(), Random::from_bytes(&[1; 48]));
    let Some(LoginOutput::Fetch(probe)) = login.poll_output() else {
        panic!()
    };
    login.handle_unreachable("no TLS handshake within 10 s");
    let Some(LoginOutput::Failed(error)) = login.poll_output() else {
        panic!("no metadata is asked of an origin that cannot be reached")
    };
    let error = error.to_string();
    assert!(
        error.contains(&probe.url.to_string()) && error.contains("cannot be reached"),
        "{error}"
    );
    assert!(login.poll_output().is_none());

    // Past the probe, a server that answered once: its metadata is still
    // looked for elsewhere.
    let mut world = World::usual();
    let mut login = Login::new(plan(), Random::from_bytes(&[1; 48]));
    let Some(LoginOutput::Fetch(probe)) = login.poll_output() else {
        panic!()
    };
    let (head, body) = world.fetch(probe);
    login.handle_response(&head, &body, 0);
    assert!(matches!(login.poll_output(), Some(LoginOutput::Fetch(_))));
    login.handle_unreachable("connection refused");
    let Some(LoginOutput::Fetch(next)) = login.poll_output() else {
        panic!()
    };
    assert_eq!(next.url.path(), "/.well-known/oauth-protected-resource");
}
