"""A remote server's tools as the bridge serves them, on every runtime,
seen by a raw HTTP client (no SDK of its own to filter or rewrite what it
gets): tool parameters marked with `x-mcp-header` (the 2026-07-28
revision, SEP-2243) are mirrored into `Mcp-Param-*` headers on the calls
the bridge posts, a tool whose marks are invalid is left out of the
listing and the others kept, and an input schema reaches the client as
the server wrote it.

The remote server here (threads of the test's own process, the standard
library only) keeps a session, lists its tools in compact JSON with their
members in its own order, and keeps the headers of every `tools/call`."""

import http.server
import json
import threading

from conftest import http_request
from fixtures.answering import Answering, result

SESSION = "params-session"

# Members in no sorted order, 2020-12 keywords, a reference left as a
# reference: what the client must get as it is.
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"id": {"type": "string", "pattern": "^[a-z0-9-]+$", "$anchor": "idDef"}},
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "priority": {"type": "integer", "x-mcp-header": "Priority"},
        "verbose": {"type": "boolean", "x-mcp-header": "Verbose"},
        "id": {"$ref": "#/$defs/id"},
        "sql": {"type": "string"},
    },
    "required": ["region"],
    "if": {"properties": {"priority": {"const": 1}}},
    "then": {"required": ["id"]},
    "additionalProperties": False,
}

TOOLS = [
    {"name": "query", "description": "Runs a query in a region.", "inputSchema": SCHEMA},
    {"name": "plain", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}},
    {
        "name": "scored",
        "inputSchema": {"type": "object", "properties": {"score": {"type": "number", "x-mcp-header": "Score"}}},
    },
    {
        "name": "twice",
        "inputSchema": {
            "type": "object",
            "properties": {
                "a": {"type": "string", "x-mcp-header": "Zone"},
                "b": {"type": "string", "x-mcp-header": "zone"},
            },
        },
    },
    {
        "name": "spaced",
        "inputSchema": {"type": "object", "properties": {"v": {"type": "string", "x-mcp-header": "My Zone"}}},
    },
]


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class ParamsRemote(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        # The Mcp-Param-* headers of each tools/call, by the tool called.
        self.calls = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/mcp"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class Handler(Answering, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ParamsRemote

    def log_message(self, *args):
        pass

    def do_DELETE(self):
        self.send_empty(200)

    def do_GET(self):
        self.send_empty(405)

    def send_compact(self, message):
        data = compact(message).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("mcp-session-id", SESSION)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        message = json.loads(raw or b"{}")
        method = message.get("method")
        ident = message.get("id")
        if ident is None:
            return self.send_empty(202)
        if method == "initialize":
            init = {
                "protocolVersion": "2025-11-25",
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "params", "version": "1"},
            }
            return self.send_compact({"jsonrpc": "2.0", "id": ident, "result": init})
        if method == "tools/list":
            return self.send_compact({"jsonrpc": "2.0", "id": ident, "result": {"tools": TOOLS}})
        if method == "tools/call":
            mirrored = {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("mcp-param-")}
            with self.server.lock:
                self.server.calls.append((message["params"]["name"], mirrored))
            return self.send_compact(result(ident, "done"))
        self.send_compact({"jsonrpc": "2.0", "id": ident, "result": {}})


def session(server, path):
    """A raw session with the bridge at `path`: a request function
    returning (the answer's raw body, its message)."""
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
    }
    accept = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    status, headers, body = http_request(server, "POST", path, hello, accept)
    assert status == 200, (status, body)
    headers = {**accept, "Mcp-Session-Id": headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
    status, _, _ = http_request(server, "POST", path, {"jsonrpc": "2.0", "method": "notifications/initialized"}, headers)
    assert status == 202, status
    ids = iter(range(2, 1000))

    def request(method, params=None):
        message = {"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params or {}}
        status, answer_headers, body = http_request(server, "POST", path, message, headers)
        assert status == 200, (status, body)
        assert answer_headers.get("content-type", "").startswith("application/json"), answer_headers
        return body, json.loads(body)

    return request


def test_a_tool_marked_wrongly_is_left_out_and_the_others_kept_at_its_path_and_at_mcp(make_server):
    """`scored` marks a number, `twice` names one header twice (in two
    cases), `spaced` names a header with a space: none is listed, at
    /mcp/far or among every server's tools at /mcp; `query` and `plain`
    are."""
    with ParamsRemote() as remote:
        server = make_server("--server", f"far={remote.url}")
        _, listing = session(server, "/mcp/far")("tools/list")
        assert [t["name"] for t in listing["result"]["tools"]] == ["query", "plain"], listing
        _, listing = session(server, "/mcp")("tools/list")
        names = [t["name"] for t in listing["result"]["tools"]]
        assert len(names) == 2 and all("query" in n or "plain" in n for n in names), names
        assert not [n for n in names if any(bad in n for bad in ("scored", "twice", "spaced"))], names


def test_a_call_carries_its_marked_arguments_as_headers(make_server):
    """A call of `query` reaches the server with `Mcp-Param-Region`
    (base64: the value has spaces at its ends), `Mcp-Param-Priority` as
    the integer's digits, `Mcp-Param-Verbose` as `false`; none for the
    unmarked `sql`; none for `verbose` when it is null."""
    with ParamsRemote() as remote:
        server = make_server("--server", f"far={remote.url}")
        request = session(server, "/mcp/far")
        request("tools/list")
        arguments = {"region": " us west ", "priority": 42, "verbose": False, "sql": "SELECT 1"}
        _, answer = request("tools/call", {"name": "query", "arguments": arguments})
        assert answer["result"]["content"][0]["text"] == "done", answer
        _, answer = request("tools/call", {"name": "query", "arguments": {"region": "eu", "verbose": None}})
        assert "result" in answer, answer
        with remote.lock:
            calls = list(remote.calls)
        assert calls == [
            (
                "query",
                {
                    "mcp-param-region": "=?base64?IHVzIHdlc3Qg?=",
                    "mcp-param-priority": "42",
                    "mcp-param-verbose": "false",
                },
            ),
            ("query", {"mcp-param-region": "eu"}),
        ], calls


def stateless_listing(server, path):
    """A tools/list of the 2026-07-28 revision, no session: the raw body."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"_meta": meta}}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/list",
    }
    status, _, body = http_request(server, "POST", path, message, headers)
    assert status == 200, (status, body)
    return body


def test_an_input_schema_reaches_the_client_as_the_server_wrote_it(make_server):
    """The listing's `query` schema, in the server's member order with its
    `$schema`, `$defs`, `$anchor`, `$ref`, `if`/`then` and
    `additionalProperties`, is in the bridge's answer at /mcp/far byte for
    byte, to a session client and to a stateless one; at /mcp, where the
    gateway names each tool after its server, every member is there as the
    server wrote it, its `$ref` a reference still."""
    with ParamsRemote() as remote:
        server = make_server("--server", f"far={remote.url}")
        written = compact(SCHEMA).encode()
        body, _ = session(server, "/mcp/far")("tools/list")
        assert written in body, body
        body = stateless_listing(server, "/mcp/far")
        assert written in body, body
        _, listing = session(server, "/mcp")("tools/list")
        (query,) = [t for t in listing["result"]["tools"] if t["name"].endswith("query")]
        assert query["inputSchema"] == SCHEMA, query
