"""The MCP bridge: a real stdio MCP server (`@modelcontextprotocol/server-everything`
from tests/node) bridged by `serve --server NAME=COMMAND`, reached over
Streamable HTTP by the official MCP Python SDK client (and the MCP
Inspector's CLI), on both runtimes.

What a client must see: the server's tools, and its own answers only, however
many clients share the one child; a crashed child's waiting calls answered
with an error at once, and the child back for the next call. And no child
process outlives the bridge: the whole process group goes. The session rules
of the transport (400 without a session, 404 for an unknown one so the client
initializes again, 401 without the key, 403 for a foreign Origin) and those of
the stateless revision are asserted in the core's tests of the bridge."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import API_KEY, ROOT, live_processes, mcp_post as post, wait_until, with_env

EVERYTHING = ROOT / "tests" / "node" / "node_modules" / ".bin" / "mcp-server-everything"
TIMEOUT = 30


def bridge_server(make_server, *servers, mark=None):
    """A server bridging `servers` (NAME=COMMAND); every process it starts
    carries BRIDGE_TEST_MARK=`mark` in its environment."""
    args = [a for s in servers for a in ("--server", s)]
    return make_server(*args, env={"BRIDGE_TEST_MARK": mark or uuid.uuid4().hex})


def everything(name="everything"):
    return f"{name}={EVERYTHING} stdio"


def client(server, name="everything", mode="auto", **kwargs):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    return Client(streamable_http_client(f"{server.base}/mcp/{name}", http_client=http), mode=mode, **kwargs)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


def marked(mark, but=()):
    """Live processes (not zombies) whose environment holds the mark."""
    return live_processes(with_env("BRIDGE_TEST_MARK", mark), but)


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
def test_the_sdk_client_lists_and_calls_tools_through_the_bridge(make_server, mode, version):
    """`auto` is the newest SDK's default: it asks `server/discover` and
    gets the stateless revision, although server-everything speaks only
    the session revisions (the bridge answers from the child's cached
    `initialize` and translates each request and result); `legacy`
    initializes a session. Either way it gets the child's tools and calls,
    resources and prompts."""
    server = bridge_server(make_server, everything())

    async def use():
        async with client(server, mode=mode) as c:
            assert c.protocol_version == version
            assert c.server_info.name == "mcp-servers/everything"
            names = [t.name for t in (await c.list_tools()).tools]
            assert {"echo", "get-sum", "trigger-long-running-operation"} <= set(names)
            echoed = await c.call_tool("echo", {"message": "across the bridge"})
            summed = await c.call_tool("get-sum", {"a": 2, "b": 40})
            return echoed.content[0].text, summed.content[0].text, await resource_and_prompt(c)

    echoed, summed, (document, prompt) = run(use())
    assert echoed == "Echo: across the bridge"
    assert "42" in summed
    assert document.startswith("# Everything Server")
    assert "Paris" in prompt


ARCHITECTURE = "demo://resource/static/document/architecture.md"


async def resource_and_prompt(c):
    """A listed document resource read, and a prompt with arguments got:
    their texts."""
    uris = [str(r.uri) for r in (await c.list_resources()).resources]
    assert ARCHITECTURE in uris, uris
    document = (await c.read_resource(ARCHITECTURE)).contents[0].text
    assert "args-prompt" in [p.name for p in (await c.list_prompts()).prompts]
    prompt = await c.get_prompt("args-prompt", {"city": "Paris", "state": "Texas"})
    return document, prompt.messages[0].content.text


def test_many_clients_share_one_child_and_get_only_their_own_answers(make_server):
    """Eight clients at once, each with its own session and the same
    JSON-RPC ids as the others: each gets its own echoes, and one child
    serves them all (initialized once)."""
    mark = uuid.uuid4().hex
    server = bridge_server(make_server, everything(), mark=mark)

    async def one(n):
        async with client(server) as c:
            got = []
            for i in range(5):
                result = await c.call_tool("echo", {"message": f"client {n} call {i}"})
                got.append(result.content[0].text)
            return got

    async def all_of_them():
        return await asyncio.gather(*(one(n) for n in range(8)))

    answers = run(all_of_them())
    for n, got in enumerate(answers):
        assert got == [f"Echo: client {n} call {i}" for i in range(5)]
    assert len(marked(mark, but={server.proc.pid})) == 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_progress_from_the_child_reaches_the_client_that_asked(make_server, mode):
    """A call with a progress token is answered as an event stream, its
    progress first and the answer last, in both generations: a client
    never sees the answer before the progress that came before it."""
    server = bridge_server(make_server, everything())
    progress = []

    async def use():
        async with client(server, mode=mode) as c:
            async def on_progress(done, total, message):
                progress.append((done, total))

            result = await c.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 4},
                progress_callback=on_progress,
            )
            return result.content[0].text

    text = run(use())
    assert "completed" in text.lower(), text
    assert [p[0] for p in progress] == [1, 2, 3, 4], progress


def sampler(text, asked):
    """A client's sampling callback: it keeps what it was asked in `asked`
    and answers `text`."""
    import mcp.types as types

    async def sample(context, params):
        asked.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=text),
            model="test-model",
            stop_reason="endTurn",
        )

    return sample


def test_the_child_s_sampling_request_reaches_the_client_whose_call_asked(make_server):
    """server-everything's `trigger-sampling-request` asks its client to
    sample while the call is in flight: the bridge sends that request to a
    client with a call in flight that declared `sampling` (another client,
    calling at the same time without it, is never asked), and the answer
    back to the child. (Over stdio the request names no call: with several
    sampling clients calling at once, `share = "per-session"` makes the
    choice certain.)"""
    server = bridge_server(make_server, everything())
    asked = []

    async def use():
        async with client(server, mode="legacy", sampling_callback=sampler("sampled by sampler", asked)) as c:
            async with client(server, mode="legacy") as other:
                sampled, echoed = await asyncio.gather(
                    c.call_tool("trigger-sampling-request", {"prompt": "a pelican", "maxTokens": 20}),
                    other.call_tool("echo", {"message": "meanwhile"}),
                )
                return sampled.content[0].text, echoed.content[0].text

    sampled, echoed = run(use())
    assert "sampled by sampler" in sampled, sampled
    assert echoed == "Echo: meanwhile"
    assert len(asked) == 1, asked


def test_a_shared_child_started_by_a_plain_client_still_serves_a_sampling_client(make_server):
    """A shared child is told every capability the bridge can route, not
    the first client's: a client that cannot sample starts it, and a later
    one that can still sees `trigger-sampling-request` and has its sampling
    callback asked."""
    server = bridge_server(make_server, everything())
    asked = []
    sample = sampler("sampled late", asked)

    async def use():
        async with client(server, mode="legacy") as first:
            assert (await first.call_tool("echo", {"message": "start it"})).content[0].text == "Echo: start it"
            async with client(server, mode="legacy", sampling_callback=sample) as c:
                names = {t.name for t in (await c.list_tools()).tools}
                assert "trigger-sampling-request" in names, names
                sampled = await c.call_tool("trigger-sampling-request", {"prompt": "a heron", "maxTokens": 20})
                # The plain client's own call is refused at once: its
                # request is not shown to the client that can sample.
                refused = await first.call_tool("trigger-sampling-request", {"prompt": "x", "maxTokens": 5})
                return sampled.content[0].text, refused

    sampled, refused = run(use())
    assert "sampled late" in sampled, sampled
    assert len(asked) == 1 and "a heron" in asked[0].messages[0].content.text, asked
    assert refused.is_error and "no connected client can answer sampling/createMessage" in refused.content[0].text, refused


def test_a_stateless_client_is_asked_through_input_required_and_its_call_resumed(make_server):
    """A client of the stateless revision (the SDK's default) cannot be
    sent a request: the session server's sampling request during its call
    comes back to it as an `input_required` answer, the SDK asks its
    sampling callback and retries with the answer, and the same call at the
    server goes on to its result. Elicitation the same way."""
    import mcp.types as types

    server = bridge_server(make_server, everything())
    asked = []

    async def elicit(context, params):
        asked.append("elicitation")
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async def use():
        async with client(server, mode="auto", sampling_callback=sampler("sampled statelessly", asked),
                          elicitation_callback=elicit) as c:
            assert c.protocol_version == "2026-07-28"
            sampled = await c.call_tool("trigger-sampling-request", {"prompt": "an ibis", "maxTokens": 20})
            elicited = await c.call_tool("trigger-elicitation-request", {})
            return sampled, elicited

    sampled, elicited = run(use())
    assert not sampled.is_error and "sampled statelessly" in sampled.content[0].text, sampled
    assert "an ibis" in asked[0].messages[0].content.text, asked
    text = json.dumps([c.model_dump() for c in elicited.content])
    assert "accept" in text and "Ada Lovelace" in text, text
    assert asked[1] == "elicitation"


def test_the_child_s_roots_and_elicitation_requests_reach_the_client_that_can_answer(make_server):
    """server-everything offers `get-roots-list` and
    `trigger-elicitation-request` only to a client that declared `roots`
    and `elicitation`, and asks that client (`roots/list`,
    `elicitation/create`) while the call is in flight. Through the bridge
    the first client's capabilities are the child's handshake, and each
    request reaches the callback of the client whose call asked, its
    answer back to the child. A second client that declared neither,
    calling at the same time, is never asked."""
    import mcp.types as types

    server = bridge_server(make_server, everything())
    asked = []

    async def list_roots(context):
        asked.append("roots/list")
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/bridged", name="bridged root")])

    async def elicit(context, params):
        asked.append("elicitation/create")
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace", "check": True})

    async def use():
        async with client(server, mode="legacy", list_roots_callback=list_roots, elicitation_callback=elicit) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"get-roots-list", "trigger-elicitation-request"} <= names, names
            async with client(server, mode="legacy") as other:
                roots, echoed = await asyncio.gather(
                    c.call_tool("get-roots-list", {}),
                    other.call_tool("echo", {"message": "meanwhile"}),
                )
                elicited = await c.call_tool("trigger-elicitation-request", {})
                return roots.content[0].text, echoed.content[0].text, elicited

    roots, echoed, elicited = run(use())
    assert "file:///work/bridged" in roots and "bridged root" in roots, roots
    assert echoed == "Echo: meanwhile"
    text = json.dumps([c.model_dump() for c in elicited.content])
    assert "accept" in text and "Ada Lovelace" in text, text
    assert asked.count("elicitation/create") == 1 and "roots/list" in asked, asked



def test_resource_updates_reach_only_the_subscribers(make_server):
    """Two clients of one child; one subscribes to a resource. The child's
    `notifications/resources/updated` for it reaches that client only."""
    server = bridge_server(make_server, everything())
    heard = {"subscriber": [], "other": []}

    def listener(name):
        async def on_message(message):
            inner = getattr(message, "root", message)
            if getattr(inner, "method", None) == "notifications/resources/updated":
                heard[name].append(str(inner.params.uri))

        return on_message

    async def use():
        async with client(server, mode="legacy", message_handler=listener("subscriber")) as subscriber:
            async with client(server, mode="legacy", message_handler=listener("other")) as other:
                uri = str((await subscriber.list_resources()).resources[0].uri)
                await subscriber.subscribe_resource(uri)
                # server-everything sends the subscribed clients an update at once.
                await other.call_tool("toggle-subscriber-updates", {})
                for _ in range(100):
                    if heard["subscriber"]:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                return uri

    uri = run(use())
    assert heard["subscriber"] and set(heard["subscriber"]) == {uri}, heard
    assert heard["other"] == []


def test_a_client_s_cancel_reaches_the_child_under_the_child_s_id(make_server, tmp_path):
    """Two clients call a tool that waits (each numbering its own
    requests); one gives up (the SDK sends `notifications/cancelled`). The
    child hears of exactly that call, under the id the bridge gave it; the
    other call goes on until it is cancelled in turn."""
    log = tmp_path / "cancelled.jsonl"
    waiting = f"{sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'waiting_server.py'}"
    server = make_server("--server", f"waiting={waiting}", env={"WAITING_SERVER_LOG": str(log)})

    def cancelled():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    async def use():
        async with client(server, name="waiting", mode="legacy") as one:
            async with client(server, name="waiting", mode="legacy") as two:
                first = asyncio.create_task(one.call_tool("wait", {}))
                second = asyncio.create_task(two.call_tool("wait", {}))
                await asyncio.sleep(0.5)
                first.cancel()
                for _ in range(100):
                    if cancelled():
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.2)
                seen_after_one = cancelled()
                assert not second.done(), "the other client's call was cancelled too"
                second.cancel()
                for _ in range(100):
                    if len(cancelled()) == 2:
                        break
                    await asyncio.sleep(0.05)
                return seen_after_one

    seen_after_one = run(use())
    assert len(seen_after_one) == 1 and seen_after_one[0]["in_flight_here"], seen_after_one
    both = cancelled()
    assert len(both) == 2 and all(c["in_flight_here"] for c in both), both
    # Two calls with the same client id reached the child under two ids.
    assert both[0]["request_id"] != both[1]["request_id"], both


@pytest.mark.serial
def test_a_killed_child_fails_its_waiting_calls_at_once_and_comes_back(make_server):
    """A call in flight when the child dies gets an error within a second
    (not when the long operation would have ended); the next call starts a
    new child and is answered."""
    mark = uuid.uuid4().hex
    server = bridge_server(make_server, everything(), mark=mark)

    async def use():
        async with client(server) as c:
            await c.call_tool("echo", {"message": "warm"})
            [child] = marked(mark, but={server.proc.pid})
            slow = asyncio.create_task(c.call_tool("trigger-long-running-operation", {"duration": 20, "steps": 2}))
            await asyncio.sleep(0.3)
            os.kill(child, signal.SIGKILL)
            started = time.monotonic()
            with pytest.raises(MCPError) as failed:
                await slow
            waited = time.monotonic() - started
            again = await c.call_tool("echo", {"message": "after the crash"})
            return failed.value, waited, again.content[0].text, child

    error, waited, again, old_child = run(use())
    assert "exited" in str(error), error
    assert waited < 2, waited
    assert again == "Echo: after the crash"
    assert old_child not in marked(mark, but={server.proc.pid})


def test_the_legacy_sse_transport_serves_old_clients(make_server):
    """The 2024-11-05 HTTP+SSE transport, as the SDK's `sse_client` speaks
    it, beside Streamable HTTP clients of the same child."""
    from mcp.client.session import ClientSession
    from mcp.client.sse import sse_client

    server = bridge_server(make_server, everything())

    async def use():
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with sse_client(f"{server.base}/mcp/everything/sse", headers=headers) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = [t.name for t in (await session.list_tools()).tools]
                echoed = await session.call_tool("echo", {"message": "over sse"})
                document, prompt = await resource_and_prompt(session)
                async with client(server) as modern:
                    other = await modern.call_tool("echo", {"message": "beside it"})
                return names, echoed.content[0].text, other.content[0].text, document, prompt

    names, echoed, other, document, prompt = run(use())
    assert "echo" in names
    assert echoed == "Echo: over sse"
    assert other == "Echo: beside it"
    assert document.startswith("# Everything Server")
    assert "Paris" in prompt


INSPECTOR = ROOT / "tests" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"


@pytest.mark.parametrize(("path", "transport"), [("/mcp/everything", "http"), ("/mcp/everything/sse", "sse")])
def test_the_mcp_inspector_cli_lists_and_calls_tools(make_server, tmp_path, path, transport):
    """The official MCP Inspector (its CLI) connects to the bridge over
    Streamable HTTP and over the older HTTP+SSE transport."""
    server = bridge_server(make_server, everything())

    def inspect(*args):
        done = subprocess.run(
            [str(INSPECTOR), "--cli", server.base + path, "--transport", transport,
             "--header", f"Authorization: Bearer {API_KEY}", *args],
            capture_output=True, text=True, timeout=TIMEOUT * 2,
            env={**os.environ, "HOME": str(tmp_path), "MCP_CATALOG_PATH": str(tmp_path / "mcp.json")},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    tools = inspect("--method", "tools/list")
    assert "echo" in [t["name"] for t in tools["tools"]]
    called = inspect("--method", "tools/call", "--tool-name", "get-sum", "--tool-arg", "a=2", "b=40")
    assert "42" in called["content"][0]["text"], called


def test_the_bridge_subcommand_serves_the_bridge_alone(make_server):
    """`bridge` takes `serve`'s flags and runs no echo agent."""
    server = make_server("--server", everything(), command="bridge")

    async def use():
        async with client(server) as c:
            return (await c.call_tool("echo", {"message": "alone"})).content[0].text

    assert run(use()) == "Echo: alone"
    assert server.models() == []


def test_stopping_the_bridge_takes_the_whole_process_group(make_server, tmp_path):
    """A server started through `sh -c` with a background process of its
    own: SIGTERM to the bridge ends the child and everything in its group."""
    mark = uuid.uuid4().hex
    script = f"sleep 300 & exec {EVERYTHING} stdio"
    server = bridge_server(make_server, f"wrapped=sh -c '{script}'", mark=mark)

    async def use():
        async with client(server, name="wrapped") as c:
            return (await c.call_tool("echo", {"message": "wrapped"})).content[0].text

    assert run(use()) == "Echo: wrapped"
    assert len(marked(mark, but={server.proc.pid})) == 2  # the server and the sleep
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=15)
    assert wait_until(lambda: not marked(mark)), marked(mark)


