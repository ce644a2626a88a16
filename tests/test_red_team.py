"""What a hostile client, a hostile stdio MCP server or a careless user
could do to either runtime, each hole closed and kept closed: every test
here failed before its fix."""

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.request
import uuid

import pytest

from websockets.sync.client import connect as ws_connect

from conftest import API_KEY, BRIDGE_TOKEN, ROOT, http_request, mcp_post, wait_until
from test_agent_exec import ExecAgent, running, sleeper
from test_agent_exec import client as exec_client
from test_bridge import marked
from test_bridge_scale import TIMEOUT, VERSION, call, open_session, rpc


def integration(name, mark):
    """A bridged server whose child, once started, can be found by `mark`."""
    return {"name": name, "command": "sh", "args": ["-c", "exec sleep 30"], "env": {"BRIDGE_TEST_MARK": mark}}


def test_no_spelling_of_the_integrations_path_runs_a_command_with_the_api_key(make_server):
    mark = uuid.uuid4().hex
    server = make_server()
    added = integration("sneaky", mark)
    same_path = [
        ("POST", "//integrations"),
        ("POST", "///integrations"),
        ("POST", "/./integrations"),
        ("POST", "/integrations/"),
        ("POST", "/x/../integrations"),
        ("POST", "/%69ntegrations"),
        ("GET", "//integrations"),
        ("GET", "//integrations//sneaky"),
        ("DELETE", "//integrations/sneaky"),
        ("PUT", "//integrations"),
    ]
    for method, target in same_path:
        status, _, body = http_request(server, method, target, added)
        assert status == 401, (method, target, status, body)
    # What cannot be made canonical is refused before any route is chosen.
    for target in ["/integrations%2Fsneaky", "/%2Fintegrations", "/../integrations", "/integrations%00"]:
        status, _, body = http_request(server, "POST", target, added)
        assert status == 400 and b"request path" in body, (target, status, body)
    # Another case is another path: no route at all.
    assert http_request(server, "POST", "/INTEGRATIONS", added)[0] == 404
    # Nothing was added, nothing runs.
    status, _, listed = http_request(server, "GET", "/integrations", headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    assert status == 200 and json.loads(listed)["integrations"] == []
    assert http_request(server, "POST", "//mcp/sneaky", {"jsonrpc": "2.0", "id": 1, "method": "ping"})[0] == 404
    assert not marked(mark, but={server.proc.pid})
    # The bridge token still works under any spelling of the path.
    token = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    status, _, _ = http_request(server, "POST", "//integrations/", added, headers=token)
    assert status == 201
    assert http_request(server, "DELETE", "/./integrations//sneaky", headers=token)[0] == 200


def test_without_api_keys_a_local_page_cannot_add_a_server_through_another_spelling(make_server):
    mark = uuid.uuid4().hex
    server = make_server("--set", "require_api_key=false")
    page = {"Authorization": None, "Origin": "http://localhost:3000"}
    for target in ["/integrations", "//integrations", "///integrations", "/./integrations"]:
        status, _, body = http_request(server, "POST", target, integration("page", mark), headers=page)
        assert status == 401, (target, status, body)
    assert not wait_until(lambda: marked(mark, but={server.proc.pid}), timeout=1)


WAITING = f"{sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'waiting_server.py'}"
WEDGED = f"{sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'wedged_server.py'}"


def bridge_config(tmp_path, name, command, share="shared"):
    """A config file bridging one server, `share` as given."""
    program, *args = command.split()
    config = tmp_path / f"{name}.toml"
    config.write_text(
        f"[[bridge.servers]]\nname = {json.dumps(name)}\ncommand = {json.dumps(program)}\n"
        f"args = {json.dumps(args)}\nshare = {json.dumps(share)}\n"
    )
    return str(config)


def cancellations(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def close_wait_sockets(port):
    """Sockets of this machine on `port` (the server's side) in CLOSE_WAIT:
    the peer left and the server still holds the connection."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                local, state = row.split()[1], row.split()[3]
                if int(local.rsplit(":", 1)[1], 16) == port and state == "08":
                    count += 1
    return count


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def send_and_leave(server, path, body, headers=""):
    """A request written in full, then the connection closed at once."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{headers}"
                f"Content-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data
        )


def test_calls_whose_clients_left_are_cancelled_and_free_their_slots_and_sockets(make_server, tmp_path):
    log = tmp_path / "cancelled.jsonl"
    server = make_server("--server", f"waiting={WAITING}", env={"WAITING_SERVER_LOG": str(log)})
    session = open_session(server, "waiting")
    wait = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "wait", "arguments": {}}}
    # More calls than the child may have in flight (1,024), half through a
    # session, half as REST calls of their own; every client leaves at once.
    headers = f"Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: {VERSION}\r\n"
    for n in range(600):
        send_and_leave(server, "/mcp/waiting", {**wait, "id": n}, headers)
        send_and_leave(server, "/tools/call", {"server": "waiting", "tool": "wait"})
    assert wait_until(lambda: len(cancellations(log)) == 1200, timeout=60), len(cancellations(log))
    assert all(c["in_flight_here"] for c in cancellations(log))
    assert wait_until(lambda: close_wait_sockets(server.port) == 0, timeout=10), close_wait_sockets(server.port)
    assert wait_until(lambda: threads(server.proc.pid) < 64, timeout=10), threads(server.proc.pid)
    status, _, stats = mcp_post(server, "/stats", None, method="GET")
    assert stats["servers"][0]["children"][0]["in_flight"] == 0, stats
    # The child serves the next client as it did the first.
    assert call(server, "waiting", session, "echo", {"message": "after"}, call_id=9999)["result"]["content"][0]["text"] == "after"


