//! An agent's session across links. When its link drops (the server
//! restarted, the network blinked), an agent dials again and registers
//! with the session's id and newest resume token, so the provider gives it
//! its session back rather than a new one while the old one lingers for
//! the grace period. A provider that no longer knows the session (it was
//! restarted) answers with a new session, which is then the one resumed.
//!
//! Every agent reads the provider's frames through [`Relink::read`], so
//! they all keep their session and answer `ping` the same way.

use std::collections::VecDeque;

use serde_json::Value;

use crate::agent::to_agent::ToAgent;

/// The answer to the provider's `ping`.
const PONG: &str = r#"{"type":"pong"}"#;

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

    /// Reads a provider frame: what it says of the session is kept, a
    /// `ping` is answered (into `ready`), and any other message comes back
    /// for the agent to act on. A frame that does not read is let be.
    pub fn read(&mut self, text: &str, ready: &mut VecDeque<String>) -> Option<ToAgent> {
        let message = ToAgent::parse(text).ok()?;
        self.observe(&message);
        if let ToAgent::Ping = message {
            ready.push_back(PONG.to_owned());
            return None;
        }
        Some(message)
    }

    /// Keeps what a provider message says about the session: `registered`
    /// carries a new resume token (and the previous one stops working);
    /// a revoked session is not asked back for.
    fn observe(&mut self, message: &ToAgent) {
        match message {
            ToAgent::Registered {
                session_id: Some(id),
                resume_token: Some(token),
                ..
            } => self.session = Some((id.clone(), token.clone())),
            ToAgent::Revoked { .. } => self.session = None,
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

    /// Reads `frame`, which is no message for the agent itself.
    fn observe(relink: &mut Relink, frame: Value) {
        let mut ready = VecDeque::new();
        assert!(relink.read(&frame.to_string(), &mut ready).is_some());
        assert!(ready.is_empty());
    }

    #[test]
    fn a_later_link_asks_for_the_session_with_the_newest_token() {
        let mut relink = Relink::new(json!({"type": "register", "agent_id": "a", "models": ["m"]}));
        assert_eq!(parsed(&relink.register())["session_id"], Value::Null);
        observe(
            &mut relink,
            json!({"type": "registered", "session_id": "s1", "resume_token": "t1"}),
        );
        // `registered` answering `renew` carries no token: the last stays.
        observe(
            &mut relink,
            json!({"type": "registered", "session_id": "s1"}),
        );
        let again = parsed(&relink.register());
        assert_eq!(
            (again["session_id"].as_str(), again["resume_token"].as_str()),
            (Some("s1"), Some("t1"))
        );
        assert_eq!(again["models"], json!(["m"]));
        observe(
            &mut relink,
            json!({"type": "registered", "session_id": "s2", "resume_token": "t2"}),
        );
        assert_eq!(parsed(&relink.register())["resume_token"], "t2");
        observe(&mut relink, json!({"type": "revoked", "session_id": "s2"}));
        assert_eq!(parsed(&relink.register())["session_id"], Value::Null);
    }

    #[test]
    fn a_ping_is_answered_and_what_does_not_read_let_be() {
        let mut relink = Relink::new(json!({"type": "register", "agent_id": "a", "models": ["m"]}));
        let mut ready = VecDeque::new();
        assert!(relink.read(r#"{"type":"ping"}"#, &mut ready).is_none());
        assert!(relink.read("not json", &mut ready).is_none());
        assert!(relink.read(r#"{"type":"teleport"}"#, &mut ready).is_none());
        assert_eq!(ready, [PONG]);
        let cancel = relink.read(r#"{"type":"cancel","id":"inv-1"}"#, &mut ready);
        assert!(matches!(cancel, Some(ToAgent::Cancel { id }) if id == "inv-1"));
    }
}
