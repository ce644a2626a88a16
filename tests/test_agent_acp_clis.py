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
from urllib.parse import urlparse

import openai
import pytest

from conftest import API_KEY, ROOT, FakeHandler, LocalHttpServer, WsAgent, wait_until
from test_agent_exec import NODE_BIN, ExecAgent, wait_gone
from test_agent_exec_clis import (
    ANSWER,
    OK,
    PIECES,
    RUN_TIMEOUT,
    FakeModel,
    gemini_chunk,
    gemini_setup,
    processes_with_home,
    qwen_setup,
)

TAP = ROOT / "tests" / "fixtures" / "acp_tap.py"
# The program each preset starts.
PROGRAMS = {"claude": "claude-agent-acp", "codex": "codex-acp", "gemini": "gemini", "qwen": "qwen", "opencode": "opencode"}


class RealAcp:
    """`agent acp --preset <preset>` as a user runs it, in `home`, with the
    setup's environment and arguments after `--`. The preset's program is
    found on PATH as a wrapper that runs the real one (tests/node) behind
    the tap."""

    def __init__(self, server, home, preset, setup, *options):
        env, extra = setup
        self.server = server
        self.home = home
        self.log = home / "tap.jsonl"
        self.log.touch()
        self.agent_log = home / "tap.jsonl.agent"
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
            *options,
            "--",
            *extra,
            env=env,
            kind="acp",
        )
        # It registers once the agent started and told its models.
        server.wait_for_model(self.model, timeout=RUN_TIMEOUT)

    def received(self, method):
        """The messages of `method` the agent received."""
        return [m for m in self.lines(self.log) if m.get("method") == method]

    def sent(self, method):
        """The messages (requests) of `method` the agent sent."""
        return [m for m in self.lines(self.agent_log) if m.get("method") == method]

    def answer(self, request, by_agent=True):
        """The answer to `request` (sent to the agent, or by it when not
        `by_agent`) by the same process, when it came."""
        log = self.agent_log if by_agent else self.log
        found = [m for m in self.lines(log) if m.get("id") == request["id"] and "method" not in m
                 and m["pid"] == request["pid"]]
        return found[0] if found else None

    @staticmethod
    def lines(path):
        text = path.read_text() if path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

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

    def start(preset, setup, *options):
        agent = RealAcp(server, tmp_path, preset, setup, *options)
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


def sessions_opened(agent):
    """The sessions conversations were answered in. The others an agent
    opens are never prompted: the probe, given the relay, that shows the
    agent lists an MCP server's tools, and the spares opened ahead."""
    return len({m["params"]["sessionId"] for m in agent.received("session/prompt")})


def one_process_one_session(agent):
    assert len(agent.received("initialize")) == 1
    assert sessions_opened(agent) == 1
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


class SlowModel(WsAgent):
    """A model on the provider itself (`slow-…`), for an agent that speaks
    one of its APIs: it streams PIECES, the last one once `gate` is set.
    What it was asked and which of those the provider cancelled (the agent
    gave up its model request) are kept."""

    def __init__(self, server):
        self.name = f"slow-{uuid.uuid4().hex[:8]}"
        self.gate = threading.Event()
        self.invokes = []
        super().__init__(server, [self.name], self._answer)
        server.wait_for_model(self.name)

    def asked(self):
        return len(self.invokes)

    def cancelled(self):
        return [m["id"] for m in list(self.received.queue) if m.get("type") == "cancel"]

    def _answer(self, invoke, agent):
        self.invokes.append(invoke["id"])
        threading.Thread(target=self._stream, args=(invoke["id"],), daemon=True).start()

    def _stream(self, id):
        for i, piece in enumerate(PIECES):
            last = i == len(PIECES) - 1
            if last:
                self.gate.wait(RUN_TIMEOUT)
                if id in self.cancelled():
                    return
            delta = {"content": piece}
            self.send({"type": "model_stream_chunk", "id": id, "chunk_index": i, "delta": delta,
                       "finish_reason": "stop" if last else None})