def test_children_made_for_one_request_end_with_it(make_server, tmp_path):
    mark = uuid.uuid4().hex
    log = tmp_path / "cancelled.jsonl"
    config = bridge_config(tmp_path, "mine", WAITING, share="per-session")
    server = make_server("--config", config, env={"BRIDGE_TEST_MARK": mark, "WAITING_SERVER_LOG": str(log)})
    # More requests than children may run at once (64), none with a session.
    for n in range(80):
        status, _, result = mcp_post(server, "/tools/call", {"server": "mine", "tool": "echo", "arguments": {"message": f"{n}"}})
        assert status == 200 and result["content"][0]["text"] == f"{n}", (n, status, result)
    assert wait_until(lambda: not marked(mark, but={server.proc.pid}), timeout=20), "children outlived their request"
    # Their exits are reported a moment after the processes are gone.
    stats = lambda: mcp_post(server, "/stats", None, method="GET")[2]  # noqa: E731
    assert wait_until(lambda: stats()["servers"][0]["children"] == [], timeout=10), stats()
    # A session still gets a child of its own.
    session = open_session(server, "mine")
    assert call(server, "mine", session, "echo", {"message": "mine"})["result"]["content"][0]["text"] == "mine"


def test_at_the_child_cap_the_refusal_names_it_and_only_busy_children_count(make_server, tmp_path):
    mark = uuid.uuid4().hex
    config = bridge_config(tmp_path, "mine", WAITING, share="per-session")
    server = make_server("--config", config, env={"BRIDGE_TEST_MARK": mark, "WAITING_SERVER_LOG": str(tmp_path / "log")})
    sessions = [open_session(server, "mine") for _ in range(64)]
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "late", "version": "1"}}}
    status, _, body = rpc(server, "mine", init)
    assert status == 503 and "server processes" in body["error"]["message"] and "64" in body["error"]["message"], body
    assert "sessions" not in body["error"]["message"], body
    status, _, _ = mcp_post(server, "/mcp/mine", None, {"Mcp-Session-Id": sessions[0]}, method="DELETE")
    assert status == 200
    assert wait_until(lambda: rpc(server, "mine", init)[0] == 200, timeout=10)


