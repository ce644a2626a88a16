//! A message's `params`, kept as the peer wrote them.
//!
//! Most requests a bridge carries go on as they came (only their id
//! rewritten), and what the bridge reads of them on the way is their
//! `name` and their `_meta`. Building the whole JSON tree of a call's
//! arguments for that cost more than the rest of reading the message, and
//! more again to free it; so the tree is built the first time something
//! reads further (or changes the params), and `name` and `_meta` are read
//! alone, skipping over the rest. Written out, params are written from
//! their tree.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;

use super::envelope;

/// `params` of a request or notification: `Value::Null` when absent.
/// Reads as a [`Value`] (through `Deref`); [`Params::name`] and
/// [`Params::meta`] read without the tree.
#[derive(Clone, Default)]
pub struct Params {
    /// The JSON text as the peer wrote it (checked as JSON when the message
    /// was read), while the params are as written.
    text: Option<Box<str>>,
    /// The tree, once built; set from the start for params made here.
    tree: OnceLock<Value>,
    /// `name` and `_meta`, once read from `text` without the tree.
    head: OnceLock<Head>,
}

/// The members of params read on every call.
#[derive(Clone, Default)]
struct Head {
    name: Value,
    meta: Value,
}

impl Head {
    /// The members built from their texts (checked as JSON): `Null` where
    /// absent, or where a number past `f64`'s range cannot be built.
    fn built(name: Option<&str>, meta: Option<&str>) -> Head {
        let value = |text: Option<&str>| {
            text.and_then(|text| envelope::value(text).ok())
                .unwrap_or_default()
        };
        Head {
            name: value(name),
            meta: value(meta),
        }
    }
}

/// What a read of absent members gives.
static NULL: Value = Value::Null;

impl Params {
    /// The params written as `text` (a JSON value already checked).
    pub(crate) fn written(text: Box<str>) -> Params {
        Params {
            text: Some(text),
            ..Params::default()
        }
    }

    /// [`Params::written`], an object whose `name` and `_meta` (their
    /// texts, checked) were found as the message was read: they are built
    /// now, the text not walked again for them.
    pub(crate) fn written_with_head(
        text: Box<str>,
        name: Option<&str>,
        meta: Option<&str>,
    ) -> Params {
        Params {
            text: Some(text),
            head: OnceLock::from(Head::built(name, meta)),
            ..Params::default()
        }
    }

    /// The params as written, if nothing changed them since.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Whether they are `null` (or absent).
    pub fn is_null(&self) -> bool {
        match (self.tree.get(), self.text()) {
            (Some(tree), _) => tree.is_null(),
            (None, Some(text)) => text.trim() == "null",
            (None, None) => true,
        }
    }

    /// Whether they are an object with a member or more.
    pub fn is_filled_object(&self) -> bool {
        match (self.tree.get(), self.text()) {
            (Some(tree), _) => tree.as_object().is_some_and(|o| !o.is_empty()),
            (None, Some(text)) => text
                .trim_start()
                .strip_prefix('{')
                .is_some_and(|rest| !rest.trim_start().starts_with('}')),
            (None, None) => false,
        }
    }

    /// Their `name` (`Null` when absent or not an object).
    pub fn name(&self) -> &Value {
        match self.tree.get() {
            Some(tree) => tree.get("name").unwrap_or(&NULL),
            None => &self.head().name,
        }
    }

    /// Their `_meta` (`Null` when absent or not an object).
    pub fn meta(&self) -> &Value {
        match self.tree.get() {
            Some(tree) => tree.get("_meta").unwrap_or(&NULL),
            None => &self.head().meta,
        }
    }

    /// The tree, built now if it was not.
    pub fn into_value(mut self) -> Value {
        self.take_tree()
    }

    /// The tree taken out, built now if it was not.
    fn take_tree(&mut self) -> Value {
        self.tree
            .take()
            .unwrap_or_else(|| parse(self.text.as_deref()))
    }

    fn head(&self) -> &Head {
        self.head.get_or_init(|| {
            let Some(text) = self.text() else {
                return Head::default();
            };
            match envelope::params_head(text) {
                Some((name, meta)) => Head::built(name, meta),
                // Not an object, or a member given twice or spelled with
                // escapes: as the tree reads it.
                None => {
                    let tree = self.tree();
                    Head {
                        name: tree.get("name").cloned().unwrap_or_default(),
                        meta: tree.get("_meta").cloned().unwrap_or_default(),
                    }
                }
            }
        })
    }

    fn tree(&self) -> &Value {
        self.tree.get_or_init(|| parse(self.text.as_deref()))
    }
}

