//! Text to index terms: words split where people and programs split them
//! (`_`, `-`, `.`, spaces, camelCase, letters against digits), lowercased,
//! common English words dropped and suffixes stripped, so that "listFiles",
//! "list_files" and "listing the file" meet on the same terms.

/// How much text one field or query contributes at most, in bytes: a
/// description of a megabyte is indexed by its first part, and a query that
/// long is read no further, so neither costs more than this.
pub const MAX_TEXT: usize = 16 * 1024;

/// Words so common in tool descriptions and requests that they say nothing
/// about which tool is meant.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "about", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "being",
    "by", "can", "could", "do", "does", "each", "etc", "every", "everything", "for", "from",
    "give", "has", "have", "how", "if", "in", "into", "is", "it", "its", "just", "let", "like",
    "may", "me", "more", "must", "my", "no", "not", "of", "off", "on", "only", "or", "other", "our", "over",
    "please", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then",
    "there", "these", "this", "those", "to", "us", "use", "used", "using", "very", "via", "want",
    "was", "we", "were", "what", "when", "where", "which", "while", "who", "why", "will", "with",
    "would", "you", "your",
];

/// Calls `each` with every term of `text`, in order: split into words,
/// lowercased, stop words dropped, stemmed.
pub fn terms(text: &str, mut each: impl FnMut(String)) {
    words(text, |word| {
        if !is_stop_word(&word) {
            each(stem(&word));
        }
    });
}

/// The terms of `text` as a vector (see [`terms`]).
pub fn term_vec(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    terms(text, |t| out.push(t));
    out
}

/// Every word of `text` stemmed, stop words kept (as they are), and
/// which of them are stop words: phrases are matched on all of them, since
/// "log in" and "who wrote" mean something their words alone do not.
pub fn stemmed_words(text: &str) -> (Vec<String>, Vec<bool>) {
    let (mut out, mut stop) = (Vec::new(), Vec::new());
    words(text, |word| {
        let is_stop = is_stop_word(&word);
        out.push(if is_stop { word } else { stem(&word) });
        stop.push(is_stop);
    });
    (out, stop)
}

/// A query's words as [`stemmed_words`] gives them, but a web address, a
/// file path or a `host:port` read for what it is rather than split into
/// its pieces: "open example.com" asks for a URL, not for "example" and
/// "com"; "find all .py files under src/" for files; "localhost:8080"
/// for a port.
pub fn query_words(text: &str) -> (Vec<String>, Vec<bool>) {
    let (mut out, mut stop) = (Vec::new(), Vec::new());
    for chunk in clip(text, MAX_TEXT).split_whitespace() {
        let chunk = chunk.trim_matches(|c: char| {
            matches!(c, '"' | '\'' | '`' | '(' | ')' | ',' | '?' | '!' | ';')
        });
        let chunk = chunk.strip_suffix(['.', ':']).unwrap_or(chunk);
        let (words, chunk_stop) = match shape(chunk) {
            Some(Shape::Url) => (vec!["url".to_owned()], vec![false]),
            Some(Shape::File) => (vec![stem("file")], vec![false]),
            Some(Shape::Path) => (vec![stem("path")], vec![false]),
            Some(Shape::Number) => continue,
            Some(Shape::Tagged(name, kind)) => {
                let (mut words, mut stop) = stemmed_words(name);
                words.push(kind.to_owned());
                stop.push(false);
                (words, stop)
            }
            None => stemmed_words(chunk),
        };
        out.extend(words);
        stop.extend(chunk_stop);
    }
    (out, stop)
}

/// What a chunk of a query (between spaces) is, when it is more than words.
enum Shape<'a> {
    Url,
    /// A file's name or path (`notes.md`, `src/*.py`).
    File,
    /// A path that may be a directory's (`src/utils/`, `~/work`).
    Path,
    /// A number (`42`, `#42`, `3.5`): what a tool is called with, not
    /// which tool.
    Number,
    /// A name and what the way it is written says it is: `host:8080` a
    /// port, `#general` a channel, `@alice` a user.
    Tagged(&'a str, &'static str),
}

/// Top-level domains common enough that `name.tld` is read as a web address.
const DOMAINS: &[&str] = &[
    "ai", "app", "co", "com", "dev", "edu", "gov", "io", "net", "org",
];

/// File extensions common enough that `name.ext` or `*.ext` is read as a file.
#[rustfmt::skip]
const EXTENSIONS: &[&str] = &[
    "c", "cpp", "css", "csv", "go", "h", "html", "java", "jpg", "js", "json", "jsx", "log", "md",
    "pdf", "png", "py", "rb", "rs", "sh", "sql", "toml", "ts", "tsx", "txt", "xml", "yaml", "yml",
];

