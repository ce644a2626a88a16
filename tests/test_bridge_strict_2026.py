"""The stateless revision (2026-07-28) served strictly by the bridge, at
`/mcp/NAME` and at the aggregate `/mcp`, on every runtime, with raw HTTP.

Every request of that generation carries its envelope in `params._meta`
(its protocol version and client capabilities: else -32602, HTTP 400),
and the standard headers `MCP-Protocol-Version`, `Mcp-Method` and, for a
request that names a tool, prompt or resource, `Mcp-Name` (missing or
contradicting the body: -32020, HTTP 400, checked before the version is
found unsupported: -32022). Methods outside the revision (the session
revisions' `initialize`, `ping`, `logging/setLevel`, the subscribe pair,
and any unknown one) are not found (-32601, HTTP 404) and never reach a
server. A resource no server has is not found with its URI in the
error's data, in both generations. The official SDK client in its 2026
mode still lists and calls tools."""

import json
import sys

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import API_KEY, mcp_post as post, wait_until
from test_bridge import run

VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "strict-test", "version": "1"},
}
# What the probes that must not reach a server carry, to look for in its log.
MARK = "must-not-reach-the-server"
PATHS = ["/mcp/probe", "/mcp"]

# A stdio server of the session revisions that logs the params of every
# message it gets (one JSON line each), and says "not found" of every
# resource with its URI in the error's data.
RECORDING_SERVER = r'''
import json, sys
log = open(sys.argv[1], "a", encoding="utf-8")
for line in sys.stdin:
    message = json.loads(line)
    method, rid = message.get("method"), message.get("id")
    params = message.get("params") or {}
    log.write(json.dumps({"method": method, "params": params}) + "\n")
    log.flush()
    if rid is None:
        continue
    reply = {"jsonrpc": "2.0", "id": rid}
    if method == "initialize":
        reply["result"] = {"protocolVersion": params["protocolVersion"],
                           "capabilities": {"tools": {}, "resources": {}, "logging": {}},
                           "serverInfo": {"name": "recording", "version": "1"}}
    elif method == "tools/list":
        reply["result"] = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        text = json.dumps(params.get("arguments") or {})
        reply["result"] = {"content": [{"type": "text", "text": text}]}
    elif method == "resources/list":
        reply["result"] = {"resources": []}
    elif method == "resources/read":
        reply["error"] = {"code": -32602, "message": "Resource not found", "data": {"uri": params.get("uri")}}
    elif method in ("ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"):
        reply["result"] = {}
    else:
        reply["error"] = {"code": -32601, "message": "no such method"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
'''


@pytest.fixture
def bridge(make_server, tmp_path):
    """A bridge of two recording servers, `probe` and `other`: the server,
    and the log `probe` writes."""
    script = tmp_path / "recording_server.py"
    script.write_text(RECORDING_SERVER)
    log = tmp_path / "probe.log"
    log.touch()
    servers = [f"probe={sys.executable} {script} {log}", f"other={sys.executable} {script} {tmp_path / 'other.log'}"]
    server = make_server(*[a for s in servers for a in ("--server", s)])
    return server, log


def ask(method, params, rid=1):
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}


def headers_for(body, **changes):
    """The standard headers a 2026 client sends with `body`, `changes`
    applied (a value of None leaves that header out)."""
    params = body.get("params") or {}
    headers = {"MCP-Protocol-Version": VERSION, "Mcp-Method": body["method"]}
    named = params.get("name") or params.get("uri")
    if body["method"] in ("tools/call", "prompts/get", "resources/read") and named:
        headers["Mcp-Name"] = named
    headers.update(changes)
    return {k: v for k, v in headers.items() if v is not None}


def send(server, path, body, **changes):
    status, _, answer = post(server, path, body, headers_for(body, **changes))
    return status, answer


def tool(path):
    return "probe__echo" if path == "/mcp" else "echo"


