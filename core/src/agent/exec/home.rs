//! A home of a run's own, for a CLI that takes its MCP servers only from
//! its settings file: the run's CLI sees the user's own files (login,
//! sessions, history) through links, and a settings file of its own, the
//! user's settings with the run's merged in.
//!
//! The core says what the home holds ([`OwnHome`]) and how the settings
//! are merged ([`merge_settings`]); the driver makes the directory before
//! the spawn and removes it once the run is gone.

use serde_json::{Map, Value};

/// A run's own home for its CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnHome {
    /// The variable naming the CLI's home: set to the run's home for the
    /// run, and read (else `HOME`) for the user's.
    pub var: &'static str,
    /// The CLI's directory in a home (`.gemini`): in the run's home, a link
    /// to each entry of the user's, but for the settings file.
    pub dir: &'static str,
    /// The settings file's name in `dir`.
    pub settings: &'static str,
    /// Directories in the user's `dir` made if missing before the links
    /// are, so what the run writes there (its session) is the user's.
    pub shared: &'static [&'static str],
    /// The run's settings, merged into the user's (see [`merge_settings`]).
    pub overlay: Value,
    /// Keys of `overlay` that replace the user's value whole instead of
    /// being merged into it.
    pub whole: &'static [&'static str],
}

impl OwnHome {
    /// The run's settings file: the user's (its text, `None` when there is
    /// none) with the overlay merged in.
    pub fn settings_for(&self, user: Option<&str>) -> Value {
        merge_settings(user, &self.overlay, self.whole)
    }
}

/// The user's settings (JSON text, with `//` and `/* */` comments allowed,
/// as the CLIs read it) with `overlay` merged in: objects are merged key by
/// key, at every depth; any other value of the overlay replaces the user's,
/// and so does a top-level one named in `whole`. Settings that are missing,
/// unreadable or not an object count as `{}`.
pub fn merge_settings(user: Option<&str>, overlay: &Value, whole: &[&str]) -> Value {
    let mut base = user
        .and_then(|text| serde_json::from_str::<Value>(&strip_comments(text)).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    if let (Value::Object(base), Value::Object(overlay)) = (&mut base, overlay) {
        for (key, value) in overlay {
            let old = base.entry(key.clone()).or_insert(Value::Null);
            if whole.contains(&key.as_str()) {
                *old = value.clone();
            } else {
                merge(old, value);
            }
        }
    }
    base
}

/// `overlay` merged into `base`, objects key by key.
fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                merge(base.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// `text` without its `//` and `/* */` comments (outside strings), each
/// replaced by a space.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                in_string = true;
                out.push(c);
            }
            ('/', Some('/')) => {
                while chars.next_if(|&n| n != '\n').is_some() {}
                out.push(' ');
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_merge_at_every_depth_and_other_values_are_replaced() {
        let user = r#"{"security": {"auth": {"selectedType": "oauth-personal"}},
            "tools": {"core": ["read_file"], "sandbox": true}, "ui": {"theme": "x"}}"#;
        let overlay = json!({"tools": {"core": ["mcp_editor_*"]}, "general": {"a": 1}});
        let merged = merge_settings(Some(user), &overlay, &[]);
        assert_eq!(
            merged,
            json!({
                "security": {"auth": {"selectedType": "oauth-personal"}},
                "tools": {"core": ["mcp_editor_*"], "sandbox": true},
                "ui": {"theme": "x"},
                "general": {"a": 1},
            })
        );
    }

    #[test]
    fn a_whole_key_replaces_the_user_s_object() {
        let user = r#"{"mcpServers": {"mine": {"command": "x"}, "editor": {"env": {"A": "1"}}}}"#;
        let overlay = json!({"mcpServers": {"editor": {"command": "relay", "trust": true}}});
        let merged = merge_settings(Some(user), &overlay, &["mcpServers"]);
        assert_eq!(merged, overlay);
        let deep = merge_settings(Some(user), &overlay, &[]);
        assert_eq!(deep["mcpServers"]["mine"]["command"], "x");
        assert_eq!(deep["mcpServers"]["editor"]["env"]["A"], "1");
    }

    #[test]
    fn missing_unreadable_or_non_object_settings_count_as_empty() {
        let overlay = json!({"a": {"b": 1}});
        for user in [None, Some(""), Some("{oops"), Some("[1, 2]"), Some("null")] {
            assert_eq!(merge_settings(user, &overlay, &[]), overlay, "{user:?}");
        }
    }

    #[test]
    fn comments_are_allowed_but_not_inside_strings() {
        let user = "{\n  // the key\n  \"a\": \"http://x/*y*/\", /* gone */ \"b\": \"q\\\"//\"\n}";
        let merged = merge_settings(Some(user), &json!({}), &[]);
        assert_eq!(merged, json!({"a": "http://x/*y*/", "b": "q\"//"}));
    }
}
