"""Remote MCP servers behind the bridge: the official Python SDK's own
server (tests/fixtures/mcp/remote_server.py) run over HTTP on 127.0.0.1 —
Streamable HTTP with sessions, without them, and legacy HTTP+SSE — bridged
by `serve --server NAME=URL`, and reached by the SDK's client through
`/mcp/NAME` (both generations), the aggregate `/mcp`, legacy SSE, REST and
OpenAPI, on every runtime.

What a client must see: the remote server's tools, resources and prompts
as if it were a stdio child; its progress and its questions (elicitation)
reaching the one client they are for; one upstream session shared by
every client; a server killed mid-call answering that call with an error
within a second, and serving again once restarted without any client
reconnecting; a server that wants a token it was not given answering with
an MCP error that names the login command, not a hang."""

import asyncio
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import mcp.types as types
import pytest
import trustme
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from conftest import API_KEY, ROOT, FakeHandler, LocalHttpServer, Silent, mcp_post as post, wait_until
from test_bridge import client, run
from test_red_team import threads

FIXTURE = ROOT / "tests" / "fixtures" / "mcp" / "remote_server.py"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Remote:
    """The fixture server on a port of its own; `restart` keeps the port.
    With `tls` (a PEM file of its certificate and key), over HTTPS."""

    def __init__(self, mode="streamable", token=None, tls=None):
        self.port = free_port()
        self.mode = mode
        self.token = token
        self.tls = tls
        self.proc = None
        self.start()

    @property
    def url(self):
        path = "/sse" if self.mode == "sse" else "/mcp"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def start(self):
        args = [sys.executable, str(FIXTURE), str(self.port), self.mode]
        if self.token:
            args += ["--token", self.token]
        if self.tls:
            args += ["--tls", str(self.tls)]
        log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)

        def listening():
            if self.proc.poll() is not None:
                return True
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        # Its imports alone take seconds on a busy machine.
        wait_until(listening, timeout=60)
        if self.proc.poll() is not None or not listening():
            log.seek(0)
            raise AssertionError(f"the remote fixture did not start: {log.read().decode(errors='replace')[-2000:]}")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def restart(self):
        self.kill()
        self.start()


@pytest.fixture
def remotes():
    started = []

    def make(mode="streamable", token=None, tls=None):
        remote = Remote(mode, token, tls)
        started.append(remote)
        return remote

    yield make
    for remote in started:
        remote.kill()


async def elicit_name(context, params):
    assert params.message == "What is your name?"
    return types.ElicitResult(action="accept", content={"name": "Grace"})


async def exercise(c):
    """Everything the fixture serves, as a client sees it."""
    names = sorted(t.name for t in (await c.list_tools()).tools)
    echoed = (await c.call_tool("echo", {"message": "far away"})).content[0].text
    greeted = (await c.call_tool("ask-name", {})).content[0].text
    note = (await c.read_resource("remote://note")).contents[0].text
    prompt = (await c.get_prompt("greet", {"who": "Ada"})).messages[0].content.text
    return names, echoed, greeted, note, prompt


EXPECTED = (
    ["ask-name", "count", "echo", "slow", "whoami"],
    "Echo: far away",
    "Hello, Grace",
    "a remote note",
    "Greet Ada",
)


