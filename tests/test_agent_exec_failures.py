"""`agent exec` when the CLI's own model endpoint fails: the real Claude
Code and codex CLIs (tests/node) pointed at fake model endpoints written
here, an Anthropic Messages one and an OpenAI Responses one, each told per
test to answer in pieces, fail with a 5xx, hang before its headers, or
break off mid-stream.

What an editor must see: a failure is an error (a 502 or 504, or an error
raised mid-stream) within a bounded time, never a success; text is never
shown twice (claude re-asks without streaming after a broken stream, and
its final message and result repeat what it streamed); and a normal answer
streams, its first piece reaching the editor while the CLI still runs.

Each CLI's stdout in each case is recorded in tests/fixtures/exec/
(`.venv/bin/python tests/test_agent_exec_failures.py record [name…]`
records them again), and replayed through `agent exec` by a stand-in for
the CLI: the same checks, without timing."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import ROOT, FakeHandler, LocalHttpServer  # noqa: E402
from test_agent_exec import (  # noqa: E402,F401
    CLI_TELEMETRY_OFF,
    NODE_BIN,
    client,
    exec_agent,
    running,
    sleeper,
    wait_gone,
)

FIXTURES = ROOT / "tests" / "fixtures" / "exec"

# The answer the fake endpoints give, in pieces, and what they go on with
# when the conversation already holds that answer (a retry that kept it:
# codex sends the message it got, claude asks to resume after it). The
# second begins as the first does, as a model's next sentence may.
PIECES = ["Pelicans ", "glide ", "over ", "the ", "harbour."]
ANSWER = "".join(PIECES)
MORE = ["Pelicans ", "also ", "dive."]
# A stream that breaks sends this many pieces, waits (so the CLI prints
# them), then breaks.
BROKEN_AFTER = 2
BREAK_PAUSE = 0.5
# The longest a gated answer waits for its gate.
GATE_WAIT = 20

# What a fake endpoint does with each request.
OK = "ok"
# 500 on every request.
ERROR_500 = "500"
# 529 `overloaded_error` (Anthropic) or 503 (OpenAI) on every request.
OVERLOADED = "overloaded"
# Accepts the request and never sends the response's headers.
HANG = "hang"
# Every stream closes its connection midway; a whole (non-streaming)
# request gets a 500.
CUT = "cut"
# Every stream ends midway with an `error` (Anthropic) or
# `response.failed` (OpenAI) event; a whole request gets a 500.
STREAM_ERROR = "stream-error"
# Every stream ends midway with an error event, a whole request is
# answered: claude's way out (it asks again without streaming).
STREAMS_FAIL = "streams-fail"
# The first request's stream closes midway, later requests are answered.
CUT_THEN_OK = "cut-then-ok"
# The first request's stream sends the whole answer (its message complete),
# then closes before the response's end; later requests are answered.
LATE_CUT_THEN_OK = "late-cut-then-ok"


class FakeModel(LocalHttpServer):
    """A model endpoint on 127.0.0.1: POST /v1/messages (Anthropic
    Messages, streamed or whole) and POST /v1/responses (OpenAI Responses,
    streamed), answering `PIECES` or failing as `mode` says. With `gate`,
    the last piece of an answer (codex: the response's end, after its
    message) waits until the gate is set. Requests are kept in
    `requests` as (path, body)."""

    def __init__(self, mode=OK, gate=None):
        self.mode = mode
        self.gate = gate
        self.gate_timed_out = False
        self.stopping = threading.Event()
        super().__init__(Handler)

    def model_requests(self):
        with self.lock:
            return [b for p, b in self.requests if p in ("/v1/messages", "/v1/responses")]

    def close(self):
        self.stopping.set()
        if self.gate is not None:
            self.gate.set()
        super().close()


def answered_before(body):
    """Whether the conversation sent already holds the answer (a retry
    that keeps what came before it): a model then goes on with `MORE`."""
    turns = body.get("messages") or body.get("input") or []
    return any(isinstance(t, dict) and t.get("role") == "assistant" and ANSWER in json.dumps(t) for t in turns)


class Handler(FakeHandler):
    server: FakeModel

    def do_GET(self):
        self.keep(None)
        self.send_json(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self):
        body = self.json_body()
        path = urlparse(self.path).path
        attempt = self.keep(body)
        if path not in ("/v1/messages", "/v1/responses"):
            return self.send_json(404, {"error": {"message": f"no {path} here", "type": "not_found"}})
        anthropic = path == "/v1/messages"
        streaming = bool(body.get("stream")) or not anthropic
        mode = self.server.mode
        if mode == HANG:
            self.close_connection = True
            self.server.stopping.wait(300)
            return
        if mode == ERROR_500 or (mode in (CUT, STREAM_ERROR) and not streaming):
            return self.send_json(500, self.error_body(anthropic, "api_error", "Internal server error"))
        if mode == OVERLOADED:
            if anthropic:
                return self.send_json(529, self.error_body(True, "overloaded_error", "Overloaded"))
            return self.send_json(503, self.error_body(False, "server_error", "The server is overloaded"))
        breaks = {
            CUT: "cut",
            STREAM_ERROR: "error",
            STREAMS_FAIL: "error",
            CUT_THEN_OK: "cut" if attempt == 1 else None,
            LATE_CUT_THEN_OK: "late-cut" if attempt == 1 else None,
        }.get(mode)
        pieces = MORE if answered_before(body) else PIECES
        if not streaming:
            return self.send_json(200, self.anthropic_message(body, "".join(pieces), len(pieces)))
        if anthropic:
            return self.anthropic_stream(body, pieces, breaks)
        return self.responses_stream(body, pieces, breaks)

    def keep(self, body):
        """Keeps the request; returns which request to its path it is (1…)."""
        path = urlparse(self.path).path
        with self.server.lock:
            self.server.requests.append((path, body))
            return sum(1 for p, _ in self.server.requests if p == path)

    @staticmethod
    def error_body(anthropic, kind, message):
        if anthropic:
            return {"type": "error", "error": {"type": kind, "message": message}}
        return {"error": {"message": message, "type": kind, "code": None}}

    def event(self, name, data):
        self.chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

    def wait_for_gate(self):
        if self.server.gate is not None and not self.server.gate.wait(GATE_WAIT):
            self.server.gate_timed_out = True

    # Anthropic Messages

    @staticmethod
    def anthropic_message(body, text, output_tokens):
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 321,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def anthropic_stream(self, body, pieces, breaks):
        message = self.anthropic_message(body, "", 1)
        message.update(content=[], stop_reason=None)
        self.start_sse()
        self.event("message_start", {"type": "message_start", "message": message})
        block = {"type": "text", "text": ""}
        self.event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
        self.event("ping", {"type": "ping"})
        for i, piece in enumerate(pieces):
            if breaks in ("cut", "error") and i == BROKEN_AFTER:
                time.sleep(BREAK_PAUSE)
                if breaks == "cut":
                    return self.cut()
                self.event("error", self.error_body(True, "overloaded_error", "Overloaded"))
                return self.end_sse()
            if i == len(pieces) - 1:
                self.wait_for_gate()
            delta = {"type": "text_delta", "text": piece}
            self.event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        self.event("content_block_stop", {"type": "content_block_stop", "index": 0})
        if breaks == "late-cut":
            time.sleep(BREAK_PAUSE)
            return self.cut()
        self.event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        )
        self.event("message_stop", {"type": "message_stop"})
        self.end_sse()

    # OpenAI Responses, as codex reads them

    def responses_stream(self, body, pieces, breaks):
        text = "".join(pieces)
        item_id = f"msg_{uuid.uuid4().hex[:24]}"
        response = {
            "id": f"resp_{uuid.uuid4().hex[:24]}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": body.get("model", "fake"),
            "output": [],
        }
        sequence = iter(range(1 << 30))

        def event(name, data):
            self.event(name, {"type": name, "sequence_number": next(sequence), **data})

        self.start_sse()
        event("response.created", {"response": response})
        event("response.in_progress", {"response": response})
        item = {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        event("response.output_item.added", {"output_index": 0, "item": item})
        part = {"type": "output_text", "text": "", "annotations": []}
        place = {"item_id": item_id, "output_index": 0, "content_index": 0}
        event("response.content_part.added", {**place, "part": part})
        for i, piece in enumerate(pieces):
            if breaks in ("cut", "error") and i == BROKEN_AFTER:
                time.sleep(BREAK_PAUSE)
                if breaks == "cut":
                    return self.cut()
                error = {"code": "server_error", "message": "The model failed mid-answer"}
                event("response.failed", {"response": {**response, "status": "failed", "error": error}})
                return self.end_sse()
            event("response.output_text.delta", {**place, "delta": piece, "logprobs": []})
        event("response.output_text.done", {**place, "text": text, "logprobs": []})
        part = {"type": "output_text", "text": text, "annotations": []}
        event("response.content_part.done", {**place, "part": part})
        done = {**item, "status": "completed", "content": [part]}
        event("response.output_item.done", {"output_index": 0, "item": done})
        # codex shows a message once its item is done: the response's end
        # (and so the CLI's exit) is what waits for the gate.
        self.wait_for_gate()
        if breaks == "late-cut":
            time.sleep(BREAK_PAUSE)
            return self.cut()
        usage = {
            "input_tokens": 321,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": len(pieces),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 321 + len(pieces),
        }
        completed = {**response, "status": "completed", "output": [done], "usage": usage}
        event("response.completed", {"response": completed})
        self.end_sse()


# Running the CLIs against a fake endpoint.

CLIS = ["claude", "codex"]
FAKE_KEY = "sk-fake-endpoint"
# Each CLI retries once (fast, and still a retry): Claude Code reads
# CLAUDE_CODE_MAX_RETRIES (default 10, about 3 minutes of backoff); codex
# a provider's request_max_retries (a failed request, default 4) and
# stream_max_retries (a broken stream, default 5). Neither bounds the wait
# for a response's headers short of minutes (claude: API_TIMEOUT_MS,
# default 600 s; codex: nothing), so a hanging endpoint is up to
# `--timeout-secs`.
CLAUDE_RETRIES = {"CLAUDE_CODE_MAX_RETRIES": "1"}
CODEX_RETRIES = "request_max_retries=1,stream_max_retries=1"
# The preset's command lines (core/src/agent/exec/preset.rs), for
# recording: the prompt goes on stdin.
PRESET_COMMANDS = {
    "claude": (["claude", "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages"], []),
    "codex": (["codex", "exec", "--json", "--skip-git-repo-check"], ["-"]),
}
PROMPT = "Tell me about pelicans"


def cli_setup(cli, fake, home, model):
    """The arguments (after `--`) and environment that point `cli` at
    `fake`, asking it for `model`, with `home` as its HOME."""
    env = {"PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}", "HOME": str(home), **CLI_TELEMETRY_OFF}
    if cli == "claude":
        env.update(
            {
                "ANTHROPIC_BASE_URL": fake.base,
                "ANTHROPIC_API_KEY": FAKE_KEY,
                "ANTHROPIC_SMALL_FAST_MODEL": model,
                "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
                **CLAUDE_RETRIES,
            }
        )
        return ["--model", model], env
    (Path(home) / ".codex").mkdir(exist_ok=True)
    env.update({"CODEX_HOME": str(Path(home) / ".codex"), "FAKE_KEY": FAKE_KEY})
    provider = f'{{name="fake",base_url="{fake.base}/v1",env_key="FAKE_KEY",wire_api="responses",{CODEX_RETRIES}}}'
    return ["-c", "model_provider=fake", "-c", f"model_providers.fake={provider}", "-m", model], env


# Recordings: tests/fixtures/exec/<cli>-<case>.jsonl, each CLI's stdout as
# it ran against a fake endpoint in that mode: (cli, mode, extra
# environment, exit status; None: it hung and was killed after HANG_FOR s).
HANG_FOR = 5
RECORDINGS = {
    f"{cli}-{mode}": (cli, mode, {}, status)
    for cli, statuses in {
        "claude": {OK: 0, ERROR_500: 1, OVERLOADED: 1, HANG: None, CUT: 1, STREAM_ERROR: 1, STREAMS_FAIL: 0},
        "codex": {OK: 0, ERROR_500: 1, OVERLOADED: 1, HANG: None, CUT: 1, STREAM_ERROR: 1},
    }.items()
    for mode, status in statuses.items()
}
RECORDINGS.update(
    {f"{cli}-{mode}": (cli, mode, {}, 0) for cli in CLIS for mode in (CUT_THEN_OK, LATE_CUT_THEN_OK)}
)
# Claude Code's own request timeout, short: what it prints when it gives up.
RECORDINGS["claude-hang-api-timeout"] = ("claude", HANG, {"API_TIMEOUT_MS": "2000"}, 1)


def record(name):
    """Runs a recording's CLI against a fake endpoint; returns its stdout
    lines and exit status (None when it was killed for hanging)."""
    cli, mode, extra_env, _ = RECORDINGS[name]
    head, tail = PRESET_COMMANDS[cli]
    with FakeModel(mode) as fake, tempfile.TemporaryDirectory() as home:
        args, env = cli_setup(cli, fake, home, "fake-model")
        env.update(extra_env)
        proc = subprocess.Popen(
            [*head, *args, *tail],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=home,
            start_new_session=True,
        )
        proc.stdin.write(PROMPT.encode())
        proc.stdin.close()
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        try:
            status = proc.wait(timeout=HANG_FOR if mode == HANG and not extra_env else 120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            status = None
        reader.join(10)
    return [line.decode() for line in lines], status


def record_all(names):
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in names:
        lines, status = record(name)
        expected = RECORDINGS[name][3]
        (FIXTURES / f"{name}.jsonl").write_text("".join(lines))
        flag = "" if status == expected else f"  (expected exit {expected})"
        print(f"{name}.jsonl: {len(lines)} lines, exit {status}{flag}")



# What an editor sees.


class Seen:
    """One streamed chat completion as an editor saw it: the text pieces,
    and the error that ended it (an HTTP status before any text, or an
    error raised mid-stream), how long it took, the usage reported."""

    def __init__(self, server, model, on_first=None):
        self.pieces, self.error, self.status, self.usage = [], None, None, None
        start = time.monotonic()
        try:
            stream = client(server).chat.completions.create(
                model=model,
                stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": PROMPT}],
            )
            for chunk in stream:
                self.usage = chunk.usage or self.usage
                if chunk.choices and chunk.choices[0].delta.content:
                    self.pieces.append(chunk.choices[0].delta.content)
                    if len(self.pieces) == 1 and on_first:
                        on_first()
        except openai.APIStatusError as e:
            self.error, self.status = e, e.status_code
        except openai.APIError as e:
            self.error = e
        self.seconds = time.monotonic() - start

    @property
    def text(self):
        return "".join(self.pieces)

    def __repr__(self):
        return f"<text {self.text!r}, status {self.status}, error {self.error!r}, {self.seconds:.1f} s>"


def assert_no_word_twice(seen):
    """None of the answer's words was shown twice (an answer that failed
    never got as far as `MORE`)."""
    for word in ANSWER.split():
        assert seen.text.count(word) <= 1, f"{word!r} shown twice: {seen!r}"


def cli_processes(marker, agent):
    """The CLI's processes (found by `marker` in their command line; not
    `agent exec` itself, whose arguments hold it too)."""
    return [pid for pid in running(marker) if pid != agent.proc.pid]


def wait_cli_gone(marker, agent, timeout=10):
    deadline = time.monotonic() + timeout
    while cli_processes(marker, agent) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli_processes(marker, agent) == [], f"the CLI still runs for {marker}"


@pytest.fixture
def cli_agent(exec_agent, tmp_path):
    """Starts `agent exec --preset <cli>` with the CLI pointed at a fake
    endpoint in `mode`; returns (fake, agent, model). The model name,
    fresh for each test, marks the CLI's processes."""
    fakes = []

    def start(cli, mode, timeout_secs=30, gate=None):
        fake = FakeModel(mode, gate)
        fakes.append(fake)
        model = f"{cli}-fake-{uuid.uuid4().hex[:10]}"
        home = tmp_path / "home"
        home.mkdir()
        args, env = cli_setup(cli, fake, home, model)
        agent = exec_agent(
            model, "--preset", cli, "--cwd", str(home), "--timeout-secs", str(timeout_secs), "--", *args, env=env
        )
        return fake, agent, model

    yield start
    for fake in fakes:
        fake.close()


