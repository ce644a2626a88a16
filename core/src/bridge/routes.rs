//! The bridge's route table: every path the bridge serves, its method, and
//! who may call it. The drivers' choice of the bridge and the provider's
//! admission ([`guard`], in `Hub::pump`, for `Provider::admit_bridge`) and
//! the bridge's own dispatch ([`find`], in
//! `Bridge::handle_request`) read the same rows of the same canonical path
//! (`http::target`), so an access rule cannot be checked against one
//! spelling of a path and served under another.

use crate::api::Guard;
use crate::http::Request;

/// What a bridge route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/mcp/{server}` and its HTTP+SSE paths: an MCP transport, whose
    /// methods the transport itself tells apart.
    Mcp,
    Socket,
    OpenSession,
    SessionInfo,
    EndSession,
    Discover,
    Call,
    /// `GET /tools`, `/resources`, `/prompts`: the first segment names the
    /// list.
    List,
    /// `GET /openapi.json` (every server), `/openapi/{name}.json` (one).
    Document,
    /// `POST /tools/{server}/{tool}`: one tool as an OpenAPI operation.
    Operation,
    Stats,
    Events,
    Integrations,
    Integration,
    AddIntegration,
    RemoveIntegration,
    /// `POST /integrations/{name}/login`: a remote server's OAuth login,
    /// begun by the driver (the dashboard's button).
    Login,
    TestPage,
}

/// One segment of a row's path.
#[derive(Clone, Copy)]
enum Seg {
    Lit(&'static str),
    /// Any one non-empty segment, handed to the handler.
    Param,
}

struct Row {
    /// `None`: any method (the handler answers 405 itself).
    method: Option<&'static str>,
    path: &'static [Seg],
    route: Route,
    guard: Guard,
}

use Guard::{ApiKey, BridgeToken, Open};
use Seg::{Lit, Param};

const fn row(
    method: Option<&'static str>,
    path: &'static [Seg],
    route: Route,
    guard: Guard,
) -> Row {
    Row {
        method,
        path,
        route,
        guard,
    }
}

const GET: Option<&str> = Some("GET");
const POST: Option<&str> = Some("POST");
const DELETE: Option<&str> = Some("DELETE");

/// Every bridge route, first match wins. Adding and removing bridged
/// servers runs commands on this machine, so it takes the bridge token,
/// like the control API; the test page holds nothing (it asks for a key).
#[rustfmt::skip]
static ROUTES: &[Row] = &[
    row(None, &[Lit("mcp")], Route::Mcp, ApiKey),
    row(None, &[Lit("mcp"), Param], Route::Mcp, ApiKey),
    row(None, &[Lit("mcp"), Param, Param], Route::Mcp, ApiKey),
    row(GET, &[Lit("ws")], Route::Socket, ApiKey),
    row(POST, &[Lit("sessions")], Route::OpenSession, ApiKey),
    row(GET, &[Lit("sessions"), Param], Route::SessionInfo, ApiKey),
    row(DELETE, &[Lit("sessions"), Param], Route::EndSession, ApiKey),
    row(POST, &[Lit("tools"), Lit("discover")], Route::Discover, ApiKey),
    row(POST, &[Lit("tools"), Lit("call")], Route::Call, ApiKey),
    row(GET, &[Lit("tools")], Route::List, ApiKey),
    row(GET, &[Lit("resources")], Route::List, ApiKey),
    row(GET, &[Lit("prompts")], Route::List, ApiKey),
    row(GET, &[Lit("openapi.json")], Route::Document, ApiKey),
    row(GET, &[Lit("openapi"), Param], Route::Document, ApiKey),
    row(POST, &[Lit("tools"), Param, Param], Route::Operation, ApiKey),
    row(GET, &[Lit("stats")], Route::Stats, ApiKey),
    row(GET, &[Lit("events"), Param], Route::Events, ApiKey),
    row(GET, &[Lit("integrations")], Route::Integrations, BridgeToken),
    row(GET, &[Lit("integrations"), Param], Route::Integration, BridgeToken),
    row(POST, &[Lit("integrations")], Route::AddIntegration, BridgeToken),
    row(DELETE, &[Lit("integrations"), Param], Route::RemoveIntegration, BridgeToken),
    row(POST, &[Lit("integrations"), Param, Lit("login")], Route::Login, BridgeToken),
    row(GET, &[Lit("static"), Lit("test_client.html")], Route::TestPage, Open),
];

/// Where the test page is served (without a key: it asks for one).
pub const TEST_PAGE: &str = "/static/test_client.html";

/// A route found for a request, with its path's parameters in order.
pub struct Found<'a> {
    pub(crate) route: Route,
    pub(crate) params: Params<'a>,
}

