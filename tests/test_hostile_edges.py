"""Edges a hostile neighbour or client could use, on every runtime: a
forged request to a login's loopback listener does not end the login; a
cancelled background response cancelled again is answered as it ended; and
at the connection cap, connections left idle are reclaimed, the one idle
the longest first, before a new client is refused (in the binaries and in
the embedding example alike)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import openai
import pytest

from conftest import API_KEY, BIN_DIR, ROOT, RUNTIMES, FakeHandler, LocalHttpServer, wait_until

BROWSER = ROOT / "tests" / "fixtures" / "oauth" / "browser.py"
TIMEOUT = 60


# A forged redirect to the login's listener.


class AuthWorld(FakeHandler):
    """A remote MCP server that wants a token and its authorization server,
    on one origin; the token endpoint records the codes it is given."""

    def do_GET(self):
        base = self.server.base
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/.well-known/oauth-protected-resource/mcp":
            self.send_json(200, {"resource": f"{base}/mcp", "authorization_servers": [base]})
        elif url.path == "/.well-known/oauth-authorization-server":
            self.send_json(
                200,
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "registration_endpoint": f"{base}/register",
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["none"],
                },
            )
        elif url.path == "/authorize":
            query = dict(urllib.parse.parse_qsl(url.query))
            back = {"code": "the-code", "state": query["state"], "iss": base}
            self.send_response(302)
            self.send_header("location", query["redirect_uri"] + "?" + urllib.parse.urlencode(back))
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_json(404, {})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if url.path == "/mcp":
            challenge = f'Bearer resource_metadata="{self.server.base}/.well-known/oauth-protected-resource/mcp"'
            self.send_json(401, {"error": "invalid_token"}, {"www-authenticate": challenge})
        elif url.path == "/register":
            self.send_json(201, {"client_id": "edge-client"})
        elif url.path == "/token":
            self.server.codes.append(dict(urllib.parse.parse_qsl(raw.decode()))["code"])
            self.send_json(200, {"access_token": "at-edge", "token_type": "Bearer", "expires_in": 3600})
        else:
            self.send_json(404, {})


def get(url):
    """GET `url` without following redirects: (status, body)."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_a_forged_redirect_to_the_login_listener_is_refused_and_the_login_goes_on(runtime, tmp_path):
    """Another local process finds the login's loopback port and sends it a
    redirect with a `state` of its own: it is answered 400, the login keeps
    waiting, and the browser's redirect afterwards completes it with the
    authorization server's code (the forged one is never exchanged)."""
    with LocalHttpServer(AuthWorld) as world:
        world.codes = []
        config = tmp_path / "config.toml"
        config.write_text(f'[[bridge.servers]]\nname = "remote"\nurl = "{world.base}/mcp"\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_") and k != "BROWSER"}
        env["XDG_STATE_HOME"] = str(tmp_path / "state")
        login = subprocess.Popen(
            [str(BIN_DIR / RUNTIMES[runtime]), "login", "remote", "--no-browser", "--config", str(config)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            lines = []
            for line in login.stdout:
                lines.append(line)
                if line.strip().startswith("http://"):
                    break
            authorize = lines[-1].strip()
            assert authorize.startswith(f"{world.base}/authorize?"), "".join(lines)
            callback = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))["redirect_uri"]
            for forged in ("?code=evil&state=forged", "?code=evil", "?error=access_denied&state=x"):
                status, page = get(callback + forged)
                assert status == 400, (forged, status, page)
                assert "still waits" in page
            assert login.poll() is None, "the forged redirect ended the login"
            # The user's browser comes back: the login completes.
            subprocess.run([sys.executable, str(BROWSER), authorize], check=True, timeout=TIMEOUT)
            rest = login.stdout.read()
            assert login.wait(timeout=TIMEOUT) == 0, "".join(lines) + rest
            assert "Logged in to `remote`" in rest, rest
            assert world.codes == ["the-code"]
        finally:
            if login.poll() is None:
                login.kill()
                login.wait()


# A cancelled response cancelled again.

FORTY_WORDS = " ".join(f"word{i}" for i in range(40))


def test_cancelling_a_cancelled_background_response_again_answers_it_as_it_ended(make_server):
    server = make_server("--set", "echo_chunk_delay_ms=150")
    server.wait_for_model("echo")
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    r = client.responses.create(model="echo", input=FORTY_WORDS, background=True)
    first = client.responses.cancel(r.id)
    assert (first.id, first.status) == (r.id, "cancelled")
    for _ in range(2):
        again = client.responses.cancel(r.id)
        assert again.model_dump() == first.model_dump()
    # A completed one stays refused.
    quick = client.responses.create(model="echo", input="a b", background=True)
    deadline = time.monotonic() + 30
    while client.responses.retrieve(quick.id).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(quick.id)


# Idle connections reclaimed at the cap.

# How long a connection must have waited for its client to be reclaimed
# (kit/src/serve/admission.rs, RECLAIM_AFTER), and how long a test waits past it.
RECLAIM_AFTER = 5
PATIENCE = RECLAIM_AFTER + 10


def keep_alive(port, path="/health"):
    """A connection that made one request and keeps open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode())
    status, _ = read_answer(s)
    assert status == 200, status
    return s


def read_answer(s):
    """The status and body of one whole answer with a content-length."""
    buf = b""
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
                0,
            )
            if len(rest) >= length:
                return int(head.split(b" ", 2)[1]), rest[:length]
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {buf[:200]!r}")
        buf += chunk


def closed(s):
    """Whether the server closed `s` (it is read without waiting)."""
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


def closed_soon(s):
    """Whether the server closes `s` within a few seconds: a connection
    reclaimed for a new client is closed by its own task, which may come
    a moment after the new client's answer."""
    return wait_until(lambda: closed(s), timeout=5)


def new_client(port, until, path="/health"):
    """A new client's first answer, tried again while it is 503, until
    `until`: (status, body, its connection kept open)."""
    while True:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode())
        status, body = read_answer(s)
        if status != 503 or time.monotonic() > until:
            return status, body, s
        s.close()
        time.sleep(0.2)


