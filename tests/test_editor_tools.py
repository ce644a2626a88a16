"""Agent mode through `agent exec`: an editor's tools in a CLI's hands, on
both runtimes. The real Claude Code from npm (tests/node) runs per
conversation, offline, against `FakeClaude`, a Messages API endpoint on
127.0.0.1 that answers a request offering the editor's tool with a call of
it, and a request carrying the tool's result with text quoting it. The
editor (the `openai`, `anthropic` and `ollama` clients) sends `tools`, gets
the call under its own tool name, runs it, sends the result, and gets the
final text — from the same CLI process, which is spawned once per
conversation (counted by a wrapper on PATH) and gone afterwards. codex,
qwen-code and Gemini CLI take the same round trip against fakes of their
own model APIs (`FakeResponses`, `FakeChat`, `FakeGemini`)."""

import json
import os
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import anthropic
import ollama
import openai
import pytest

from conftest import API_KEY, FakeHandler, LocalHttpServer, claude_code_env
from test_agent_exec import CLI_TELEMETRY_OFF, NODE_BIN, exec_agent  # noqa: F401
from test_agent_exec_clis import gemini_setup, processes_with_home, qwen_setup

CITIES = ["Oslo", "Rome"]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# What Claude Code calls the editor's tool.
CLAUDE_NAME = "mcp__editor__get_weather"
RUN_TIMEOUT = 120


class FakeClaude(LocalHttpServer):
    """Anthropic's `POST /v1/messages`, streamed or not. A request offering
    the editor's tool is answered with `calls` calls of it (one per city); a
    request whose last message holds tool results, with text quoting them;
    anything else (Claude Code's own side requests) with "ok". Requests are
    kept as (time, body) in `requests`; `answered` holds when each answer
    holding calls was sent."""

    def __init__(self, calls=1):
        self.calls = calls
        self.answered = []
        super().__init__(ClaudeHandler)

    def model_requests(self):
        with self.lock:
            return list(self.requests)

    def offering(self):
        """The bodies of the requests that offered the editor's tool."""
        return [b for _, b in self.model_requests() if CLAUDE_NAME in tool_names(b)]


def tool_names(body):
    return [t.get("name") for t in body.get("tools") or []]