/// The segments of a path that could fit a row: no row has more.
const MAX_SEGMENTS: usize = 3;

/// A path cut into its segments once, for every row to compare (the path
/// of each request is matched against the table three times).
#[derive(Clone, Copy, Default)]
struct Segments<'a> {
    parts: [&'a str; MAX_SEGMENTS],
    len: usize,
}

impl<'a> Segments<'a> {
    /// `path`'s segments; `None` for a path no row can fit (relative, or
    /// longer than any row).
    fn of(path: &'a str) -> Option<Self> {
        let rest = path.strip_prefix('/')?;
        let mut segments = Segments::default();
        let mut start = 0;
        // Cut at each `/` by hand: a path is a few short segments, where a
        // searcher costs more to set up than to run.
        for (at, byte) in rest.bytes().enumerate().chain([(rest.len(), b'/')]) {
            if byte == b'/' {
                *segments.parts.get_mut(segments.len)? = rest.get(start..at)?;
                segments.len += 1;
                start = at + 1;
            }
        }
        Some(segments)
    }

    fn as_slice(&self) -> &[&'a str] {
        self.parts.get(..self.len).unwrap_or_default()
    }
}

/// A found route's parameters, in the order its path has them.
#[derive(Clone, Copy)]
pub struct Params<'a>(Segments<'a>);

impl<'a> std::ops::Deref for Params<'a> {
    type Target = [&'a str];

    fn deref(&self) -> &[&'a str] {
        self.0.as_slice()
    }
}

impl std::fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.as_slice().fmt(f)
    }
}

/// Why no row serves a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// A bridge path, another method.
    Method,
    /// No bridge path at all.
    Path,
}

impl Row {
    /// The path's parameters when it has this row's shape.
    fn matches<'a>(&self, path: &Segments<'a>) -> Option<Params<'a>> {
        if !self.fits(path) {
            return None;
        }
        let mut params = Segments::default();
        for (seg, &segment) in self.path.iter().zip(path.as_slice()) {
            if let Param = seg {
                *params.parts.get_mut(params.len)? = segment;
                params.len += 1;
            }
        }
        Some(Params(params))
    }

    /// Whether the path has this row's shape: as many segments, none
    /// empty, each literal spelled as the row spells it.
    fn fits(&self, path: &Segments<'_>) -> bool {
        self.path.len() == path.len
            && self
                .path
                .iter()
                .zip(path.as_slice())
                .all(|(seg, segment)| match seg {
                    _ if segment.is_empty() => false,
                    Lit(lit) => lit == segment,
                    Param => true,
                })
    }

    fn takes(&self, method: &str) -> bool {
        self.method.is_none_or(|m| m == method)
    }
}

/// The route for a method and a canonical path.
pub(crate) fn find<'a>(method: &str, path: &'a str) -> Result<Found<'a>, Miss> {
    let segments = Segments::of(path).ok_or(Miss::Path)?;
    let mut known_path = false;
    for row in ROUTES {
        let Some(params) = row.matches(&segments) else {
            continue;
        };
        if row.takes(method) {
            return Ok(Found {
                route: row.route,
                params,
            });
        }
        known_path = true;
    }
    Err(if known_path { Miss::Method } else { Miss::Path })
}

/// Every row as a method (`POST` for any) and one path it serves (each
/// parameter spelled `x`), with its guard: what the access tests try every
/// spelling of.
#[cfg(test)]
pub(crate) fn every_route() -> Vec<(&'static str, String, Guard)> {
    let path = |row: &Row| {
        let segments = row.path.iter().map(|seg| match seg {
            Lit(lit) => *lit,
            Param => "x",
        });
        segments.fold(String::new(), |path, s| path + "/" + s)
    };
    let rows = ROUTES.iter();
    rows.map(|row| (row.method.unwrap_or("POST"), path(row), row.guard))
        .collect()
}

