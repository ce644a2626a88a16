//! An authorization server's answer to a post (registration, token): JSON
//! or an error, and nothing else. A login page, a proxy's HTML error or a
//! redirect in place of JSON is refused with what it was, so a wrong
//! endpoint is named rather than parsed.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::OAuthError;
use crate::http::ResponseHead;

/// The most of an error body quoted.
const QUOTED: usize = 200;

/// `body` as `T`, if `head` says it succeeded and the body is JSON;
/// otherwise why not (`what`: which endpoint, for the error).
pub fn json<T: DeserializeOwned>(
    head: &ResponseHead,
    body: &[u8],
    what: &str,
) -> Result<T, OAuthError> {
    let status = head.status;
    if (300..400).contains(&status) {
        return Err(OAuthError::Refused(format!(
            "{what} answered with a redirect (HTTP {status}{}): refused",
            head.header("location")
                .map(|l| format!(" to {}", crate::text::bounded(l, QUOTED)))
                .unwrap_or_default()
        )));
    }
    let text = String::from_utf8_lossy(body);
    let media = head.media_type();
    let html = media.contains("html") || text.trim_start().starts_with('<');
    if html {
        return Err(OAuthError::Refused(format!(
            "{what} answered HTTP {status} with an HTML page ({}), not JSON: is the endpoint right?",
            if media.is_empty() { "no content type" } else { &media }
        )));
    }
    let value: Option<Value> = serde_json::from_slice(body).ok();
    if !(200..300).contains(&status) {
        return Err(refusal(status, value.as_ref(), &text, what));
    }
    let value = value.ok_or_else(|| {
        OAuthError::Refused(format!(
            "{what} answered with something that is not JSON: {}",
            crate::text::bounded(text.trim(), QUOTED)
        ))
    })?;
    serde_json::from_value(value).map_err(|e| {
        OAuthError::Refused(format!(
            "{what} answered JSON without what it must hold: {e}"
        ))
    })
}

/// An error answer: its OAuth `error` and `error_description` when it has
/// them (RFC 6749 §5.2), else its status and text.
fn refusal(status: u16, value: Option<&Value>, text: &str, what: &str) -> OAuthError {
    let field = |name: &str| {
        value
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(|s| crate::text::bounded(s, QUOTED))
    };
    match (field("error"), field("error_description")) {
        (Some(error), Some(description)) => {
            OAuthError::Denied(format!("{what} refused: {error} ({description})"))
        }
        (Some(error), None) => OAuthError::Denied(format!("{what} refused: {error}")),
        _ => OAuthError::Unavailable(format!(
            "{what} answered HTTP {status} {}{}",
            crate::http::reason(status),
            match text.trim() {
                "" => String::new(),
                text => format!(": {}", crate::text::bounded(text, QUOTED)),
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Headers;

    fn head(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
        let mut headers = Headers::with_capacity(fields.len(), 64);
        for (name, value) in fields {
            headers.push(name, value);
        }
        ResponseHead { status, headers }
    }

    #[test]
    fn json_is_read_and_everything_else_named() {
        let ok: Value = json(&head(200, &[]), br#"{"a":1}"#, "the token endpoint").unwrap();
        assert_eq!(ok["a"], 1);
        let cases: [(ResponseHead, &[u8], &str); 5] = [
            (
                head(200, &[("content-type", "text/html; charset=utf-8")]),
                b"<html>log in</html>",
                "HTML page (text/html)",
            ),
            (
                head(200, &[]),
                b"access_token=x&token_type=bearer",
                "not JSON",
            ),
            (
                head(302, &[("location", "http://10.0.0.1/")]),
                b"",
                "redirect (HTTP 302 to http://10.0.0.1/)",
            ),
            (
                head(400, &[]),
                br#"{"error":"invalid_grant","error_description":"expired"}"#,
                "refused: invalid_grant (expired)",
            ),
            (
                head(503, &[]),
                b"down",
                "HTTP 503 Service Unavailable: down",
            ),
        ];
        for (head, body, says) in cases {
            let error = json::<Value>(&head, body, "the token endpoint").unwrap_err();
            assert!(error.to_string().contains(says), "{error}");
        }
    }
}
