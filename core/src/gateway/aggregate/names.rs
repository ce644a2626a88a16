//! How the aggregate endpoint names what several servers offer: a tool or
//! prompt `t` of server `s` is `p{separator}t` (`files__read`), where `p`
//! is the server's prefix, its name unless configured
//! (`ServerSpec::prefix`). That split gives back exactly `(p, t)` for
//! every prefix that neither holds the separator nor ends in a way that
//! moves its first occurrence ([`Names::fits`]): a server whose prefix
//! does not fit is left off the aggregate endpoint, so two servers' names
//! can never meet.
//!
//! Two rules keep names within what clients take (Claude refuses tool
//! names over 64 characters, Cursor over 60):
//!
//! - an **empty** prefix lists a server's names bare (`t`); when one of
//!   them meets another server's name, the later of the two servers in
//!   the configuration with an empty prefix gets its name back as its
//!   prefix ([`Names::assign`]), and stays so;
//! - a name longer than [`Names::max_len`] is shortened: a readable head,
//!   `-`, and 8 hex digits of the SHA-256 of the whole name
//!   ([`Names::shorten`]), the same at every listing and restart.
//!
//! A name given back in a call is found in the [`Directory`] of the names
//! listed, which maps each exactly back to its server and own name. And
//! the pages of a listing across servers: a cursor that carries each
//! server's own cursor.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The separator unless configured (`bridge.aggregate_separator`).
pub const DEFAULT_SEPARATOR: &str = "__";

/// The longest name unless configured (`bridge.max_name_len`): Claude's
/// limit for tool names.
pub const DEFAULT_MAX_LEN: usize = 64;

/// The shortest `max_name_len` taken: a head of a few characters before
/// the hash.
pub const MIN_MAX_LEN: usize = 16;

/// MCP's longest tool name.
const MAX_TOOL_NAME: usize = 128;

/// Hex digits of the hash a shortened name ends with.
const HASH_DIGITS: usize = 8;

/// The longest cursor a client may send back: a few servers' own cursors.
const MAX_CURSOR: usize = 64 * 1024;

/// Names remembered of one server's listings, of each kind: past this
/// its oldest go (a call of one forgotten is found by listing again).
pub const MAX_NAMES: usize = 10_000;

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

/// Why `max_len` cannot be the longest name, if it cannot.
pub fn bad_max_len(max_len: usize) -> Option<&'static str> {
    let fits = (MIN_MAX_LEN..=MAX_TOOL_NAME).contains(&max_len);
    (!fits).then_some("the longest name is 16 to 128 characters")
}

/// Why `prefix` cannot be a server's prefix, if it cannot: empty (names
/// listed bare), or what a tool name may hold.
pub fn bad_prefix(prefix: &str) -> Option<&'static str> {
    let fits = prefix.chars().all(tool_char);
    (!fits).then_some("a prefix is empty or letters, digits, `_`, `-` and `.`")
}

/// Which list a name is of: tools and prompts are named apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Tool,
    Prompt,
}

impl Kind {
    /// The kind of a listing's `key` (`tools`, `prompts`), if it is named.
    pub fn of_key(key: &str) -> Option<Kind> {
        match key {
            "tools" => Some(Kind::Tool),
            "prompts" => Some(Kind::Prompt),
            _ => None,
        }
    }
}

/// A server on the aggregate endpoint, as [`Names::assign`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// Its configured prefix (empty: bare).
    pub prefix: String,
}

/// The separator, the longest name, and the rules they make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    separator: String,
    max_len: usize,
}

