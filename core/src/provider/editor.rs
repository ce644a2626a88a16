//! Serving editor requests: checks in order (origin, route, credential,
//! rate), then the informational routes; model requests go on to
//! `invoke.rs`.

use std::time::Instant;

use serde_json::{json, Value};

use super::Provider;
use crate::api::responses::kept::Kept;
use crate::api::routes::Stored;
use crate::api::{self, ollama, openai, AnswerIds, End, Handler, Info, Timings};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::session::Status;
use crate::time::{rfc3339, unix_seconds};
use crate::ConnId;

/// The dashboard: a static page that reads the JSON endpoints with the
/// bridge token the user types into it.
const DASHBOARD: &str = include_str!("../../assets/dashboard.html");

/// The page loads nothing from elsewhere and talks only to this server.
const DASHBOARD_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Whether a `GET /` comes from a browser (it asks for HTML first).
fn wants_html(request: &Request) -> bool {
    request
        .header("accept")
        .is_some_and(|a| a.contains("text/html"))
}

impl Provider {
    /// A request for the MCP bridge (`/mcp/…`): the checks every route has
    /// (local Host and Origin, the API key), with their metrics and audit
    /// lines. Whether the bridge may have it; if not, it was answered here
    /// (a CORS preflight with 204, a refusal with its error).
    pub fn admit_bridge(&mut self, conn: ConnId, request: &Request, now: Instant) -> bool {
        self.now = now;
        self.stats.requests += 1;
        self.requests.insert(conn, request.seq());
        self.meter_start(conn, api::routes::UNMATCHED, now);
        let mut extra = Vec::new();
        let checked = self
            .origin_checked(request, &mut extra, now)
            .and_then(|()| {
                if request.method == "OPTIONS" {
                    return Ok(false);
                }
                // Each route's rule is on its row of the bridge's table.
                let guard = crate::bridge::guard(&request.method, request.path());
                self.key_checked(request, guard, now).map(|_| true)
            });
        match checked {
            Ok(true) => {
                self.meters.remove(&conn);
                true
            }
            Ok(false) => {
                self.respond(conn, Response::full(204, "text/plain", ""), extra);
                false
            }
            Err(e) => {
                let dialect = crate::gateway::Bridge::refusal_dialect(request.path());
                self.respond_error(conn, dialect, &e, extra);
                false
            }
        }
    }

    /// [`Provider::check_origin`], a refusal counted and audited.
    fn origin_checked(
        &mut self,
        request: &Request,
        extra: &mut Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.check_origin(request, extra).inspect_err(|e| {
            self.metrics.counters.security_refusals += 1;
            self.audit_refusal("security_refusal", request, e, now);
        })
    }

    /// [`Provider::authorize`], a refusal counted and audited.
    fn key_checked(
        &mut self,
        request: &Request,
        guard: api::Guard,
        now: Instant,
    ) -> Result<Option<usize>, ApiError> {
        self.authorize(request, guard).inspect_err(|e| {
            self.metrics.counters.auth_failures += 1;
            self.audit_refusal("auth_failure", request, e, now);
        })
    }

