"""`agent acp` with three more real agents from npm (tests/node), offline,
each answered by the provider's own echo model:

- Claude Code through @zed-industries/claude-agent-acp, on the Messages
  API (as `agent exec --preset claude` is);
- codex through @zed-industries/codex-acp, on the Responses API at /v1;
- opencode (`opencode acp`), on the chat API at /v1 as an
  OpenAI-compatible provider.

Each runs behind the tap of tests/test_agent_acp_clis.py, with a HOME of
its own; telemetry, update checks and downloads are off, so nothing leaves
127.0.0.1. The echo model repeats the last message an agent sends it: a
later turn answered with exactly the editor's new message shows that the
agent was sent only that message, in the session that already held the
conversation."""

import json
import uuid

import pytest

from conftest import API_KEY, FakeHandler, LocalHttpServer, claude_code_env, wait_until
from test_agent_acp_clis import (  # noqa: F401
    APIS,
    SlowModel,
    killed_restarts,
    leaving_cancels,
    on_every_api,
    real_acp,
    sessions_opened,
    three_turns,
    tool_round_trip,
)
from test_agent_exec import CLI_TELEMETRY_OFF, NODE_BIN
from test_agent_exec_clis import ANSWER, PIECES, cli_env, processes_with_home, qwen_setup, write_settings


def claude_setup(home, base_url, model="echo"):
    """claude-agent-acp on the Messages API at `base_url`, model `model`
    (its side requests on `echo`):
    the environment and the arguments after `--`. It runs the Claude Code of
    @anthropic-ai/claude-code (CLAUDE_CODE_EXECUTABLE): the one the Claude
    Agent SDK bundles (2.1.83) fetches a plugin blocklist from
    raw.githubusercontent.com at every start. The agent picks its
    "default" model for each session, which the SONNET/OPUS names map to
    `model`. As root it refuses every session unless IS_SANDBOX is set."""
    env = cli_env(
        home,
        **{**claude_code_env(base_url, API_KEY), "ANTHROPIC_MODEL": model},
        ANTHROPIC_DEFAULT_SONNET_MODEL=model,
        ANTHROPIC_DEFAULT_OPUS_MODEL=model,
        CLAUDE_CODE_EXECUTABLE=str(NODE_BIN / "claude"),
        IS_SANDBOX="1",
    )
    return env, []


def codex_catalog(model):
    """What codex knows of `model` (its catalog's required fields): without
    an entry codex says "Model metadata for `echo` not found" as the first
    text of every answer."""
    entry = {
        "slug": model,
        "display_name": model,
        "base_instructions": "You are a coding agent.",
        "supported_reasoning_levels": [],
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 0,
        "supports_reasoning_summaries": False,
        "support_verbosity": False,
        "truncation_policy": {"mode": "bytes", "limit": 10000},
        "supports_parallel_tool_calls": False,
        "context_window": 272000,
        "experimental_supported_tools": [],
    }
    return {"models": [entry]}


def codex_setup(home, base_url, model="echo"):
    """codex-acp on the Responses API at `base_url` (ending in /v1), model
    `model`, its CODEX_HOME in `home`: the environment and the arguments after `--`."""
    codex_home = home / ".codex"
    codex_home.mkdir(exist_ok=True)
    catalog = home / "codex-models.json"
    catalog.write_text(json.dumps(codex_catalog(model)))
    provider = f'{{name="local",base_url="{base_url}",env_key="LOCAL_KEY",wire_api="responses"}}'
    env = cli_env(home, CODEX_HOME=str(codex_home), LOCAL_KEY=API_KEY, **CLI_TELEMETRY_OFF)
    options = [
        "model_provider=local",
        f"model_providers.local={provider}",
        f"model={model}",
        f'model_catalog_json="{catalog}"',
        "analytics.enabled=false",
        "check_for_update_on_startup=false",
    ]
    return env, [a for option in options for a in ("-c", option)]


