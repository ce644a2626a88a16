//! `session/request_permission`: the agent asks before it runs one of its
//! own tools. An editor asking a model has no way to answer that, so a
//! policy does, at once: no turn ever waits on a question nobody sees.
//! Option ids differ between agents (`allow`, `approved`,
//! `proceed_once`…); the option is chosen by its `kind`.

use serde_json::{json, Value};

/// Which of the agent's own tools it may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// None: every request is rejected.
    #[default]
    Never,
    /// Those that only look (reading, searching, thinking).
    ReadOnly,
    /// All of them.
    Always,
}

impl Policy {
    pub fn from_name(name: &str) -> Option<Policy> {
        match name {
            "never" => Some(Policy::Never),
            "read-only" => Some(Policy::ReadOnly),
            "always" => Some(Policy::Always),
            _ => None,
        }
    }

    /// Whether a call of this ACP tool `kind` is allowed.
    fn allows(self, kind: &str) -> bool {
        match self {
            Policy::Never => false,
            Policy::ReadOnly => matches!(kind, "read" | "search" | "think"),
            Policy::Always => true,
        }
    }
}

/// The answer to a `session/request_permission`'s `params`: the option of
/// the kind the policy picks (once rather than always) — allowed, for one
/// of the `editors` tools — or `cancelled` when the agent offers none of
/// that kind.
pub fn answer(policy: Policy, params: &Value, editors: bool) -> Value {
    let kind = params["toolCall"]["kind"].as_str().unwrap_or("other");
    let wanted: &[&str] = if editors || policy.allows(kind) {
        &["allow_once", "allow_always"]
    } else {
        &["reject_once", "reject_always"]
    };
    let options = params["options"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let chosen = wanted.iter().find_map(|want| {
        options
            .iter()
            .find(|o| o["kind"] == *want)
            .and_then(|o| o["optionId"].as_str())
    });
    match chosen {
        Some(id) => json!({"outcome": {"outcome": "selected", "optionId": id}}),
        None => json!({"outcome": {"outcome": "cancelled"}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(kind: &str) -> Value {
        json!({"sessionId": "s", "toolCall": {"toolCallId": "c", "kind": kind},
               "options": [
                   {"optionId": "proceed_always", "kind": "allow_always", "name": "Always"},
                   {"optionId": "proceed_once", "kind": "allow_once", "name": "Yes"},
                   {"optionId": "cancel", "kind": "reject_once", "name": "No"}]})
    }

    fn chosen(answer: Value) -> String {
        answer["outcome"]["optionId"]
            .as_str()
            .unwrap_or("-")
            .to_owned()
    }

    #[test]
    fn the_option_is_chosen_by_kind_once_rather_than_always() {
        assert_eq!(
            chosen(answer(Policy::Never, &asked("read"), false)),
            "cancel"
        );
        assert_eq!(
            chosen(answer(Policy::ReadOnly, &asked("read"), false)),
            "proceed_once"
        );
        assert_eq!(
            chosen(answer(Policy::ReadOnly, &asked("edit"), false)),
            "cancel"
        );
        assert_eq!(
            chosen(answer(Policy::Always, &asked("execute"), false)),
            "proceed_once"
        );
    }

    #[test]
    fn without_an_option_of_its_kind_the_request_is_cancelled() {
        let only_allow = json!({"toolCall": {"kind": "edit"},
                                "options": [{"optionId": "ok", "kind": "allow_once"}]});
        assert_eq!(
            answer(Policy::Never, &only_allow, false),
            json!({"outcome": {"outcome": "cancelled"}})
        );
        assert_eq!(
            answer(Policy::Always, &json!({"options": "nonsense"}), false),
            json!({"outcome": {"outcome": "cancelled"}})
        );
    }
}