def test_at_the_connection_cap_the_longest_idle_connection_is_reclaimed_before_anyone_is_refused(make_server):
    """Four connections at a cap of four: two idle after a request each,
    two sending a request slowly. A new client is served once the first
    idle one has waited its time, and that one is closed; then another,
    in the second's place. Past that, every connection is busy or idle
    only a moment: a new client gets 503 in OpenAI's error shape."""
    server = make_server("--set", "max_connections=4")
    # A connection counts as idle once its answer is written, which its
    # client may read before the server has marked it: the second is
    # opened a clear moment later, so the first is the longest idle.
    idle = [keep_alive(server.port)]
    time.sleep(0.5)
    idle.append(keep_alive(server.port))
    busy = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        busy.append(s)
    served = []
    try:
        status, _, first = new_client(server.port, time.monotonic() + PATIENCE)
        served.append(first)
        assert status == 200, "no idle connection was reclaimed"
        assert closed_soon(idle[0]), "the longest idle connection is still open"
        assert not closed(idle[1])
        status, _, second = new_client(server.port, time.monotonic() + PATIENCE)
        served.append(second)
        assert status == 200
        assert closed_soon(idle[1])
        assert not any(closed(s) for s in busy)
        # Busy ones, and ones idle for a moment only: refused.
        status, body, third = new_client(server.port, time.monotonic())
        served.append(third)
        assert status == 503, body
        assert json.loads(body)["error"]["type"]
        # The two served are served again on their connections.
        for s in served[:2]:
            s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode())
            assert read_answer(s)[0] == 200
    finally:
        for s in idle + busy + served:
            s.close()


EMBED = BIN_DIR / "examples" / "embed"
# The example's cap and read timeout (runtime-tokio/examples/embed.rs).
EMBED_CAP = 1000
EMBED_READ_TIMEOUT = 10


def test_the_embedding_example_at_its_cap_reclaims_an_idle_connection_for_a_new_client():
    """The embedding example with as many idle keep-alive connections as
    its cap: a new client is served before any of them could have timed
    out, and the one idle the longest is the one closed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = subprocess.Popen([str(EMBED), f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
    held = []
    try:
        assert app.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}"
        threading.Thread(target=app.stdout.read, daemon=True).start()
        started = time.monotonic()
        held = [keep_alive(port, "/hello") for _ in range(EMBED_CAP)]
        # Served while the first of them has not reached its read timeout.
        status, _, s = new_client(port, started + EMBED_READ_TIMEOUT - 1, "/hello")
        held.append(s)
        assert time.monotonic() < started + EMBED_READ_TIMEOUT, "no connection was reclaimed"
        assert status == 200
        assert closed_soon(held[0])
        assert not closed(held[EMBED_CAP - 1])
    finally:
        for s in held:
            s.close()
        app.terminate()
        app.wait(timeout=10)
