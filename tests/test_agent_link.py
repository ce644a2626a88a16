"""The agent link and the control API, from a third-party agent's side.
What the provider makes of each message (an unreadable one, register,
renew, an agent's error) is asserted in the core's provider tests."""

import base64
import json
import os
import socket
import struct
import threading
import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from conftest import BRIDGE_TOKEN, WsAgent, http_request


def test_upgrade_needs_the_bridge_token(server):
    with pytest.raises(InvalidStatus) as e:
        ws_connect(server.agent_url)
    assert e.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as e:
        ws_connect(server.agent_url, additional_headers={"Authorization": "Bearer wrong"})
    assert e.value.response.status_code == 401


def test_websocket_pings_are_answered_while_frames_flow(server):
    """Agents' WebSocket libraries ping and drop links that do not pong; the
    pongs must not corrupt the provider's own frames written meanwhile."""
    def on_invoke(invoke, agent):
        message = {"role": "assistant", "content": "pong-safe"}
        agent.send({"type": "model_result", "id": invoke["id"], "status": "ok",
                    "result": {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}})

    agent = WsAgent(server, ["pinged"], on_invoke)
    try:
        pongs = [agent.ws.ping(str(i).encode()) for i in range(20)]
        for _ in range(5):
            status, _, body = http_request(
                server, "POST", "/v1/chat/completions",
                {"model": "pinged", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "pong-safe"
        assert all(p.wait(timeout=5) for p in pongs)
    finally:
        agent.close()


def test_whole_result_for_a_streaming_request(server):
    def whole(invoke, agent):
        agent.send(
            {
                "type": "model_result",
                "id": invoke["id"],
                "status": "ok",
                "result": {
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "all at once"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 3},
                },
            }
        )

    agent = WsAgent(server, ["whole"], whole)
    try:
        server.wait_for_model("whole")
        import openai

        from conftest import API_KEY

        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="whole", messages=[{"role": "user", "content": "x"}], stream=True, stream_options={"include_usage": True}
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "all at once"
        assert chunks[-1].usage.total_tokens == 6
    finally:
        agent.close()


def test_revoke_tells_the_agent_and_closes_its_link(server):
    agent = WsAgent(server, ["revocable"], lambda invoke, agent: None)
    server.wait_for_model("revocable")
    sid = agent.registered["session_id"]
    status, _, body = http_request(
        server, "POST", "/control/revoke", {"session_id": sid}, headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    )
    assert status == 200 and json.loads(body)["status"] == "revoked"
    assert agent.wait_for("revoked")["session_id"] == sid
    agent.thread.join(timeout=5)
    assert not agent.thread.is_alive(), "the provider closed the link"
    server.wait_for_model("revocable", present=False)
    status, _, _ = http_request(
        server, "POST", "/control/revoke", {"session_id": sid}, headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    )
    assert status == 404


def test_an_agent_gone_silent_is_closed_and_what_waits_on_it_fails_at_once(make_server):
    """An agent whose machine slept or whose network went away sends no
    close and no reset. Once three pings went unanswered the provider closes
    its link: what waited on it fails then, not at `request_timeout_secs`
    (600 s), and the model is served by the agents still there. An agent
    that answers its pings stays."""
    server = make_server("--no-echo-agent", "--set", "agent_ping_secs=1")

    def whole(invoke, agent):
        agent.send({"type": "model_result", "id": invoke["id"], "status": "ok",
                    "result": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "here"},
                                            "finish_reason": "stop"}]}})

    mute = WsAgent(server, ["m"], lambda invoke, agent: None, answers_pings=False)
    try:
        server.wait_for_model("m")
        asked = time.monotonic()
        status, _, body = http_request(
            server, "POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        waited = time.monotonic() - asked
        assert status == 502 and "disconnected" in json.loads(body)["error"]["message"], body
        assert 1 < waited < 8, waited
        assert mute.wait_for("model_invoke")
        mute.thread.join(timeout=5)
        assert not mute.thread.is_alive(), "the provider closed the link"
    finally:
        mute.close()

    alive = WsAgent(server, ["m"], whole)
    try:
        server.wait_for_model("m")
        time.sleep(5)
        assert alive.thread.is_alive(), "a link that answers its pings stays"
        status, _, body = http_request(
            server, "POST", "/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "here", body
    finally:
        alive.close()


def test_dial_out_to_an_agent_hub_and_reconnect(make_server):
    """The provider dials a hub (here a websockets server playing the agent)
    and serves its models; when the hub drops the link it dials again."""
    import threading

    from websockets.sync.server import serve as ws_serve

    connections = []

    def hub(ws):
        connections.append(ws.request.headers.get("Authorization"))
        ws.send(json.dumps({"type": "register", "agent_id": "hub", "models": ["hubbed"]}))
        for text in ws:
            message = json.loads(text)
            if message["type"] == "model_invoke":
                content = message["payload"]["messages"][-1]["content"]
                ws.send(json.dumps({"type": "model_stream_chunk", "id": message["id"], "chunk_index": 0,
                                    "delta": {"content": content.upper()}, "finish_reason": "stop"}))
                if content == "hang up":
                    return

    with ws_serve(hub, "127.0.0.1", 0) as hub_server:
        threading.Thread(target=hub_server.serve_forever, daemon=True).start()
        port = hub_server.socket.getsockname()[1]
        s = make_server("--no-echo-agent", "--set", f"agent_hub=ws://127.0.0.1:{port}/")
        s.wait_for_model("hubbed")
        chat = {"model": "hubbed", "messages": [{"role": "user", "content": "hello hub"}]}
        status, _, body = http_request(s, "POST", "/v1/chat/completions", chat)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "HELLO HUB"
        hang_up = {"model": "hubbed", "messages": [{"role": "user", "content": "hang up"}]}
        assert http_request(s, "POST", "/v1/chat/completions", hang_up)[0] == 200
        import time

        deadline = time.monotonic() + 10
        while len(connections) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert connections == [f"Bearer {BRIDGE_TOKEN}"] * 2
        s.wait_for_model("hubbed")
        status, _, body = http_request(s, "POST", "/v1/chat/completions", chat)
        assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "HELLO HUB"
        hub_server.shutdown()


def _masked_frame(opcode: int, payload: bytes) -> bytes:
    """One client-to-server WebSocket frame (RFC 6455: clients mask)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _server_texts(received: bytes):
    """The JSON text frames in what the server sent so far, after its
    response head (server frames are not masked)."""
    at = received.find(b"\r\n\r\n")
    data = received[at + 4 :] if at >= 0 else b""
    while len(data) >= 2:
        length, at = data[1] & 0x7F, 2
        if length == 126:
            if len(data) < 4:
                return
            length, at = struct.unpack("!H", data[2:4])[0], 4
        elif length == 127:
            if len(data) < 10:
                return
            length, at = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < at + length:
            return
        if data[0] & 0x0F == 1:
            yield json.loads(data[at : at + length])
        data = data[at + length :]


def test_frames_that_arrive_with_the_close_are_all_answered(server):
    """An agent that writes its whole answer and its close in one go: every
    frame read before the close still reaches the editor, however many came
    in the same read."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /v1/agent HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {BRIDGE_TOKEN}\r\n\r\n"
        ).encode()
    )
    received = b""
    register = {"type": "register", "agent_id": "burst", "models": ["burst"], "allowed_scopes": ["inference"]}
    sock.sendall(_masked_frame(1, json.dumps(register).encode()))
    invoke_id = None
    editor = {}

    def ask():
        status, _, body = http_request(
            server, "POST", "/v1/chat/completions", {"model": "burst", "messages": [{"role": "user", "content": "x"}]}
        )
        editor["status"], editor["body"] = status, body

    server.wait_for_model("burst")
    asker = threading.Thread(target=ask, daemon=True)
    asker.start()
    deadline = time.monotonic() + 10
    while invoke_id is None and time.monotonic() < deadline:
        received += sock.recv(65536)
        for message in _server_texts(received):
            if message.get("type") == "model_invoke":
                invoke_id = message["id"]
    assert invoke_id, received[-500:]
    words = [f"w{i} " for i in range(300)]
    burst = b"".join(
        _masked_frame(
            1,
            json.dumps(
                {
                    "type": "model_stream_chunk",
                    "id": invoke_id,
                    "chunk_index": i,
                    "delta": {"content": word},
                    "finish_reason": "stop" if i == len(words) - 1 else None,
                }
            ).encode(),
        )
        for i, word in enumerate(words)
    )
    sock.sendall(burst + _masked_frame(8, struct.pack("!H", 1000)))
    asker.join(timeout=10)
    sock.close()
    assert editor.get("status") == 200, editor
    assert json.loads(editor["body"])["choices"][0]["message"]["content"] == "".join(words)
