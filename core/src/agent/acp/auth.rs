//! `authenticate`, when it can be done without a person. An agent whose
//! `session/new` says it needs a login is logged in, once per process,
//! with a method that takes its credential from the agent's environment
//! (an API key); a method that needs a person (a browser, a terminal) is
//! left to the user, whom the editor's error tells the agent's own login
//! command.

use serde_json::{json, Value};

use super::pool::Pool;
use super::rpc::Failure;
use super::{Pending, Request};

/// The id of a login method, among those the agent's `initialize` answer
/// offers, that needs no person: one of type `env_var`, or an API key's
/// (by its `_meta` or its id or name).
pub fn headless(initialized: &Value) -> Option<String> {
    let methods = initialized["authMethods"].as_array()?;
    let api_key = |m: &Value| {
        let said = format!(
            "{} {}",
            m["id"].as_str().unwrap_or_default(),
            m["name"].as_str().unwrap_or_default()
        )
        .to_lowercase();
        ["api key", "api-key", "apikey", "api_key"]
            .iter()
            .any(|k| said.contains(k))
    };
    methods
        .iter()
        .find(|m| m["type"] == "env_var" || m["_meta"].get("api-key").is_some() || api_key(m))
        .and_then(|m| m["id"].as_str())
        .map(str::to_owned)
}

/// Whether a refusal says the agent needs a login (ACP's `auth_required`
/// is -32000).
pub fn needs_login(failure: &Failure) -> bool {
    failure.code == -32000 || failure.message.to_lowercase().contains("auth")
}

impl Pool {
    /// The method to log the process of `slot` in with, after `failure`,
    /// when it needs a login, has a headless method and has not tried it.
    pub(super) fn login_method(&mut self, slot: usize, failure: &Failure) -> Option<String> {
        let process = self.slots.get_mut(slot)?.process.as_mut()?;
        if !needs_login(failure) || process.tried_login {
            return None;
        }
        let method = process.headless.clone()?;
        process.tried_login = true;
        tracing::info!("ACP agent: it needs a login; authenticating with its `{method}` method");
        Some(method)
    }

    /// Logs the process of `slot` in with `method`: then the session that
    /// needed it (for `request`, or the first one) is asked for again.
    pub(super) fn authenticate(&mut self, slot: usize, method: String, request: Option<Request>) {
        let params = json!({"methodId": method});
        let pending = Pending::Authenticate(request.map(Box::new));
        self.call(slot, "authenticate", params, pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_that_takes_a_key_from_the_environment_is_headless() {
        let gemini = json!({"authMethods": [
            {"id": "oauth-personal", "name": "Log in with Google"},
            {"id": "gemini-api-key", "name": "Gemini API key", "_meta": {"api-key": {"provider": "google"}}},
            {"id": "vertex-ai", "name": "Vertex AI", "description": "Use an API key with Vertex AI"}]});
        assert_eq!(headless(&gemini).as_deref(), Some("gemini-api-key"));
        let typed = json!({"authMethods": [{"id": "terminal", "type": "terminal"}, {"id": "key", "type": "env_var", "varName": "K"}]});
        assert_eq!(headless(&typed).as_deref(), Some("key"));
        let claude =
            json!({"authMethods": [{"id": "claude-login", "name": "Log in with Claude Code"}]});
        assert_eq!(headless(&claude), None);
        assert_eq!(headless(&json!({"authMethods": "no"})), None);
    }
}