def test_a_child_that_stops_reading_is_hung_however_much_it_logs(make_server):
    server = make_server("--server", f"wedged={WEDGED}", "--set", "bridge.ping_timeout_secs=3")
    session = open_session(server, "wedged")
    started = time.monotonic()
    answer = call(server, "wedged", session, "wedge", {}, call_id=1)
    waited = time.monotonic() - started
    # Silent for the ping timeout (3 s), then a ping unanswered as long.
    assert "stopped responding" in answer["error"]["message"], answer
    assert 5 < waited < 30, waited


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


@pytest.mark.serial
def test_a_huge_batch_on_the_websocket_is_read_within_a_bound_and_stalls_no_one(make_server, tmp_path):
    env = {"WAITING_SERVER_LOG": str(tmp_path / "log")}
    server = make_server("--server", f"a={WAITING}", "--server", f"b={WAITING}", env=env)
    # The other server's child is up before the batch is sent.
    other = open_session(server, "b")
    call(server, "b", other, "echo", {"message": "warm"})
    before = peak_rss_mb(server.proc.pid)
    url = f"ws://127.0.0.1:{server.port}/ws"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}, open_timeout=10,
                    max_size=None) as ws:
        ws.send(json.dumps({"type": "create_session", "server": "a"}))
        assert json.loads(ws.recv(10))["type"] == "session_created"
        batch = "[" + "1," * (2 * 1024 * 1024 - 1) + "1]"
        slowest = []

        def meanwhile():
            for n in range(10):
                started = time.monotonic()
                call(server, "b", other, "echo", {"message": f"{n}"}, call_id=100 + n)
                slowest.append(time.monotonic() - started)

        caller = threading.Thread(target=meanwhile)
        caller.start()
        ws.send(batch)
        frames = []
        while not (frames and frames[-1]["type"] == "error"):
            frames.append(json.loads(ws.recv(30)))
        caller.join(60)
    refused = [f for f in frames if f["type"] == "response"]
    assert len(refused) == 256 and all(f["data"]["error"]["code"] == -32600 for f in refused)
    assert "at most 256" in frames[-1]["error"] and str(2 * 1024 * 1024 - 256) in frames[-1]["error"], frames[-1]
    assert len(slowest) == 10 and max(slowest) < 2, slowest
    grown = peak_rss_mb(server.proc.pid) - before
    print(f"peak RSS grew {grown:.1f} MB for a 4 MiB batch of 2,097,152 entries")
    assert grown < 64, grown


FLOOD = f"{sys.executable} {ROOT / 'tests' / 'fixtures' / 'mcp' / 'flood_server.py'}"


def queued_bytes(server):
    status, _, body = raw_get(server, "/metrics")
    line = next(l for l in body.decode().splitlines() if l.startswith("mcp_provider_queued_bytes "))
    return float(line.split()[1])


def raw_get(server, path):
    return http_request(server, "GET", path)


