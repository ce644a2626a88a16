//! The agent's models, as editors choose them: `AGENT/MODEL` beside the
//! agent's own name (its default model). They are learned once, from a
//! first session opened as soon as the agent starts (which the first new
//! conversation then uses), and the agent registers with them. A turn's
//! session is set before its prompt to the model it asks for — with the
//! session's `model` config option where the agent has one, else with the
//! older `session/set_model` — and to the reasoning effort it asks for,
//! where the agent has a `thought_level` option with a value of that name.

use serde_json::{json, Value};

use super::{AcpAgent, At, Pending, Session};
use crate::agent::acp::rpc::Failure;
use crate::agent::ledger::error_frame;

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
    /// Its reasoning effort option, when it has one.
    pub effort: Option<Effort>,
}

/// A session's `thought_level` config option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effort {
    pub option: String,
    /// Each value, with its name.
    pub values: Vec<(String, String)>,
    pub current: Option<String>,
}

impl Effort {
    /// The value for an effort an editor asked for: the one whose value or
    /// name is it, whatever the case.
    fn value_for(&self, asked: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(value, name)| {
                value.eq_ignore_ascii_case(asked) || name.eq_ignore_ascii_case(asked)
            })
            .map(|(value, _)| value.as_str())
    }
}

/// A select option's values, flat or in groups.
fn values(option: &Value) -> impl Iterator<Item = &Value> {
    let values = option["options"].as_array().into_iter().flatten();
    values.flat_map(|v| match v["options"].as_array() {
        Some(group) => group.iter().collect::<Vec<_>>(),
        None => vec![v],
    })
}

impl Models {
    /// From `configOptions` (the option of category `model`), else from
    /// the older `models` state; the effort from the `thought_level` one.
    pub fn of(result: &Value) -> Models {
        let options = result["configOptions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let effort = options
            .iter()
            .find(|o| o["category"] == "thought_level")
            .and_then(|o| {
                Some(Effort {
                    option: o["id"].as_str()?.to_owned(),
                    values: values(o)
                        .filter_map(|v| {
                            let value = v["value"].as_str()?;
                            Some((
                                value.to_owned(),
                                v["name"].as_str().unwrap_or(value).to_owned(),
                            ))
                        })
                        .collect(),
                    current: o["currentValue"].as_str().map(str::to_owned),
                })
            });
        if let Some(option) = options.iter().find(|o| o["category"] == "model") {
            return Models {
                ids: listed(values(option).map(|v| &v["value"])),
                current: option["currentValue"].as_str().map(str::to_owned),
                option: option["id"].as_str().map(str::to_owned),
                effort,
            };
        }
        let state = &result["models"];
        let available = state["availableModels"].as_array().into_iter().flatten();
        Models {
            ids: listed(available.map(|m| &m["modelId"])),
            current: state["currentModelId"].as_str().map(str::to_owned),
            option: None,
            effort,
        }
    }
}

/// What a session is set to before a turn's prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Model(String),
    /// A value of the session's effort option.
    Effort(String),
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
    /// with its models, the session is its process's spare, and the probe of the editor's tools' way opens next.
    pub(super) fn first_session_opened(
        &mut self,
        slot: usize,
        result: Result<Value, Failure>,
        now: std::time::Instant,
    ) {
        if let Some(method) = result
            .as_ref()
            .err()
            .and_then(|f| self.pool.login_method(slot, f))
        {
            return self.pool.authenticate(slot, method, None);
        }
        let opened = result.ok().and_then(|result| {
            let id = result["sessionId"].as_str()?.to_owned();
            Some((id, Models::of(&result)))
        });
        let opened = opened.filter(|(id, _)| {
            self.take_id(&At {
                slot,
                id: id.clone(),
            })
        });
        let Some((id, models)) = opened else {
            self.spares = false;
            self.register(&[]);
            return self.drain_queue(now);
        };
        self.default_model.clone_from(&models.current);
        self.register(&models.ids);
        let mut session = Session::new(now, None);
        session.spare = true;
        session.know(models);
        self.sessions.insert(At { slot, id }, session);
        self.probe(slot);
        self.drain_queue(now);
    }

