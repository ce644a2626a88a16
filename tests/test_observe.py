"""What the server tells about itself, read by real consumers: `/metrics`
through Prometheus' own text parser, `/health/deep`, `/control/streams`,
and the audit log file."""

import json
import socket
import time
import urllib.error
import urllib.request

import anthropic
import ollama
import openai
from prometheus_client.parser import text_string_to_metric_families

from conftest import API_KEY, BRIDGE_TOKEN, SECRET_PROMPT, WsAgent, http_request, wait_until


def get(server, path, token=API_KEY):
    req = urllib.request.Request(server.base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(server):
    """Every sample of `/metrics`, parsed by prometheus_client: a dict of
    (name, frozenset of labels) → value."""
    status, text = get(server, "/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(all_samples, name, **labels):
    return all_samples.get((name, frozenset(labels.items())), 0)


def test_metrics_parse_and_match_what_the_run_did(make_server):
    server = make_server()
    server.wait_for_model("echo")
    before = samples(server)
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY)
    for _ in range(3):
        words = list(client.chat.completions.create(
            model="echo", stream=True, messages=[{"role": "user", "content": "one two three four"}]
        ))
        assert words
    client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "five six"}])
    bad = openai.OpenAI(base_url=server.base + "/v1", api_key="sk-wrong")
    try:
        bad.models.list()
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError:
        pass
    after = samples(server)

    chat = {"route": "/v1/chat/completions", "api": "openai"}
    count = "mcp_provider_request_duration_seconds_count"
    assert value(after, "mcp_provider_requests_total", status="200", **chat) - value(
        before, "mcp_provider_requests_total", status="200", **chat
    ) == 4
    assert value(after, "mcp_provider_requests_total", route="/v1/models", api="provider", status="401") == 1
    assert value(after, count, **chat) - value(before, count, **chat) == 4
    # Histograms are whole: the +Inf bucket holds every observation.
    assert value(after, "mcp_provider_request_duration_seconds_bucket", le="+Inf", **chat) == value(after, count, **chat)
    assert value(after, "mcp_provider_first_chunk_seconds_count", **chat) == 4
    # Four words in each of three streams, two in the whole answer.
    assert value(after, "mcp_provider_chunks_streamed_total") - value(before, "mcp_provider_chunks_streamed_total") >= 14
    assert value(after, "mcp_provider_auth_failures_total") == 1
    assert value(after, "mcp_provider_agent_links") == 1
    assert value(after, "mcp_provider_sessions", state="active") == 1
    assert value(after, "mcp_provider_in_flight") == 0
    # The bridge token reads it too; no credential does not.
    assert get(server, "/metrics", BRIDGE_TOKEN)[0] == 200
    assert get(server, "/metrics", "nope")[0] == 401


def test_deep_health_reports_each_configured_piece(make_server):
    server = make_server()
    server.wait_for_model("echo")
    status, body = get(server, "/health/deep")
    health = json.loads(body)
    assert (status, health["status"], health["agents"]) == (200, "ok", 1)
    assert {"name": "echo agent", "ok": True} == {k: health["checks"][0][k] for k in ("name", "ok")}

    # A hub nobody answers at: the configured link is down, so 503.
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    hubless = make_server("--no-echo-agent", "--set", f"agent_hub=ws://127.0.0.1:{port}/hub")
    status, body = get(hubless, "/health/deep")
    health = json.loads(body)
    assert (status, health["status"]) == (503, "degraded")
    hub = [c for c in health["checks"] if c["name"] == "agent hub"][0]
    assert hub == {"name": "agent hub", "ok": False, "detail": "not connected"}
    # The plain health check stays 200: the server itself is serving.
    assert get(hubless, "/health")[0] == 200


def test_control_streams_shows_an_answer_in_flight(make_server):
    server = make_server()
    agent = WsAgent(server, ["slow"], lambda invoke, a: a.send(
        {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"content": "thinking"}}
    ))
    server.wait_for_model("slow")
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=5)
    stream = client.chat.completions.create(model="slow", stream=True, messages=[{"role": "user", "content": "q"}])
    first = next(iter(stream))
    assert first.choices[0].delta.content == "thinking"
    status, body = get(server, "/control/streams", BRIDGE_TOKEN)
    streams = json.loads(body)["streams"]
    assert status == 200 and len(streams) == 1
    assert {k: streams[0][k] for k in ("route", "model", "stream", "chunks")} == {
        "route": "/v1/chat/completions", "model": "slow", "stream": True, "chunks": 1,
    }
    assert get(server, "/control/streams")[0] == 401, "the API key does not see the control API"
    stream.close()
    agent.close()


