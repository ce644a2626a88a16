"""The stateless revision (2026-07-28) through the bridge, at `/mcp/NAME`
and at the aggregate `/mcp`, on every runtime: the official SDK client in
its 2026 mode lists and calls tools.

Each strict rule of the revision (the envelope in `params._meta`, the
standard headers checked before the version is, the methods outside the
revision answered not found without reaching a server, a resource no
server has not found with its URI in the error's data) is asserted once,
in the core's tests of the bridge (`bridge::tests::strict`), against the
same two servers played in memory."""

import json
import sys

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import API_KEY
from test_bridge import run

VERSION = "2026-07-28"
PATHS = ["/mcp/probe", "/mcp"]

# A stdio server of the session revisions: one tool, `echo`, that answers
# with its arguments, and no resources.
SERVER = r'''
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    method, rid = message.get("method"), message.get("id")
    params = message.get("params") or {}
    if rid is None:
        continue
    reply = {"jsonrpc": "2.0", "id": rid}
    if method == "initialize":
        reply["result"] = {"protocolVersion": params["protocolVersion"],
                           "capabilities": {"tools": {}, "resources": {}, "logging": {}},
                           "serverInfo": {"name": "echoing", "version": "1"}}
    elif method == "tools/list":
        reply["result"] = {"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        text = json.dumps(params.get("arguments") or {})
        reply["result"] = {"content": [{"type": "text", "text": text}]}
    elif method == "resources/list":
        reply["result"] = {"resources": []}
    elif method in ("ping", "logging/setLevel"):
        reply["result"] = {}
    else:
        reply["error"] = {"code": -32601, "message": "no such method"}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
'''


@pytest.fixture
def bridge(make_server, tmp_path):
    """A bridge of two such servers, `probe` and `other`."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    servers = [f"probe={sys.executable} {script}", f"other={sys.executable} {script}"]
    return make_server(*[a for s in servers for a in ("--server", s)])


def tool(path):
    return "probe__echo" if path == "/mcp" else "echo"


@pytest.mark.parametrize("path", PATHS)
def test_the_sdk_client_in_its_2026_mode_still_lists_and_calls_tools(bridge, path):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})

    async def use():
        async with Client(streamable_http_client(bridge.base + path, http_client=http), mode="auto") as c:
            assert c.protocol_version == VERSION
            names = [t.name for t in (await c.list_tools()).tools]
            called = await c.call_tool(tool(path), {"said": "hi"})
            return names, called.content[0].text

    names, said = run(use())
    assert tool(path) in names
    assert json.loads(said) == {"said": "hi"}
