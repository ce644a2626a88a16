"""`agent exec --preset qwen` and `--preset gemini`, for real: qwen-code and
Gemini CLI from npm (tests/node), each run per request by `agent exec` on
both runtimes, fully offline and headless, with telemetry, usage statistics
and update checks off. Nothing leaves 127.0.0.1:

- qwen speaks the OpenAI chat API: it is pointed (OPENAI_BASE_URL,
  OPENAI_API_KEY, OPENAI_MODEL, `--auth-type openai`) at the provider's own
  /v1, where the echo model answers, so the loop is editor → provider →
  agent exec → qwen → provider → echo, and back.
- gemini speaks Google's Gemini API, which the provider does not serve: it
  is pointed (GOOGLE_GEMINI_BASE_URL, GEMINI_API_KEY, settings
  `security.auth.selectedType: gemini-api-key`) at `FakeModel` below, a
  Gemini `streamGenerateContent?alt=sse` endpoint written here.

`FakeModel` also serves the OpenAI chat API, for the cases where qwen's
model endpoint must fail. What an editor must see: the CLI's answer once,
streamed, with the CLI's usage; and a failed model endpoint as an error
(502, or an error raised mid-stream), never as a success. Every CLI run
has a HOME of its own (the test's tmp_path), and none outlives its request.

Run as a script (`python tests/test_agent_exec_clis.py record`) it records
each CLI's stdout for each case into tests/fixtures/exec/ (see RECORDINGS)."""

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

from conftest import API_KEY, ROOT, FakeHandler, LocalHttpServer, live_processes, with_env  # noqa: E402
from test_agent_exec import NODE_BIN, exec_agent, two_turns  # noqa: E402,F401

FIXTURES = ROOT / "tests" / "fixtures" / "exec"
# The exit status of each recording's CLI, one `name status` a line.
EXITS = FIXTURES / "qwen-gemini-exits.txt"

# What `FakeModel` answers, in pieces (each word once in the whole answer).
PIECES = ["The pelican ", "is a large ", "water bird."]
ANSWER = "".join(PIECES)
# The token counts it reports with an answer.
PROMPT_TOKENS = 321
COMPLETION_TOKENS = 9
# A broken stream sends this many pieces, waits (so the CLI prints them),
# then breaks.
BROKEN_AFTER = 2
BREAK_PAUSE = 0.3

# What `FakeModel` does with a model request; a plan is a list of these,
# one per request in turn, the last one repeating.
OK = "ok"
# HTTP 500.
ERROR_500 = "500"
# HTTP 503 with `retry-after-ms: 1`: a CLI that honours it (qwen) retries at
# once, so running out of retries takes seconds, not minutes.
UNAVAILABLE = "503"
# A stream that breaks off after BROKEN_AFTER pieces: the connection closes
# in the middle of the chunked body.
CUT = "cut"
# A stream whose connection is reset (TCP RST) after BROKEN_AFTER pieces.
RESET = "reset"
# A stream that ends properly after BROKEN_AFTER pieces, but without the
# answer's end (Gemini: no finish reason; OpenAI: no finish_reason, no
# [DONE]).
ENDS_EARLY = "ends-early"

GEMINI_KEY = "fake-gemini-key"
GEMINI_MODEL = "gemini-2.5-flash"
# The longest any one CLI run may take in these tests.
RUN_TIMEOUT = 90


class FakeModel(LocalHttpServer):
    """A model endpoint on 127.0.0.1: Gemini's
    `POST /v1beta/models/{model}:streamGenerateContent?alt=sse` (and
    `:generateContent`), and OpenAI's `POST /v1/chat/completions` (streamed),
    answering `PIECES` or failing as `plan` says. With `gate`, the last
    piece of an answer waits until the gate is set. Requests are kept in
    `requests` as (path, headers, body)."""

    def __init__(self, *plan, gate=None):
        self.plan = list(plan) or [OK]
        self.gate = gate
        self.gate_timed_out = False
        super().__init__(Handler)

    def close(self):
        if self.gate is not None:
            self.gate.set()
        super().close()

    def model_requests(self):
        with self.lock:
            return [(p, h, b) for p, h, b in self.requests if is_model_path(p)]