    /// Registers on the link with the agent's own name and `models` under
    /// it (once: a later link registers the same).
    pub(super) fn register(&mut self, models: &[String]) {
        if self.registered {
            return;
        }
        self.registered = true;
        let own = std::iter::once(self.plan.model.clone());
        let names = models.iter().map(|m| format!("{}/{m}", self.plan.model));
        self.relink
            .set("models", json!(own.chain(names).collect::<Vec<_>>()));
        self.ready.push_back(self.relink.register());
    }

    /// Sets the session to what its turn wants, a setting at a time: the
    /// prompt `text` then goes once the agent answered (`None`), else now
    /// (it comes back).
    pub(super) fn settle(&mut self, at: &At, text: String) -> Option<String> {
        let id = at.id.as_str();
        let Some((session, turn)) = self
            .sessions
            .get(at)
            .and_then(|s| Some((s, s.turn.as_ref()?)))
        else {
            return Some(text);
        };
        let model = turn
            .model
            .clone()
            .filter(|m| session.model.as_ref() != Some(m));
        let effort = session.effort.as_ref().and_then(|e| {
            let value = e.value_for(turn.effort.as_deref()?)?;
            (e.current.as_deref() != Some(value)).then(|| (e.option.clone(), value.to_owned()))
        });
        let (method, params, setting) = match (model, effort) {
            (Some(model), _) => match &session.model_option {
                Some(option) => (
                    "session/set_config_option",
                    json!({"sessionId": id, "configId": option, "value": model}),
                    Setting::Model(model),
                ),
                None => (
                    "session/set_model",
                    json!({"sessionId": id, "modelId": model}),
                    Setting::Model(model),
                ),
            },
            (None, Some((option, value))) => (
                "session/set_config_option",
                json!({"sessionId": id, "configId": option, "value": value}),
                Setting::Effort(value),
            ),
            (None, None) => return Some(text),
        };
        let pending = Pending::Set {
            session: at.clone(),
            setting,
            text,
        };
        self.pool.call(at.slot, method, params, pending);
        None
    }

    /// The agent answered a setting: the next one or the prompt goes. A
    /// model it refuses fails the turn with why; an effort it refuses is
    /// let be (the turn goes on at the session's effort).
    pub(super) fn set(
        &mut self,
        at: &At,
        setting: Setting,
        text: String,
        result: Result<Value, Failure>,
        now: std::time::Instant,
    ) {
        let program = self.program().to_owned();
        let Some(session) = self.sessions.get_mut(at) else {
            return;
        };
        match (setting, result) {
            (Setting::Model(model), Ok(_)) => session.model = Some(model),
            (Setting::Effort(value), Ok(_)) => {
                if let Some(effort) = session.effort.as_mut() {
                    effort.current = Some(value);
                }
            }
            (Setting::Effort(value), Err(failure)) => {
                tracing::info!("`{program}` refused effort {value}: {}", failure.message);
                session.effort = None;
            }
            (Setting::Model(model), Err(failure)) => {
                if let Some(turn) = session.turn.take() {
                    let message = format!(
                        "`{program}` could not switch to model {model}: {}",
                        failure.message
                    );
                    self.ready
                        .push_back(error_frame(&turn.invoke, &message, "model_not_found"));
                }
                return self.drain_queue(now);
            }
        }
        self.send_prompt(at, text);
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
                effort: None,
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
                effort: None,
            }
        );
        assert_eq!(Models::of(&json!({"sessionId": "s"})), Models::default());
        let efforts = json!({"configOptions": [{"id": "reasoning", "category": "thought_level",
            "currentValue": "medium", "options": [{"value": "low", "name": "Low"}, {"value": "high", "name": "High"}]}]});
        let effort = Models::of(&efforts).effort.unwrap_or_default();
        assert_eq!(effort.option, "reasoning");
        assert_eq!(effort.value_for("HIGH"), Some("high"));
        assert_eq!(effort.value_for("extreme"), None);
    }
}