@pytest.mark.parametrize("mode", ["streamable", "stateless", "sse"])
@pytest.mark.parametrize(("client_mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
def test_a_remote_server_is_served_like_a_child(make_server, remotes, mode, client_mode, version):
    remote = remotes(mode)
    server = make_server("--server", f"far={remote.url}")
    progress = []

    async def use():
        async with client(server, name="far", mode=client_mode, elicitation_callback=elicit_name) as c:
            assert c.protocol_version == version
            assert c.server_info.name == "remote-fixture"
            got = await exercise(c)

            async def on_progress(done, total, message):
                progress.append(done)

            counted = await c.call_tool("count", {"to": 3}, progress_callback=on_progress)
            return got, counted.content[0].text

    got, counted = run(use())
    assert got == EXPECTED
    assert counted == "counted to 3"
    assert progress == [1, 2, 3]


def test_a_legacy_sse_client_reaches_a_remote_server(make_server, remotes):
    remote = remotes()
    server = make_server("--server", f"far={remote.url}")

    async def use():
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with sse_client(f"{server.base}/mcp/far/sse", headers=headers) as (read, write):
            async with ClientSession(read, write, elicitation_callback=elicit_name) as session:
                await session.initialize()
                return await exercise(session)

    assert run(use()) == EXPECTED


def test_rest_openapi_and_the_aggregate_endpoint_reach_a_remote_server(make_server, remotes):
    remote = remotes()
    server = make_server("--server", f"far={remote.url}")
    status, _, body = post(server, "/tools/call", {"server": "far", "name": "echo", "arguments": {"message": "rest"}})
    assert status == 200, body
    assert "Echo: rest" in json.dumps(body)
    status, _, spec = post(server, "/openapi.json", None, method="GET")
    assert status == 200, spec
    assert any("echo" in path for path in spec["paths"]), list(spec["paths"])

    async def use():
        async with client(server, name="", mode="legacy") as c:
            names = [t.name for t in (await c.list_tools()).tools]
            called = await c.call_tool("far__echo", {"message": "everywhere"})
            return names, called.content[0].text

    names, echoed = run(use())
    assert "far__echo" in names
    assert echoed == "Echo: everywhere"


def test_twenty_clients_share_one_upstream_session(make_server, remotes):
    remote = remotes()
    server = make_server("--server", f"far={remote.url}")

    async def one(i):
        async with client(server, name="far", mode="legacy") as c:
            echoed = await c.call_tool("echo", {"message": f"client {i}"})
            pid = await c.call_tool("whoami", {})
            return echoed.content[0].text, pid.content[0].text

    async def all_of_them():
        return await asyncio.gather(*(one(i) for i in range(20)))

    answers = run(all_of_them())
    assert [a for a, _ in answers] == [f"Echo: client {i}" for i in range(20)]
    assert len({pid for _, pid in answers}) == 1
    status, _, stats = post(server, "/stats", None, method="GET")
    assert status == 200, stats
    far = next(s for s in stats["servers"] if s["name"] == "far")
    assert [c["restarts"] for c in far["children"]] == [0], far


def connections_to(pid, port):
    """How many of process `pid`'s sockets are TCP connections to `port`."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port == port and fields[9] in inodes:
            count += 1
    return count


def test_remote_servers_called_one_after_another_share_threads_and_idle_connections_end(make_server, remotes):
    """Twenty remote servers, each called once in turn: each keeps one
    exchange (its event stream), and nothing else stays of it — no thread
    per server waiting for more, no idle connection once unused for a
    while (10 s at most)."""
    remote = remotes()
    count = 20
    flags = [a for i in range(count) for a in ("--server", f"far{i}={remote.url}")]
    server = make_server(*flags)
    pid = server.proc.pid
    before = threads(pid)
    peak = before
    for i in range(count):
        status, _, body = post(server, "/tools/call", {"server": f"far{i}", "name": "echo", "arguments": {"message": f"n{i}"}})
        assert status == 200 and f"Echo: n{i}" in json.dumps(body), body
        peak = max(peak, threads(pid))
    # At most one thread per server's event stream, and a few carrying
    # the calls.
    assert peak <= before + count + 8, (before, peak)
    assert wait_until(lambda: connections_to(pid, remote.port) <= count, timeout=20), connections_to(pid, remote.port)
    status, _, body = post(server, "/tools/call", {"server": "far0", "name": "echo", "arguments": {"message": "again"}})
    assert status == 200 and "Echo: again" in json.dumps(body), body


def remote_threads(pid):
    """How many of process `pid`'s threads carry remote exchanges."""
    names = (open(f"/proc/{pid}/task/{t}/comm").read().strip() for t in os.listdir(f"/proc/{pid}/task"))
    return sum(1 for name in names if name == "mcp-remote")


def test_after_a_burst_one_steady_client_keeps_one_connection_not_the_bursts(make_server, remotes):
    """Sixteen calls at once open sixteen connections to the remote (and
    take sixteen threads, where threads carry them). One client then
    calling, a 50 ms call at a time, needs one: the others see no call and
    end within the idle time (5 s), rather than taking turns with the
    calls and staying for as long as any client calls."""
    remote = remotes()
    server = make_server("--server", f"far={remote.url}")
    pid = server.proc.pid

    def slow(seconds):
        status, _, body = post(server, "/tools/call", {"server": "far", "name": "slow", "arguments": {"seconds": seconds}})
        assert status == 200 and f"slept {seconds}" in json.dumps(body), body

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(slow, [1] * 16))
    burst = connections_to(pid, remote.port), remote_threads(pid)
    assert burst[0] >= 8, burst
    # Past the idle time, twice over, calling all along.
    deadline = time.monotonic() + 11
    while time.monotonic() < deadline:
        slow(0.05)
    after = connections_to(pid, remote.port), remote_threads(pid)
    # The calls' connection, and the session's event stream.
    assert after[0] <= 3 and after[1] <= 3, (burst, after)


def test_a_killed_remote_fails_its_call_at_once_and_comes_back(make_server, remotes):
    remote = remotes()
    server = make_server("--server", f"far={remote.url}")

    async def use():
        async with client(server, name="far", mode="legacy") as c:
            before = (await c.call_tool("whoami", {})).content[0].text
            call = asyncio.create_task(c.call_tool("slow", {"seconds": 30}))
            await asyncio.sleep(1)
            remote.kill()
            killed = time.monotonic()
            with pytest.raises(MCPError):
                await call
            failed_within = time.monotonic() - killed
            remote.start()
            # The same client, never reconnected: the bridge makes a new
            # upstream session (the old one is gone with the process).
            deadline = time.monotonic() + 20
            while True:
                try:
                    after = (await c.call_tool("whoami", {})).content[0].text
                    break
                except MCPError:
                    assert time.monotonic() < deadline, "the remote never came back"
                    await asyncio.sleep(0.3)
            return before, after, failed_within

    before, after, failed_within = run(use())
    assert failed_within < 1.0, failed_within
    assert before != after, "the restarted server is another process"


def test_a_remote_the_bridge_gave_up_on_serves_the_same_client_once_back(make_server, remotes, tmp_path):
    # A legacy SSE session ends with its stream: the bridge's "child" ends
    # when the server goes, and with one restart allowed it gives up.
    remote = remotes("sse")
    config = tmp_path / "servers.toml"
    config.write_text(f'[[bridge.servers]]\nname = "far"\nurl = "{remote.url}"\nmax_restarts = 1\n')
    server = make_server("--config", str(config))

    def state():
        _, _, stats = post(server, "/stats", None, method="GET")
        return next(s for s in stats["servers"] if s["name"] == "far")

    async def use():
        async with client(server, name="far", mode="legacy") as c:
            before = (await c.call_tool("whoami", {})).content[0].text
            remote.kill()
            with pytest.raises(MCPError):
                await c.call_tool("whoami", {})
            assert wait_until(lambda: "failed" in json.dumps(state()), timeout=10), state()
            with pytest.raises(MCPError):
                await c.call_tool("whoami", {})
            remote.start()
            # The same client, never reconnected: served at its next call.
            after = (await c.call_tool("whoami", {})).content[0].text
            return before, after

    before, after = run(use())
    assert before != after, "the restarted server is another process"


def test_a_server_wanting_a_login_says_which_command_to_run(make_server, remotes):
    remote = remotes(token="s3cret")
    server = make_server("--server", f"locked={remote.url}")

    async def use():
        async with client(server, name="locked", mode="legacy") as c:
            await c.list_tools()

    started = time.monotonic()
    with pytest.raises(Exception) as refused:
        run(use())
    assert time.monotonic() - started < 15
    status, _, stats = post(server, "/stats", None, method="GET")
    locked = next(s for s in stats["servers"] if s["name"] == "locked")
    assert locked["remote"]["status"] == "needs login", locked
    assert "mcp-provider login locked" in locked["remote"]["why"], locked
    assert locked["remote"]["url"] == remote.url
    status, _, health = post(server, "/health/deep", None, method="GET")
    check = next(c for c in health["checks"] if c["name"] == "MCP server locked")
    assert not check["ok"] and "needs login" in check["detail"], check
    assert "mcp-provider login locked" in repr(refused.value) or "mcp-provider login locked" in str(
        getattr(refused.value, "exceptions", "")
    ), repr(refused.value)


def test_a_static_bearer_header_reaches_the_remote(make_server, remotes, tmp_path, monkeypatch):
    remote = remotes(token="s3cret")
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {
        "locked": {"type": "http", "url": remote.url, "headers": {"Authorization": "Bearer ${FIXTURE_TOKEN}"}},
    }}))
    server = make_server("--mcp-json", str(config), env={"FIXTURE_TOKEN": "s3cret"})

    async def use():
        async with client(server, name="locked", mode="legacy") as c:
            return (await c.call_tool("echo", {"message": "with a key"})).content[0].text

    assert run(use()) == "Echo: with a key"
    status, _, printed = post(server, "/stats", None, method="GET")
    assert "s3cret" not in json.dumps(printed)