impl Default for Names {
    fn default() -> Self {
        Names {
            separator: DEFAULT_SEPARATOR.to_owned(),
            max_len: DEFAULT_MAX_LEN,
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
                ..Names::default()
            }),
        }
    }

    /// These names, none longer than `max_len` (checked by
    /// [`bad_max_len`]).
    pub fn with_max_len(self, max_len: usize) -> Result<Names, &'static str> {
        match bad_max_len(max_len) {
            Some(why) => Err(why),
            None => Ok(Names { max_len, ..self }),
        }
    }

    pub fn separator(&self) -> &str {
        &self.separator
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether `prefix` can name a server's entries: splitting
    /// `prefix{separator}x` at the first separator gives `prefix` back.
    pub fn fits(&self, prefix: &str) -> bool {
        let joined = format!("{prefix}{}", self.separator);
        joined.find(&self.separator) == Some(prefix.len())
    }

    /// `own` under `prefix` (bare when it is empty), shortened when too
    /// long; `None` for a tool whose name would break MCP's rules for tool
    /// names (a character they do not allow).
    pub fn name(&self, kind: Kind, prefix: &str, own: &str) -> Option<String> {
        let joined = match prefix.is_empty() {
            true => own.to_owned(),
            false => format!("{prefix}{}{own}", self.separator),
        };
        if own.is_empty() || (kind == Kind::Tool && !joined.chars().all(tool_char)) {
            return None;
        }
        Some(self.shorten(joined))
    }

    /// `name` when it is no longer than [`Names::max_len`]; else its head
    /// and a hash of it all, as long as that.
    pub fn shorten(&self, name: String) -> String {
        if name.len() <= self.max_len {
            return name;
        }
        let hash = Sha256::digest(name.as_bytes());
        let hex: String = hash
            .iter()
            .take(HASH_DIGITS / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut head = self.max_len.saturating_sub(HASH_DIGITS + 1);
        while !name.is_char_boundary(head) {
            head -= 1;
        }
        format!("{}-{hex}", &name[..head])
    }

    /// Whether `name` may be one [`Names::shorten`] made.
    pub fn looks_shortened(&self, name: &str) -> bool {
        let Some(at) = name.len().checked_sub(HASH_DIGITS + 1) else {
            return false;
        };
        let tail = name.get(at..).unwrap_or_default();
        tail.starts_with('-') && tail.chars().skip(1).all(|c| c.is_ascii_hexdigit())
    }

    /// The prefix and the rest of a name the aggregate endpoint gave;
    /// `None` without a separator, or with nothing on either side of it.
    pub fn split<'a>(&self, name: &'a str) -> Option<(&'a str, &'a str)> {
        let (server, own) = name.split_once(&self.separator)?;
        (!server.is_empty() && !own.is_empty()).then_some((server, own))
    }

    /// The prefix server `servers[at]` is named under now: its configured
    /// one, or its name when that is empty and it met another's name.
    fn prefix_of<'a>(servers: &'a [Server], at: usize, unbared: &BTreeSet<String>) -> &'a str {
        match servers.get(at) {
            Some(s) if s.prefix.is_empty() && unbared.contains(&s.name) => &s.name,
            Some(s) => &s.prefix,
            None => "",
        }
    }

    /// The names of a page's `entries` (each a server, as an index of
    /// `servers` in the configuration's order, and its own name), none
    /// meeting another's nor one of another server's in `directory`. A
    /// bare name that meets another server's has the later bare server of
    /// the two get its name as its prefix (added to `unbared`, and given
    /// back among the newly unbared); a name that still meets another is
    /// `None` (left off).
    pub fn assign(
        &self,
        kind: Kind,
        servers: &[Server],
        entries: &[(usize, String)],
        directory: &Directory,
        unbared: &mut BTreeSet<String>,
    ) -> (Vec<Option<String>>, Vec<String>) {
        let mut newly = Vec::new();
        let at = |name: &str| servers.iter().position(|s| s.name == name);
        // Each round unbares one server more, or is the last.
        for _ in 0..=servers.len() {
            let mut taken: HashMap<String, usize> = HashMap::new();
            let mut named = Vec::with_capacity(entries.len());
            let mut unbare = None;
            for (server, own) in entries {
                let prefix = Self::prefix_of(servers, *server, unbared);
                let Some(name) = self.name(kind, prefix, own) else {
                    named.push(None);
                    continue;
                };
                let other = taken.get(&name).copied().or_else(|| {
                    let (listed, _) = directory.find(kind, &name)?;
                    at(listed)
                });
                match other {
                    Some(other) if other != *server => {
                        let bare = |s: usize| Self::prefix_of(servers, s, unbared).is_empty();
                        let later = (*server).max(other);
                        let earlier = (*server).min(other);
                        unbare = [later, earlier].into_iter().find(|&s| bare(s));
                        if unbare.is_some() {
                            break;
                        }
                        tracing::warn!(
                            server = servers.get(*server).map_or("", |s| s.name.as_str()),
                            name,
                            "a name is left off /mcp: another server's is the same"
                        );
                        named.push(None);
                    }
                    _ => {
                        taken.insert(name.clone(), *server);
                        named.push(Some(name));
                    }
                }
            }
            match unbare.and_then(|s| servers.get(s)) {
                Some(server) => {
                    tracing::warn!(
                        server = server.name,
                        "a server with an empty prefix has a name another server has too: on /mcp its names are prefixed with its own name"
                    );
                    unbared.insert(server.name.clone());
                    newly.push(server.name.clone());
                }
                None => return (named, newly),
            }
        }
        (vec![None; entries.len()], newly)
    }
}

