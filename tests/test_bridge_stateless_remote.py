"""A remote MCP server of the stateless revision only
(tests/fixtures/stateless_remote.py) behind the bridge, on every runtime.
Such a server says what it says of its own (a list changed, a resource
updated) only down `subscriptions/listen` streams: the bridge keeps one of
its own open at the server, asking for what its clients need, so a 2025
client's session and a 2026 client's listen stream both hear it."""

import asyncio

from mcp.shared.subscriptions import ResourceUpdated, ToolsListChanged

from conftest import wait_until
from fixtures.stateless_remote import StatelessRemote
from test_bridge import client, run


def test_a_stateless_servers_own_news_reaches_session_and_listen_clients(make_server):
    with StatelessRemote() as remote:
        server = make_server("--server", f"far={remote.url}")
        told = []

        async def on_message(message):
            told.append(repr(message))

        async def use():
            async with client(server, "far", mode="legacy", message_handler=on_message) as old:
                async with client(server, "far") as new:
                    assert new.protocol_version == "2026-07-28"
                    assert [t.name for t in (await old.list_tools()).tools] == ["grow", "touch"]
                    async with new.listen(tools_list_changed=True, resource_subscriptions=["note://a"]) as sub:
                        assert sub.honored.tools_list_changed is True
                        assert sub.honored.resource_subscriptions == ["note://a"]
                        # The bridge's own streams at the server follow the
                        # resource once the listener asked for it.
                        for _ in range(100):
                            if any("note://a" in (f.get("resourceSubscriptions") or []) for f in remote.filters):
                                break
                            await asyncio.sleep(0.05)
                        await new.call_tool("grow", {})
                        first = await asyncio.wait_for(anext(sub), 10)
                        await new.call_tool("touch", {"uri": "note://a"})
                        second = await asyncio.wait_for(anext(sub), 10)
                    for _ in range(100):
                        if any("ToolListChanged" in m for m in told):
                            break
                        await asyncio.sleep(0.05)
                    grown = [t.name for t in (await old.list_tools()).tools]
                    return first, second, grown

        first, second, grown = run(use())
        assert first == ToolsListChanged(), first
        assert second == ResourceUpdated(uri="note://a"), second
        assert any("ToolListChanged" in m for m in told), told
        assert grown == ["grow", "touch", "grown2"], grown
        # What the bridge asked to hear: the lists the server offers.
        assert all(f.get("toolsListChanged") and f.get("resourcesListChanged") for f in remote.filters), remote.filters


def test_a_stateless_servers_listen_stream_cut_is_opened_again(make_server):
    with StatelessRemote() as remote:
        server = make_server("--server", f"far={remote.url}")

        async def use():
            async with client(server, "far") as new:
                await new.list_tools()
                assert wait_until(lambda: remote.listening == 1, timeout=10), remote.listening
                opened = len(remote.filters)
                remote.cut_streams()
                # Opened again after its wait (a second), and what the
                # server then says still arrives.
                for _ in range(100):
                    if len(remote.filters) > opened and remote.listening == 1:
                        break
                    await asyncio.sleep(0.1)
                async with new.listen(tools_list_changed=True) as sub:
                    await new.call_tool("grow", {})
                    return len(remote.filters) - opened, await asyncio.wait_for(anext(sub), 10)

        again, heard = run(use())
        assert again >= 1
        assert heard == ToolsListChanged(), heard
