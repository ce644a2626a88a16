"""`agent acp` against a hostile ACP agent (tests/fixtures/hostile_acp.py),
on every runtime: an agent that hands a running conversation's session id
to another conversation, one that calls an editor's tool over another
conversation's relay while that conversation waits for its editor's
results, one that sends a 10 MiB method name, and one that sends 10,000
requests at once while reading its stdin slowly. Each conversation gets
only what its own session and turn produced, and the agent process is
neither killed nor left to stall."""

import json
import sys
import threading
import time
import uuid

import openai
import pytest

from conftest import API_KEY, ROOT
from test_agent_exec import ExecAgent, wait_gone

HOSTILE = ROOT / "tests" / "fixtures" / "hostile_acp.py"
ALPHA = {
    "type": "function",
    "function": {
        "name": "alpha_tool",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Hostile:
    """`agent acp` running the hostile agent, with its log."""

    def __init__(self, server, tmp_path, *args):
        self.log = tmp_path / f"hostile-{uuid.uuid4().hex[:6]}.jsonl"
        self.log.touch()
        self.model = f"hostile-{uuid.uuid4().hex[:8]}"
        self.marker = str(self.log)
        self.agent = ExecAgent(
            server,
            "--model",
            self.model,
            "--editor-tools",
            "mcp",
            *args,
            "--",
            sys.executable,
            str(HOSTILE),
            self.marker,
            env={"HOSTILE_ACP_LOG": str(self.log)},
            kind="acp",
        )
        server.wait_for_model(self.model)
        self.client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=15)

    def received(self, method):
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [m for m in lines if m.get("method") == method]

    def wait_received(self, method, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.received(method)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received(method)) >= count, f"{method} not received"

    def release(self):
        """Ends the HOLD turn."""
        (self.log.parent / (self.log.name + ".release")).touch()

    def chat(self, text, **kwargs):
        return self.client.chat.completions.create(
            model=self.model, messages=[{"role": "user", "content": text}], **kwargs
        ).choices[0]

    def stop(self):
        self.agent.stop()
        wait_gone(self.marker)


@pytest.fixture
def hostile(server, tmp_path):
    started = []

    def start(*args):
        agent = Hostile(server, tmp_path, *args)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def test_an_agent_that_reuses_a_running_sessions_id_gets_no_conversation_of_it(hostile):
    """While D's turn runs, the agent answers every `session/new` (E's,
    and any spare's) with D's session id and sends text to it: E is
    refused, never sees D's text, and D's turn goes on to its own end."""
    agent = hostile("--timeout-secs", "8")
    d = {}
    running = threading.Thread(target=lambda: d.update(choice=agent.chat("HOLD this turn")), daemon=True)
    running.start()
    agent.wait_received("session/prompt", 1)
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            agent.chat("another conversation")
    finally:
        agent.release()
    assert "session already open" in str(refused.value)
    assert "stolen" not in str(refused.value)
    running.join(timeout=10)
    assert not running.is_alive(), "D's turn never ended"
    assert d["choice"].finish_reason == "stop"
    assert d["choice"].message.content.startswith("held ") and d["choice"].message.content.endswith("done")
    assert len(agent.received("session/prompt")) == 1, "E's prompt went to D's session"


def test_a_relay_call_with_a_waiting_conversations_secret_is_refused(hostile):
    """A's editor holds the call of `alpha_tool` its turn made; during B's
    turn the agent starts A's MCP server (saying A's secret) and calls
    `alpha_tool` with Oslo: refused at once, and A's answer after its
    result is the text the agent said after it, not the injected call."""
    agent = hostile()
    messages = [{"role": "user", "content": "ALPHA"}]
    first = agent.client.chat.completions.create(model=agent.model, messages=messages, tools=[ALPHA]).choices[0]
    assert first.finish_reason == "tool_calls"
    [call] = first.message.tool_calls
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    injected = agent.chat("INJECT")
    assert injected.message.content == "[injection refused]"

    messages += [first.message.model_dump(exclude_none=True)]
    messages += [{"role": "tool", "tool_call_id": call.id, "content": "Sunny"}]
    after = agent.client.chat.completions.create(model=agent.model, messages=messages, tools=[ALPHA]).choices[0]
    assert not after.message.tool_calls, after.message.tool_calls
    assert after.finish_reason == "stop"
    assert after.message.content == "[alpha said: Sunny]"


def test_a_huge_method_name_is_quoted_back_only_in_part(hostile):
    """A request whose method is 10 MiB long is answered "method not
    found" in a line of a few hundred bytes, not one echoing it whole."""
    agent = hostile()
    said = agent.chat("BIGMETHOD").message.content
    assert said.startswith("[answer ") and said.endswith(" bytes]"), said
    length = int(said.split()[1])
    assert 0 < length < 1000, said


def test_an_agent_that_floods_requests_and_reads_slowly_is_held_back_not_killed(hostile):
    """10,000 requests at once from an agent that reads its stdin slowly:
    every one is answered, the turn ends normally, and the same agent
    process serves the next turn (it was killed once ~128 answers waited)."""
    agent = hostile()
    choice = agent.chat("BURST")
    assert choice.message.content == "[burst 10000 answers]"
    assert choice.finish_reason == "stop"
    assert agent.chat("hello").message.content == "ok"
    assert len(agent.received("initialize")) == 1, "the agent process was restarted"
