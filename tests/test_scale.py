"""Many connections at once, and the limits that keep a server standing:
1,000 streams held open together, the connection cap, idle read timeouts,
and every connection's resources released when it ends."""

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import API_KEY, WsAgent, http_request, wait_until

STREAMS = 1000
CHUNKS = 10


def proc_status(pid):
    """Threads and memory of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else ""
    return {"threads": int(fields["Threads"]), "rss_kb": int(fields["VmRSS"]), "peak_rss_kb": int(fields["VmHWM"])}


def dechunk(body: bytes) -> bytes:
    """The payload of a chunked HTTP body."""
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


async def stream_once(port, i):
    """One streamed chat request on a raw connection; returns (expected, got)."""
    body = json.dumps(
        {"model": "hold", "stream": True, "messages": [{"role": "user", "content": f"stream-{i}"}]}
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    text = ""
    done = False
    for event in dechunk(payload).decode().split("\n\n"):
        if event == "data: [DONE]":
            done = True
        elif event.startswith("data: "):
            for choice in json.loads(event[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    assert done, f"stream {i} did not end with [DONE]"
    return "".join(f"stream-{i}.{j} " for j in range(CHUNKS)), text


def test_1000_streams_open_at_once_each_get_every_chunk(make_server, runtime):
    """The agent holds every request until all 1,000 are open, then answers
    each with its own chunks: every editor gets exactly its text."""
    s = make_server("--no-echo-agent", "--set", f"max_connections={STREAMS + 50}")
    held, all_open = [], threading.Event()
    lock = threading.Lock()

    def on_invoke(message, agent):
        with lock:
            held.append(message)
            if len(held) < STREAMS:
                return
        all_open.set()
        for m in held:
            tag = m["payload"]["messages"][-1]["content"]
            for j in range(CHUNKS):
                agent.send(
                    {
                        "type": "model_stream_chunk",
                        "id": m["id"],
                        "chunk_index": j,
                        "delta": {"content": f"{tag}.{j} "},
                        "finish_reason": "stop" if j == CHUNKS - 1 else None,
                    }
                )

    agent = WsAgent(s, ["hold"], on_invoke)
    before = proc_status(s.proc.pid)
    peak = {}

    def sample_when_all_open():
        if all_open.wait(timeout=120):
            peak.update(proc_status(s.proc.pid))

    sampler = threading.Thread(target=sample_when_all_open)
    sampler.start()
    try:

        async def all_streams():
            return await asyncio.wait_for(
                asyncio.gather(*(stream_once(s.port, i) for i in range(STREAMS))), timeout=120
            )

        started = time.monotonic()
        results = asyncio.run(all_streams())
        elapsed = time.monotonic() - started
        sampler.join()
        assert len(held) == STREAMS
        assert all(expected == got for expected, got in results)
        after = proc_status(s.proc.pid)
        print(
            f"\n{runtime}: {STREAMS} streams x {CHUNKS} chunks in {elapsed:.2f}s; "
            f"threads {before['threads']} idle, {peak['threads']} with all open; "
            f"RSS {before['rss_kb'] / 1024:.1f} MB idle, {peak['rss_kb'] / 1024:.1f} MB with all open, "
            f"peak {after['peak_rss_kb'] / 1024:.1f} MB"
        )
        # Every connection's threads and buffers are released once it ends,
        # but for the threads the blocking runtime keeps for the next
        # connections: 16 readers and 16 writers at most
        # (runtime-blocking/src/pool.rs).
        kept = 32 if runtime == "blocking" else 0
        assert wait_until(lambda: proc_status(s.proc.pid)["threads"] <= before["threads"] + kept), proc_status(
            s.proc.pid
        )
        status, _, _ = http_request(s, "GET", "/health", headers={"Authorization": None})
        assert status == 200
    finally:
        agent.close()


def test_connections_past_the_cap_are_answered_503(make_server):
    s = make_server("--set", "max_connections=3")
    held = []
    try:
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n\r\n".encode())
            assert c.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(c)
        status, headers, body = http_request(s, "GET", "/v1/models")
        assert status == 503
        assert headers.get("retry-after") == "1"
        assert json.loads(body)["error"]["type"]
        held.pop().close()
        assert wait_until(lambda: http_request(s, "GET", "/v1/models")[0] == 200)
    finally:
        for c in held:
            c.close()


def test_idle_and_slow_connections_are_closed_but_long_streams_are_not(make_server):
    s = make_server("--set", "read_timeout_secs=1", "--set", "echo_chunk_delay_ms=250")
    s.wait_for_model("echo")
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as slow:
        # Half a request, then nothing: closed once the second is up.
        slow.sendall(b"GET /health HTTP/1.1\r\n")
        started = time.monotonic()
        assert slow.recv(1024) == b""
        assert 0.9 <= time.monotonic() - started < 4
    with socket.create_connection(("127.0.0.1", s.port), timeout=5) as idle:
        idle.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{s.port}\r\n\r\n".encode())
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert idle.recv(1024) == b""
        assert 0.9 <= time.monotonic() - started < 4
    # Eight paced words take two seconds, twice the read timeout.
    words = "one two three four five six seven eight"
    status, _, body = http_request(
        s,
        "POST",
        "/v1/chat/completions",
        {"model": "echo", "stream": True, "messages": [{"role": "user", "content": words}]},
    )
    assert status == 200
    events = [e[6:] for e in dechunk(body).decode().split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(c["delta"].get("content") or "" for e in events[:-1] for c in json.loads(e)["choices"])
    assert text == words


@pytest.fixture(autouse=True, scope="module")
def enough_file_descriptors():
    """1,000 streams need about 2,000 descriptors on each side; servers
    started from here inherit the raised limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