def is_model_path(path):
    return path == "/v1/chat/completions" or (path.startswith("/v1beta/models/") and ":" in path)


class Handler(FakeHandler):
    server: FakeModel

    def do_GET(self):
        self.send_json(404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}})

    def do_POST(self):
        body = self.json_body()
        path = urlparse(self.path).path
        with self.server.lock:
            self.server.requests.append((path, dict(self.headers), body))
            turn = sum(1 for p, _, _ in self.server.requests if is_model_path(p))
        if not is_model_path(path):
            return self.send_json(404, {"error": {"code": 404, "message": f"no {path} here", "status": "NOT_FOUND"}})
        mode = self.server.plan[min(turn, len(self.server.plan)) - 1]
        gemini = path.startswith("/v1beta/")
        if mode in (ERROR_500, UNAVAILABLE):
            status = int(mode)
            if gemini:
                error = {"error": {"code": status, "message": "upstream exploded", "status": "INTERNAL"}}
            else:
                error = {"error": {"message": "upstream exploded", "type": "server_error", "code": status}}
            return self.send_json(status, error, {"retry-after-ms": "1"} if mode == UNAVAILABLE else {})
        if gemini and path.endswith(":generateContent"):
            return self.send_json(200, gemini_chunk(ANSWER, finish=True))
        pieces = PIECES if gemini else rest_of_answer(body)
        self.start_sse()
        for i, piece in enumerate(pieces):
            if mode in (CUT, RESET, ENDS_EARLY) and i == BROKEN_AFTER:
                time.sleep(BREAK_PAUSE)
                return self.end_sse() if mode == ENDS_EARLY else self.cut(reset=mode == RESET)
            last = i == len(pieces) - 1
            if last and self.server.gate is not None and not self.server.gate.wait(RUN_TIMEOUT):
                self.server.gate_timed_out = True
            self.sse(gemini_chunk(piece, finish=last) if gemini else openai_chunk({"content": piece}))
            time.sleep(0.05)
        if not gemini:
            self.sse(openai_chunk({}, finish="stop"))
            self.sse(openai_chunk(None))
            self.sse("[DONE]")
        self.end_sse()

    def sse(self, data):
        text = data if isinstance(data, str) else json.dumps(data)
        self.chunk(f"data: {text}\r\n\r\n".encode())


def rest_of_answer(body):
    """The pieces of ANSWER an OpenAI chat request still wants: all of them,
    or, when its conversation ends with an assistant message holding the
    answer's start (qwen resuming a broken stream asks the model to go on
    from there), what follows it."""
    done = ""
    for message in body.get("messages") or []:
        if message.get("role") == "assistant":
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
            done = content if isinstance(content, str) else ""
    if not done or not ANSWER.startswith(done) or done == ANSWER:
        return PIECES
    rest, at = [], 0
    for piece in PIECES:
        at += len(piece)
        if at > len(done):
            rest.append(piece[max(0, len(piece) - (at - len(done))) :])
    return rest


def gemini_chunk(text, finish=False):
    """One GenerateContentResponse; the last of an answer has its finish
    reason and usage."""
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    chunk = {"candidates": [candidate], "modelVersion": "fake-gemini"}
    if finish:
        candidate["finishReason"] = "STOP"
        chunk["usageMetadata"] = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
    return chunk


def openai_chunk(delta, finish=None):
    """One chat.completion.chunk; with no delta, the usage chunk."""
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake"}
    if delta is None:
        chunk["choices"] = []
        chunk["usage"] = {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
    else:
        chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return chunk


# How each CLI is set up: its own HOME (settings in it), the environment
# that points it at 127.0.0.1, and the arguments added to its preset.


def cli_env(home, **extra):
    return {
        "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "NO_COLOR": "1",
        # No proxy may take a request elsewhere.
        **{name: "" for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


def write_settings(path, settings):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2))


def qwen_setup(home, base_url, api_key=API_KEY, memory=False, model="echo"):
    """qwen-code on an OpenAI-compatible endpoint (`base_url` ends in /v1),
    model `model`. Usage statistics (sent to aliyuncs.com otherwise),
    telemetry and updates are off. `maxRetries: 0` turns off the OpenAI
    SDK's own retries and qwen's rate-limit retries (503/429: ten more, a
    minute apart); qwen's 7 attempts with backoff stay. Its background
    memory agents are off unless `memory`: they follow each answer with a
    model request of their own, whose tokens qwen adds to the result's
    usage. Not `--bare`: it skips the settings file."""
    settings = {
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"enableAutoUpdate": False},
        "model": {"generationConfig": {"maxRetries": 0}},
    }
    if not memory:
        settings["memory"] = {
            "enableManagedAutoMemory": False,
            "enableManagedAutoDream": False,
            "enableAutoSkill": False,
        }
    write_settings(home / ".qwen" / "settings.json", settings)
    env = cli_env(
        home,
        OPENAI_BASE_URL=base_url,
        OPENAI_API_KEY=api_key,
        OPENAI_MODEL=model,
        QWEN_USAGE_STATISTICS_ENABLED="false",
        QWEN_TELEMETRY_ENABLED="false",
    )
    return env, ["--auth-type", "openai"]