def leaving_cancels(agent, gate, answered, gave_up=None):
    """The editor drops its stream once the first text came (the model's
    last piece held by `gate`): the agent is told `session/cancel` for that
    session, it gives up its model request (`gave_up()`, when the model can
    tell), its one process goes on, and the next turn is answered
    (`answered(text)`)."""
    client = openai.OpenAI(base_url=agent.server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
    stream = client.chat.completions.create(
        model=agent.model, messages=[{"role": "user", "content": "Tell me about pelicans"}], stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    assert wait_until(lambda: agent.received("session/cancel"), timeout=10), "the agent was told to cancel"
    [cancel], [prompt] = agent.received("session/cancel"), agent.received("session/prompt")
    assert cancel["params"]["sessionId"] == prompt["params"]["sessionId"]
    # The agent ended the turn, as ACP has it: the prompt's answer.
    assert wait_until(lambda: agent.answer(prompt), timeout=10), "the agent never ended the cancelled turn"
    assert agent.answer(prompt)["result"]["stopReason"] == "cancelled", agent.answer(prompt)
    if gave_up is not None:
        assert wait_until(gave_up, timeout=10), "the agent still waits for its model"
    gate.set()
    text, _ = agent.stream([{"role": "user", "content": "Tell me about herons"}])
    assert answered(text), text
    assert len(agent.received("initialize")) == 1
    assert len(agent.received("session/prompt")) == 2


def killed_restarts(agent, gate, asked, answered):
    """The agent's process group is killed while its model is asked: the
    editor's turn ends in an error saying so, nothing of that process is
    left, and the next turn is answered by a new one (`answered(text)`)."""
    failed = []

    def ask():
        try:
            agent.stream([{"role": "user", "content": "Tell me about pelicans"}])
        except openai.APIError as e:
            failed.append(e)

    before, started = asked(), len(agent.received("initialize"))
    asking = threading.Thread(target=ask)
    asking.start()
    assert wait_until(lambda: asked() > before, timeout=RUN_TIMEOUT), "the agent never asked its model"
    tap = agent.received("initialize")[-1]["pid"]
    # Every process the agent started (they have its HOME; `agent acp` too).
    its = set(processes_with_home(agent.home, but={agent.agent.proc.pid}))
    os.killpg(tap, signal.SIGKILL)
    asking.join(30)
    assert failed and "killed by a signal" in str(failed[0]), failed
    assert wait_until(lambda: not its & set(processes_with_home(agent.home)), timeout=10), its
    gate.set()
    text, _ = agent.stream([{"role": "user", "content": "Tell me about herons"}])
    assert answered(text), text
    assert len(agent.received("initialize")) == started + 1


def test_an_editor_leaving_cancels_gemini_and_the_next_turn_is_answered(real_acp, tmp_path):
    gate = threading.Event()
    with FakeModel(OK, gate=gate) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        leaving_cancels(agent, gate, lambda text: text == ANSWER)


def test_a_killed_gemini_fails_its_turn_and_a_new_one_answers_next(real_acp, tmp_path):
    gate = threading.Event()
    with FakeModel(OK, gate=gate) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        killed_restarts(agent, gate, lambda: len(fake.model_requests()), lambda text: text == ANSWER)


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


# The editor APIs, each asked with its own words (a conversation each).
APIS = {"chat": "Say the word pelican", "responses": "Say the word heron",
        "messages": "Say the word ibis", "ollama": "Say the word stork"}


def on_every_api(server, model):
    """Each editor API asked `model` a streamed question (APIS), read with
    its official client (httpx for Ollama): for each, the reasoning and
    the text it got, each checked to be the same streamed and in the
    answer's final shape."""
    import anthropic
    import httpx

    got = {}
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
    reasoning, text = "", ""
    chat = [{"role": "user", "content": APIS["chat"]}]
    for chunk in client.chat.completions.create(model=model, messages=chat, stream=True):
        if chunk.choices:
            delta = chunk.choices[0].delta
            thought = getattr(delta, "reasoning_content", None) or ""
            assert not (thought and text), "reasoning after the answer's text"
            reasoning += thought
            text += delta.content or ""
    got["chat"] = (reasoning, text)

    events = list(client.responses.create(model=model, input=APIS["responses"], stream=True))
    [done] = [e.response for e in events if e.type == "response.completed"]
    thought = "".join(c.text for item in done.output if item.type == "reasoning" for c in item.content or [])
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == thought
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == done.output_text
    if thought:
        assert [item.type for item in done.output] == ["reasoning", "message"], done.output
    got["responses"] = (thought, done.output_text)

    messages = anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)
    asked = [{"role": "user", "content": APIS["messages"]}]
    with messages.messages.stream(model=model, max_tokens=200, messages=asked) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    thinking = "".join(b.thinking for b in final.content if b.type == "thinking")
    assert streamed == "".join(b.text for b in final.content if b.type == "text")
    if thinking:
        assert [b.type for b in final.content] == ["thinking", "text"], final.content
    got["messages"] = (thinking, streamed)

    with httpx.stream(
        "POST",
        server.base + "/api/chat",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": model, "messages": [{"role": "user", "content": APIS["ollama"]}]},
        timeout=RUN_TIMEOUT,
    ) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True, lines[-1]
    thinking = [line["message"].get("thinking") or "" for line in lines]
    content = [line["message"]["content"] for line in lines]
    if any(content):
        first = next(i for i, piece in enumerate(content) if piece)
        assert not any(thinking[first:]), "thinking after the answer's text"
    got["ollama"] = ("".join(thinking), "".join(content))
    return got


def test_gemini_answers_on_every_editor_api(server, real_acp, tmp_path):
    """The same warm agent answers chat/completions, Responses, Messages and
    Ollama, each in its own shape."""
    with FakeModel(OK) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        got = on_every_api(server, agent.model)
        assert {api: text for api, (_, text) in got.items()} == {api: ANSWER for api in APIS}
        assert len(agent.received("initialize")) == 1
        assert sessions_opened(agent) == 4


# What ScriptedGemini thinks before it answers, and how gemini shows it:
# the thought's bold subject on a line of its own, then its description.
THOUGHT = "**Weighing pelicans**They are large water birds."
SHOWN_THOUGHT = "**Weighing pelicans**\nThey are large water birds."


class ScriptedGemini(LocalHttpServer):
    """Gemini's `streamGenerateContent`: a request whose last content holds
    function responses is answered with text quoting them; with `call`
    (a name and arguments), a request declaring that function is answered
    with a call of it; any other with a thought (THOUGHT, a part of its
    own) then PIECES. Request bodies are kept in `requests`."""

    def __init__(self, call=None):
        self.call = call
        super().__init__(ScriptedGeminiHandler)


class ScriptedGeminiHandler(FakeHandler):
    server: ScriptedGemini

    def do_POST(self):
        from test_editor_tools import declared, function_responses

        body = self.json_body()
        with self.server.lock:
            self.server.requests.append(body)
        if not urlparse(self.path).path.endswith(":streamGenerateContent"):
            return self.send_json(200, gemini_chunk(ANSWER, finish=True))
        results = function_responses(body)
        call = self.server.call
        if results:
            chunks = [gemini_chunk("The tool said: " + " | ".join(results), finish=True)]
        elif call and call[0] in declared(body):
            chunk = gemini_chunk("", finish=True)
            chunk["candidates"][0]["content"]["parts"] = [{"functionCall": {"name": call[0], "args": call[1]}}]
            chunks = [chunk]
        else:
            thought = gemini_chunk(THOUGHT)
            thought["candidates"][0]["content"]["parts"][0]["thought"] = True
            chunks = [thought] + [gemini_chunk(p, finish=i == len(PIECES) - 1) for i, p in enumerate(PIECES)]
        self.start_sse()
        for chunk in chunks:
            self.chunk(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        self.end_sse()


def test_geminis_thoughts_are_reasoning_on_every_editor_api(server, real_acp, tmp_path):
    """gemini's model thinks before it answers: each editor API shows the
    thought in its own reasoning field (chat `reasoning_content`, a
    Responses reasoning item, a Messages thinking block, Ollama
    `thinking`), before the answer's text, in its own."""
    with ScriptedGemini() as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base))
        got = on_every_api(server, agent.model)
        assert got == {api: (SHOWN_THOUGHT, ANSWER) for api in APIS}
        assert len(agent.received("initialize")) == 1