def tool_results(body):
    """The texts of the tool results the request's last message carries."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if last.get("role") == "user" else None
    results = [b for b in content or [] if isinstance(b, dict) and b.get("type") == "tool_result"]
    texts = []
    for block in results:
        inner = block.get("content")
        if isinstance(inner, list):
            inner = "".join(part.get("text", "") for part in inner if isinstance(part, dict))
        texts.append(str(inner))
    return texts


class ClaudeHandler(FakeHandler):
    server: FakeClaude

    def do_GET(self):
        self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not found"}})

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self):
        body = self.json_body()
        if not self.path.startswith("/v1/messages") or "count_tokens" in self.path:
            return self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}})
        with self.server.lock:
            self.server.requests.append((time.monotonic(), body))
        results = tool_results(body)
        if results:
            blocks = [{"type": "text", "text": "The tool said: " + " | ".join(results)}]
        elif CLAUDE_NAME in tool_names(body):
            blocks = [
                {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": CLAUDE_NAME, "input": {"city": c}}
                for c in CITIES[: self.server.calls]
            ]
        else:
            blocks = [{"type": "text", "text": "ok"}]
        stop = "tool_use" if blocks[0]["type"] == "tool_use" else "end_turn"
        if stop == "tool_use":
            with self.server.lock:
                self.server.answered.append(time.monotonic())
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 50, "output_tokens": 10},
        }
        if not body.get("stream"):
            return self.send_json(200, message)
        self.start_sse()
        self.event("message_start", {**message, "content": [], "stop_reason": None}, key="message")
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                self.event("content_block_start", {"index": i, "content_block": {"type": "text", "text": ""}})
                delta = {"type": "text_delta", "text": block["text"]}
            else:
                self.event("content_block_start", {"index": i, "content_block": {**block, "input": {}}})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            self.event("content_block_delta", {"index": i, "delta": delta})
            self.event("content_block_stop", {"index": i})
        self.event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 10}})
        self.event("message_stop", {})
        self.end_sse()

    def event(self, name, data, key=None):
        payload = {"type": name, key: data} if key else {"type": name, **data}
        self.chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())


def cli_wrapper(home, cli="claude"):
    """A `cli` on PATH that counts its starts in a file, then runs the
    real one in its place: the count of CLI processes spawned."""
    bin_dir = home / "bin"
    bin_dir.mkdir()
    count = home / "spawns"
    wrapper = bin_dir / cli
    wrapper.write_text(f'#!/bin/sh\necho start >> "{count}"\nexec "{NODE_BIN / cli}" "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir, count


def spawns(count_file):
    return len(count_file.read_text().splitlines()) if count_file.exists() else 0


class Setup:
    """`agent exec --preset claude` on a FakeClaude, in its own HOME (or
    `cli` with its own environment and arguments)."""

    def __init__(self, server, exec_agent, home, fake, *options, cli="claude", cli_env=None, extra=()):
        self.home = home
        bin_dir, self.count = cli_wrapper(home, cli)
        env = {
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "HOME": str(home),
            **(cli_env or claude_code_env(fake.base, "fake-anthropic-key")),
        }
        self.model = f"{cli}-{uuid.uuid4().hex[:8]}"
        self.agent = exec_agent(
            self.model, "--preset", cli, "--cwd", str(home), "--timeout-secs", str(RUN_TIMEOUT), *options,
            "--", *extra, env=env,
        )
        self.server = server
        self.fake = fake

    def openai(self):
        return openai.OpenAI(base_url=self.server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)

    def anthropic(self):
        return anthropic.Anthropic(base_url=self.server.base, api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)

    def no_cli_left(self, timeout=10):
        deadline = time.monotonic() + timeout
        while processes_with_home(self.home, but={self.agent.proc.pid}) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with_home(self.home, but={self.agent.proc.pid}) == []

    def only_the_editors_tools_were_offered(self):
        offered = self.fake.offering()
        assert offered, "no request offered the editor's tool"
        for body in offered:
            assert tool_names(body) == [CLAUDE_NAME], tool_names(body)


ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.fixture
def fake():
    with FakeClaude() as fake:
        yield fake


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_gets_the_call_and_the_same_cli_goes_on_with_the_result(server, exec_agent, tmp_path, fake, stream):
    s = Setup(server, exec_agent, tmp_path, fake)
    client = s.openai()
    if stream:
        chunks = list(client.chat.completions.create(model=s.model, messages=ASK, tools=[WEATHER], stream=True))
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
        [first] = [d for d in deltas if d.id]
        call_id, name = first.id, first.function.name
        arguments = "".join(d.function.arguments or "" for d in deltas)
    else:
        answer = client.chat.completions.create(model=s.model, messages=ASK, tools=[WEATHER])
        assert answer.choices[0].finish_reason == "tool_calls"
        [call] = answer.choices[0].message.tool_calls
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Oslo"}
    assert spawns(s.count) == 1
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "rainy, 7 C"},
    ]
    if stream:
        chunks = list(client.chat.completions.create(model=s.model, messages=history, tools=[WEATHER], stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(model=s.model, messages=history, tools=[WEATHER]).choices[0].message.content
    assert "The tool said: rainy, 7 C" in text
    assert spawns(s.count) == 1, "the result went to the same CLI process"
    s.only_the_editors_tools_were_offered()
    s.no_cli_left()


def test_anthropic_messages_get_a_tool_use_and_send_a_tool_result(server, exec_agent, tmp_path, fake):
    s = Setup(server, exec_agent, tmp_path, fake)
    client = s.anthropic()
    tool = {"name": "get_weather", "description": "The weather now in a city",
            "input_schema": WEATHER["function"]["parameters"]}
    ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first = client.messages.create(model=s.model, max_tokens=1000, messages=ask, tools=[tool])
    assert first.stop_reason == "tool_use"
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert (use.name, use.input) == ("get_weather", {"city": "Oslo"})
    history = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
    ]
    with client.messages.stream(model=s.model, max_tokens=1000, messages=history, tools=[tool]) as stream:
        text = "".join(stream.text_stream)
    assert "The tool said: sunny, 21 C" in text
    assert spawns(s.count) == 1
    s.only_the_editors_tools_were_offered()
    s.no_cli_left()


def test_openai_responses_get_a_function_call_item_and_send_its_output(server, exec_agent, tmp_path, fake):
    """The Responses API: the call streams as a `function_call` output item
    (its arguments as `function_call_arguments.delta`/`.done`), and the
    `function_call_output` sent back reaches the same CLI process."""
    s = Setup(server, exec_agent, tmp_path, fake)
    client = s.openai()
    tool = {"type": "function", "name": "get_weather", "description": "The weather now in a city",
            "parameters": WEATHER["function"]["parameters"]}
    ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
    events = list(client.responses.create(model=s.model, input=ask, tools=[tool], stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds, kinds
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"city": "Oslo"}
    [completed] = [e.response for e in events if e.type == "response.completed"]
    [call] = [item for item in completed.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Oslo"})
    assert spawns(s.count) == 1
    history = [*ask, call.model_dump(exclude_none=True),
               {"type": "function_call_output", "call_id": call.call_id, "output": "windy, 12 C"}]
    answer = client.responses.create(model=s.model, input=history, tools=[tool])
    assert "The tool said: windy, 12 C" in answer.output_text
    assert spawns(s.count) == 1, "the output went to the same CLI process"
    s.only_the_editors_tools_were_offered()
    s.no_cli_left()


def test_ollama_chat_gets_tool_calls_and_sends_a_tool_message(server, exec_agent, tmp_path, fake):
    s = Setup(server, exec_agent, tmp_path, fake)
    client = ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=RUN_TIMEOUT)
    first = client.chat(model=s.model, messages=ASK, tools=[WEATHER], stream=False)
    [call] = first.message.tool_calls
    assert call.function.name == "get_weather"
    assert dict(call.function.arguments) == {"city": "Oslo"}
    history = [*ASK, first.message, {"role": "tool", "content": "foggy, 3 C", "tool_name": "get_weather"}]
    text = "".join(part.message.content or "" for part in client.chat(model=s.model, messages=history, tools=[WEATHER], stream=True))
    assert "The tool said: foggy, 3 C" in text
    assert spawns(s.count) == 1
    s.only_the_editors_tools_were_offered()
    s.no_cli_left()


def test_two_calls_of_one_turn_come_in_one_answer_and_both_results_reach_the_cli(server, exec_agent, tmp_path):
    with FakeClaude(calls=2) as fake:
        s = Setup(server, exec_agent, tmp_path, fake)
        client = s.openai()
        ask = [{"role": "user", "content": "Weather in Oslo and Rome?"}]
        answer = client.chat.completions.create(model=s.model, messages=ask, tools=[WEATHER])
        calls = answer.choices[0].message.tool_calls
        assert sorted(json.loads(c.function.arguments)["city"] for c in calls) == CITIES
        said = {"Oslo": "rain in Oslo", "Rome": "sun in Rome"}
        history = [*ask, answer.choices[0].message.model_dump(exclude_none=True)]
        history += [
            {"role": "tool", "tool_call_id": c.id, "content": said[json.loads(c.function.arguments)["city"]]}
            for c in calls
        ]
        text = client.chat.completions.create(model=s.model, messages=history, tools=[WEATHER]).choices[0].message.content
        assert "rain in Oslo" in text and "sun in Rome" in text
        assert spawns(s.count) == 1
        s.no_cli_left()


def test_an_editor_that_never_returns_leaves_nothing_after_the_deadline(server, exec_agent, tmp_path, fake):
    s = Setup(server, exec_agent, tmp_path, fake, "--tool-wait-secs", "2")
    client = s.openai()
    answer = client.chat.completions.create(model=s.model, messages=ASK, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "tool_calls"
    assert processes_with_home(tmp_path, but={s.agent.proc.pid}), "the CLI waits for the result"
    s.no_cli_left(timeout=10)
    # The next request works: a fresh run, with the whole history.
    call = answer.choices[0].message.tool_calls[0]
    history = [*ASK, answer.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "hail"}]
    later = client.chat.completions.create(model=s.model, messages=history, tools=[WEATHER])
    assert later.choices[0].finish_reason in ("stop", "tool_calls")
    assert spawns(s.count) == 2
    s.no_cli_left(timeout=RUN_TIMEOUT)


def test_editors_that_never_return_make_room_at_the_cap(server, exec_agent, tmp_path, fake):
    """`--max-running 1` and editors that never send their results: each
    new chat (another window, its own system prompt) is answered, the run
    parked longest ending to make room, so one CLI waits at a time."""
    s = Setup(server, exec_agent, tmp_path, fake, "--tool-wait-secs", "300", "--max-running", "1")
    client = s.openai()
    for window in range(4):
        chat = [{"role": "system", "content": f"You work in window {window}."}, *ASK]
        answer = client.chat.completions.create(model=s.model, messages=chat, tools=[WEATHER])
        assert answer.choices[0].finish_reason == "tool_calls", window
    assert spawns(s.count) == 4
    deadline = time.monotonic() + 10
    while len(claude_roots(tmp_path, s)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(claude_roots(tmp_path, s)) == 1


def test_an_edited_chat_ends_the_waiting_cli_and_is_answered(server, exec_agent, tmp_path, fake):
    """The chat's last message edited (the conversation before it kept):
    the CLI waiting for the call's result is ended at once."""
    s = Setup(server, exec_agent, tmp_path, fake, "--tool-wait-secs", "300")
    client = s.openai()
    earlier = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    first = client.chat.completions.create(model=s.model, messages=[*earlier, *ASK], tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    edited = [*earlier, {"role": "user", "content": "What is the weather in Bergen?"}]
    again = client.chat.completions.create(model=s.model, messages=edited, tools=[WEATHER])
    assert again.choices[0].finish_reason == "tool_calls"
    assert spawns(s.count) == 2
    # The first CLI was ended at once; the second waits for its result.
    deadline = time.monotonic() + 10
    while len(claude_roots(tmp_path, s)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(claude_roots(tmp_path, s)) == 1


def claude_roots(home, s):
    """The CLI processes alive for `home` (the relays they started left
    out)."""
    found = []
    for pid in processes_with_home(home, but={s.agent.proc.pid}):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.split(b"\0")[1:2] != [b"__tool-relay"]:
            found.append((pid, cmdline[:80]))
    return found


# Bad input: clear errors in each API's shape, nothing left running.


def test_a_tool_with_an_invalid_schema_is_a_400(server, exec_agent, tmp_path, fake):
    s = Setup(server, exec_agent, tmp_path, fake)
    bad = {"type": "function", "function": {"name": "get_weather", "parameters": "not a schema"}}
    with pytest.raises(openai.BadRequestError) as error:
        s.openai().chat.completions.create(model=s.model, messages=ASK, tools=[bad])
    assert "parameters" in error.value.body["message"]
    bad_anthropic = {"name": "get_weather", "input_schema": {"type": "string"}}
    with pytest.raises(anthropic.BadRequestError) as error:
        s.anthropic().messages.create(model=s.model, max_tokens=10, messages=ASK, tools=[bad_anthropic])
    assert error.value.body["type"] == "error"
    assert "input_schema" in error.value.body["error"]["message"]
    assert spawns(s.count) == 0


def test_a_result_for_an_unknown_call_or_given_twice_is_a_400(server, exec_agent, tmp_path, fake):
    s = Setup(server, exec_agent, tmp_path, fake)
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    unknown = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_2", "content": "x"}]
    with pytest.raises(openai.BadRequestError) as error:
        s.openai().chat.completions.create(model=s.model, messages=unknown, tools=[WEATHER])
    assert "call_2" in error.value.body["message"]
    twice = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call]},
             {"role": "tool", "tool_call_id": "call_1", "content": "x"},
             {"role": "tool", "tool_call_id": "call_1", "content": "y"}]
    with pytest.raises(openai.BadRequestError) as error:
        s.openai().chat.completions.create(model=s.model, messages=twice, tools=[WEATHER])
    assert "call_1" in error.value.body["message"]
    assert spawns(s.count) == 0
    s.no_cli_left()


