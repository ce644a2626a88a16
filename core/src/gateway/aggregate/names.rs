//! How the aggregate endpoint names what several servers offer: a tool or
//! prompt `t` of server `s` is `s{separator}t` (`files__read`), split
//! again at the first separator. That split gives back exactly `(s, t)`
//! for every server whose name neither holds the separator nor ends in a
//! way that moves its first occurrence ([`Names::fits`]): a server that
//! does not fit is left off the aggregate endpoint, so two servers' names
//! can never meet. And the pages of a listing across servers: a cursor
//! that carries each server's own cursor.

use serde_json::Value;

/// The separator unless configured (`bridge.aggregate_separator`).
pub const DEFAULT_SEPARATOR: &str = "__";

/// MCP's longest tool name.
const MAX_TOOL_NAME: usize = 128;

/// The longest cursor a client may send back: a few servers' own cursors.
const MAX_CURSOR: usize = 64 * 1024;

/// Whether `c` may appear in an MCP tool name: ASCII letters, digits,
/// `_`, `-` and `.`.
fn tool_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Why `separator` cannot join server and tool names, if it cannot: it
/// must itself be allowed in a tool name.
pub fn bad_separator(separator: &str) -> Option<&'static str> {
    let fits = !separator.is_empty() && separator.len() <= 8 && separator.chars().all(tool_char);
    (!fits).then_some("the separator is 1 to 8 of letters, digits, `_`, `-` and `.`")
}

/// The separator and the rules it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    separator: String,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            separator: DEFAULT_SEPARATOR.to_owned(),
        }
    }
}

impl Names {
    /// Names joined with `separator`, checked by [`bad_separator`].
    pub fn new(separator: &str) -> Result<Names, &'static str> {
        match bad_separator(separator) {
            Some(why) => Err(why),
            None => Ok(Names {
                separator: separator.to_owned(),
            }),
        }
    }

    pub fn separator(&self) -> &str {
        &self.separator
    }

    /// Whether server `server`'s entries can be named under it: splitting
    /// `server{separator}x` at the first separator gives `server` back.
    pub fn fits(&self, server: &str) -> bool {
        let joined = format!("{server}{}", self.separator);
        joined.find(&self.separator) == Some(server.len())
    }

    /// Tool `tool` of `server` as the aggregate endpoint lists it; `None`
    /// when the name would break MCP's rules for tool names (too long, or
    /// a character they do not allow).
    pub fn tool(&self, server: &str, tool: &str) -> Option<String> {
        let joined = format!("{server}{}{tool}", self.separator);
        let fine = joined.len() <= MAX_TOOL_NAME && joined.chars().all(tool_char);
        fine.then_some(joined)
    }

    /// Prompt `prompt` of `server` as the aggregate endpoint lists it
    /// (prompt names have no character rules of their own).
    pub fn prompt(&self, server: &str, prompt: &str) -> String {
        format!("{server}{}{prompt}", self.separator)
    }

    /// The server and its own name in a name the aggregate endpoint gave;
    /// `None` without a separator, or with nothing on either side of it.
    pub fn split<'a>(&self, name: &'a str) -> Option<(&'a str, &'a str)> {
        let (server, own) = name.split_once(&self.separator)?;
        (!server.is_empty() && !own.is_empty()).then_some((server, own))
    }
}

/// The cursor of a listing's next page: each server that has more, with
/// its own cursor.
pub fn cursor(rest: &[(String, String)]) -> String {
    let pairs: Vec<[&str; 2]> = rest.iter().map(|(s, c)| [s.as_str(), c.as_str()]).collect();
    crate::base64::encode(serde_json::json!(pairs).to_string().as_bytes())
}

/// The servers and their own cursors a [`cursor`] carries; `None` when it
/// is not one this endpoint gave.
pub fn read_cursor(cursor: &str) -> Option<Vec<(String, String)>> {
    if cursor.len() > MAX_CURSOR {
        return None;
    }
    let bytes = crate::base64::decode(cursor)?;
    let pairs: Vec<Value> = serde_json::from_slice(&bytes).ok()?;
    pairs
        .iter()
        .map(|pair| {
            let server = pair.get(0)?.as_str()?;
            let own = pair.get(1)?.as_str()?;
            Some((server.to_owned(), own.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_name_splits_back_into_its_server_and_own_name() {
        let names = Names::default();
        assert_eq!(
            names.tool("files", "read_file").as_deref(),
            Some("files__read_file")
        );
        assert_eq!(
            names.split("files__read_file"),
            Some(("files", "read_file"))
        );
        // A tool's own name may hold the separator: the first one splits.
        assert_eq!(names.split("files__a__b"), Some(("files", "a__b")));
        for bad in ["files", "__read", "files__", ""] {
            assert_eq!(names.split(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_server_whose_name_would_move_the_split_does_not_fit() {
        let names = Names::default();
        assert!(names.fits("files") && names.fits("my-files.v2") && names.fits("a_b"));
        // `a_` + `__` + `x` = `a___x`, which splits as (`a`, `_x`).
        assert!(!names.fits("a_"));
        assert!(!names.fits("a__b"));
        let dotted = Names::new(".").unwrap();
        assert!(!dotted.fits("v1.2") && dotted.fits("v1-2"));
    }

    #[test]
    fn a_tool_name_that_would_break_mcp_rules_once_prefixed_has_no_name() {
        let names = Names::default();
        let long = "t".repeat(MAX_TOOL_NAME - "files__".len());
        assert!(names.tool("files", &long).is_some());
        assert_eq!(names.tool("files", &format!("{long}x")), None);
        assert_eq!(names.tool("files", "read file"), None);
        assert_eq!(names.tool("files", "lire/é"), None);
        assert_eq!(names.prompt("files", "a prompt"), "files__a prompt");
    }

    #[test]
    fn separators_are_what_a_tool_name_may_hold() {
        assert!(Names::new("__").is_ok() && Names::new("-").is_ok() && Names::new(".").is_ok());
        for bad in ["", "/", " ", "::", "123456789"] {
            assert!(Names::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_cursor_carries_each_servers_own_cursor_and_refuses_anything_else() {
        let rest = vec![
            ("files".to_owned(), "page-2".to_owned()),
            ("git".to_owned(), "{\"odd\":1}".to_owned()),
        ];
        assert_eq!(read_cursor(&cursor(&rest)), Some(rest));
        for bad in ["", "not base64!", "e30=", &"A".repeat(MAX_CURSOR + 4)] {
            assert_eq!(read_cursor(bad), None, "{bad:.20}");
        }
    }
}
