//! A message's header fields, kept in one buffer. A parsed head's fields
//! are copied out of it in one piece, checked as text once, and indexed:
//! reading a head allocates twice however many fields it has, where a
//! copy and a check per field (a client sends eight or so, a server a
//! dozen) were most of what reading a head cost.

use std::fmt;

use crate::swar;

/// Header fields, names lower-cased, in the order received.
#[derive(Clone, Default)]
pub struct Headers {
    /// Every name and value; a parsed head's separators between them too.
    text: String,
    /// Where each field's name and value stand in `text`.
    fields: Vec<Field>,
}

#[derive(Clone, Copy)]
struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

/// A head's fields are not all text.
#[derive(Debug)]
pub(super) struct NotText;

impl Headers {
    /// Room for `fields` fields of `bytes` in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    /// The fields httparse read out of `head`, their values without white
    /// space around them (httparse takes it off: blanks before a value,
    /// blanks and line ends after it; no other white space is valid in a
    /// field). Their part of the head is copied
    /// once and checked as text once; a field that is not text makes the
    /// whole [`NotText`] (the caller decides what that means).
    pub(super) fn parsed(head: &[u8], fields: &[httparse::Header<'_>]) -> Result<Self, NotText> {
        let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
            return Ok(Headers::default());
        };
        // Every slice httparse hands out lies in `head`: where it stands
        // there is its address less the head's. An empty value needs no
        // place: it is taken to stand right after its name.
        let base = head.as_ptr() as usize;
        let within = |part: &[u8]| {
            (part.as_ptr() as usize)
                .checked_sub(base)
                .filter(|at| at + part.len() <= head.len())
                .ok_or(NotText)
        };
        let start = within(first.name.as_bytes())?;
        let end = match last.value.is_empty() {
            true => within(last.name.as_bytes())? + last.name.len(),
            false => within(last.value)? + last.value.len(),
        };
        let mut text = head.get(start..end).ok_or(NotText)?.to_vec();
        // Where a part stands in `text`: its address less that of
        // `text`'s first byte in `head`. One before it wraps round to a
        // place past the end, and is refused with one that runs over.
        let origin = base + start;
        let place = |part: &[u8]| {
            let at = (part.as_ptr() as usize).wrapping_sub(origin);
            match at.checked_add(part.len()) {
                Some(end) if end <= text.len() => Ok((at, end)),
                _ => Err(NotText),
            }
        };
        let mut indexed = Vec::with_capacity(fields.len());
        for field in fields {
            let name = place(field.name.as_bytes())?;
            let value = match field.value {
                [] => (name.1, name.1),
                value => place(value)?,
            };
            indexed.push(Field { name, value });
        }
        for field in &indexed {
            swar::lower_ascii(text.get_mut(field.name.0..field.name.1).ok_or(NotText)?);
        }
        // Lower-casing letters keeps text text, and the rest as it was.
        let text = String::from_utf8(text).map_err(|_| NotText)?;
        Ok(Headers {
            text,
            fields: indexed,
        })
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
        self.fields.push(Field {
            name: (start, name_end),
            value: (name_end, self.text.len()),
        });
    }

    fn part(&self, (start, end): (usize, usize)) -> &str {
        self.text.get(start..end).unwrap_or_default()
    }

    /// The fields, in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|field| (self.part(field.name), self.part(field.value)))
    }

    /// The first value of the field `name` (lower-case). Names are
    /// compared as bytes, and only the value found is cut out as text: a
    /// request's fields are looked up a dozen times on its way.
    pub fn get(&self, name: &str) -> Option<&str> {
        let (text, name) = (self.text.as_bytes(), name.as_bytes());
        let field = self
            .fields
            .iter()
            .find(|field| text.get(field.name.0..field.name.1) == Some(name))?;
        Some(self.part(field.value))
    }

    /// Every value of the field `name` (lower-case).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        // As in `get`: names compared as bytes, only the values found cut out.
        let text = self.text.as_bytes();
        self.fields
            .iter()
            .filter(move |field| text.get(field.name.0..field.name.1) == Some(name.as_bytes()))
            .map(|field| self.part(field.value))
    }

    /// Sets the field `name` (lower-case) to `value`: its first occurrence
    /// is replaced (any later ones are kept), or the field is added.
    pub fn set(&mut self, name: &str, value: &str) {
        let mut set = Headers::with_capacity(self.fields.len() + 1, self.text.len() + value.len());
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

/// Equal when they hold the same fields in the same order, however each
/// was laid out.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}
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

    #[test]
    fn a_parsed_head_reads_as_the_same_fields_pushed_one_by_one() {
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: Text/Plain \r\nX-Empty:\r\nSET-cookie: a=1\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut fields);
        assert!(response.parse(head).is_ok_and(|s| s.is_complete()));
        let parsed = Headers::parsed(head, response.headers).ok();
        let pushed: Headers = [
            ("content-type", "Text/Plain"),
            ("x-empty", ""),
            ("set-cookie", "a=1"),
        ]
        .into_iter()
        .collect();
        assert_eq!(parsed.as_ref(), Some(&pushed));
        assert_eq!(
            parsed
                .and_then(|h| h.get("content-type").map(str::to_owned))
                .as_deref(),
            Some("Text/Plain")
        );

        let last_empty = b"HTTP/1.1 200 OK\r\nA: b\r\nX-Last:\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut fields);
        assert!(response.parse(last_empty).is_ok_and(|s| s.is_complete()));
        let expected: Headers = [("a", "b"), ("x-last", "")].into_iter().collect();
        assert_eq!(
            Headers::parsed(last_empty, response.headers).ok(),
            Some(expected)
        );

        let bad = b"HTTP/1.1 200 OK\r\nA: b\r\nX-Bytes: \xff\xfe\r\n\r\n";
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut fields);
        assert!(response.parse(bad).is_ok_and(|s| s.is_complete()));
        assert!(Headers::parsed(bad, response.headers).is_err());
        let mut none = httparse::Response::new(&mut []);
        assert!(none.parse(b"HTTP/1.1 204 No Content\r\n\r\n").is_ok());
        assert_eq!(
            Headers::parsed(b"", none.headers).ok(),
            Some(Headers::default())
        );
    }
}