@pytest.mark.parametrize("cli", CLIS)
def test_an_answer_streams_once_while_the_cli_runs(server, cli_agent, cli):
    """The endpoint holds the end of its answer (claude: the last piece;
    codex, which shows a message whole: the response's end) until the
    editor has its first text: so that text came while the CLI ran."""
    gate = threading.Event()
    fake, agent, model = cli_agent(cli, OK, gate=gate)
    seen = Seen(server, model, on_first=gate.set)
    assert seen.error is None, seen
    assert not fake.gate_timed_out, "the first text reached the editor only after the CLI ended"
    assert seen.text == ANSWER, seen
    if cli == "claude":
        assert len(seen.pieces) > 1, seen
    # The CLI's own count of the request (the fake endpoint's).
    assert seen.usage.prompt_tokens == 321
    assert len(fake.model_requests()) == 1
    wait_cli_gone(model, agent)


@pytest.mark.parametrize(
    "mode",
    [
        ERROR_500,
        OVERLOADED,
        CUT,
        STREAM_ERROR,
    ],
)
def test_claude_on_a_failing_endpoint_is_an_error(server, cli_agent, mode):
    a_failing_endpoint_is_an_error(server, cli_agent, "claude", mode)


@pytest.mark.parametrize("mode", [ERROR_500, OVERLOADED, CUT, STREAM_ERROR])
def test_codex_on_a_failing_endpoint_is_an_error(server, cli_agent, mode):
    a_failing_endpoint_is_an_error(server, cli_agent, "codex", mode)