def test_progress_for_a_client_that_never_reads_is_cut_not_kept(make_server, tmp_path):
    log = tmp_path / "cancelled.jsonl"
    server = make_server("--server", f"flood={FLOOD}", env={"FLOOD_SERVER_LOG": str(log)})
    session = open_session(server, "flood")
    before = peak_rss_mb(server.proc.pid)
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "progress", "arguments": {"count": 1000, "size": 256 * 1024}, "_meta": {"progressToken": "t"}}}).encode()
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", server.port))
    try:
        reader.sendall(
            (
                f"POST /mcp/flood HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                f"Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
                f"Mcp-Session-Id: {session}\r\nMCP-Protocol-Version: {VERSION}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        # The reader never reads: the call is cancelled at the child.
        told = wait_until(lambda: cancellations(log), timeout=60)
        grown = peak_rss_mb(server.proc.pid) - before
        print(f"peak RSS grew {grown:.1f} MB; {queued_bytes(server) / 2**20:.1f} MiB queued")
        assert told, "the child was never told"
        assert cancellations(log)[0]["requestId"] is not None
        assert grown < 64, grown
        assert queued_bytes(server) < 16 * 2**20
    finally:
        reader.close()
    # Others are served as before.
    assert call(server, "flood", session, "flood", {"count": 1, "size": 10}, call_id=8)["result"]


@pytest.mark.serial
def test_what_sessions_keep_for_clients_is_bounded_in_bytes(make_server, tmp_path):
    server = make_server("--server", f"flood={FLOOD}")
    listening, silent = open_session(server, "flood"), open_session(server, "flood")
    before = peak_rss_mb(server.proc.pid)
    stream = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    stream.sendall(
        (
            f"GET /mcp/flood HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Accept: text/event-stream\r\nMcp-Session-Id: {listening}\r\nMCP-Protocol-Version: {VERSION}\r\n\r\n"
        ).encode()
    )
    seen = [0]

    def read():
        try:
            while chunk := stream.recv(1 << 20):
                seen[0] += len(chunk)
        except OSError:
            pass

    threading.Thread(target=read, daemon=True).start()
    answer = call(server, "flood", listening, "flood", {"count": 150, "size": 3 * 2**20}, call_id=3)
    assert answer["result"]["content"][0]["text"] == "flooded", answer
    grown = peak_rss_mb(server.proc.pid) - before
    print(f"peak RSS grew {grown:.1f} MB; the listener read {seen[0] / 2**20:.0f} MiB")
    assert grown < 160, grown
    assert seen[0] > 3 * 2**20
    stream.close()


@pytest.mark.serial
def test_a_chatty_child_stalls_no_route_and_its_fan_out_is_bounded(make_server):
    import openai

    server = make_server("--server", f"flood={FLOOD}")
    server.wait_for_model("echo")
    sessions = [open_session(server, "flood") for _ in range(50)]
    streams, read = [], [0]
    lock = threading.Lock()

    def listen(sock):
        try:
            while chunk := sock.recv(1 << 16):
                with lock:
                    read[0] += len(chunk)
        except OSError:
            pass

    for session in sessions:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(
            (
                f"GET /mcp/flood HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                f"Accept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: {VERSION}\r\n\r\n"
            ).encode()
        )
        streams.append(sock)
        threading.Thread(target=listen, args=(sock,), daemon=True).start()
    before = peak_rss_mb(server.proc.pid)
    flooding = threading.Thread(
        target=lambda: call(server, "flood", sessions[0], "flood", {"count": 60000, "size": 64}, call_id=5)
    )
    flooding.start()
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    slowest = 0.0
    while flooding.is_alive():
        started = time.monotonic()
        answer = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "still here"}])
        assert answer.choices[0].message.content == "still here"
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    flooding.join()
    grown = peak_rss_mb(server.proc.pid) - before
    print(f"slowest echo answer {slowest * 1000:.0f} ms during the flood; peak RSS grew {grown:.1f} MB; listeners read {read[0] / 2**20:.0f} MiB")
    for sock in streams:
        sock.close()
    assert slowest < 1.0, slowest
    assert grown < 200, grown


def test_a_child_that_never_answers_initialize_fails_its_first_client_after_one_start(make_server):
    server = make_server("--server", "mute=sh -c 'exec sleep 600'", "--set", "bridge.startup_timeout_secs=4")
    started = time.monotonic()
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "first", "version": "1"}}}
    status, _, body = mcp_post(server, "/mcp/mute", init, timeout=120)
    waited = time.monotonic() - started
    # One start-up timeout (4 s), not one for each of the five retries.
    assert 4 <= waited < 12, waited
    assert "did not answer initialize within 4s" in json.dumps(body), (status, body)


STUBBORN = ROOT / "tests" / "fixtures" / "mcp" / "stubborn_server.py"