/// The tree of `text`, checked as JSON when it was read (`Null` without
/// text). Checked JSON fails to build only with a number past `f64`'s
/// range (`1e400`), which the check passes and the tree cannot hold: such
/// params read as `Null` (as written, they still go on whole).
fn parse(text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::debug!("params read as null: {e}");
        Value::Null
    })
}

impl From<Value> for Params {
    fn from(value: Value) -> Params {
        Params {
            tree: OnceLock::from(value),
            ..Params::default()
        }
    }
}

impl From<Params> for Value {
    fn from(params: Params) -> Value {
        params.into_value()
    }
}

impl Deref for Params {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.tree()
    }
}

/// Changing the params drops their text: they are written from the tree
/// from then on.
impl DerefMut for Params {
    fn deref_mut(&mut self) -> &mut Value {
        let tree = self.take_tree();
        self.text = None;
        self.head = OnceLock::new();
        self.tree.get_or_init(|| tree);
        match self.tree.get_mut() {
            Some(tree) => tree,
            // Set just above.
            None => unreachable!("the params' tree was just set"),
        }
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Params) -> bool {
        **self == **other
    }
}

impl PartialEq<Value> for Params {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.tree.get(), self.text()) {
            (Some(tree), _) => tree.fmt(f),
            (None, Some(text)) => f.write_str(text),
            (None, None) => f.write_str("Null"),
        }
    }
}

/// Written from the tree, never as the text came: what is written is
/// then what the bridge read, even of a member given twice (a request
/// passed on as its client wrote it goes as a whole, see
/// `bridge::verbatim`).
impl Serialize for Params {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tree().serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(text: &str) -> Params {
        Params::written(text.into())
    }

    /// `name` and `_meta` read without the tree read as the tree does,
    /// whatever the params hold.
    #[test]
    fn name_and_meta_read_as_the_tree_reads_them() {
        for text in [
            r#"{"name":"echo","arguments":{"message":"hi"}}"#,
            r#"{"arguments":{"a":[1,2,{"b":null}]},"_meta":{"progressToken":7},"name":"x"}"#,
            r#"{"name":"first","name":"second","_meta":1}"#,
            r#"{"name":3}"#,
            r#"["echo",{"progressToken":1}]"#,
            r#""text""#,
            "null",
            "{}",
        ] {
            let tree: Value = serde_json::from_str(text).unwrap();
            let lazy = written(text);
            assert_eq!(lazy.name(), tree.get("name").unwrap_or(&NULL), "{text}");
            assert_eq!(lazy.meta(), tree.get("_meta").unwrap_or(&NULL), "{text}");
            let plain = text.starts_with('{') && !text.contains("second");
            assert_eq!(lazy.tree.get().is_none(), plain, "{text}");
            assert_eq!(*lazy, tree, "{text}");
        }
    }

    /// Params are written from their tree (a member given twice once,
    /// as read); changed, they keep no text and read from the tree.
    #[test]
    fn written_from_the_tree_and_changed_in_it() {
        let text = r#"{ "name" : "echo", "name": "two", "arguments":{"message":"h\u00e9"} }"#;
        let mut params = written(text);
        let tree: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&params).unwrap(), tree.to_string());
        assert_eq!(params.name(), "two");
        assert_eq!(params["arguments"]["message"], "hé");
        assert_eq!(params.text(), Some(text));
        params["_meta"] = json!({"progressToken": 1});
        assert_eq!(params.text(), None);
        assert_eq!(params.meta(), &json!({"progressToken": 1}));
        let again: Value = serde_json::from_str(&serde_json::to_string(&params).unwrap()).unwrap();
        assert_eq!(
            again,
            json!({"name": "two", "arguments": {"message": "hé"}, "_meta": {"progressToken": 1}})
        );
        assert_eq!(Value::from(params), again);
    }

    /// A number past `f64`'s range passes the check of the message but
    /// cannot be in a tree.
    #[test]
    fn a_number_out_of_range_reads_as_null() {
        let params = written(r#"{"name":"echo","arguments":{"x":1e400}}"#);
        assert_eq!(params.name(), "echo");
        assert_eq!(*params, Value::Null);
    }

    /// Params made from a tree are that tree.
    #[test]
    fn made_from_a_tree() {
        let params = Params::from(json!({"name": "n", "_meta": {"k": 1}}));
        assert_eq!(params.name(), "n");
        assert_eq!(params.meta()["k"], 1);
        assert_eq!(params.text(), None);
        assert_eq!(Params::default().name(), &Value::Null);
        assert_eq!(*Params::default(), Value::Null);
    }
}
