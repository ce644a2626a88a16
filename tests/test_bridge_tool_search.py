"""Tool search on `/mcp` (`bridge.tool_search`), on every runtime, reached
by the official MCP Python SDK's `ClientSession` over Streamable HTTP, with
real servers' listings behind it: GitHub's, the reference servers',
Playwright's and others' `tools/list` answers, served by
`tests/fixtures/mcp/listed_server.py` as several bridged servers.

What a client must see in search mode: `tools/list` gives `search_tools`
and `call_tool`, then the tools this session found (the latest first, at
most 20), its client told when a search changed that list; a search's
result names each tool, its server and what it does, with its input schema;
`call_tool` answers as a direct call of the same tool does; bad input is
MCP's "invalid params" and changes nothing; another session is not touched;
`auto` lists every tool while there are few; a reload's new server is
searchable at once; the searches are counted in `/metrics` and shown by
`/control/searches` (the dashboard's feed)."""

import asyncio
import json
import sys
import time
import uuid

import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import API_KEY, BRIDGE_TOKEN, ROOT, metric, mcp_post as post, wait_until

TIMEOUT = 60
LISTED = ROOT / "tests" / "fixtures" / "mcp" / "listed_server.py"
# The 354 tools of the 20 listings, as four servers (each list small
# enough to be kept between listings).
GROUPS = {
    "gh": ["github"],
    "web": ["playwright", "puppeteer", "fetch", "brave-search", "context7"],
    "ops": ["kubernetes", "desktop-commander", "filesystem", "git", "time"],
    "work": [
        "notion", "slack", "gitlab", "server-github", "google-maps",
        "memory", "everything", "sequential-thinking", "postgres",
    ],
}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
INVALID_PARAMS = -32602


def listed(name, listings):
    return f"{name}={sys.executable} {LISTED} {' '.join(listings)}"


def bridge(make_server, mode, groups=GROUPS, copies=1, *more):
    """A bridge of `groups` (each group of listings one server; `copies`
    times, the copies named NAME2, NAME3…) with `bridge.tool_search` set
    to `mode`."""
    servers = [
        listed(name + (str(copy) if copy > 1 else ""), listings)
        for copy in range(1, copies + 1)
        for name, listings in groups.items()
    ]
    args = [a for s in servers for a in ("--server", s)]
    args += ["--set", f"bridge.tool_search={mode}", *more]
    return make_server(*args, env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})


class Told:
    """What the server sent a session's client on its own."""

    def __init__(self):
        self.messages = []

    async def __call__(self, message):
        self.messages.append(repr(message))

    def tools_changed(self):
        return sum("tools/list_changed" in m for m in self.messages)


def session(server, told=None):
    """An SDK session on `/mcp` (a context manager giving it initialized)."""

    class Opened:
        async def __aenter__(self):
            http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
            self.transport = streamable_http_client(f"{server.base}/mcp", http_client=http)
            read, write, *_ = await self.transport.__aenter__()
            self.session = ClientSession(read, write, message_handler=told)
            await self.session.__aenter__()
            await self.session.initialize()
            return self.session

        async def __aexit__(self, *exc):
            await self.session.__aexit__(*exc)
            await self.transport.__aexit__(*exc)

    return Opened()


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


async def names(s):
    return [t.name for t in (await s.list_tools()).tools]


async def search(s, query, **more):
    result = await s.call_tool("search_tools", {"query": query, **more})
    assert not result.is_error, result
    return result


def found(result):
    return [t["name"] for t in result.structured_content["tools"]]


