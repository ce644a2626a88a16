//! The route table: which method and path go where, who may call them, and
//! in which shape their errors are written. It is data: serving a new
//! editor API is one row.

use super::{anthropic, ollama, openai, responses, EditorApi, RequestLimits};
use crate::error::{ApiError, Dialect};

/// What a route does.
#[derive(Clone, Copy)]
pub enum Handler {
    /// A model request, translated by its API and sent to an agent.
    Model(&'static dyn EditorApi),
    /// Counts a model request's prompt tokens (the limiter's estimate)
    /// without running it.
    CountTokens(fn(&[u8], &RequestLimits) -> Result<u64, ApiError>),
    /// Answered from the provider's own state.
    Info(Info),
    /// The WebSocket upgrade for agents.
    AgentLink,
    /// A route about an answer by its id: kept Responses, or any answer.
    Stored(Stored),
}

/// Routes that find an answer by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// `/v1/responses/{id}…`: a stored response (see
    /// [`super::responses::kept::Kept`]).
    Response,
    /// `/completions/{id}`: any answer, `GET` for its status, `DELETE` to
    /// cancel it.
    Answer,
}

/// The routes the provider answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Info {
    /// The dashboard to a browser, a one-line status to anything else.
    Root,
    /// The dashboard page itself.
    Dashboard,
    Health,
    /// Every configured piece checked: 503 when one is down.
    HealthDeep,
    /// Prometheus text format.
    Metrics,
    OpenAiModels,
    /// One model; the rest of the path is its id.
    OpenAiModel,
    OllamaTags,
    OllamaShow,
    OllamaPs,
    OllamaVersion,
    OllamaPull,
    ControlRegister,
    ControlApprove,
    ControlRevoke,
    ControlSessions,
    /// Answers in flight.
    ControlStreams,
    /// The MCP bridge's latest tool searches on `/mcp`.
    ControlSearches,
    /// Agents' permission questions waiting for the user.
    ControlPermissions,
    /// The user's decision on one of them.
    ControlPermission,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Open,
    ApiKey,
    BridgeToken,
    /// Read-only views of the server: the API key or the bridge token.
    Observer,
    /// An editor's own things: an API key sees what it made, the bridge
    /// token everything.
    Owner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// GET, and HEAD answered like it without a body.
    Get,
    Post,
    Delete,
}

/// How a row matches a path.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// One of these exact paths.
    Exact(&'static [&'static str]),
    /// Any path under one of these prefixes; the rest is a parameter. The
    /// label names the route in metrics.
    Under(&'static [&'static str], &'static str),
}

struct Row {
    method: Method,
    path: Path,
    handler: Handler,
    guard: Guard,
    /// Error shape for routes that are not a model API (a model API's own
    /// [`EditorApi::dialect`] wins).
    dialect: Dialect,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Get => "GET",
            Post => "POST",
            Delete => "DELETE",
        }
    }
}

const fn row(method: Method, path: Path, handler: Handler, guard: Guard, dialect: Dialect) -> Row {
    Row {
        method,
        path,
        handler,
        guard,
        dialect,
    }
}

use Dialect::{Anthropic, JsonRpc, Ollama, OpenAi};
use Guard::{ApiKey, BridgeToken, Observer, Open, Owner};
use Handler::{AgentLink, CountTokens, Model};
use Method::{Delete, Get, Post};
use Path::{Exact, Under};

const fn info(method: Method, path: &'static [&'static str], what: Info, guard: Guard) -> Row {
    let dialect = if matches!(
        what,
        Info::OllamaTags
            | Info::OllamaShow
            | Info::OllamaPs
            | Info::OllamaVersion
            | Info::OllamaPull
    ) {
        Ollama
    } else {
        OpenAi
    };
    row(method, Exact(path), Handler::Info(what), guard, dialect)
}

const RESPONSE: &[&str] = &["/v1/responses/", "/responses/"];
const ANSWER: &[&str] = &["/completions/", "/v1/completions/"];

