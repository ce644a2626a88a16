//! The editor-facing APIs: the route table, request parsing and validation,
//! and the response shapes of OpenAI and Ollama.
//!
//! Adding an API means one more translation module here and a few rows in
//! [`route`]; the provider and both runtimes need no change.

pub mod ollama;
pub mod openai;
mod validate;

use bytes::{BufMut, BytesMut};
use serde_json::Value;

use crate::error::ApiError;
pub use validate::RequestLimits;

/// Every route the provider serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Root,
    Health,
    AgentLink,
    OpenAiChat,
    OpenAiCompletion,
    OpenAiEmbeddings,
    OpenAiModels,
    OpenAiModel(String),
    OllamaChat,
    OllamaGenerate,
    OllamaEmbed,
    OllamaTags,
    OllamaShow,
    OllamaPs,
    OllamaVersion,
    ControlRegister,
    ControlApprove,
    ControlRevoke,
    ControlSessions,
}

impl Route {
    /// Who may call it.
    pub fn guard(&self) -> Guard {
        match self {
            Route::Root | Route::Health | Route::OllamaVersion => Guard::Open,
            Route::AgentLink
            | Route::ControlRegister
            | Route::ControlApprove
            | Route::ControlRevoke
            | Route::ControlSessions => Guard::BridgeToken,
            _ => Guard::ApiKey,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Open,
    ApiKey,
    BridgeToken,
}

/// Finds the route for a method and path: 404 for an unknown path, 405 for
/// a known path with the wrong method.
pub fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    use Route::*;
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST";
    let (route, allowed) = match path {
        "/" => (Root, get),
        "/health" => (Health, get),
        "/v1/agent" => (AgentLink, get),
        "/v1/chat/completions" | "/chat/completions" => (OpenAiChat, post),
        "/v1/completions" | "/completions" => (OpenAiCompletion, post),
        "/v1/embeddings" | "/embeddings" => (OpenAiEmbeddings, post),
        "/v1/models" | "/models" => (OpenAiModels, get),
        "/api/chat" => (OllamaChat, post),
        "/api/generate" => (OllamaGenerate, post),
        "/api/embed" => (OllamaEmbed, post),
        "/api/tags" => (OllamaTags, get),
        "/api/show" => (OllamaShow, post),
        "/api/ps" => (OllamaPs, get),
        "/api/version" => (OllamaVersion, get),
        "/control/register" => (ControlRegister, post),
        "/control/approve" => (ControlApprove, post),
        "/control/revoke" => (ControlRevoke, post),
        "/control/sessions" => (ControlSessions, get),
        _ => match path
            .strip_prefix("/v1/models/")
            .or_else(|| path.strip_prefix("/models/"))
        {
            Some(id) if !id.is_empty() => (OpenAiModel(id.to_owned()), get),
            _ => {
                return Err(ApiError::not_found(format!(
                    "Unknown route: {method} {path}"
                )))
            }
        },
    };
    if allowed {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed(format!(
            "Method {method} is not allowed on {path}"
        )))
    }
}

/// Which endpoint a model request came from: it decides the response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAiChat,
    OpenAiCompletion,
    OpenAiEmbeddings,
    OllamaChat,
    OllamaGenerate,
    OllamaEmbed,
}

impl Api {
    pub fn is_embedding(self) -> bool {
        matches!(self, Api::OpenAiEmbeddings | Api::OllamaEmbed)
    }
}

/// A validated request for a model, ready to send to an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRequest {
    pub api: Api,
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// The `payload` of `model_invoke`: kind, messages / prompt / input and
    /// parameters, always in OpenAI shape.
    pub payload: Value,
    /// Prompt tokens, estimated from its text.
    pub prompt_tokens: u64,
}

/// Writes `value` as JSON at the end of `out`.
pub(crate) fn put_json(out: &mut BytesMut, value: &impl serde::Serialize) {
    // Writing into a BytesMut cannot fail.
    let _ = serde_json::to_writer(out.writer(), value);
}

/// Parses a JSON body, insisting on an object.
fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.")),
        Err(e) => Err(ApiError::invalid(format!(
            "We could not parse the JSON body of your request: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        assert_eq!(route("POST", "/v1/chat/completions"), Ok(Route::OpenAiChat));
        assert_eq!(
            route("GET", "/v1/models/echo"),
            Ok(Route::OpenAiModel("echo".into()))
        );
        assert_eq!(
            route("GET", "/v1/chat/completions").unwrap_err().status,
            405
        );
        assert_eq!(route("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(route("GET", "/v1/models/").unwrap_err().status, 404);
    }
}
