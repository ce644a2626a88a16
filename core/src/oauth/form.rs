//! `application/x-www-form-urlencoded`: what token and authorization
//! requests carry, and what a redirect's query holds. Percent-encoding
//! leaves only RFC 3986's unreserved characters as they are, so a value
//! never changes meaning on the way.

/// `pairs` as a form body or a query string.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&escape(name));
        out.push('=');
        out.push_str(&escape(value));
    }
    out
}

/// `text` percent-encoded, every byte but the unreserved ones.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The pairs of a query string or form body (`+` is a space; a bad
/// `%` escape is kept as written; a value that is not UTF-8 is lossy).
pub fn decode(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (unescape(name), unescape(value))
        })
        .collect()
}

/// The first value of `name` in decoded pairs.
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|&b| char::from(b).to_digit(16));
        match byte {
            b'+' => out.push(b' '),
            b'%' => match (hex(i + 1), hex(i + 2)) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_encoded_decodes_the_same() {
        let pairs = [
            ("redirect_uri", "http://127.0.0.1:9/callback?x=1&y=2"),
            ("scope", "mcp:read mcp:write"),
            ("odd", "ü+%/ ="),
        ];
        let text = encode(&pairs);
        assert_eq!(
            text.split('&').next(),
            Some("redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback%3Fx%3D1%26y%3D2")
        );
        let back = decode(&text);
        for ((name, value), (n, v)) in pairs.iter().zip(&back) {
            assert_eq!((*name, *value), (n.as_str(), v.as_str()));
        }
    }

    #[test]
    fn a_query_is_read_the_way_browsers_write_it() {
        let pairs = decode("code=a+b&state=%41%4a&bad=%zz&flag&=x&&iss=https%3A%2F%2Fas");
        assert_eq!(get(&pairs, "code"), Some("a b"));
        assert_eq!(get(&pairs, "state"), Some("AJ"));
        assert_eq!(get(&pairs, "bad"), Some("%zz"));
        assert_eq!(get(&pairs, "flag"), Some(""));
        assert_eq!(get(&pairs, "iss"), Some("https://as"));
        assert_eq!(get(&pairs, "missing"), None);
        assert_eq!(
            decode("trailing=%4"),
            vec![("trailing".into(), "%4".into())]
        );
    }
}
