"""`/mcp`: every bridged server at one address, on both runtimes, reached
by the official MCP Python SDK (both protocol generations) and the MCP
Inspector's CLI, with real stdio servers behind it:
`@modelcontextprotocol/server-everything`,
`@modelcontextprotocol/server-filesystem` on a folder of the test's, and
(for a second server's prompts and resources) one written with the Python
SDK's `MCPServer` (`tests/fixtures/mcp/notes_server.py`).

What a client must see: both servers' tools under `SERVER__TOOL`, calls,
prompts, resources, progress and sampling reaching the right server and
coming back; a server's tool filter holding on this path too. (Names that
mean nothing refused clearly without reaching any server, and a long
server name's tools cut to fit, are asserted in the core's tests of the
aggregate.)"""

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import API_KEY, ROOT
from test_bridge import ARCHITECTURE, EVERYTHING, INSPECTOR, TIMEOUT, refusal, sampler

FILESYSTEM = ROOT / "tests" / "node" / "node_modules" / ".bin" / "mcp-server-filesystem"
NOTES = f"notes={sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'notes_server.py'}"
# MCP's rule for tool names.
TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def aggregate(make_server, folder, *more):
    """A bridge of server-everything (`everything`) and server-filesystem
    (`files`, serving `folder`), plus `more` NAME=COMMAND servers."""
    servers = [f"everything={EVERYTHING} stdio", f"files={FILESYSTEM} {folder}", *more]
    args = [a for s in servers for a in ("--server", s)]
    return make_server(*args, env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})


def client(server, mode="auto", terminate=True, **kwargs):
    """An SDK client of `/mcp`; one that leaves without DELETE, as real
    clients mostly do, when not `terminate`."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    transport = streamable_http_client(f"{server.base}/mcp", http_client=http, terminate_on_close=terminate)
    return Client(transport, mode=mode, **kwargs)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
def test_the_sdk_sees_every_server_at_one_address(make_server, tmp_path, mode, version):
    """Both servers' tools, each under its server's name, every name within
    MCP's rules; a call to each reaches its own server (the file is read
    by server-filesystem, the echo comes from server-everything); a prompt
    and a resource of server-everything's (server-filesystem has none)."""
    (tmp_path / "note.txt").write_text("kept in a folder")
    server = aggregate(make_server, tmp_path)

    async def use():
        async with client(server, mode=mode) as c:
            assert c.protocol_version == version
            assert c.server_info.name == "mcp-provider"
            tools = (await c.list_tools()).tools
            echoed = await c.call_tool("everything__echo", {"message": "through /mcp"})
            read = await c.call_tool("files__read_text_file", {"path": str(tmp_path / "note.txt")})
            uris = [str(r.uri) for r in (await c.list_resources()).resources]
            document = (await c.read_resource(ARCHITECTURE)).contents[0].text
            prompts = [p.name for p in (await c.list_prompts()).prompts]
            prompt = await c.get_prompt("everything__args-prompt", {"city": "Lyon", "state": "Rhône"})
            return tools, echoed, read, uris, document, prompts, prompt

    tools, echoed, read, uris, document, prompts, prompt = run(use())
    names = [t.name for t in tools]
    assert {"everything__echo", "everything__get-sum", "files__read_text_file", "files__list_directory"} <= set(names), names
    assert all(TOOL_NAME.match(n) for n in names), names
    assert all(n.split("__", 1)[0] in ("everything", "files") for n in names), names
    schema = next(t for t in tools if t.name == "files__read_text_file").input_schema
    assert "path" in schema["properties"], schema
    assert echoed.content[0].text == "Echo: through /mcp"
    assert read.content[0].text == "kept in a folder", read
    assert ARCHITECTURE in uris
    assert document.startswith("# Everything Server")
    assert "everything__args-prompt" in prompts, prompts
    assert "Lyon" in prompt.messages[0].content.text


