"""Traces of the MCP bridge, read back from Arize Phoenix (tests/phoenix.py):
a stdio server of ours (tests/fixtures/mcp/trace_echo_server.py, whose
`meta` tool answers with the `_meta` it was sent) and a remote one of the
test's own, bridged by `serve --server`, called by the official MCP Python
SDK and by raw JSON-RPC posts, on every runtime.

What must be seen: a SERVER span per client request, named for its method
and tool, a child of the trace the request named (its `traceparent`
header, else its `params._meta.traceparent`), and a CLIENT span, its child,
for what the bridge sent the server, whose context the server finds in
the `_meta` it was sent (and, a remote server, in the `traceparent`
header too); a call answered with an error is an ERROR span saying which."""

import json
import secrets
import sys
import time

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import API_KEY, ROOT, FakeHandler, LocalHttpServer, mcp_post as post
from test_bridge import run

FIXTURE = ROOT / "tests" / "fixtures" / "mcp" / "trace_echo_server.py"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def new_parent():
    """A fresh trace of the test's own: its id, the calling span's id, and
    the `traceparent` naming them."""
    trace, span = secrets.token_hex(16), secrets.token_hex(8)
    return trace, span, f"00-{trace}-{span}-01"


def traced_server(make_server, phoenix, *servers):
    args = [a for s in servers for a in ("--server", s)]
    return make_server(*args, env={"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.endpoint})


def stdio(name="trace"):
    return f"{name}={sys.executable} {FIXTURE}"


def spans_named(phoenix, trace, wanted, timeout=30):
    """The spans of `trace` once one of each (name, kind) in `wanted` is in,
    by (name, kind)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {(s["name"], s["span_kind"]): s for s in phoenix.spans(trace, 1, timeout=timeout)}
        if all(w in found for w in wanted):
            return found
        assert time.monotonic() < deadline, f"wanted {wanted}, found {sorted(found)}"
        time.sleep(0.2)


def seen_meta(result):
    """The `_meta` the `meta` tool was sent, from its answer."""
    return json.loads(result["content"][0]["text"])


def parent_in(meta_or_header):
    """The (trace id, parent span id) of a `traceparent` value."""
    _, trace, span, _ = meta_or_header.split("-")
    return trace, span


def open_session(server, path, headers=None):
    status, answer_headers, _ = post(server, path, INIT, headers)
    assert status == 200
    session = answer_headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    post(server, path, note, {"mcp-session-id": session})
    return session


def call(name, meta=None, ident=2):
    params = {"name": name, "arguments": {}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params}


def test_an_sdk_call_is_a_server_span_whose_client_span_the_server_sees(make_server, phoenix):
    server = traced_server(make_server, phoenix, stdio())
    trace, caller, traceparent = new_parent()
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}", "traceparent": traceparent})

    async def use():
        async with Client(streamable_http_client(f"{server.base}/mcp/trace", http_client=http)) as c:
            result = await c.call_tool("meta", {})
            return json.loads(result.content[0].text)

    meta = run(use())
    wanted = [("tools/call meta", "SERVER"), ("tools/call meta", "CLIENT")]
    found = spans_named(phoenix, trace, wanted)
    served, sent = found[wanted[0]], found[wanted[1]]
    assert served["parent_id"] == caller
    assert sent["parent_id"] == served["span_id"]
    assert parent_in(meta["traceparent"]) == (trace, sent["span_id"])
    attributes = served["attributes"]
    assert attributes["mcp.method.name"] == "tools/call"
    assert attributes["gen_ai.tool.name"] == "meta"
    assert attributes["gen_ai.operation.name"] == "execute_tool"
    assert attributes["network.transport"] == "tcp"
    assert attributes["mcp.protocol.version"]
    assert sent["attributes"]["network.transport"] == "pipe"
    assert sent["attributes"]["gen_ai.tool.name"] == "meta"
    assert served["status_code"] != "ERROR" and sent["status_code"] != "ERROR"


def test_a_request_s_own_meta_traceparent_is_the_parent_without_a_header(make_server, phoenix):
    """SEP-414: the trace context in `params._meta`, other `_meta` kept."""
    server = traced_server(make_server, phoenix, stdio())
    session = open_session(server, "/mcp/trace")
    trace, caller, traceparent = new_parent()
    meta = {"traceparent": traceparent, "tracestate": "vendor=1", "vendor/kept": "yes"}
    status, _, answer = post(server, "/mcp/trace", call("meta", meta, ident="c7"), {"mcp-session-id": session})
    assert status == 200
    seen = seen_meta(answer["result"])
    assert seen["vendor/kept"] == "yes" and seen["tracestate"] == "vendor=1"
    wanted = [("tools/call meta", "SERVER"), ("tools/call meta", "CLIENT")]
    found = spans_named(phoenix, trace, wanted)
    served, sent = found[wanted[0]], found[wanted[1]]
    assert served["parent_id"] == caller
    assert served["attributes"]["jsonrpc.request.id"] == "c7"
    assert served["attributes"]["mcp.session.id"] == session
    assert parent_in(seen["traceparent"]) == (trace, sent["span_id"])


def test_a_call_through_the_aggregate_endpoint_is_traced_to_its_server(make_server, phoenix):
    server = traced_server(make_server, phoenix, stdio())
    trace, caller, traceparent = new_parent()
    session = open_session(server, "/mcp")
    headers = {"mcp-session-id": session, "traceparent": traceparent}
    status, _, answer = post(server, "/mcp", call("trace__meta"), headers)
    assert status == 200, answer
    seen = seen_meta(answer["result"])
    wanted = [("tools/call trace__meta", "SERVER"), ("tools/call meta", "CLIENT")]
    found = spans_named(phoenix, trace, wanted)
    served, sent = found[wanted[0]], found[wanted[1]]
    assert served["parent_id"] == caller
    assert sent["parent_id"] == served["span_id"]
    assert parent_in(seen["traceparent"]) == (trace, sent["span_id"])
    # A listing asked of the server (to learn its tools' names) is the
    # same request's too.
    status, _, _ = post(server, "/mcp", {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers)
    assert status == 200
    spans_named(phoenix, trace, [("tools/list", "SERVER")])


class Recording(FakeHandler):
    """A remote MCP server that keeps the `traceparent` header and the
    `_meta` of each call it is sent, and answers `meta` with the `_meta`."""

    def do_POST(self):
        message = self.json_body()
        method, ident = message.get("method"), message.get("id")
        if method == "initialize":
            self.send_initialized(ident, "recording", "r1")
        elif ident is None:
            self.send_empty(202)
        elif method == "tools/call":
            meta = message["params"].get("_meta") or {}
            with self.server.lock:
                self.server.requests.append((self.headers.get("traceparent"), meta))
            content = [{"type": "text", "text": json.dumps(meta)}]
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {"content": content}})
        else:
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {}})

    def do_GET(self):
        self.send_empty(405)

    def do_DELETE(self):
        self.send_empty(200)


def test_a_remote_server_gets_the_client_span_in_its_header_and_meta(make_server, phoenix):
    with LocalHttpServer(Recording) as remote:
        server = traced_server(make_server, phoenix, f"far={remote.base}/mcp")
        session = open_session(server, "/mcp/far")
        trace, caller, traceparent = new_parent()
        headers = {"mcp-session-id": session, "traceparent": traceparent}
        status, _, answer = post(server, "/mcp/far", call("meta"), headers)
        assert status == 200, answer
        with remote.lock:
            (header, meta), = remote.requests
    assert header == meta["traceparent"]
    wanted = [("tools/call meta", "SERVER"), ("tools/call meta", "CLIENT")]
    found = spans_named(phoenix, trace, wanted)
    served, sent = found[wanted[0]], found[wanted[1]]
    assert served["parent_id"] == caller
    assert sent["parent_id"] == served["span_id"]
    assert sent["attributes"]["network.transport"] == "tcp"
    assert parent_in(header) == (trace, sent["span_id"])


def test_an_error_or_a_tool_error_is_an_error_span_saying_which(make_server, phoenix):
    server = traced_server(make_server, phoenix, stdio())
    session = open_session(server, "/mcp/trace")
    errors = {}
    for tool in ("fail", "broken"):
        trace, _, traceparent = new_parent()
        headers = {"mcp-session-id": session, "traceparent": traceparent}
        status, _, answer = post(server, "/mcp/trace", call(tool), headers)
        assert status == 200, answer
        wanted = [(f"tools/call {tool}", "SERVER"), (f"tools/call {tool}", "CLIENT")]
        found = spans_named(phoenix, trace, wanted)
        assert {found[w]["status_code"] for w in wanted} == {"ERROR"}
        errors[tool] = {found[w]["attributes"]["error.type"] for w in wanted}
    assert errors == {"fail": {"-32602"}, "broken": {"tool_error"}}


CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CONTENT_KEYS = ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result")


def as_json(value):
    return json.loads(value) if isinstance(value, str) else value


def test_with_content_captured_a_call_s_span_carries_its_arguments_and_result(make_server, phoenix):
    server = make_server(
        "--server", stdio(), env={"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.endpoint, CAPTURE: "true"}
    )
    session = open_session(server, "/mcp/trace")
    trace, _, traceparent = new_parent()
    body = call("meta")
    body["params"]["arguments"] = {"city": "Paris", "days": 3}
    headers = {"mcp-session-id": session, "traceparent": traceparent}
    status, _, answer = post(server, "/mcp/trace", body, headers)
    assert status == 200, answer
    wanted = [("tools/call meta", "SERVER"), ("tools/call meta", "CLIENT")]
    found = spans_named(phoenix, trace, wanted)
    served = found[wanted[0]]["attributes"]
    assert as_json(served["gen_ai.tool.call.arguments"]) == {"city": "Paris", "days": 3}
    assert as_json(served["gen_ai.tool.call.result"]) == answer["result"]
    # The content, but never the key that authorized the call.
    for span in found.values():
        assert API_KEY not in repr(span["attributes"])

    # An error answer has arguments and no result; a large one is cut.
    trace, _, traceparent = new_parent()
    body = call("fail")
    body["params"]["arguments"] = {"text": "x" * 50_000}
    headers = {"mcp-session-id": session, "traceparent": traceparent}
    post(server, "/mcp/trace", body, headers)
    found = spans_named(phoenix, trace, [("tools/call fail", "SERVER")])
    served = found[("tools/call fail", "SERVER")]["attributes"]
    arguments = served["gen_ai.tool.call.arguments"]
    assert isinstance(arguments, str) and len(arguments.encode()) <= 4096
    assert arguments.startswith('{"text":"xxx')
    assert "gen_ai.tool.call.result" not in served


def test_without_the_variable_a_call_s_span_carries_no_content(make_server, phoenix):
    server = traced_server(make_server, phoenix, stdio())
    session = open_session(server, "/mcp/trace")
    trace, _, traceparent = new_parent()
    body = call("meta")
    body["params"]["arguments"] = {"city": "Paris"}
    status, _, answer = post(server, "/mcp/trace", body, {"mcp-session-id": session, "traceparent": traceparent})
    assert status == 200, answer
    wanted = [("tools/call meta", "SERVER"), ("tools/call meta", "CLIENT")]
    for span in spans_named(phoenix, trace, wanted).values():
        assert not any(key in span["attributes"] for key in CONTENT_KEYS), span["attributes"]
        assert "Paris" not in repr(span["attributes"])