def gemini_setup(home, base_url, max_attempts=None):
    """Gemini CLI on a Gemini API endpoint at `base_url`, with an API key.
    A fixed model (`-m`) skips the router's classifier request; the folder
    is trusted (headless runs refuse an untrusted one); usage statistics,
    telemetry and updates are off. `max_attempts` (1…10, default 10) bounds
    its retries."""
    general = {"enableAutoUpdate": False, "enableAutoUpdateNotification": False}
    if max_attempts is not None:
        general["maxAttempts"] = max_attempts
    write_settings(
        home / ".gemini" / "settings.json",
        {
            "security": {"auth": {"selectedType": "gemini-api-key"}},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": general,
        },
    )
    env = cli_env(
        home,
        GOOGLE_GEMINI_BASE_URL=base_url,
        GEMINI_API_KEY=GEMINI_KEY,
        GEMINI_TELEMETRY_ENABLED="false",
        GEMINI_CLI_TRUST_WORKSPACE="true",
    )
    return env, ["-m", GEMINI_MODEL]


# The tests


def unique_model(cli):
    return f"{cli}-{uuid.uuid4().hex[:8]}"


def editor(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=RUN_TIMEOUT)


def start(exec_agent, cli, home, setup):
    """`agent exec --preset <cli>` with a unique model name, its CLI running
    in (and with its HOME at) `home`."""
    env, extra = setup
    model = unique_model(cli)
    agent = exec_agent(
        model, "--preset", cli, "--cwd", str(home), "--timeout-secs", str(RUN_TIMEOUT), "--", *extra, env=env
    )
    return model, agent


def streamed(server, model, prompt):
    """The editor's streamed request: its content pieces and its usage."""
    stream = editor(server).chat.completions.create(
        model=model,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": prompt}],
    )
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    usage = [c.usage for c in chunks if c.usage]
    return pieces, usage[-1] if usage else None


def failed(server, model, prompt):
    """The editor's whole (non-streamed) request, which must fail: its error."""
    with pytest.raises(openai.APIStatusError) as error:
        editor(server).chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
    return error.value


def failed_streaming(server, model, prompt):
    """The editor's streamed request, which must end in an error, not a
    finished answer: the text it got before the error."""
    pieces = []
    with pytest.raises(openai.APIError):
        stream = editor(server).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": prompt}]
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    return pieces


def processes_with_home(home, but=()):
    """Processes (not zombies) whose environment has HOME=`home`."""
    return live_processes(with_env("HOME", home), but)


