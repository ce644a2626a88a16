//! Serving editor requests, for every part they touch: checks in order
//! (origin, route, credential, rate), then the informational routes, the
//! answers found by id and the kept ones; model requests go on to
//! `invoke.rs`.

use std::time::Instant;

use serde_json::{json, Value};

use super::kept::{Served, KEPT_CONN};
use super::routing::{served_models, served_names};
use super::{by_id, security, trace, Provider};
use crate::api::responses::kept::{self, Kept};
use crate::api::routes::Stored;
use crate::api::{self, ollama, openai, AnswerIds, End, Handler, Info, ModelRequest, Timings};
use crate::error::ApiError;
use crate::http::{Fields, Request, Response};

use crate::store::may_see;
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
    pub fn admit_bridge(
        &mut self,
        conn: ConnId,
        request: &Request,
        guard: api::Guard,
        now: Instant,
    ) -> bool {
        self.now = now;
        self.stats.requests += 1;
        self.requests.arrived(conn, request.seq());
        let mut extra = Vec::new();
        let checked = self
            .origin_checked(request, &mut extra, now)
            .and_then(|()| {
                if request.method == "OPTIONS" {
                    return Ok(false);
                }
                self.key_checked(conn, request, guard, now).map(|_| true)
            });
        // The bridge meters what it takes; what is answered here is
        // metered as the provider's.
        match checked {
            Ok(true) => true,
            Ok(false) => {
                self.requests.meter(conn, api::routes::UNMATCHED, now);
                self.respond(conn, Response::full(204, "text/plain", ""), extra);
                false
            }
            Err(e) => {
                self.requests.meter(conn, api::routes::UNMATCHED, now);
                let dialect = crate::gateway::Bridge::refusal_dialect(request.path());
                self.respond_error(conn, dialect, &e, extra);
                false
            }
        }
    }

    /// [`security::check_origin`], a refusal counted and audited.
    fn origin_checked(
        &mut self,
        request: &Request,
        extra: &mut Fields,
        now: Instant,
    ) -> Result<(), ApiError> {
        security::check_origin(&self.config, request, extra).inspect_err(|e| {
            self.metrics.counters.security_refusals += 1;
            self.audit_refusal("security_refusal", request, e, now);
        })
    }

    /// [`security::authorize`], a refusal counted and audited.
    fn key_checked(
        &mut self,
        conn: ConnId,
        request: &Request,
        guard: api::Guard,
        now: Instant,
    ) -> Result<Option<usize>, ApiError> {
        let last = self.presented.entry(conn).or_default();
        security::authorize(&self.config, request, guard, last).inspect_err(|e| {
            self.metrics.counters.auth_failures += 1;
            self.audit_refusal("auth_failure", request, e, now);
        })
    }

    pub(super) fn serve(
        &mut self,
        conn: ConnId,
        request: &Request,
        extra: &mut Fields,
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
        let key = self.key_checked(conn, request, route.guard, now)?;
        let limits = self.config.request;
        let model_request = match route.handler {
            Handler::Model(api) => {
                let span = self.traces.request(request, route.index, now);
                self.requests.hold_span(conn, span);
                let mut parsed = api.parse(&request.body, &limits)?;
                trace::model(self.answer_span(conn), &parsed);
                self.traces.answered(&parsed.payload, now);
                if parsed.keep.as_ref().is_some_and(|k| k.previous.is_some()) {
                    // The conversation it continues, up to date.
                    self.pump_kept();
                }
                let max_messages = self.config.request.max_messages;
                (self.kept).continue_stored(&mut parsed, key, max_messages, now)?;
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
        if let Err(e) = self
            .limits
            .admit(key, model_request.prompt_tokens, now, extra)
        {
            self.stats.rate_limited += 1;
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
        extra: Fields,
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
                let created = unix_seconds(self.epoch.wall);
                let data: Vec<Value> = served_models(&self.sessions)
                    .into_iter()
                    .map(|(model, owner, _)| openai::model_entry(&model, created, &owner))
                    .collect();
                json!({"object": "list", "data": data})
            }
            Info::OpenAiModel => {
                let created = unix_seconds(self.epoch.wall);
                match served_models(&self.sessions)
                    .into_iter()
                    .find(|(m, _, _)| m == param)
                {
                    Some((model, owner, _)) => openai::model_entry(&model, created, &owner),
                    None => {
                        return Err(ApiError::model_not_found(
                            param,
                            &served_names(&self.sessions),
                        ))
                    }
                }
            }
            Info::OllamaTags => {
                let modified = rfc3339(self.epoch.wall);
                let models: Vec<Value> = served_models(&self.sessions)
                    .into_iter()
                    .map(|(model, _, _)| ollama::tags_entry(&model, &modified))
                    .collect();
                json!({"models": models})
            }
            Info::OllamaPs => {
                let models: Vec<Value> = served_models(&self.sessions)
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
            Info::ControlSessions => super::control::list(&self.sessions, self.epoch, now),
            Info::ControlPermissions => {
                (self.questions).list(&self.invocations, &self.sessions, now)
            }
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

    /// `GET /completions/{id}` (`cancel` false) or `DELETE` (true), for the
    /// API key `caller` (`None`: the bridge token, or keys not required).
    fn answer_by_id(
        &mut self,
        id: &str,
        cancel: bool,
        caller: Option<usize>,
        now: Instant,
    ) -> Result<Value, ApiError> {
        let running = self.answers.running(id).filter(|n| {
            self.invocations
                .get(*n)
                .is_some_and(|i| may_see(caller, i.key))
        });
        if let Some(n) = running {
            if !cancel {
                let inv = self.invocations.get(n).ok_or_else(|| by_id::unknown(id))?;
                let agent = self.sessions.get(&inv.session).map(|s| s.agent_id.clone());
                return Ok(by_id::Status::of(inv, agent, "in_progress").body(id));
            }
            self.cancel_answer(n, now);
            self.pump_kept();
        }
        (self.answers).ended_body(id, caller, cancel && running.is_none())
    }

    /// Starts a kept answer (`store: true`): see `kept.rs`. A background
    /// answer is answered at once, as queued (or, streamed, with its
    /// events so far, the connection following the rest).
    fn start_kept(
        &mut self,
        conn: ConnId,
        mut request: ModelRequest,
        pin: Option<&str>,
        key: Option<usize>,
        extra: Fields,
        now: Instant,
    ) -> Result<(), ApiError> {
        let Some(keep) = request.keep.take().filter(|k| k.store) else {
            return self.invoke(conn, request, pin, key, extra, now);
        };
        if keep.background && self.kept.running_background() >= self.config.max_background {
            return Err(ApiError::rate_limited(
                format!(
                    "{} background responses are running, as many as 'max_background_responses' allows: wait for one to end, or cancel one.",
                    self.config.max_background
                ),
                1,
            ));
        }
        let job_conn = ConnId(KEPT_CONN | self.ids.fresh());
        let asked_stream = request.stream;
        let asker = (!keep.background).then(|| (self.requests.on(conn), request.stream));
        let conversation = kept::conversation_of(&request.payload);
        (self.kept).start(job_conn, key, keep.items, conversation, asker);
        if keep.background {
            let span = self.requests.take_span(conn);
            self.kept.hold_span(job_conn, span);
        }
        // The job writes the answer as a stream, whatever the asker wants.
        request.stream = true;
        if let Err(e) = self.invoke(job_conn, request, pin, key, extra, now) {
            let span = self.kept.abandon(job_conn);
            self.requests.hold_span(conn, span);
            return Err(e);
        }
        if let Some(n) = self.invocations.answering(job_conn) {
            if !keep.background {
                self.invocations.answers_too(conn, n);
            }
        }
        self.pump_kept();
        if !keep.background {
            return Ok(());
        }
        let (Some(id), headers) = self
            .kept
            .began_background()
            .map_or((None, Vec::new()), |(id, headers)| (Some(id), headers))
        else {
            return Err(ApiError::agent("the answer ended before it began"));
        };
        if !asked_stream {
            let mut response = Response::json(200, self.kept.response(&id, key, now)?);
            response.headers.extend(headers);
            self.respond(conn, response, Vec::new());
            return Ok(());
        }
        // Streamed to its asker, a background answer is followed like any
        // other.
        let to = self.requests.on(conn);
        (self.kept).follow(to, &id, 0, headers, now, &mut self.outputs)
    }

    /// The stored routes: `GET`, `DELETE /v1/responses/{id}`, its
    /// `input_items` and `cancel` (see [`super::kept::KeptAnswers::serve`]).
    fn serve_kept(
        &mut self,
        conn: ConnId,
        route: Kept<'_>,
        request: &Request,
        caller: Option<usize>,
        extra: Fields,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.pump_kept();
        let body = match self.kept.serve(route, request.target(), caller, now)? {
            Served::Body(body) => body,
            Served::Follow { id, first } => {
                let to = self.requests.on(conn);
                return (self.kept).follow(to, id, first, extra, now, &mut self.outputs);
            }
            Served::Cancel(id) => {
                if let Some(n) = self.answers.running(id) {
                    self.cancel_answer(n, now);
                    self.pump_kept();
                }
                self.kept.response(id, caller, now)?
            }
        };
        self.respond(conn, Response::json(200, body), extra);
        Ok(())
    }
}