async def prompts_once_up(c, name, timeout=30):
    """The prompts listed once `name` is among them: a server still
    starting (a Python one on a loaded machine can take seconds) is left out
    of a listing until it answers, by design."""
    deadline = time.monotonic() + timeout
    while True:
        prompts = [p.name for p in (await c.list_prompts()).prompts]
        if name in prompts or time.monotonic() > deadline:
            return prompts
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_prompts_and_resources_of_two_servers_come_from_each(make_server, tmp_path, mode):
    """With a second server that has prompts, resources and a resource
    template of its own: both servers' prompts listed under their names and
    each got from its server; both servers' resources listed with their
    URIs as they are and each read from the server that listed it; a URI
    of the second server's template read from it."""
    server = aggregate(make_server, tmp_path, NOTES)

    async def use():
        async with client(server, mode=mode) as c:
            prompts = await prompts_once_up(c, "notes__summarize")
            theirs = await c.get_prompt("notes__summarize", {"topic": "cranes"})
            everythings = await c.get_prompt("everything__args-prompt", {"city": "Lyon"})
            uris = [str(r.uri) for r in (await c.list_resources()).resources]
            templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
            every_note = (await c.read_resource("notes://all")).contents[0].text
            one_note = (await c.read_resource("notes://note/first")).contents[0].text
            document = (await c.read_resource(ARCHITECTURE)).contents[0].text
            added = await c.call_tool("notes__add_note", {"name": "second", "text": "more"})
            after = (await c.read_resource("notes://all")).contents[0].text
            return prompts, theirs, everythings, uris, templates, every_note, one_note, document, added, after

    prompts, theirs, everythings, uris, templates, every_note, one_note, document, added, after = run(use())
    assert {"notes__summarize", "everything__args-prompt"} <= set(prompts), prompts
    assert theirs.messages[0].content.text == "Summarize the notes on cranes."
    assert "Lyon" in everythings.messages[0].content.text
    assert {"notes://all", ARCHITECTURE} <= set(uris), uris
    assert "notes://note/{name}" in templates, templates
    assert every_note == "first"
    assert one_note == "a note kept by the notes server"
    assert document.startswith("# Everything Server")
    assert added.content[0].text == "kept second"
    assert after == "first\nsecond"