def opencode_setup(home, base_url, model="echo"):
    """opencode on an OpenAI-compatible chat API at `base_url` (ending in
    /v1), model `local/<model>` (its side requests, such as a session's
    title, on `local/echo`), its config, data and cache in `home`: the
    environment and the arguments after `--`. Models list, updates, sharing, LSP
    downloads and default plugins are off. opencode also installs
    @opencode-ai/plugin into its config folder from npm's registry at each
    start; npm's offline mode (its settings come from npm_config_*) makes
    that fail at once, without a request, and opencode goes on."""
    config = home / ".config"
    write_settings(
        config / "opencode" / "opencode.json",
        {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "provider": {
                "local": {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": "MCP Local Provider",
                    "options": {"baseURL": base_url, "apiKey": API_KEY},
                    "models": {"echo": {"name": "echo"}, model: {"name": model}},
                }
            },
            "model": f"local/{model}",
            "small_model": "local/echo",
        },
    )
    env = cli_env(
        home,
        XDG_CONFIG_HOME=str(config),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_SHARE="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_DISABLE_DEFAULT_PLUGINS="1",
        OPENCODE_DISABLE_CLAUDE_CODE="1",
        OPENCODE_DISABLE_EXTERNAL_SKILLS="1",
        npm_config_offline="true",
        npm_config_registry="http://127.0.0.1:9/",
    )
    return env, []


def start(real_acp, name, setup):  # noqa: F811
    return real_acp(name, setup)


def one_process_one_session(agent):
    """One agent process and one session served the three turns, and the
    later prompts held only the editor's new message."""
    assert len(agent.received("initialize")) == 1
    assert sessions_opened(agent) == 1
    prompts = agent.prompts()
    assert len(prompts) == 3 and prompts[0].endswith("Say the word pelican"), prompts
    assert prompts[1:] == ["And turn 2?", "And turn 3?"], prompts


def nothing_left(agent, home):
    """Stopped, the agent leaves no process behind (they all have its HOME).
    A process killed with its group takes a moment to be torn down (a large
    one on a busy machine): waited for, as `no_cli_left` does."""
    agent.stop()
    wait_until(lambda: not processes_with_home(home), timeout=10)
    assert processes_with_home(home) == []


def test_claude_answers_a_conversation_in_one_warm_session(server, real_acp, tmp_path):  # noqa: F811
    agent = start(real_acp, "claude", claude_setup(tmp_path, server.base))
    answers = three_turns(agent, "Say the word pelican")
    # Claude's first message to its model has its own reminders before the
    # user's words; the next ones are the new message alone.
    assert answers[0].endswith("Say the word pelican") and answers[0].count("pelican") == 1, answers[0][-300:]
    assert answers[1:] == ["And turn 2?", "And turn 3?"], answers
    one_process_one_session(agent)
    # Claude Code kept the one session, its transcript in its HOME.
    sessions = list((tmp_path / ".claude" / "projects").rglob("*.jsonl"))
    assert len(sessions) == 1, sessions
    nothing_left(agent, tmp_path)


def test_codex_answers_a_conversation_in_one_warm_session(server, real_acp, tmp_path):  # noqa: F811
    agent = start(real_acp, "codex", codex_setup(tmp_path, server.base + "/v1"))
    answers = three_turns(agent, "Say the word pelican")
    assert answers == ["Say the word pelican", "And turn 2?", "And turn 3?"], answers
    one_process_one_session(agent)
    # One codex thread: one transcript in its sessions.
    threads = list((tmp_path / ".codex" / "sessions").rglob("rollout-*.jsonl"))
    assert len(threads) == 1, threads
    nothing_left(agent, tmp_path)


def test_opencode_answers_a_conversation_in_one_warm_session(server, real_acp, tmp_path):  # noqa: F811
    agent = start(real_acp, "opencode", opencode_setup(tmp_path, server.base + "/v1"))
    answers = three_turns(agent, "Say the word pelican")
    assert answers == ["Say the word pelican", "And turn 2?", "And turn 3?"], answers
    one_process_one_session(agent)
    nothing_left(agent, tmp_path)


@pytest.mark.parametrize("name", ["claude", "codex", "opencode"])
def test_a_new_conversation_gets_a_session_of_its_own(server, real_acp, tmp_path, name):  # noqa: F811
    """Two editor chats on one agent process: two sessions, each answered
    with its own words."""
    setups = {
        "claude": lambda: claude_setup(tmp_path, server.base),
        "codex": lambda: codex_setup(tmp_path, server.base + "/v1"),
        "opencode": lambda: opencode_setup(tmp_path, server.base + "/v1"),
    }
    agent = start(real_acp, name, setups[name]())
    first, _ = agent.stream([{"role": "user", "content": "Say the word pelican"}])
    second, _ = agent.stream([{"role": "user", "content": "Say the word heron"}])
    assert first.endswith("Say the word pelican") and second.endswith("Say the word heron"), (first, second)
    assert "pelican" not in second
    assert len(agent.received("initialize")) == 1
    assert sessions_opened(agent) == 2
    nothing_left(agent, tmp_path)


