//! What a session holds, a turn being answered, a request waiting for
//! one, and what the agent's answers to our requests are for.

use std::time::Instant;

use super::models::{Effort, Models, Setting};
use super::pool::At;
use super::textual::Scanner;
use super::update::Shows;
use crate::agent::exec::conversation::{Key, Transcript};
use crate::agent::exec::round::Round;
use crate::agent::exec::tools::{Chat, Given, Offer};
use crate::agent::ledger::{Answer, Invocation};
use crate::agent::process::RunId;
use crate::telemetry::SpanContext;

/// A request for a turn.
pub(super) struct Request {
    pub(super) invoke: String,
    /// The whole conversation as one prompt, for a new session.
    pub(super) whole: String,
    /// The new message alone, when the turn may continue a session.
    pub(super) last: Option<String>,
    /// The key of the messages before the new one: the session it
    /// continues, if one is idle under it.
    pub(super) continues: Option<Key>,
    /// The messages, hashed: with the answer, the key a continuation will
    /// look for.
    pub(super) transcript: Option<Transcript>,
    pub(super) deadline: Instant,
    /// The editor left while the session was being opened.
    pub(super) cancelled: bool,
    /// The editor's tools, when the session is given them.
    pub(super) offer: Option<Offer>,
    /// Whose secret the session's relay says, once its `session/new` went.
    pub(super) owner: Option<RunId>,
    /// The model it asks for, as the agent names it.
    pub(super) model: Option<String>,
    /// The reasoning effort it asks for.
    pub(super) effort: Option<String>,
    /// Its tools are offered as text, not over MCP.
    pub(super) textual: bool,
    /// The provider's span for it (`model_invoke`'s `traceparent`).
    pub(super) trace: Option<SpanContext>,
}

impl Invocation for Request {
    fn invoke(&self) -> &str {
        &self.invoke
    }

    fn deadline(&self) -> Instant {
        self.deadline
    }
}

/// A turn being answered.
pub(super) struct Turn {
    pub(super) invoke: String,
    pub(super) deadline: Instant,
    /// The answer's chunks sent so far.
    pub(super) stream: Answer,
    /// The conversation with the answer so far, for remembering it.
    pub(super) answer: Option<Transcript>,
    pub(super) shows: Shows,
    /// Its calls of the editor's tools, when it was given them.
    pub(super) round: Option<Round>,
    /// The prompt, held until the agent has listed the editor's tools and
    /// taken them in (an agent may take its first prompt before it has),
    /// and until when.
    pub(super) held: Option<(String, Instant)>,
    /// The model it wants its session on.
    pub(super) model: Option<String>,
    /// The reasoning effort it wants.
    pub(super) effort: Option<String>,
    /// The tools it offers as text, and its answer scanned for their calls.
    pub(super) textual: Option<(Offer, Scanner)>,
    /// The tokens in its session's context, as the agent last reported.
    pub(super) context: Option<u64>,
    /// The provider's span for it, handed to the agent in its prompt's
    /// `_meta`.
    pub(super) trace: Option<SpanContext>,
}

impl Turn {
    /// Whether the turn waits for the editor's results: its request was
    /// answered, and what the agent says belongs to no one until they come.
    pub(super) fn parked(&self) -> bool {
        self.round.as_ref().is_some_and(Round::parked)
    }
}

/// An ACP session.
pub(super) struct Session {
    /// The conversation it holds, when idle and continuable.
    pub(super) key: Option<Key>,
    pub(super) turn: Option<Turn>,
    pub(super) last_used: Instant,
    /// The owner its relay says the secret of, when it was given the
    /// editor's tools.
    pub(super) tools: Option<RunId>,
    /// The tools its last turn offered, listed between turns.
    pub(super) offer: Option<Offer>,
    /// Opened ahead, and not used yet: the next new conversation without
    /// tools takes it, saving its `session/new` round trip.
    pub(super) spare: bool,
    /// Its model, as the agent names it, when known.
    pub(super) model: Option<String>,
    /// The config option that sets its model, when the agent has one.
    pub(super) model_option: Option<String>,
    /// Its reasoning effort option, when it has one.
    pub(super) effort: Option<Effort>,
    /// Kept from an agent process that ended: to be loaded into the new
    /// one before its next turn.
    pub(super) unloaded: bool,
    /// The calls of its last answer, made as text, whose results its next
    /// turn brings, and in which conversation.
    pub(super) awaiting: Option<(Vec<Given>, Chat)>,
}

