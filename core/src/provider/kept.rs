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

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::{Output, RequestId};
use crate::api::responses::kept::{self, Kept, Replay};
use crate::api::{ModelRequest, SSE};
use crate::error::{ApiError, Dialect};
use crate::http::{Fields, Response};
use crate::idmap::IdMap;
use crate::metrics::Gauges;
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
    background_total: u64,
    /// The id and head headers of the job that began last: what the
    /// asker of a background answer is told at once, even if the answer
    /// is over by then.
    last_seen: Option<(String, Fields)>,
    /// Scratch for what one event of a job's answer makes
    /// ([`KeptAnswers::write`]).
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

    /// The connection a request's meter is kept under: its own, or for a
    /// kept answer's job, the connection that asked and waits (a
    /// background answer's asker got its answer at once).
    pub(super) fn metered(&self, conn: ConnId) -> ConnId {
        self.live_conn(conn).unwrap_or(conn)
    }

    /// Job `conn`'s hold on its request's span (see `trace.rs`).
    pub(super) fn job_span(&mut self, conn: ConnId) -> Option<&mut Option<Span>> {
        Some(&mut self.jobs.get_mut(&conn)?.span)
    }

    pub(super) fn running_background(&self) -> usize {
        self.jobs.values().filter(|j| j.background).count()
    }

    /// Whether any job runs.
    pub(super) fn running(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// A `previous_response_id`: the stored conversation goes before the
    /// request's own input (after its instructions), within
    /// `max_messages`.
    pub(super) fn continue_stored(
        &mut self,
        request: &mut ModelRequest,
        caller: Option<usize>,
        max_messages: usize,
        now: Instant,
    ) -> Result<(), ApiError> {
        let Some(previous) = request.keep.as_ref().and_then(|k| k.previous.clone()) else {
            return Ok(());
        };
        let record = self
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
        let max = max_messages;
        if messages > max {
            return Err(ApiError::invalid_param(
                "previous_response_id",
                format!("The conversation continued from '{previous}' would have {messages} messages, more than the {max} a request may have ('max_messages'): start a new one with a summary."),
            ));
        }
        Ok(())
    }

    /// Job `job_conn` starts, for `owner`, with the request's input
    /// `items` and `conversation`; `asker` waits for its answer (streamed
    /// or not), unless it is a background answer.
    pub(super) fn start(
        &mut self,
        job_conn: ConnId,
        owner: Option<usize>,
        items: Vec<Value>,
        conversation: Vec<Value>,
        asker: Option<(RequestId, bool)>,
    ) {
        let job = Job {
            id: None,
            owner,
            background: asker.is_none(),
            items,
            conversation,
            answering: Answering::default(),
            live: asker.map(|(to, stream)| Live { to, stream }),
            followers: Vec::new(),
            headers: Vec::new(),
            failure: None,
            span: None,
        };
        self.jobs.insert(job_conn, job);
        self.last_seen = None;
    }

    /// Job `job_conn` holds its request's span (a background answer's: it
    /// ends with the answer, after the asker was answered).
    pub(super) fn hold_span(&mut self, job_conn: ConnId, span: Option<Span>) {
        if let Some(job) = self.jobs.get_mut(&job_conn) {
            job.span = span;
        }
    }

    /// Job `job_conn` could not start: the span it held.
    pub(super) fn abandon(&mut self, job_conn: ConnId) -> Option<Span> {
        self.jobs.remove(&job_conn).and_then(|j| j.span)
    }

    /// A background answer began: it is counted, and its id and head
    /// headers are what its asker is told.
    pub(super) fn began_background(&mut self) -> Option<(String, Fields)> {
        self.background_total += 1;
        self.last_seen.take()
    }

    /// A stored route (`target` the request's), as far as the store
    /// answers it: a body, a background answer to follow, or one to cancel.
    pub(super) fn serve<'a>(
        &mut self,
        route: Kept<'a>,
        target: &str,
        caller: Option<usize>,
        now: Instant,
    ) -> Result<Served<'a>, ApiError> {
        let store = &mut self.store;
        let body = match route {
            Kept::Get(id) => {
                let replay = Replay::parse(target)?;
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
                    return Ok(Served::Follow { id, first });
                }
                record.response.clone()
            }
            Kept::InputItems(id) => {
                let record = store
                    .get(id, caller, now)
                    .map_err(|m| kept::not_found(id, m))?;
                let items: Vec<Value> =
                    serde_json::from_slice(&record.input_items).unwrap_or_default();
                Bytes::from(kept::input_items_page(&items, target)?.to_string())
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
                    _ => return Ok(Served::Cancel(id)),
                }
            }
        };
        Ok(Served::Body(body))
    }

    /// Response `id`'s object as it stands, for `caller`.
    pub(super) fn response(
        &mut self,
        id: &str,
        caller: Option<usize>,
        now: Instant,
    ) -> Result<Bytes, ApiError> {
        let record = self
            .store
            .get(id, caller, now)
            .map_err(|m| kept::not_found(id, m))?;
        Ok(record.response.clone())
    }

    /// The store's figures for `/metrics`.
    pub(super) fn gauges(&self, gauges: &mut Gauges) {
        gauges.responses_stored = self.store.len();
        gauges.responses_stored_bytes = self.store.bytes();
        gauges.responses_evicted = self.store.evictions();
        gauges.responses_background = self.background_total;
    }

    /// Sends `to` a kept answer's events from index `first` on, and the
    /// rest as they come (or the end, if it is over).
    pub(super) fn follow(
        &mut self,
        to: RequestId,
        id: &str,
        first: usize,
        headers: Fields,
        now: Instant,
        out: &mut VecDeque<Output>,
    ) -> Result<(), ApiError> {
        let record = self
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
        out.push_back(Output::Respond { to, response: head });
        if !replay.is_empty() {
            let data = replay.freeze();
            out.push_back(Output::Data { to, data });
        }
        let job_conn = self.by_id.get(id).copied();
        match job_conn.and_then(|c| Some((c, self.jobs.get_mut(&c)?))) {
            Some((job_conn, job)) if !over => {
                job.followers.push(to);
                self.followers.insert(to.conn, job_conn);
            }
            _ => out.push_back(Output::End { to }),
        }
        Ok(())
    }

    /// One event of a job's answer, written by its own `Answering`: what
    /// it made, to hand to [`KeptAnswers::head`], [`KeptAnswers::record`]
    /// and [`KeptAnswers::pass_on`], [`KeptAnswers::end`], then back to
    /// [`KeptAnswers::reuse`].
    pub(super) fn write(&mut self, to: RequestId, event: AnswerEvent) -> Option<Vec<Output>> {
        let job = self.jobs.get_mut(&to.conn)?;
        if let AnswerEvent::Fail(error) = &event {
            job.failure = Some(error.clone());
        }
        // What one event makes, in a vector kept between events: a
        // streamed piece costs no allocation here.
        let mut made = std::mem::take(&mut self.made);
        job.answering.handle(to, event, |o| made.push(o));
        Some(made)
    }

    /// The vector [`KeptAnswers::write`] returned, emptied.
    pub(super) fn reuse(&mut self, made: Vec<Output>) {
        self.made = made;
    }

    /// A job's answer's head: its headers kept, and passed on to an asker
    /// that waits for a stream.
    pub(super) fn head(
        &mut self,
        job_conn: ConnId,
        response: Response,
        out: &mut VecDeque<Output>,
    ) {
        let Some(job) = self.jobs.get_mut(&job_conn) else {
            return;
        };
        // The headers the request was admitted with, not the stream's own.
        let stream_own = Response::stream(SSE).headers;
        job.headers = (response.headers.iter())
            .filter(|h| !stream_own.contains(h))
            .cloned()
            .collect();
        if let Some(live) = job.live.filter(|l| l.stream) {
            out.push_back(Output::Respond {
                to: live.to,
                response,
            });
        }
    }

    /// Events of a job's answer: recorded (a background answer's every
    /// one, the response object of the lifecycle ones).
    pub(super) fn record(&mut self, job_conn: ConnId, data: &Bytes, now: Instant) {
        for event in kept::events(data) {
            if event.starts_with(b":") {
                continue; // a keep-alive: passed on, not kept
            }
            if let Some(response) = kept::lifecycle(&event) {
                record_lifecycle(self, job_conn, response, now);
            }
            let job = self.jobs.get(&job_conn);
            if let Some((true, Some(id))) = job.map(|j| (j.background, j.id.as_deref())) {
                self.store.push_event(id, event);
            }
        }
    }

    /// Whether a job's events grew past `max` bytes: a background
    /// answer's events are kept whole while it runs, so they are capped
    /// as an answer is (`max_output_bytes`).
    pub(super) fn overgrown(&self, job_conn: ConnId, max: usize) -> bool {
        let Some(id) = self.jobs.get(&job_conn).and_then(|j| j.id.as_deref()) else {
            return false;
        };
        self.store.size_of(id) > max
    }

    /// Events of a job's answer, passed on to its asker if it waits for a
    /// stream, and to its followers.
    pub(super) fn pass_on(&self, job_conn: ConnId, data: Bytes, out: &mut VecDeque<Output>) {
        let Some(job) = self.jobs.get(&job_conn) else {
            return;
        };
        let live = job.live.filter(|l| l.stream).map(|l| l.to);
        for to in live.into_iter().chain(job.followers.iter().copied()) {
            let data = data.clone();
            out.push_back(Output::Data { to, data });
        }
    }

    /// A job's answer ended: its record gets the conversation a chained
    /// request continues, and everyone waiting gets the end. What comes
    /// back: the request span it held, and the connection that waited.
    pub(super) fn end(
        &mut self,
        job_conn: ConnId,
        out: &mut VecDeque<Output>,
    ) -> Option<(Option<Span>, Option<ConnId>)> {
        let mut job = self.jobs.remove(&job_conn)?;
        let span = job.span.take();
        for follower in &job.followers {
            self.followers.remove(&follower.conn);
            out.push_back(Output::End { to: *follower });
        }
        let Some(id) = job.id.take() else {
            return Some((span, None));
        };
        self.by_id.remove(&id);
        let mut response = Bytes::new();
        self.store.update(&id, |record| {
            let object: Value = serde_json::from_slice(&record.response).unwrap_or_default();
            let mut conversation = std::mem::take(&mut job.conversation);
            conversation.extend(kept::output_message(&object));
            record.history = Bytes::from(Value::Array(conversation).to_string());
            response = record.response.clone();
        });
        let Some(live) = job.live else {
            return Some((span, None));
        };
        if live.stream {
            out.push_back(Output::End { to: live.to });
            return Some((span, Some(live.to.conn)));
        }
        let mut whole = match &job.failure {
            Some(error) => error.response(Dialect::OpenAi),
            None => Response::json(200, response),
        };
        whole.headers.extend(job.headers);
        out.push_back(Output::Respond {
            to: live.to,
            response: whole,
        });
        Some((span, Some(live.to.conn)))
    }

    /// Job `job_conn`'s asker left: whether it is a job.
    pub(super) fn asker_left(&mut self, job_conn: ConnId) -> bool {
        let Some(job) = self.jobs.get_mut(&job_conn) else {
            return false;
        };
        job.live = None;
        true
    }

    /// A connection following a background answer closed.
    pub(super) fn follower_gone(&mut self, conn: ConnId) {
        if let Some(job_conn) = self.followers.remove(&conn) {
            if let Some(job) = self.jobs.get_mut(&job_conn) {
                job.followers.retain(|f| f.conn != conn);
            }
        }
    }

    /// A follower that reads too slowly (`to`, with `bytes` waiting past
    /// `max`) is let go (it can resume from the last event it read); true
    /// if `to` is one.
    pub(super) fn follower_behind(
        &mut self,
        to: RequestId,
        bytes: usize,
        max: usize,
        out: &mut VecDeque<Output>,
    ) -> bool {
        if !self.followers.contains_key(&to.conn) {
            return false;
        }
        if bytes > max {
            self.follower_gone(to.conn);
            out.push_back(Output::End { to });
        }
        true
    }
}

/// What a stored route asks of the provider once the store was read.
pub(super) enum Served<'a> {
    /// Answered: the body.
    Body(Bytes),
    /// Stream background response `id`'s events from index `first` on.
    Follow { id: &'a str, first: usize },
    /// Cancel background response `id`, still running, then answer with
    /// its object.
    Cancel(&'a str),
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
    headers: Fields,
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