def test_a_server_too_slow_for_the_first_listing_is_announced_when_it_comes(make_server, tmp_path):
    """A server that takes longer to start than a listing waits (5 s) is
    left out of the session's first listing; when its part comes after
    all, the session's client is sent `tools/list_changed`, and listing
    again has its tools."""
    slow = f"slow=sh -c 'sleep 9; exec {NOTES.split('=', 1)[1]}'"
    server = make_server("--server", f"everything={EVERYTHING} stdio", "--server", slow)
    told = []

    async def on_message(message):
        told.append(repr(message))

    def notices():
        return sum("tools/list_changed" in m for m in told)

    async def use():
        async with client(server, mode="legacy", message_handler=on_message) as c:
            first = [t.name for t in (await c.list_tools()).tools]
            # The client lists again only when told to (server-everything
            # may say its own list changed too): the slow server's tools
            # must come with one of those notices.
            again, heard = first, 0
            for _ in range(300):
                if notices() > heard:
                    heard = notices()
                    again = [t.name for t in (await c.list_tools()).tools]
                    if any(n.startswith("slow__") for n in again):
                        break
                await asyncio.sleep(0.1)
            return first, again

    first, again = run(use())
    assert "everything__echo" in first and not any(n.startswith("slow__") for n in first), first
    assert notices() > 0, told
    assert {"everything__echo", "slow__add_note"} <= set(again), (again, told)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_progress_and_sampling_reach_the_client_through_the_aggregate(make_server, tmp_path, mode):
    """A call's progress streams before its answer, and server-everything's
    sampling request during a call reaches this client's sampling callback
    (a session's directly; a stateless client's through `input_required`
    and its retry), the sampled text coming back into the call's result."""
    server = aggregate(make_server, tmp_path)
    progress = []
    asked = []

    async def use():
        async with client(server, mode=mode, sampling_callback=sampler("sampled through /mcp", asked)) as c:
            async def on_progress(done, total, message):
                progress.append(done)

            long = await c.call_tool(
                "everything__trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            sampled = await c.call_tool("everything__trigger-sampling-request", {"prompt": "a crane", "maxTokens": 20})
            return long.content[0].text, sampled

    long, sampled = run(use())
    assert "completed" in long.lower(), long
    assert progress == [1, 2, 3], progress
    assert not sampled.is_error and "sampled through /mcp" in sampled.content[0].text, sampled
    assert len(asked) == 1 and "a crane" in asked[0].messages[0].content.text, asked


def test_the_mcp_inspector_cli_lists_and_calls_through_the_aggregate(make_server, tmp_path):
    """The official MCP Inspector's CLI against `/mcp`: both servers'
    tools, and a call to each."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "a.txt").write_text("A")
    server = aggregate(make_server, folder)

    def inspect(*args):
        done = subprocess.run(
            [str(INSPECTOR), "--cli", server.base + "/mcp", "--transport", "http",
             "--header", f"Authorization: Bearer {API_KEY}", *args],
            capture_output=True, text=True, timeout=TIMEOUT * 2,
            env={**os.environ, "HOME": str(tmp_path), "MCP_CATALOG_PATH": str(tmp_path / "mcp.json")},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    names = [t["name"] for t in inspect("--method", "tools/list")["tools"]]
    assert "everything__echo" in names and "files__list_directory" in names, names
    summed = inspect("--method", "tools/call", "--tool-name", "everything__get-sum", "--tool-arg", "a=2", "b=40")
    assert "42" in summed["content"][0]["text"], summed
    listed = inspect("--method", "tools/call", "--tool-name", "files__list_directory", "--tool-arg", f"path={folder}")
    assert "a.txt" in listed["content"][0]["text"], listed


def test_a_filtered_tool_is_absent_and_refused_on_the_aggregate_too(make_server, tmp_path):
    """`exclude_tools` holds on `/mcp`: the tool is not listed, and a call
    to it is an unknown tool, in both generations."""
    config = tmp_path / "filtered.toml"
    config.write_text(
        f'[[bridge.servers]]\nname = "everything"\ncommand = "{EVERYTHING}"\nargs = ["stdio"]\n'
        'exclude_tools = ["get-sum"]\n'
        f'[[bridge.servers]]\nname = "files"\ncommand = "{FILESYSTEM}"\nargs = ["{tmp_path}"]\n'
        'tools = ["list_*"]\n'
    )
    server = make_server("--config", str(config), env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})

    async def use(mode):
        async with client(server, mode=mode) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            refused = await refusal(c, "everything__get-sum", {"a": 1, "b": 2})
        return names, refused

    for mode in ("legacy", "auto"):
        names, refused = run(use(mode))
        assert "everything__echo" in names and "everything__get-sum" not in names, names
        assert {n for n in names if n.startswith("files__")} == {"files__list_directory", "files__list_directory_with_sizes", "files__list_allowed_directories"}, names
        assert refused == "Unknown tool: get-sum", refused


@pytest.mark.long
def test_aggregate_sessions_nobody_deletes_make_room_and_free_their_members(make_server):
    """`mcp` SDK clients that each open an `/mcp` session, call both
    servers and leave without DELETE, under `bridge.max_sessions=20`: 300
    of them in turn are all served, the one that stays keeps its session
    throughout, and the sessions reclaimed take their member clients on
    the servers' children with them (the children's clients stay within
    the cap). Then 200 stateless clients (2026-07-28) calling and listing
    leave no session and no client behind."""
    from test_red_team import WEDGED

    server = make_server("--server", f"a={WEDGED}", "--server", f"b={WEDGED}",
                         "--set", "bridge.max_sessions=20")

    async def echoed(c, tool):
        return (await c.call_tool(tool, {})).content[0].text

    async def churn():
        answers = []
        async with client(server, mode="legacy", terminate=False) as steady:
            for n in range(300):
                async with client(server, mode="legacy", terminate=False) as passing:
                    answers += [await echoed(passing, "a__echo"), await echoed(passing, "b__echo")]
                if n % 50 == 0:
                    answers.append(await echoed(steady, "b__echo"))
            answers.append(await echoed(steady, "a__echo"))
        return answers

    def stats():
        return json.loads(subprocess.run(
            ["curl", "-sf", f"{server.base}/stats", "-H", f"Authorization: Bearer {API_KEY}"],
            capture_output=True, text=True, check=True).stdout)

    def clients_on(bridged):
        return sum(child["clients"] for child in bridged["children"])

    answers = asyncio.run(asyncio.wait_for(churn(), 300))
    assert answers == ["echo"] * 607
    after_sessions = stats()
    assert after_sessions["sessions"] <= 20, after_sessions
    assert all(clients_on(bridged) <= 20 for bridged in after_sessions["servers"]), after_sessions

    # Stateless clients (2026-07-28) of `/mcp`: each request a client of
    # its own on the server it goes to, gone with its answer.
    async def stateless():
        answers = []
        for _ in range(200):
            async with client(server) as passing:
                answers += [await echoed(passing, "a__echo"), await echoed(passing, "b__echo")]
                answers.append(len((await passing.list_tools()).tools))
        return answers

    answers = asyncio.run(asyncio.wait_for(stateless(), 300))
    assert answers == ["echo", "echo", 4] * 200, answers[:6]  # two tools each
    after = stats()
    assert after["sessions"] == after_sessions["sessions"], after
    for bridged, before in zip(after["servers"], after_sessions["servers"]):
        assert clients_on(bridged) == clients_on(before), (bridged, before)

