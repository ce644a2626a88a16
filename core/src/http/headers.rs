//! A request's header fields, kept in one buffer: reading a head allocates
//! twice however many fields it has (a client sends eight or so, and each
//! as two strings of its own was most of what parsing a request cost).

use std::fmt;

/// Header fields, names lower-cased, in the order received.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name and value, one after the other.
    text: String,
    /// Where each field's name ends and its value ends in `text`; a name
    /// starts where the field before it ended.
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// Room for `fields` fields of `bytes` in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// Adds a field; its name is lower-cased.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        if let Some(added) = self.text.get_mut(start..) {
            added.make_ascii_lowercase();
        }
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    /// The fields, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, end)| {
            let name = self.text.get(start..name_end).unwrap_or_default();
            let value = self.text.get(name_end..end).unwrap_or_default();
            start = end;
            (name, value)
        })
    }

    /// The first value of the field `name` (lower-case). Names are
    /// compared as bytes, and only the value found is cut out as text: a
    /// request's fields are looked up a dozen times on its way.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (text, name) = (self.text.as_bytes(), name.as_bytes());
        let mut start = 0;
        for &(name_end, end) in &self.ends {
            if text.get(start..name_end) == Some(name) {
                return self.text.get(name_end..end);
            }
            start = end;
        }
        None
    }

    /// Every value of the field `name` (lower-case).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter().filter(move |(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Sets the field `name` (lower-case) to `value`: its first occurrence
    /// is replaced (any later ones are kept), or the field is added.
    pub fn set(&mut self, name: &str, value: &str) {
        let mut set = Headers::with_capacity(self.ends.len() + 1, self.text.len() + value.len());
        let mut found = false;
        for (k, v) in self.iter() {
            let replace = !found && k == name;
            found |= replace;
            set.push(k, if replace { value } else { v });
        }
        if !found {
            set.push(name, value);
        }
        *self = set;
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(fields: I) -> Self {
        let mut headers = Headers::default();
        for (k, v) in fields {
            headers.push(k.as_ref(), v.as_ref());
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_order_names_are_lower_cased_and_set_replaces_the_first() {
        let mut h: Headers = [("Host", "a"), ("X-Two", "1"), ("x-two", "2"), ("Empty", "")]
            .into_iter()
            .collect();
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("host", "a"), ("x-two", "1"), ("x-two", "2"), ("empty", "")]
        );
        assert_eq!(h.get("x-two"), Some("1"));
        assert_eq!(h.all("x-two").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.get("empty"), Some(""));
        assert_eq!(h.get("X-Two"), None, "names are looked up lower-case");
        h.set("x-two", "3");
        h.set("new", "é");
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [
                ("host", "a"),
                ("x-two", "3"),
                ("x-two", "2"),
                ("empty", ""),
                ("new", "é")
            ]
        );
        assert_eq!(
            format!("{h:?}"),
            r#"[("host", "a"), ("x-two", "3"), ("x-two", "2"), ("empty", ""), ("new", "é")]"#
        );
    }
}
