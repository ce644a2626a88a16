"""The provider integration suite, written once and run against every runtime.

Each test gets a running server of the runtime under test (the `runtime`
parameter: the binaries named in RUNTIMES), real clients (the official
`openai` and `ollama` packages, raw sockets, a WebSocket test agent) and
nothing else: no mocks between the client and the server.
"""

import http.server
import importlib.util
import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

ROOT = Path(__file__).resolve().parent.parent
# The release build: what the README's `cargo run --release` starts, and what
# users run (scripts/test builds it; the core's own tests run unoptimized).
BIN_DIR = Path(os.environ.get("MCP_PROVIDER_BIN_DIR", ROOT / "target" / "release"))
RUNTIMES = {
    "smol": "mcp-provider",
    "blocking": "mcp-provider-blocking",
    "tokio": "mcp-provider-tokio",
}
SELECTED = [r for r in os.environ.get("MCP_PROVIDER_RUNTIMES", ",".join(RUNTIMES)).split(",") if r]


def _load_phoenix_harness():
    """tests/phoenix.py, loaded by its path as `phoenix_harness`: `phoenix`
    is already taken by the installed Phoenix package, whose client is a
    pytest plugin imported before this file."""
    spec = importlib.util.spec_from_file_location("phoenix_harness", Path(__file__).with_name("phoenix.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# The `phoenix` fixture: an OpenTelemetry backend for the trace tests.
phoenix = _load_phoenix_harness().phoenix

API_KEY = "sk-test-key"
STATE_DIR = ROOT / "target" / "test-state"
# Every server's log (stderr) and audit trail, scanned for secrets at the
# end: a folder per pytest-xdist worker, each cleaned and scanned by its own.
LOG_DIR = ROOT / "target" / "test-logs" / os.environ.get("PYTEST_XDIST_WORKER", "main")
# A prompt tests send through every API: it must never reach a log either.
SECRET_PROMPT = "the launch code is tango-7-alpha"
BRIDGE_TOKEN = "bt-test-token"


# Debian's headless Chromium, which the browser tests drive.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_INSTALL = ("apt-get install --no-install-recommends chromium (as root), "
                    "or sudo apt-get install --no-install-recommends chromium")


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives headless Chromium at /usr/bin/chromium")
    config.addinivalue_line(
        "markers",
        "serial: runs alone, after the tests that run side by side (it pushes hundreds of MB "
        "through the server, kills processes in a loop, or bounds a latency or races a deadline "
        "that a machine loaded with other tests misses)",
    )
    config.addinivalue_line(
        "markers",
        "long: takes a minute or more; started first, so the tests side by side do not end "
        "waiting on it alone",
    )


def pytest_collection_modifyitems(config, items):
    """The long tests first (in their order). Without Chromium the browser
    tests are reported as not run, with the line that installs it, and
    everything else runs. CI has it installed (`.ci/run`), and there a
    missing browser fails instead of skipping."""
    items.sort(key=lambda item: "long" not in item.keywords)
    if CHROMIUM.exists() or os.environ.get("CI") == "true":
        return
    skip = pytest.mark.skip(reason=f"NOT RUN: {CHROMIUM} is missing; install it with {CHROMIUM_INSTALL}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def claude_code_env(base_url, api_key):
    """Claude Code pointed at `base_url`'s Messages API, answered by its
    echo model, with telemetry and updates off."""
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_MODEL": "echo",
        "ANTHROPIC_SMALL_FAST_MODEL": "echo",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "echo",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


class LocalHttpServer(http.server.ThreadingHTTPServer):
    """A test's own HTTP server on an ephemeral 127.0.0.1 port, serving
    `handler` on a thread of its own; a context manager that closes it."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.requests = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def close(self):
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Silent:
    """A listener that accepts every connection and never says a word,
    each connection read until its peer closes it: how many it took, and
    how many of those the peer still holds open."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.closed = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self.hold, args=(conn,), daemon=True).start()

    def hold(self, conn):
        with conn:
            try:
                while conn.recv(4096):
                    pass
            except OSError:
                pass
        with self.lock:
            self.closed += 1

    @property
    def open(self):
        with self.lock:
            return self.accepted - self.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.listener.close()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    """What the suite's fake endpoints share: JSON answers, a chunked
    event stream written piece by piece, and a connection broken midway."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def json_body(self):
        """The request's body as JSON (`{}` when empty or not JSON)."""
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def send_initialized(self, ident, name, session):
        """The answer to `initialize` of a tools server called `name`,
        opening `session`."""
        result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": name, "version": "1"}}
        self.send_json(200, {"jsonrpc": "2.0", "id": ident, "result": result}, {"mcp-session-id": session})

    def send_empty(self, status):
        """`status` with no body: 202 for a notification, 405 for an
        event stream the server does not offer."""
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def send_json(self, status, value, headers=None):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for name, header in (headers or {}).items():
            self.send_header(name, header)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_sse(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def chunk(self, payload):
        """One chunk of the event stream, sent at once."""
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def end_sse(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def cut(self, reset=False):
        """Closes the connection in the middle of the chunked body, or
        resets it."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def live_processes(matches, but=()):
    """Pids of the processes (zombies left out) for which
    `matches(environ, cmdline)` holds, each as the raw bytes /proc has."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in but:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = b"\0" + f.read() + b"\0"
        except OSError:
            environ = b""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and matches(environ, cmdline):
            found.append(int(pid))
    return found


def mcp_post(server, path, body, headers=None, method="POST", timeout=30):
    """A raw request to the bridge with the API key, as an MCP client sends
    it: (status, headers, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        server.base + path,
        data=data,
        method=method,
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            raw = r.read()
            return r.status, r.headers, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, e.headers, json.loads(raw) if raw else None


def wait_until(check, timeout=10):
    """Whether `check()` came true within `timeout` seconds (polled)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def with_env(name, value):
    """A `live_processes` test: the environment holds NAME=value."""
    needle = f"\0{name}={value}\0".encode()
    return lambda environ, _cmdline: needle in environ


class Server:
    """A provider process on an ephemeral loopback port."""

    count = 0

    def __init__(self, runtime, *args, env=None, command="serve"):
        self.runtime = runtime
        self.binary = BIN_DIR / RUNTIMES[runtime]
        Server.count += 1
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{Server.count}-{runtime}"
        self.log_path = LOG_DIR / f"{name}.log"
        self.audit_path = LOG_DIR / f"{name}.audit.jsonl"
        # The server reads every MCP_PROVIDER_* variable as a setting; the
        # suite's own (runtimes, binary folder) are not settings.
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
        full_env.update(
            {
                "MCP_PROVIDER_API_KEY": API_KEY,
                "MCP_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN,
                "RUST_LOG": "warn",
                # Generated secrets are kept here, never in the user's home.
                "XDG_STATE_HOME": str(STATE_DIR),
                "MCP_PROVIDER_AUDIT_LOG": str(self.audit_path),
            }
        )
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [str(self.binary), command, "--listen", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=open(self.log_path, "w"),
            env=full_env,
            text=True,
        )
        self.port = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on http://" in line:
                self.port = int(line.rsplit(":", 1)[1])
                break
        if self.port is None:
            self.stop()
            raise RuntimeError(f"{self.binary} did not start: {self.log_path.read_text()}")
        # Keep reading stdout so the process never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_url(self):
        return f"ws://127.0.0.1:{self.port}/v1/agent"

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        """Stops the server as a user would, with SIGTERM, so it ends the
        children it started (a child that ignores its closed stdin would
        outlive a SIGKILL); killed if it has not exited within seconds."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait(timeout=10)

    def models(self):
        import urllib.request

        req = urllib.request.Request(self.base + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return [m["id"] for m in json.load(r)["data"]]

    def wait_for_model(self, model, present=True, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (model in self.models()) == present:
                return
            time.sleep(0.02)
        raise AssertionError(f"model {model} {'never appeared' if present else 'never went away'}")


class WsAgent:
    """An agent written the way a third party would: a WebSocket client
    speaking the agent link protocol. `on_invoke(message, send)` answers;
    pings get their pong unless `answers_pings` is false."""

    def __init__(self, server, models, on_invoke, token=BRIDGE_TOKEN, answers_pings=True):
        self.ws = ws_connect(server.agent_url, additional_headers={"Authorization": f"Bearer {token}"})
        self.received = queue.Queue()
        self.on_invoke = on_invoke
        self.answers_pings = answers_pings
        self.send({"type": "register", "agent_id": "test-agent", "models": models, "allowed_scopes": ["inference"]})
        self.registered = json.loads(self.ws.recv(timeout=5))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def send(self, message):
        self.ws.send(json.dumps(message))

    def send_while_open(self, message):
        """`send` for a thread that streams until the link is gone, closed
        by the test or by the server: whether the link was still open."""
        try:
            self.send(message)
            return True
        except ConnectionClosed:
            return False

    def _run(self):
        try:
            for text in self.ws:
                message = json.loads(text)
                self.received.put(message)
                if message.get("type") == "model_invoke":
                    self.on_invoke(message, self)
                elif message.get("type") == "ping" and self.answers_pings:
                    self.send({"type": "pong"})
        except Exception:
            pass

    def wait_for(self, kind, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if message.get("type") == kind:
                return message
        raise AssertionError(f"no {kind} message within {timeout}s")

    def close(self):
        self.ws.close()


def raw_request(server, data: bytes, timeout=5):
    """Sends raw bytes, returns (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                headers = parse_headers(head)
                length = int(headers.get("content-length", -1))
                if length >= 0 and len(rest) >= length:
                    break
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, parse_headers(head), body


def parse_headers(head: bytes):
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}


def http_request(server, method, path, body=None, headers=None):
    """One request with a correct head; body may be bytes or a JSON value."""
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
    body = body or b""
    h = {"Host": f"127.0.0.1:{server.port}", "Authorization": f"Bearer {API_KEY}", "Content-Length": str(len(body))}
    h.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v is not None)
    return raw_request(server, head.encode() + b"Connection: close\r\n\r\n" + body)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log():
    """After the whole suite: no server's log or audit line holds a key, the
    bridge token or the secret prompt, although every test's server kept
    an audit trail and the tests sent all three."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in LOG_DIR.glob("*"):
        old.unlink()
    yield
    leaks = []
    for path in sorted(LOG_DIR.glob("*")):
        text = path.read_text(errors="replace")
        for secret in (API_KEY, BRIDGE_TOKEN, SECRET_PROMPT):
            if secret in text:
                leaks.append(f"{path.name} holds {secret!r}")
    assert not leaks, leaks


@pytest.fixture(scope="module", params=SELECTED)
def runtime(request):
    return request.param


@pytest.fixture(scope="module")
def server(runtime):
    """A server with the built-in echo agent, shared by a module's tests."""
    s = Server(runtime)
    s.wait_for_model("echo")
    yield s
    s.stop()


@pytest.fixture
def make_server(runtime):
    """Starts servers with their own flags; stops them after the test."""
    started = []

    def make(*args, env=None, command="serve"):
        s = Server(runtime, *args, env=env, command=command)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


class WeatherAgent(WsAgent):
    """A test agent for tool round trips, in the agent link's own shape:
    asked a question, it streams a call of `get_weather` (id `call_42`,
    arguments `{"city": "Paris"}` in three pieces); given the tool's result,
    it answers `It is <result>.`. Every invocation's payload is kept in
    `payloads`."""

    def __init__(self, server, model="weather"):
        self.payloads = []
        super().__init__(server, [model], self._answer)
        server.wait_for_model(model)

    def _answer(self, invoke, agent):
        self.payloads.append(invoke["payload"])
        last = invoke["payload"]["messages"][-1]
        if last["role"] == "tool":
            deltas = [{"content": "It is "}, {"content": f"{last['content']}."}]
            finish = "stop"
        else:
            pieces = ['{"city":', ' "Paris"', "}"]
            deltas = []
            for i, args in enumerate(pieces):
                call = {"index": 0, "function": {"arguments": args}}
                if i == 0:
                    call.update({"id": "call_42", "type": "function"})
                    call["function"]["name"] = "get_weather"
                deltas.append({"tool_calls": [call]})
            finish = "tool_calls"
        for i, delta in enumerate(deltas):
            agent.send(
                {
                    "type": "model_stream_chunk",
                    "id": invoke["id"],
                    "chunk_index": i,
                    "delta": delta,
                    "finish_reason": finish if i == len(deltas) - 1 else None,
                }
            )


def metric(server, name):
    """A metric's value from `/metrics` (parsed by prometheus_client),
    summed over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    status, _, raw = http_request(server, "GET", "/metrics")
    assert status == 200
    return sum(
        s.value
        for family in text_string_to_metric_families(raw.decode())
        for s in family.samples
        if s.name == name
    )
