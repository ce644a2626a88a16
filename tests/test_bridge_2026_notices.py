"""What a client of the 2026-07-28 revision hears besides its answers,
through the bridge, in front of a stdio server of the session revisions
(tests/fixtures/mcp/changing_server.py), with the official `mcp` client,
at `/mcp/NAME` and at the aggregate `/mcp`, on every runtime:

- `subscriptions/listen`: the stream is acknowledged, carries only the
  notifications asked for, and the resources it follows are subscribed to
  at the server while it lasts and released when the client leaves;
- log messages: a request that names a level in its `_meta` hears the
  server's messages at or above it with its answer; one that names none
  hears none."""

import asyncio
import json
import sys

import httpx
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from conftest import API_KEY, ROOT
from test_bridge import run

CHANGING = f"changing={sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'changing_server.py'}"


def client(server, path, **kwargs):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    return Client(streamable_http_client(f"{server.base}{path}", http_client=http), **kwargs)


async def call(c, names, tool, **arguments):
    """Calls `tool` by the name the endpoint lists it under: its text."""
    name = next(n for n in names if n == tool or n.endswith(f"__{tool}"))
    return (await c.call_tool(name, arguments)).content[0].text


async def subscriptions(c, names):
    return json.loads(await call(c, names, "subscriptions"))


@pytest.mark.parametrize("path", ["/mcp/changing", "/mcp"])
def test_a_listen_stream_carries_what_it_asked_for_and_its_subscriptions_end_with_it(make_server, path):
    server = make_server("--server", CHANGING)

    async def use():
        async with client(server, path) as c:
            assert c.protocol_version == "2026-07-28"
            names = [t.name for t in (await c.list_tools()).tools]
            async with c.listen(tools_list_changed=True, resource_subscriptions=["note://a"]) as sub:
                assert sub.honored.tools_list_changed is True
                assert sub.honored.prompts_list_changed is None
                assert sub.honored.resource_subscriptions == ["note://a"]
                followed = await subscriptions(c, names)
                # Not asked for: the prompts' change and note://b's.
                await call(c, names, "rename_prompt")
                await call(c, names, "touch", uri="note://b")
                await call(c, names, "grow")
                first = await asyncio.wait_for(anext(sub), 10)
                await call(c, names, "touch", uri="note://a")
                second = await asyncio.wait_for(anext(sub), 10)
            # The client left: its subscription is released at the server.
            left = None
            for _ in range(100):
                left = await subscriptions(c, names)
                if not left:
                    break
                await asyncio.sleep(0.05)
            return followed, first, second, left

    followed, first, second, left = run(use())
    assert followed == ["note://a"]
    assert first == ToolsListChanged(), first
    assert second == ResourceUpdated(uri="note://a"), second
    assert left == []


@pytest.mark.parametrize("path", ["/mcp/changing", "/mcp"])
def test_a_request_hears_the_log_messages_at_or_above_the_level_it_names(make_server, path):
    server = make_server("--server", CHANGING)
    heard = {"warning": [], None: []}

    async def use(level):
        async def logged(params):
            heard[level].append((params.level, params.data))

        async with client(server, path, log_level=level, logging_callback=logged) as c:
            assert c.protocol_version == "2026-07-28"
            names = [t.name for t in (await c.list_tools()).tools]
            return await call(c, names, "chatter")

    assert run(use("warning")) == "chattered"
    assert run(use(None)) == "chattered"
    assert heard == {"warning": [("error", "a error line")], None: []}


def test_a_listen_request_with_a_malformed_filter_is_refused_in_the_revisions_shape(make_server):
    server = make_server("--server", CHANGING)
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {"jsonrpc": "2.0", "id": 3, "method": "subscriptions/listen",
            "params": {"_meta": meta, "notifications": {"toolsListChanged": "yes"}}}
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "subscriptions/listen",
        "Accept": "application/json, text/event-stream",
    }
    answer = httpx.post(f"{server.base}/mcp/changing", json=body, headers=headers, timeout=10)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["id"] == 3
    assert error["error"]["code"] == -32602
    assert "toolsListChanged" in error["error"]["message"]