/// The names the aggregate endpoint listed, each with its server and the
/// server's own name: what a call names is found here, exactly.
#[derive(Debug, Default)]
pub struct Directory {
    names: HashMap<(Kind, String), (String, String)>,
    /// Each server's names of each kind, by age.
    order: BTreeMap<(String, Kind), Aged>,
    next: u64,
}

/// Names by age: each name's number, and the names by number.
#[derive(Debug, Default)]
struct Aged {
    at: HashMap<String, u64>,
    by: BTreeMap<u64, String>,
}

impl Directory {
    /// `name` was listed for `server`'s own `own`.
    pub fn learn(&mut self, kind: Kind, name: &str, server: &str, own: &str) {
        let key = (kind, name.to_owned());
        if self
            .names
            .get(&key)
            .is_some_and(|(listed, _)| listed != server)
        {
            self.forget_name(kind, name);
        }
        self.next += 1;
        let aged = self.order.entry((server.to_owned(), kind)).or_default();
        if let Some(old) = aged.at.insert(name.to_owned(), self.next) {
            aged.by.remove(&old);
        }
        aged.by.insert(self.next, name.to_owned());
        self.names.insert(key, (server.to_owned(), own.to_owned()));
        while aged.at.len() > MAX_NAMES {
            let Some((_, oldest)) = aged.by.pop_first() else {
                break;
            };
            aged.at.remove(&oldest);
            self.names.remove(&(kind, oldest));
        }
    }

    /// The server and own name `name` was listed for.
    pub fn find(&self, kind: Kind, name: &str) -> Option<(&str, &str)> {
        let (server, own) = self.names.get(&(kind, name.to_owned()))?;
        Some((server, own))
    }

    /// Server `server`'s names are no more.
    pub fn forget(&mut self, server: &str) {
        for kind in [Kind::Tool, Kind::Prompt] {
            if let Some(aged) = self.order.remove(&(server.to_owned(), kind)) {
                for name in aged.by.into_values() {
                    self.names.remove(&(kind, name));
                }
            }
        }
    }

