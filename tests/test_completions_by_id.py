"""Every answer in flight has an id: each model API's answer carries it in
the `x-completion-id` header (the body's own id where the API has one),
`GET /completions/{id}` tells its status and `DELETE /completions/{id}`
cancels it, ending the editor's stream normally with its API's final event;
`POST /completions/stream` streams a legacy completion. The seed routes are
driven with curl, as a user checks them by hand; the dashboard's view is
`/control/streams` (each entry's `completion_id`), whose bridge token may
cancel any answer, and `/metrics` counts the cancels. Each API's id of its
answer, an unknown or finished answer, and the key these routes take are
asserted in the core's provider tests."""

import http.client
import json
import queue
import subprocess
import threading
import time

import pytest

from conftest import API_KEY, BRIDGE_TOKEN, WsAgent, http_request, metric, wait_until

FORTY_WORDS = " ".join(f"word{i}" for i in range(40))


class Curl:
    """`curl -sN -D -` posting a JSON body, as a user types it: the status
    and headers, then the body line by line as it comes (read on a
    thread, so every wait is bounded)."""

    def __init__(self, server, path, body, token=API_KEY):
        self.proc = subprocess.Popen(
            ["curl", "-sN", "-D", "-", "-X", "POST",
             "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
             "--data-binary", json.dumps(body), server.base + path],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.status = int(self.line().split()[1])
        self.headers = {}
        while line := self.line():
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout=15):
        """The next line (without its end); EOFError when curl is done."""
        line = self.lines.get(timeout=timeout)
        if line is None:
            raise EOFError
        return line.rstrip("\r\n")

    def rest(self, timeout=15):
        """Every line until curl is done, within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            try:
                lines.append(self.line(max(0.01, deadline - time.monotonic())))
            except EOFError:
                return lines

    def exit_code(self, timeout=10):
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def curl():
    started = []

    def start(*args, **kwargs):
        c = Curl(*args, **kwargs)
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


def curl_json(method, url, token=API_KEY):
    """One curl request: (status, parsed JSON body or None)."""
    out = subprocess.run(
        ["curl", "-s", "-X", method, "-H", f"Authorization: Bearer {token}", "-w", "\n%{http_code}", url],
        capture_output=True, text=True, timeout=15,
    )
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.strip() else None


def call(server, method, path, body=None, token=API_KEY):
    """A raw request: (status, headers, parsed JSON body, or the raw bytes
    when it is not JSON)."""
    status, headers, raw = http_request(server, method, path, body, headers={"Authorization": f"Bearer {token}"})
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw


def sse_data(lines):
    """The `data:` payloads of SSE lines."""
    return [line[len("data: "):] for line in lines if line.startswith("data: ")]


def streams(server):
    status, _, body = call(server, "GET", "/control/streams", token=BRIDGE_TOKEN)
    assert status == 200
    return body["streams"]


def slow_server(make_server):
    server = make_server("--set", "echo_chunk_delay_ms=150")
    server.wait_for_model("echo")
    return server


def test_a_streamed_chat_is_seen_and_cancelled_with_curl(make_server, curl):
    server = slow_server(make_server)
    cancelled_before = metric(server, "mcp_provider_answers_cancelled_total")
    c = curl(server, "/v1/chat/completions",
             {"model": "echo", "stream": True, "messages": [{"role": "user", "content": FORTY_WORDS}]})
    assert c.status == 200
    cid = c.headers["x-completion-id"]
    assert cid.startswith("chatcmpl-")
    text = ""
    while text.count(" ") < 2:
        line = c.line()
        if line.startswith("data: "):
            chunk = json.loads(line[len("data: "):])
            assert chunk["id"] == cid
            text += chunk["choices"][0]["delta"].get("content") or ""

    status, info = curl_json("GET", f"{server.base}/completions/{cid}")
    assert status == 200, info
    assert (info["id"], info["status"], info["model"]) == (cid, "in_progress", "echo")
    assert 2 <= info["tokens"] < 40
    status, info = curl_json("DELETE", f"{server.base}/completions/{cid}")
    assert status == 200, info
    assert (info["id"], info["status"]) == (cid, "cancelled")
    tokens = info["tokens"]

    # The editor's stream ends as a chat stream ends: chunks, then [DONE].
    data = sse_data(c.rest())
    assert data and data[-1] == "[DONE]", data
    chunks = [json.loads(d) for d in data[:-1]]
    assert all("error" not in chunk for chunk in chunks), chunks
    text += "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch.get("choices"))
    assert FORTY_WORDS.startswith(text) and len(text) < len(FORTY_WORDS)
    assert c.exit_code() == 0, "curl saw the stream end badly"

    # Nothing left running: no answer in flight, no more tokens.
    assert wait_until(lambda: streams(server) == [], 5), streams(server)
    time.sleep(0.5)
    status, info = curl_json("GET", f"{server.base}/completions/{cid}")
    assert (status, info["status"], info["tokens"]) == (200, "cancelled", tokens)
    assert metric(server, "mcp_provider_answers_cancelled_total") == cancelled_before + 1
    # Already over: it cannot be cancelled again.
    status, body = curl_json("DELETE", f"{server.base}/completions/{cid}")
    assert status == 400, body


def test_an_ollama_chat_is_seen_and_cancelled_with_curl(make_server, curl):
    server = slow_server(make_server)
    c = curl(server, "/api/chat", {"model": "echo", "messages": [{"role": "user", "content": FORTY_WORDS}]})
    assert c.status == 200
    cid = c.headers["x-completion-id"]
    assert cid
    seen = []
    while len(seen) < 2:
        line = c.line()
        if line.strip():
            seen.append(json.loads(line))
    assert all(line["done"] is False for line in seen)

    status, info = curl_json("GET", f"{server.base}/v1/completions/{cid}")
    assert status == 200, info
    assert (info["id"], info["status"], info["model"]) == (cid, "in_progress", "echo")
    assert isinstance(info["tokens"], int) and 2 <= info["tokens"] < 40
    status, info = curl_json("DELETE", f"{server.base}/v1/completions/{cid}")
    assert (status, info["id"], info["status"]) == (200, cid, "cancelled"), info

    rest = [json.loads(line) for line in c.rest() if line.strip()]
    lines = seen + rest
    assert lines[-1]["done"] is True, lines[-1]
    assert all(not line["done"] for line in lines[:-1])
    assert all("error" not in line for line in lines), lines
    text = "".join(line.get("message", {}).get("content", "") for line in lines)
    assert FORTY_WORDS.startswith(text) and len(text) < len(FORTY_WORDS)
    assert cid not in json.dumps(lines), "Ollama's answer has no id of its own"
    assert c.exit_code() == 0
    assert wait_until(lambda: streams(server) == [], 5), streams(server)
    assert curl_json("GET", f"{server.base}/completions/{cid}")[1]["status"] == "cancelled"


def test_a_legacy_completion_streams_with_curl(server, curl):
    c = curl(server, "/completions/stream", {"model": "echo", "prompt": "one two three"})
    assert c.status == 200 and c.headers["content-type"].startswith("text/event-stream")
    data = sse_data(c.rest())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks and all(chunk["object"] == "text_completion" for chunk in chunks)
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == "one two three"
    assert c.exit_code() == 0
    cid = c.headers["x-completion-id"]
    status, info = curl_json("GET", f"{server.base}/completions/{cid}")
    assert (status, info["status"], info["tokens"]) == (200, "completed", 3), info


class OpenStream:
    """A streamed model request read as it comes, over http.client."""

    def __init__(self, server, path, body):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        self.conn.request("POST", path, json.dumps(body),
                          {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
        self.answer = self.conn.getresponse()
        assert self.answer.status == 200
        self.id = self.answer.getheader("x-completion-id")

    def data(self, count=None):
        """The next `count` SSE data payloads (all to the end when None)."""
        out = []
        while count is None or len(out) < count:
            line = self.answer.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if line.startswith("data: "):
                out.append(line[len("data: "):])
        return out

    def close(self):
        self.conn.close()


def test_the_dashboard_sees_and_cancels_every_answer(make_server):
    """`/control/streams` names each answer in flight by its completion id,
    and the bridge token cancels any of them."""
    server = slow_server(make_server)
    cancelled_before = metric(server, "mcp_provider_answers_cancelled_total")
    chat = OpenStream(server, "/v1/chat/completions",
                      {"model": "echo", "stream": True, "messages": [{"role": "user", "content": FORTY_WORDS}]})
    responses = OpenStream(server, "/v1/responses", {"model": "echo", "stream": True, "input": FORTY_WORDS})
    try:
        assert chat.id.startswith("chatcmpl-") and responses.id.startswith("resp_")
        chat.data(2)
        responses.data(5)
        listed = streams(server)
        assert sorted(s["completion_id"] for s in listed) == sorted([chat.id, responses.id]), listed

        for stream, path in [(chat, f"/completions/{chat.id}"), (responses, f"/v1/completions/{responses.id}")]:
            status, _, info = call(server, "DELETE", path, token=BRIDGE_TOKEN)
            assert (status, info["id"], info["status"]) == (200, stream.id, "cancelled"), info
        rest = chat.data()
        assert rest and rest[-1] == "[DONE]", rest
        events = [json.loads(d) for d in responses.data()]
        # The Responses stream ends on a terminal event, not an error.
        terminal = ("response.completed", "response.incomplete", "response.cancelled")
        assert events and events[-1]["type"] in terminal, events[-1]
        assert all(e["type"] != "error" for e in events)
        assert wait_until(lambda: streams(server) == [], 5)
        assert metric(server, "mcp_provider_answers_cancelled_total") == cancelled_before + 2
    finally:
        chat.close()
        responses.close()


def test_a_cancel_reaches_the_agent_and_ends_the_stream(server):
    """An agent that would never finish is told to stop; the editor's
    stream still ends with [DONE]."""
    agent = WsAgent(server, ["hanging"], lambda invoke, a: a.send(
        {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"content": "thinking"}}
    ))
    stream = None
    try:
        server.wait_for_model("hanging")
        stream = OpenStream(server, "/v1/chat/completions",
                            {"model": "hanging", "stream": True, "messages": [{"role": "user", "content": "x"}]})
        first = json.loads(stream.data(1)[0])
        assert first["choices"][0]["delta"]["content"] == "thinking"
        invoke = agent.wait_for("model_invoke")
        status, _, info = call(server, "GET", f"/completions/{stream.id}")
        assert (status, info["status"]) == (200, "in_progress") and info["tokens"] >= 1
        status, _, info = call(server, "DELETE", f"/completions/{stream.id}")
        assert (status, info["status"]) == (200, "cancelled")
        assert agent.wait_for("cancel")["id"] == invoke["id"]
        assert stream.data()[-1] == "[DONE]"
    finally:
        if stream:
            stream.close()
        agent.close()