def audit_lines(server, want, timeout=5):
    """The server's audit lines, once `want(lines)` holds (the log is
    written by a thread of its own)."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.audit_path.read_text() if server.audit_path.exists() else ""
        lines = [json.loads(line) for line in text.splitlines()]
        if want(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_audit_log_records_every_kind_of_event_and_never_a_prompt_or_secret(make_server):
    server = make_server("--set", "approval=manual", env={"RUST_LOG": "debug"})
    # The echo agent too waits for approval.
    deadline = time.monotonic() + 5
    sessions = []
    while not sessions and time.monotonic() < deadline:
        sessions = json.loads(get(server, "/control/sessions", BRIDGE_TOKEN)[1])["sessions"]
    assert sessions and sessions[0]["status"] == "pending"
    echo_session = sessions[0]["session_id"]
    status, _, _ = http_request(server, "POST", "/control/approve", {"session_id": echo_session},
                             headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    assert status == 200
    server.wait_for_model("echo")

    messages = [{"role": "user", "content": SECRET_PROMPT}]
    openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY).chat.completions.create(model="echo", messages=messages)
    anthropic.Anthropic(base_url=server.base, api_key=API_KEY).messages.create(
        model="echo", max_tokens=50, messages=messages
    )
    ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"}).chat(model="echo", messages=messages)
    assert http_request(server, "GET", "/v1/models", headers={"Authorization": "Bearer sk-guessed"})[0] == 401
    assert http_request(server, "GET", "/v1/models", headers={"Host": "evil.example"})[0] == 403
    http_request(server, "POST", "/control/revoke", {"session_id": echo_session},
                 headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})

    def complete(lines):
        return any(line["event"] == "session_revoked" for line in lines)

    lines = audit_lines(server, complete)
    events = [line["event"] for line in lines]
    for kind in ("session_registered", "session_approved", "session_revoked", "auth_failure", "security_refusal"):
        assert kind in events, events
    answered = [line for line in lines if line["event"] == "request" and line.get("model") == "echo"]
    assert {line["route"] for line in answered} == {"/v1/chat/completions", "/v1/messages", "/api/chat"}
    for line in answered:
        assert line["status"] == 200 and line["session_id"] == echo_session
        assert len(line["prompt_sha256"]) == 64 and line["prompt_tokens"] > 0
        assert line["duration_ms"] >= line["first_chunk_ms"] >= 0
    # The same prompt through three APIs reaches the agent the same way.
    assert len({line["prompt_sha256"] for line in answered}) == 1
    refused = [line for line in lines if line["event"] == "auth_failure"][0]
    assert (refused["route"], refused["status"]) == ("/v1/models", 401)

    text = server.audit_path.read_text() + server.log_path.read_text()
    for secret in (SECRET_PROMPT, API_KEY, BRIDGE_TOKEN, "sk-guessed"):
        assert secret not in text
    assert server.audit_path.stat().st_mode & 0o777 == 0o600


def test_audit_log_is_rotated_by_size(make_server):
    server = make_server("--set", "audit_log_max_bytes=2000")
    server.wait_for_model("echo")
    for _ in range(40):
        assert get(server, "/v1/models")[0] == 200
    rotated = server.audit_path.with_name(server.audit_path.name + ".1")

    def files():
        return sorted((p.name, p.stat().st_size) for p in server.audit_path.parent.glob(server.audit_path.name + "*"))

    def settled():
        # The writer has caught up once the files stop changing: a
        # rotation caught between its two renames has no `.1` (or loses a
        # file between the listing and its size) for that moment.
        try:
            before = files()
            time.sleep(0.3)
            return before == files() and rotated.exists()
        except FileNotFoundError:
            return False

    assert wait_until(settled, timeout=10), files()
    for path in server.audit_path.parent.glob(server.audit_path.name + "*"):
        assert path.stat().st_size <= 2000
        for line in path.read_text().splitlines():
            json.loads(line)
