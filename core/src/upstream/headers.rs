//! The standard request headers of the 2026-07-28 revision (SEP-2243),
//! sent on every post whatever the generation — a 2025 server ignores
//! them, and whatever routes or meters on the way may read them:
//! `Mcp-Method` (the message's method) and `Mcp-Name` (the tool or
//! prompt a request names, or the resource it reads).

use std::borrow::Cow;

use crate::http::Outgoing;

/// `request` with the standard headers for `method` and `name`.
pub fn standard(
    request: Outgoing,
    method: Option<Cow<'static, str>>,
    name: Option<String>,
) -> Outgoing {
    let mut request = request;
    if let Some(method) = method {
        request = request.header("mcp-method", safe(method));
    }
    if let Some(name) = name {
        request = request.header("mcp-name", safe(Cow::Owned(name)));
    }
    request
}

/// A value as a header carries it, by the revision's value encoding: as it
/// is when it is visible ASCII or spaces with none at either end, else
/// `=?base64?…?=` of its UTF-8 — so is a plain value that looks like that
/// wrapping, for the reading to be unambiguous. A line break in a name can
/// then never start a header of its own.
pub fn header_safe(value: &str) -> String {
    safe(Cow::Owned(value.to_owned())).into_owned()
}

/// [`header_safe`] of a value the caller gives up: kept as it is, not
/// copied, when it is plain (a method MCP names stays borrowed).
fn safe(value: Cow<'static, str>) -> Cow<'static, str> {
    // Among visible ASCII and spaces, only a space is white space.
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let wrapped = value.starts_with("=?base64?") && value.ends_with("?=");
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b)) && !padded && !wrapped;
    if plain {
        value
    } else {
        Cow::Owned(format!(
            "=?base64?{}?=",
            crate::base64::encode(value.as_bytes())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_go_as_they_are_and_others_wrapped() {
        assert_eq!(header_safe("my-hyphenated-tool"), "my-hyphenated-tool");
        assert_eq!(
            header_safe("file:///path/to/file%20name.txt"),
            "file:///path/to/file%20name.txt"
        );
        assert_eq!(header_safe("a b"), "a b");
        assert_eq!(header_safe("héllo"), "=?base64?aMOpbGxv?=");
        assert_eq!(header_safe(" padded"), "=?base64?IHBhZGRlZA==?=");
        assert_eq!(
            header_safe("x\r\nset-cookie: 1"),
            "=?base64?eA0Kc2V0LWNvb2tpZTogMQ==?="
        );
        assert_eq!(header_safe("tab\there"), "=?base64?dGFiCWhlcmU=?=");
        // The spec's own example: a plain value that looks wrapped.
        assert_eq!(
            header_safe("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }
}