def a_failing_endpoint_is_an_error(server, cli_agent, cli, mode):
    """The CLI gives up (after its one retry) and says so: the editor gets
    a 502, or an error mid-stream, well before `--timeout-secs`; never a
    success, and no text twice."""
    fake, agent, model = cli_agent(cli, mode, timeout_secs=30)
    seen = Seen(server, model)
    assert seen.error is not None, f"a failure reached the editor as a success: {seen!r}"
    assert seen.status in (None, 502), seen
    assert seen.seconds < 20, seen
    # What the CLI said went wrong.
    said = {ERROR_500: ["500", "high demand"], OVERLOADED: ["529", "503"], CUT: ["500", "disconnected"]}
    said[STREAM_ERROR] = ["500", "failed mid-answer"]
    assert any(words in str(seen.error) for words in said[mode]), seen
    assert_no_word_twice(seen)
    # The CLI did reach the endpoint, and retried.
    assert len(fake.model_requests()) >= 2
    wait_cli_gone(model, agent)


@pytest.mark.parametrize("cli", CLIS)
def test_a_whole_answer_that_failed_is_a_502(server, cli_agent, cli):
    """Asked without streaming, the editor gets the CLI's failure as a
    502 with what it said, not an answer holding its error message."""
    fake, agent, model = cli_agent(cli, ERROR_500, timeout_secs=30)
    with pytest.raises(openai.APIStatusError) as failed:
        client(server).chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
    assert failed.value.status_code == 502
    message = failed.value.body["message"]
    assert ("API Error: 500" if cli == "claude" else "high demand") in message, message
    wait_cli_gone(model, agent)