def test_stopping_the_agent_removes_its_relays_directory(server, exec_agent, tmp_path, fake):
    """The private directory of the relays' socket lives as long as `agent
    exec`: a SIGTERM (which exits without running destructors) removes it."""
    # A temporary folder of its own (short, for the socket's path): other
    # tests' agents, side by side, make theirs in the shared one.
    tmp = Path(tempfile.mkdtemp(prefix="t"))
    env = {**claude_code_env(fake.base, "fake-anthropic-key"), "TMPDIR": str(tmp)}
    s = Setup(server, exec_agent, tmp_path, fake, cli_env=env)
    [made] = tmp.glob("mcp-provider-tools-*")
    assert (made / "tools.sock").is_socket()
    assert made.stat().st_mode & 0o077 == 0
    s.agent.stop()
    assert not made.exists()
    tmp.rmdir()


# codex: the editor's tools reach it as the MCP server `editor`, which it
# offers its model as the namespace `mcp__editor` of function tools.

CODEX_NAMESPACE = "mcp__editor"
# What codex offers whenever an MCP server is configured, with no setting to
# turn them off: they read the configured servers' resources (here only the
# editor's server, which has none), nothing on the machine.
CODEX_MCP_RESOURCE_TOOLS = ["list_mcp_resources", "list_mcp_resource_templates", "read_mcp_resource"]