def test_children_and_their_helpers_die_with_a_killed_provider(make_server):
    """A bridged child that stays when its stdin closes, and the helper it
    started, end when the provider is killed with SIGKILL (no cleanup of
    its own runs); and the child never saw the provider's secrets."""
    mark = uuid.uuid4().hex
    server = make_server()
    token = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    stubborn = {"name": "stubborn", "command": sys.executable, "args": [str(STUBBORN)],
                "env": {"BRIDGE_TEST_MARK": mark}}
    assert http_request(server, "POST", "/integrations", stubborn, headers=token)[0] == 201
    session = open_session(server, "stubborn")
    names = call(server, "stubborn", session, "environment", {})["result"]["content"][0]["text"].split()
    assert wait_until(lambda: len(marked(mark)) == 2), marked(mark)
    server.proc.kill()
    server.proc.wait(timeout=10)
    try:
        assert wait_until(lambda: not marked(mark), timeout=10), marked(mark)
    finally:
        for pid in marked(mark):
            os.kill(pid, signal.SIGKILL)
    assert "BRIDGE_TEST_MARK" in names and not [n for n in names if n.startswith("MCP_PROVIDER_")], names


def test_runs_and_their_helpers_die_with_a_killed_agent_exec(server):
    """A CLI run by `agent exec` (and what it started) ends when `agent
    exec` is killed with SIGKILL in the middle of the request."""
    marker, sleep = sleeper()
    agent = ExecAgent(server, "--model", "killed", "--", "sh", "-c", f"printf 'on '; {sleep} & {sleep}; wait")
    try:
        server.wait_for_model("killed")
        stream = exec_client(server).chat.completions.create(
            model="killed", stream=True, messages=[{"role": "user", "content": "x"}]
        )
        next(iter(stream))
        assert wait_until(lambda: len(running(marker)) == 2), running(marker)
        agent.proc.kill()
        agent.proc.wait(timeout=10)
        assert wait_until(lambda: not running(marker), timeout=10), running(marker)
    finally:
        agent.stop()
        for pid in running(marker):
            os.kill(pid, signal.SIGKILL)


def test_cli_agents_get_none_of_the_providers_variables_unless_passed(server):
    """`. env` as the README says puts the API key and bridge token in the
    environment `agent exec` starts from: its runs get neither, nor any
    other `MCP_PROVIDER_*`, except what `--pass-env` names."""
    env = {"MCP_PROVIDER_API_KEY": API_KEY, "MCP_PROVIDER_WANTED": "yes", "MCP_PROVIDER_OTHER": "no"}
    command = ["sh", "-c", "cat >/dev/null; env | cut -d= -f1 | sort"]
    agent = ExecAgent(server, "--model", "environ", "--pass-env", "MCP_PROVIDER_WANTED", "--", *command, env=env)
    try:
        server.wait_for_model("environ")
        answer = exec_client(server).chat.completions.create(
            model="environ", messages=[{"role": "user", "content": "x"}]
        )
        names = answer.choices[0].message.content.split()
        assert "PATH" in names, names
        assert [n for n in names if n.startswith("MCP_PROVIDER_")] == ["MCP_PROVIDER_WANTED"], names
    finally:
        agent.stop()


# Clients that initialize, call once and leave without DELETE.
CHURN = 5000


