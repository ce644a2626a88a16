//! Text cut to a bound, for what a peer sends and a page or log shows.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_cut_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("aé", 2), "a…");
    }
}
