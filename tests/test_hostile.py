"""What a hostile or merely slow peer can do, tried as an attacker would:
agent frames of the wrong shape, agents that stream faster than editors
read, editors that never read, floods of connections, signals. Each must
end cleanly, with memory bounded and every other client still served."""

import json
import os
import resource
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import openai
import pytest
from websockets.sync.client import connect as ws_connect

from conftest import API_KEY, BRIDGE_TOKEN, WsAgent, http_request

MB = 1024 * 1024


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def get_health(server, timeout=5):
    """The whole answer to GET /health on a fresh connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def raw_status(server):
    """The status line of GET /health."""
    return get_health(server).split(b"\r\n")[0]


def health(server, timeout=5):
    """(seconds taken, JSON) of GET /health on a fresh connection."""
    started = time.monotonic()
    data = get_health(server, timeout)
    took = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], head
    return took, json.loads(body)


def open_stream(server, model, content="x", api="/v1/chat/completions", rcvbuf=None):
    """Sends a streaming request on a raw socket and returns the socket
    without reading anything (a small `rcvbuf` keeps the kernel from
    taking what the server writes)."""
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": content}]}).encode()
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.sendall(
        (
            f"POST {api} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    return s


def read_all(s, timeout=60):
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            return data
        data += chunk
        if data.endswith(b"0\r\n\r\n"):
            return data


def test_tool_calls_of_the_wrong_shape_get_an_error_and_the_link_lives_on(server):
    def answer(invoke, agent):
        if invoke["payload"]["messages"][-1]["content"] == "x":
            bad = {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"tool_calls": [1]}}
            agent.send(bad)
            agent.send({**bad, "delta": {"tool_calls": ["x", None]}})
            agent.send(
                {
                    "type": "model_result",
                    "id": "inv-0",
                    "status": "ok",
                    "result": {"choices": [{"message": {"tool_calls": [7]}}]},
                }
            )
        agent.send(
            {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"content": "still here"}, "finish_reason": "stop"}
        )

    agent = WsAgent(server, ["shapes"], answer)
    try:
        server.wait_for_model("shapes")
        agents_before = health(server)[1]["agents"]
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
        stream = client.chat.completions.create(model="shapes", messages=[{"role": "user", "content": "x"}], stream=True)
        # The first chunk cannot be read: the answer ends with its error.
        with pytest.raises(openai.APIError, match="cannot be read"):
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        errors = [agent.wait_for("error") for _ in range(2)]
        assert all(e["error"]["code"] == "invalid_message" for e in errors)
        # The link was never dropped: the next request is served by it.
        again = client.chat.completions.create(model="shapes", messages=[{"role": "user", "content": "y"}])
        assert again.choices[0].message.content == "still here"
        assert health(server)[1]["agents"] == agents_before
        assert server.alive()
    finally:
        agent.close()


@pytest.mark.serial
def test_a_frame_with_250000_tool_calls_is_refused_without_stalling_anyone(server):
    calls = "[" + ",".join(["{}"] * 250_000) + "]"
    sent = threading.Event()

    def flood(invoke, agent):
        frame = '{"type":"model_stream_chunk","id":"%s","chunk_index":0,"delta":{"tool_calls":%s}}' % (invoke["id"], calls)
        agent.ws.send(frame)
        sent.set()
        agent.send({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"})

    agent = WsAgent(server, ["flood"], flood)
    try:
        server.wait_for_model("flood")
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
        result = {}

        def ask():
            try:
                client.chat.completions.create(model="flood", messages=[{"role": "user", "content": "x"}])
            except openai.APIError as e:
                result["error"] = str(e)

        t = threading.Thread(target=ask)
        t.start()
        assert sent.wait(10)
        took = max(health(server)[0] for _ in range(5))
        t.join(20)
        # The frame cannot be read: its request ends with the reason, and
        # the agent is told why and to stop.
        assert "tool calls" in result.get("error", ""), result
        error = agent.wait_for("error")
        assert "tool calls" in error["error"]["message"]
        agent.wait_for("cancel")
        assert took < 1.0, f"/health took {took:.2f}s while the frame was read"
    finally:
        agent.close()


@pytest.mark.serial
def test_an_editor_that_never_reads_is_capped_and_others_on_the_link_flow(make_server):
    server = make_server("--no-echo-agent", "--set", "max_output_bytes=4194304")
    piece = "y" * 16384
    stop = threading.Event()
    fast = {}

    def firehose(invoke, agent):
        content = invoke["payload"]["messages"][-1]["content"]
        if content == "slow":
            def pump():
                i = 0
                while not stop.is_set() and i < 20000:
                    if not agent.send_while_open({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i, "delta": {"content": piece}}):
                        return
                    i += 1
            threading.Thread(target=pump, daemon=True).start()
        else:
            for i in range(200):
                agent.send({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i, "delta": {"content": "f"},
                            "finish_reason": "stop" if i == 199 else None})

    agent = WsAgent(server, ["hose"], firehose)
    try:
        server.wait_for_model("hose")
        idle = rss_mb(server.proc.pid)
        slow = open_stream(server, "hose", "slow")
        pause = agent.wait_for("pause", timeout=10)
        # Another stream on the same link is not held up by the slow one.
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
        started = time.monotonic()
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="hose", messages=[{"role": "user", "content": "fast"}], stream=True) if c.choices)
        assert text == "f" * 200 and time.monotonic() - started < 5
        cancel = agent.wait_for("cancel", timeout=30)
        assert cancel["id"] == pause["id"]
        peak = 0
        for _ in range(20):
            peak = max(peak, rss_mb(server.proc.pid))
            time.sleep(0.05)
        stop.set()
        fast["peak"] = peak
        assert peak - idle < 64, f"RSS grew {peak - idle:.0f} MB past a 4 MB output cap"
        assert health(server)[0] < 1.0
        # The slow editor, reading at last, finds its stream ended with an error.
        data = read_all(slow)
        assert b"read too slowly" in data
        slow.close()
    finally:
        stop.set()
        agent.close()


@pytest.mark.serial
def test_an_agent_flooding_many_unread_streams_is_stopped_at_the_servers_total_cap(make_server):
    """Eight editors that never read, an agent that ignores `pause`: each
    stream alone stays under its own 16 MB cap, but together they pass the
    server's 8 MB cap on what waits for readers, so their streams end and
    memory stays near that cap instead of eight times the per-stream one."""
    server = make_server("--no-echo-agent", "--set", "max_queued_bytes=8388608")
    piece = "q" * 16384
    stop = threading.Event()

    def firehose(invoke, agent):
        def pump():
            for i in range(2000):
                if stop.is_set() or not agent.send_while_open(
                        {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i, "delta": {"content": piece}}):
                    return

        threading.Thread(target=pump, daemon=True).start()

    agent = WsAgent(server, ["hose"], firehose)
    try:
        server.wait_for_model("hose")
        idle = rss_mb(server.proc.pid)
        streams = [open_stream(server, "hose", f"slow {n}") for n in range(8)]
        cancelled = {agent.wait_for("cancel", timeout=30)["id"] for _ in range(8)}
        assert len(cancelled) == 8
        peak = max(rss_mb(server.proc.pid) for _ in range(10))
        stop.set()
        assert peak - idle < 64, f"RSS grew {peak - idle:.0f} MB past an 8 MB cap"
        for s in streams:
            assert b"output buffers were full" in read_all(s)
            s.close()
        assert health(server)[0] < 1.0
    finally:
        stop.set()
        agent.close()


def test_a_whole_answer_that_grows_past_the_cap_fails_and_memory_stays_bounded(make_server):
    server = make_server("--no-echo-agent", "--set", "max_output_bytes=4194304")
    piece = "w" * 16384
    stop = threading.Event()

    def firehose(invoke, agent):
        i = 0
        while not stop.is_set() and i < 20000:
            if not agent.send_while_open({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i, "delta": {"content": piece}}):
                return
            i += 1

    agent = WsAgent(server, ["gather"], lambda invoke, agent: threading.Thread(
        target=firehose, args=(invoke, agent), daemon=True).start())
    try:
        server.wait_for_model("gather")
        idle = rss_mb(server.proc.pid)
        peak = [idle]
        watching = threading.Event()

        def watch():
            while not watching.is_set():
                peak[0] = max(peak[0], rss_mb(server.proc.pid))
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        status, _, body = http_request(
            server, "POST", "/v1/chat/completions",
            {"model": "gather", "messages": [{"role": "user", "content": "x"}]},
        )
        assert status == 502
        assert "larger than 4194304 bytes" in json.loads(body)["error"]["message"]
        agent.wait_for("cancel", timeout=10)
        time.sleep(0.5)
        watching.set()
        assert peak[0] - idle < 64, f"RSS grew {peak[0] - idle:.0f} MB past a 4 MB answer cap"
    finally:
        stop.set()
        agent.close()


def test_unread_echo_answers_to_huge_prompts_stay_small_and_arrive_whole_when_read(server):
    prompt = "abcdefg " * (MB // 8)
    idle = rss_mb(server.proc.pid)
    sockets = [open_stream(server, "echo", prompt) for _ in range(4)]
    time.sleep(2)
    peak = max(rss_mb(server.proc.pid) for _ in range(10))
    assert peak - idle < 80, f"4 unread 1 MiB echo answers took {peak - idle:.0f} MB"
    for s in sockets[1:]:
        s.close()
    # The one that reads gets every word: the echo agent paused for it.
    data = read_all(sockets[0], timeout=120)
    sockets[0].close()
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in data.decode().split("\n")
        if line.startswith("data: {") and '"choices":[{' in line
    )
    assert text == prompt


def test_many_refused_connections_do_not_hold_up_the_next_one(make_server):
    server = make_server("--set", "max_connections=4")
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    try:
        time.sleep(0.3)
        started = time.monotonic()
        statuses = []
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                statuses.append(s.recv(4096).split(b"\r\n")[0])
        took = time.monotonic() - started
        assert all(b" 503 " in line for line in statuses), statuses
        assert took < 4.0, f"40 refusals took {took:.1f}s"
    finally:
        for s in held:
            s.close()


@pytest.mark.serial
def test_a_low_file_limit_lowers_the_connection_cap_so_refusals_are_answered(make_server, monkeypatch):
    import functools
    import subprocess

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))

    with monkeypatch.context() as m:
        m.setattr(subprocess, "Popen", functools.partial(subprocess.Popen, preexec_fn=low_limit))
        server = make_server("--set", "max_connections=100000")
    held = []
    refused = 0
    try:
        for _ in range(150):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            held.append(s)
        for s in held:
            s.setblocking(False)
        # The refusals are written as the server accepts; a loaded machine
        # may take a moment to get to them.
        deadline = time.monotonic() + 5
        while refused == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
            for s in held:
                try:
                    if b" 503 " in s.recv(4096):
                        refused += 1
                except (BlockingIOError, ConnectionResetError):
                    pass
        assert refused > 0, "past the lowered cap connections get 503"
        for s in held:
            s.close()
        held = []
        # The server frees a slot when it reads the client's close; until it
        # has read them all a new connection may still meet the cap.
        deadline = time.monotonic() + 5
        while True:
            status = raw_status(server)
            if b" 200 " in status or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert b" 200 " in status, status
        assert server.alive()
    finally:
        for s in held:
            s.close()


def ws_frame(opcode, payload, rsv=0):
    """One masked client frame."""
    mask = b"\x01\x02\x03\x04"
    head = bytes([0x80 | rsv | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    else:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_link(server, path="/v1/agent", token=BRIDGE_TOKEN):
    """A WebSocket upgraded at `path` on a raw socket (an agent link by default)."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head
    return s