@pytest.mark.long
def test_sessions_nobody_deletes_make_room_for_new_clients(make_server):
    """5,000 clients each open a session, call once and leave without
    DELETE (as real clients do), against the default cap of 1,024: none
    is refused. A steady client with its GET stream open and a call every
    so often is never ended; a session left behind long ago gets 404 on
    its next request (an MCP client's cue to initialize again), and the
    bridge's memory stays small throughout."""
    server = make_server("--server", f"w={WEDGED}")
    steady = open_session(server, "w")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    sock.sendall(
        (f"GET /mcp/w HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
         f"Accept: text/event-stream\r\nMcp-Session-Id: {steady}\r\nMCP-Protocol-Version: {VERSION}\r\n\r\n").encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    first = None
    for n in range(CHURN):
        session = open_session(server, "w")
        first = first or session
        assert call(server, "w", session, "echo", {}, call_id=n)["result"]["content"][0]["text"] == "echo"
        if n % 500 == 0:
            assert call(server, "w", steady, "echo", {}, call_id=n)["result"]["content"][0]["text"] == "echo"
    # The steady client's stream is still open: it ends only when the
    # server closes it, and a read finds no end (only keep-alives, if any).
    sock.settimeout(0.2)
    got = b""
    try:
        while data := sock.recv(4096):
            got += data
        got += b"<closed>"
    except socket.timeout:
        pass
    sock.close()
    assert not got.endswith((b"<closed>", b"0\r\n\r\n")), got[-200:]
    assert call(server, "w", steady, "echo", {})["result"]["content"][0]["text"] == "echo"
    status, _, body = rpc(server, "w", {"jsonrpc": "2.0", "id": 1, "method": "ping"}, first)
    assert status == 404 and "initialize again" in json.dumps(body), (status, body)
    peak = peak_rss_mb(server.proc.pid)
    print(f"{server.runtime}: {CHURN} sessions, peak RSS {peak:.1f} MB")
    assert peak <= 64, peak


@pytest.mark.long
def test_sdk_clients_that_never_delete_make_room(make_server):
    """The `mcp` SDK's session clients (legacy mode: `initialize`, then a GET
    stream), leaving without DELETE (`terminate_on_close=False`), under
    `bridge.max_sessions=20`: 200 of them in turn are all served, and the
    one that stays (its stream open) keeps its session throughout."""
    import asyncio

    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    server = make_server("--server", f"w={WEDGED}", "--set", "bridge.max_sessions=20")

    def sdk_client():
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
        transport = streamable_http_client(f"{server.base}/mcp/w", http_client=http, terminate_on_close=False)
        return Client(transport, mode="legacy")

    async def churn():
        answers = []
        async with sdk_client() as steady:
            for n in range(200):
                async with sdk_client() as passing:
                    answers.append((await passing.call_tool("echo", {})).content[0].text)
                if n % 50 == 0:
                    answers.append((await steady.call_tool("echo", {})).content[0].text)
            answers.append((await steady.call_tool("echo", {})).content[0].text)
        return answers

    answers = asyncio.run(asyncio.wait_for(churn(), 120))
    assert answers == ["echo"] * 205


def test_the_events_route_cannot_take_a_websocket_session_from_its_socket(make_server):
    """`GET /events/{id}` with the id of a `/ws` session views the session
    beside the socket: the socket goes on getting the answers to its own
    requests. An MCP client's own open event stream is never taken (409)."""
    server = make_server("--server", f"w={WEDGED}")
    url = f"ws://127.0.0.1:{server.port}/ws"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "create_session", "server": "w"}))
        created = json.loads(ws.recv(10))
        assert created["type"] == "session_created", created
        events = urllib.request.urlopen(urllib.request.Request(
            f"{server.base}/events/{created['session_id']}", headers={"Authorization": f"Bearer {API_KEY}"}),
            timeout=10)
        assert events.status == 200
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo"}}))
        frame = json.loads(ws.recv(10))
        assert frame["type"] == "response" and frame["data"]["id"] == 7, frame
        events.close()
    # A Streamable HTTP session whose client follows it on its GET stream.
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "s", "version": "1"}}}
    _, headers, _ = mcp_post(server, "/mcp/w", init)
    session = headers["mcp-session-id"]
    stream = urllib.request.urlopen(urllib.request.Request(
        f"{server.base}/mcp/w", headers={"Authorization": f"Bearer {API_KEY}", "Accept": "text/event-stream",
                                         "Mcp-Session-Id": session, "MCP-Protocol-Version": VERSION}), timeout=10)
    assert stream.status == 200
    status, _, body = http_request(server, "GET", f"/events/{session}")
    assert status == 409 and b"its own event stream" in body, (status, body)
    stream.close()
