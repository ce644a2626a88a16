//! Token estimates for text whose real count the agent has not reported.

/// About four characters per token, rounded up.
pub fn estimate_tokens(text: &str) -> u64 {
    tokens_for_chars(text.chars().count() as u64)
}

/// The estimate for text of `chars` characters.
pub fn tokens_for_chars(chars: u64) -> u64 {
    chars.div_ceil(4)
}
