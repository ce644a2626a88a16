//! Serving editor requests: checks in order (origin, route, credential,
//! rate), then the informational routes; model requests go on to
//! `invoke.rs`.

use std::time::Instant;

use serde_json::{json, Value};

use super::Provider;
use crate::api::{self, ollama, openai, Route};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::session::Status;
use crate::time::{rfc3339, unix_seconds};
use crate::ConnId;

impl Provider {
    pub(super) fn serve(
        &mut self,
        conn: ConnId,
        request: &Request,
        extra: &mut Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.check_origin(request, extra)?;
        if request.method == "OPTIONS" {
            self.respond(
                conn,
                Response::full(204, "text/plain", ""),
                std::mem::take(extra),
            );
            return Ok(());
        }
        let route = api::route(&request.method, request.path())?;
        let key = self.authorize(request, route.guard())?;
        let limits = self.config.request;
        let model_request = match &route {
            Route::OpenAiChat => openai::parse_chat(&request.body, &limits)?,
            Route::OpenAiCompletion => openai::parse_completion(&request.body, &limits)?,
            Route::OpenAiEmbeddings => openai::parse_embeddings(&request.body)?,
            Route::OllamaChat => ollama::parse_chat(&request.body, &limits)?,
            Route::OllamaGenerate => ollama::parse_generate(&request.body, &limits)?,
            Route::OllamaEmbed => ollama::parse_embed(&request.body)?,
            Route::AgentLink => return self.accept_agent(conn, request),
            other => {
                let other = other.clone();
                return self.serve_info(conn, other, request, std::mem::take(extra), now);
            }
        };
        self.admit(key, model_request.prompt_tokens, now, extra)?;
        if ollama::is_load_only(&model_request) {
            let body = ollama::load_only(&model_request.model, &rfc3339(self.wall(now)));
            self.respond_json(conn, body, std::mem::take(extra));
            return Ok(());
        }
        let pin = request.header("x-mcp-session").map(str::to_owned);
        self.invoke(
            conn,
            model_request,
            pin.as_deref(),
            key,
            std::mem::take(extra),
            now,
        )
    }

    /// Routes answered from the provider's own state.
    fn serve_info(
        &mut self,
        conn: ConnId,
        route: Route,
        request: &Request,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let wall = self.wall(now);
        let body = match route {
            Route::Root => {
                let text = "MCP Local Provider is running\n";
                self.respond(
                    conn,
                    Response::full(200, "text/plain; charset=utf-8", text),
                    extra,
                );
                return Ok(());
            }
            Route::Health => {
                let s = self.stats;
                json!({
                    "status": "ok",
                    "sessions": self.sessions.len(),
                    "agents": self.links.len(),
                    "in_flight": self.invocations.len(),
                    "requests": s.requests,
                    "invocations": s.invocations,
                    "dropped_agent_messages": s.dropped_messages,
                    "duplicate_chunks": s.duplicate_chunks,
                    "rate_limited": s.rate_limited,
                    "timeouts": s.timeouts,
                    "cancels": s.cancels,
                })
            }
            Route::OpenAiModels => {
                let created = unix_seconds(self.epoch.1);
                let data: Vec<Value> = self
                    .served_models()
                    .into_iter()
                    .map(|(model, owner, _)| openai::model_entry(&model, created, &owner))
                    .collect();
                json!({"object": "list", "data": data})
            }
            Route::OpenAiModel(id) => {
                let created = unix_seconds(self.epoch.1);
                match self.served_models().into_iter().find(|(m, _, _)| *m == id) {
                    Some((model, owner, _)) => openai::model_entry(&model, created, &owner),
                    None => return Err(ApiError::model_not_found(&id)),
                }
            }
            Route::OllamaTags => {
                let modified = rfc3339(self.epoch.1);
                let models: Vec<Value> = self
                    .served_models()
                    .into_iter()
                    .map(|(model, _, _)| ollama::tags_entry(&model, &modified))
                    .collect();
                json!({"models": models})
            }
            Route::OllamaPs => {
                let models: Vec<Value> = self
                    .served_models()
                    .into_iter()
                    .map(|(model, _, expires)| {
                        ollama::ps_entry(&model, &rfc3339(self.wall(expires)))
                    })
                    .collect();
                json!({"models": models})
            }
            Route::OllamaVersion => json!({"version": ollama::COMPAT_VERSION}),
            Route::OllamaShow => {
                let asked = ollama::parse_show(&request.body)?;
                let model = self
                    .sessions
                    .resolve_model(&asked)
                    .ok_or_else(|| ApiError::not_found(format!("model '{asked}' not found")))?;
                let embedding = self
                    .sessions
                    .iter()
                    .any(|s| s.serves(&model) && s.scopes.embedding);
                ollama::show_body(&model, embedding, &rfc3339(wall))
            }
            Route::ControlRegister => self.control_register(&request.body, now)?,
            Route::ControlApprove => self.control_approve(&request.body, now)?,
            Route::ControlRevoke => self.control_revoke(&request.body, now)?,
            Route::ControlSessions => self.control_sessions(now),
            // Model routes and the agent link were dispatched by `serve`.
            other => {
                return Err(ApiError::not_found(format!(
                    "{other:?} is not an informational route"
                )))
            }
        };
        self.respond_json(conn, body, extra);
        Ok(())
    }

    /// Models that an active, connected session serves right now:
    /// (name, owner, latest expiry), sorted by name.
    fn served_models(&self) -> Vec<(String, String, Instant)> {
        let mut out: Vec<(String, String, Instant)> = Vec::new();
        for s in self.sessions.iter() {
            if s.status != Status::Active || s.link.is_none() {
                continue;
            }
            for m in &s.models {
                match out.iter_mut().find(|(name, _, _)| name == m) {
                    Some(entry) => entry.2 = entry.2.max(s.expires_at),
                    None => out.push((m.clone(), s.agent_id.clone(), s.expires_at)),
                }
            }
        }
        out.sort();
        out
    }
}
