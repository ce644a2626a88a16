"""Agent sessions on the wire: only the agent holding a session's
`resume_token` gets it back, dropped sessions are freed after the grace
period, `registered` reports the real status, and nothing an editor reads
names a session."""

import json
import re
import threading
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


def chat_answered_by(server, ws, model, text="hi"):
    """An editor's chat, answered over `ws`; returns (status, body)."""
    result = {}

    def editor():
        chat = {"model": model, "messages": [{"role": "user", "content": text}]}
        result["answer"] = http_request(server, "POST", "/v1/chat/completions", chat)

    t = threading.Thread(target=editor)
    t.start()
    invoke = receive(ws)
    assert invoke["type"] == "model_invoke"
    ws.send(json.dumps({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0,
                        "delta": {"content": "served"}, "finish_reason": "stop"}))
    t.join(timeout=10)
    status, _, body = result["answer"]
    return status, json.loads(body)


def test_only_the_owner_resumes_a_dropped_session(server):
    ws, reg = register(server, "owner-1", ["owned-1"])
    assert reg["type"] == "registered" and reg["status"] == "active"
    sid, token = reg["session_id"], reg["resume_token"]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    ws.close()
    wait_disconnected(server, sid)

    for agent_id, fields in [
        ("intruder", {"session_id": sid, "resume_token": token}),
        ("owner-1", {"session_id": sid}),
        ("owner-1", {"session_id": sid, "resume_token": "0" * 64}),
        ("owner-1", {"session_id": sid, "session_token": token}),
    ]:
        thief, answer = register(server, agent_id, ["stolen"], **fields)
        assert answer["type"] == "error" and answer["error"]["code"] == "unauthorized", answer
        thief.close()
        s = sessions(server)[sid]
        assert not s["connected"] and s["models"] == ["owned-1"], "the session is untouched"

    ws, again = register(server, "owner-1", ["owned-1"], session_id=sid, resume_token=token)
    assert again["type"] == "registered" and again["session_id"] == sid
    assert again["resume_token"] != token, "a new token on every register"
    server.wait_for_model("owned-1")
    status, body = chat_answered_by(server, ws, "owned-1")
    assert status == 200 and body["choices"][0]["message"]["content"] == "served"
    ws.close()
    wait_disconnected(server, sid)
    # The first token was spent by the resume.
    stale, answer = register(server, "owner-1", ["owned-1"], session_id=sid, resume_token=token)
    assert answer["error"]["code"] == "unauthorized"
    stale.close()


def test_a_pending_session_cannot_be_hijacked_under_manual_approval(make_server):
    s = make_server("--no-echo-agent", "--set", "approval=manual")
    ws, reg = register(s, "owner-2", ["guarded"])
    assert reg["status"] == "pending"
    sid, token = reg["session_id"], reg["resume_token"]
    ws.close()
    wait_disconnected(s, sid)
    thief, answer = register(s, "intruder", ["guarded"], session_id=sid, resume_token="guess")
    assert answer["error"]["code"] == "unauthorized"
    ws, again = register(s, "owner-2", ["guarded"], session_id=sid, resume_token=token)
    assert (again["session_id"], again["status"]) == (sid, "pending")
    status, _, _ = http_request(s, "POST", "/control/approve", {"session_id": sid}, headers=CONTROL)
    assert status == 200
    assert receive(ws) == {"type": "approved", "session_id": sid}
    s.wait_for_model("guarded")
    status, body = chat_answered_by(s, ws, "guarded")
    assert status == 200 and body["choices"][0]["message"]["content"] == "served"
    thief.close()
    ws.close()


def test_renew_hands_out_no_new_resume_token(server):
    ws, reg = register(server, "owner-3", ["renewed"])
    sid, token = reg["session_id"], reg["resume_token"]
    ws.send(json.dumps({"type": "renew", "session_id": sid, "ttl_seconds": 120}))
    renewed = receive(ws)
    assert renewed["type"] == "registered" and "resume_token" not in renewed
    ws.close()
    wait_disconnected(server, sid)
    ws, again = register(server, "owner-3", ["renewed"], session_id=sid, resume_token=token)
    assert again["session_id"] == sid
    ws.close()


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


def test_max_requests_zero_registers_suspended_and_serves_nothing(server):
    ws, reg = register(server, "owner-5", ["budgetless"], max_requests=0)
    assert reg["status"] == "suspended"
    sid = reg["session_id"]
    chat = {"model": "budgetless", "messages": [{"role": "user", "content": "hi"}]}
    for headers in [None, {"X-MCP-Session": sid}]:
        status, _, body = http_request(server, "POST", "/v1/chat/completions", chat, headers=headers)
        assert status == 503 and b"max_requests" in body
        assert sid.encode() not in body and b"sess-" not in body, body
    ws.close()


def test_editor_errors_name_no_session(make_server):
    s = make_server("--no-echo-agent", "--set", "approval=manual")
    ws, reg = register(s, "owner-6", ["waiting"])
    sid = reg["session_id"]
    chat = {"model": "waiting", "messages": [{"role": "user", "content": "hi"}]}
    for path in ["/v1/chat/completions", "/api/chat"]:
        for headers in [None, {"X-MCP-Session": sid}, {"X-MCP-Session": "sess-0000000000000000"}]:
            status, _, body = http_request(s, "POST", path, chat, headers=headers)
            assert status == 503, body
            assert sid.encode() not in body and b"sess-" not in body, body
    ws.close()


def test_a_revoked_session_is_not_resumed(server):
    ws, reg = register(server, "owner-7", ["revoked-model"])
    sid, token = reg["session_id"], reg["resume_token"]
    status, _, _ = http_request(server, "POST", "/control/revoke", {"session_id": sid}, headers=CONTROL)
    assert status == 200
    assert receive(ws) == {"type": "revoked", "session_id": sid}
    ws.close()
    deadline = time.monotonic() + 5
    while sid in sessions(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    ws, again = register(server, "owner-7", ["revoked-model"], session_id=sid, resume_token=token)
    assert again["type"] == "registered" and again["session_id"] != sid
    ws.close()