    pub(super) fn serve(
        &mut self,
        conn: ConnId,
        request: &Request,
        extra: &mut Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.origin_checked(request, extra, now)?;
        if request.method == "OPTIONS" {
            self.respond(
                conn,
                Response::full(204, "text/plain", ""),
                std::mem::take(extra),
            );
            return Ok(());
        }
        let route = api::route(&request.method, request.path())?;
        let key = self.key_checked(request, route.guard, now)?;
        let limits = self.config.request;
        let model_request = match route.handler {
            Handler::Model(api) => {
                self.trace_request(conn, request, route.index, now);
                let mut parsed = api.parse(&request.body, &limits)?;
                self.trace_model(conn, &parsed);
                (self.tool_spans).answered(&mut self.tracer, &parsed.payload, now);
                self.continue_stored(&mut parsed, key, now)?;
                api::tool_results(&parsed.payload)?;
                parsed
            }
            Handler::CountTokens(count) => {
                let tokens = count(&request.body, &limits)?;
                self.respond_json(conn, json!({"input_tokens": tokens}), std::mem::take(extra));
                return Ok(());
            }
            Handler::AgentLink => return self.accept_agent(conn, request),
            Handler::Stored(Stored::Response) => {
                let kept = Kept::of(&request.method, route.param)?;
                let extra = std::mem::take(extra);
                return self.serve_kept(conn, kept, request, key, extra, now);
            }
            Handler::Stored(Stored::Answer) => {
                let cancel = request.method == "DELETE";
                let body = self.answer_by_id(route.param, cancel, key, now)?;
                self.respond_json(conn, body, std::mem::take(extra));
                return Ok(());
            }
            Handler::Info(info) => {
                let extra = std::mem::take(extra);
                return self.serve_info(conn, info, route.param, request, extra, now);
            }
        };
        if let Err(e) = self.admit(key, model_request.prompt_tokens, now, extra) {
            self.audit_refusal("rate_limited", request, &e, now);
            return Err(e);
        }
        if model_request.answer_now {
            let wall = self.wall(now);
            let ids = AnswerIds::new(model_request.api, String::new(), unix_seconds(wall));
            let answer = crate::answer::Answer::new(false);
            let end = End {
                answer: &answer,
                vectors: &[],
                wall,
                timings: Timings::default(),
            };
            let body = model_request.api.encoder(&model_request, ids).whole(&end);
            self.respond_json(conn, body, std::mem::take(extra));
            return Ok(());
        }
        let pin = request.header("x-mcp-session").map(str::to_owned);
        self.start_kept(
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
        route: Info,
        param: &str,
        request: &Request,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let wall = self.wall(now);
        let body = match route {
            Info::Root if !wants_html(request) => {
                let text = "MCP Local Provider is running\n";
                self.respond(
                    conn,
                    Response::full(200, "text/plain; charset=utf-8", text),
                    extra,
                );
                return Ok(());
            }
            Info::Root | Info::Dashboard => {
                let page = Response::full(200, "text/html; charset=utf-8", DASHBOARD)
                    .with_header("content-security-policy", DASHBOARD_POLICY)
                    .with_header("x-frame-options", "DENY");
                self.respond(conn, page, extra);
                return Ok(());
            }
            Info::Metrics => {
                let page = self.metrics.render(&self.gauges());
                let response =
                    Response::full(200, "text/plain; version=0.0.4; charset=utf-8", page);
                self.respond(conn, response, extra);
                return Ok(());
            }
            Info::HealthDeep => {
                let (healthy, body) = self.deep_health();
                let status = if healthy { 200 } else { 503 };
                self.respond(conn, Response::json(status, body.to_string()), extra);
                return Ok(());
            }
            Info::ControlStreams => self.control_streams(now),
            Info::ControlSearches => match &self.bridge {
                Some(bridge) => bridge.searches_json(),
                None => crate::bridge::Report::default().searches_json(),
            },
            Info::Health => {
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
            Info::OpenAiModels => {
                let created = unix_seconds(self.epoch.1);
                let data: Vec<Value> = self
                    .served_models()
                    .into_iter()
                    .map(|(model, owner, _)| openai::model_entry(&model, created, &owner))
                    .collect();
                json!({"object": "list", "data": data})
            }
            Info::OpenAiModel => {
                let created = unix_seconds(self.epoch.1);
                match self
                    .served_models()
                    .into_iter()
                    .find(|(m, _, _)| m == param)
                {
                    Some((model, owner, _)) => openai::model_entry(&model, created, &owner),
                    None => return Err(ApiError::model_not_found(param, &self.served_names())),
                }
            }
            Info::OllamaTags => {
                let modified = rfc3339(self.epoch.1);
                let models: Vec<Value> = self
                    .served_models()
                    .into_iter()
                    .map(|(model, _, _)| ollama::tags_entry(&model, &modified))
                    .collect();
                json!({"models": models})
            }
            Info::OllamaPs => {
                let models: Vec<Value> = self
                    .served_models()
                    .into_iter()
                    .map(|(model, _, expires)| {
                        ollama::ps_entry(&model, &rfc3339(self.wall(expires)))
                    })
                    .collect();
                json!({"models": models})
            }
            Info::OllamaVersion => json!({"version": ollama::COMPAT_VERSION}),
            Info::OllamaPull => {
                let (asked, stream) = ollama::parse_pull(&request.body)?;
                if self.sessions.resolve_model(&asked).is_none() {
                    return Err(ApiError::not_found(format!(
                        "pull model manifest: model '{asked}' is not served by any connected agent"
                    )));
                }
                // Agents' models are already here: pulling succeeds at once.
                let body = json!({"status": "success"});
                let response = if stream {
                    Response::full(200, api::NDJSON, format!("{body}\n"))
                } else {
                    Response::json(200, body.to_string())
                };
                self.respond(conn, response, extra);
                return Ok(());
            }
            Info::OllamaShow => {
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
            Info::ControlRegister => self.control_register(&request.body, now)?,
            Info::ControlApprove => self.control_approve(&request.body, now)?,
            Info::ControlRevoke => self.control_revoke(&request.body, now)?,
            Info::ControlSessions => self.control_sessions(now),
            Info::ControlPermissions => self.control_permissions(now),
            Info::ControlPermission => self.control_permission(&request.body, now)?,
        };
        self.respond_json(conn, body, extra);
        Ok(())
    }

    /// A refused request, for the audit trail: what was asked and why it
    /// was refused (the message never holds the credential itself).
    fn audit_refusal(&mut self, event: &str, request: &Request, error: &ApiError, now: Instant) {
        if !self.audit.enabled() {
            return;
        }
        let wall = self.wall(now);
        self.audit.record(
            wall,
            event,
            json!({
                "method": request.method,
                "route": crate::api::routes::label(crate::api::routes::index_of(request.path())),
                "status": error.status,
                "reason": error.message,
            }),
        );
    }

    /// Models that an active, connected session serves right now:
    /// (name, owner, latest expiry), sorted by name.
    /// The names of the models served, sorted.
    pub(super) fn served_names(&self) -> Vec<String> {
        self.served_models()
            .into_iter()
            .map(|(m, _, _)| m)
            .collect()
    }

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