def test_an_https_remote_with_a_private_ca_is_trusted_only_with_its_ca_file(make_server, remotes, tmp_path):
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    remote = remotes(tls=pem)
    config = tmp_path / "servers.toml"
    config.write_text(
        f'[[bridge.servers]]\nname = "private"\nurl = "{remote.url}"\nca_file = "{ca_file}"\n'
        f'[[bridge.servers]]\nname = "untrusted"\nurl = "{remote.url}"\n'
    )
    server = make_server("--config", str(config))

    async def use(name):
        async with client(server, name=name, mode="legacy") as c:
            big = "x" * 100_000
            echoed = await asyncio.gather(*(c.call_tool("echo", {"message": f"{n}{big}"}) for n in range(3)))
            return [e.content[0].text for e in echoed]

    # Answers larger than a TLS record, several at once.
    assert run(use("private")) == [f"Echo: {n}{'x' * 100_000}" for n in range(3)]
    with pytest.raises(Exception) as refused:
        run(use("untrusted"))
    assert "TLS with 127.0.0.1" in repr(refused.value) + "".join(
        repr(e) for e in getattr(refused.value, "exceptions", ())
    ), repr(refused.value)


class Hostile(FakeHandler):
    """A remote server that makes its session like any other, then answers
    each tool with something no client should get: 50 MB of JSON, a
    redirect to a cloud metadata address, an HTML page, an answer that
    never ends."""

    def do_POST(self):
        message = self.json_body()
        method, ident = message.get("method"), message.get("id")
        if method == "initialize":
            self.send_initialized(ident, "hostile", "h1")
        elif ident is None:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
        elif method == "tools/list":
            tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("huge", "moved", "html", "endless")]
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {"tools": tools}})
        elif method == "ping":
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {}})
        else:
            getattr(self, "answer_" + message["params"]["name"])()

    def do_GET(self):
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()

    def answer_huge(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(50 << 20))
        self.end_headers()
        try:
            for _ in range(50):
                self.wfile.write(b" " * (1 << 20))
        except OSError:
            pass

    def answer_moved(self):
        self.send_response(307)
        self.send_header("location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("content-length", "0")
        self.end_headers()

    def answer_html(self):
        body = b"<html><body>Sign in</body></html>"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer_endless(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            while True:
                self.chunk(b" " * 65536)
        except OSError:
            pass


class Slow(FakeHandler):
    """A remote server whose one tool answers after four seconds; each
    `notifications/cancelled` it gets is recorded, with when."""

    def do_POST(self):
        message = self.json_body()
        method, ident = message.get("method"), message.get("id")
        if method == "initialize":
            self.send_initialized(ident, "slow", "s1")
        elif ident is None:
            if method == "notifications/cancelled":
                self.server.cancelled.append((time.monotonic(), message.get("params", {})))
            self.send_empty(202)
        elif method == "tools/call":
            self.server.called.append((time.monotonic(), ident))
            time.sleep(4)
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {"content": [{"type": "text", "text": "late"}]}})
        else:
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {}})

    def do_GET(self):
        self.send_empty(405)


