//! The agent's models, as editors choose them: `AGENT/MODEL` beside the
//! agent's own name (its default model). They are learned once, from a
//! first session opened as soon as the agent starts (which the first new
//! conversation then uses), and the agent registers with them; a turn that
//! asks for one sets it on its session before its prompt — with the
//! session's `model` config option where the agent has one, else with the
//! older `session/set_model`.

use serde_json::{json, Value};

use super::{AcpAgent, Pending, Session};
use crate::agent::acp::rpc::Failure;
use crate::agent::exec::error_frame;

/// Models listed at most: an agent's list is for people to choose from.
const MAX_MODELS: usize = 100;
/// The longest model id listed.
const MAX_ID: usize = 200;

/// What a session's `session/new` answer says of its models.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Models {
    /// The ids an editor may choose.
    pub ids: Vec<String>,
    /// The session's model now.
    pub current: Option<String>,
    /// The config option that sets it, when the agent has one.
    pub option: Option<String>,
}

impl Models {
    /// From `configOptions` (the option of category `model`, its values
    /// flat or in groups), else from the older `models` state.
    pub fn of(result: &Value) -> Models {
        let options = result["configOptions"].as_array().into_iter().flatten();
        if let Some(option) = options.into_iter().find(|o| o["category"] == "model") {
            let values = option["options"].as_array().into_iter().flatten();
            let flat = values.flat_map(|v| match v["options"].as_array() {
                Some(group) => group.iter().collect::<Vec<_>>(),
                None => vec![v],
            });
            return Models {
                ids: listed(flat.map(|v| &v["value"])),
                current: option["currentValue"].as_str().map(str::to_owned),
                option: option["id"].as_str().map(str::to_owned),
            };
        }
        let state = &result["models"];
        let available = state["availableModels"].as_array().into_iter().flatten();
        Models {
            ids: listed(available.map(|m| &m["modelId"])),
            current: state["currentModelId"].as_str().map(str::to_owned),
            option: None,
        }
    }
}

/// The ids fit to list, at most [`MAX_MODELS`], each once.
fn listed<'a>(ids: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids.filter_map(Value::as_str) {
        let fit = !id.is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control);
        if fit && !out.iter().any(|o| o == id) && out.len() < MAX_MODELS {
            out.push(id.to_owned());
        }
    }
    out
}

impl AcpAgent {
    /// The model a request asks for, as the agent names it: `AGENT/MODEL`'s
    /// `MODEL`, or the agent's default for its own name (when known).
    pub(super) fn wanted_model(&self, requested: &str) -> Option<String> {
        let prefix = format!("{}/", self.plan.model);
        match requested.strip_prefix(&prefix) {
            Some(model) => Some(model.to_owned()),
            None => self.default_model.clone(),
        }
    }

    /// The first session of a started agent answered: the agent registers
    /// with its models, and the session waits for the first conversation.
    pub(super) fn probed(&mut self, result: Result<Value, Failure>, now: std::time::Instant) {
        let opened = result.ok().and_then(|result| {
            let id = result["sessionId"].as_str()?.to_owned();
            Some((id, Models::of(&result)))
        });
        let Some((id, models)) = opened else {
            return self.register(&[]);
        };
        self.default_model.clone_from(&models.current);
        self.register(&models.ids);
        let mut session = Session::new(now, None);
        session.fresh = true;
        session.model = models.current;
        session.model_option = models.option;
        self.sessions.insert(id, session);
        self.drain_queue(now);
    }

    /// Registers on the link with the agent's own name and `models` under
    /// it (once: a later link registers the same).
    pub(super) fn register(&mut self, models: &[String]) {
        if self.probed {
            return;
        }
        self.probed = true;
        let own = std::iter::once(self.plan.model.clone());
        let names = models.iter().map(|m| format!("{}/{m}", self.plan.model));
        self.relink
            .set("models", json!(own.chain(names).collect::<Vec<_>>()));
        self.ready.push_back(self.relink.register());
    }

    /// Sets the model the session's turn wants, when it has another: the
    /// prompt `text` then goes once the agent answered (`None`), else now
    /// (it comes back).
    pub(super) fn set_model(&mut self, id: &str, text: String) -> Option<String> {
        let Some(session) = self.sessions.get(id) else {
            return Some(text);
        };
        let wanted = session.turn.as_ref().and_then(|t| t.model.clone());
        let Some(wanted) = wanted.filter(|w| session.model.as_ref() != Some(w)) else {
            return Some(text);
        };
        let (method, params) = match &session.model_option {
            Some(option) => (
                "session/set_config_option",
                json!({"sessionId": id, "configId": option, "value": wanted}),
            ),
            None => (
                "session/set_model",
                json!({"sessionId": id, "modelId": wanted}),
            ),
        };
        let pending = Pending::SetModel {
            session: id.to_owned(),
            model: wanted,
            text,
        };
        self.call(method, params, pending);
        None
    }

    /// The agent answered a model change: the prompt goes, or the turn
    /// fails with why.
    pub(super) fn model_set(
        &mut self,
        id: &str,
        model: String,
        text: String,
        result: Result<Value, Failure>,
        now: std::time::Instant,
    ) {
        let program = self.program().to_owned();
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        match result {
            Ok(_) => {
                session.model = Some(model);
                self.send_prompt(id, text);
            }
            Err(failure) => {
                if let Some(turn) = session.turn.take() {
                    let message = format!(
                        "`{program}` could not switch to model {model}: {}",
                        failure.message
                    );
                    self.ready
                        .push_back(error_frame(&turn.invoke, &message, "model_not_found"));
                }
                self.drain_queue(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_come_from_the_model_option_else_the_older_state() {
        let configured = json!({"sessionId": "s", "configOptions": [
            {"id": "mode", "category": "mode", "options": [{"value": "ask"}]},
            {"id": "model", "category": "model", "type": "select", "currentValue": "sonnet",
             "options": [{"value": "sonnet", "name": "Sonnet"},
                         {"group": "more", "options": [{"value": "opus"}, {"value": "sonnet"}]}]}]});
        assert_eq!(
            Models::of(&configured),
            Models {
                ids: vec!["sonnet".into(), "opus".into()],
                current: Some("sonnet".into()),
                option: Some("model".into()),
            }
        );
        let older = json!({"models": {"currentModelId": "gemini-2.5-pro", "availableModels": [
            {"modelId": "gemini-2.5-pro"}, {"modelId": "gemini-2.5-flash"}, {"modelId": "bad\nid"}, {"modelId": 7}]}});
        assert_eq!(
            Models::of(&older),
            Models {
                ids: vec!["gemini-2.5-pro".into(), "gemini-2.5-flash".into()],
                current: Some("gemini-2.5-pro".into()),
                option: None,
            }
        );
        assert_eq!(Models::of(&json!({"sessionId": "s"})), Models::default());
    }
}
