"""The bridge's own API for web clients and scripts, on both runtimes,
against the real server-everything: REST sessions and calls, a session's
event stream, the WebSocket envelope (with the `websockets` client),
servers added and removed at run time (bridge token only), figures, and
the test page driven in headless Chromium."""

import json
import time
import socket
import urllib.request
import uuid

import pytest
from playwright.sync_api import expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect as ws_connect

from conftest import API_KEY, BRIDGE_TOKEN, CHROMIUM
from test_bridge import EVERYTHING, bridge_server, everything, marked, post, wait_until
from test_dashboard import CHROMIUM_ARGS, SCREENSHOTS, TIMEOUT_MS


def call(server, method, path, body=None, token=API_KEY):
    return post(server, path, body, {"Authorization": f"Bearer {token}"}, method=method)


def test_rest_sessions_calls_and_lists(make_server):
    server = bridge_server(make_server, everything())

    status, _, created = call(server, "POST", "/sessions", {"server": "everything", "client_id": "script"})
    assert status == 201 and created["server"] == "everything"
    assert created["server_info"]["name"] == "mcp-servers/everything" and "tools" in created["capabilities"]
    session = created["session_id"]
    status, _, info = call(server, "GET", f"/sessions/{session}")
    assert status == 200 and info["transport"] == "rest" and info["server"] == "everything"

    status, _, tools = call(server, "POST", "/tools/discover", {"session_id": session})
    assert status == 200 and "echo" in [t["name"] for t in tools["tools"]]
    status, _, result = call(server, "POST", "/tools/call", {"session_id": session, "tool": "echo", "params": {"message": "rest"}})
    assert status == 200 and result["content"][0]["text"] == "Echo: rest"
    # Without a session (one server bridged: it is the one).
    status, _, result = call(server, "POST", "/tools/call", {"name": "get-sum", "arguments": {"a": 1, "b": 2}})
    assert status == 200 and "3" in result["content"][0]["text"]
    for path, key in [("/tools", "tools"), ("/prompts", "prompts"), ("/resources?server=everything", "resources")]:
        status, _, listed = call(server, "GET", path)
        assert status == 200 and listed[key], (path, listed)
    # A tool's own failure is its result; a JSON-RPC error is a 502 carrying it.
    status, _, failed = call(server, "POST", "/tools/call", {"session_id": session, "tool": "no-such-tool"})
    assert status == 200 and failed["isError"] is True, failed
    status, _, failed = call(server, "POST", "/tools/call", {"session_id": session, "params": {"message": 1}})
    assert status == 502 and "expected string" in failed["error"]["message"], failed

    status, _, stats = call(server, "GET", "/stats")
    [served] = stats["servers"]
    assert served["name"] == "everything" and served["children"][0]["state"] == "running"
    assert stats["sessions"] == 1
    assert call(server, "DELETE", f"/sessions/{session}")[0] == 200
    assert call(server, "GET", f"/sessions/{session}")[0] == 404
    assert call(server, "POST", "/tools/discover", {"session_id": session})[0] == 404
    assert call(server, "GET", "/stats", token="wrong")[0] == 401


def read_events(sock, until, limit=64 * 1024):
    """Reads a raw HTTP event stream until `until` is in it."""
    seen = b""
    while until.encode() not in seen and len(seen) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def test_a_session_s_events_stream_its_notifications(make_server):
    server = bridge_server(make_server, everything())
    _, _, created = call(server, "POST", "/sessions", {})
    session = created["session_id"]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.sendall(
        f"GET /events/{session} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
    )
    head = read_events(sock, "event: connected")
    assert "text/event-stream" in head and f'"session_id":"{session}"' in head
    # server-everything logs to its clients once asked to: a notification.
    status, _, _ = call(server, "POST", "/tools/call", {"session_id": session, "tool": "toggle-simulated-logging"})
    assert status == 200
    assert "event: notification" in read_events(sock, "notifications/message")
    sock.close()


