//! A message's top-level members found in one pass over its text, which
//! checks on the way that the text is JSON as serde_json's reader would.
//!
//! Every request a bridge passes on and every answer it passes back is
//! read for a few members only (its version, id, method, params, result
//! or error): serde_json read them as a struct of raw values for several
//! times what a walk over the bytes costs, and allocated for each nested
//! value it stepped over. The walk takes only messages it is sure of:
//! anything it does not expect (a member's name written with an escape,
//! a member it looks for given twice, nesting deeper than
//! [`MAX_DEPTH`], text that is not one JSON object) makes it give up, and
//! the caller reads the message with serde_json, which also says what is
//! wrong with a bad one. Whatever the walk does take, serde_json takes
//! too and reads the same (the property tests below hold it to that).

use serde_json::Value;

use crate::swar;

/// How deep values may nest before the walk gives up: far below
/// serde_json's own limit (128), so a value the walk passes builds as a
/// tree wherever it is read from.
const MAX_DEPTH: usize = 64;

/// The text of the members of a message the reader looks at, each `None`
/// when absent.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Members<'a> {
    pub jsonrpc: Option<&'a str>,
    pub id: Option<&'a str>,
    pub method: Option<&'a str>,
    pub params: Option<&'a str>,
    pub result: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The params' own `name` and `_meta`, when the params are an object.
    pub params_head: Head<'a>,
}

/// `line`'s members, when it is one JSON object the walk is sure of
/// (see the module's comment); `None` sends the caller to serde_json.
pub(super) fn members(line: &str) -> Option<Members<'_>> {
    let bytes = line.as_bytes();
    let mut found = Members::default();
    let end = object(bytes, space(bytes, 0), 1, &mut |key, start| {
        // A name with an escape could spell any of them.
        let key = key?;
        let slot = match key {
            b"jsonrpc" => &mut found.jsonrpc,
            b"id" => &mut found.id,
            b"method" => &mut found.method,
            b"params" => &mut found.params,
            b"result" => &mut found.result,
            b"error" => &mut found.error,
            _ => return value_end(bytes, start, 1),
        };
        let end = match (key, bytes.get(start)) {
            // The params' own members are looked at in the same pass.
            (b"params", Some(b'{')) => {
                let (end, head) = name_and_meta(line, start)?;
                found.params_head = head;
                end
            }
            _ => value_end(bytes, start, 1)?,
        };
        // Given twice: which one counts is the reader's choice.
        match slot.replace(line.get(start..end)?) {
            None => Some(end),
            Some(_) => None,
        }
    })?;
    (space(bytes, end) == bytes.len()).then_some(found)
}

/// The texts of params' `name` and `_meta`, each `None` when absent;
/// `None` itself when a member's name has an escape or one of them is
/// given twice (the params' own reader then finds them).
type Head<'a> = Option<(Option<&'a str>, Option<&'a str>)>;

/// The [`Head`] of params written as `text`, when they are one object.
pub(super) fn params_head(text: &str) -> Head<'_> {
    let bytes = text.as_bytes();
    let (end, head) = name_and_meta(text, space(bytes, 0))?;
    if space(bytes, end) != bytes.len() {
        return None;
    }
    head
}

/// Where the params object starting at `at` ends, checked, and its
/// [`Head`].
fn name_and_meta(line: &str, at: usize) -> Option<(usize, Head<'_>)> {
    let bytes = line.as_bytes();
    let mut head = Some((None, None));
    let end = object(bytes, at, 2, &mut |key, start| {
        let end = value_end(bytes, start, 2)?;
        let slot = match (key, head.as_mut()) {
            (Some(b"name"), Some(head)) => &mut head.0,
            (Some(b"_meta"), Some(head)) => &mut head.1,
            (Some(_), _) | (None, None) => return Some(end),
            // An escape could spell either.
            (None, Some(_)) => {
                head = None;
                return Some(end);
            }
        };
        if slot.replace(line.get(start..end)?).is_some() {
            head = None;
        }
        Some(end)
    })?;
    Some((end, head))
}

