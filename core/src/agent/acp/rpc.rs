//! The Agent Client Protocol's JSON-RPC 2.0, one message a line, as the
//! client side speaks it: the agent's lines sorted (by the JSON-RPC reader
//! MCP uses too) into answers to our numbered requests, its own requests,
//! and notifications.

use serde_json::Value;

use crate::mcp::{self, Message};

/// A line from the agent, sorted.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The answer to our request `id`: its result, or its error.
    Response {
        id: u64,
        result: Result<Value, Failure>,
    },
    /// A request of the agent's, to be answered with its `id`.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// Not JSON-RPC, or an answer to nothing we asked.
    Invalid,
}

/// An error the agent answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: i64,
    pub message: String,
}

/// Sorts one line.
pub fn parse(line: &str) -> Incoming {
    match mcp::parse(line) {
        Ok(Message::Request { id, method, params }) => Incoming::Request {
            id,
            method,
            params: params.into(),
        },
        Ok(Message::Notification { method, params }) => Incoming::Notification {
            method,
            params: params.into(),
        },
        Ok(Message::Response { id, outcome }) => match id.as_u64() {
            Some(id) => Incoming::Response {
                id,
                result: outcome.map_err(|error| Failure {
                    code: error["code"].as_i64().unwrap_or_default(),
                    message: describe(&error),
                }),
            },
            None => Incoming::Invalid,
        },
        Err(_) => Incoming::Invalid,
    }
}

/// An error's message, with its data when that says more.
fn describe(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("an error");
    match &error["data"] {
        Value::Null => message.to_owned(),
        Value::String(data) => format!("{message}: {data}"),
        data => format!("{message}: {data}"),
    }
}

/// Our request `id`.
pub fn request(id: u64, method: &str, params: Value) -> String {
    mcp::request(&Value::from(id), method, params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lines_are_sorted_by_what_they_hold() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":3,"result":{"sessionId":"s"}}"#),
            Incoming::Response {
                id: 3,
                result: Ok(json!({"sessionId": "s"}))
            }
        );
        assert_eq!(
            parse(
                r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32000,"message":"Authentication required"}}"#
            ),
            Incoming::Response {
                id: 4,
                result: Err(Failure {
                    code: -32000,
                    message: "Authentication required".into()
                })
            }
        );
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":"p1","method":"session/request_permission","params":{}}"#),
            Incoming::Request { method, .. } if method == "session/request_permission"
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s"}}"#),
            Incoming::Notification { method, params } if method == "session/update" && params["sessionId"] == "s"
        ));
        for bad in [
            "not json",
            "[1]",
            r#"{"id":"x","result":1}"#,
            r#"{"id":1}"#,
            "{}",
        ] {
            assert_eq!(parse(bad), Incoming::Invalid, "{bad}");
        }
    }
}
