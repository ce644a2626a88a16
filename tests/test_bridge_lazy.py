"""Lazy servers (`bridge.lazy = true`), on every runtime: each stdio
server's listings are kept in the state directory from its last run, so
that listing `/mcp` and `/mcp/NAME` starts no child; a call of a tool starts
that tool's server alone, and its fresh listing replaces the kept one.

The servers are `tests/fixtures/mcp/listed_server.py` serving real servers'
`tools/list` answers (GitHub's, Playwright's, the reference servers'), each
started through a small wrapper that notes its name in a log when it starts,
and reached with the official MCP Python SDK."""

import asyncio
import json
import os
import shutil
import stat
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import API_KEY, ROOT, mcp_post as post, wait_until
from test_bridge import TIMEOUT

LISTED = ROOT / "tests" / "fixtures" / "mcp" / "listed_server.py"
LISTINGS = ROOT / "tests" / "fixtures" / "listings"

# Notes the server's name (its first argument) in $LAZY_STARTS, then runs
# listed_server.py on the listing file that follows.
WRAPPER = f"""\
import os, sys
with open(os.environ["LAZY_STARTS"], "a") as log:
    log.write(sys.argv[1] + "\\n")
os.execv(sys.executable, [sys.executable, {str(LISTED)!r}, *sys.argv[2:]])
"""


class Setup:
    """Servers `names` (each serving a copy of its listing of
    tests/fixtures/listings/, which a test may change between runs), a
    state directory, and the log of their starts: runs of the provider on
    them share all three, as runs one after another on a machine do."""

    def __init__(self, make_server, tmp_path, names, lazy=True, more=()):
        self.make_server = make_server
        self.names = names
        self.lazy = lazy
        self.more = list(more)
        self.state = tmp_path / "state"
        self.starts_log = tmp_path / "starts.log"
        self.starts_log.touch()
        self.wrapper = tmp_path / "counted.py"
        self.wrapper.write_text(WRAPPER)
        self.listings = tmp_path / "listings"
        self.listings.mkdir()
        for name in names:
            shutil.copy(LISTINGS / f"{name}.json", self.listing(name))
        self.server = None

    def listing(self, name):
        return self.listings / f"{name}.json"

    def run(self):
        """A new provider process (the last one stopped first)."""
        if self.server is not None:
            self.server.stop()
        servers = [f"{n}={sys.executable} {self.wrapper} {n} {self.listing(n)}" for n in self.names]
        args = [a for s in servers for a in ("--server", s)] + self.more
        env = {
            "XDG_STATE_HOME": str(self.state),
            "LAZY_STARTS": str(self.starts_log),
            "MCP_PROVIDER_BRIDGE_LAZY": "true" if self.lazy else "false",
        }
        self.server = self.make_server(*args, env=env)
        return self.server

    def starts(self):
        """The servers started so far, in order; the log emptied."""
        started = self.starts_log.read_text().split()
        self.starts_log.write_text("")
        return started

    def kept(self):
        """The kept runs, by the name of the server whose listing each
        holds (`listed-NAME`, as the fixture calls itself)."""
        folder = self.state / "mcp-provider" / "servers"
        kept = {}
        for path in folder.glob("*.json") if folder.exists() else []:
            run = json.loads(path.read_text())
            name = run["initialize"]["serverInfo"]["name"].removeprefix("listed-")
            kept[name] = (path, run)
        return kept


def tool_names(listing):
    with open(listing) as f:
        tools = json.load(f)
    if isinstance(tools, dict):
        tools = tools.get("result", tools)["tools"]
    return [t["name"] for t in tools]


def client(server, path="/mcp", **kwargs):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    transport = streamable_http_client(f"{server.base}{path}", http_client=http)
    return Client(transport, mode="legacy", **kwargs)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


def listed(server, path="/mcp"):
    """The tool names an SDK client lists at `path`."""

    async def use():
        async with client(server, path) as c:
            return [t.name for t in (await c.list_tools()).tools]

    return run(use())


def learned(setup, every=None):
    """Waits for the kept runs of `every` server (all by default): them."""
    every = set(every or setup.names)
    assert wait_until(lambda: every <= set(setup.kept())), setup.kept()
    return setup.kept()


def test_a_first_run_starts_each_server_once_and_keeps_its_listing(make_server, tmp_path):
    """Nothing kept: listing `/mcp` starts each server (once, however many
    clients list), as without `lazy`; each one's tools are then kept in a
    file of the state directory that only the user may read."""
    setup = Setup(make_server, tmp_path, ["github", "playwright"])
    server = setup.run()
    first = listed(server)
    assert listed(server) == first
    assert sorted(setup.starts()) == ["github", "playwright"]
    expected = [f"github__{n}" for n in tool_names(LISTINGS / "github.json")]
    expected += [f"playwright__{n}" for n in tool_names(LISTINGS / "playwright.json")]
    assert first == expected
    kept = learned(setup)
    for name in setup.names:
        path, run_ = kept[name]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        tools = run_["lists"]["tools"]["result"]["tools"]
        assert [t["name"] for t in tools] == tool_names(LISTINGS / f"{name}.json")
    # Nothing but the kept files is left in the folder (written whole).
    assert len(list((setup.state / "mcp-provider" / "servers").iterdir())) == 2