fn shape(chunk: &str) -> Option<Shape<'_>> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if digits(chunk.trim_start_matches('#')) {
        return Some(Shape::Number);
    }
    if chunk.contains("://") || chunk.starts_with("www.") {
        return Some(Shape::Url);
    }
    if let Some((host, port)) = chunk.rsplit_once(':') {
        if !host.is_empty() && digits(port) {
            return Some(Shape::Tagged(host, "port"));
        }
    }
    if let Some(name) = chunk.strip_prefix('#').filter(|n| !n.is_empty()) {
        return Some(Shape::Tagged(name, "channel"));
    }
    if let Some(name) = chunk.strip_prefix('@').filter(|n| !n.is_empty()) {
        return Some(Shape::Tagged(name, "user"));
    }
    let last = chunk
        .rsplit_once('.')
        .map(|(_, last)| last.to_ascii_lowercase());
    let is = |list: &[&str]| last.as_deref().is_some_and(|l| list.contains(&l));
    // "a/b" is as often "this or that" as a path: a path says more.
    let path = chunk.starts_with(['/', '~', '.'])
        || chunk.ends_with('/')
        || chunk.matches('/').count() >= 2;
    if is(EXTENSIONS) {
        return Some(Shape::File);
    }
    if path {
        return Some(Shape::Path);
    }
    let words = chunk.split('.').filter(|w| !w.is_empty()).count();
    (words >= 2 && is(DOMAINS)).then_some(Shape::Url)
}

/// Calls `each` with the lowercased words of `text`: runs of letters or
/// digits, split again at a lower-to-upper change ("listFiles"), at the
/// end of an upper-case run before a capitalised word ("HTTPServer") and
/// between letters and digits ("utf8"). Nothing is stemmed or dropped.
pub fn words(text: &str, mut each: impl FnMut(String)) {
    let text = clip(text, MAX_TEXT);
    let mut word = String::new();
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_alphanumeric() {
            flush(&mut word, &mut each);
            prev = None;
            continue;
        }
        if let Some(p) = prev {
            let next_lower = chars.peek().is_some_and(|n| n.is_lowercase());
            let boundary = (p.is_lowercase() && c.is_uppercase())
                || (p.is_uppercase() && c.is_uppercase() && next_lower)
                || (p.is_alphabetic() != c.is_alphabetic());
            if boundary {
                flush(&mut word, &mut each);
            }
        }
        word.extend(c.to_lowercase());
        prev = Some(c);
    }
    flush(&mut word, &mut each);
}

/// The words of plain BM25: runs of letters or digits, lowercased, nothing
/// else (no camelCase split, no stemming, no stop words).
pub fn plain_words(text: &str, mut each: impl FnMut(String)) {
    for word in clip(text, MAX_TEXT).split(|c: char| !c.is_alphanumeric()) {
        if !word.is_empty() {
            each(word.to_lowercase());
        }
    }
}

fn flush(word: &mut String, each: &mut impl FnMut(String)) {
    if !word.is_empty() {
        each(std::mem::take(word));
    }
}

/// The longest prefix of `text` at most `max` bytes long that ends on a
/// character boundary.
pub fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A word that says nothing of which tool is meant: one of
/// [`STOP_WORDS`], or a single letter ("a", "I", the "s" of "what's").
pub fn is_stop_word(word: &str) -> bool {
    let mut chars = word.chars();
    let single_letter =
        matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic());
    single_letter || STOP_WORDS.binary_search(&word).is_ok()
}

/// A light English stemmer: strips the plural and verb endings tool
/// descriptions use (-s, -es, -ies, -ing, -ed, -er, -ion, a final -e), so
/// that "create", "creates", "created", "creating" and "creation" share a
/// stem. No dictionary: a stem keeps at least three letters, and a word
/// that is not plain ASCII letters is left as it is.
pub fn stem(word: &str) -> String {
    if word.len() <= 3 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return word.to_string();
    }
    let mut w = word.to_string();
    strip_plural(&mut w);
    strip_ending(&mut w);
    if w.len() > 3 && w.ends_with('e') {
        w.pop();
    }
    w
}

fn strip_plural(w: &mut String) {
    if let Some(base) = w.strip_suffix("ies") {
        if base.len() >= 2 {
            let base = format!("{base}y");
            *w = base;
        }
    } else if w.ends_with("sses")
        || w.ends_with("shes")
        || w.ends_with("ches")
        || w.ends_with("xes")
    {
        w.truncate(w.len() - 2);
    } else if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        w.pop();
    }
}