    /// Every name is forgotten.
    pub fn clear(&mut self) {
        *self = Directory::default();
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn forget_name(&mut self, kind: Kind, name: &str) {
        if let Some((server, _)) = self.names.remove(&(kind, name.to_owned())) {
            if let Some(aged) = self.order.get_mut(&(server, kind)) {
                if let Some(n) = aged.at.remove(name) {
                    aged.by.remove(&n);
                }
            }
        }
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
            names.name(Kind::Tool, "files", "read_file").as_deref(),
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
    fn a_tool_name_that_would_break_mcp_rules_has_no_name() {
        let names = Names::default();
        let tool = |own: &str| names.name(Kind::Tool, "files", own);
        assert_eq!(tool("read file"), None);
        assert_eq!(tool("lire/é"), None);
        assert_eq!(tool(""), None);
        let prompt = names.name(Kind::Prompt, "files", "a prompt");
        assert_eq!(prompt.as_deref(), Some("files__a prompt"));
        assert_eq!(names.name(Kind::Tool, "", "read").as_deref(), Some("read"));
    }

    #[test]
    fn a_long_name_is_cut_to_the_longest_with_a_hash_of_it_all() {
        let names = Names::default();
        let own = "t".repeat(DEFAULT_MAX_LEN - "files__".len());
        let fits = names.name(Kind::Tool, "files", &own).unwrap();
        assert_eq!(fits, format!("files__{own}"));
        let long = names.name(Kind::Tool, "files", &format!("{own}x")).unwrap();
        assert_eq!(long.len(), DEFAULT_MAX_LEN);
        assert!(long.starts_with("files__ttt") && names.looks_shortened(&long));
        // The same every time; another name, another hash.
        assert_eq!(
            names.name(Kind::Tool, "files", &format!("{own}x")).unwrap(),
            long
        );
        assert_ne!(
            names.name(Kind::Tool, "files", &format!("{own}y")).unwrap(),
            long
        );
        assert!(!names.looks_shortened("files__read") && !names.looks_shortened(""));
        // Cut at a character's boundary.
        let wide = names.name(Kind::Prompt, "p", &"é".repeat(60)).unwrap();
        assert!(wide.len() <= DEFAULT_MAX_LEN && names.looks_shortened(&wide));
        let cursor = Names::default().with_max_len(60).unwrap();
        assert_eq!(cursor.name(Kind::Tool, "files", &own).unwrap().len(), 60);
        for bad in [0, 15, 129] {
            assert!(Names::default().with_max_len(bad).is_err(), "{bad}");
        }
    }

    fn servers(list: &[(&str, &str)]) -> Vec<Server> {
        list.iter()
            .map(|(name, prefix)| Server {
                name: (*name).to_owned(),
                prefix: (*prefix).to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_bare_name_that_meets_another_has_the_later_bare_server_prefixed() {
        let names = Names::default();
        let servers = servers(&[("git", "gh"), ("notes", ""), ("files", "")]);
        let entries: Vec<(usize, String)> = [(0, "log"), (1, "read"), (2, "read"), (2, "list")]
            .iter()
            .map(|(s, own)| (*s, (*own).to_owned()))
            .collect();
        let mut unbared = BTreeSet::new();
        let directory = Directory::default();
        let (named, newly) = names.assign(Kind::Tool, &servers, &entries, &directory, &mut unbared);
        let named: Vec<&str> = named.iter().map(|n| n.as_deref().unwrap()).collect();
        assert_eq!(named, ["gh__log", "read", "files__read", "files__list"]);
        assert_eq!(newly, ["files"]);
        // Stays so, and is said once.
        let (again, newly) = names.assign(Kind::Tool, &servers, &entries, &directory, &mut unbared);
        assert_eq!(again[3].as_deref(), Some("files__list"));
        assert!(newly.is_empty());
    }

    #[test]
    fn a_bare_name_that_meets_a_name_listed_before_is_prefixed_too() {
        let names = Names::default();
        let servers = servers(&[("gh", "gh"), ("notes", "")]);
        let mut directory = Directory::default();
        directory.learn(Kind::Tool, "gh__x", "gh", "x");
        let entries = vec![(1, "gh__x".to_owned())];
        let mut unbared = BTreeSet::new();
        let (named, newly) = names.assign(Kind::Tool, &servers, &entries, &directory, &mut unbared);
        assert_eq!(named, [Some("notes__gh__x".to_owned())]);
        assert_eq!(newly, ["notes"]);
        // A prompt is named apart from tools.
        let (named, _) = names.assign(
            Kind::Prompt,
            &servers,
            &entries,
            &directory,
            &mut BTreeSet::new(),
        );
        assert_eq!(named, [Some("gh__x".to_owned())]);
    }

    #[test]
    fn the_directory_finds_each_name_and_forgets_a_server_s() {
        let mut directory = Directory::default();
        directory.learn(Kind::Tool, "read", "files", "read");
        directory.learn(Kind::Prompt, "read", "notes", "read");
        assert_eq!(directory.find(Kind::Tool, "read"), Some(("files", "read")));
        assert_eq!(
            directory.find(Kind::Prompt, "read"),
            Some(("notes", "read"))
        );
        directory.learn(Kind::Tool, "read", "git", "read");
        assert_eq!(directory.find(Kind::Tool, "read"), Some(("git", "read")));
        directory.forget("files");
        assert_eq!(directory.find(Kind::Tool, "read"), Some(("git", "read")));
        directory.forget("git");
        assert_eq!(directory.find(Kind::Tool, "read"), None);
        for n in 0..MAX_NAMES + 5 {
            directory.learn(Kind::Tool, &format!("t{n}"), "many", "t");
        }
        assert_eq!(directory.find(Kind::Tool, "t0"), None);
        assert!(directory
            .find(Kind::Tool, &format!("t{MAX_NAMES}"))
            .is_some());
        assert_eq!(directory.len(), MAX_NAMES + 1);
    }

    proptest::proptest! {
        /// Any servers (some bare) and tools: every name listed is within
        /// the longest and MCP's rules, no two are the same, and each
        /// found in the directory is its own server's own name.
        #[test]
        fn every_name_maps_back_exactly_and_none_is_another_s(
            listed in proptest::collection::vec(
                (proptest::option::of("[a-z]{1,12}"),
                 proptest::collection::vec("[a-zA-Z0-9_.-]{1,90}", 0..12)),
                1..6),
            max_len in MIN_MAX_LEN..=MAX_TOOL_NAME,
        ) {
            let names = Names::default().with_max_len(max_len).unwrap();
            let servers: Vec<Server> = listed.iter().enumerate().map(|(n, (prefix, _))| Server {
                name: format!("s{n}"),
                prefix: prefix.clone().map(|p| format!("{p}{n}")).unwrap_or_default(),
            }).collect();
            let mut entries = Vec::new();
            for (n, (_, tools)) in listed.iter().enumerate() {
                let unique: BTreeSet<&String> = tools.iter().collect();
                entries.extend(unique.into_iter().map(|t| (n, t.clone())));
            }
            let mut directory = Directory::default();
            let mut unbared = BTreeSet::new();
            let (named, _) = names.assign(Kind::Tool, &servers, &entries, &directory, &mut unbared);
            let mut seen = BTreeSet::new();
            for ((server, own), name) in entries.iter().zip(&named) {
                let Some(name) = name else { continue };
                proptest::prop_assert!(name.len() <= max_len && name.chars().all(tool_char));
                proptest::prop_assert!(seen.insert(name.clone()), "{name} twice");
                directory.learn(Kind::Tool, name, &servers[*server].name, own);
            }
            for ((server, own), name) in entries.iter().zip(&named) {
                let Some(name) = name else { continue };
                let found = directory.find(Kind::Tool, name);
                proptest::prop_assert_eq!(found, Some((servers[*server].name.as_str(), own.as_str())));
            }
            // Only a hash's collision leaves a name off: never here.
            proptest::prop_assert!(named.iter().all(Option::is_some));
            // Listed again, the same names.
            let (again, newly) = names.assign(Kind::Tool, &servers, &entries, &directory, &mut unbared);
            proptest::prop_assert_eq!(again, named);
            proptest::prop_assert!(newly.is_empty());
        }
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