async def refusal(c, tool, arguments):
    """Why the call of `tool` was refused (an unknown tool is a JSON-RPC
    error, which the SDK raises), or "called" when it was not."""
    try:
        await c.call_tool(tool, arguments)
        return "called"
    except MCPError as e:
        return e.error.message


def test_a_filtered_tool_is_unknown_on_every_path(make_server, tmp_path):
    """`exclude_tools` and `tools` (globs) on a server: the tools they
    leave out are absent from its listings and refused as unknown on every
    path — both SDK generations, the REST API, the WebSocket — and one
    server's filter is its own."""
    from websockets.sync.client import connect as ws_connect

    config = tmp_path / "filtered.toml"
    config.write_text(
        f'[[bridge.servers]]\nname = "everything"\ncommand = "{EVERYTHING}"\nargs = ["stdio"]\n'
        'exclude_tools = ["get-sum", "trigger-*"]\n'
        f'[[bridge.servers]]\nname = "only-echo"\ncommand = "{EVERYTHING}"\nargs = ["stdio"]\n'
        'tools = ["ec?o"]\n'
    )
    server = make_server("--config", str(config), env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})

    async def use(mode):
        async with client(server, mode=mode) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            refused = await refusal(c, "get-sum", {"a": 1, "b": 2})
            echoed = await c.call_tool("echo", {"message": mode})
        async with client(server, name="only-echo", mode=mode) as only:
            only_names = [t.name for t in (await only.list_tools()).tools]
        return names, refused, echoed, only_names

    for mode in ("legacy", "auto"):
        names, refused, echoed, only_names = run(use(mode))
        assert "echo" in names and "get-sum" not in names and not any(n.startswith("trigger-") for n in names), names
        assert refused == "Unknown tool: get-sum", refused
        assert echoed.content[0].text == f"Echo: {mode}"
        assert only_names == ["echo"], only_names

    headers = {"Authorization": f"Bearer {API_KEY}"}
    status, _, listed = post(server, "/tools?server=everything", None, headers, method="GET")
    assert status == 200 and "get-sum" not in {t["name"] for t in listed["tools"]}
    status, _, failed = post(server, "/tools/call", {"server": "everything", "tool": "get-sum", "params": {"a": 1, "b": 2}}, headers)
    assert status == 502 and "Unknown tool: get-sum" in failed["error"]["message"], failed
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws", additional_headers=headers, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "create_session", "server": "everything"}))
        assert json.loads(ws.recv(10))["type"] == "session_created"
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                            "params": {"name": "trigger-long-running-operation", "arguments": {}}}))
        frame = json.loads(ws.recv(10))
        assert frame["data"]["error"]["message"] == "Unknown tool: trigger-long-running-operation", frame


