"""HTTP/1.1 framing as RFC 9112 has it, over raw sockets: every ambiguous
or broken request is a 400 at once (never a wait for the read timeout),
and the parts of the protocol real clients lean on work: absolute-form
targets, HEAD on a kept-alive connection, `Expect: 100-continue`, a
half-closed connection, and a client pipelining without end."""

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import API_KEY, WsAgent, parse_headers, raw_request

CHAT = "/v1/chat/completions"
GOOD = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).encode()
AUTH = f"Authorization: Bearer {API_KEY}\r\n"
MB = 1024 * 1024


def post_head(extra):
    return f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\n{AUTH}{extra}\r\n".encode()


def answered_within(server, data, seconds=2):
    """(status, headers, body) of the answer to `data`, which must come
    within `seconds`."""
    started = time.monotonic()
    status, headers, body = raw_request(server, data, timeout=seconds + 3)
    took = time.monotonic() - started
    assert took < seconds, f"answered after {took:.1f}s"
    return status, headers, body


def assert_bad_request(server, data):
    status, headers, body = answered_within(server, data)
    assert status == 400, body
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    error = json.loads(body)["error"]
    assert error["message"] and error["type"] == "invalid_request_error", error


CHUNKED = "Transfer-Encoding: chunked\r\n"


# The core's reader and its answers to every such request are asserted in
# Rust (`ambiguous_or_broken_framing_is_a_400_that_closes_at_once`); here,
# one of each kind shows each runtime writes that answer without waiting.
@pytest.mark.parametrize(
    "data",
    [
        post_head(f"Content-Length: {len(GOOD)}\r\n{CHUNKED}") + b"5\r\nhello\r\n0\r\n\r\n",
        post_head("Content-Length: +5\r\n") + GOOD,
        post_head(CHUNKED) + b"fffffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["length-and-chunked", "signed-length", "chunk-size-overflow"],
)
def test_ambiguous_framing_is_400_at_once(server, data):
    assert_bad_request(server, data)


def test_chunked_body_with_bad_line_ends_is_400_at_once(server):
    """Before, the server waited for a CRLF that never came, and the client
    got no answer until the 60 s read timeout."""
    assert_bad_request(server, post_head(CHUNKED) + b"5\nhello\n0\n\n")


def test_good_chunked_body_with_extensions_and_trailers_is_read(server):
    body = b"%x;name=value\r\n%s\r\n0\r\nX-Checksum: 1\r\n\r\n" % (len(GOOD), GOOD)
    status, _, answer = answered_within(server, post_head(CHUNKED + "Connection: close\r\n") + body)
    assert status == 200 and json.loads(answer)["choices"][0]["message"]["content"] == "hi"


def test_absolute_form_target_routes_by_path(server):
    data = (
        f"GET http://127.0.0.1:{server.port}/v1/models HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{AUTH}"
        "Connection: close\r\n\r\n"
    ).encode()
    status, _, body = answered_within(server, data)
    assert status == 200
    assert "echo" in [m["id"] for m in json.loads(body)["data"]]


def test_absolute_form_authority_is_the_host_checked(server):
    """The target's authority wins over `Host` (RFC 9112 §3.2.2), so it is
    what the local-only check judges."""
    data = (
        f"GET http://attacker.example/v1/models HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{AUTH}"
        "Connection: close\r\n\r\n"
    ).encode()
    assert answered_within(server, data)[0] == 403


def test_options_star_is_answered(server):
    data = f"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode()
    status, _, _ = answered_within(server, data)
    assert 200 <= status < 500
    assert server.alive()


def read_response(sock, buf=b""):
    """One response with a content-length from `sock`: (head, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-head: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(parse_headers(head)["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        rest += chunk
    return head, rest[:length], rest[length:]


def test_head_has_no_body_and_the_next_response_reads_right(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(f"HEAD /v1/models HTTP/1.1\r\n{host}{AUTH}\r\n".encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
        head, _, extra = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        announced = int(parse_headers(head)["content-length"])
        assert announced > 0 and extra == b"", "a HEAD answer carries no body"
        s.sendall(f"GET /v1/models HTTP/1.1\r\n{host}{AUTH}Connection: close\r\n\r\n".encode())
        head, body, rest = read_response(s)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert len(body) == announced and json.loads(body)["data"]
        assert rest == b""


def test_head_pipelined_before_get(server):
    host = f"Host: 127.0.0.1:{server.port}\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            f"HEAD /health HTTP/1.1\r\n{host}\r\nGET /v1/models HTTP/1.1\r\n{host}{AUTH}Connection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]
    second_head, _, body = rest.partition(b"\r\n\r\n")
    assert len(body) == int(parse_headers(second_head)["content-length"])


def test_expect_continue_gets_100_before_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(post_head(f"Expect: 100-continue\r\nContent-Length: {len(GOOD)}\r\nConnection: close\r\n"))
        s.settimeout(2)
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = s.recv(65536)
            assert chunk, "closed before 100 Continue"
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.settimeout(5)
        s.sendall(GOOD)
        head, body, _ = read_response(s)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert json.loads(body)["choices"][0]["message"]["content"] == "hi"


def test_expect_continue_with_the_body_already_sent_gets_no_100(server):
    data = post_head(f"Expect: 100-continue\r\nContent-Length: {len(GOOD)}\r\nConnection: close\r\n") + GOOD
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(data)
        head, body, _ = read_response(s)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert json.loads(body)["choices"][0]["message"]["content"] == "hi"


def test_expect_continue_with_too_large_a_body_gets_413(server):
    data = post_head("Expect: 100-continue\r\nContent-Length: 999999999999\r\n")
    status, _, body = answered_within(server, data)
    assert status == 413 and json.loads(body)["error"]


def test_half_closed_connection_gets_its_answer(server):
    """The client sends a whole request, then shuts its side (as `curl
    --no-keepalive`-style clients and some proxies do): it still gets the
    whole answer, every time."""
    data = post_head(f"Content-Length: {len(GOOD)}\r\n") + GOOD
    for attempt in range(10):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), (attempt, got[:200])
        assert json.loads(body)["choices"][0]["message"]["content"] == "hi", attempt


def test_half_close_after_pipelined_requests_answers_all(server):
    one = post_head(f"Content-Length: {len(GOOD)}\r\n") + GOOD
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(one * 3 + b"POST /v1/chat/comp")  # the last one partial
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.count(b"HTTP/1.1 200 OK") == 3, got[:300]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_pipelining_flood_behind_a_pending_answer_stays_bounded(server):
    """A request whose answer is still coming (its agent never answers),
    then garbage as fast as the socket takes it: the server stops reading
    that connection instead of buffering gigabytes."""
    agent = WsAgent(server, ["never-answers"], lambda message, agent: None)
    try:
        server.wait_for_model("never-answers")
        body = json.dumps(
            {"model": "never-answers", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        ).encode()
        flood = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        flood.sendall(post_head(f"Content-Length: {len(body)}\r\n") + body)
        sent = 0
        peak = rss_mb(server.proc.pid)
        garbage = b"x" * (1 << 20)
        flood.settimeout(0.05)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and sent < 200 * MB:
            try:
                sent += flood.send(garbage)
            except (socket.timeout, BlockingIOError):
                pass
            except (ConnectionResetError, BrokenPipeError):
                break
            peak = max(peak, rss_mb(server.proc.pid))
        peak = max(peak, rss_mb(server.proc.pid))
        assert peak < 100, f"server RSS reached {peak:.0f} MB after {sent / MB:.0f} MB pipelined"
        assert sent < 100 * MB, f"the server took {sent / MB:.0f} MB behind a pending answer"
        status, _, _ = raw_request(
            server, f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == 200
        flood.close()
    finally:
        agent.close()
