//! A `WWW-Authenticate` header's `Bearer` challenge (RFC 6750 §3, RFC 9728
//! §5.1): where the server's protected-resource metadata is, which scope
//! it wants, and why it refused. Other schemes in the same header (`Basic`,
//! `DPoP`) are read past, not taken.

use std::collections::HashSet;

/// What a `Bearer` challenge says; every field as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// Where the protected-resource metadata is (RFC 9728).
    pub resource_metadata: Option<String>,
    /// The scopes the request needs, space-separated.
    pub scope: Option<String>,
    /// `invalid_token`, `insufficient_scope`…
    pub error: Option<String>,
}

impl Challenge {
    /// The `Bearer` challenge of a `WWW-Authenticate` value (empty when it
    /// has none).
    pub fn parse(header: &str) -> Challenge {
        let mut challenge = Challenge::default();
        let mut bearer = false;
        let mut rest = header;
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            let (token, after) = split_token(rest);
            if token.is_empty() {
                // Not a token: skip a character so a stray one cannot stop
                // the rest being read.
                let mut chars = rest.chars();
                if chars.next().is_none() {
                    return challenge;
                }
                rest = chars.as_str();
                continue;
            }
            let after_spaces = after.trim_start_matches([' ', '\t']);
            match after_spaces.strip_prefix('=') {
                Some(value) => {
                    let (value, after) = split_value(value.trim_start_matches([' ', '\t']));
                    if bearer {
                        let slot = match token.to_ascii_lowercase().as_str() {
                            "resource_metadata" => Some(&mut challenge.resource_metadata),
                            "scope" => Some(&mut challenge.scope),
                            "error" => Some(&mut challenge.error),
                            _ => None,
                        };
                        if let Some(slot) = slot.filter(|slot| slot.is_none()) {
                            *slot = Some(value);
                        }
                    }
                    rest = after;
                }
                None => {
                    bearer = token.eq_ignore_ascii_case("bearer");
                    rest = after;
                }
            }
        }
    }

    /// The scopes asked for, one each.
    pub fn scopes(&self) -> Vec<String> {
        split_scopes(self.scope.as_deref().unwrap_or_default())
    }
}

/// The most scopes kept of any list: servers name a handful, and a list
/// of thousands (a token response may be a megabyte) is not worth asking
/// for, nor comparing pair by pair.
pub const MAX_SCOPES: usize = 256;

/// A space-separated scope list, one each, without repeats (the first
/// [`MAX_SCOPES`]).
pub fn split_scopes(text: &str) -> Vec<String> {
    let mut scopes = Vec::new();
    add_scopes(
        &mut scopes,
        text.split_ascii_whitespace().map(str::to_owned),
    );
    scopes
}

/// `more` added to `scopes`, those already there skipped, up to
/// [`MAX_SCOPES`] in all.
pub fn add_scopes(scopes: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    let mut seen: HashSet<String> = scopes.iter().cloned().collect();
    for scope in more {
        if scopes.len() >= MAX_SCOPES {
            break;
        }
        if seen.insert(scope.clone()) {
            scopes.push(scope);
        }
    }
}

/// An RFC 9110 token at the start of `text`, and what follows it.
fn split_token(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// A parameter's value (a quoted string, unescaped, or a token), and what
/// follows it.
fn split_value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
        let (value, rest) = text.split_at(end);
        return (value.to_owned(), rest);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return (value, quoted.get(at + 1..).unwrap_or_default()),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    // No closing quote: the value runs to the end.
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_kept_once_each_and_at_most_max_scopes() {
        assert_eq!(split_scopes(" a b  a c b "), ["a", "b", "c"]);
        // A megabyte of them is read in one pass, not pair by pair.
        let many: String = (0..100_000).map(|n| format!("s{n} ")).collect();
        let kept = split_scopes(&many);
        assert_eq!(kept.len(), MAX_SCOPES);
        assert_eq!(kept.last().map(String::as_str), Some("s255"));
        let mut scopes = vec!["a".to_owned()];
        add_scopes(&mut scopes, ["b", "a", "c"].map(String::from));
        assert_eq!(scopes, ["a", "b", "c"]);
    }

    #[test]
    fn a_bearer_challenge_is_read() {
        let challenge = Challenge::parse(
            r#"Bearer realm="mcp", error="insufficient_scope", scope="mcp:read mcp:write", resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp""#,
        );
        assert_eq!(challenge.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(challenge.scopes(), vec!["mcp:read", "mcp:write"]);
        assert_eq!(
            challenge.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
    }

    #[test]
    fn other_schemes_and_odd_spacing_are_read_past() {
        let challenge = Challenge::parse(
            r#"Basic realm="x", scope="not-this", DPoP algs="ES256", bearer   scope = mcp:basic ,error="a \"quoted\" one""#,
        );
        assert_eq!(challenge.scope.as_deref(), Some("mcp:basic"));
        assert_eq!(challenge.error.as_deref(), Some(r#"a "quoted" one"#));
        assert_eq!(challenge.resource_metadata, None);
    }

    #[test]
    fn nonsense_is_an_empty_challenge() {
        for text in [
            "",
            "Bearer",
            "Basic realm=\"x\"",
            "Bearer scope=\"open",
            "=,=,\"",
            "Bearer ☃=1",
        ] {
            let challenge = Challenge::parse(text);
            assert!(challenge.resource_metadata.is_none(), "{text}");
        }
        assert_eq!(
            Challenge::parse("Bearer scope=\"open").scope.as_deref(),
            Some("open")
        );
    }

    #[test]
    fn scopes_come_once_each() {
        assert_eq!(split_scopes(" a  b a\tc "), vec!["a", "b", "c"]);
    }
}
