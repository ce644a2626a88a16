//! Answers kept past their connection: the Responses API's `store`,
//! `background` and `previous_response_id`.
//!
//! A kept answer is written by the provider itself rather than by its
//! editor's connection. Its invocation answers a job (a connection number
//! with [`KEPT_CONN`] set, which no driver hands out); the job's own
//! [`Answering`] writes the answer as the Responses API's event stream,
//! and the job records what it needs of it in the [`Store`] (the response
//! object of every lifecycle event; a background answer's every event)
//! and passes the bytes on: to the connection that asked and waits for it
//! (streamed, or as one body at the end), and to the connections following
//! a background answer (`GET /v1/responses/{id}?stream=true`). So the
//! answer goes on when its asker leaves, any number of clients can pick it
//! up from any event, and a chained request finds the conversation it
//! continues.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::{Output, Provider, RequestId};
use crate::api::responses::kept::{self, Kept, Replay};
use crate::api::{ModelRequest, SSE};
use crate::error::{ApiError, Dialect};
use crate::http::{Request, Response};
use crate::idmap::IdMap;
use crate::store::{Record, Status, Store};
use crate::stream::{AnswerEvent, Answering};
use crate::telemetry::Span;
use crate::ConnId;

/// The bit that marks a kept answer's job among connection numbers.
pub(super) const KEPT_CONN: u64 = 1 << 63;

/// Whether `conn` names a kept answer's job rather than a connection.
pub(super) fn is_kept(conn: ConnId) -> bool {
    conn.0 & KEPT_CONN != 0
}

