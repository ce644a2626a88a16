"""A hostile remote MCP server behind the bridge (tests/fixtures/
hostile_remote.py), on every runtime: it answers one client's call in the
response to another's, never answers a call (in silence, or with an
endless keep-alive), and is left by clients mid-call, many times over.

What must hold: an answer reaches only the client whose call it answers;
a call with neither an answer nor progress ends at `request_timeout_secs`
with MCP's timeout error, is cancelled at the server and lets go of its
connection; and calls their clients abandon leave no thread, descriptor
or upstream connection behind."""

import concurrent.futures
import http.client
import json
import os
import socket
import time

from conftest import API_KEY, mcp_post as post, wait_until
from fixtures.hostile_remote import HostileRemote

# MCP's "request timeout" error code.
REQUEST_TIMEOUT = -32001


def initialize(server):
    """A new client of server `far`: its session's headers."""
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    status, headers, _ = post(server, "/mcp/far", hello)
    assert status == 200, status
    session = {"Mcp-Session-Id": headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-06-18"}
    status, _, _ = post(server, "/mcp/far", {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    assert status == 202, status
    return session


def request(session, tool, arguments=None, ident=7, token=None):
    """A `tools/call` as raw HTTP, in `session`."""
    params = {"name": tool, "arguments": arguments or {}}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    body = json.dumps({"jsonrpc": "2.0", "id": ident, "method": "tools/call", "params": params})
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        **session,
    }
    return body, headers


def call(server, session, tool, arguments=None, ident=7, token=None, timeout=15):
    """A `tools/call` on a connection of its own: its answer, read from a
    JSON body or the event stream (whatever else the stream carries is
    skipped)."""
    body, headers = request(session, tool, arguments, ident, token)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("POST", "/mcp/far", body, headers)
        response = conn.getresponse()
        if response.headers.get("content-type", "").startswith("application/json"):
            return json.loads(response.read())
        while line := response.readline():
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if message.get("id") == ident:
                    return message
        raise AssertionError(f"the stream of {tool} ended without its answer")
    finally:
        conn.close()


def text(answer):
    assert "result" in answer, answer
    return answer["result"]["content"][0]["text"]


def far(make_server, hostile, *settings):
    args = ["--server", f"far={hostile.url}"]
    for setting in settings:
        args += ["--set", setting]
    return make_server(*args)


def test_an_answer_under_another_clients_id_reaches_no_one(make_server):
    """Two clients share the remote server's session. While the first
    one's call waits, the response to the second one's call carries an
    answer under the first call's id (the id the bridge sent it under),
    then its own answer twice: the forged answer is dropped, the second
    client gets its own answer, and the first its real one when it comes."""
    with HostileRemote() as hostile:
        server = far(make_server, hostile)
        first, second = initialize(server), initialize(server)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(call, server, first, "hold")
            assert wait_until(lambda: hostile.held, timeout=10), "the first call never reached the server"
            assert text(call(server, second, "forge")) == "honest"
            assert not held.done(), f"the first client was answered by the forgery: {held.result()}"
            hostile.release("real")
            assert text(held.result(timeout=10)) == "real"


def test_a_call_the_server_never_answers_ends_at_the_request_timeout(make_server):
    """With `request_timeout_secs = 1`: a call whose stream stays silent,
    and one whose stream carries keep-alive comments forever, each end in
    about a second with MCP's timeout error; the server is told they are
    cancelled, and their connections close. A call that keeps sending
    progress outlives the timeout and gets its answer."""
    with HostileRemote() as hostile:
        server = far(make_server, hostile, "request_timeout_secs=1", "stream_idle_timeout_secs=1")
        session = initialize(server)
        assert text(call(server, session, "echo", {"text": "hi"})) == "echo: hi"
        before = hostile.open
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            started = time.monotonic()
            silent = pool.submit(call, server, session, "silent", ident=1)
            keepalive = pool.submit(call, server, session, "keepalive", ident=2)
            progress = pool.submit(call, server, session, "progress", {"seconds": 2.5}, ident=3, token="p")
            for answer in (silent.result(), keepalive.result()):
                assert answer["error"]["code"] == REQUEST_TIMEOUT, answer
                assert time.monotonic() - started < 5
            assert text(progress.result()).startswith("done after")
        upstream = hostile.calls("silent") + hostile.calls("keepalive")
        assert wait_until(lambda: set(upstream) <= set(hostile.cancelled()), timeout=5), hostile.cancelled()
        assert wait_until(lambda: hostile.open <= before, timeout=5), f"{hostile.open} connections open, {before} before"


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


# The blocking runtime keeps up to this many idle threads per pool
# (`conn-reader`, `conn-writer`) for the next connection, each for 30 s.
KEPT_PER_POOL = 16
KEPT_POOLS = ("conn-reader", "conn-writer")


def thread_names(pid):
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as comm:
                names.append(comm.read().strip())
        except FileNotFoundError:  # ended between the listing and the read
            pass
    return names


def threads(pid):
    """The process's threads, less those its runtime keeps idle for the
    next connection (a bounded number, checked apart)."""
    return sum(1 for name in thread_names(pid) if name not in KEPT_POOLS)


def kept_threads_bounded(pid):
    names = thread_names(pid)
    return all(names.count(pool) <= KEPT_PER_POOL for pool in KEPT_POOLS)


def abandon(server, session, hostile, n):
    """Client `n` calls `silent` and leaves once the server has the call."""
    body, headers = request(session, "silent", ident=n)
    lines = [f"POST /mcp/far HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
        assert wait_until(lambda: len(hostile.calls("silent")) > n, timeout=10), f"call {n} never reached the server"


def test_calls_abandoned_by_their_clients_leave_nothing_held(make_server):
    """Eighty clients each leave mid-call on a tool that never answers:
    the server process's descriptors and threads, and its connections to
    the remote server, come back to what they were, and a normal call is
    still answered at once."""
    with HostileRemote() as hostile:
        server = far(make_server, hostile)
        session = initialize(server)
        assert text(call(server, session, "echo", {"text": "warm"})) == "echo: warm"
        pid = server.proc.pid
        fds, tasks, upstream = descriptors(pid), threads(pid), hostile.open
        for n in range(80):
            abandon(server, session, hostile, n)

        def settled():
            cancelled = len(hostile.cancelled()) == 80
            held = descriptors(pid) <= fds + 4 and threads(pid) <= tasks + 2 and kept_threads_bounded(pid)
            return cancelled and held and hostile.open <= upstream + 1

        assert wait_until(settled, timeout=20), (
            f"descriptors {descriptors(pid)} (were {fds}), threads {threads(pid)} (were {tasks}), "
            f"kept for the next connection {sorted(n for n in thread_names(pid) if n in KEPT_POOLS)}, "
            f"upstream connections {hostile.open} (were {upstream}), {len(hostile.cancelled())} calls cancelled"
        )
        started = time.monotonic()
        assert text(call(server, session, "echo", {"text": "after"})) == "echo: after"
        assert time.monotonic() - started < 2
