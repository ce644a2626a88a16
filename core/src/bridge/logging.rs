//! Log messages for clients of the stateless revision: there is no
//! `logging/setLevel` and no session to carry them, so a request asks for
//! the server's log messages with its own answer by naming the least
//! severe level it wants in its `_meta` (`io.modelcontextprotocol/logLevel`);
//! one that names none hears none.

use serde_json::Value;

/// Where a request names its level.
pub(crate) const LOG_LEVEL_META: &str = "io.modelcontextprotocol/logLevel";

/// The levels of `notifications/message`, least severe first (RFC 5424's).
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The level a request's `params` asks for, as its rank in [`LEVELS`]:
/// `None` when it asks for none, refused with why when it names no level.
pub(crate) fn asked(params: &Value) -> Result<Option<usize>, String> {
    match &params["_meta"][LOG_LEVEL_META] {
        Value::Null => Ok(None),
        level => rank(level).map(Some).ok_or_else(|| {
            format!(
                "params._meta.{LOG_LEVEL_META} must be one of {}",
                LEVELS.join(", ")
            )
        }),
    }
}

/// Whether a `notifications/message` with `params` is at least as severe
/// as `least` (a message with no level it knows is not).
pub(crate) fn reaches(params: &Value, least: usize) -> bool {
    rank(&params["level"]).is_some_and(|level| level >= least)
}

fn rank(level: &Value) -> Option<usize> {
    let level = level.as_str()?;
    LEVELS.iter().position(|l| *l == level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_names_the_least_severe_level_it_wants_or_none() {
        let asking = |level: Value| asked(&json!({"_meta": {LOG_LEVEL_META: level}}));
        assert_eq!(asked(&json!({"_meta": {}})), Ok(None));
        assert_eq!(asked(&json!({})), Ok(None));
        assert_eq!(asking(json!("warning")), Ok(Some(3)));
        assert!(asking(json!("loud")).unwrap_err().contains("debug, info"));
        assert!(asking(json!(3)).is_err());
        let warning = 3;
        assert!(reaches(&json!({"level": "error", "data": "x"}), warning));
        assert!(reaches(&json!({"level": "warning"}), warning));
        assert!(!reaches(&json!({"level": "info"}), warning));
        assert!(!reaches(&json!({"data": "no level"}), 0));
    }
}