class FakeApi(LocalHttpServer):
    """A fake model API whose answers call the editor's tool `calls` times
    (see each handler). Request bodies are kept in `requests`; `offers(body)`
    says whether one offered the editor's tool."""

    def __init__(self, handler, calls):
        self.calls = calls
        super().__init__(handler)

    def offering(self):
        """The bodies of the requests that offered the editor's tool."""
        with self.lock:
            return [b for b in self.requests if self.offers(b)]


class FakeResponses(FakeApi):
    """OpenAI's `POST /v1/responses`, streamed, as codex uses it: a request
    offering the editor's tool is answered with `calls` calls of it, one
    whose input holds their outputs with text quoting them, anything else
    with "ok"."""

    def __init__(self, calls=1):
        super().__init__(ResponsesHandler, calls)

    @staticmethod
    def offers(body):
        return "get_weather" in namespaced(body)


def namespaced(body):
    """The names of the functions of the `mcp__editor` namespace offered."""
    return [
        f.get("name")
        for t in body.get("tools") or []
        if t.get("type") == "namespace" and t.get("name") == CODEX_NAMESPACE
        for f in t.get("tools") or []
    ]


def output_texts(body):
    """The texts of the function call outputs the request carries (codex
    puts its own timing line before each result)."""
    texts = []
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = "".join(p.get("text", "") for p in output if not p.get("text", "").startswith("Wall time"))
            texts.append(str(output))
    return texts


