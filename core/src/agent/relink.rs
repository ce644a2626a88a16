//! An agent's session across links. When its link drops (the server
//! restarted, the network blinked), an agent dials again and registers
//! with the session's id and newest resume token, so the provider gives it
//! its session back rather than a new one while the old one lingers for
//! the grace period. A provider that no longer knows the session (it was
//! restarted) answers with a new session, which is then the one resumed.

use serde_json::Value;

/// The `register` frame an agent sends on each link, and the session it
/// asks back for.
#[derive(Debug, Clone)]
pub struct Relink {
    register: Value,
    /// The session the provider last registered us in, and its newest
    /// resume token.
    session: Option<(String, String)>,
}

impl Relink {
    pub fn new(register: Value) -> Self {
        Relink {
            register,
            session: None,
        }
    }

    /// Sets a field of the `register` frame (the models, once known).
    pub fn set(&mut self, field: &str, value: Value) {
        if let Some(fields) = self.register.as_object_mut() {
            fields.insert(field.to_owned(), value);
        }
    }

    /// The `register` frame for the next link: on any link after the
    /// first, it asks for the session back.
    pub fn register(&self) -> String {
        let mut frame = self.register.clone();
        if let (Some((id, token)), Some(fields)) = (&self.session, frame.as_object_mut()) {
            fields.insert("session_id".to_owned(), Value::from(id.as_str()));
            fields.insert("resume_token".to_owned(), Value::from(token.as_str()));
        }
        frame.to_string()
    }

    /// Keeps what a provider frame says about the session: `registered`
    /// carries a new resume token (and the previous one stops working);
    /// a revoked session is not asked back for.
    pub fn observe(&mut self, msg: &Value) {
        match msg["type"].as_str() {
            Some("registered") => {
                if let (Some(id), Some(token)) =
                    (msg["session_id"].as_str(), msg["resume_token"].as_str())
                {
                    self.session = Some((id.to_owned(), token.to_owned()));
                }
            }
            Some("revoked") => self.session = None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(frame: &str) -> Value {
        serde_json::from_str(frame).unwrap()
    }

    #[test]
    fn a_later_link_asks_for_the_session_with_the_newest_token() {
        let mut relink = Relink::new(json!({"type": "register", "agent_id": "a", "models": ["m"]}));
        assert_eq!(parsed(&relink.register())["session_id"], Value::Null);
        relink.observe(&json!({"type": "registered", "session_id": "s1", "resume_token": "t1"}));
        // `registered` answering `renew` carries no token: the last stays.
        relink.observe(&json!({"type": "registered", "session_id": "s1"}));
        let again = parsed(&relink.register());
        assert_eq!(
            (again["session_id"].as_str(), again["resume_token"].as_str()),
            (Some("s1"), Some("t1"))
        );
        assert_eq!(again["models"], json!(["m"]));
        relink.observe(&json!({"type": "registered", "session_id": "s2", "resume_token": "t2"}));
        assert_eq!(parsed(&relink.register())["resume_token"], "t2");
        relink.observe(&json!({"type": "revoked", "session_id": "s2"}));
        assert_eq!(parsed(&relink.register())["session_id"], Value::Null);
    }
}