async def heard(told, more_than, timeout=10):
    """Whether `told` heard more than `more_than` tools/list_changed."""
    deadline = time.monotonic() + timeout
    while told.tools_changed() <= more_than:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_search_mode_lists_the_meta_tools_then_what_the_session_found(make_server):
    """The first list is `search_tools` and `call_tool`, each with its
    schema; a search's result has a line per tool (name, server, first line
    of its description) and every tool whole in `structuredContent`, best
    first (a request for a pull request finds GitHub's tool for it); the
    client is told its list changed, and the list is then the meta tools
    and the tools found, as the plain list defines them. A later search's
    tools come first; at most 20 are listed; the same search again changes
    nothing and tells nothing; another session still lists two tools."""
    server = bridge(make_server, "on")
    told, other_told = Told(), Told()

    async def use():
        async with session(server, told) as s, session(server, other_told) as other:
            listing = (await s.list_tools()).tools
            first = [t.name for t in listing]
            schemas = {t.name: t.input_schema for t in listing}
            pulls = await search(s, "create a pull request")
            assert await heard(told, 0), told.messages
            after_one = (await s.list_tools()).tools
            before = told.tools_changed()
            again = await search(s, "create a pull request")
            # Nothing changed: no notice (a second search's notice would
            # come as fast as the first's did).
            await asyncio.sleep(0.3)
            unchanged = told.tools_changed() == before
            browser = await search(s, "take a screenshot of the web page", limit=3)
            assert await heard(told, before)
            after_two = await names(s)
            for query in ["kubernetes pods", "send a slack message", "read a file", "git commit"]:
                await search(s, query, limit=20)
            capped = await names(s)
            others = await names(other)
            return first, schemas, pulls, after_one, again, unchanged, browser, after_two, capped, others

    first, schemas, pulls, after_one, again, unchanged, browser, after_two, capped, others = run(use())
    assert first == ["search_tools", "call_tool"], first
    assert schemas["search_tools"]["required"] == ["query"]
    assert set(schemas["search_tools"]["properties"]) == {"query", "limit", "server"}
    assert schemas["call_tool"]["required"] == ["name"]
    hits = pulls.structured_content["tools"]
    assert len(hits) == 5, hits
    assert all(set(h) == {"name", "server", "description", "inputSchema"} for h in hits), hits
    assert all(h["server"] == h["name"].split("__")[0] for h in hits), hits
    pull = next((h for h in hits if h["name"] == "gh__create_pull_request"), None)
    assert pull and "head" in pull["inputSchema"]["properties"], hits
    lines = pulls.content[0].text.splitlines()
    assert len(lines) == len(hits), lines
    for line, hit in zip(lines, hits):
        assert line.startswith(f"{hit['name']} (server {hit['server']}): "), (line, hit)
        assert hit["description"].splitlines()[0].strip() in line
    listed_after = [t.name for t in after_one]
    assert listed_after == ["search_tools", "call_tool", *found(pulls)], listed_after
    whole = next(t for t in after_one if t.name == pull["name"])
    assert whole.input_schema == pull["inputSchema"] and whole.description == pull["description"]
    assert found(again) == found(pulls) and unchanged
    assert found(browser)[0].startswith("web__"), found(browser)
    assert after_two[2:5] == found(browser), after_two
    assert after_two[5:] == found(pulls), after_two
    assert len(capped) == 2 + 20, capped
    assert others == ["search_tools", "call_tool"], others


def test_call_tool_answers_as_a_direct_call_and_a_search_can_keep_to_one_server(make_server):
    """`call_tool` of a tool found gives the very result a direct call of
    its `/mcp` name gives; a tool never found is callable by name too; a
    search with `server` finds only that server's tools."""
    server = bridge(make_server, "on")

    async def use():
        async with session(server) as s:
            hits = found(await search(s, "list kubernetes pods", limit=1))
            arguments = {"namespace": "default"}
            through = await s.call_tool("call_tool", {"name": hits[0], "arguments": arguments})
            direct = await s.call_tool(hits[0], arguments)
            unlisted = await s.call_tool("ops__get_current_time", {"timezone": "UTC"})
            only_web = found(await search(s, "create an issue", server="web", limit=10))
            return hits, through, direct, unlisted, only_web

    hits, through, direct, unlisted, only_web = run(use())
    assert hits[0].startswith("ops__"), hits
    assert through.model_dump() == direct.model_dump()
    assert json.loads(direct.content[0].text) == {"tool": hits[0].split("__", 1)[1], "arguments": {"namespace": "default"}}
    assert json.loads(unlisted.content[0].text)["tool"] == "get_current_time"
    assert only_web and all(n.startswith("web__") for n in only_web), only_web


def test_bad_input_is_invalid_params_and_changes_nothing(make_server):
    """An empty query, a limit of 0 or 21, a server that does not exist,
    and `call_tool` of a tool that does not exist: each is MCP's "invalid
    params" error saying what is wrong, and the session's list and notices
    are as before."""
    server = bridge(make_server, "on")
    told = Told()
    cases = [
        ("search_tools", {"query": ""}, "query"),
        ("search_tools", {"query": "issue", "limit": 0}, "limit"),
        ("search_tools", {"query": "issue", "limit": 21}, "limit"),
        ("search_tools", {"query": "issue", "server": "nowhere"}, "nowhere"),
        ("call_tool", {"name": "gh__no_such_tool", "arguments": {}}, "gh__no_such_tool"),
    ]

    async def use():
        async with session(server, told) as s:
            await search(s, "merge a pull request", limit=2)
            assert await heard(told, 0)
            before, heard_before = await names(s), told.tools_changed()
            errors = []
            for tool, arguments, named in cases:
                try:
                    await s.call_tool(tool, arguments)
                    errors.append((tool, arguments, None, None))
                except MCPError as e:
                    errors.append((named, e.error.code, e.error.message))
            await asyncio.sleep(0.3)
            return before, errors, await names(s), heard_before, told.tools_changed()

    before, errors, after, heard_before, heard_after = run(use())
    for error in errors:
        assert len(error) == 3, f"not refused: {error}"
        named, code, message = error
        assert code == INVALID_PARAMS, error
        assert named in message, error
    assert after == before and len(before) == 4, (before, after)
    assert heard_after == heard_before


