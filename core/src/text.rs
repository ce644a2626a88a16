//! Text from a peer's bytes, and text cut to a bound, for what a peer
//! sends and a page or log shows.

use std::borrow::Cow;

/// `bytes` as text, invalid UTF-8 replaced. Valid text (nearly all a peer
/// sends) is borrowed after one validating pass; the replacing reader is
/// several times slower, so it only reads what needs it.
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The start of `text`, at most `max` bytes cut at a character boundary,
/// with `…` when something was left out.
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `text` borrowed from `known` when it is one of them, else a copy: a
/// name kept and sent again with every message (a method, a version) is
/// nearly always one the product knows.
pub(crate) fn known_or_owned<'k>(
    known: impl IntoIterator<Item = &'k &'static str>,
    text: &str,
) -> Cow<'static, str> {
    match known.into_iter().find(|known| **known == text) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_bytes_are_replaced_valid_text_borrowed() {
        assert!(matches!(lossy("é".as_bytes()), Cow::Borrowed("é")));
        assert_eq!(lossy(b"a\xffb"), "a\u{fffd}b");
    }

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("aé", 2), "a…");
    }
}
