"""Live reload of the MCP bridge's servers, on both runtimes: the bridge is
started from an `mcpServers` JSON file (`--mcp-json`) or a TOML config file
(`--config`), and the file is rewritten while clients call: the added server
answers, the removed one's session gets 404 and a new client is told there
is no such server, the changed one answers under its new spec, and the
unchanged one keeps its child and every client's calls succeed. A bad file
is refused with a line naming it, the old configuration still serving.
SIGHUP reloads too.

The servers are the real `@modelcontextprotocol/server-everything`, the
clients the official `mcp` SDK (and raw requests where a session id is
needed)."""

import asyncio
import ctypes
import json
import os
import platform
import signal
import socket
import time
import uuid

import pytest

from conftest import API_KEY, BRIDGE_TOKEN, live_processes, mcp_post as post, parse_headers, wait_until, with_env
from test_bridge import EVERYTHING, client

TIMEOUT = 60
CLIENTS = 10
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
AS_ADMIN = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT))


def save(path, text):
    """Writes `path` as editors save: a new file renamed over the old."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def config_text(kind, servers):
    """`servers` ({name: env}) as an `mcpServers` file or a TOML config,
    each running server-everything over stdio with `env`."""
    if kind == "json":
        entries = {name: {"command": str(EVERYTHING), "args": ["stdio"], "env": env} for name, env in servers.items()}
        return json.dumps({"mcpServers": entries})
    tables = []
    for name, env in servers.items():
        inline = ", ".join(f"{key} = {json.dumps(value)}" for key, value in env.items())
        tables.append(
            f'[[bridge.servers]]\nname = "{name}"\ncommand = {json.dumps(str(EVERYTHING))}\n'
            f'args = ["stdio"]\nenv = {{ {inline} }}\n'
        )
    return "\n".join(tables)


def start(make_server, kind, path, servers):
    """A bridge whose servers `servers` are read from `path` (a file of
    `kind`), logging what it reloads."""
    path.write_text(config_text(kind, servers))
    flag = "--mcp-json" if kind == "json" else "--config"
    return make_server(flag, str(path), env={"RUST_LOG": "info", "BRIDGE_TEST_MARK": uuid.uuid4().hex},
                       command="bridge")


def names(server):
    _, _, listed = post(server, "/integrations", None, AS_ADMIN, method="GET")
    return sorted(i["name"] for i in listed["integrations"])


def session(server, name):
    """A raw Streamable HTTP session on server `name`: its headers for
    later requests."""
    status, headers, _ = post(server, f"/mcp/{name}", INITIALIZE)
    assert status == 200, status
    return {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}


def children(role):
    """Live processes whose environment holds ROLE=`role`."""
    return live_processes(with_env("ROLE", role))


async def env_of(server, name):
    """Server `name`'s environment, as its `get-env` tool tells a new client."""
    async with client(server, name) as c:
        result = await c.call_tool("get-env", {})
        return json.loads(result.content[0].text)


async def echo(server, name, message):
    async with client(server, name) as c:
        return (await c.call_tool("echo", {"message": message})).content[0].text


def log_lines(server, needle):
    return [line for line in server.log_path.read_text().splitlines() if needle in line]


