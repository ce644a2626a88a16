"""What an agent link can do to editors and to other agents, each hole
closed and kept closed: every test here failed before its fix."""

import json
import time

import ollama
import openai
import pytest
from websockets.sync.client import connect as ws_connect

from conftest import API_KEY, BRIDGE_TOKEN, WsAgent, http_request, wait_until

# Long enough that an editor left waiting for the timeout is told apart
# from one answered at once; short enough to bound each test.
TIMEOUT_SECS = 15
AT_ONCE_SECS = 5


class ShakyAgent(WsAgent):
    """An agent that answers a request for `bad` with one good chunk, then
    a chunk that cannot be read (a tool call that is not an object), and
    every other request well. The ids it was asked `bad` under are kept."""

    def __init__(self, server):
        self.bad = []
        super().__init__(server, ["shaky"], self._answer)
        server.wait_for_model("shaky")

    def _answer(self, invoke, agent):
        def chunk(index, delta, finish=None):
            agent.send({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": index, "delta": delta, "finish_reason": finish})

        if invoke["payload"]["messages"][-1]["content"] == "bad":
            self.bad.append(invoke["id"])
            chunk(0, {"content": "Hel"})
            chunk(1, {"tool_calls": [1]})
        else:
            chunk(0, {"content": "fine"}, "stop")


def shaky_server(make_server):
    """A server without the echo agent whose timeouts would end a request
    left waiting after TIMEOUT_SECS."""
    timeouts = [f"{key}={TIMEOUT_SECS}" for key in ("stream_idle_timeout_secs", "request_timeout_secs")]
    return make_server("--no-echo-agent", "--set", timeouts[0], "--set", timeouts[1])


def ask(client, content, stream):
    """The answer's text; an error the server sent raises."""
    answer = client.chat.completions.create(model="shaky", messages=[{"role": "user", "content": content}], stream=stream)
    if not stream:
        return answer.choices[0].message.content
    return "".join(choice.delta.content or "" for c in answer for choice in c.choices)


def assert_cancelled_and_link_serves_on(agent, client, stream):
    error = agent.wait_for("error")
    assert error["error"]["code"] == "invalid_message"
    cancel = agent.wait_for("cancel")
    assert cancel["id"] == agent.bad[-1]
    assert ask(client, "good", stream) == "fine"


@pytest.mark.parametrize("stream", [True, False])
def test_an_unreadable_chunk_ends_the_editors_request_at_once_and_cancels_it(make_server, stream):
    server = shaky_server(make_server)
    agent = ShakyAgent(server)
    try:
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT_SECS + 10)
        started = time.monotonic()
        with pytest.raises(openai.APIError) as failed:
            ask(client, "bad", stream)
        took = time.monotonic() - started
        assert took < AT_ONCE_SECS, f"the editor waited {took:.1f}s for an answer that had already failed"
        assert "cannot be read" in str(failed.value), failed.value
        if not stream:
            assert failed.value.status_code == 502
        assert_cancelled_and_link_serves_on(agent, client, stream)
    finally:
        agent.close()


def test_an_unreadable_chunk_ends_an_ollama_stream_with_an_error_line(make_server):
    server = shaky_server(make_server)
    agent = ShakyAgent(server)
    try:
        editor = ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=TIMEOUT_SECS + 10)
        started = time.monotonic()
        parts = []
        with pytest.raises(ollama.ResponseError) as failed:
            for part in editor.chat(model="shaky", messages=[{"role": "user", "content": "bad"}], stream=True):
                parts.append(part.message.content)
        took = time.monotonic() - started
        assert took < AT_ONCE_SECS, f"the editor waited {took:.1f}s for an answer that had already failed"
        assert parts == ["Hel"]
        assert "cannot be read" in failed.value.error, failed.value
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT_SECS + 10)
        assert_cancelled_and_link_serves_on(agent, client, True)
    finally:
        agent.close()


CAP = 4


def register(server, agent_id, resume=None):
    """A new agent link and the answer to its `register` (resuming
    `resume` = (session id, resume token) if given)."""
    ws = ws_connect(server.agent_url, additional_headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    message = {"type": "register", "agent_id": agent_id, "models": ["crowd"]}
    if resume:
        message.update(session_id=resume[0], resume_token=resume[1])
    ws.send(json.dumps(message))
    return ws, json.loads(ws.recv(timeout=5))


def connected(server):
    """Session id → whether an agent link holds it, as the control API says."""
    status, _, body = http_request(server, "GET", "/control/sessions", headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    assert status == 200, body
    return {s["session_id"]: s["connected"] for s in json.loads(body)["sessions"]}


def register_and_drop(server, agent_id):
    """(session id, resume token) of a session whose agent registered and
    closed its link, once the server has seen the link close."""
    ws, answer = register(server, agent_id)
    assert answer["type"] == "registered", answer
    ws.close()
    session = answer["session_id"]
    assert wait_until(lambda: connected(server).get(session) is False, timeout=5), connected(server)
    return session, answer["resume_token"]


def answer_served(invoke, agent):
    result = {"choices": [{"message": {"content": "served"}, "finish_reason": "stop"}]}
    agent.send({"type": "model_result", "id": invoke["id"], "status": "ok", "result": result})


def test_agents_that_dropped_their_links_do_not_lock_new_agents_out(make_server):
    server = make_server("--no-echo-agent", "--set", f"max_sessions={CAP}")
    dropped = [register_and_drop(server, f"gone-{i}") for i in range(CAP + 3)]
    sessions = connected(server)
    assert len(sessions) == CAP
    # The ones dropped first made room for the later ones.
    assert set(sessions) == {session for session, _ in dropped[-CAP:]}

    # A new agent registers and serves, well within the grace period.
    agent = WsAgent(server, ["crowd"], answer_served)
    links = []
    try:
        assert agent.registered["type"] == "registered", agent.registered
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=10)
        answer = client.chat.completions.create(model="crowd", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "served"

        # An agent whose session made room comes back: it gets a new one.
        ws, again = register(server, "gone-0", resume=dropped[0])
        links.append(ws)
        assert again["type"] == "registered" and again["session_id"] != dropped[0][0], again
        # Two places hold live links; filling the others takes the last
        # dropped sessions. Then, and only then, a new agent is refused.
        for i in range(CAP - 2):
            ws, answer = register(server, f"here-{i}")
            links.append(ws)
            assert answer["type"] == "registered", answer
        sessions = connected(server)
        assert len(sessions) == CAP and all(sessions.values()), sessions
        ws, refused = register(server, "late")
        links.append(ws)
        assert refused["type"] == "error" and refused["error"]["code"] == "too_many_sessions", refused
    finally:
        agent.close()
        for ws in links:
            ws.close()
