"""The bridge as a client of a remote MCP server, on every runtime: what
it sends, and how it takes up a call's answer the server's stream left
unfinished.

The remote server here (run on threads of the test's own process, the
standard library only) keeps a session, refuses a session-wide event
stream (a GET with no `Last-Event-ID`: 405), and has three tools whose
answers come as event streams:

- `resumed`: one event with an id and `retry: 300`, then the stream
  ends; a GET with that id as `Last-Event-ID` gets the answer;
- `abandoned`: one event with an id and `retry: 100`, then the stream
  ends; each GET after it gets one more event with an id, never the
  answer;
- `unresumable`: a progress event with no id, then the stream ends.

It keeps the standard headers of every POST (`Mcp-Method`, `Mcp-Name`),
and every GET's `Last-Event-ID` with when it came."""

import http.server
import json
import threading
import time

from conftest import mcp_post as post
from fixtures.answering import Answering, event_data, result

SESSION = "resuming-session"
RESUMED_RETRY = 0.3
ABANDONED_RETRY = 0.1
RESOURCE = "file:///notes/a%20b.txt"


class ResumingRemote(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        # (Mcp-Method, Mcp-Name, the body's method, what the body names).
        self.posts = []
        # (Last-Event-ID, when it came).
        self.gets = []
        # When each call's first stream ended, by the event id it left.
        self.ended = {}
        # The call waiting for its answer, by the event id it left.
        self.pending = {}
        self.events = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/mcp"

    def next_event(self):
        with self.lock:
            self.events += 1
            return f"ev-{self.events}"

    def resumptions(self):
        with self.lock:
            return [after for after, _ in self.gets if after is not None]

    def headers_of(self, method):
        with self.lock:
            return [(m, n, named) for m, n, body, named in self.posts if body == method]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


TOOLS = [{"name": name, "inputSchema": {"type": "object"}} for name in ("resumed", "abandoned", "unresumable")]


class Handler(Answering, http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ResumingRemote

    def log_message(self, *args):
        pass

    def do_DELETE(self):
        self.send_empty(200)

    def do_GET(self):
        after = self.headers.get("last-event-id")
        with self.server.lock:
            self.server.gets.append((after, time.monotonic()))
            waiting = self.server.pending.pop(after, None)
        if after is None or waiting is None:
            return self.send_empty(405)
        ident, tool = waiting
        self.start_sse({"mcp-session-id": SESSION})
        if tool == "resumed":
            self.chunk(f"id: {self.server.next_event()}\n".encode() + event_data(result(ident, "resumed")))
        else:
            again = self.server.next_event()
            with self.server.lock:
                self.server.pending[again] = (ident, tool)
            self.chunk(f"id: {again}\nretry: {int(ABANDONED_RETRY * 1000)}\ndata: \n\n".encode())
        self.end_sse()

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        message = json.loads(raw or b"{}")
        method = message.get("method")
        params = message.get("params") or {}
        named = params.get("uri") if method == "resources/read" else params.get("name")
        with self.server.lock:
            self.server.posts.append((self.headers.get("mcp-method"), self.headers.get("mcp-name"), method, named))
        ident = message.get("id")
        if ident is None:
            return self.send_empty(202)
        if method == "initialize":
            capabilities = {"tools": {}, "resources": {}, "prompts": {}}
            init = {"protocolVersion": "2025-11-25", "capabilities": capabilities, "serverInfo": {"name": "resuming", "version": "1"}}
            return self.send_json({"jsonrpc": "2.0", "id": ident, "result": init}, {"mcp-session-id": SESSION})
        answers = {
            "ping": {},
            "tools/list": {"tools": TOOLS},
            "resources/list": {"resources": [{"uri": RESOURCE, "name": "notes"}]},
            "resources/read": {"contents": [{"uri": RESOURCE, "text": "hello"}]},
            "prompts/list": {"prompts": [{"name": "greet"}]},
            "prompts/get": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]},
        }
        if method in answers:
            return self.send_json({"jsonrpc": "2.0", "id": ident, "result": answers[method]})
        tool = params.get("name")
        if method != "tools/call" or tool not in ("resumed", "abandoned", "unresumable"):
            error = {"code": -32601, "message": "no such method or tool"}
            return self.send_json({"jsonrpc": "2.0", "id": ident, "error": error})
        self.start_sse({"mcp-session-id": SESSION})
        if tool == "unresumable":
            progress = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}}
            self.chunk(event_data(progress))
        else:
            first = self.server.next_event()
            retry = RESUMED_RETRY if tool == "resumed" else ABANDONED_RETRY
            with self.server.lock:
                self.server.pending[first] = (ident, tool)
            self.chunk(f"id: {first}\nretry: {int(retry * 1000)}\ndata: \n\n".encode())
            with self.server.lock:
                self.server.ended[first] = time.monotonic()
        self.end_sse()