def test_auto_lists_every_tool_while_few_and_searches_when_many(make_server):
    """`auto` with 3 tools behind `/mcp` lists them all; with 678 (the
    listings twice over) it lists the meta tools, and that first list is
    under a tenth of the plain list's bytes (measured on the same servers
    with the mode off)."""
    small = bridge(make_server, "auto", {"clock": ["time"], "web": ["fetch"]})

    async def plain():
        async with session(small) as s:
            return await names(s)

    assert sorted(run(plain())) == ["clock__convert_time", "clock__get_current_time", "web__fetch"]

    def first_list_bytes(server):
        status, headers, _ = post(server, "/mcp", INITIALIZE)
        assert status == 200
        ids = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        status, _, body = post(server, "/mcp", listing, ids)
        assert status == 200, body
        return body["result"]["tools"], len(json.dumps(body, separators=(",", ":")))

    large = bridge(make_server, "auto", GROUPS, 2)
    whole = bridge(make_server, "off", GROUPS, 2)
    searching, search_bytes = first_list_bytes(large)
    every, plain_bytes = first_list_bytes(whole)
    assert [t["name"] for t in searching] == ["search_tools", "call_tool"]
    assert len(every) >= 600, len(every)
    print(f"initial tools/list of /mcp, {len(every)} tools: plain {plain_bytes} bytes, "
          f"search mode {search_bytes} bytes, ratio {search_bytes / plain_bytes:.4f}")
    assert search_bytes * 10 <= plain_bytes, (search_bytes, plain_bytes)


def test_a_server_added_by_a_reload_is_searchable_at_once(make_server, tmp_path):
    """With the servers in an `mcpServers` file, a search for Kubernetes
    finds nothing of it; once the file adds a server with Kubernetes'
    tools, the same session's next search finds them."""
    path = tmp_path / "mcp.json"

    def save(groups):
        entries = {
            name: {"command": sys.executable, "args": [str(LISTED), *listings]}
            for name, listings in groups.items()
        }
        new = path.with_name("mcp.json.new")
        new.write_text(json.dumps({"mcpServers": entries}))
        new.replace(path)

    save({"clock": ["time"], "web": ["fetch"]})
    server = make_server("--mcp-json", str(path), "--set", "bridge.tool_search=on",
                         env={"BRIDGE_TEST_MARK": uuid.uuid4().hex}, command="bridge")

    def integrations():
        _, _, listed_now = post(server, "/integrations", None, {"Authorization": f"Bearer {BRIDGE_TOKEN}"}, method="GET")
        return sorted(i["name"] for i in listed_now["integrations"])

    async def use():
        async with session(server) as s:
            before = found(await search(s, "list the pods of a kubernetes cluster", limit=20))
            save({"clock": ["time"], "web": ["fetch"], "kube": ["kubernetes"]})
            deadline = time.monotonic() + 30
            while "kube" not in integrations() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            after = found(await search(s, "list the pods of a kubernetes cluster", limit=3))
            return before, after

    before, after = run(use())
    assert not any(n.startswith("kube__") for n in before), before
    assert after and after[0].startswith("kube__"), after


def test_searches_and_calls_are_counted_and_shown(make_server):
    """`/metrics` counts the searches and the calls through `call_tool`;
    `/control/searches` (what the dashboard shows, bridge token only)
    gives the latest searches, newest first, with what each found and
    which of those were then called, through `call_tool` or directly."""
    server = bridge(make_server, "on")

    async def use():
        async with session(server) as s:
            first = found(await search(s, "search the web", limit=3))
            second = found(await search(s, "list kubernetes pods", limit=2))
            await s.call_tool("call_tool", {"name": second[0], "arguments": {}})
            await s.call_tool(first[0], {"query": "x"})
            return first, second

    first, second = run(use())
    assert wait_until(lambda: metric(server, "mcp_provider_tool_searches_total") == 2, timeout=10)
    assert metric(server, "mcp_provider_tool_search_calls_total") == 1
    as_admin = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}

    def shown():
        return post(server, "/control/searches", None, as_admin, method="GET")[2]

    assert wait_until(lambda: len(shown()["recent"][0]["called"]) == 1, timeout=10), shown()
    body = shown()
    assert (body["searches"], body["calls"]) == (2, 1), body
    assert [r["query"] for r in body["recent"]] == ["list kubernetes pods", "search the web"]
    assert body["recent"][0] == {"query": "list kubernetes pods", "found": second, "called": [second[0]]}
    assert body["recent"][1] == {"query": "search the web", "found": first, "called": [first[0]]}
    assert post(server, "/control/searches", None, method="GET")[0] == 401, "the API key does not see it"
