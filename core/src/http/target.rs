//! The request target in one canonical spelling, before anything routes on
//! it or decides who may call it.
//!
//! A router that matches `/integrations` exactly and a handler that trims
//! slashes disagree about `//integrations`; an access check written against
//! one spelling is bypassed by another. So every request's path is made
//! canonical once, here, and everything after sees only that form:
//!
//! - an absolute-form target (`http://host/path`) becomes origin-form, its
//!   authority moved to `Host` (RFC 9112 §3.2.2);
//! - empty segments (`//`) and `.` segments are dropped, `..` removes the
//!   segment before it (RFC 3986 §5.2.4), a trailing `/` is dropped;
//! - percent-encoded unreserved characters are decoded (`%61` is `a`, RFC
//!   3986 §6.2.2.2), other escapes are kept with upper-case hex.
//!
//! What cannot be made canonical without guessing is refused with 400: a
//! `..` above the root, an encoded `/` or `\` (a segment boundary to one
//! reader and not to another), an encoded control character, a raw `\`,
//! and a broken escape. Routes stay case-sensitive: `/INTEGRATIONS` is
//! simply no route. The query string is left as it is.

/// Why a target cannot be made canonical; the request reader answers it
/// as a malformed request (400).
pub(super) type Refusal = &'static str;

/// Rewrites `target` to its canonical origin-form, naming the host an
/// absolute-form target carried (for the `Host` header). `*` is kept for
/// `OPTIONS`; any other form is malformed.
pub(super) fn canonical(method: &str, target: &str) -> Result<(String, Option<String>), Refusal> {
    if target == "*" {
        return match method {
            "OPTIONS" => Ok((target.to_owned(), None)),
            _ => Err("'*' is a target only for OPTIONS"),
        };
    }
    let (authority, origin) = match target.starts_with('/') {
        true => (None, target),
        false => {
            let (authority, origin) = split_absolute(target).ok_or("invalid request target")?;
            (Some(authority.to_owned()), origin)
        }
    };
    let (path, query) = match origin.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (origin, None),
    };
    let mut canonical = canonical_path(path)?;
    if let Some(query) = query {
        canonical.push('?');
        canonical.push_str(query);
    }
    Ok((canonical, authority))
}

/// How long the path before `target`'s query is: a short scan, so no
/// searcher is set up for it.
pub(super) fn path_len(target: &str) -> usize {
    target
        .bytes()
        .position(|b| b == b'?')
        .unwrap_or(target.len())
}

/// Whether `path` (origin-form, no query) is spelled canonically, as
/// nearly every request's is: then it is kept as it is, nothing rebuilt.
/// Anything with an escape, a backslash, an empty, `.` or `..` segment or
/// a trailing `/` (the root aside) goes the long way.
///
/// One pass over the bytes, as every request's path is asked this: no
/// searcher, no chained iterator (either cost more than the pass).
pub(super) fn is_canonical_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    // The current segment's length, and how many of its bytes are dots:
    // a segment all dots and at most two long is empty, `.` or `..`.
    let (mut len, mut dots) = (0usize, 0usize);
    for &b in rest.as_bytes() {
        match b {
            b'%' | b'\\' => return false,
            b'/' if dots == len && len <= 2 => return false,
            b'/' => (len, dots) = (0, 0),
            b'.' => (len, dots) = (len + 1, dots + 1),
            _ => len += 1,
        }
    }
    !(dots == len && len <= 2)
}