def test_claude_round_trips_the_editors_tool_with_its_own_tools_off(server, real_acp, tmp_path):  # noqa: F811
    """Claude's model (FakeClaude) calls the editor's tool, and was offered
    it and none of Claude's own (`_meta.disableBuiltInTools`, no tool
    search)."""
    from test_editor_tools import CLAUDE_NAME, FakeClaude, tool_names

    with FakeClaude() as fake:
        tool_round_trip(server, start(real_acp, "claude", claude_setup(tmp_path, fake.base)))
        offered = fake.offering()
        assert offered and all(tool_names(body) == [CLAUDE_NAME] for body in offered), [
            tool_names(b) for b in offered
        ]


def test_codex_round_trips_the_editors_tool(server, real_acp, tmp_path):  # noqa: F811
    """codex's model (FakeResponses) calls the editor's tool."""
    from test_editor_tools import FakeResponses

    with FakeResponses() as fake:
        tool_round_trip(server, start(real_acp, "codex", codex_setup(tmp_path, fake.base + "/v1")))


# What opencode calls the editor's tool: it names an MCP server's tools
# `<server>_<tool>`, beside its own (bash, edit, read, ...).
OPENCODE_NAME = "editor_get_weather"


def test_opencode_round_trips_the_editors_tool(server, real_acp, tmp_path):  # noqa: F811
    """opencode's model (FakeChat, as an OpenAI-compatible provider) calls
    the editor's tool as opencode offers it, an MCP tool of the relay."""
    from test_editor_tools import FakeChat, function_names

    with FakeChat(name=OPENCODE_NAME) as fake:
        tool_round_trip(server, start(real_acp, "opencode", opencode_setup(tmp_path, fake.base + "/v1")))
        offered = fake.offering()
        assert offered and all(function_names(body).count(OPENCODE_NAME) == 1 for body in offered), [
            function_names(b) for b in offered
        ]


def test_opencode_answers_two_tool_conversations_at_once(server, real_acp, tmp_path):  # noqa: F811
    """opencode keeps MCP servers by name for its whole working directory,
    so the relay of its last session carries every session's calls: turns
    with the editor's tools go one at a time, and each call and its result
    belong to the conversation that made it."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    from test_editor_tools import WEATHER, FakeChat

    with FakeChat(name=OPENCODE_NAME) as fake:
        agent = start(real_acp, "opencode", opencode_setup(tmp_path, fake.base + "/v1"))
        client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=120)

        def converse(question, weather):
            asked = [{"role": "user", "content": question}]
            first = client.chat.completions.create(model=agent.model, messages=asked, tools=[WEATHER]).choices[0]
            assert first.finish_reason == "tool_calls", first
            [call] = first.message.tool_calls
            result = {"role": "tool", "tool_call_id": call.id, "content": weather}
            history = [*asked, first.message.model_dump(exclude_none=True), result]
            return client.chat.completions.create(model=agent.model, messages=history, tools=[WEATHER])

        with ThreadPoolExecutor(2) as pool:
            asks = [("Weather in Oslo?", "drizzle, 9 C"), ("And the weather in Oslo now?", "sun, 20 C")]
            answers = [f.result().choices[0].message.content for f in [pool.submit(converse, *a) for a in asks]]
        assert "drizzle, 9 C" in answers[0] and "sun" not in answers[0], answers
        assert "sun, 20 C" in answers[1] and "drizzle" not in answers[1], answers
        assert len(agent.received("initialize")) == 1


# How each agent reaches a model the provider serves (`echo` unless told).
SETUPS = {
    "claude": lambda home, server, model="echo": claude_setup(home, server.base, model),
    "codex": lambda home, server, model="echo": codex_setup(home, server.base + "/v1", model),
    "qwen": lambda home, server, model="echo": qwen_setup(home, server.base + "/v1", model=model),
    "opencode": lambda home, server, model="echo": opencode_setup(home, server.base + "/v1", model),
}


@pytest.mark.parametrize("name", SETUPS)
def test_the_agent_answers_on_every_editor_api(server, real_acp, tmp_path, name):  # noqa: F811
    """One warm agent answers a streamed request on chat/completions,
    Responses, Messages and Ollama, each in its own shape: the echo model
    repeats each API's own words, in a session of its own."""
    agent = start(real_acp, name, SETUPS[name](tmp_path, server))
    got = on_every_api(server, agent.model)
    for api, (_, text) in got.items():
        asked = APIS[api]
        assert text.rstrip().endswith(asked) and text.count(asked.rsplit(" ", 1)[1]) == 1, (api, text[-300:])
    assert len(agent.received("initialize")) == 1
    assert sessions_opened(agent) == 4
    nothing_left(agent, tmp_path)


