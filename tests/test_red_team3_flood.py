"""WebSocket peers that ping and never read: the served link stops reading
them (backpressure), owes them one pong at most, and ends their link once
a write has waited past the read timeout; everyone else streams on."""

import os
import select
import socket
import struct
import threading
import time

import openai
import pytest

from conftest import API_KEY, BRIDGE_TOKEN
from test_hostile import raw_link, rss_mb, ws_frame

# The suite floods for 10 s; `FLOOD_SECONDS=30` runs the finding's 30 s.
FLOOD_SECONDS = float(os.environ.get("FLOOD_SECONDS", "10"))
# Whole ping frames, as many as fit in 64 KiB, sent over and over.
PINGS = ws_frame(0x9, b"p" * 125) * 480
LINKS = {"agent-link": ("/v1/agent", BRIDGE_TOKEN), "bridge-ws": ("/ws", API_KEY)}


def flood(s, until, stop=None):
    """Sends ping frames as fast as `s` takes them until `until` (or `stop`
    is set); returns whether the server ended the connection first."""
    s.setblocking(False)
    at = 0
    while time.monotonic() < until and not (stop and stop.is_set()):
        _, writable, _ = select.select([], [s], [], 0.05)
        if not writable:
            continue
        try:
            at = (at + s.send(PINGS[at:] or PINGS)) % len(PINGS)
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


def frames_until_end(s, timeout):
    """The opcodes and payloads the server sends until it ends the
    connection, read within `timeout`."""
    s.setblocking(True)
    s.settimeout(timeout)
    data = b""
    try:
        while chunk := s.recv(1 << 20):
            data += chunk
    except ConnectionResetError:
        pass
    frames = []
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        if len(data) < 2 + n:
            break
        frames.append((opcode, data[2 : 2 + n]))
        data = data[2 + n :]
    return frames


def echo_stream(client, text):
    """One streamed echo answer: its text and finish reasons."""
    chunks = list(
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": text}], stream=True)
    )
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return content, [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


@pytest.mark.parametrize("link", LINKS, ids=list(LINKS))
def test_r3_5_an_unread_ping_flood_keeps_the_server_small_and_editors_streaming(make_server, link):
    """R3-5: a peer pinging as fast as it can and never reading keeps the server under 64 MB, and an editor streams whole answers meanwhile."""
    server = make_server()
    server.wait_for_model("echo")
    path, token = LINKS[link]
    flooder = raw_link(server, path, token)
    stop = threading.Event()
    peak = [rss_mb(server.proc.pid)]

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(server.proc.pid))
            time.sleep(0.05)

    answers = []
    text = " ".join(f"word{i}" for i in range(200))

    def edit():
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
        while not stop.is_set():
            answers.append(echo_stream(client, text))

    threads = [threading.Thread(target=watch), threading.Thread(target=edit)]
    for t in threads:
        t.start()
    try:
        ended = flood(flooder, time.monotonic() + FLOOD_SECONDS, stop)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        flooder.close()
    print(f"{link}: peak RSS {peak[0]:.1f} MB, {len(answers)} whole answers in {FLOOD_SECONDS:.0f} s")
    assert not ended, "the flooder's link ended before the read timeout"
    assert peak[0] < 64, f"peak RSS {peak[0]:.1f} MB"
    assert len(answers) >= 5 and all(a == (text, ["stop"]) for a in answers), answers[:3]
    assert server.alive()


@pytest.mark.parametrize("link", LINKS, ids=list(LINKS))
def test_r3_5_a_peer_that_leaves_its_pongs_unread_past_the_read_timeout_is_closed(make_server, link):
    """R3-5: pongs left unread for longer than the read timeout end the link; what was sent before the end is whole pongs and at most a close saying 1013 (too slow)."""
    server = make_server(env={"MCP_PROVIDER_READ_TIMEOUT_SECS": "2"})
    path, token = LINKS[link]
    flooder = raw_link(server, path, token)
    try:
        # Enough pings to fill both sides' buffers, then nothing read for
        # the 2 s a write may wait and the 1 s a close frame may wait.
        flood(flooder, time.monotonic() + 1)
        time.sleep(4)
        frames = frames_until_end(flooder, 10)
    except socket.timeout:
        pytest.fail("the link was still open 10 s after the read timeout")
    finally:
        flooder.close()
    opcodes = {opcode for opcode, _ in frames}
    assert frames and opcodes <= {0xA, 0x8}, opcodes
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    assert all(struct.unpack(">H", c[:2])[0] == 1013 for c in closes), closes
