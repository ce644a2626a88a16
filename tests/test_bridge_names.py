"""Names on `/mcp` within what clients take, on every runtime: a server
configured (in an `mcpServers` file) with an empty prefix lists its tools
bare, one whose tool names are long has them shortened to 64 characters,
and the official MCP Python SDK calls each by the name it was given and
reaches exactly the right tool. What a tool and its answer carry
(`outputSchema`, `annotations`, `icons`, `_meta`, `structuredContent`)
comes through unchanged on `/mcp`, on `/mcp/NAME`, through the REST API
and through an OpenAPI operation."""

import asyncio
import json
import sys
import time
import uuid

import httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import API_KEY, ROOT
from test_bridge import EVERYTHING, TIMEOUT
from test_bridge_aggregate import TOOL_NAME, run

RICH = ROOT / "tests" / "fixtures" / "mcp" / "rich_server.py"
sys.path.insert(0, str(RICH.parent))
from rich_server import LONG, TOOLS  # noqa: E402

FORECAST = TOOLS[0]


def names_bridge(make_server, tmp_path, *flags):
    """server-everything with an empty prefix and the rich server, both
    from an `mcpServers` file."""
    servers = {
        "everything": {"command": str(EVERYTHING), "args": ["stdio"], "prefix": ""},
        "rich": {"command": sys.executable, "args": [str(RICH)]},
    }
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    return make_server("--mcp-json", str(path), *flags, env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})


def client(server, path="/mcp"):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    return Client(streamable_http_client(f"{server.base}{path}", http_client=http))


async def tools_once_up(c, wanted):
    """The tools listed once every name of `wanted` is among them (a
    server still starting is left out of a listing until it answers)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        tools = (await c.list_tools()).tools
        names = {t.name for t in tools}
        if wanted(names) or time.monotonic() > deadline:
            return tools
        await asyncio.sleep(0.2)


def as_sent(model):
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def test_bare_and_shortened_names_are_called_exactly(make_server, tmp_path):
    server = names_bridge(make_server, tmp_path)

    async def use():
        async with client(server) as c:
            tools = await tools_once_up(c, lambda n: "echo" in n and "rich__get_forecast" in n)
            names = [t.name for t in tools]
            [short] = [n for n in names if n.startswith("rich__summarize")]
            echoed = await c.call_tool("echo", {"message": "bare"})
            called = await c.call_tool(short, {})
            forecast = await c.call_tool("rich__get_forecast", {"city": "Oslo"})
            return tools, names, short, echoed, called, forecast

    tools, names, short, echoed, called, forecast = run(use())
    assert {"echo", "get-sum", "rich__get_forecast"} <= set(names), names
    assert all(TOOL_NAME.match(n) and len(n) <= 64 for n in names), names
    assert len(short) == 64 and short != f"rich__{LONG}", short
    assert echoed.content[0].text == "Echo: bare"
    assert called.content[0].text == f"called {LONG}"
    # What the tool and its answer carry, unchanged.
    listed = as_sent(next(t for t in tools if t.name == "rich__get_forecast"))
    assert listed == {**FORECAST, "name": "rich__get_forecast"}, listed
    assert forecast.structured_content == {"city": "Oslo", "celsius": 21.5}
    assert forecast.meta == {"example.com/trace": "t-1"}


def test_the_longest_name_is_a_setting_and_the_server_s_own_path_keeps_its_names(make_server, tmp_path):
    server = names_bridge(make_server, tmp_path, "--set", "bridge.max_name_len=40")

    async def use():
        async with client(server) as c:
            tools = await tools_once_up(c, lambda n: "rich__get_forecast" in n)
            short = next(t.name for t in tools if t.name.startswith("rich__summ"))
            called = await c.call_tool(short, {})
        async with client(server, "/mcp/rich") as c:
            own = (await c.list_tools()).tools
            forecast = await c.call_tool("get_forecast", {"city": "Rome"})
        return short, called, own, forecast

    short, called, own, forecast = run(use())
    assert len(short) == 40, short
    assert called.content[0].text == f"called {LONG}"
    assert [as_sent(t) for t in own] == TOOLS
    assert forecast.structured_content == {"city": "Rome", "celsius": 21.5}
    assert forecast.meta == {"example.com/trace": "t-1"}


def test_rest_and_openapi_pass_what_tools_carry(make_server, tmp_path):
    server = names_bridge(make_server, tmp_path)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=server.base, headers=headers, timeout=TIMEOUT) as http:
        one = http.get("/tools", params={"server": "rich"}).json()
        assert one["tools"] == TOOLS, one
        every = http.get("/tools").json()
        tagged = [t for t in every["tools"] if t.get("server") == "rich"]
        assert tagged == [{**t, "server": "rich"} for t in TOOLS], every
        rest = http.post("/tools/call", json={"server": "rich", "tool": "get_forecast", "params": {"city": "Nice"}})
        assert rest.status_code == 200, rest.text
        result = rest.json()
        result = result.get("result", result)
        assert result["structuredContent"] == {"city": "Nice", "celsius": 21.5}, result
        assert result["_meta"] == {"example.com/trace": "t-1"}, result
        operation = http.post("/tools/rich/get_forecast", json={"city": "Metz"})
        assert operation.status_code == 200, operation.text
        assert operation.json()["structuredContent"] == {"city": "Metz", "celsius": 21.5}
        assert operation.json()["_meta"] == {"example.com/trace": "t-1"}
        doc = http.get("/openapi/rich.json").json()
        assert f"/tools/rich/{LONG}" in doc["paths"], list(doc["paths"])