@pytest.mark.parametrize("name", SETUPS)
def test_the_agent_is_cancelled_when_the_editor_leaves_and_restarted_when_killed(
    server, real_acp, tmp_path, name  # noqa: F811
):
    """The agent's model (SlowModel, on the provider) holds its answer's
    end. The editor leaves mid-answer: the agent is told to cancel, ends
    the turn as cancelled, gives up its model request, and answers the next
    turn. Its process killed
    mid-answer: the editor's turn fails, no process of it is left, and a
    new one answers the next turn."""
    slow = SlowModel(server)
    try:
        agent = start(real_acp, name, SETUPS[name](tmp_path, server, slow.name))
        # codex ends its turn at once but reads its model's stream on until
        # the model's next piece: its request is not seen to end.
        gave_up = None if name == "codex" else lambda: slow.invokes[0] in slow.cancelled()
        leaving_cancels(agent, slow.gate, lambda text: text.strip() == ANSWER, gave_up)
        slow.gate.clear()
        killed_restarts(agent, slow.gate, slow.asked, lambda text: text.strip() == ANSWER)
        nothing_left(agent, tmp_path)
    finally:
        slow.close()


THINKING = "Pelicans: large birds, so the answer is short."


class ThinkingClaude(LocalHttpServer):
    """Anthropic's `POST /v1/messages`, streamed: every request is answered
    with a thinking block (THINKING) then a text block (PIECES)."""

    def __init__(self):
        super().__init__(ThinkingClaudeHandler)