def test_the_mcp_servers_files_clients_keep_are_read_as_bridge_servers(make_server, runtime, tmp_path):
    """Claude Desktop's format (`mcpServers`, with a disabled and a remote
    entry) by `--mcp-json`, VS Code's (`servers`) by `bridge.mcp_json` in
    the config file: their stdio and remote servers are bridged, the
    disabled one skipped with a line saying why; a bad file is a usage
    error naming the entry."""
    from conftest import BRIDGE_TOKEN

    desktop = tmp_path / "claude_desktop_config.json"
    desktop.write_text(json.dumps({"mcpServers": {
        "everything": {"command": str(EVERYTHING), "args": ["stdio"], "env": {"FROM_JSON": "1"}},
        "off": {"command": "no-such-server", "disabled": True},
        "remote": {"type": "http", "url": "https://example.com/mcp"},
    }}))
    vscode = tmp_path / "mcp.json"
    vscode.write_text(json.dumps({"servers": {"code": {"type": "stdio", "command": str(EVERYTHING), "args": ["stdio"]}}}))
    config = tmp_path / "config.toml"
    config.write_text(f"[bridge]\nmcp_json = [{json.dumps(str(vscode))}]\n")
    server = make_server("--config", str(config), "--mcp-json", str(desktop),
                         env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})
    auth = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    _, _, listed = post(server, "/integrations", None, auth, method="GET")
    assert sorted(i["name"] for i in listed["integrations"]) == ["code", "everything", "remote"], listed
    remote = next(i for i in listed["integrations"] if i["name"] == "remote")
    assert remote["remote"] == "https://example.com/mcp", remote
    for name in ("everything", "code"):
        status, _, result = post(server, "/tools/call", {"server": name, "tool": "echo", "params": {"message": name}},
                                 {"Authorization": f"Bearer {API_KEY}"})
        assert status == 200 and result["content"][0]["text"] == f"Echo: {name}", result
    log = server.log_path.read_text()
    assert "server `off` is disabled there: not bridged" in log, log

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mcpServers": {"broken": {"command": "x", "args": "not a list"}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
    done = subprocess.run([str(server.binary), "serve", "--mcp-json", str(bad), "--print-config"],
                          env={**env, "HOME": str(tmp_path)}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert f"the MCP servers file {bad}, server `broken`: `args` is not an array of strings" in done.stderr, done.stderr