impl Session {
    pub(super) fn new(now: Instant, tools: Option<RunId>) -> Self {
        Session {
            key: None,
            turn: None,
            last_used: now,
            tools,
            offer: None,
            spare: false,
            model: None,
            model_option: None,
            effort: None,
            unloaded: false,
            awaiting: None,
        }
    }

    /// What its `session/new` answer said of its models and effort.
    pub(super) fn know(&mut self, models: Models) {
        self.model = models.current;
        self.model_option = models.option;
        self.effort = models.effort;
    }
}

/// A spare session's way to the editor's tools: the relay of `owner`,
/// listing those of `offer` (the last new conversation's).
pub(super) struct Tooled {
    pub(super) owner: RunId,
    pub(super) offer: Offer,
}

/// What an answer from the agent is for.
pub(super) enum Pending {
    Initialize,
    /// The first session of a started agent, opened to learn its models.
    Models,
    /// A session given the relay of this owner, opened to learn whether
    /// the agent lists the tools of an MCP server it is handed.
    Probe(RunId),
    /// A login, after which the session for this request (or the first
    /// session) is asked for again.
    Authenticate(Option<Box<Request>>),
    /// A session kept from an agent process that ended, loaded into the
    /// new one for `request`.
    Load {
        session: At,
        request: Box<Request>,
    },
    /// A setting of the session, before the prompt `text`.
    Set {
        session: At,
        setting: Setting,
        text: String,
    },
    NewSession(Box<Request>),
    /// A spare session, opened ahead for the next new conversation: given
    /// the relay of an owner listing the editor's tools, when it is; asked
    /// for at `sent`.
    Spare {
        tooled: Option<Box<Tooled>>,
        sent: Instant,
    },
    /// The turn of this session.
    Prompt(At),
}

impl Pending {
    /// Whether it opens a session in its process (a process opens one at
    /// a time).
    pub(super) fn opens_session(&self) -> bool {
        matches!(
            self,
            Pending::NewSession(_)
                | Pending::Spare { .. }
                | Pending::Models
                | Pending::Probe(_)
                | Pending::Authenticate(_)
        )
    }

    /// Whether it is part of a turn: its prompt, or what goes just before
    /// it (a session loaded, a setting). A cancelled turn runs until its
    /// prompt is answered.
    pub(super) fn runs_turn(&self) -> bool {
        matches!(
            self,
            Pending::Prompt(_) | Pending::Load { .. } | Pending::Set { .. }
        )
    }

    /// The owner of the relay of the session it opens, if any.
    pub(super) fn owner(&self) -> Option<RunId> {
        match self {
            Pending::NewSession(request) => request.owner,
            Pending::Spare {
                tooled: Some(tooled),
                ..
            } => Some(tooled.owner),
            Pending::Probe(owner) => Some(*owner),
            _ => None,
        }
    }

    /// The editor's tools the relay of `owner` lists, when the session it
    /// opens is given them.
    pub(super) fn offer_of(&mut self, owner: RunId) -> Option<&mut Offer> {
        match self {
            Pending::NewSession(r) if r.owner == Some(owner) => r.offer.as_mut(),
            Pending::Spare {
                tooled: Some(tooled),
                ..
            } if tooled.owner == owner => Some(&mut tooled.offer),
            _ => None,
        }
    }

    /// The editor's request it opens a session for, if any.
    pub(super) fn request(&mut self) -> Option<&mut Request> {
        match self {
            Pending::NewSession(request) | Pending::Authenticate(Some(request)) => Some(request),
            _ => None,
        }
    }
}
