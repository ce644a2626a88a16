"""The provider embedded in a tokio application: the example of
runtime-tokio/examples/embed.rs (the README's snippet, the same text) serves
its own page and, on the same listener, the provider's routes, answered by
an agent written in the application. Driven with the official `openai` and
`anthropic` clients, as an editor would."""

import asyncio
import http.client
import re
import socket
import subprocess
import threading
import time
import urllib.request

import anthropic
import openai
import pytest

from conftest import BIN_DIR, ROOT

EXAMPLE = ROOT / "runtime-tokio" / "examples" / "embed.rs"
BINARY = BIN_DIR / "examples" / "embed"
# The example's read timeout: an idle connection has this long to send a
# whole request.
READ_TIMEOUT = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    if not BINARY.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "mcp-provider-tokio", "--example", "embed"], cwd=ROOT, check=True)
    port = free_port()
    proc = subprocess.Popen(
        [str(BINARY), f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"listening on http://127.0.0.1:{port}", line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_readme_shows_the_example_as_it_is():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```rust\n(.*?)^```$", readme, flags=re.S | re.M)
    assert EXAMPLE.read_text() in blocks
    assert len(EXAMPLE.read_text().splitlines()) < 100


def test_the_application_keeps_its_own_route(app):
    with urllib.request.urlopen(f"{app}/hello", timeout=10) as response:
        assert response.read() == b"hello from the application\n"


def test_the_application_agent_answers_the_openai_client(app):
    client = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list().data] == ["shout"]
    reply = client.chat.completions.create(
        model="shout", messages=[{"role": "user", "content": "hello from the editor"}]
    )
    assert reply.choices[0].message.content == "HELLO FROM THE EDITOR"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 4
    stream = client.chat.completions.create(
        model="shout", stream=True, messages=[{"role": "user", "content": "one two three"}]
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == ["ONE ", "TWO ", "THREE"]


def test_many_editors_at_once_each_get_their_own_answer(app):
    client = openai.AsyncOpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)

    async def ask(i):
        stream = await client.chat.completions.create(
            model="shout", stream=True, messages=[{"role": "user", "content": f"editor {i} asks"}]
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def all_of_them():
        return await asyncio.gather(*(ask(i) for i in range(40)))

    answers = asyncio.run(all_of_them())
    assert answers == [f"EDITOR {i} ASKS" for i in range(40)]


def test_other_apis_and_wrong_keys_are_the_providers_as_usual(app):
    claude = anthropic.Anthropic(base_url=app, api_key="sk-app", max_retries=0, timeout=30)
    message = claude.messages.create(
        model="shout", max_tokens=100, messages=[{"role": "user", "content": "quiet words"}]
    )
    assert message.content[0].text == "QUIET WORDS"
    wrong = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    unknown = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError):
        unknown.chat.completions.create(model="whisper", messages=[{"role": "user", "content": "x"}])


def test_an_editor_that_leaves_mid_answer_leaves_the_application_serving(app):
    # Streams dropped after their first chunk, then a whole answer.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", int(app.rsplit(":", 1)[1])), timeout=10) as s:
            body = b'{"model":"shout","stream":true,"messages":[{"role":"user","content":"' + b"word " * 2000 + b'"}]}'
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-app\r\n"
                b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.2)
    client = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="shout", messages=[{"role": "user", "content": "still here"}])
    assert reply.choices[0].message.content == "STILL HERE"


def port_of(app):
    return int(app.rsplit(":", 1)[1])


def hello(app):
    with urllib.request.urlopen(f"{app}/hello", timeout=10) as response:
        return response.read()


def closed_within(s, seconds):
    """Seconds until the server ends `s` (reading whatever it sends), or
    None if it is still open after `seconds`."""
    start = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - start < seconds:
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


def test_r3_6_a_silent_connection_and_500_idle_ones_leave_the_application_serving(app):
    """R3-6: one connection that sends nothing and 500 idle ones do not stop
    the example from answering 100 requests, its own route and the provider's."""
    port = port_of(app)
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(500)]
    try:
        client = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=10)
        for i in range(50):
            assert hello(app) == b"hello from the application\n"
            reply = client.chat.completions.create(
                model="shout", messages=[{"role": "user", "content": f"request {i}"}]
            )
            assert reply.choices[0].message.content == f"REQUEST {i}"
    finally:
        for s in [silent, *idle]:
            s.close()


def test_r3_6_a_slowloris_head_is_cut_at_the_read_timeout(app):
    """R3-6: a request head trickled a byte at a time is cut at the read
    timeout, and the application answers others meanwhile."""
    with socket.create_connection(("127.0.0.1", port_of(app)), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        cut = None
        # A byte every 0.2 s (closed_within waits that long), for at most
        # READ_TIMEOUT + 5 seconds.
        for i in range(5 * (READ_TIMEOUT + 5)):
            try:
                s.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                cut = time.monotonic() - start
                break
            if closed_within(s, 0.1) is not None:
                cut = time.monotonic() - start
                break
            if i % 10 == 0:
                assert hello(app) == b"hello from the application\n"
        assert cut is not None, "the trickled head was never cut"
        assert READ_TIMEOUT - 1 <= cut <= READ_TIMEOUT + 5, cut


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/hello"])
def test_r3_6_a_50_mb_body_gets_413_without_stalling_others(app, path):
    """R3-6: a 50 MB body, to the provider's route or the application's,
    is answered 413 and closed while both keep answering others."""
    size = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port_of(app)), timeout=10) as s:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-app\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode()
        )

        def send_body():
            piece = b"x" * (1 << 20)
            try:
                for _ in range(size // len(piece)):
                    s.sendall(piece)
            except OSError:
                pass  # The server closed: the rest is not wanted.

        sender = threading.Thread(target=send_body, daemon=True)
        sender.start()
        assert hello(app) == b"hello from the application\n"
        answer = b""
        try:
            while b"\r\n" not in answer and (chunk := s.recv(4096)):
                answer += chunk
        except ConnectionResetError:
            pass
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert closed_within(s, READ_TIMEOUT) is not None
        sender.join(timeout=10)
    client = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=10)
    reply = client.chat.completions.create(model="shout", messages=[{"role": "user", "content": "after"}])
    assert reply.choices[0].message.content == "AFTER"
    assert hello(app) == b"hello from the application\n"


def test_r3_6_one_kept_alive_connection_reaches_both_the_application_and_the_provider(app):
    """R3-6: routing is per request: one kept-alive connection gets the
    application's page and the provider's routes in turn."""
    conn = http.client.HTTPConnection("127.0.0.1", port_of(app), timeout=10)
    conn.connect()
    first = conn.sock
    try:
        for _ in range(3):
            conn.request("GET", "/v1/models", headers={"Authorization": "Bearer sk-app"})
            models = conn.getresponse()
            assert models.status == 200
            assert b'"shout"' in models.read()
            conn.request("GET", "/hello")
            page = conn.getresponse()
            assert (page.status, page.read()) == (200, b"hello from the application\n")
        assert conn.sock is first  # The same connection throughout.
    finally:
        conn.close()