/// Every route, first match wins.
#[rustfmt::skip]
static ROUTES: &[Row] = &[
    // Model APIs.
    row(Post, Exact(&["/v1/chat/completions", "/chat/completions"]), Model(&openai::CHAT), ApiKey, OpenAi),
    row(Post, Exact(&["/v1/completions", "/completions"]), Model(&openai::COMPLETION), ApiKey, OpenAi),
    row(Post, Exact(&["/v1/embeddings", "/embeddings"]), Model(&openai::EMBEDDINGS), ApiKey, OpenAi),
    row(Post, Exact(&["/v1/responses", "/responses"]), Model(&responses::RESPONSES), ApiKey, OpenAi),
    row(Get, Under(RESPONSE, "/v1/responses/{id}"), Handler::Stored(Stored::Response), ApiKey, OpenAi),
    row(Post, Under(RESPONSE, "/v1/responses/{id}"), Handler::Stored(Stored::Response), ApiKey, OpenAi),
    row(Delete, Under(RESPONSE, "/v1/responses/{id}"), Handler::Stored(Stored::Response), ApiKey, OpenAi),
    row(Post, Exact(&["/completions/stream", "/v1/completions/stream"]), Model(&openai::COMPLETION_STREAM), ApiKey, OpenAi),
    row(Get, Under(ANSWER, "/completions/{id}"), Handler::Stored(Stored::Answer), Owner, OpenAi),
    row(Delete, Under(ANSWER, "/completions/{id}"), Handler::Stored(Stored::Answer), Owner, OpenAi),
    row(Post, Exact(&["/v1/messages", "/messages"]), Model(&anthropic::MESSAGES), ApiKey, Anthropic),
    row(Post, Exact(&["/v1/messages/count_tokens"]), CountTokens(anthropic::count_tokens), ApiKey, Anthropic),
    row(Post, Exact(&["/api/chat"]), Model(&ollama::CHAT), ApiKey, Ollama),
    row(Post, Exact(&["/api/generate"]), Model(&ollama::GENERATE), ApiKey, Ollama),
    row(Post, Exact(&["/api/embed"]), Model(&ollama::EMBED), ApiKey, Ollama),
    row(Post, Exact(&["/api/embeddings"]), Model(&ollama::EMBEDDINGS), ApiKey, Ollama),
    // Answered by the provider.
    info(Get, &["/"], Info::Root, Open),
    info(Get, &["/dashboard"], Info::Dashboard, Open),
    info(Get, &["/health"], Info::Health, Open),
    info(Get, &["/health/deep"], Info::HealthDeep, Observer),
    info(Get, &["/metrics"], Info::Metrics, Observer),
    info(Get, &["/v1/models", "/models"], Info::OpenAiModels, ApiKey),
    row(Get, Under(&["/v1/models/", "/models/"], "/v1/models/{id}"), Handler::Info(Info::OpenAiModel), ApiKey, OpenAi),
    info(Get, &["/api/tags"], Info::OllamaTags, ApiKey),
    info(Post, &["/api/show"], Info::OllamaShow, ApiKey),
    info(Get, &["/api/ps"], Info::OllamaPs, ApiKey),
    info(Get, &["/api/version"], Info::OllamaVersion, Open),
    info(Post, &["/api/pull"], Info::OllamaPull, ApiKey),
    // Agents and their control API.
    row(Get, Exact(&["/v1/agent"]), AgentLink, BridgeToken, OpenAi),
    info(Post, &["/control/register"], Info::ControlRegister, BridgeToken),
    info(Post, &["/control/approve"], Info::ControlApprove, BridgeToken),
    info(Post, &["/control/revoke"], Info::ControlRevoke, BridgeToken),
    info(Get, &["/control/sessions"], Info::ControlSessions, BridgeToken),
    info(Get, &["/control/streams"], Info::ControlStreams, BridgeToken),
    info(Get, &["/control/searches"], Info::ControlSearches, BridgeToken),
    info(Get, &["/control/permissions"], Info::ControlPermissions, BridgeToken),
    info(Post, &["/control/permission"], Info::ControlPermission, BridgeToken),
];

/// How many rows [`route`] can match: a row's [`Matched::index`] is below
/// it, and [`UNMATCHED`] (a request no row took) is equal to it.
pub const ROUTE_COUNT: usize = ROUTES.len();

/// The index that stands for a request no route matched.
pub const UNMATCHED: usize = ROUTE_COUNT;

/// A route's name in metrics and logs: its first path (`{id}` standing for
/// a parameter), or `unmatched`.
pub fn label(index: usize) -> &'static str {
    match ROUTES.get(index).map(|r| r.path) {
        Some(Exact(paths)) => paths.first().copied().unwrap_or("?"),
        Some(Under(_, label)) => label,
        None => "unmatched",
    }
}

/// A route's API in metrics: the shape of its errors, or `provider` for
/// the server's own routes and `unmatched`.
pub fn api_label(index: usize) -> &'static str {
    match ROUTES.get(index) {
        Some(row) if matches!(row.handler, Model(_) | CountTokens(_) | Handler::Stored(_)) => {
            match row.dialect() {
                OpenAi => "openai",
                Ollama => "ollama",
                Anthropic => "anthropic",
                JsonRpc => "mcp",
            }
        }
        Some(_) => "provider",
        None => "unmatched",
    }
}