def close_code(s):
    """The close code of the first close frame the server sends."""
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError(f"closed without a close frame: {data!r}")
        data += chunk
        while len(data) >= 2:
            opcode, n = data[0] & 0x0F, data[1] & 0x7F
            if len(data) < 2 + n:
                break
            if opcode == 0x8:
                return struct.unpack(">H", data[2:4])[0]
            data = data[2 + n :]


@pytest.mark.parametrize(
    "frame,code",
    [
        (ws_frame(0x2, b"\x00\x01"), 1003),
        (ws_frame(0x1, b"\xff\xfe invalid"), 1007),
        (ws_frame(0x1, b"{}", rsv=0x40), 1002),
    ],
    ids=["binary", "invalid-utf8", "reserved-bits"],
)
def test_a_link_that_breaks_the_protocol_is_closed_with_the_code_that_says_why(server, frame, code):
    s = raw_link(server)
    try:
        s.sendall(frame)
        assert close_code(s) == code
    finally:
        s.close()


@pytest.mark.serial
def test_a_frame_sent_with_the_upgrade_is_read_at_once(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    register = json.dumps({"type": "register", "agent_id": "eager", "models": ["eager"]}).encode()
    s.sendall(
        (
            f"GET /v1/agent HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {BRIDGE_TOKEN}\r\n\r\n"
        ).encode()
        + ws_frame(0x1, register)
    )
    started = time.monotonic()
    s.settimeout(3)
    data = b""
    while b"registered" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert time.monotonic() - started < 2
    s.close()


def test_a_half_closed_request_gets_an_answer_slower_than_the_read_timeout(make_server):
    server = make_server("--set", "read_timeout_secs=1")

    def slow(invoke, agent):
        time.sleep(2.5)
        agent.send({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0,
                    "delta": {"content": "late"}, "finish_reason": "stop"})

    agent = WsAgent(server, ["slow"], lambda invoke, agent: threading.Thread(
        target=slow, args=(invoke, agent), daemon=True).start())
    try:
        server.wait_for_model("slow")
        body = json.dumps({"model": "slow", "messages": [{"role": "user", "content": "x"}]}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(
                (
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        head, _, answer = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), got[:200]
        assert json.loads(answer)["choices"][0]["message"]["content"] == "late"
    finally:
        agent.close()


def test_usage_near_the_top_of_u64_and_odd_finish_reasons_reach_editors_sane(server):
    def answer(invoke, agent):
        agent.send(
            {
                "type": "model_stream_chunk",
                "id": invoke["id"],
                "chunk_index": 0,
                "delta": {"content": "ok"},
                "finish_reason": "<script>alert(1)</script>",
                "usage": {"prompt_tokens": 2**64 - 1, "completion_tokens": 2**64 - 1},
            }
        )

    agent = WsAgent(server, ["odd"], answer)
    try:
        server.wait_for_model("odd")
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
        r = client.chat.completions.create(model="odd", messages=[{"role": "user", "content": "x"}])
        assert r.choices[0].finish_reason == "stop"
        u = r.usage
        assert u.total_tokens == u.prompt_tokens + u.completion_tokens
        assert u.prompt_tokens >= 2**52
    finally:
        agent.close()


def test_sigterm_ends_open_streams_cancels_agents_and_exits(make_server):
    server = make_server("--no-echo-agent")
    agent = WsAgent(server, ["think"], lambda invoke, agent: agent.send(
        {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"content": "thinking "}}))
    server.wait_for_model("think")
    s = open_stream(server, "think")
    s.settimeout(5)
    first = b""
    while b"thinking" not in first:
        first += s.recv(4096)
    invoke = agent.wait_for("model_invoke")
    server.proc.send_signal(signal.SIGTERM)
    rest = read_all(s, timeout=5)
    assert b"shutting down" in rest and rest.endswith(b"0\r\n\r\n")
    assert agent.wait_for("cancel")["id"] == invoke["id"]
    server.proc.wait(timeout=6)
    assert server.proc.returncode == 0
    s.close()


def unread_flood(server):
    """An agent `flood` that answers with 2,000 chunks of 16 KiB, and an
    editor of it that never reads, once the server holds a backlog for it
    (30 MB, or 10 s): a shutdown waits for that editor (up to its grace
    period). The server needs max_output_bytes past 32 MB."""
    piece = "z" * 16384

    def flood(invoke, agent):
        for i in range(2000):
            agent.send({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i, "delta": {"content": piece}})

    agent = WsAgent(server, ["flood"], flood)
    server.wait_for_model("flood")
    editor = open_stream(server, "flood", rcvbuf=4096)
    deadline = time.monotonic() + 10
    while rss_mb(server.proc.pid) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    return agent, editor


@pytest.mark.serial
def test_a_second_signal_exits_at_once(make_server):
    server = make_server("--no-echo-agent", "--set", "max_output_bytes=134217728")
    # The first shutdown waits to write what it holds for the editor.
    agent, s = unread_flood(server)
    server.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert server.alive(), "the first signal waits for output to be written"
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    server.proc.wait(timeout=2)
    assert time.monotonic() - started < 1.5
    s.close()
    agent.close()
