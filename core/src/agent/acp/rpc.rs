//! The Agent Client Protocol's JSON-RPC 2.0, one message a line, as the
//! client side speaks it: requests we number and the agent answers,
//! requests the agent makes of us, and notifications either way.

use serde_json::{json, Value};

/// JSON-RPC's "method not found": what the agent gets for a request we do
/// not serve (files, terminals, anything newer).
pub const METHOD_NOT_FOUND: i64 = -32601;

/// A line from the agent, sorted.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    /// The answer to our request `id`: its result, or its error's message.
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
    let Ok(Value::Object(mut msg)) = serde_json::from_str::<Value>(line) else {
        return Incoming::Invalid;
    };
    let method = msg.get("method").and_then(Value::as_str).map(str::to_owned);
    let params = msg.remove("params").unwrap_or(Value::Null);
    match (msg.remove("id"), method) {
        (Some(id), Some(method)) if !id.is_null() => Incoming::Request { id, method, params },
        (None, Some(method)) => Incoming::Notification { method, params },
        (Some(id), None) => {
            let Some(id) = id.as_u64() else {
                return Incoming::Invalid;
            };
            let result = match (msg.remove("result"), msg.remove("error")) {
                (_, Some(error)) => Err(Failure {
                    code: error["code"].as_i64().unwrap_or_default(),
                    message: describe(&error),
                }),
                (Some(result), None) => Ok(result),
                (None, None) => return Incoming::Invalid,
            };
            Incoming::Response { id, result }
        }
        _ => Incoming::Invalid,
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

pub fn request(id: u64, method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

pub fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

pub fn result(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

pub fn error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