def test_the_websocket_envelope(make_server):
    server = bridge_server(make_server, everything())
    url = f"ws://127.0.0.1:{server.port}/ws"
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}, open_timeout=10) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        assert json.loads(ws.recv(10))["type"] == "error"
        ws.send(json.dumps({"type": "create_session", "server": "everything"}))
        created = json.loads(ws.recv(10))
        assert created["type"] == "session_created" and created["server_info"]["name"] == "mcp-servers/everything"
        session = created["session_id"]
        ws.send(json.dumps([
            {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "one"}}},
            {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "two"}}},
        ]))
        answers = {}
        while len(answers) < 2:
            frame = json.loads(ws.recv(10))
            if frame["type"] == "response":
                answers[frame["data"]["id"]] = frame["data"]["result"]["content"][0]["text"]
        assert answers == {"a": "Echo: one", "b": "Echo: two"}
        ws.send("not json")
        assert json.loads(ws.recv(10))["type"] == "error"
    # The session outlives its socket: another one attaches to it.
    with ws_connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "attach_session", "session_id": session}))
        assert json.loads(ws.recv(10)) == {"type": "session_attached", "session_id": session, "server": "everything"}
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
        assert json.loads(ws.recv(10)) == {"type": "response", "data": {"jsonrpc": "2.0", "id": 3, "result": {}}}
    # Without the key, no socket.
    try:
        ws_connect(url, open_timeout=10)
        raise AssertionError("a WebSocket opened without the API key")
    except Exception as refused:  # noqa: BLE001 - any refusal will do
        assert "401" in str(refused), refused


def bridge_socket(server):
    url = f"ws://127.0.0.1:{server.port}/ws"
    return ws_connect(url, additional_headers={"Authorization": f"Bearer {API_KEY}"}, open_timeout=10)


def answers_on(ws, count):
    """The next `count` answers on `ws`, by their id; notifications skipped."""
    answers = {}
    while len(answers) < count:
        frame = json.loads(ws.recv(10))
        if frame["type"] == "response":
            answers[frame["data"]["id"]] = frame["data"]
    return answers


def test_one_session_has_many_views_each_socket_getting_its_own_answers(make_server):
    """A session is one, whichever way it was made: a REST session is
    attached from two WebSockets at once and followed on /events; both
    sockets call with the same JSON-RPC id at the same time and each gets
    its own answer; a notification reaches every view."""
    server = bridge_server(make_server, everything())
    status, _, created = call(server, "POST", "/sessions", {"server": "everything"})
    assert status == 201
    session = created["session_id"]
    events = urllib.request.urlopen(urllib.request.Request(
        f"{server.base}/events/{session}", headers={"Authorization": f"Bearer {API_KEY}"}), timeout=10)
    assert b"event: connected" in events.readline() + events.readline()
    with bridge_socket(server) as one, bridge_socket(server) as two:
        for ws in (one, two):
            ws.send(json.dumps({"type": "attach_session", "session_id": session}))
            assert json.loads(ws.recv(10))["type"] == "session_attached"
        for ws, word in ((one, "first"), (two, "second")):
            ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                "params": {"name": "echo", "arguments": {"message": word}}}))
        assert answers_on(one, 1)[1]["result"]["content"][0]["text"] == "Echo: first"
        assert answers_on(two, 1)[1]["result"]["content"][0]["text"] == "Echo: second"
        # A notification of the session reaches both sockets and /events.
        one.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                             "params": {"name": "toggle-simulated-logging", "arguments": {}}}))
        assert 2 in answers_on(one, 1)
        for ws in (one, two):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                frame = json.loads(ws.recv(10))
                if frame["type"] == "notification":
                    break
            assert frame["type"] == "notification" and frame["data"]["method"] == "notifications/message", frame
        seen = b""
        deadline = time.monotonic() + 10
        while b"notifications/message" not in seen and time.monotonic() < deadline:
            seen += events.readline()
        assert b"event: notification" in seen and b"notifications/message" in seen, seen
    events.close()
    # The session is the REST API's too: a call through it still answers.
    status, _, result = call(server, "POST", "/tools/call", {"session_id": session, "tool": "echo", "params": {"message": "rest"}})
    assert status == 200 and result["content"][0]["text"] == "Echo: rest"


def test_the_listings_without_a_server_are_every_servers_each_entry_tagged(make_server):
    server = bridge_server(make_server, everything(), everything("again"), "broken=false")
    # Both servers started first: a listing of all waits only so long for
    # a slow start, which a loaded machine can exceed.
    for name in ("everything", "again"):
        assert call(server, "GET", f"/tools?server={name}")[0] == 200
    status, _, listed = call(server, "GET", "/tools")
    assert status == 200, listed
    by_server = {}
    for tool in listed["tools"]:
        by_server.setdefault(tool["server"], set()).add(tool["name"])
    assert set(by_server) == {"everything", "again"}, by_server
    assert "echo" in by_server["everything"] and by_server["everything"] == by_server["again"]
    # The server that cannot start costs the others nothing: it is named.
    assert [u["server"] for u in listed["unavailable"]] == ["broken"], listed["unavailable"]
    status, _, prompts = call(server, "GET", "/prompts")
    assert status == 200 and {p["server"] for p in prompts["prompts"]} == {"everything", "again"}
    # One server still by name, untagged, as before.
    status, _, one = call(server, "GET", "/tools?server=again")
    assert status == 200 and "server" not in one["tools"][0]