def client(server):
    """A new client of server `far`: a request function in its session,
    returning the answer to each request (read from a JSON body or the
    event stream the bridge answers with)."""
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    status, headers, _ = post(server, "/mcp/far", hello)
    assert status == 200, status
    session = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
    status, _, _ = post(server, "/mcp/far", {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    assert status == 202, status
    ids = iter(range(2, 1000))

    def request(method, params=None):
        status, _, answer = post(server, "/mcp/far", {"jsonrpc": "2.0", "id": next(ids), "method": method, "params": params or {}}, session, timeout=20)
        assert status == 200, (status, answer)
        return answer

    return request


def far(make_server, remote):
    return make_server("--server", f"far={remote.url}")


def test_a_call_stream_closed_before_its_answer_is_resumed_after_its_retry(make_server):
    """The server ends `resumed`'s stream after one event with an id and
    `retry: 300`: the bridge waits that long, asks for the rest with a GET
    carrying that id as `Last-Event-ID`, and its client gets the answer."""
    with ResumingRemote() as remote:
        request = client(far(make_server, remote))
        answer = request("tools/call", {"name": "resumed", "arguments": {}})
        assert answer.get("result", {}).get("content") == [{"type": "text", "text": "resumed"}], answer
        with remote.lock:
            (first,) = remote.ended
            (came,) = [at for after, at in remote.gets if after == first]
            ended = remote.ended[first]
        assert remote.resumptions() == [first], "asked once, after the id it had"
        # The server's wait was kept (less a scheduler's slack).
        assert came - ended >= RESUMED_RETRY - 0.05, came - ended


def test_a_call_never_answered_fails_after_a_bounded_number_of_resumptions(make_server):
    """`abandoned`'s streams keep ending with one more event id and no
    answer: the bridge asks three times, each after the last event id it
    had, then the call fails with an error that says so, in well under a
    second of waits. `unresumable`'s stream had no event id: it fails at
    once, never asked for again."""
    with ResumingRemote() as remote:
        request = client(far(make_server, remote))
        started = time.monotonic()
        answer = request("tools/call", {"name": "abandoned", "arguments": {}})
        took = time.monotonic() - started
        assert "error" in answer, answer
        assert "without answering" in answer["error"]["message"], answer
        assert "3 times" in answer["error"]["message"], answer
        assert took < 10, took
        asked = remote.resumptions()
        assert len(asked) == 3, asked
        assert asked == sorted(asked, key=lambda e: int(e.split("-")[1])) and len(set(asked)) == 3, asked

        answer = request("tools/call", {"name": "unresumable", "arguments": {}})
        assert "ended its answer without answering" in answer["error"]["message"], answer
        assert len(remote.resumptions()) == 3, "no event id: nothing to resume after"


def test_every_post_carries_its_method_and_a_named_request_its_name(make_server):
    """Every POST the bridge makes to the server carries `Mcp-Method`, the
    handshake's included; `tools/call`, `prompts/get` and `resources/read`
    carry `Mcp-Name` with the tool's, the prompt's name or the URI."""
    with ResumingRemote() as remote:
        request = client(far(make_server, remote))
        assert "result" in request("tools/list")
        assert "result" in request("tools/call", {"name": "resumed", "arguments": {}})
        assert "result" in request("prompts/get", {"name": "greet"})
        assert "result" in request("resources/read", {"uri": RESOURCE})
        with remote.lock:
            posts = list(remote.posts)
        assert posts, "nothing reached the server"
        for mcp_method, _, method, _ in posts:
            assert mcp_method == method, posts
        methods = {method for _, _, method, _ in posts}
        assert {"initialize", "notifications/initialized", "tools/list", "tools/call", "prompts/get", "resources/read"} <= methods, methods
        for method in ("tools/call", "prompts/get", "resources/read"):
            for _, name, named in remote.headers_of(method):
                assert name == named, (method, name, named)
        for method in ("initialize", "tools/list", "notifications/initialized"):
            assert all(name is None for _, name, _ in remote.headers_of(method)), remote.headers_of(method)