def test_a_client_that_leaves_mid_call_has_its_call_cancelled_at_the_remote(make_server):
    """A client that closes its connection while the remote server works
    on its call: the server is told `notifications/cancelled` for that
    call within a second (on blocking, the connection's own thread makes
    the exchange for its first 20 ms, and must then go back to notice its
    client leave)."""
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    with LocalHttpServer(Slow) as slow:
        slow.cancelled, slow.called = [], []
        server = make_server("--server", f"slow={slow.base}/mcp")
        status, headers, _ = post(server, "/mcp/slow", initialize)
        assert status == 200
        session = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}
        assert post(server, "/mcp/slow", {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)[0] == 202
        call = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "wait", "arguments": {}}}).encode()
        head = (f"POST /mcp/slow HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {API_KEY}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                f"Mcp-Session-Id: {session['Mcp-Session-Id']}\r\nMCP-Protocol-Version: 2025-06-18\r\n"
                f"Content-Length: {len(call)}\r\n\r\n").encode()
        with socket.create_connection(("127.0.0.1", server.port)) as leaving:
            leaving.sendall(head + call)
            assert wait_until(lambda: slow.called, timeout=5), "the call never reached the server"
            time.sleep(0.3)
        left = time.monotonic()
        assert wait_until(lambda: slow.cancelled, timeout=3), "the server was never told the call was cancelled"
        at, params = slow.cancelled[0]
        assert params.get("requestId") == slow.called[0][1], (params, slow.called)
        assert at - left < 1.0, f"cancelled {at - left:.2f} s after the client left"
        assert server.alive()