/// `path` (origin-form, no query) in its canonical spelling.
fn canonical_path(path: &str) -> Result<String, Refusal> {
    if path.contains('\\') {
        return Err("a backslash in the request path");
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let segment = decode_unreserved(raw)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err("the request path climbs above the root");
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut canonical = String::with_capacity(path.len());
    for segment in &segments {
        canonical.push('/');
        canonical.push_str(segment);
    }
    if canonical.is_empty() {
        canonical.push('/');
    }
    Ok(canonical)
}

/// One segment with its unreserved characters decoded and every other
/// escape kept, its hex in upper case.
fn decode_unreserved(segment: &str) -> Result<String, Refusal> {
    const BAD_ESCAPE: Refusal = "a broken %-escape in the request path";
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(segment.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            // `segment` is a `str`, so a multi-byte character is copied
            // whole, byte by byte, and stays valid.
            let end = next_boundary(segment, i);
            out.push_str(segment.get(i..end).unwrap_or_default());
            i = end;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(BAD_ESCAPE)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(BAD_ESCAPE)?;
        match value {
            b'/' | b'\\' => return Err("an encoded slash or backslash in the request path"),
            0..=0x1f | 0x7f => return Err("an encoded control character in the request path"),
            v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                out.push(char::from(v));
            }
            v => {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
        }
        i += 3;
    }
    Ok(out)
}

/// The index after the character that starts at `i`.
fn next_boundary(s: &str, i: usize) -> usize {
    (i + 1..=s.len())
        .find(|&j| s.is_char_boundary(j))
        .unwrap_or(s.len())
}

/// `http://authority[/path][?query]` split into the authority and the
/// origin-form rest (`/` when the path is empty); `None` for other schemes,
/// an empty authority or one with user info.
fn split_absolute(target: &str) -> Option<(&str, &str)> {
    let rest = strip_scheme(target, "http://").or_else(|| strip_scheme(target, "https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') || tail.starts_with('#') {
        return None;
    }
    // An empty path is `/` (a lone `?query` keeps its query).
    Some((authority, if tail.is_empty() { "/" } else { tail }))
}

/// `target` without its scheme prefix, compared case-insensitively.
fn strip_scheme<'a>(target: &'a str, scheme: &str) -> Option<&'a str> {
    let head = target.get(..scheme.len())?;
    match head.eq_ignore_ascii_case(scheme) {
        true => target.get(scheme.len()..),
        false => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::HttpError;

    /// The short way's test as the request reader asks it.
    fn is_canonical(target: &str) -> bool {
        is_canonical_path(target.get(..path_len(target)).unwrap_or_default())
    }

    fn path(target: &str) -> Result<String, Refusal> {
        canonical("GET", target).map(|(t, _)| t)
    }

    #[test]
    fn every_spelling_of_a_path_is_one_path() {
        for spelling in [
            "/integrations",
            "//integrations",
            "///integrations",
            "/./integrations",
            "/integrations/",
            "/integrations//",
            "/x/../integrations",
            "/%69ntegrations",
            "/%69%6E%74egrations",
            "/./x/./../integrations/.",
        ] {
            assert_eq!(path(spelling).as_deref(), Ok("/integrations"), "{spelling}");
        }
        assert_eq!(path("/").as_deref(), Ok("/"));
        assert_eq!(path("//").as_deref(), Ok("/"));
        assert_eq!(path("/a/..").as_deref(), Ok("/"));
    }

    #[test]
    fn the_query_is_kept_as_it_is() {
        assert_eq!(
            path("//mcp/x/messages/?session_id=a//b%2F").as_deref(),
            Ok("/mcp/x/messages?session_id=a//b%2F")
        );
    }

    #[test]
    fn other_escapes_are_kept_in_upper_case() {
        assert_eq!(path("/v1/models/a%3ab").as_deref(), Ok("/v1/models/a%3Ab"));
        assert_eq!(
            path("/v1/models/caf%c3%a9").as_deref(),
            Ok("/v1/models/caf%C3%A9")
        );
        assert_eq!(path("/v1/models/café").as_deref(), Ok("/v1/models/café"));
    }

    #[test]
    fn what_cannot_be_made_canonical_is_400() {
        for target in [
            "/..",
            "/../integrations",
            "/a/../../integrations",
            "/%2e%2e/integrations",
            "/integrations%2Fx",
            "/mcp%2feverything",
            "/a%5Cb",
            "/a\\b",
            "/a%00",
            "/a%0a",
            "/a%7f",
            "/a%",
            "/a%2",
            "/a%zz",
            "/a%+1",
        ] {
            let status = path(target).map_err(|e| HttpError::Malformed(e).status());
            assert_eq!(status, Err(400), "{target}");
        }
    }

    #[test]
    fn absolute_form_names_its_host() {
        assert_eq!(
            canonical("GET", "http://127.0.0.1:8788//health/"),
            Ok(("/health".to_owned(), Some("127.0.0.1:8788".to_owned())))
        );
        assert_eq!(
            canonical("GET", "HTTP://localhost?x=1"),
            Ok(("/?x=1".to_owned(), Some("localhost".to_owned())))
        );
        assert!(canonical("GET", "ftp://localhost/").is_err());
        assert!(canonical("GET", "http://user@localhost/").is_err());
        assert!(canonical("GET", "*").is_err());
        assert_eq!(canonical("OPTIONS", "*"), Ok(("*".to_owned(), None)));
    }

    proptest::proptest! {
        /// Canonical is a fixed point: normalising again changes nothing,
        /// so a second reader (a handler trimming slashes) cannot see
        /// another path than the router did.
        #[test]
        fn canonical_is_a_fixed_point(target in "/[a-z./%0-9A-F\\\\]{0,24}") {
            if let Ok(once) = path(&target) {
                proptest::prop_assert_eq!(canonical_path(&once), Ok(once.clone()));
                proptest::prop_assert!(!once.contains("//"));
                proptest::prop_assert!(once == "/" || !once.ends_with('/'));
                let has_dot_segment = once.split('/').any(|s| s == "." || s == "..");
                proptest::prop_assert!(!has_dot_segment);
            }
        }

        /// The short way (a path already canonical kept as it is) agrees
        /// with the long way wherever it is taken.
        #[test]
        fn a_target_kept_as_it_is_is_the_canonical_one(target in "/[a-z./%0-9A-F\\\\?]{0,24}") {
            if is_canonical(&target) {
                proptest::prop_assert_eq!(path(&target), Ok(target.clone()));
            }
        }

        /// And it is taken for every path without an escape that the long
        /// way keeps as it is.
        #[test]
        fn every_canonical_path_without_escapes_takes_the_short_way(target in "/[a-z./0-9A-F\\\\]{0,24}") {
            let kept = path(&target).as_ref() == Ok(&target);
            proptest::prop_assert_eq!(is_canonical(&target), kept);
        }
    }
}
