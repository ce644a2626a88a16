"""Old clients against a stdio server that speaks only the stateless
revision (2026-07-28), through the bridge, on both runtimes.

The server (tests/fixtures/mcp/stateless_server.py) refuses `initialize`
and `ping`, answers `server/discover`, and refuses any request without the
revision's envelope. The bridge finds that out at its handshake and
translates: a session client (the official SDK in `legacy` mode over
Streamable HTTP, and its legacy SSE client) initializes as always, its
requests reach the child in the envelope (its own name and capabilities
in it), results lose the stateless marks, and the child's `input_required`
answer is asked of the client as an ordinary `elicitation/create`, then
the call retried with the answer. A modern client (`auto` mode) gets the
child's stateless exchange as it is."""

import json
import sys

import mcp.types as types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client

from conftest import API_KEY, ROOT
from test_bridge import client, run

STATELESS = f"modern={sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'stateless_server.py'}"


async def elicit_name(context, params):
    assert params.message == "What is your name?"
    return types.ElicitResult(action="accept", content={"name": "Grace"})


async def exercise(c):
    """Everything the fixture serves, from an initialized session."""
    names = [t.name for t in (await c.list_tools()).tools]
    echoed = (await c.call_tool("echo", {"message": "old meets new"})).content[0].text
    whoami = json.loads((await c.call_tool("whoami", {})).content[0].text)
    greeted = (await c.call_tool("ask-name", {})).content[0].text
    note = (await c.read_resource("fixture://note")).contents[0].text
    prompt = (await c.get_prompt("greet", {"who": "Ada"})).messages[0].content.text
    return names, echoed, whoami, greeted, note, prompt


def check(names, echoed, whoami, greeted, note, prompt):
    assert names == ["echo", "whoami", "ask-name", "count"]
    assert echoed == "Echo: old meets new"
    assert "elicitation" in whoami["capabilities"], whoami
    assert greeted == "Hello, Grace"
    assert note == "a stateless note"
    assert prompt == "Greet Ada"


def test_a_session_client_uses_a_stateless_only_server(make_server):
    server = make_server("--server", STATELESS)
    progress = []

    async def use():
        async with client(server, name="modern", mode="legacy", elicitation_callback=elicit_name) as c:
            assert c.protocol_version == "2025-11-25"
            assert c.server_info.name == "stateless-fixture"
            got = await exercise(c)

            async def on_progress(done, total, message):
                progress.append(done)

            counted = await c.call_tool("count", {"to": 3}, progress_callback=on_progress)
            await c.send_ping()  # not in the stateless revision: the bridge answers
            return got, counted.content[0].text

    got, counted = run(use())
    check(*got)
    assert got[2]["client"] == "mcp", got[2]
    assert counted == "counted to 3"
    assert progress == [1, 2, 3]


def test_a_legacy_sse_client_uses_a_stateless_only_server(make_server):
    server = make_server("--server", STATELESS)

    async def use():
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with sse_client(f"{server.base}/mcp/modern/sse", headers=headers) as (read, write):
            async with ClientSession(read, write, elicitation_callback=elicit_name) as session:
                initialized = await session.initialize()
                assert initialized.protocol_version in {"2024-11-05", "2025-11-25"}
                return await exercise(session)

    check(*run(use()))


def test_a_modern_client_gets_the_stateless_server_as_it_is(make_server):
    server = make_server("--server", STATELESS)

    async def use():
        async with client(server, name="modern", mode="auto", elicitation_callback=elicit_name) as c:
            assert c.protocol_version == "2026-07-28"
            names = [t.name for t in (await c.list_tools()).tools]
            echoed = (await c.call_tool("echo", {"message": "new meets new"})).content[0].text
            whoami = json.loads((await c.call_tool("whoami", {})).content[0].text)
            # The SDK does the `input_required` round itself.
            greeted = (await c.call_tool("ask-name", {})).content[0].text
            return names, echoed, whoami, greeted

    names, echoed, whoami, greeted = run(use())
    assert "ask-name" in names
    assert greeted == "Hello, Grace"
    assert echoed == "Echo: new meets new"
    assert "elicitation" in whoami["capabilities"], whoami