class CutListening(FakeHandler):
    """A remote server behind a proxy that ends idle event streams: its
    session's `GET` stream carries one event, then is cut after a
    second and a half; the stream asked for again (with `Last-Event-ID`)
    says that the server's tools changed, and stays open. Each `GET` is
    recorded with the `Last-Event-ID` it carried."""

    gets = []
    tools = ["first"]

    def do_POST(self):
        message = self.json_body()
        method, ident = message.get("method"), message.get("id")
        if method == "initialize":
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {"listChanged": True}},
                "serverInfo": {"name": "cut", "version": "1"}}}, {"mcp-session-id": "c1"})
        elif ident is None:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
        elif method == "tools/list":
            tools = [{"name": n, "inputSchema": {"type": "object"}} for n in CutListening.tools]
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {"tools": tools}})
        else:
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {}})

    def do_GET(self):
        CutListening.gets.append(self.headers.get("last-event-id"))
        self.start_sse()
        if len(CutListening.gets) == 1:
            self.chunk(b"id: e7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hi\"}}\n\n")
            time.sleep(1.5)
            return self.cut()
        CutListening.tools = ["first", "second"]
        self.chunk(b"id: e8\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
        try:
            while True:
                time.sleep(0.5)
                self.chunk(b": keep-alive\n\n")
        except OSError:
            pass


def test_a_listening_stream_a_proxy_cuts_is_asked_for_again_and_what_it_then_says_arrives(make_server):
    """Proxies end event streams that stay idle (nginx after 60 s by
    default): the bridge asks for its session's stream again, after the
    last event it got, so what the server says on its own later (here:
    its tools changed) still reaches the clients."""
    CutListening.gets, CutListening.tools = [], ["first"]
    with LocalHttpServer(CutListening) as remote:
        server = make_server("--server", f"cut={remote.base}/mcp")
        told = []

        async def on_message(message):
            told.append(repr(message))

        async def use():
            async with client(server, "cut", mode="legacy", message_handler=on_message) as c:
                first = [t.name for t in (await c.list_tools()).tools]
                for _ in range(100):
                    if any("ToolListChanged" in m for m in told):
                        break
                    await asyncio.sleep(0.1)
                return first, [t.name for t in (await c.list_tools()).tools]

        first, again = run(use())
    assert first == ["first"], first
    assert any("ToolListChanged" in m for m in told), told
    assert again == ["first", "second"], again
    assert CutListening.gets[:2] == [None, "e7"], CutListening.gets


def test_a_hostile_remote_gets_clear_errors_and_costs_only_its_calls(make_server):
    with LocalHttpServer(Hostile) as hostile:
        server = make_server("--server", f"bad={hostile.base}/mcp")

        async def use():
            async with client(server, name="bad", mode="legacy") as c:
                errors = {}
                for tool in ("huge", "moved", "html", "endless"):
                    try:
                        await c.call_tool(tool, {})
                    except MCPError as e:
                        errors[tool] = str(e)
                await c.send_ping()
                return errors

        errors = run(use())
    assert "longer than" in errors["huge"], errors
    assert "169.254.169.254" in errors["moved"] and "not followed" in errors["moved"], errors
    assert "not JSON" in errors["html"], errors
    assert "longer than" in errors["endless"], errors
    assert server.alive()


def test_an_https_remote_that_never_speaks_tls_fails_in_time_and_keeps_no_connection(make_server, tmp_path):
    """A server that accepts and never answers the TLS handshake: the
    dial gives up (10 s), the client gets an MCP error, and once the
    bridge gave up on the server, none of its connections is left open."""
    with Silent() as silent:
        url = f"https://127.0.0.1:{silent.port}/mcp"
        config = tmp_path / "servers.toml"
        config.write_text(f'[[bridge.servers]]\nname = "silent"\nurl = "{url}"\nmax_restarts = 1\n')
        server = make_server("--config", str(config))

        async def use():
            async with client(server, name="silent", mode="legacy") as c:
                await c.list_tools()

        with pytest.raises(Exception) as refused:
            run(use())
        assert silent.accepted >= 1
        assert f"127.0.0.1:{silent.port}" in repr(refused.value) + "".join(
            repr(e) for e in getattr(refused.value, "exceptions", ())
        ), repr(refused.value)
        assert wait_until(lambda: silent.open == 0, timeout=30), (silent.accepted, silent.open)
        assert server.alive()


class HungOnClose(FakeHandler):
    """A remote server that makes its sessions like any other; in its first
    one, it holds every call and ping unanswered (the bridge kills it as
    hung), and it never answers a session's DELETE. A held request waits
    until the provider closes its connection; the server counts the
    DELETEs it got, and those whose connection the provider closed."""

    def do_POST(self):
        message = self.json_body()
        method, ident = message.get("method"), message.get("id")
        if method == "initialize":
            with self.server.lock:
                self.server.sessions += 1
                session = f"s{self.server.sessions}"
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {
                "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                "serverInfo": {"name": "hung", "version": "1"}}}, {"mcp-session-id": session})
        elif ident is None:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.headers.get("mcp-session-id") == "s1" and method in ("tools/call", "ping"):
            self.hold()
        elif method == "tools/list":
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {
                "tools": [{"name": "hang", "inputSchema": {"type": "object"}}]}})
        else:
            self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": {}})

    def do_GET(self):
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_DELETE(self):
        with self.server.lock:
            self.server.deletes += 1
        self.hold()
        with self.server.lock:
            self.server.deletes_closed += 1

    def hold(self):
        self.close_connection = True
        try:
            while self.connection.recv(4096):
                pass
        except OSError:
            pass


def test_a_remote_killed_as_hung_gives_up_its_session_delete_in_a_few_seconds(make_server, tmp_path):
    """The bridge kills a remote server whose call and ping go unanswered;
    ending its session, it sends a DELETE the server never answers: the
    provider closes that connection within a few seconds (3 s), it does
    not keep it, its task or thread, for good."""
    with LocalHttpServer(HungOnClose) as remote:
        remote.sessions = remote.deletes = remote.deletes_closed = 0
        config = tmp_path / "servers.toml"
        config.write_text(
            "[bridge]\nping_timeout_secs = 1\n"
            f'[[bridge.servers]]\nname = "hung"\nurl = "{remote.base}/mcp"\n'
        )
        server = make_server("--config", str(config))

        async def use():
            async with client(server, name="hung", mode="legacy") as c:
                with pytest.raises(MCPError):
                    await c.call_tool("hang", {})

        run(use())
        assert wait_until(lambda: remote.deletes >= 1, timeout=10), remote.deletes
        assert wait_until(lambda: remote.deletes_closed == remote.deletes, timeout=10), (
            remote.deletes, remote.deletes_closed)
        assert server.alive()