@pytest.mark.parametrize("kind", ["json", "toml"])
def test_a_rewritten_file_adds_removes_and_changes_servers_while_the_others_serve_on(make_server, tmp_path, kind):
    mark = uuid.uuid4().hex
    roles = {name: f"{name}-{mark}" for name in ("steady", "gone", "shifty", "added")}
    path = tmp_path / ("mcp.json" if kind == "json" else "config.toml")
    before = {
        "steady": {"ROLE": roles["steady"]},
        "gone": {"ROLE": roles["gone"]},
        "shifty": {"ROLE": roles["shifty"], "VERSION": "1"},
    }
    server = start(make_server, kind, path, before)
    assert names(server) == ["gone", "shifty", "steady"]
    # Added at run time: not in the file, so no reload touches it.
    added_at_run_time = {"name": "mine", "command": str(EVERYTHING), "args": ["stdio"]}
    assert post(server, "/integrations", added_at_run_time, AS_ADMIN)[0] == 201
    assert run(env_of(server, "shifty"))["VERSION"] == "1"
    gone = session(server, "gone")
    shifty = session(server, "shifty")
    assert post(server, "/mcp/gone", PING, gone)[0] == 200
    after = {
        "added": {"ROLE": roles["added"]},
        "steady": {"ROLE": roles["steady"]},
        "shifty": {"ROLE": roles["shifty"], "VERSION": "2"},
    }

    async def calls_through_the_reload():
        stop = asyncio.Event()
        failures, done = [], [0] * CLIENTS
        before_reload = asyncio.Event()

        async def caller(n):
            # Half keep a session (the session revisions), half call
            # statelessly (the newest revision).
            async with client(server, "steady", mode="legacy" if n % 2 else "auto") as c:
                for i in range(5000):
                    if stop.is_set():
                        return
                    try:
                        result = await c.call_tool("echo", {"message": f"{n}/{i}"})
                        if result.content[0].text != f"Echo: {n}/{i}":
                            failures.append((n, i, result))
                    except Exception as e:  # noqa: BLE001 - every failure is the finding
                        failures.append((n, i, repr(e)))
                    done[n] += 1
                    if all(done):
                        before_reload.set()

        tasks = [asyncio.create_task(caller(n)) for n in range(CLIENTS)]
        await asyncio.wait_for(before_reload.wait(), 30)
        steady_child = children(roles["steady"])
        assert len(steady_child) == 1, steady_child
        save(path, config_text(kind, after))
        reloaded = await asyncio.to_thread(wait_until, lambda: names(server) == ["added", "mine", "shifty", "steady"])
        at_reload = list(done)
        # The clients go on past the reload before they stop.
        await asyncio.to_thread(wait_until, lambda: all(d >= a + 3 for d, a in zip(done, at_reload)))
        stop.set()
        await asyncio.gather(*tasks)
        assert reloaded, names(server)
        assert not failures, failures[:5]
        assert all(d >= a + 3 for d, a in zip(done, at_reload)), (done, at_reload)
        # The unchanged server kept its one child all along.
        assert children(roles["steady"]) == steady_child
        return steady_child

    steady_child = run(calls_through_the_reload())

    # The added server answers; the changed one under its new spec.
    assert run(echo(server, "added", "new here")) == "Echo: new here"
    assert run(env_of(server, "shifty"))["VERSION"] == "2"
    assert run(echo(server, "mine", "still mine")) == "Echo: still mine"
    # The removed and the changed server's sessions ended: 404, so an SDK
    # client initializes again; a new client of the removed one is told
    # there is no such server.
    assert post(server, "/mcp/gone", PING, gone)[0] == 404
    assert post(server, "/mcp/shifty", PING, shifty)[0] == 404
    status, _, refused = post(server, "/mcp/gone", INITIALIZE)
    assert status == 404 and "no bridged MCP server is called `gone`" in refused["error"]["message"], refused
    assert wait_until(lambda: not children(roles["gone"])), "the removed server's child outlived it"
    assert wait_until(lambda: len(children(roles["shifty"])) == 1), children(roles["shifty"])
    lines = log_lines(server, "configuration was reloaded")
    assert len(lines) == 1 and "added `added`; removed `gone`; changed `shifty`; 1 unchanged" in lines[0], lines

    # A bad file is refused with a line naming it; the old one serves on.
    save(path, "{ not json" if kind == "json" else "[[bridge.servers]\nname = ")
    assert wait_until(lambda: log_lines(server, "was not reloaded")), server.log_path.read_text()
    [refusal] = log_lines(server, "was not reloaded")
    assert str(path) in refusal and "the previous one stays in force" in refusal, refusal
    assert run(echo(server, "added", "after the bad file")) == "Echo: after the bad file"
    assert run(echo(server, "steady", "steady still")) == "Echo: steady still"
    assert names(server) == ["added", "mine", "shifty", "steady"]
    # Put right, it is taken again.
    save(path, config_text(kind, {"steady": {"ROLE": roles["steady"]}}))
    assert wait_until(lambda: names(server) == ["mine", "steady"]), names(server)
    assert children(roles["steady"]) == steady_child