/// A value's JSON text as a tree: plain strings and whole numbers, the
/// ids, methods and tool names of nearly every message, are built here
/// (serde_json's reader costs several times as much); anything else as
/// serde_json reads it.
pub(super) fn value(text: &str) -> Result<Value, serde_json::Error> {
    if let Some(inner) = plain_string(text) {
        return Ok(Value::String(inner.to_owned()));
    }
    match whole_number(text) {
        Some(n) => Ok(Value::from(n)),
        None => serde_json::from_str(text),
    }
}

/// What is between the quotes of a string with nothing escaped.
pub(super) fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    (swar::json_plain_run(inner.as_bytes()) == inner.len()).then_some(inner)
}

/// A number of digits only that fits a `u64`.
pub(super) fn whole_number(text: &str) -> Option<u64> {
    let digits = text.as_bytes();
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // No leading zero but in `0` itself, as JSON writes numbers.
    if digits.len() > 1 && digits.first() == Some(&b'0') {
        return None;
    }
    text.parse().ok()
}

/// A member's name as its bytes, or `None` when it has an escape (the
/// walk does not decode names).
type Key<'a> = Option<&'a [u8]>;

/// Where the object starting at `at` ends, checked. `member` is given
/// each member's name and where its value starts, and walks the value:
/// it answers where the value ends, or `None` to give up the walk.
fn object(
    bytes: &[u8],
    at: usize,
    depth: usize,
    member: &mut impl FnMut(Key<'_>, usize) -> Option<usize>,
) -> Option<usize> {
    if bytes.get(at) != Some(&b'{') || depth > MAX_DEPTH {
        return None;
    }
    let mut at = space(bytes, at + 1);
    if bytes.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let plain = plain_end(bytes, at + 1);
        let (key, name_end) = match bytes.get(plain) {
            Some(b'"') => (Some(bytes.get(at + 1..plain)?), plain + 1),
            _ => (None, string(bytes, at)?),
        };
        at = space(bytes, name_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        at = space(bytes, member(key, space(bytes, at + 1))?);
        match bytes.get(at)? {
            b',' => at = space(bytes, at + 1),
            b'}' => return Some(at + 1),
            _ => return None,
        }
    }
}

/// Where the array starting at `at` ends, checked.
fn array(bytes: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut at = space(bytes, at + 1);
    if bytes.get(at) == Some(&b']') {
        return Some(at + 1);
    }
    loop {
        at = space(bytes, value_end(bytes, at, depth)?);
        match bytes.get(at)? {
            b',' => at = space(bytes, at + 1),
            b']' => return Some(at + 1),
            _ => return None,
        }
    }
}

/// Where the value starting at `at`, inside `depth` containers, ends,
/// checked.
fn value_end(bytes: &[u8], at: usize, depth: usize) -> Option<usize> {
    match *bytes.get(at)? {
        b'"' => string(bytes, at),
        b'{' => object(bytes, at, depth + 1, &mut |_, start| {
            value_end(bytes, start, depth + 1)
        }),
        b'[' => array(bytes, at, depth + 1),
        b't' => literal(bytes, at, b"true"),
        b'f' => literal(bytes, at, b"false"),
        b'n' => literal(bytes, at, b"null"),
        b'-' | b'0'..=b'9' => number(bytes, at),
        _ => None,
    }
}

/// Where the string whose opening quote is at `at` ends (past its
/// closing quote): no control character in it, and only JSON's escapes.
fn string(bytes: &[u8], at: usize) -> Option<usize> {
    let mut at = at + 1;
    loop {
        at = plain_end(bytes, at);
        match *bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => {
                at = match *bytes.get(at + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at + 2,
                    b'u' if bytes.get(at + 2..at + 6)?.iter().all(u8::is_ascii_hexdigit) => at + 6,
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// Where the run of bytes a JSON string holds as they are, from `at`,
/// ends (at a quote, a backslash, a control character or the end): eight
/// bytes at a time, the end read off the word that holds it, so even the
/// short runs of names cost a word's test or two.
fn plain_end(bytes: &[u8], at: usize) -> usize {
    at + swar::json_plain_run(bytes.get(at..).unwrap_or_default())
}

fn literal(bytes: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    let end = at + word.len();
    (bytes.get(at..end)? == word).then_some(end)
}

/// Where the number starting at `at` ends: `-`, an integer part without
/// a leading zero, then a fraction and an exponent, each with digits.
fn number(bytes: &[u8], at: usize) -> Option<usize> {
    let mut at = at + usize::from(bytes.get(at) == Some(&b'-'));
    match bytes.get(at)? {
        b'0' => at += 1,
        b'1'..=b'9' => at = digits(bytes, at),
        _ => return None,
    }
    if bytes.get(at) == Some(&b'.') {
        at = some_digits(bytes, at + 1)?;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        at += usize::from(matches!(bytes.get(at), Some(b'+' | b'-')));
        at = some_digits(bytes, at)?;
    }
    Some(at)
}

fn digits(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    at
}

/// [`digits`], at least one.
fn some_digits(bytes: &[u8], at: usize) -> Option<usize> {
    let end = digits(bytes, at);
    (end > at).then_some(end)
}

fn space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::Message;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    /// The members as serde_json reads them, raw.
    #[derive(Deserialize)]
    struct Read<'a> {
        #[serde(borrow)]
        jsonrpc: Option<&'a RawValue>,
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        method: Option<&'a RawValue>,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
        #[serde(borrow)]
        result: Option<&'a RawValue>,
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }

    /// What serde_json reads of `line`, as the walk reports it (without
    /// the params' head); `None` where it refuses the line.
    fn as_serde_reads<'a>(line: &'a str) -> Option<Members<'a>> {
        if !line
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return None;
        }
        let read: Read = serde_json::from_str(line).ok()?;
        // `Option<&RawValue>` reads `null` as absent: a second read says
        // which members are there as `null`.
        let members: std::collections::HashMap<String, &RawValue> =
            serde_json::from_str(line).ok()?;
        let raw = |r: Option<&'a RawValue>, key: &str| -> Option<&'a str> {
            r.map(RawValue::get).or_else(|| {
                members
                    .get(key)
                    .filter(|v| v.get() == "null")
                    .map(|_| "null")
            })
        };
        Some(Members {
            jsonrpc: raw(read.jsonrpc, "jsonrpc"),
            id: raw(read.id, "id"),
            method: raw(read.method, "method"),
            params: raw(read.params, "params"),
            result: raw(read.result, "result"),
            error: raw(read.error, "error"),
            params_head: None,
        })
    }

    #[test]
    fn a_call_s_members_and_its_params_head() {
        let line = r#" {"jsonrpc":"2.0", "id" : 7,"method":"tools/call","params":{"name":"echo","arguments":{"m":[1,-2.5e3,true,null,"a\"b\u00e9"],"\u0061":{}},"_meta":{"progressToken":"p"}}} "#;
        let found = members(line).unwrap();
        assert_eq!(found.jsonrpc, Some(r#""2.0""#));
        assert_eq!(found.id, Some("7"));
        assert_eq!(found.method, Some(r#""tools/call""#));
        assert!(found.params.unwrap().starts_with(r#"{"name":"echo""#));
        assert_eq!(
            found.params_head,
            Some((Some(r#""echo""#), Some(r#"{"progressToken":"p"}"#)))
        );
        assert_eq!((found.result, found.error), (None, None));
        let answer = members(r#"{"result":{"content":[]},"jsonrpc":"2.0","id":3}"#).unwrap();
        assert_eq!(answer.result, Some(r#"{"content":[]}"#));
        assert_eq!(answer.params_head, None);
    }

    #[test]
    fn it_gives_up_on_what_it_is_not_sure_of() {
        for line in [
            r#"{"id":1,"id":2}"#,
            r#"{"\u0069d":1}"#,
            r#"[{"id":1}]"#,
            r#"{"id":1} x"#,
            r#"{"id":01}"#,
            r#"{"id":1.}"#,
            r#"{"id":1e}"#,
            r#"{"id":-}"#,
            r#"{"id":"a\x"}"#,
            r#"{"id":"a\u12g4"}"#,
            "{\"id\":\"a\tb\"}",
            r#"{"id":[1,]}"#,
            r#"{"id":{"a":1,}}"#,
            r#"{"id":{"a" 1}}"#,
            r#"{"id":tru}"#,
            r#"{"id":1,}"#,
            "",
            "{",
        ] {
            assert_eq!(members(line), None, "{line}");
        }
        let deep = format!(r#"{{"params":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        assert_eq!(members(&deep), None, "deeper than the walk goes");
        let shallow = format!(r#"{{"params":{}{}}}"#, "[".repeat(60), "]".repeat(60));
        assert!(members(&shallow).is_some());
        // A head it is not sure of is left for the params' own reader.
        let twice = members(r#"{"params":{"name":1,"name":2}}"#).unwrap();
        assert_eq!(twice.params_head, None);
    }

    #[test]
    fn plain_values_are_built_as_serde_json_builds_them() {
        for text in [
            r#""echo""#,
            r#""a\"b""#,
            "0",
            "18446744073709551615",
            "18446744073709551616",
            "-3",
            "1.5",
            "007",
            r#""""#,
        ] {
            let quick = value(text).map_err(|e| e.to_string());
            let slow = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
            assert_eq!(quick, slow, "{text}");
        }
    }

    /// JSON-ish text: mostly well-formed messages, with the bytes that
    /// trip readers mixed in.
    fn line() -> impl Strategy<Value = String> {
        let atom = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("fals".to_owned()),
            Just(r#""2.0""#.to_owned()),
            Just(r#""2\u002e0""#.to_owned()),
            Just("1e400".to_owned()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            "0[0-9]",
            "\"([a-z \u{e9}\t]|\\\\[\"\\\\/bfnrtux]|\\\\u[0-9a-fA-F]{4}|\\\\u[0-9g]{3})*\"",
        ];
        atom.prop_recursive(4, 32, 4, |inner| {
            let key = "\"(jsonrpc|id|method|params|result|error|name|_meta|x|\\\\u0069d)\"";
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..4), "[ ,]{0,2}")
                    .prop_map(|(items, sep)| format!("[{}{sep}]", items.join(","))),
                (
                    prop::collection::vec((key, " ?: ?", inner), 0..5),
                    "[ ,]{0,2}"
                )
                    .prop_map(|(members, sep)| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(k, c, v)| format!("{k}{c}{v}"))
                            .collect();
                        format!("{{{}{sep}}}", members.join(","))
                    }),
            ]
        })
    }

    proptest! {
        /// What the walk takes, serde_json takes and reads the same, the
        /// params' head included; what serde_json takes, the walk takes
        /// unless a name has an escape or a member is given twice.
        #[test]
        fn it_reads_what_serde_json_reads(line in prop_oneof![message(), line()], pad in "[ \n]{0,2}") {
            let line = format!("{pad}{line}{pad}");
            let read = as_serde_reads(&line);
            match members(&line) {
                Some(walked) => {
                    let head = walked.params_head;
                    let params = walked.params;
                    prop_assert_eq!(Some(Members { params_head: None, ..walked }), read, "{}", line);
                    // (Params holding a number past `f64`'s range build no tree.)
                    let tree = params.and_then(|p| serde_json::from_str::<Value>(p).ok());
                    if let (Some((name, meta)), Some(tree)) = (head, tree) {
                        let built = |text: Option<&str>| text.map(|t| serde_json::from_str::<Value>(t).unwrap());
                        let (name, meta) = (built(name), built(meta));
                        prop_assert_eq!(name.as_ref(), tree.get("name"), "{}", line);
                        prop_assert_eq!(meta.as_ref(), tree.get("_meta"), "{}", line);
                    }
                }
                None => prop_assert!(
                    read.is_none() || line.contains("\\u0069d") || has_twice(&line),
                    "{}", line
                ),
            }
        }
    }

    /// A JSON tree up to three levels deep.
    fn tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z_\"\\\\\u{e9}\n\u{1}/ ]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("name|_meta|id|[a-z\"\\\\]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Well-formed JSON, written compactly or spread out.
    fn json() -> impl Strategy<Value = String> {
        let tree = tree();
        (tree, any::<bool>()).prop_map(|(tree, pretty)| match pretty {
            true => serde_json::to_string_pretty(&tree).unwrap_or_default(),
            false => tree.to_string(),
        })
    }

    /// Message-shaped lines: each member of a message now and then, its
    /// value most often one it may take, in any order, a name now and then
    /// twice or spelled with an escape.
    fn message() -> impl Strategy<Value = String> {
        let member = |key: &'static str, usual: BoxedStrategy<String>| {
            prop::option::weighted(0.7, prop_oneof![8 => usual, 1 => line()])
                .prop_map(move |value| value.map(|v| format!("\"{key}\":{v}")))
        };
        let version = prop_oneof![
            Just(r#""2.0""#.to_owned()),
            Just(r#""2\u002e0""#.to_owned())
        ];
        let id = prop_oneof![
            "0|[1-9][0-9]{0,20}|-[0-9]{1,3}|[0-9]\\.5",
            "\"[a-z\\\\\"]{0,4}\"",
            Just("null".to_owned()),
        ];
        let method = prop_oneof!["\"[a-z/]{1,12}\"", Just(r#""tools\/call""#.to_owned())];
        let params = prop_oneof![
            (
                r#"("name"|"_meta"|"n\\u0061me"|"x"):"#,
                json(),
                r#"(,"name":"[a-z]{0,3}")?"#
            )
                .prop_map(|(k, v, more)| format!("{{{k}{v}{more}}}")),
            json(),
        ];
        (
            member("jsonrpc", version.boxed()),
            member("id", id.boxed()),
            member("method", method.boxed()),
            member("params", params.boxed()),
            member("result", json().boxed()),
            member("error", json().boxed()),
            member("x", json().boxed()),
        )
            .prop_flat_map(|(a, b, c, d, e, f, g)| {
                let members: Vec<String> = [a, b, c, d, e, f, g].into_iter().flatten().collect();
                Just(members).prop_shuffle()
            })
            .prop_map(|members| format!("{{{}}}", members.join(",")))
    }

    proptest! {
        /// A message read by the walk is the message serde_json reads,
        /// or the same error for it; an answer the same answer.
        #[test]
        fn messages_read_by_the_walk_are_serde_json_s(line in prop_oneof![message(), line()]) {
            if let Some(members) = members(&line) {
                let walked = super::super::Fields::walked(members.clone())
                    .map(|fields| super::super::message(&line, fields));
                if let Some(walked) = walked {
                    // The params' name and _meta, read as the walk found
                    // them, are what their tree holds.
                    if let Ok((Message::Request { params, .. } | Message::Notification { params, .. }, _)) = &walked {
                        let null = Value::Null;
                        prop_assert_eq!(params.name(), params.get("name").unwrap_or(&null), "{}", line);
                        prop_assert_eq!(params.meta(), params.get("_meta").unwrap_or(&null), "{}", line);
                    }
                    prop_assert_eq!(walked, super::super::read_placed(&line), "{}", line);
                }
                let walked = super::super::walked_answer(members).map(|a| (a.id, a.outcome));
                let read = super::super::read_answer(&line).map(|a| (a.id, a.outcome));
                prop_assert_eq!(walked, read, "{}", line);
            }
        }
    }

    /// Whether a member the walk looks for may be given twice at the top
    /// of `line` (its name appears twice anywhere).
    fn has_twice(line: &str) -> bool {
        ["jsonrpc", "id", "method", "params", "result", "error"]
            .iter()
            .any(|key| line.matches(&format!("\"{key}\"")).count() > 1)
    }
}
