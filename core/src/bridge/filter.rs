//! Which of a server's tools its clients may see and call: an allow list
//! and an exclude list of names or globs (`*` any run of characters, `?`
//! one), per server. Applied where every path and transport meets, the
//! multiplexer: a filtered tool is absent from `tools/list` and a call to
//! it is answered as an unknown tool, never reaching the server — so a
//! filesystem server can be exposed read-only.

/// A server's tool filter; the default lets every tool through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    /// When not empty, only the tools matching one of these.
    pub allow: Vec<String>,
    /// Never the tools matching one of these.
    pub exclude: Vec<String>,
}

impl ToolFilter {
    /// Whether it lets every tool through (and need not be applied).
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.exclude.is_empty()
    }

    pub fn allows(&self, tool: &str) -> bool {
        let matches = |globs: &[String]| globs.iter().any(|glob| matches(glob, tool));
        (self.allow.is_empty() || matches(&self.allow)) && !matches(&self.exclude)
    }

    /// Leaves out of a `tools/list` result the tools it does not allow.
    pub fn apply_to_listing(&self, result: &mut serde_json::Value) {
        if let Some(tools) = result
            .get_mut("tools")
            .and_then(serde_json::Value::as_array_mut)
        {
            tools.retain(|tool| self.allows(tool["name"].as_str().unwrap_or_default()));
        }
    }
}

/// Whether `name` matches `glob` whole: `*` is any run of characters
/// (none included), `?` exactly one, anything else itself.
fn matches(glob: &str, name: &str) -> bool {
    let (glob, name): (Vec<char>, Vec<char>) = (glob.chars().collect(), name.chars().collect());
    // The classic two-pointer walk, backtracking to the last `*` only:
    // linear in practice, never exponential.
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match glob.get(g) {
            Some('*') => {
                star = Some((g, n));
                g += 1;
            }
            Some(&c) if c == '?' || name.get(n) == Some(&c) => {
                g += 1;
                n += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    g = sg + 1;
                    n = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    glob.get(g..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        for (glob, name, expected) in [
            ("read_*", "read_file", true),
            ("read_*", "read_", true),
            ("read_*", "write_file", false),
            ("*_file", "read_file", true),
            ("search", "search", true),
            ("search", "search_files", false),
            ("?et", "get", true),
            ("?et", "et", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ] {
            assert_eq!(matches(glob, name), expected, "{glob} ~ {name}");
        }
    }

    #[test]
    fn the_allow_list_then_the_exclusions() {
        let read_only = ToolFilter {
            allow: vec!["read_*".into(), "list_*".into(), "search_files".into()],
            exclude: vec!["read_media_*".into()],
        };
        assert!(read_only.allows("read_text_file") && read_only.allows("search_files"));
        assert!(!read_only.allows("write_file") && !read_only.allows("read_media_file"));
        let no_writes = ToolFilter {
            allow: vec![],
            exclude: vec!["write_*".into(), "edit_file".into()],
        };
        assert!(no_writes.allows("read_file") && !no_writes.allows("edit_file"));
        assert!(ToolFilter::default().is_open() && ToolFilter::default().allows("anything"));
    }
}