def test_servers_are_added_and_removed_at_run_time_with_the_bridge_token(make_server):
    mark = uuid.uuid4().hex
    server = make_server(env={"BRIDGE_TEST_MARK": mark})
    added = {"name": "later", "command": str(EVERYTHING), "args": ["stdio"]}
    # The API key may use servers, not run commands.
    assert call(server, "POST", "/integrations", added)[0] == 401
    status, _, created = call(server, "POST", "/integrations", added, token=BRIDGE_TOKEN)
    assert status == 201 and created["url"] == "/mcp/later"
    assert call(server, "POST", "/integrations", added, token=BRIDGE_TOKEN)[0] == 409
    status, _, listed = call(server, "GET", "/integrations", token=BRIDGE_TOKEN)
    assert [i["name"] for i in listed["integrations"]] == ["later"]
    status, _, result = call(server, "POST", "/tools/call", {"server": "later", "tool": "echo", "params": {"message": "added"}})
    assert status == 200 and result["content"][0]["text"] == "Echo: added"
    assert len(marked(mark, but={server.proc.pid})) == 1
    assert call(server, "DELETE", "/integrations/later", token=BRIDGE_TOKEN)[0] == 200
    assert wait_until(lambda: not marked(mark, but={server.proc.pid})), "the removed server's child still runs"
    assert call(server, "POST", "/tools/call", {"server": "later", "tool": "echo"})[0] == 404
    bad = {"name": "a/b", "command": "cat"}
    assert call(server, "POST", "/integrations", bad, token=BRIDGE_TOKEN)[0] == 400


@pytest.mark.browser
def test_the_test_page_lists_and_calls_a_tool_in_a_browser(make_server, runtime):
    server = bridge_server(make_server, everything())
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for transport in ("ws", "sse"):
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(f"{server.base}/static/test_client.html")
                expect(page.locator("header a[href='/']")).to_have_text("dashboard")
                expect(page.locator("main")).to_contain_text("MCP_PROVIDER_API_KEY")
                # Entering the key lists the servers: no button to press first.
                page.fill("#key", API_KEY)
                expect(page.locator("#server option")).to_have_text(["everything"])
                page.check(f"#transport-{transport}")
                page.click("#connect")
                expect(page.locator("#status")).to_contain_text("Connected to everything")
                page.click("#tools button[data-tool=echo]")
                page.fill("[name=arg-message]", f"from the page over {transport}")
                page.click("#call")
                expect(page.locator("#result")).to_have_text(f"Echo: from the page over {transport}")
                page.screenshot(path=str(SCREENSHOTS / f"bridge-test-client-{runtime}-{transport}.png"), full_page=True)
                page.close()
        finally:
            browser.close()


def metrics(server):
    """/metrics as the Prometheus parser reads it: (name, labels) → value."""
    request = urllib.request.Request(server.base + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_bridge_s_figures_reach_metrics_and_deep_health(make_server):
    """The real Prometheus parser reads the bridge's families; a server
    that cannot start fails after its restarts and makes /health/deep 503."""
    server = bridge_server(make_server, everything(), "broken=false")
    for i in range(3):
        status, _, _ = call(server, "POST", "/tools/call", {"server": "everything", "tool": "echo", "params": {"message": str(i)}})
        assert status == 200
    status, _, failed = call(server, "POST", "/tools/call", {"server": "broken", "tool": "echo"})
    assert status == 502, failed

    def settled():
        m = metrics(server)
        return (
            m.get(("mcp_provider_bridge_calls_total", (("server", "everything"),))) == 3
            and m.get(("mcp_provider_bridge_children", (("server", "everything"), ("state", "running")))) == 1
            and m.get(("mcp_provider_bridge_children", (("server", "broken"), ("state", "failed")))) == 1
        )

    assert wait_until(settled, timeout=20), metrics(server)
    m = metrics(server)
    assert m[("mcp_provider_bridge_restarts_total", (("server", "broken"),))] >= 4
    status, _, health = call(server, "GET", "/health/deep")
    assert status == 503 and health["status"] == "degraded"
    checks = {c["name"]: c for c in health["checks"]}
    assert checks["MCP server everything"]["ok"] is True
    assert checks["MCP server broken"]["ok"] is False and "failed" in checks["MCP server broken"]["detail"]
