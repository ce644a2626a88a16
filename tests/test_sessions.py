"""Agent sessions on the wire: a dropped session is freed once the grace
period has passed on the runtime's clock. Who may resume a session (only
the agent holding its `resume_token`), what `registered` reports, and that
nothing an editor reads names a session are asserted in the core's
provider tests."""

import json
import time

from conftest import BRIDGE_TOKEN, http_request
from websockets.sync.client import connect as ws_connect

CONTROL = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}


def link(server):
    return ws_connect(server.agent_url, additional_headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})


def receive(ws, timeout=5):
    """The next message that is not a ping."""
    while True:
        message = json.loads(ws.recv(timeout=timeout))
        if message["type"] != "ping":
            return message


def register(server, agent_id, models, **fields):
    """A new link that sent `register`; returns (link, answer)."""
    ws = link(server)
    ws.send(json.dumps({"type": "register", "agent_id": agent_id, "models": models, **fields}))
    return ws, receive(ws)


def sessions(server):
    status, _, body = http_request(server, "GET", "/control/sessions", headers=CONTROL)
    assert status == 200
    return {s["session_id"]: s for s in json.loads(body)["sessions"]}


def wait_disconnected(server, sid):
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        s = sessions(server).get(sid)
        if s is None or not s["connected"]:
            return s
        time.sleep(0.02)
    raise AssertionError(f"{sid} still connected")


def test_a_dropped_session_is_freed_after_the_grace_period(make_server):
    s = make_server("--no-echo-agent", "--set", "session_grace_secs=1", "--set", "max_sessions=1")
    ws, reg = register(s, "owner-4", ["graced"])
    sid, token = reg["session_id"], reg["resume_token"]
    ws.close()
    assert wait_disconnected(s, sid) is not None, "resumable at first"
    deadline = time.monotonic() + 10
    while sid in sessions(s) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sid not in sessions(s), "freed after the grace period"
    ws, again = register(s, "owner-4", ["graced"], session_id=sid, resume_token=token)
    assert again["type"] == "registered" and again["session_id"] != sid, "too late: a new session"
    ws.close()