/// The provider's kept answers: the store, and the jobs still running.
#[derive(Debug)]
pub(super) struct KeptAnswers {
    pub(super) store: Store,
    jobs: IdMap<ConnId, Job>,
    /// Running jobs by response id.
    by_id: HashMap<String, ConnId>,
    /// Connections following a background answer → its job.
    followers: IdMap<ConnId, ConnId>,
    /// Background answers started since the start.
    pub(super) background_total: u64,
    /// The id and head headers of the job that began last: what the
    /// asker of a background answer is told at once, even if the answer
    /// is over by then.
    last_seen: Option<(String, Vec<(&'static str, String)>)>,
    /// Scratch for [`Provider::kept_event`].
    made: Vec<Output>,
}

impl KeptAnswers {
    pub(super) fn new(store: Store) -> Self {
        KeptAnswers {
            store,
            jobs: IdMap::default(),
            by_id: HashMap::new(),
            followers: IdMap::default(),
            background_total: 0,
            last_seen: None,
            made: Vec::new(),
        }
    }

    /// The connection waiting for job `conn`'s answer, if any.
    pub(super) fn live_conn(&self, conn: ConnId) -> Option<ConnId> {
        self.jobs.get(&conn)?.live.map(|l| l.to.conn)
    }

    /// Job `conn`'s hold on its request's span (see `trace.rs`).
    pub(super) fn job_span(&mut self, conn: ConnId) -> Option<&mut Option<Span>> {
        Some(&mut self.jobs.get_mut(&conn)?.span)
    }

    fn running_background(&self) -> usize {
        self.jobs.values().filter(|j| j.background).count()
    }
}

/// One kept answer while it runs.
#[derive(Debug)]
struct Job {
    /// The response's id, once its first event named it.
    id: Option<String>,
    owner: Option<usize>,
    background: bool,
    /// The input items, until the record is made.
    items: Vec<Value>,
    /// The conversation up to this response's output (no instructions).
    conversation: Vec<Value>,
    answering: Answering,
    /// The connection that asked and waits for the answer.
    live: Option<Live>,
    /// Connections following a background answer's events.
    followers: Vec<RequestId>,
    /// The stream head's headers (rate limits, CORS, the answer's id), for
    /// an answer sent as one body.
    headers: Vec<(&'static str, String)>,
    /// The error that ended the answer, for an answer sent as one body.
    failure: Option<ApiError>,
    /// A background answer's request span: it ends with the answer, after
    /// the asker was answered.
    span: Option<Span>,
}

#[derive(Debug, Clone, Copy)]
struct Live {
    to: RequestId,
    stream: bool,
}

impl Provider {
    /// A `previous_response_id`: the stored conversation goes before the
    /// request's own input (after its instructions).
    pub(super) fn continue_stored(
        &mut self,
        request: &mut ModelRequest,
        caller: Option<usize>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let Some(previous) = request.keep.as_ref().and_then(|k| k.previous.clone()) else {
            return Ok(());
        };
        self.pump_kept();
        let record = self
            .kept
            .store
            .get(&previous, caller, now)
            .map_err(|missing| kept::previous_not_found(&previous, missing))?;
        if !record.status.is_final() {
            let mut e = ApiError::invalid_param(
                "previous_response_id",
                format!("Previous response with id '{previous}' is still in progress: continue it once it has ended."),
            );
            e.code = Some("previous_response_in_progress");
            return Err(e);
        }
        let history: Vec<Value> = serde_json::from_slice(&record.history).unwrap_or_default();
        request.prompt_tokens += crate::api::tokens_for(record.history.len());
        kept::splice(&mut request.payload, history);
        let messages = request.payload["messages"].as_array().map_or(0, Vec::len);
        let max = self.config.request.max_messages;
        if messages > max {
            return Err(ApiError::invalid_param(
                "previous_response_id",
                format!("The conversation continued from '{previous}' would have {messages} messages, more than the {max} a request may have ('max_messages'): start a new one with a summary."),
            ));
        }
        Ok(())
    }

    /// Starts a kept answer (`store: true`): see the module docs. A
    /// background answer is answered at once, as queued (or, streamed,
    /// with its events so far, the connection following the rest).
    pub(super) fn start_kept(
        &mut self,
        conn: ConnId,
        mut request: ModelRequest,
        pin: Option<&str>,
        key: Option<usize>,
        extra: Vec<(&'static str, String)>,
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
        let job_conn = ConnId(KEPT_CONN | self.fresh_id());
        let asked_stream = request.stream;
        let asker = self.request_on(conn);
        let job = Job {
            id: None,
            owner: key,
            background: keep.background,
            items: keep.items,
            conversation: kept::conversation_of(&request.payload),
            answering: Answering::default(),
            live: (!keep.background).then_some(Live {
                to: asker,
                stream: request.stream,
            }),
            followers: Vec::new(),
            headers: Vec::new(),
            failure: None,
            span: None,
        };
        self.kept.jobs.insert(job_conn, job);
        if keep.background {
            let span = self.meters.get_mut(&conn).and_then(|m| m.span.take());
            if let Some(job) = self.kept.jobs.get_mut(&job_conn) {
                job.span = span;
            }
        }
        // The job writes the answer as a stream, whatever the asker wants.
        request.stream = true;
        self.kept.last_seen = None;
        if let Err(e) = self.invoke(job_conn, request, pin, key, extra, now) {
            let span = self.kept.jobs.remove(&job_conn).and_then(|j| j.span);
            if let Some(m) = self.meters.get_mut(&conn) {
                m.span = m.span.take().or(span);
            }
            return Err(e);
        }
        if let Some(&n) = self.by_conn.get(&job_conn) {
            if !keep.background {
                self.by_conn.insert(conn, n);
            }
        }
        self.pump_kept();
        if !keep.background {
            return Ok(());
        }
        self.kept.background_total += 1;
        let (Some(id), headers) = self
            .kept
            .last_seen
            .take()
            .map_or((None, Vec::new()), |(id, headers)| (Some(id), headers))
        else {
            return Err(ApiError::agent("the answer ended before it began"));
        };
        if !asked_stream {
            let record = self
                .kept
                .store
                .get(&id, key, now)
                .map_err(|m| kept::not_found(&id, m))?;
            let mut response = Response::json(200, record.response.clone());
            response.headers.extend(headers);
            self.respond(conn, response, Vec::new());
            return Ok(());
        }
        // Streamed to its asker, a background answer is followed like any
        // other.
        let job_conn = self.kept.by_id.get(&id).copied();
        self.follow(conn, &id, job_conn, 0, headers, now)
    }

    /// Sends `conn` a kept answer's events from index `first` on, and the
    /// rest as they come (or the end, if it is over).
    fn follow(
        &mut self,
        conn: ConnId,
        id: &str,
        job_conn: Option<ConnId>,
        first: usize,
        headers: Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        let to = self.request_on(conn);
        let record = self
            .kept
            .store
            .get(id, None, now)
            .map_err(|m| kept::not_found(id, m))?;
        let mut replay = BytesMut::new();
        for event in record.events.get(first..).unwrap_or_default() {
            replay.extend_from_slice(event);
        }
        let over = record.status.is_final();
        let mut head = Response::stream(SSE);
        head.headers.extend(headers);
        self.outputs
            .push_back(Output::Respond { to, response: head });
        if !replay.is_empty() {
            let data = replay.freeze();
            self.outputs.push_back(Output::Data { to, data });
        }
        match job_conn.and_then(|c| Some((c, self.kept.jobs.get_mut(&c)?))) {
            Some((job_conn, job)) if !over => {
                job.followers.push(to);
                self.kept.followers.insert(conn, job_conn);
            }
            _ => self.outputs.push_back(Output::End { to }),
        }
        Ok(())
    }

    /// The stored routes: `GET`, `DELETE /v1/responses/{id}`, its
    /// `input_items` and `cancel`.
    pub(super) fn serve_kept(
        &mut self,
        conn: ConnId,
        route: Kept<'_>,
        request: &Request,
        caller: Option<usize>,
        extra: Vec<(&'static str, String)>,
        now: Instant,
    ) -> Result<(), ApiError> {
        self.pump_kept();
        let store = &mut self.kept.store;
        let body = match route {
            Kept::Get(id) => {
                let replay = Replay::parse(request.target())?;
                let record = store
                    .get(id, caller, now)
                    .map_err(|m| kept::not_found(id, m))?;
                if replay.stream {
                    if !record.background {
                        return Err(ApiError::invalid_param(
                            "stream",
                            format!("Response '{id}' was not created with 'background': true: only a background response's events are kept to stream again."),
                        ));
                    }
                    let first = replay.first(record.events.len())?;
                    let job_conn = self.kept.by_id.get(id).copied();
                    return self.follow(conn, id, job_conn, first, extra, now);
                }
                record.response.clone()
            }
            Kept::InputItems(id) => {
                let record = store
                    .get(id, caller, now)
                    .map_err(|m| kept::not_found(id, m))?;
                let items: Vec<Value> =
                    serde_json::from_slice(&record.input_items).unwrap_or_default();
                Bytes::from(kept::input_items_page(&items, request.target())?.to_string())
            }
            Kept::Delete(id) => {
                let status = store
                    .get(id, caller, now)
                    .map_err(|m| kept::not_found(id, m))?
                    .status;
                if !status.is_final() {
                    return Err(ApiError::invalid(format!(
                        "Response '{id}' is still in progress: cancel it (POST /v1/responses/{id}/cancel) before deleting it."
                    )));
                }
                store
                    .remove(id, caller)
                    .map_err(|m| kept::not_found(id, m))?;
                Bytes::from(kept::deleted(id).to_string())
            }
            Kept::Cancel(id) => {
                let record = store
                    .get(id, caller, now)
                    .map_err(|m| kept::not_found(id, m))?;
                if !record.background {
                    return Err(ApiError::invalid(format!(
                        "Response '{id}' was not created with 'background': true: only background responses can be cancelled."
                    )));
                }
                match record.status {
                    // Cancelling is idempotent: a cancelled response is
                    // answered again as it ended. Any other end stands.
                    Status::Cancelled => record.response.clone(),
                    status if status.is_final() => {
                        return Err(ApiError::invalid(format!(
                            "Cannot cancel response '{id}': it is already {}.",
                            status.as_str()
                        )))
                    }
                    _ => {
                        if let Some(n) = self.answers.running(id) {
                            self.cancel_answer(n, now);
                            self.pump_kept();
                        }
                        let record = self
                            .kept
                            .store
                            .get(id, caller, now)
                            .map_err(|m| kept::not_found(id, m))?;
                        record.response.clone()
                    }
                }
            }
        };
        self.respond(conn, Response::json(200, body), extra);
        Ok(())
    }

    /// Writes every answer event posted to a job so far: called before
    /// anything reads a kept answer's state, so it is up to date.
    pub(super) fn pump_kept(&mut self) {
        if self.kept.jobs.is_empty() {
            return;
        }
        let queued = std::mem::take(&mut self.outputs);
        for output in queued {
            match output {
                Output::Answer { to, event } if is_kept(to.conn) => self.kept_event(to, event),
                other => self.outputs.push_back(other),
            }
        }
    }

    /// One event of a job's answer: written by its own `Answering`.
    pub(super) fn kept_event(&mut self, to: RequestId, event: AnswerEvent) {
        let Some(job) = self.kept.jobs.get_mut(&to.conn) else {
            return;
        };
        if let AnswerEvent::Fail(error) = &event {
            job.failure = Some(error.clone());
            self.trace_error(to.conn, error);
        }
        let Some(job) = self.kept.jobs.get_mut(&to.conn) else {
            return;
        };
        // What one event makes, in a vector kept between events: a
        // streamed piece costs no allocation here.
        let mut made = std::mem::take(&mut self.kept.made);
        job.answering.handle(to, event, |o| made.push(o));
        for output in made.drain(..) {
            self.kept_output(to.conn, output);
        }
        self.kept.made = made;
    }

    /// What a job's `Answering` wrote: recorded, and passed on.
    fn kept_output(&mut self, job_conn: ConnId, output: Output) {
        let now = self.now;
        let Some(job) = self.kept.jobs.get_mut(&job_conn) else {
            return;
        };
        match output {
            Output::Respond { response, .. } => {
                // The headers the request was admitted with, not the
                // stream's own.
                let stream_own = Response::stream(SSE).headers;
                job.headers = (response.headers.iter())
                    .filter(|h| !stream_own.contains(h))
                    .cloned()
                    .collect();
                if let Some(live) = job.live.filter(|l| l.stream) {
                    self.outputs.push_back(Output::Respond {
                        to: live.to,
                        response,
                    });
                }
            }
            Output::Data { data, .. } => {
                for event in kept::events(&data) {
                    if event.starts_with(b":") {
                        continue; // a keep-alive: passed on, not kept
                    }
                    if let Some(response) = kept::lifecycle(&event) {
                        record_lifecycle(&mut self.kept, job_conn, response, now);
                    }
                    let job = self.kept.jobs.get(&job_conn);
                    if let Some((true, Some(id))) = job.map(|j| (j.background, j.id.as_deref())) {
                        self.kept.store.push_event(id, event);
                    }
                }
                self.bound_events(job_conn);
                let Some(job) = self.kept.jobs.get(&job_conn) else {
                    return;
                };
                let live = job.live.filter(|l| l.stream).map(|l| l.to);
                for to in live.into_iter().chain(job.followers.iter().copied()) {
                    let data = data.clone();
                    self.outputs.push_back(Output::Data { to, data });
                }
            }
            Output::End { .. } => self.end_job(job_conn),
            _ => {}
        }
    }

    /// A background answer's events are kept whole while it runs, so they
    /// are capped as an answer is (`max_output_bytes`): past it, the
    /// answer ends with an error, and the agent is told to stop.
    fn bound_events(&mut self, job_conn: ConnId) {
        let Some(id) = self.kept.jobs.get(&job_conn).and_then(|j| j.id.as_deref()) else {
            return;
        };
        let max = self.config.max_output_bytes;
        if self.kept.store.size_of(id) <= max {
            return;
        }
        if let Some(&n) = self.by_conn.get(&job_conn) {
            let error = ApiError::agent(format!(
                "The background response's events grew past {max} bytes ('max_output_bytes'); the answer was cancelled."
            ));
            self.fail(n, error, true);
        }
    }

    /// A job's answer ended: its record gets the conversation a chained
    /// request continues, and everyone waiting gets the end.
    fn end_job(&mut self, job_conn: ConnId) {
        let Some(mut job) = self.kept.jobs.remove(&job_conn) else {
            return;
        };
        if let Some(span) = job.span.take() {
            // Its asker was answered 200 when the answer began.
            self.trace_end(span, 200, false, self.now);
        }
        for follower in &job.followers {
            self.kept.followers.remove(&follower.conn);
            self.outputs.push_back(Output::End { to: *follower });
        }
        let Some(id) = job.id.take() else {
            return;
        };
        self.kept.by_id.remove(&id);
        let mut response = Bytes::new();
        self.kept.store.update(&id, |record| {
            let object: Value = serde_json::from_slice(&record.response).unwrap_or_default();
            let mut conversation = std::mem::take(&mut job.conversation);
            conversation.extend(kept::output_message(&object));
            record.history = Bytes::from(Value::Array(conversation).to_string());
            response = record.response.clone();
        });
        let Some(live) = job.live else {
            return;
        };
        if let Some(&n) = self.by_conn.get(&live.to.conn) {
            if !self.invocations.contains_key(&n) {
                self.by_conn.remove(&live.to.conn);
            }
        }
        if live.stream {
            self.outputs.push_back(Output::End { to: live.to });
            return;
        }
        let mut whole = match &job.failure {
            Some(error) => error.response(Dialect::OpenAi),
            None => Response::json(200, response),
        };
        whole.headers.extend(job.headers);
        self.outputs.push_back(Output::Respond {
            to: live.to,
            response: whole,
        });
    }

    /// A kept answer's asker left (`n` is its invocation): the answer is
    /// cancelled, and its record says so. False if `n` is not kept.
    pub(super) fn kept_editor_gone(&mut self, n: u64) -> bool {
        let Some(job_conn) = self.invocations.get(&n).map(|i| i.editor.conn) else {
            return false;
        };
        let Some(job) = self.kept.jobs.get_mut(&job_conn) else {
            return false;
        };
        job.live = None;
        self.cancel_answer(n, self.now);
        true
    }

    /// A connection following a background answer closed.
    pub(super) fn follower_gone(&mut self, conn: ConnId) {
        if let Some(job_conn) = self.kept.followers.remove(&conn) {
            if let Some(job) = self.kept.jobs.get_mut(&job_conn) {
                job.followers.retain(|f| f.conn != conn);
            }
        }
    }

    /// A follower that reads too slowly is let go (it can resume from the
    /// last event it read); true if `conn` was one.
    pub(super) fn follower_behind(&mut self, conn: ConnId, bytes: usize) -> bool {
        if !self.kept.followers.contains_key(&conn) {
            return false;
        }
        if bytes > self.config.max_output_bytes {
            let to = self.request_on(conn);
            self.follower_gone(conn);
            self.outputs.push_back(Output::End { to });
        }
        true
    }
}

/// A lifecycle event's response object: the record's state from now on
/// (the first one names the response, and its record is made).
fn record_lifecycle(kept: &mut KeptAnswers, job_conn: ConnId, response: Value, now: Instant) {
    let Some(job) = kept.jobs.get_mut(&job_conn) else {
        return;
    };
    let status = response["status"].as_str().and_then(Status::parse);
    let text = Bytes::from(response.to_string());
    let id = match &job.id {
        Some(id) => id.clone(),
        None => {
            let Some(id) = response["id"].as_str().map(str::to_owned) else {
                return;
            };
            let token = id.strip_prefix("resp_").unwrap_or(&id);
            let items = kept::input_items(std::mem::take(&mut job.items), token);
            let items = Bytes::from(Value::Array(items).to_string());
            let record = Record::new(job.owner, job.background, items, now);
            job.id = Some(id.clone());
            kept.last_seen = Some((id.clone(), job.headers.clone()));
            kept.by_id.insert(id.clone(), job_conn);
            kept.store.insert(id.clone(), record);
            id
        }
    };
    kept.store.update(&id, |record| {
        record.response = text;
        if let Some(status) = status {
            record.status = status;
        }
    });
}
