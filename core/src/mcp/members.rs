//! Finding two members of a JSON object by walking its text: the values
//! of the others are stepped over (strings a word at a time), nothing is
//! decoded or built. For text already checked as JSON; anything it does
//! not expect (an escape in a member's name, a member it looks for given
//! twice, text that is not an object) makes it give up, and the caller
//! reads the text the slow way.

use crate::swar;

/// The text of two members' values, each `None` when absent.
type Found<'a> = (Option<&'a str>, Option<&'a str>);

/// The values of the top-level members `name` and `_meta` of the object
/// `text`; `None` when it gives up.
///
/// Most params have no `_meta` and their `name` first, before arguments
/// that may be a file's worth of text: when the text holds no `_meta` and
/// no `\u` escape (which could spell one), the walk ends at `name`, and
/// what follows is only searched for a second `"name"`. Searching for a
/// few bytes runs many at once; walking the arguments does not.
pub(crate) fn name_and_meta(text: &str) -> Option<Found<'_>> {
    if text.contains("\\u") || text.contains("_meta") {
        return two(text, "name", "_meta");
    }
    match walk(text, "name", "_meta", true)? {
        ((Some(name), _), end) if !text.get(end..)?.contains("\"name\"") => {
            Some((Some(name), None))
        }
        ((Some(_), _), _) => two(text, "name", "_meta"),
        ((None, _), _) => Some((None, None)),
    }
}

/// The text of the values of the top-level members `first` and `second`
/// of the object `text`, each `None` when absent; `None` when it gives up.
pub(crate) fn two<'a>(text: &'a str, first: &str, second: &str) -> Option<Found<'a>> {
    walk(text, first, second, false).map(|(found, _)| found)
}

/// [`two`], and where the walk ended: at the end of `first`'s value when
/// `stop_at_first` (then `second` is not looked for past it), else at the
/// object's end.
fn walk<'a>(
    text: &'a str,
    first: &str,
    second: &str,
    stop_at_first: bool,
) -> Option<(Found<'a>, usize)> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    let mut found = (None, None);
    if bytes.get(at) == Some(&b'}') {
        return Some((found, at + 1));
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let key_start = at + 1;
        let key_end = key_start + swar::json_plain_run(bytes.get(key_start..)?);
        if bytes.get(key_end) != Some(&b'"') {
            // An escape in the name: it could spell either.
            return None;
        }
        let key = text.get(key_start..key_end)?;
        at = skip_space(bytes, key_end + 1);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_space(bytes, at + 1);
        let value_end = skip_value(bytes, value_start)?;
        let value = text.get(value_start..value_end)?;
        let slot = if key == first {
            Some(&mut found.0)
        } else if key == second {
            Some(&mut found.1)
        } else {
            None
        };
        if slot.is_some_and(|slot| slot.replace(value).is_some()) {
            // Given twice: which one counts is the reader's choice.
            return None;
        }
        if stop_at_first && found.0.is_some() {
            return Some((found, value_end));
        }
        at = skip_space(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => return Some((found, at + 1)),
            _ => return None,
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Where the value starting at `at` ends.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = at;
            loop {
                match bytes.get(at)? {
                    b'"' => {
                        at = skip_string(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
        }
        _ => {
            let scalar = bytes.get(at..)?;
            let end = scalar
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(scalar.len());
            Some(at + end)
        }
    }
}

/// Where the string whose opening quote is at `at` ends (past its closing
/// quote).
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut at = at + 1;
    loop {
        at += swar::json_plain_run(bytes.get(at..)?);
        match bytes.get(at)? {
            b'"' => return Some(at + 1),
            // The escaped byte is passed over with it (`\"`, `\\`; the
            // digits of `\u` are plain).
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    fn the_two_members_or_none() {
        let text = r#"{ "arguments" : {"name":"inner","x":[1,"]}",{"_meta":2}]}, "name":"echo" ,"_meta":{"progressToken":"a\"b"} }"#;
        assert_eq!(
            two(text, "name", "_meta"),
            Some((Some(r#""echo""#), Some(r#"{"progressToken":"a\"b"}"#)))
        );
        assert_eq!(two("{}", "name", "_meta"), Some((None, None)));
        assert_eq!(
            two(r#"{"a":-1.5e3,"name":true}"#, "name", "_meta"),
            Some((Some("true"), None))
        );
        // The walk that ends at `name`, and the cases that walk on.
        for (text, found) in [
            (
                r#"{"name":"a","arguments":{"x":"..."}}"#,
                Some((Some(r#""a""#), None)),
            ),
            (
                r#"{"arguments":{"name":"b"},"name":"a"}"#,
                Some((Some(r#""a""#), None)),
            ),
            (
                r#"{"name":"a","arguments":{"name":"b"}}"#,
                Some((Some(r#""a""#), None)),
            ),
            (r#"{"name":"a","x":1,"name":"b"}"#, None),
            (r#"{"arguments":{"name":"b"}}"#, Some((None, None))),
            (
                r#"{"name":"a","_meta":{}}"#,
                Some((Some(r#""a""#), Some("{}"))),
            ),
        ] {
            assert_eq!(name_and_meta(text), found, "{text}");
        }
        for gives_up in [
            r#"{"name":1,"name":2}"#,
            r#"{"n\u0061me":1}"#,
            r#"["name",1]"#,
            "null",
            r#"{"name""#,
        ] {
            assert_eq!(two(gives_up, "name", "_meta"), None, "{gives_up}");
        }
    }

    proptest! {
        /// What it finds is what a JSON reader finds, written compactly
        /// or spread out.
        #[test]
        fn finds_what_a_reader_finds(value in super::super::json_trees::tree(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let read = |found: Option<&str>| found.map(|t| serde_json::from_str::<Value>(t).unwrap());
            // Numbers as the reader reads them back.
            let value: Value = serde_json::from_str(&text).unwrap();
            for found in [two(&text, "name", "_meta"), name_and_meta(&text)] {
                match found {
                    Some((name, meta)) => {
                        prop_assert!(value.is_object(), "{}", text);
                        let (name, meta) = (read(name), read(meta));
                        prop_assert_eq!(name.as_ref(), value.get("name"), "{}", text);
                        prop_assert_eq!(meta.as_ref(), value.get("_meta"), "{}", text);
                    }
                    // Only a name with an escape, or no object, gives up.
                    None => prop_assert!(!value.is_object() || text.contains('\\'), "{}", text),
                }
            }
        }
    }

    #[test]
    fn a_value_at_the_end_of_the_text() {
        assert_eq!(two(r#"{"name":12"#, "name", "_meta"), None);
        assert_eq!(
            two(&json!({"name": 12}).to_string(), "name", "_meta"),
            Some((Some("12"), None))
        );
    }
}