/// Who may make this request, `None` when its path is not the bridge's
/// (whatever the method): its row's guard; for a bridge path with another
/// method, the strictest guard any of that path's rows has (what it is
/// answered with is a 405, but it is not for a weaker key to learn even
/// that). One look at the table tells both, for every request.
pub fn guard(method: &str, path: &str) -> Option<Guard> {
    let path = Segments::of(path)?;
    let mut strictest = None;
    for row in ROUTES.iter().filter(|row| row.fits(&path)) {
        if row.takes(method) {
            return Some(row.guard);
        }
        strictest = Some(match (strictest, row.guard) {
            (Some(BridgeToken), _) | (_, BridgeToken) => BridgeToken,
            _ => ApiKey,
        });
    }
    strictest
}

/// The value of `key` in the query of `request`'s target, as sent.
pub(crate) fn query(request: &Request, key: &str) -> Option<String> {
    request.target().split_once('?').and_then(|(_, q)| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=').map(str::to_owned))
    })
}

/// Whether `path` is one of the MCP transports (whose clients read a
/// refusal as JSON-RPC).
pub(crate) fn is_mcp_transport(path: &str) -> bool {
    path == "/mcp" || path.starts_with("/mcp/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_the_guard_its_row_names() {
        let cases = [
            ("POST", "/mcp/everything", ApiKey),
            ("GET", "/mcp/everything/sse", ApiKey),
            ("POST", "/mcp/everything/messages", ApiKey),
            ("GET", "/ws", ApiKey),
            ("POST", "/sessions", ApiKey),
            ("DELETE", "/sessions/abc", ApiKey),
            ("POST", "/tools/call", ApiKey),
            ("GET", "/openapi.json", ApiKey),
            ("GET", "/openapi/everything.json", ApiKey),
            ("POST", "/tools/everything/echo", ApiKey),
            ("GET", "/tools/everything/echo", ApiKey),
            ("GET", "/stats", ApiKey),
            ("GET", "/events/abc", ApiKey),
            ("GET", "/integrations", BridgeToken),
            ("GET", "/integrations/x", BridgeToken),
            ("POST", "/integrations", BridgeToken),
            ("DELETE", "/integrations/x", BridgeToken),
            // Another method on a bridge-token path is still the token's.
            ("PUT", "/integrations", BridgeToken),
            ("DELETE", "/integrations", BridgeToken),
            ("POST", "/integrations/x", BridgeToken),
            ("GET", TEST_PAGE, Open),
            ("POST", TEST_PAGE, ApiKey),
        ];
        for (method, path, expected) in cases {
            assert_eq!(guard(method, path), Some(expected), "{method} {path}");
        }
    }

    #[test]
    fn dispatch_and_guard_read_the_same_rows() {
        let found = find("DELETE", "/integrations/x")
            .ok()
            .map(|f| (f.route, f.params.to_vec()));
        assert_eq!(found, Some((Route::RemoveIntegration, vec!["x"])));
        assert_eq!(find("PUT", "/integrations").err(), Some(Miss::Method));
        // `/tools/call` is the REST call; a third segment makes it a tool.
        let found = find("POST", "/tools/call").ok().map(|f| f.route);
        assert_eq!(found, Some(Route::Call));
        let found = find("POST", "/tools/call/echo")
            .ok()
            .map(|f| (f.route, f.params.to_vec()));
        assert_eq!(found, Some((Route::Operation, vec!["call", "echo"])));
        assert_eq!(find("GET", "/tools/x/y").err(), Some(Miss::Method));
        assert_eq!(find("GET", "/integration").err(), Some(Miss::Path));
        // Only canonical paths reach the table: any other spelling is no
        // route here, so nothing can be served under a weaker guard.
        for path in [
            "//integrations",
            "/integrations/",
            "/Integrations",
            "/integrations//x",
            // Longer than any row, the root, and no path at all.
            "/integrations/x/login/more",
            "/",
            "",
        ] {
            assert_eq!(find("POST", path).err(), Some(Miss::Path), "{path}");
            assert_eq!(guard("POST", path), None, "{path}");
        }
    }
}