def no_cli_left(home, agent, timeout=10):
    """Every process the CLI started (they share its HOME) is gone; only
    `agent exec` itself has that HOME."""
    deadline = time.monotonic() + timeout
    while processes_with_home(home, but={agent.proc.pid}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with_home(home, but={agent.proc.pid}) == []


def test_qwen_serves_as_a_model(server, exec_agent, tmp_path):
    """qwen runs per request on the provider's own chat API, where the echo
    model repeats its prompt: the editor gets qwen's streamed text once,
    and qwen's own usage (its system prompt included)."""
    model, agent = start(exec_agent, "qwen", tmp_path, qwen_setup(tmp_path, server.base + "/v1"))
    word = f"pelican{uuid.uuid4().hex[:6]}"
    prompt = f"Say the word {word}"
    pieces, usage = streamed(server, model, prompt)
    # qwen reads its prompt from stdin and adds a blank line to it.
    text = "".join(pieces).rstrip("\n")
    # qwen's `stream_event` deltas, its whole `assistant` message and its
    # `result` all carry the text: it must reach the editor once.
    assert text.endswith(prompt), text[-300:]
    assert text.count(word) == 1
    assert len(pieces) > 1
    assert usage is not None
    # qwen's own count of what it sent the model: thousands of tokens, not
    # the provider's estimate of the editor's few words.
    assert usage.prompt_tokens > 1000
    assert usage.completion_tokens > 0
    no_cli_left(tmp_path, agent)


def test_gemini_serves_as_a_model(server, exec_agent, tmp_path):
    """gemini runs per request on a Gemini API endpoint: the editor gets its
    answer streamed in pieces, exactly once, with the endpoint's usage."""
    with FakeModel(OK) as fake:
        model, agent = start(exec_agent, "gemini", tmp_path, gemini_setup(tmp_path, fake.base))
        pieces, usage = streamed(server, model, "Tell me about pelicans")
        assert "".join(pieces) == ANSWER
        assert len(pieces) > 1
        assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
        # One model request, streamed, with the editor's prompt and the key.
        [(path, headers, body)] = fake.model_requests()
        assert path == f"/v1beta/models/{GEMINI_MODEL}:streamGenerateContent"
        assert headers.get("x-goog-api-key") == GEMINI_KEY
        assert "Tell me about pelicans" in json.dumps(body["contents"])
    no_cli_left(tmp_path, agent)


def test_a_continued_chat_resumes_the_qwen_session(server, exec_agent, tmp_path):
    """The second turn of a chat resumes qwen's own session (`--resume`,
    from the folder it was made in) with the new message alone: qwen sends
    the echo model the real conversation, so the answer is the new message
    itself, not a transcript with speaker labels; and qwen kept one session
    for both turns."""
    model, agent = start(exec_agent, "qwen", tmp_path, qwen_setup(tmp_path, server.base + "/v1"))
    one, two = two_turns(server, model, "Say the word pelican", "Now say heron")
    assert one.choices[0].message.content.rstrip("\n").endswith("Say the word pelican")
    text = two.choices[0].message.content.rstrip("\n")
    assert text.endswith("Now say heron") and "User:" not in text and "pelican" not in text, text[-300:]
    sessions = {p.stem for p in (tmp_path / ".qwen").rglob("*.jsonl") if "chats" in p.parts}
    assert len(sessions) == 1, sessions
    no_cli_left(tmp_path, agent)


def test_a_continued_chat_resumes_the_gemini_session(server, exec_agent, tmp_path):
    """The second turn resumes gemini's session: its model request holds the
    first turn as real contents (user, model) and the new message alone as
    the last, never a flattened transcript."""
    with FakeModel(OK) as fake:
        model, agent = start(exec_agent, "gemini", tmp_path, gemini_setup(tmp_path, fake.base))
        one, two = two_turns(server, model, "Tell me about pelicans", "And herons?")
        assert one.choices[0].message.content == ANSWER
        assert two.choices[0].message.content == ANSWER
        first, second = [body["contents"] for _, _, body in fake.model_requests()]
        texts = [(c["role"], "".join(p.get("text", "") for p in c["parts"])) for c in second]
        assert texts[-1] == ("user", "And herons?"), texts
        assert ("model", ANSWER) in texts and "User:" not in json.dumps(second), texts
        assert any("Tell me about pelicans" in t for r, t in texts if r == "user"), texts
    no_cli_left(tmp_path, agent)


@pytest.mark.parametrize("cli", ["qwen", "gemini"])
def test_the_first_text_reaches_the_editor_while_the_cli_runs(server, exec_agent, tmp_path, cli):
    """The endpoint holds the last piece of its answer until the editor has
    its first text: so that text came while the CLI was still running."""
    gate = threading.Event()
    with FakeModel(OK, gate=gate) as fake:
        setup = qwen_setup(tmp_path, fake.base + "/v1") if cli == "qwen" else gemini_setup(tmp_path, fake.base)
        model, agent = start(exec_agent, cli, tmp_path, setup)
        stream = editor(server).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": "Tell me about pelicans"}]
        )
        pieces = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                gate.set()
        assert not fake.gate_timed_out, "the first text reached the editor only after the CLI ended"
        assert "".join(pieces) == ANSWER
    no_cli_left(tmp_path, agent)


