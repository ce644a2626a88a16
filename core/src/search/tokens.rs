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
/// for a port. What the query gives as a value rather than asks for is
/// left out (see [`values`]).
pub fn query_words(text: &str) -> QueryWords {
    let mut out = QueryWords::default();
    let chunks: Vec<&str> = clip(text, MAX_TEXT).split_whitespace().collect();
    let values = values(&chunks);
    let mut coordinates = false;
    for (at, (chunk, value)) in chunks.iter().zip(values).enumerate() {
        if std::mem::take(&mut coordinates) || value {
            continue;
        }
        let chunk = trim(chunk);
        // "48.8584, 2.2945": a place given by its latitude and longitude.
        if decimal(chunk) && chunks.get(at + 1).is_some_and(|next| decimal(trim(next))) {
            coordinates = true;
            out.words.extend([stem("latitude"), stem("longitude")]);
            out.stop.extend([false, false]);
            out.name.extend([false, false]);
            continue;
        }
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
        let name = at > 0 && is_capitalised(chunk);
        out.name.extend(std::iter::repeat_n(name, words.len()));
        out.words.extend(words);
        out.stop.extend(chunk_stop);
    }
    out
}

/// A query's words (see [`query_words`]), each with whether it is a stop
/// word and whether it was written as a name is (capitalised, past the
/// first word: "Alice", "Boston").
#[derive(Debug, Default)]
pub struct QueryWords {
    pub words: Vec<String>,
    pub stop: Vec<bool>,
    pub name: Vec<bool>,
}

/// A chunk of a query without the punctuation around it.
fn trim(chunk: &str) -> &str {
    let chunk = chunk
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '(' | ')' | ',' | '?' | '!' | ';'));
    chunk.strip_suffix(['.', ':']).unwrap_or(chunk)
}

/// "48.8584", "-74.0060": a number with a decimal point.
fn decimal(chunk: &str) -> bool {
    let digits = chunk.strip_prefix('-').unwrap_or(chunk);
    digits.contains('.')
        && digits.bytes().any(|b| b.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// "Alice", "London": a capital and then only lower-case letters.
fn is_capitalised(chunk: &str) -> bool {
    let mut chars = chunk.chars();
    chars.next().is_some_and(char::is_uppercase) && chunk.len() > 1 && chars.all(char::is_lowercase)
}

/// Words that introduce a name the query gives: "a folder called build",
/// "a branch named hotfix".
const NAMING: &[&str] = &["called", "named", "titled"];

/// Which chunks of a query are values it gives rather than words of what
/// it asks for: the words between double quotes or backticks when there
/// are several (`commit with message "fix typo"`; a single quoted word
/// may be what is asked about), and the chunk after "called", "named" or
/// "titled" (with that word).
fn values(chunks: &[&str]) -> Vec<bool> {
    let mut values = vec![false; chunks.len()];
    let quote = |c: char| matches!(c, '"' | '`' | '\u{201c}' | '\u{201d}');
    let mut at = 0;
    while let Some(chunk) = chunks.get(at) {
        let opens = chunk
            .strip_prefix(quote)
            .is_some_and(|rest| !rest.contains(quote));
        if opens {
            let after = chunks.get(at + 1..).unwrap_or_default();
            if let Some(len) = after.iter().position(|c| c.contains(quote)) {
                for slot in values.iter_mut().skip(at).take(len + 2) {
                    *slot = true;
                }
                at += len + 2;
                continue;
            }
        }
        if NAMING.contains(&chunk.to_lowercase().as_str()) && at + 1 < chunks.len() {
            values[at] = true;
            values[at + 1] = true;
            at += 2;
            continue;
        }
        at += 1;
    }
    values
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
            let mut ahead = chars.clone();
            let next_lower = ahead.next().is_some_and(|n| n.is_lowercase());
            // "PRs", "CVEs": an acronym's plural, not a new word "Rs".
            let plural = next_lower
                && chars.peek() == Some(&'s')
                && !ahead.next().is_some_and(|n| n.is_lowercase());
            let boundary = (p.is_lowercase() && c.is_uppercase())
                || (p.is_uppercase() && c.is_uppercase() && next_lower && !plural)
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
        assert_eq!(all_words("PRs CVEs URLsX"), ["prs", "cves", "urls", "x"]);
        assert_eq!(all_words("HTTPSession"), ["http", "session"]);
        assert_eq!(all_words("  "), Vec::<String>::new());
    }

    #[test]
    fn a_query_reads_addresses_paths_and_numbers_for_what_they_are() {
        let words = |text| query_words(text).words;
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
        assert_eq!(
            words("what is at 48.8584, -2.2945"),
            ["what", "is", "at", &stem("latitude"), &stem("longitude")]
        );
        assert_eq!(words("from 3.5 to 4.5"), ["from", "to"], "not a pair");
        assert_eq!(query_words("the \"url\"").stop, [true, false]);
    }

    #[test]
    fn a_query_leaves_out_the_values_it_gives() {
        let words = |text| query_words(text).words;
        assert_eq!(
            words("commit with message \"fix the typo\""),
            ["commit", "with", "messag"]
        );
        assert_eq!(
            words("make a folder called build/output"),
            ["mak", "a", &stem("folder")]
        );
        assert_eq!(words("a branch named hotfix now"), ["a", "branch", "now"]);
        assert_eq!(
            words("search for \"unclosed"),
            ["search", "for", &stem("unclosed")]
        );
        assert_eq!(words("called"), ["call"], "nothing named after it");
        // Typographic quotes, several bytes long, open and close too; one
        // alone, or unclosed, is read like any other character.
        assert_eq!(
            words("commit with message \u{201c}fix the typo\u{201d}"),
            ["commit", "with", "messag"]
        );
        for text in ["\u{201c}", "\u{201c}x", "a \u{201d}", "\u{201c}\u{201c} b"] {
            query_words(text);
        }
    }

    #[test]
    fn a_query_marks_the_names_it_writes() {
        let q = query_words("Remember that Alice lives in New York, not NYC");
        let named: Vec<&str> = q
            .words
            .iter()
            .zip(&q.name)
            .filter(|(_, name)| **name)
            .map(|(w, _)| w.as_str())
            .collect();
        assert_eq!(named, [stem("alice").as_str(), "new", "york"]);
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