class ResponsesHandler(FakeHandler):
    server: FakeResponses

    def do_GET(self):
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self.json_body()
        if urlparse(self.path).path != "/v1/responses":
            return self.send_json(404, {"error": {"message": "not found"}})
        with self.server.lock:
            self.server.requests.append(body)
        results = output_texts(body)
        text = lambda t: {"type": "message", "role": "assistant", "id": f"msg_{uuid.uuid4().hex[:8]}",
                          "content": [{"type": "output_text", "text": t}]}
        if results:
            items = [text("The tool said: " + " | ".join(results))]
        elif "get_weather" in namespaced(body):
            items = [
                {"type": "function_call", "id": f"fc_{i}", "call_id": f"call_{uuid.uuid4().hex[:12]}",
                 "namespace": CODEX_NAMESPACE, "name": "get_weather", "arguments": json.dumps({"city": c})}
                for i, c in enumerate(CITIES[: self.server.calls])
            ]
        else:
            items = [text("ok")]
        rid = f"resp_{uuid.uuid4().hex[:12]}"
        self.start_sse()
        self.event("response.created", response={"id": rid})
        for item in items:
            self.event("response.output_item.done", item=item)
        usage = {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}
        self.event("response.completed", response={"id": rid, "usage": usage})
        self.end_sse()

    def event(self, name, **data):
        self.chunk(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())