class ThinkingClaudeHandler(FakeHandler):
    def do_POST(self):
        body = self.json_body()
        if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
            return self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}})
        message = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
                   "model": body.get("model", "fake"), "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": 50, "output_tokens": 10}}
        if not body.get("stream"):
            blocks = [{"type": "thinking", "thinking": THINKING, "signature": "c2ln"}, {"type": "text", "text": ANSWER}]
            return self.send_json(200, {**message, "content": blocks, "stop_reason": "end_turn"})
        self.start_sse()
        self.event("message_start", {"message": message})
        self.event("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        self.event("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": THINKING}})
        self.event("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}})
        self.event("content_block_stop", {"index": 0})
        self.event("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}})
        for piece in PIECES:
            self.event("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": piece}})
        self.event("content_block_stop", {"index": 1})
        self.event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": 10}})
        self.event("message_stop", {})
        self.end_sse()

    def event(self, name, data):
        self.chunk(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())


def test_claudes_thinking_is_reasoning_on_every_editor_api(server, real_acp, tmp_path):  # noqa: F811
    """Claude's model thinks before it answers (a thinking block): each
    editor API shows it in its own reasoning field (chat
    `reasoning_content`, a Responses reasoning item, a Messages thinking
    block, Ollama `thinking`), the answer's text in its own."""
    with ThinkingClaude() as fake:
        agent = start(real_acp, "claude", claude_setup(tmp_path, fake.base))
        got = on_every_api(server, agent.model)
        assert got == {api: (THINKING, ANSWER) for api in APIS}
        assert len(agent.received("initialize")) == 1


# What ThinkingResponses reasons before it answers: its summary's deltas,
# then its reasoning text's (as an open-weights model's reasoning comes).
REASONING = ["Pelicans: large birds, ", "so the answer is short."]
RAW_REASONING = [" Large birds ", "answer briefly."]
# How codex tells it: a thought chunk per delta, each summary part opened
# with a blank line of its own.
CODEX_THOUGHT = "\n\n" + "".join(REASONING) + "".join(RAW_REASONING)


class ThinkingResponses(LocalHttpServer):
    """OpenAI's `POST /v1/responses`, streamed as the API streams a
    reasoning model's answer: a reasoning item whose summary comes as
    `response.reasoning_summary_text.delta` events (REASONING) and its text
    as `response.reasoning_text.delta` events (RAW_REASONING), then a
    message whose text comes as `response.output_text.delta` events
    (PIECES)."""

    def __init__(self):
        super().__init__(ThinkingResponsesHandler)


class ThinkingResponsesHandler(FakeHandler):
    def do_GET(self):
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self.json_body()
        if not self.path.startswith("/v1/responses"):
            return self.send_json(404, {"error": {"message": "not found"}})
        with self.server.lock:
            self.server.requests.append(body)
        rid, rs, msg = (f"{p}_{uuid.uuid4().hex[:12]}" for p in ("resp", "rs", "msg"))
        summary = "".join(REASONING)
        self.start_sse()
        self.event("response.created", response={"id": rid, "status": "in_progress", "output": []})
        self.event("response.output_item.added", output_index=0, item={"type": "reasoning", "id": rs, "summary": []})
        part = {"item_id": rs, "output_index": 0, "summary_index": 0}
        self.event("response.reasoning_summary_part.added", **part, part={"type": "summary_text", "text": ""})
        for piece in REASONING:
            self.event("response.reasoning_summary_text.delta", **part, delta=piece)
        self.event("response.reasoning_summary_text.done", **part, text=summary)
        self.event("response.reasoning_summary_part.done", **part, part={"type": "summary_text", "text": summary})
        raw = {"item_id": rs, "output_index": 0, "content_index": 0}
        for piece in RAW_REASONING:
            self.event("response.reasoning_text.delta", **raw, delta=piece)
        self.event("response.reasoning_text.done", **raw, text="".join(RAW_REASONING))
        reasoning = {"type": "reasoning", "id": rs, "summary": [{"type": "summary_text", "text": summary}],
                     "content": [{"type": "reasoning_text", "text": "".join(RAW_REASONING)}]}
        self.event("response.output_item.done", output_index=0, item=reasoning)
        message = {"type": "message", "id": msg, "role": "assistant", "status": "in_progress", "content": []}
        self.event("response.output_item.added", output_index=1, item=message)
        text = {"item_id": msg, "output_index": 1, "content_index": 0}
        self.event("response.content_part.added", **text, part={"type": "output_text", "text": "", "annotations": []})
        for piece in PIECES:
            self.event("response.output_text.delta", **text, delta=piece)
        self.event("response.output_text.done", **text, text=ANSWER)
        done = {**message, "status": "completed", "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}
        self.event("response.output_item.done", output_index=1, item=done)
        usage = {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}
        self.event("response.completed", response={"id": rid, "status": "completed", "usage": usage})
        self.end_sse()

    def event(self, name, **data):
        self.chunk(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())


def test_codexs_reasoning_is_reasoning_on_every_editor_api(server, real_acp, tmp_path):  # noqa: F811
    """codex's model reasons before it answers (a reasoning item, its
    summary and its text streamed): codex tells it as thought chunks
    (`agent_thought_chunk`), and each editor API shows them in its own
    reasoning field (chat `reasoning_content`, a Responses reasoning item,
    a Messages thinking block, Ollama `thinking`), before the answer's text
    in its own."""
    with ThinkingResponses() as fake:
        agent = start(real_acp, "codex", codex_setup(tmp_path, fake.base + "/v1"))
        got = on_every_api(server, agent.model)
        assert got == {api: (CODEX_THOUGHT, ANSWER) for api in APIS}, got
        # Each turn's reasoning is its session's thought chunks, whole.
        for session in {m["params"]["sessionId"] for m in agent.received("session/prompt")}:
            updates = [m["params"]["update"] for m in agent.sent("session/update")
                       if m["params"]["sessionId"] == session]
            thoughts = [u["content"]["text"] for u in updates if u["sessionUpdate"] == "agent_thought_chunk"]
            assert "".join(thoughts) == CODEX_THOUGHT, thoughts
        assert len(agent.received("session/prompt")) == len(APIS)
        assert len(agent.received("initialize")) == 1