def received(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.parametrize("path", PATHS)
def test_a_request_without_its_envelope_is_invalid_params_with_http_400(bridge, path):
    server, _ = bridge
    version = "io.modelcontextprotocol/protocolVersion"
    capabilities = "io.modelcontextprotocol/clientCapabilities"
    without = lambda key: {k: v for k, v in META.items() if k != key}  # noqa: E731
    for method in ("server/discover", "tools/list"):
        for params, missing in (({}, "_meta"), ({"_meta": without(version)}, version),
                                ({"_meta": without(capabilities)}, capabilities)):
            status, answer = send(server, path, ask(method, params, rid=101))
            assert status == 400, (method, params, answer)
            assert answer["error"]["code"] == -32602 and answer["id"] == 101, answer
            assert missing in answer["error"]["message"], answer
    # Client info is a SHOULD: a request without it is served.
    status, answer = send(server, path, ask("server/discover", {"_meta": without("io.modelcontextprotocol/clientInfo")}))
    assert status == 200 and VERSION in answer["result"]["supportedVersions"], answer


@pytest.mark.parametrize("path", PATHS)
def test_a_header_that_disagrees_with_the_body_is_named_before_an_unsupported_version(bridge, path):
    server, _ = bridge
    future = ask("server/discover", {"_meta": {**META, "io.modelcontextprotocol/protocolVersion": "v999"}}, rid=302)
    status, answer = send(server, path, future)
    assert status == 400 and answer["error"]["code"] == -32020 and answer["id"] == 302, answer
    assert "MCP-Protocol-Version" in answer["error"]["message"], answer
    # Header and body agreeing on a version the bridge does not speak.
    status, answer = send(server, path, future, **{"MCP-Protocol-Version": "v999"})
    assert status == 400 and answer["error"]["code"] == -32022, answer
    assert answer["error"]["data"]["requested"] == "v999"
    assert VERSION in answer["error"]["data"]["supported"]


@pytest.mark.parametrize("path", PATHS)
def test_removed_and_unknown_methods_are_not_found_and_never_reach_the_server(bridge, path):
    server, log = bridge
    # The server is up (it has answered a call) before the probes.
    call = ask("tools/call", {"name": tool(path), "arguments": {"n": "before"}, "_meta": META})
    assert send(server, path, call)[0] == 200
    probe = {"uri": "test://watched", "level": "debug", MARK: True, "_meta": META}
    for rid, method in enumerate(["initialize", "ping", "logging/setLevel", "resources/subscribe",
                                  "resources/unsubscribe", "unknown/method"], start=500):
        status, answer = send(server, path, ask(method, probe, rid=rid))
        assert status == 404, (method, answer)
        assert answer["error"]["code"] == -32601 and answer["id"] == rid, answer
    # A call after them reaches the server; the probes did not.
    after = ask("tools/call", {"name": tool(path), "arguments": {"n": "after"}, "_meta": META})
    assert send(server, path, after)[0] == 200
    assert wait_until(lambda: any(m["params"].get("arguments") == {"n": "after"} for m in received(log)))
    assert not [m for m in received(log) if MARK in m["params"]], received(log)
    initializes = [m for m in received(log) if m["method"] == "initialize"]
    assert len(initializes) == 1, "only the bridge's own handshake"


@pytest.mark.parametrize("path", PATHS)
def test_every_post_carries_the_standard_headers(bridge, path):
    server, log = bridge
    listing = ask("tools/list", {"_meta": META})
    call = ask("tools/call", {"name": tool(path), "arguments": {"n": MARK}, "_meta": META})
    for body, header in ((listing, "Mcp-Method"), (listing, "MCP-Protocol-Version"),
                         (call, "Mcp-Method"), (call, "Mcp-Name")):
        status, answer = send(server, path, body, **{header: None})
        assert status == 400 and answer["error"]["code"] == -32020, (header, answer)
        assert header in answer["error"]["message"] and "missing" in answer["error"]["message"], answer
    for body, header, value in ((listing, "Mcp-Method", "prompts/list"), (listing, "Mcp-Method", "TOOLS/LIST"),
                                (call, "Mcp-Name", "wrong_tool_name")):
        status, answer = send(server, path, body, **{header: value})
        assert status == 400 and answer["error"]["code"] == -32020, (header, value, answer)
    assert not [m for m in received(log) if m["params"].get("arguments") == {"n": MARK}]
    # Header names in any case; whitespace around a value is not the value's.
    status, answer = send(server, path, listing, **{"Mcp-Method": None, "mcp-method": "tools/list"})
    assert status == 200 and answer["result"]["tools"], answer
    status, answer = send(server, path, listing, **{"Mcp-Method": None, "MCP-METHOD": "tools/list"})
    assert status == 200, answer
    status, answer = send(server, path, call, **{"Mcp-Name": f"  {tool(path)}  "})
    assert status == 200 and json.loads(answer["result"]["content"][0]["text"]) == {"n": MARK}, answer


def test_a_resource_not_found_says_its_uri_in_both_generations(bridge):
    server, _ = bridge
    uri = "test://nonexistent-resource"
    read = ask("resources/read", {"uri": uri, "_meta": META})
    # The server's own "not found" passes through; the aggregate, which
    # finds no server listing the URI, says it itself.
    for path in PATHS:
        status, answer = send(server, path, read)
        assert answer["error"]["data"]["uri"] == uri, (path, status, answer)
    initialize = ask("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                    "clientInfo": {"name": "old", "version": "1"}})
    status, headers, _ = post(server, "/mcp", initialize)
    assert status == 200
    session = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"}
    post(server, "/mcp", {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    _, _, answer = post(server, "/mcp", ask("resources/read", {"uri": uri}, rid=2), session)
    assert answer["error"]["data"]["uri"] == uri, answer


@pytest.mark.parametrize("path", PATHS)
def test_the_sdk_client_in_its_2026_mode_still_lists_and_calls_tools(bridge, path):
    server, _ = bridge
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})

    async def use():
        async with Client(streamable_http_client(server.base + path, http_client=http), mode="auto") as c:
            assert c.protocol_version == VERSION
            names = [t.name for t in (await c.list_tools()).tools]
            called = await c.call_tool(tool(path), {"said": "hi"})
            return names, called.content[0].text

    names, said = run(use())
    assert tool(path) in names
    assert json.loads(said) == {"said": "hi"}