def test_a_later_run_lists_with_no_child_and_a_call_starts_only_its_server(make_server, tmp_path):
    """A new provider process on the same state: `/mcp`, `/mcp/NAME` and
    the REST listing are answered from the kept listings with no server
    started; a call of one server's tool starts that server alone, and is
    answered by it."""
    setup = Setup(make_server, tmp_path, ["github", "playwright", "filesystem"])
    first = listed(setup.run())
    learned(setup)
    setup.starts()

    server = setup.run()
    assert listed(server) == first
    assert listed(server, "/mcp/playwright") == tool_names(LISTINGS / "playwright.json")
    status, _, body = post(server, "/tools?server=filesystem", None, method="GET")
    assert status == 200, body
    assert [t["name"] for t in body["tools"]] == tool_names(LISTINGS / "filesystem.json")
    assert setup.starts() == [], "listing started a server"

    async def call():
        async with client(server) as c:
            return await c.call_tool("github__create_issue", {"owner": "o", "repo": "r", "title": "t"})

    result = run(call())
    assert not result.is_error, result
    assert json.loads(result.content[0].text)["tool"] == "create_issue"
    assert setup.starts() == ["github"]


def test_tool_search_finds_a_kept_servers_tools_with_no_child(make_server, tmp_path):
    """With tool search on `/mcp`, a later run searches the kept listings
    with no server started; `call_tool` of a tool found starts its server
    alone."""
    more = ["--set", "bridge.tool_search=on"]
    setup = Setup(make_server, tmp_path, ["github", "playwright", "slack"], more=more)

    async def search_and_call(server, call):
        async with client(server) as c:
            listed_first = [t.name for t in (await c.list_tools()).tools]
            result = await c.call_tool("search_tools", {"query": "open a new issue in a repository"})
            found = [t["name"] for t in result.structured_content["tools"]]
            called = None
            if call:
                arguments = {"owner": "o", "repo": "r", "title": "t"}
                called = await c.call_tool("call_tool", {"name": "github__create_issue", "arguments": arguments})
            return listed_first, found, called

    _, first, _ = run(search_and_call(setup.run(), call=False))
    assert sorted(setup.starts()) == ["github", "playwright", "slack"]
    learned(setup)
    listed_first, found, called = run(search_and_call(setup.run(), call=True))
    assert listed_first == ["search_tools", "call_tool"]
    assert found == first and "github__create_issue" in found, found
    assert not called.is_error, called
    assert json.loads(called.content[0].text)["tool"] == "create_issue"
    assert setup.starts() == ["github"]


def test_the_fresh_listing_replaces_the_kept_one_and_the_session_is_told(make_server, tmp_path):
    """A server whose listing changed between runs is listed as it was
    kept until it starts; once started (by a call), its fresh listing
    replaces the kept one, in the file too, and the session that listed
    is sent `tools/list_changed`, after which it lists the new tools."""
    setup = Setup(make_server, tmp_path, ["git", "fetch"])
    setup.run()
    before = listed(setup.server)
    learned(setup)
    setup.starts()
    # The same server (same command, arguments and environment) now lists
    # more tools.
    grown = json.loads((LISTINGS / "git.json").read_text())
    grown = grown.get("result", grown)["tools"] if isinstance(grown, dict) else grown
    grown = grown + [{"name": "git_bisect", "description": "Finds the commit that broke it.",
                      "inputSchema": {"type": "object", "properties": {}}}]
    setup.listing("git").write_text(json.dumps({"tools": grown}))
    server = setup.run()
    told = []

    async def on_message(message):
        told.append(repr(message))

    async def use():
        async with client(server, message_handler=on_message) as c:
            kept = [t.name for t in (await c.list_tools()).tools]
            first_tool = next(n for n in kept if n.startswith("git__"))
            await c.call_tool(first_tool, {})
            for _ in range(200):
                if any("ToolListChanged" in m for m in told):
                    break
                await asyncio.sleep(0.05)
            return kept, [t.name for t in (await c.list_tools()).tools]

    kept, fresh = run(use())
    assert kept == before
    assert any("ToolListChanged" in m for m in told), told
    assert "git__git_bisect" in fresh and "git__git_bisect" not in kept
    assert setup.starts() == ["git"]
    assert wait_until(lambda: "git_bisect" in json.dumps(setup.kept()["git"][1]))
    # And the next run lists the fresh tools, still with no child.
    assert "git__git_bisect" in listed(setup.run())
    assert setup.starts() == []


def test_without_lazy_every_listing_starts_the_servers_as_before(make_server, tmp_path):
    """`bridge.lazy` off (the default): no listing is kept, and a new
    process starts each server to list `/mcp`, as ever."""
    setup = Setup(make_server, tmp_path, ["github", "memory"], lazy=False)
    first = listed(setup.run())
    assert sorted(setup.starts()) == ["github", "memory"]
    assert listed(setup.run()) == first
    assert sorted(setup.starts()) == ["github", "memory"]
    assert setup.kept() == {}


def test_a_corrupt_or_oversized_kept_file_is_ignored(make_server, tmp_path):
    """A kept file that is not JSON, or larger than a kept listing may be,
    is as none: its server starts to be listed (as on a first run), and
    its listing is kept again, whole."""
    setup = Setup(make_server, tmp_path, ["github", "memory", "git"])
    first = listed(setup.run())
    kept = learned(setup)
    setup.starts()
    kept["github"][0].write_text('{"format": 1, "initialize": ')
    with open(kept["memory"][0], "w") as f:
        f.write('{"pad": "' + "x" * (5 << 20) + '"}')
    assert listed(setup.run()) == first
    assert sorted(setup.starts()) == ["github", "memory"]
    assert wait_until(lambda: all(
        path.stat().st_size < (1 << 20) and json.loads(path.read_text())["format"] == 1
        for path in (kept["github"][0], kept["memory"][0])
    ))
