//! A JSON object read as its members in the order written, each kept as
//! its text: a message passed on with one member changed (an id, a list
//! cut short, marks added) keeps every other member byte for byte — a
//! tool's input schema, say, in its server's member order, which a tree
//! of `serde_json::Value` (its members sorted) would not keep.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

pub(crate) struct Members(Vec<(String, Box<RawValue>)>);

impl Members {
    /// `text` read as an object's members; none when it is no object.
    pub(crate) fn of(text: &str) -> Option<Members> {
        serde_json::from_str(text).ok()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Sets member `key` to `value`: in its place, or last when new.
    pub(crate) fn set(&mut self, key: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, slot)) => *slot = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// The object as JSON text.
    pub(crate) fn text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The object as a member of another.
    pub(crate) fn raw(&self) -> Option<Box<RawValue>> {
        serde_json::value::to_raw_value(self).ok()
    }
}

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_order_and_text_and_a_changed_or_new_one_is_written_in() {
        let line = r#"{"z":1.50e3, "a":{"y":[1, 2],"b":null},"id":"x"}"#;
        let mut members = Members::of(line).unwrap();
        assert_eq!(members.get("a").unwrap().get(), r#"{"y":[1, 2],"b":null}"#);
        members.set("id", RawValue::from_string("7".into()).unwrap());
        members.set("new", RawValue::from_string("true".into()).unwrap());
        assert_eq!(
            members.text(),
            r#"{"z":1.50e3,"a":{"y":[1, 2],"b":null},"id":7,"new":true}"#
        );
        assert!(Members::of("[1]").is_none());
        assert!(Members::of("{").is_none());
    }
}