def test_qwen_with_a_failing_endpoint_is_an_error(server, exec_agent, tmp_path):
    """qwen's model endpoint answers 503 to every try: once qwen gives up,
    the editor gets a 502 (streamed: an error), never an answer."""
    with FakeModel(UNAVAILABLE) as fake:
        model, agent = start(exec_agent, "qwen", tmp_path, qwen_setup(tmp_path, fake.base + "/v1"))
        error = failed(server, model, "Say the word pelican")
        assert error.status_code == 502, error
        assert error.body["message"], error.body
        # qwen did ask, and retried, before it gave up.
        assert len(fake.model_requests()) > 1
        failed_streaming(server, model, "Say the word heron")
    no_cli_left(tmp_path, agent)


def test_gemini_with_a_failing_endpoint_is_an_error(server, exec_agent, tmp_path):
    """gemini's model endpoint answers 500 (one attempt): the editor gets a
    502 with gemini's error, or a stream that ends in an error."""
    with FakeModel(ERROR_500) as fake:
        setup = gemini_setup(tmp_path, fake.base, max_attempts=1)
        model, agent = start(exec_agent, "gemini", tmp_path, setup)
        error = failed(server, model, "Tell me about pelicans")
        assert error.status_code == 502, error
        assert "upstream exploded" in error.body["message"], error.body
        assert failed_streaming(server, model, "Tell me about herons") == []
    no_cli_left(tmp_path, agent)


@pytest.mark.parametrize(
    "mode, max_attempts",
    [
        # The connection closes mid-body: gemini does not retry, it fails
        # (`status: "error"` with the error, exit 1).
        (CUT, None),
        # The stream ends with no finish reason, one attempt: gemini prints
        # an `error` line and `status: "error"`, and exits 0.
        (ENDS_EARLY, 1),
    ],
)
def test_gemini_with_a_stream_broken_midway_is_an_error(server, exec_agent, tmp_path, mode, max_attempts):
    """gemini's stream breaks off after two pieces: the editor gets an
    error, not the partial text as an answer."""
    with FakeModel(mode) as fake:
        setup = gemini_setup(tmp_path, fake.base, max_attempts=max_attempts)
        model, agent = start(exec_agent, "gemini", tmp_path, setup)
        error = failed(server, model, "Tell me about pelicans")
        assert error.status_code == 502, error
        # Streamed, the pieces before the break arrive, then the error.
        assert "".join(failed_streaming(server, model, "Tell me about herons")) == "".join(PIECES[:BROKEN_AFTER])
        assert len(fake.model_requests()) == 2
    no_cli_left(tmp_path, agent)


def test_qwen_resuming_a_broken_stream_shows_its_answer_once(server, exec_agent, tmp_path):
    """qwen's stream breaks off after two pieces: qwen asks the model to go
    on from there (a `system` `retry` line with `preserveText: true`) and
    the rest follows: the editor gets the answer once."""
    with FakeModel(CUT, OK) as fake:
        model, agent = start(exec_agent, "qwen", tmp_path, qwen_setup(tmp_path, fake.base + "/v1"))
        pieces, usage = streamed(server, model, "Tell me about pelicans")
        assert len(fake.model_requests()) == 2
    no_cli_left(tmp_path, agent)
    assert "".join(pieces) == ANSWER
    assert usage.completion_tokens == COMPLETION_TOKENS


def test_qwen_retried_after_a_stream_that_ended_early_shows_its_answer_once(server, exec_agent, tmp_path):
    with FakeModel(ENDS_EARLY, OK) as fake:
        model, agent = start(exec_agent, "qwen", tmp_path, qwen_setup(tmp_path, fake.base + "/v1"))
        pieces, _ = streamed(server, model, "Tell me about pelicans")
        assert len(fake.model_requests()) == 2
    no_cli_left(tmp_path, agent)
    assert "".join(pieces) == ANSWER