@pytest.mark.parametrize("cli", CLIS)
def test_a_hanging_endpoint_times_out(server, cli_agent, cli):
    """Neither CLI gives up on an endpoint that never answers within
    minutes: `--timeout-secs` does, with a 504, and kills the CLI. (6 s: a
    CLI starting on a loaded machine reaches its endpoint within that.)"""
    fake, agent, model = cli_agent(cli, HANG, timeout_secs=6)
    seen = Seen(server, model)
    # A stream's headers went before the timeout: the error comes in it.
    assert seen.status in (None, 504) and "did not answer within 6 s" in str(seen.error), seen
    assert seen.text == "", seen
    assert 6 <= seen.seconds < 14, seen
    assert len(fake.model_requests()) >= 1
    wait_cli_gone(model, agent)


@pytest.mark.parametrize(
    "cli, mode, expected",
    [
        # claude asks again without streaming; its whole message repeats
        # the streamed start.
        pytest.param("claude", STREAMS_FAIL, ANSWER, id="claude-streams-fail"),
        # claude retries the stream, which repeats the abandoned start.
        pytest.param(
            "claude",
            CUT_THEN_OK,
            ANSWER,
            id="claude-cut-then-ok",
        ),
        # claude kept the finished block and asks the model to go on after
        # it: what follows is new, although it begins the same way.
        pytest.param("claude", LATE_CUT_THEN_OK, ANSWER + "".join(MORE), id="claude-late-cut-then-ok"),
        # codex retries the stream: no message was done, none repeated.
        pytest.param("codex", CUT_THEN_OK, ANSWER, id="codex-cut-then-ok"),
        # codex keeps the message that was done and sends it back: the
        # model goes on, a message of its own.
        pytest.param("codex", LATE_CUT_THEN_OK, ANSWER + "\n\n" + "".join(MORE), id="codex-late-cut-then-ok"),
    ],
)
def test_an_answer_retried_after_a_broken_stream_is_shown_once(server, cli_agent, cli, mode, expected):
    fake, agent, model = cli_agent(cli, mode, timeout_secs=30)
    seen = Seen(server, model)
    assert seen.error is None, seen
    assert seen.text == expected, seen
    assert len(fake.model_requests()) == 2
    wait_cli_gone(model, agent)