def test_sighup_reloads_the_files_at_once(make_server, tmp_path):
    mark = uuid.uuid4().hex
    path = tmp_path / "mcp.json"
    server = start(make_server, "json", path, {"steady": {"ROLE": f"steady-{mark}"}})
    assert run(echo(server, "steady", "before")) == "Echo: before"

    # Nothing changed: a reload all the same, which says so; the server
    # lives on (SIGHUP's default would have ended it).
    server.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: log_lines(server, "reloaded (SIGHUP)"), timeout=2), server.log_path.read_text()
    [line] = log_lines(server, "reloaded (SIGHUP)")
    assert "no server added, removed or changed; 1 unchanged" in line, line
    assert server.alive()

    save(path, config_text("json", {"steady": {"ROLE": f"steady-{mark}"}, "added": {"ROLE": f"added-{mark}"}}))
    server.proc.send_signal(signal.SIGHUP)
    started = time.monotonic()
    assert wait_until(lambda: names(server) == ["added", "steady"], timeout=2), names(server)
    assert time.monotonic() - started < 1.5
    assert run(echo(server, "added", "after")) == "Echo: after"
    assert server.alive()


def test_a_bridge_started_with_no_servers_shows_the_ones_a_reload_adds_in_its_figures(make_server, tmp_path):
    """With no server, the bridge's figures go out once and then rest; a
    server a reload adds wakes them: /metrics counts its calls, and drops
    it once a later reload removes it."""
    from test_bridge_api import metrics

    path = tmp_path / "mcp.json"
    server = start(make_server, "json", path, {})
    assert names(server) == []
    time.sleep(1.5)  # past the first report, which found no server
    save(path, config_text("json", {"late": {"ROLE": f"late-{uuid.uuid4().hex}"}}))
    assert wait_until(lambda: names(server) == ["late"]), names(server)
    assert run(echo(server, "late", "counted")) == "Echo: counted"
    calls = ("mcp_provider_bridge_calls_total", (("server", "late"),))
    assert wait_until(lambda: metrics(server).get(calls, 0) >= 1, timeout=5), metrics(server)
    save(path, config_text("json", {}))
    assert wait_until(lambda: calls not in metrics(server), timeout=5), metrics(server)


def test_a_sighup_on_any_thread_leaves_open_connections_answering(make_server, tmp_path):
    """A reload's SIGHUP lands on whichever thread the kernel picks (and a
    debugger attaching interrupts every thread the same way): a thread
    waiting to read a client's next request is interrupted, and the client
    must still be answered on the connection it keeps."""
    path = tmp_path / "mcp.json"
    server = start(make_server, "json", path, {})
    request = (
        f"GET /integrations HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BRIDGE_TOKEN}\r\n\r\n"
    ).encode()

    def answer(sock):
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed instead of answering: {buf!r}"
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        while len(body) < int(parse_headers(head)["content-length"]):
            chunk = sock.recv(65536)
            assert chunk, "the connection closed in the middle of an answer"
            body += chunk
        return int(head.split(b" ", 2)[1])

    libc = ctypes.CDLL(None, use_errno=True)
    # tgkill(2): a signal to one thread of another process.
    sys_tgkill = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    pid = server.proc.pid
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for round_ in range(3):
            sock.sendall(request)
            assert answer(sock) == 200
            # Every thread is waiting again, this connection's reader too.
            time.sleep(0.3)
            for tid in os.listdir(f"/proc/{pid}/task"):
                libc.syscall(sys_tgkill, pid, int(tid), signal.SIGHUP)
            assert wait_until(lambda: len(log_lines(server, "reloaded (SIGHUP)")) > round_, timeout=5)
        sock.sendall(request)
        assert answer(sock) == 200
    assert server.alive()