def test_gemini_retried_after_a_stream_that_ended_early_shows_its_answer_once(server, exec_agent, tmp_path):
    with FakeModel(ENDS_EARLY, OK) as fake:
        model, agent = start(exec_agent, "gemini", tmp_path, gemini_setup(tmp_path, fake.base))
        pieces, _ = streamed(server, model, "Tell me about pelicans")
        assert len(fake.model_requests()) == 2
    no_cli_left(tmp_path, agent)
    assert "".join(pieces) == ANSWER


# Recording each CLI's stdout, run as a script.

PROMPT = "Say the word pelican"

# name: (cli, FakeModel plan, gemini's max_attempts or None for its default,
# or "memory" for qwen's memory agents on). Each CLI's exit status goes to
# EXITS.
RECORDINGS = {
    "qwen-answer": ("qwen", [OK], None),
    # qwen's memory agents on (its default): a second model request after
    # the answer, counted in the result's usage.
    "qwen-answer-memory-on": ("qwen", [OK], "memory"),
    # 500 on every try: qwen makes 7 attempts over about a minute.
    "qwen-http-500": ("qwen", [ERROR_500], None),
    # 503 with retry-after-ms: 1 on every try: the same, at once.
    "qwen-http-503": ("qwen", [UNAVAILABLE], None),
    # The first stream breaks after two pieces; qwen asks the model to go on
    # and it sends the rest.
    "qwen-cut-then-answer": ("qwen", [CUT, OK], None),
    # The first stream ends early; qwen asks again, the answer comes whole.
    "qwen-ends-early-then-answer": ("qwen", [ENDS_EARLY, OK], None),
    "gemini-answer": ("gemini", [OK], None),
    # One attempt, a 500.
    "gemini-http-500": ("gemini", [ERROR_500], 1),
    # A 500, then (retried after 5 s) the answer.
    "gemini-http-500-then-answer": ("gemini", [ERROR_500, OK], None),
    # Its stream breaks after two pieces: gemini does not retry that.
    "gemini-cut": ("gemini", [CUT], None),
    # One attempt; its stream ends after two pieces, with no finish reason.
    "gemini-ends-early": ("gemini", [ENDS_EARLY], 1),
    # The first stream is reset (or ends early), the retry answers.
    "gemini-reset-then-answer": ("gemini", [RESET, OK], None),
    "gemini-ends-early-then-answer": ("gemini", [ENDS_EARLY, OK], None),
    # Every stream ends early: gemini makes 4 attempts, then fails.
    "gemini-ends-early-every-try": ("gemini", [ENDS_EARLY], None),
}


def preset_command(cli, extra, prompt):
    """The command lines of core/src/agent/exec/preset.rs."""
    if cli == "qwen":
        return ["qwen", "--output-format", "stream-json", "--include-partial-messages", *extra, "-p", prompt]
    return ["gemini", "--output-format", "stream-json", *extra, "-p", prompt]