def codex_setup(server, exec_agent, home, fake, *options):
    """`agent exec --preset codex` on a FakeResponses, with its CODEX_HOME
    in `home`."""
    (home / ".codex").mkdir()
    provider = f'{{name="fake",base_url="{fake.base}/v1",env_key="FAKE_KEY",wire_api="responses"}}'
    env = {"CODEX_HOME": str(home / ".codex"), "FAKE_KEY": "fake-openai-key", **CLI_TELEMETRY_OFF}
    extra = ["-c", "model_provider=fake", "-c", f"model_providers.fake={provider}", "-m", "fake-model"]
    return Setup(server, exec_agent, home, fake, *options, cli="codex", cli_env=env, extra=extra)


def codex_offered_only_the_editors_tools(fake):
    offered = fake.offering()
    assert offered, "no request offered the editor's tool"
    for body in offered:
        names = [t.get("name") for t in body.get("tools") or []]
        assert names == [*CODEX_MCP_RESOURCE_TOOLS, CODEX_NAMESPACE], names
        assert namespaced(body) == ["get_weather"]


def chat_round_trip(s, ask, answer_for):
    """The editor's call, then its result: the call and the final text."""
    client = s.openai()
    first = client.chat.completions.create(model=s.model, messages=ask, tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert spawns(s.count) == 1
    history = [*ask, first.choices[0].message.model_dump(exclude_none=True)]
    history += [
        {"role": "tool", "tool_call_id": c.id, "content": answer_for(json.loads(c.function.arguments)["city"])}
        for c in calls
    ]
    text = client.chat.completions.create(model=s.model, messages=history, tools=[WEATHER]).choices[0].message.content
    return calls, text


# qwen: the editor's tools reach it as the MCP server `editor`, which it
# offers its model as `mcp__editor__<name>` functions.

QWEN_NAME = "mcp__editor__get_weather"


class FakeChat(FakeApi):
    """OpenAI's `POST /v1/chat/completions`, streamed, as qwen uses it: a
    request offering the editor's tool (as the agent names it, `name`) is
    answered with `calls` calls of it, one whose messages hold tool results
    with text quoting them, anything else with "ok"."""

    def __init__(self, calls=1, name=QWEN_NAME):
        self.name = name
        super().__init__(ChatHandler, calls)

    def offers(self, body):
        return self.name in function_names(body)


def function_names(body):
    return [t.get("function", {}).get("name") for t in body.get("tools") or []]


class ChatHandler(FakeHandler):
    server: FakeChat

    def do_GET(self):
        self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self.json_body()
        if urlparse(self.path).path != "/v1/chat/completions":
            return self.send_json(404, {"error": {"message": "not found"}})
        with self.server.lock:
            self.server.requests.append(body)
        results = [m for m in body.get("messages") or [] if m.get("role") == "tool"]
        if results:
            delta = {"role": "assistant", "content": "The tool said: " + " | ".join(tool_text(m) for m in results)}
            chunks, finish = [delta], "stop"
        elif self.server.offers(body):
            chunks = [
                {"role": "assistant", "tool_calls": [{"index": i, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                                                      "function": {"name": self.server.name, "arguments": json.dumps({"city": c})}}]}
                for i, c in enumerate(CITIES[: self.server.calls])
            ]
            finish = "tool_calls"
        else:
            chunks, finish = [{"role": "assistant", "content": "ok"}], "stop"
        self.start_sse()
        for delta in chunks:
            self.sse({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        self.sse({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        self.sse({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}})
        self.chunk(b"data: [DONE]\n\n")
        self.end_sse()

    def sse(self, chunk):
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake", **chunk}
        self.chunk(f"data: {json.dumps(chunk)}\n\n".encode())


def tool_text(message):
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def qwen_editor_setup(server, exec_agent, home, fake, *options):
    """`agent exec --preset qwen` on a FakeChat, its settings in `home`."""
    env, extra = qwen_setup(home, fake.base + "/v1")
    env.pop("PATH")
    return Setup(server, exec_agent, home, fake, *options, cli="qwen", cli_env=env, extra=extra)


def qwen_offered_only_the_editors_tools(fake):
    offered = fake.offering()
    assert offered, "no request offered the editor's tool"
    for body in offered:
        assert function_names(body) == [QWEN_NAME], function_names(body)


# gemini: the editor's tools reach it as the MCP server `editor` of the
# settings in a home of the run's own, which it offers its model as
# `mcp_editor_<name>` function declarations.

GEMINI_NAME = "mcp_editor_get_weather"


class FakeGemini(FakeApi):
    """Google's `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`,
    as gemini uses it: a request offering the editor's tool is answered with
    `calls` `functionCall`s of it when its last content names a city, one
    whose last content holds `functionResponse`s with text quoting them,
    anything else with "ok"."""

    def __init__(self, calls=1):
        super().__init__(GeminiHandler, calls)

    @staticmethod
    def offers(body):
        return GEMINI_NAME in declared(body)


def declared(body):
    """The names of the functions the request declares."""
    return [f.get("name") for t in body.get("tools") or [] for f in t.get("functionDeclarations") or []]


def function_responses(body):
    """The outputs of the function responses in the request's last content
    (gemini wraps each in `<untrusted_context>` tags, dropped here)."""
    contents = body.get("contents") or []
    parts = contents[-1].get("parts") or [] if contents else []
    outputs = [p["functionResponse"].get("response", {}) for p in parts if "functionResponse" in p]
    return [re.sub(r"</?untrusted_context>", "", str(o.get("output", o))).strip() for o in outputs]


def last_text(body):
    contents = body.get("contents") or []
    return "".join(p.get("text", "") for p in (contents[-1].get("parts") or [] if contents else []))


class GeminiHandler(FakeHandler):
    server: FakeGemini

    def do_GET(self):
        self.send_json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    def do_POST(self):
        body = self.json_body()
        if not urlparse(self.path).path.endswith(":streamGenerateContent"):
            return self.send_json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})
        with self.server.lock:
            self.server.requests.append(body)
        results = function_responses(body)
        if results:
            parts = [{"text": "The tool said: " + " | ".join(results)}]
        elif self.server.offers(body) and any(c in last_text(body) for c in CITIES):
            parts = [{"functionCall": {"name": GEMINI_NAME, "args": {"city": c}}} for c in CITIES[: self.server.calls]]
        else:
            parts = [{"text": "ok"}]
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0, "finishReason": "STOP"}
        usage = {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 60}
        self.start_sse()
        self.chunk(f"data: {json.dumps({'candidates': [candidate], 'usageMetadata': usage})}\r\n\r\n".encode())
        self.end_sse()


def gemini_editor_setup(server, exec_agent, home, fake, *options):
    """`agent exec --preset gemini` on a FakeGemini, its settings in `home`."""
    env, extra = gemini_setup(home, fake.base)
    env.pop("PATH")
    return Setup(server, exec_agent, home, fake, *options, cli="gemini", cli_env=env, extra=extra)


def gemini_offered_only_the_editors_tools(fake):
    offered = fake.offering()
    assert offered, "no request offered the editor's tool"
    for body in offered:
        assert declared(body) == [GEMINI_NAME], declared(body)


# Each CLI as the fake of its model API, its setup, and the check that its
# model was offered only the editor's tools.
CLIS = {
    "codex": (FakeResponses, codex_setup, codex_offered_only_the_editors_tools),
    "qwen": (FakeChat, qwen_editor_setup, qwen_offered_only_the_editors_tools),
    "gemini": (FakeGemini, gemini_editor_setup, gemini_offered_only_the_editors_tools),
}


@pytest.mark.parametrize("cli", CLIS)
def test_the_cli_gets_the_call_and_the_same_process_goes_on_with_the_result(server, exec_agent, tmp_path, cli):
    fake_model, setup, offered_only_the_editors_tools = CLIS[cli]
    with fake_model() as fake:
        s = setup(server, exec_agent, tmp_path, fake)
        calls, text = chat_round_trip(s, ASK, lambda city: f"drizzle in {city}, 9 C")
        [call] = calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        assert "The tool said: drizzle in Oslo, 9 C" in text
        assert spawns(s.count) == 1, "the result went to the same CLI process"
        offered_only_the_editors_tools(fake)
        s.no_cli_left()


@pytest.mark.parametrize("cli", CLIS)
def test_the_cli_s_two_calls_of_one_turn_come_in_one_answer(server, exec_agent, tmp_path, cli):
    fake_model, setup, _ = CLIS[cli]
    with fake_model(calls=2) as fake:
        s = setup(server, exec_agent, tmp_path, fake)
        ask = [{"role": "user", "content": "Weather in Oslo and Rome?"}]
        calls, text = chat_round_trip(s, ask, lambda city: f"sky over {city}")
        assert sorted(json.loads(c.function.arguments)["city"] for c in calls) == CITIES
        assert "sky over Oslo" in text and "sky over Rome" in text
        assert spawns(s.count) == 1
        s.no_cli_left()


def run_homes(s):
    """The runs' own homes `agent exec` has now."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    return list(tmp.glob(f"mcp-provider-tools-{s.agent.proc.pid}-*/homes/*"))


def test_gemini_runs_in_a_home_of_its_own_that_shares_the_user_s_and_goes_with_the_run(server, exec_agent, tmp_path):
    """The run's home links the user's `~/.gemini` but for its settings: the
    session gemini saved is in the user's, the user's settings file is
    untouched, and the home is removed once the run is gone. The next turn
    resumes that session in a home of its own, with the editor's tools."""
    with FakeGemini() as fake:
        s = gemini_editor_setup(server, exec_agent, tmp_path, fake)
        settings = (tmp_path / ".gemini" / "settings.json").read_text()
        client = s.openai()
        hello = [{"role": "user", "content": "Hello there"}]
        first = client.chat.completions.create(model=s.model, messages=hello, tools=[WEATHER])
        assert first.choices[0].message.content == "ok"
        s.no_cli_left()
        deadline = time.monotonic() + 10
        while run_homes(s) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run_homes(s) == []
        assert (tmp_path / ".gemini" / "settings.json").read_text() == settings
        assert list((tmp_path / ".gemini" / "tmp").rglob("session-*.jsonl"))
        history = [*hello, {"role": "assistant", "content": "ok"}, *ASK]
        later = client.chat.completions.create(model=s.model, messages=history, tools=[WEATHER])
        assert later.choices[0].finish_reason == "tool_calls"
        assert spawns(s.count) == 2
        contents = fake.offering()[-1]["contents"]
        texts = [(c["role"], "".join(p.get("text", "") for p in c["parts"])) for c in contents]
        assert texts[-1] == ("user", ASK[0]["content"]), texts
        assert ("model", "ok") in texts and "User:" not in json.dumps(contents), texts
        gemini_offered_only_the_editors_tools(fake)