@pytest.mark.parametrize("policy", ["never", "always"])
def test_gemini_runs_its_own_shell_tool_only_when_allowed(server, real_acp, tmp_path, policy):
    """gemini's model asks for its own shell tool (`touch` a file); gemini
    asks permission: with `--allow-own-tools never` the provider answers
    with the reject option (`cancel`) and no file appears, the model is
    told the call was refused; with `always`, the allow-once option
    (`proceed_once`) and the file is there."""
    marker = tmp_path / "touched-by-gemini"
    with ScriptedGemini(call=("run_shell_command", {"command": f"touch {marker}"})) as fake:
        setup = gemini_setup(tmp_path, fake.base)
        agent = real_acp("gemini", setup, "--allow-own-tools", policy)
        text, _ = agent.stream([{"role": "user", "content": "Touch the file"}])
        [asked] = agent.sent("session/request_permission")
        assert asked["params"]["toolCall"]["kind"] == "execute", asked
        kinds = {o["optionId"]: o["kind"] for o in asked["params"]["options"]}
        chosen = agent.answer(asked, by_agent=False)["result"]["outcome"]
        assert chosen["outcome"] == "selected", chosen
        if policy == "never":
            assert kinds[chosen["optionId"]] == "reject_once", (chosen, kinds)
            assert not marker.exists()
            assert "canceled by the user" in text, text
        else:
            assert kinds[chosen["optionId"]] == "allow_once", (chosen, kinds)
            assert marker.exists()
            assert text.startswith("The tool said:"), text


