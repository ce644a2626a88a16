"""`/mcp`, the gateway, with two real servers behind it
(`tests/fixtures/mcp/claims_server.py`, written with the official Python
SDK) and the official MCP Python client in front, on every runtime:

- R3-4: a resource URI is read from the first server in the configuration
  that claims it (by listing it, or by a template it starts like), or from
  the server configured to own its beginning (`resources`); a later
  server listing the same URI, a broader or longer template, or 25,000
  URIs does not get the first one's reads;
- the logging level a client sets before it has used any server reaches
  every server the session uses, when it first uses it."""

import asyncio
import json
import sys

import pytest

from conftest import ROOT
from test_bridge import TIMEOUT, bridge_server
from test_bridge_aggregate import client, run

# Each read races the aggregate listing's deadline.
pytestmark = pytest.mark.serial

CLAIMS = ROOT / "tests" / "fixtures" / "mcp" / "claims_server.py"
README = "file:///project/readme.md"


def claims(name, *asked):
    """A NAME=COMMAND of the claims server called `name`, told `asked`
    (`uri=…`, `template=…`, `many=N:PREFIX`)."""
    return f"{name}={sys.executable} {CLAIMS} {name} {' '.join(asked)}"


async def read(c, uri):
    """The text `uri` reads as through `/mcp`: `SERVER read URI`."""
    return (await c.read_resource(uri)).contents[0].text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_r3_4_a_uri_a_later_server_lists_too_is_read_from_the_first(make_server, mode):
    """`evil`, configured after `files`, lists `files`' URI too: reads of it
    go to `files`, both listings' URIs shown."""
    server = bridge_server(make_server, claims("files", f"uri={README}"), claims("evil", f"uri={README}"))

    async def use():
        async with client(server, mode=mode) as c:
            uris = [str(r.uri) for r in (await c.list_resources()).resources]
            return uris, await read(c, README)

    uris, text = run(use())
    assert uris == [README, README], uris
    assert text == f"files read {README}"


def test_r3_4_a_later_servers_broader_or_longer_template_takes_no_uri_of_the_first(make_server):
    """`files` has `file:///project/{path}`; `evil`, configured after it,
    `file:///{path}` and the longer `file:///project/src/{path}`: every
    URI `files`' template covers is read from `files`, only the rest from
    `evil`."""
    server = bridge_server(
        make_server,
        claims("files", "template=file:///project/{path}"),
        claims("evil", "template=file:///{path}", "template=file:///project/src/{path}"),
    )

    async def use():
        async with client(server, mode="legacy") as c:
            await c.list_resource_templates()
            uris = ["file:///project/src/main.rs", README, "file:///etc/hosts"]
            return [await read(c, uri) for uri in uris]

    src, readme, hosts = run(use())
    assert src == "files read file:///project/src/main.rs"
    assert readme == f"files read {README}"
    assert hosts == "evil read file:///etc/hosts"


def test_r3_4_a_server_listing_25000_uris_takes_none_of_the_firsts(make_server):
    """`evil` lists 25,000 URIs after `files`' one: `files`' URI is still
    read from `files`, and `evil`'s newest from `evil` (what it loses past
    its bound is its own oldest)."""
    server = bridge_server(make_server, claims("files", "uri=notes://files/1"), claims("evil", "many=25000:flood://n/"))

    async def use():
        async with client(server, mode="legacy") as c:
            # A server still starting is left out of a listing after 5 s:
            # listed again until both parts are in (a bounded few times).
            for _ in range(5):
                uris = [str(r.uri) for r in (await c.list_resources()).resources]
                if len(uris) == 25001:
                    break
            return uris, await read(c, "notes://files/1"), await read(c, "flood://n/24999")

    uris, own, newest = run(use())
    assert len(uris) == 25001 and uris[0] == "notes://files/1", len(uris)
    assert own == "files read notes://files/1"
    assert newest == "evil read flood://n/24999"


def test_r3_4_a_configured_uri_beginning_owns_its_uris_whoever_lists_them(make_server, tmp_path):
    """`files` configured with `resources = ["file:///project/"]` after
    `evil`, both listing the same URI under it: reads go to `files`; a URI
    outside it still to `evil`, first in the configuration."""
    tables = []
    for name, asked, owned in [
        ("evil", [f"uri={README}", "uri=file:///elsewhere"], []),
        ("files", [f"uri={README}", "uri=file:///elsewhere"], ["file:///project/"]),
    ]:
        tables.append(
            f'[[bridge.servers]]\nname = "{name}"\ncommand = {json.dumps(sys.executable)}\n'
            f"args = {json.dumps([str(CLAIMS), name, *asked])}\nresources = {json.dumps(owned)}\n"
        )
    config = tmp_path / "config.toml"
    config.write_text("\n".join(tables))
    server = make_server("--config", str(config))

    async def use():
        async with client(server, mode="legacy") as c:
            await c.list_resources()
            return await read(c, README), await read(c, "file:///elsewhere")

    readme, elsewhere = run(use())
    assert readme == f"files read {README}"
    assert elsewhere == "evil read file:///elsewhere"


def test_the_level_set_on_mcp_before_any_server_is_used_reaches_each_server_it_uses(make_server):
    """The client sets `debug` first, as the conformance suite and many
    clients do: each server, used afterwards, reports the level `debug`,
    and its debug log message reaches the client; a level set later goes
    to them at once."""
    server = bridge_server(make_server, claims("first"), claims("second"))
    logged = []
    arrived = asyncio.Event()

    async def on_log(params):
        logged.append(params.data)
        arrived.set()

    async def level(c, name):
        return (await c.call_tool(f"{name}__level", {})).content[0].text

    async def use():
        async with client(server, mode="legacy", logging_callback=on_log) as c:
            await c.set_logging_level("debug")
            first = await level(c, "first")
            if first == "debug":
                # Its message rides the session's stream: waited for.
                await asyncio.wait_for(arrived.wait(), TIMEOUT / 2)
            second = await level(c, "second")
            await c.set_logging_level("error")
            return first, second, await level(c, "first"), await level(c, "second")

    assert run(use()) == ("debug", "debug", "error", "error")
    assert "first logs at debug" in logged, logged
