//! Errors an editor sees, and how each API shapes them on the wire.
//!
//! One [`ApiError`] value is rendered as OpenAI's `{"error":{…}}` object,
//! Anthropic's `{"type":"error","error":{…}}` or Ollama's `{"error":"…"}`,
//! depending on which API the request used, so that validation code is
//! written once for all of them.

use serde_json::json;

/// Which wire dialect a response is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Ollama,
    /// MCP's JSON-RPC, for the bridge's MCP transports: an error with no
    /// request id (the request was refused before it was read).
    JsonRpc,
}

/// An error answered to an editor: HTTP status plus OpenAI's `type`, `code`
/// and `param` (Ollama shows only the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<String>,
    /// Seconds to put in `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, code: Option<&'static str>, message: String) -> Self {
        ApiError {
            status,
            message,
            kind,
            code,
            param: None,
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", None, message.into())
    }

    /// A 400 naming the offending request field.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            400,
            "invalid_request_error",
            Some("invalid_value"),
            message.into(),
        );
        e.param = Some(param.to_owned());
        e
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            401,
            "authentication_error",
            Some("invalid_api_key"),
            message.into(),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", Some("forbidden"), message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            404,
            "invalid_request_error",
            Some("not_found"),
            message.into(),
        )
    }

    /// A model nobody serves, with the names that are served (the first
    /// few), so a typo is seen at once.
    pub fn model_not_found(model: &str, served: &[String]) -> Self {
        const NAMED: usize = 20;
        let mut message =
            format!("The model `{model}` does not exist: no connected agent serves it.");
        match served {
            [] => message.push_str(" No model is served right now."),
            names => {
                let shown: Vec<String> =
                    names.iter().take(NAMED).map(|m| format!("`{m}`")).collect();
                message.push_str(&format!(" Served models: {}", shown.join(", ")));
                if names.len() > NAMED {
                    message.push_str(&format!(" and {} more", names.len() - NAMED));
                }
                message.push('.');
            }
        }
        let mut e = Self::new(
            404,
            "invalid_request_error",
            Some("model_not_found"),
            message,
        );
        e.param = Some("model".to_owned());
        e
    }

    /// The conversation is longer than the model can take: OpenAI's code
    /// for it, which clients recognise as "shorten and retry".
    pub fn context_length_exceeded(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            message.into(),
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            405,
            "invalid_request_error",
            Some("method_not_allowed"),
            message.into(),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            Some("request_too_large"),
            message.into(),
        )
    }

    pub fn headers_too_large(message: impl Into<String>) -> Self {
        Self::new(
            431,
            "invalid_request_error",
            Some("headers_too_large"),
            message.into(),
        )
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            429,
            "rate_limit_error",
            Some("rate_limit_exceeded"),
            message.into(),
        );
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "service_unavailable", Some("no_agent"), message.into())
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "timeout", Some("agent_timeout"), message.into())
    }

    /// The agent reported a failure for this request.
    pub fn agent(message: impl Into<String>) -> Self {
        Self::new(502, "agent_error", Some("agent_error"), message.into())
    }

    /// Anthropic's error type, which its clients map to exception classes.
    fn anthropic_type(&self) -> &'static str {
        match self.status {
            400 | 405 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }

    /// The error body in the given dialect.
    pub fn body(&self, dialect: Dialect) -> Vec<u8> {
        let value = match dialect {
            Dialect::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }}),
            Dialect::Anthropic => json!({"type": "error", "error": {
                "type": self.anthropic_type(),
                "message": self.message,
            }}),
            Dialect::Ollama => json!({"error": self.message}),
            Dialect::JsonRpc => json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": crate::mcp::INVALID_REQUEST,
                "message": self.message,
            }}),
        };
        value.to_string().into_bytes()
    }

    /// The whole answer: status, body in the dialect, and `Retry-After`
    /// when the error says when to retry.
    pub fn response(&self, dialect: Dialect) -> crate::http::Response {
        let response = crate::http::Response::json(self.status, self.body(dialect));
        match self.retry_after {
            Some(secs) => response.with_header("retry-after", secs.to_string()),
            None => response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_shape_has_all_four_fields() {
        let e = ApiError::invalid_param("temperature", "temperature must be between 0 and 2");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::OpenAi)).unwrap();
        assert_eq!(v["error"]["param"], "temperature");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_value");
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 0 and 2"));
    }

    #[test]
    fn anthropic_shape_names_its_type() {
        let e = ApiError::unauthorized("bad key");
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Anthropic)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v["error"]["message"], "bad key");
    }

    #[test]
    fn ollama_shape_is_a_plain_string() {
        let e = ApiError::model_not_found("x", &["echo".to_owned()]);
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::Ollama)).unwrap();
        assert!(v["error"].as_str().unwrap().contains("`x`"));
        let v: serde_json::Value = serde_json::from_slice(&e.body(Dialect::JsonRpc)).unwrap();
        assert_eq!(
            (v["jsonrpc"].as_str(), v["id"].is_null()),
            (Some("2.0"), true)
        );
        assert!(v["error"]["message"].as_str().unwrap().contains("`x`"));
        assert_eq!(v["error"]["code"], crate::mcp::INVALID_REQUEST);
    }
}