/// Verb and noun endings, longest first, each with the letters its stem
/// must keep ("notion" and "action" stay whole).
fn strip_ending(w: &mut String) {
    for (ending, keep) in [("ing", 3), ("ion", 4), ("ed", 3), ("er", 3)] {
        if let Some(base) = w.strip_suffix(ending) {
            if base.len() >= keep && base.bytes().any(is_vowel) {
                let keep = undouble(base).len();
                w.truncate(keep);
                return;
            }
        }
    }
}

/// "runn" → "run", "stopp" → "stop"; "fill", "pass" and "add" stay.
fn undouble(base: &str) -> &str {
    let b = base.as_bytes();
    let n = b.len();
    if n >= 4 && b[n - 1] == b[n - 2] && !matches!(b[n - 1], b'l' | b's' | b'z' | b'd' | b'f') {
        &base[..n - 1]
    } else {
        base
    }
}

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_words(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        words(text, |w| out.push(w));
        out
    }

    #[test]
    fn splits_snake_kebab_dots_and_camel_case() {
        assert_eq!(all_words("list_files"), ["list", "files"]);
        assert_eq!(
            all_words("browser-take.screenshot"),
            ["browser", "take", "screenshot"]
        );
        assert_eq!(all_words("listPullRequests"), ["list", "pull", "requests"]);
        assert_eq!(all_words("HTTPServer utf8"), ["http", "server", "utf", "8"]);
        assert_eq!(all_words("  "), Vec::<String>::new());
    }

    #[test]
    fn a_query_reads_addresses_paths_and_numbers_for_what_they_are() {
        let words = |text| query_words(text).0;
        assert_eq!(words("open https://x.dev/a?b"), ["open", "url"]);
        assert_eq!(words("open example.com."), ["open", "url"]);
        assert_eq!(words("read src/main.rs"), ["read", "fil"]);
        assert_eq!(words("find *.py"), ["find", "fil"]);
        assert_eq!(words("mkdir src/utils/"), ["mkdir", "path"]);
        assert_eq!(words("cd ~/work"), ["cd", "path"]);
        assert_eq!(words("issue #42 line 7 at 48.85"), ["issu", "lin", "at"]);
        assert_eq!(
            words("reach localhost:8080"),
            ["reach", "localhost", "port"]
        );
        assert_eq!(
            words("post in #general"),
            ["post", "in", "general", "channel"]
        );
        assert_eq!(words("ping @alice"), ["ping", &stem("alice"), "user"]);
        assert_eq!(words("lat/long"), ["lat", "long"], "one slash: words");
        assert_eq!(query_words("the \"url\"").1, [true, false]);
    }

    #[test]
    fn stop_words_are_sorted_for_the_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop_word("the"));
        assert!(is_stop_word("s"));
        assert!(!is_stop_word("8"));
        assert!(!is_stop_word("get"));
    }

    #[test]
    fn stems_share_between_the_forms_of_a_word() {
        for group in [
            &["create", "creates", "created", "creating", "creation"][..],
            &["file", "files"],
            &["repository", "repositories"],
            &["branch", "branches"],
            &["browse", "browser", "browsing"],
            &["run", "running", "runs"],
            &["issue", "issues"],
            &["list", "lists", "listed", "listing"],
        ] {
            let first = stem(group[0]);
            for word in group {
                assert_eq!(stem(word), first, "{word} vs {}", group[0]);
            }
        }
        assert_eq!(stem("status"), "status");
        assert_eq!(stem("add"), "add");
        assert_eq!(stem("été"), "été");
    }

    #[test]
    fn terms_drop_stop_words_and_stem() {
        assert_eq!(
            term_vec("Take a screenshot of the page"),
            ["tak", "screenshot", "pag"]
        );
        let (words, stop) = stemmed_words("Who wrote notions");
        assert_eq!(words, ["who", "wrot", "notion"]);
        assert_eq!(stop, [true, false, false]);
    }

    #[test]
    fn plain_words_do_not_split_camel_case() {
        let mut out = Vec::new();
        plain_words("listFiles in_dir", |w| out.push(w));
        assert_eq!(out, ["listfiles", "in", "dir"]);
    }

    #[test]
    fn long_text_is_clipped_on_a_char_boundary() {
        let text = "é".repeat(MAX_TEXT);
        assert!(clip(&text, MAX_TEXT).len() <= MAX_TEXT);
    }
}