# The recordings replayed: a stand-in for the CLI prints one, as the CLI
# printed it, through the preset's parser.

# What the editor must see for each recording: the whole text of a
# success, or (None, status, the model text it may have seen first).
REPLAYED = {
    "claude-ok": ANSWER,
    "claude-streams-fail": ANSWER,
    "claude-cut-then-ok": ANSWER,
    "claude-late-cut-then-ok": ANSWER + "".join(MORE),
    "claude-500": (None, 502, ""),
    "claude-overloaded": (None, 502, ""),
    "claude-hang-api-timeout": (None, 502, ""),
    "claude-cut": (None, 502, "Pelicans glide "),
    "claude-stream-error": (None, 502, "Pelicans glide "),
    "claude-hang": (None, 504, ""),
    "codex-ok": ANSWER,
    "codex-cut-then-ok": ANSWER,
    "codex-late-cut-then-ok": ANSWER + "\n\n" + "".join(MORE),
    "codex-500": (None, 502, ""),
    "codex-overloaded": (None, 502, ""),
    "codex-cut": (None, 502, ""),
    "codex-stream-error": (None, 502, ""),
    "codex-hang": (None, 504, ""),
}


@pytest.mark.parametrize("name", REPLAYED)
def test_a_recording_replayed_reaches_the_editor_as_it_should(server, exec_agent, tmp_path, name):
    cli, _, _, status = RECORDINGS[name]
    marker, sleep = sleeper()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    end = sleep if status is None else f"exit {status}"
    stand_in = bin_dir / cli
    stand_in.write_text(f"#!/bin/sh\ncat >/dev/null\ncat '{FIXTURES / name}.jsonl'\n{end}\n")
    stand_in.chmod(0o755)
    model = f"replay-{name}"
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    exec_agent(model, "--preset", cli, "--timeout-secs", "2", env=env)
    seen = Seen(server, model)
    expected = REPLAYED[name]
    if isinstance(expected, str):
        assert seen.error is None and seen.text == expected, seen
    else:
        _, status_code, shown = expected
        assert seen.error is not None, seen
        assert seen.status in (None, status_code) and seen.text == shown, seen
        if status is None:
            wait_gone(marker)


if __name__ == "__main__":
    if sys.argv[1:2] != ["record"]:
        sys.exit("usage: test_agent_exec_failures.py record [name…]")
    record_all(sys.argv[2:] or list(RECORDINGS))
