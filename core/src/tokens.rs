//! Token estimates for text whose real count the agent has not reported.

/// About four characters per token, rounded up.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