def record(names):
    FIXTURES.mkdir(parents=True, exist_ok=True)
    codes = dict(line.split(" ", 1) for line in EXITS.read_text().splitlines()) if EXITS.exists() else {}
    try:
        for name in names:
            cli, plan, option = RECORDINGS[name]
            with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp, FakeModel(*plan) as fake:
                home = Path(tmp)
                if cli == "qwen":
                    env, extra = qwen_setup(home, fake.base + "/v1", memory=option == "memory")
                else:
                    env, extra = gemini_setup(home, fake.base, option)
                full_env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
                full_env.update(env)
                began = time.monotonic()
                run = subprocess.run(
                    preset_command(cli, extra, PROMPT),
                    cwd=home,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                (FIXTURES / f"{name}.jsonl").write_text(run.stdout)
                codes[name] = str(run.returncode)
                took = time.monotonic() - began
                print(f"{name}: exit {run.returncode}, {len(run.stdout.splitlines())} lines, {took:.1f} s")
    finally:
        EXITS.write_text("".join(f"{name} {code}\n" for name, code in sorted(codes.items())))


if __name__ == "__main__":
    if sys.argv[1:2] != ["record"]:
        sys.exit(f"usage: {sys.argv[0]} record [{' | '.join(RECORDINGS)} …]")
    record(sys.argv[2:] or list(RECORDINGS))


# Messages a CLI would take for its own options, were they on its command
# line: each must reach the model as the editor's words.
OPTION_LIKE = ["--version", "--help", "-y", "--yolo", "--output-format text"]
# Longer than Linux lets one argument be (128 KiB).
LONG_PROMPT = "pelican " * 25_000


@pytest.mark.long
def test_an_editor_message_is_never_an_option_of_gemini(server, exec_agent, tmp_path):
    """Messages that look like gemini's options (`--version` printed
    gemini's version once) and one longer than an argument may be reach
    the model as the user's words, and the editor gets the model's answer."""
    with FakeModel(OK) as fake:
        model, agent = start(exec_agent, "gemini", tmp_path, gemini_setup(tmp_path, fake.base))
        for prompt in OPTION_LIKE + [LONG_PROMPT]:
            pieces, _ = streamed(server, model, prompt)
            assert "".join(pieces) == ANSWER, (prompt[:40], pieces)
            contents = fake.model_requests()[-1][2]["contents"]
            said = "".join(p.get("text", "") for c in contents if c["role"] == "user" for p in c["parts"])
            assert prompt in said, (prompt[:40], said[-200:])
    no_cli_left(tmp_path, agent)


@pytest.mark.long
def test_an_editor_message_is_never_an_option_of_qwen(server, exec_agent, tmp_path):
    """The same for qwen (`--version` printed qwen's version once), on an
    OpenAI chat endpoint: the user's words reach the model, the model's
    answer the editor."""
    with FakeModel(OK) as fake:
        model, agent = start(exec_agent, "qwen", tmp_path, qwen_setup(tmp_path, fake.base + "/v1"))
        for prompt in OPTION_LIKE + [LONG_PROMPT]:
            pieces, _ = streamed(server, model, prompt)
            assert "".join(pieces) == ANSWER, (prompt[:40], pieces)
            messages = fake.model_requests()[-1][2]["messages"]
            said = json.dumps([m["content"] for m in messages if m["role"] == "user"])
            assert json.dumps(prompt)[1:-1] in said, (prompt[:40], said[-200:])
    no_cli_left(tmp_path, agent)


def cursor_setup(home):
    """The fake cursor-agent (tests/fixtures/exec/fake-cursor-agent.py) as
    `cursor-agent` on PATH, recording its runs in `home`/runs.jsonl: the
    environment and arguments for `start`, and the record's path."""
    bin_dir = home / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "cursor-agent"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FIXTURES / "fake-cursor-agent.py"}" "$@"\n')
    wrapper.chmod(0o755)
    record = home / "runs.jsonl"
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "HOME": str(home), "FAKE_CURSOR_RECORD": str(record)}
    return (env, []), record


def cursor_runs(record):
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_r3_cursor_an_option_like_message_reaches_cursor_agent_as_its_prompt(server, exec_agent, tmp_path):
    """Messages that look like cursor-agent's options (`--version` would
    print its version) reach it as its prompt, on stdin, and never among
    its arguments: how a CLI reads `--` is its own affair."""
    setup, record = cursor_setup(tmp_path)
    model, agent = start(exec_agent, "cursor-agent", tmp_path, setup)
    for prompt in OPTION_LIKE:
        pieces, _ = streamed(server, model, prompt)
        assert "".join(pieces) == f"Heard {len(prompt.encode())} bytes.", (prompt, pieces)
        run = cursor_runs(record)[-1]
        assert run["prompt"] == prompt
        assert prompt not in run["argv"], run["argv"]
    no_cli_left(tmp_path, agent)


def test_r3_cursor_a_200_kb_prompt_starts_cursor_agent(server, exec_agent, tmp_path):
    """A message longer than one argument may be (128 KiB on Linux) starts
    cursor-agent, which hears all of it, and the editor gets its answer."""
    setup, record = cursor_setup(tmp_path)
    model, agent = start(exec_agent, "cursor-agent", tmp_path, setup)
    assert len(LONG_PROMPT) >= 200_000
    pieces, _ = streamed(server, model, LONG_PROMPT)
    assert "".join(pieces) == f"Heard {len(LONG_PROMPT)} bytes."
    assert [run["prompt"] == LONG_PROMPT for run in cursor_runs(record)] == [True]
    no_cli_left(tmp_path, agent)