@pytest.mark.parametrize("allow", [True, False])
def test_gemini_asks_the_user_on_the_dashboard_before_its_own_shell_tool(server, real_acp, tmp_path, allow):
    """With `--allow-own-tools ask`, gemini's permission request for its
    shell tool waits on the dashboard (`GET /control/permissions`) with
    gemini's title (the command), kind and input; the user's decision
    (`POST /control/permission`) is the option gemini is answered with,
    and the command runs only when allowed."""
    from test_agent_acp import control, questions

    marker = tmp_path / "touched-by-gemini"
    command = f"touch {marker}"
    with ScriptedGemini(call=("run_shell_command", {"command": command})) as fake:
        agent = real_acp("gemini", gemini_setup(tmp_path, fake.base), "--allow-own-tools", "ask")
        answer = {}
        asking = threading.Thread(
            target=lambda: answer.update(text=agent.stream([{"role": "user", "content": "Touch the file"}])[0]),
            daemon=True,
        )
        asking.start()
        found = []
        assert wait_until(lambda: found.extend(questions(server, agent.model)) or found, timeout=RUN_TIMEOUT)
        [question] = found
        [asked] = agent.sent("session/request_permission")
        assert question["agent_id"] and question["session_id"], question
        assert question["tool"]["kind"] == "execute", question
        # gemini names the call by its command and gives no `rawInput`:
        # the input shown is its call's content, the folder it runs in.
        assert question["tool"]["title"] == command, question
        assert "rawInput" not in asked["params"]["toolCall"], asked
        assert question["tool"]["input"] == f"[current working directory {tmp_path}]", question
        assert agent.answer(asked, by_agent=False) is None and asking.is_alive(), "the turn waits for the user"
        assert not marker.exists()

        status, body = control(server, "POST", "/control/permission", {"id": question["id"], "allow": allow})
        assert (status, body) == (200, {"id": question["id"], "allow": allow})
        asking.join(RUN_TIMEOUT)
        assert not asking.is_alive()
        kinds = {o["optionId"]: o["kind"] for o in asked["params"]["options"]}
        chosen = agent.answer(asked, by_agent=False)["result"]["outcome"]
        assert chosen["outcome"] == "selected", chosen
        assert kinds[chosen["optionId"]] == ("allow_once" if allow else "reject_once"), (chosen, kinds)
        assert marker.exists() == allow
        text = answer["text"]
        assert text.startswith("The tool said:") if allow else "canceled by the user" in text, text
        assert questions(server, agent.model) == []