/// The index of the route a path belongs to, whatever the method (for a
/// request refused before it was routed).
pub fn index_of(path: &str) -> usize {
    ROUTES
        .iter()
        .position(|r| r.matches(path).is_some())
        .unwrap_or(UNMATCHED)
}

/// Every row as a method and one path it serves (a parameter spelled
/// `x`), with its guard: what the access tests try every spelling of.
#[cfg(test)]
pub(crate) fn every_route() -> Vec<(&'static str, String, Guard)> {
    let mut all = Vec::new();
    for row in ROUTES {
        let method = row.method.name();
        match row.path {
            Exact(paths) => all.extend(paths.iter().map(|p| (method, (*p).to_owned(), row.guard))),
            Under(prefixes, _) => all.extend(
                prefixes
                    .iter()
                    .map(|p| (method, format!("{p}x"), row.guard)),
            ),
        }
    }
    all
}

/// A route found for a request.
#[derive(Clone, Copy)]
pub struct Matched<'a> {
    pub handler: Handler,
    pub guard: Guard,
    /// The rest of the path after an `Under` prefix (a model id).
    pub param: &'a str,
    /// The row's place in the table, for [`label`].
    pub index: usize,
}

impl Row {
    /// The parameter when `path` matches this row.
    fn matches<'a>(&self, path: &'a str) -> Option<&'a str> {
        match self.path {
            Exact(paths) => paths.contains(&path).then_some(""),
            Under(prefixes, _) => prefixes
                .iter()
                .find_map(|p| path.strip_prefix(p))
                .filter(|rest| !rest.is_empty()),
        }
    }

    fn dialect(&self) -> Dialect {
        match self.handler {
            Model(api) => api.dialect(),
            _ => self.dialect,
        }
    }
}

/// The error shape for a path: its route's, else Ollama's under `/api/`
/// and OpenAI's elsewhere.
pub fn dialect_of(path: &str) -> Dialect {
    match ROUTES.iter().find(|r| r.matches(path).is_some()) {
        Some(row) => row.dialect(),
        None if path.starts_with("/api/") => Ollama,
        None => OpenAi,
    }
}

/// Finds the route for a method and path: 404 for an unknown path, 405 for
/// a known path with the wrong method.
pub fn route<'a>(method: &str, path: &'a str) -> Result<Matched<'a>, ApiError> {
    let method = match method {
        "GET" | "HEAD" => Some(Get),
        "POST" => Some(Post),
        "DELETE" => Some(Delete),
        _ => None,
    };
    let mut known_path = false;
    for (index, row) in ROUTES.iter().enumerate() {
        let Some(param) = row.matches(path) else {
            continue;
        };
        if Some(row.method) == method {
            return Ok(Matched {
                handler: row.handler,
                guard: row.guard,
                param,
                index,
            });
        }
        known_path = true;
    }
    let method = method.map_or("this method", Method::name);
    Err(if known_path {
        ApiError::method_not_allowed(format!("Method {method} is not allowed on {path}"))
    } else {
        ApiError::not_found(format!("Unknown route: {method} {path}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(method: &str, path: &str) -> Option<Info> {
        match route(method, path).ok()?.handler {
            Handler::Info(i) => Some(i),
            _ => None,
        }
    }

    #[test]
    fn routes_by_method_and_path() {
        assert!(matches!(
            route("POST", "/v1/chat/completions").map(|m| m.handler),
            Ok(Handler::Model(_))
        ));
        let m = route("GET", "/v1/models/echo").ok().unwrap();
        assert_eq!(
            (m.param, info_of("GET", "/v1/models/echo")),
            ("echo", Some(Info::OpenAiModel))
        );
        assert_eq!(
            route("GET", "/v1/chat/completions").err().unwrap().status,
            405
        );
        assert_eq!(route("GET", "/nope").err().unwrap().status, 404);
        assert_eq!(route("GET", "/v1/models/").err().unwrap().status, 404);
        assert_eq!(info_of("HEAD", "/health"), Some(Info::Health));
    }

    #[test]
    fn each_api_has_its_error_shape() {
        assert_eq!(dialect_of("/v1/messages"), Dialect::Anthropic);
        assert_eq!(dialect_of("/v1/messages/count_tokens"), Dialect::Anthropic);
        assert_eq!(dialect_of("/v1/responses"), Dialect::OpenAi);
        assert_eq!(dialect_of("/api/chat"), Dialect::Ollama);
        assert_eq!(dialect_of("/api/nope"), Dialect::Ollama);
        assert_eq!(route("GET", "/v1/messages").err().unwrap().status, 405);
    }
}
