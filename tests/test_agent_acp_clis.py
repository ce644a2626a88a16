"""`agent acp` with real agents from npm (tests/node), offline: Gemini CLI
(`gemini --acp`) on a fake Gemini API endpoint, and qwen-code
(`qwen --acp`) on the provider's own chat API where the echo model
answers. Each agent runs behind a tap (tests/fixtures/acp_tap.py) that logs
what the provider sends it, so a test counts processes (`initialize`),
sessions (`session/new`) and prompts. Every agent has a HOME of its own,
and none outlives the test."""

import json
import os
import signal
import sys
import threading
import time
import uuid

import openai
import pytest

from conftest import API_KEY, ROOT
from test_agent_exec import NODE_BIN, ExecAgent, wait_gone
from test_agent_exec_clis import ANSWER, OK, RUN_TIMEOUT, FakeModel, gemini_setup, qwen_setup

TAP = ROOT / "tests" / "fixtures" / "acp_tap.py"
# The program each preset starts.
PROGRAMS = {"claude": "claude-agent-acp", "codex": "codex-acp", "gemini": "gemini", "qwen": "qwen", "opencode": "opencode"}


class RealAcp:
    """`agent acp --preset <preset>` as a user runs it, in `home`, with the
    setup's environment and arguments after `--`. The preset's program is
    found on PATH as a wrapper that runs the real one (tests/node) behind
    the tap."""

    def __init__(self, server, home, preset, setup):
        env, extra = setup
        self.server = server
        self.log = home / "tap.jsonl"
        self.log.touch()
        self.model = f"{preset}-acp-{uuid.uuid4().hex[:8]}"
        program = PROGRAMS[preset]
        bin_dir = home / "bin"
        bin_dir.mkdir(exist_ok=True)
        wrapper = bin_dir / program
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {TAP} {self.log} {NODE_BIN / program} "$@"\n')
        wrapper.chmod(0o755)
        env = {**env, "PATH": f"{bin_dir}:{env.get('PATH', os.environ['PATH'])}"}
        self.agent = ExecAgent(
            server,
            "--preset",
            preset,
            "--model",
            self.model,
            "--cwd",
            str(home),
            "--timeout-secs",
            str(RUN_TIMEOUT),
            "--",
            *extra,
            env=env,
            kind="acp",
        )
        # It registers once the agent started and told its models.
        server.wait_for_model(self.model, timeout=RUN_TIMEOUT)

    def received(self, method):
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [m for m in lines if m.get("method") == method]

    def prompts(self):
        return [" ".join(b.get("text", "") for b in m["params"]["prompt"]) for m in self.received("session/prompt")]

    def stream(self, messages):
        """A streamed chat request: its text, and the seconds to its first text."""
        client = openai.OpenAI(base_url=self.server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
        started = time.monotonic()
        first, text = None, ""
        for chunk in client.chat.completions.create(model=self.model, messages=messages, stream=True):
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if piece:
                first = first or time.monotonic() - started
                text += piece
        return text, first

    def stop(self):
        self.agent.stop()
        wait_gone(str(self.log))


@pytest.fixture
def real_acp(server, tmp_path):
    started = []

    def start(preset, setup):
        agent = RealAcp(server, tmp_path, preset, setup)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def three_turns(agent, first):
    """A three-turn conversation, each answer sent back: the answers."""
    messages, answers = [{"role": "user", "content": first}], []
    for turn in range(3):
        text, _ = agent.stream(messages)
        answers.append(text)
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": f"And turn {turn + 2}?"}]
    return answers


def one_process_one_session(agent):
    assert len(agent.received("initialize")) == 1
    assert len(agent.received("session/new")) == 1
    prompts = agent.prompts()
    assert len(prompts) == 3 and prompts[1:] == ["And turn 2?", "And turn 3?"], prompts


def test_gemini_answers_a_conversation_in_one_warm_session(real_acp, tmp_path):
    with FakeModel(OK) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        assert three_turns(agent, "Tell me about pelicans") == [ANSWER] * 3
        one_process_one_session(agent)
        # The agent keeps the conversation: its last model request holds
        # the earlier turns as real contents, the new message last.
        contents = [body["contents"] for _, _, body in fake.model_requests()][-1]
        texts = [(c["role"], "".join(p.get("text", "") for p in c["parts"])) for c in contents]
        assert texts[-1] == ("user", "And turn 3?") and ("model", ANSWER) in texts, texts


def test_qwen_answers_a_conversation_in_one_warm_session(server, real_acp, tmp_path):
    agent = real_acp("qwen", qwen_setup(tmp_path, server.base + "/v1"))
    answers = three_turns(agent, "Say the word pelican")
    # The echo model repeats the last message qwen sends it: the session's
    # real next message, not a flattened transcript.
    assert answers[0].rstrip().endswith("Say the word pelican")
    assert [a.strip() for a in answers[1:]] == ["And turn 2?", "And turn 3?"]
    one_process_one_session(agent)


def test_an_editor_leaving_cancels_gemini_and_the_next_turn_is_answered(real_acp, tmp_path):
    gate = threading.Event()
    with FakeModel(OK, gate=gate) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        client = openai.OpenAI(base_url=agent.server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
        stream = client.chat.completions.create(
            model=agent.model, messages=[{"role": "user", "content": "Tell me about pelicans"}], stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        stream.close()
        deadline = time.monotonic() + 10
        while not agent.received("session/cancel") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert agent.received("session/cancel"), "the agent was told to cancel"
        gate.set()
        text, _ = agent.stream([{"role": "user", "content": "Tell me about herons"}])
        assert text == ANSWER
        assert len(agent.received("initialize")) == 1


def test_a_killed_gemini_fails_its_turn_and_a_new_one_answers_next(real_acp, tmp_path):
    gate = threading.Event()
    with FakeModel(OK, gate=gate) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        failed = []

        def ask():
            try:
                agent.stream([{"role": "user", "content": "Tell me about pelicans"}])
            except openai.APIError as e:
                failed.append(e)

        asking = threading.Thread(target=ask)
        asking.start()
        deadline = time.monotonic() + 30
        while not fake.model_requests() and time.monotonic() < deadline:
            time.sleep(0.05)
        [tap] = [m["pid"] for m in agent.received("initialize")]
        os.killpg(tap, signal.SIGKILL)
        asking.join(30)
        assert failed and "killed by a signal" in str(failed[0]), failed
        gate.set()
        text, _ = agent.stream([{"role": "user", "content": "Tell me about herons"}])
        assert text == ANSWER
        assert len(agent.received("initialize")) == 2


def tool_round_trip(server, agent):
    """The editor asks `agent` with its tool `get_weather`, whose model
    calls it for Oslo: the editor gets the call under its own name, sends
    the result, and gets the answer quoting it, from the same session's
    same prompt (the turn went on with the result)."""
    from test_editor_tools import ASK, WEATHER

    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
    first = client.chat.completions.create(model=agent.model, messages=ASK, tools=[WEATHER]).choices[0]
    assert first.finish_reason == "tool_calls", first
    [call] = first.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    history = [*ASK, first.message.model_dump(exclude_none=True)]
    history.append({"role": "tool", "tool_call_id": call.id, "content": "drizzle in Oslo, 9 C"})
    text = client.chat.completions.create(model=agent.model, messages=history, tools=[WEATHER])
    assert "drizzle in Oslo, 9 C" in text.choices[0].message.content
    assert len(agent.received("session/prompt")) == 1
    assert len(agent.received("initialize")) == 1


@pytest.mark.parametrize("cli", ["gemini", "qwen"])
def test_the_editors_tool_round_trips_and_the_same_turn_goes_on(server, real_acp, tmp_path, cli):
    """The agent's model (a fake of its API) calls the editor's tool."""
    from test_editor_tools import FakeChat, FakeGemini

    fake_model = FakeGemini if cli == "gemini" else FakeChat
    with fake_model() as fake:
        setup = gemini_setup(tmp_path, fake.base) if cli == "gemini" else qwen_setup(tmp_path, fake.base + "/v1")
        tool_round_trip(server, real_acp(cli, setup))


def test_gemini_answers_on_every_editor_api(server, real_acp, tmp_path):
    """The same warm agent answers chat/completions, Responses, Messages and
    Ollama, each in its own shape."""
    import anthropic
    import httpx

    with FakeModel(OK) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
        text, _ = agent.stream([{"role": "user", "content": "Tell me about pelicans"}])
        assert text == ANSWER
        events = list(client.responses.create(model=agent.model, input="About pelicans?", stream=True))
        [done] = [e for e in events if e.type == "response.completed"]
        assert done.response.output_text == ANSWER
        messages = anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
        with messages.messages.stream(
            model=agent.model, max_tokens=200, messages=[{"role": "user", "content": "Pelicans?"}]
        ) as stream:
            assert "".join(stream.text_stream) == ANSWER
        with httpx.stream(
            "POST",
            server.base + "/api/chat",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={"model": agent.model, "messages": [{"role": "user", "content": "Pelicans, again?"}]},
            timeout=RUN_TIMEOUT,
        ) as r:
            lines = [json.loads(line) for line in r.iter_lines() if line]
        assert lines[-1]["done"] is True
        assert "".join(line["message"]["content"] for line in lines) == ANSWER
        assert len(agent.received("initialize")) == 1
