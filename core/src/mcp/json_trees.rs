//! JSON trees for the property tests of the message readers: the values
//! a message holds, with the strings and member names that trip readers
//! (quotes, backslashes, control characters, the names they look for).

use proptest::prelude::*;
use serde_json::Value;

/// A JSON tree up to three levels deep.
pub(super) fn tree() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z_\"\\\\\u{e9}\n\u{1}/ ]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("name|_meta|id|[a-z\"\\\\]{0,3}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
