"""`agent exec`: a CLI run once per request serves as a model, on both
runtimes. Plain commands (`sh`), and the real Claude Code and codex CLIs
from npm (tests/node), each pointed back at the provider's own Messages or
Responses API where the echo agent answers — so the whole loop is real:
editor → provider → agent exec → CLI → provider → echo, and back.

Every process a test starts is found again by a marker in its command line
and must be gone at the end: a cancelled, timed-out or orphaned CLI fails
the test."""

import os
import signal
import subprocess
import time
import uuid

import openai
import pytest

from conftest import API_KEY, BIN_DIR, BRIDGE_TOKEN, ROOT, RUNTIMES, claude_code_env, live_processes, with_env

NODE_BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"
CLI_TELEMETRY_OFF = {
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "NO_COLOR": "1",
}


class ExecAgent:
    """`agent exec` (or another process agent: `kind="acp"`) as a user runs
    it, connected to `server`."""

    def __init__(self, server, *args, env=None, cwd=None, kind="exec"):
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
        full_env.update({"MCP_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN, "RUST_LOG": "warn"})
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [str(BIN_DIR / RUNTIMES[server.runtime]), "agent", kind, "--url", server.agent_url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            text=True,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()


@pytest.fixture
def exec_agent(server):
    started = []

    def start(model, *args, **kwargs):
        agent = ExecAgent(server, "--model", model, *args, **kwargs)
        started.append(agent)
        server.wait_for_model(model)
        return agent

    yield start
    for agent in started:
        agent.stop()


def client(server, **kwargs):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60, **kwargs)


def running(marker):
    """Processes (not zombies) whose command line holds `marker`."""
    needle = marker.encode()
    return live_processes(lambda _environ, cmdline: needle in cmdline.replace(b"\0", b" "))


def wait_gone(marker, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(marker):
            return
        time.sleep(0.05)
    raise AssertionError(f"a process with {marker!r} is still running: {running(marker)}")


def wait_running(marker, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running(marker):
            return
        time.sleep(0.05)
    raise AssertionError(f"no process with {marker!r} started")


def zombie_children(pid):
    """Children of `pid` that exited and were never reaped."""
    zombies = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            for child in f.read().split():
                try:
                    with open(f"/proc/{child}/stat") as stat:
                        if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                            zombies.append(int(child))
                except OSError:
                    pass
    return zombies


def wait_reaped(agent, timeout=5):
    """`agent exec` reaps every process it started: none stays a zombie."""
    deadline = time.monotonic() + timeout
    while zombie_children(agent.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert zombie_children(agent.proc.pid) == []


def sleeper():
    """A `sleep` of its own for a test: the marker its process shows
    (`1234.5678`), and the shell words that run it (`sleep $((1234)).5678`,
    so the marker is not in `agent exec`'s own command line)."""
    whole, part = 1000 + uuid.uuid4().int % 9000, uuid.uuid4().int % 10000
    return f"{whole}.{part:04d}", f"sleep $(({whole})).{part:04d}"


def test_a_plain_command_answers_streamed_and_whole(server, exec_agent):
    exec_agent("shout", "--", "sh", "-c", "tr a-z A-Z")
    c = client(server)
    stream = c.chat.completions.create(
        model="shout", stream=True, messages=[{"role": "user", "content": "hello from the editor"}]
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "HELLO FROM THE EDITOR"
    whole = c.chat.completions.create(model="shout", messages=[{"role": "user", "content": "again"}])
    assert whole.choices[0].message.content == "AGAIN"
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens > 0


def test_the_prompt_goes_into_a_templated_argument(server, exec_agent):
    exec_agent("say", "--", "printf", "[%s]", "{prompt}")
    answer = client(server).chat.completions.create(
        model="say", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "[Be brief.\n\nhi]"


def test_a_prompt_too_long_for_an_argument_is_a_400_saying_so(server, exec_agent):
    # Linux refuses a single argument over 128 KiB; a command that takes
    # its prompt as one (a user's own `{prompt}`) must say why, in
    # the code clients know for "shorten the conversation".
    exec_agent("say", "--", "printf", "[%s]", "{prompt}")
    c = client(server)
    with pytest.raises(openai.BadRequestError) as refused:
        c.chat.completions.create(model="say", messages=[{"role": "user", "content": "pelican " * 25_000}])
    assert refused.value.code == "context_length_exceeded"
    assert "`printf`" in refused.value.message and "stdin" in refused.value.message
    answer = c.chat.completions.create(model="say", messages=[{"role": "user", "content": "short"}])
    assert answer.choices[0].message.content == "[short]"


def test_text_streams_as_the_command_prints_it(server, exec_agent, tmp_path):
    # The command prints its first word, then waits for a file the test
    # makes only after that word reached the editor: an agent that held the
    # output until the command ended would never let it finish.
    gate = tmp_path / "gate"
    script = f'printf "first "; while [ ! -e {gate} ]; do sleep 0.05; done; printf second'
    exec_agent("stepper", "--timeout-secs", "30", "--", "sh", "-c", script)
    stream = client(server).chat.completions.create(
        model="stepper", stream=True, messages=[{"role": "user", "content": "go"}]
    )
    pieces = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if pieces == ["first "]:
                gate.touch()
    assert "".join(pieces) == "first second"


def test_a_failing_command_is_an_error_with_its_stderr(server, exec_agent):
    exec_agent("broken", "--", "sh", "-c", "cat >/dev/null; echo 'no credentials found' >&2; exit 3")
    with pytest.raises(openai.APIStatusError) as failed:
        client(server).chat.completions.create(model="broken", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    message = failed.value.body["message"]
    assert "exited with status 3" in message and "no credentials found" in message


def test_a_missing_cli_is_refused_at_start_naming_how_to_install_it(server, tmp_path):
    # A PATH without claude: the preset's CLI is not installed.
    bare = {"PATH": "/usr/bin:/bin"}
    cases = [
        (["--preset", "claude"], "the claude preset runs `claude`, which is not installed",
         "npm install -g @anthropic-ai/claude-code"),
        (["--preset", "gemini"], "the gemini preset runs `gemini`", "npm install -g @google/gemini-cli"),
        (["--", "no-such-program-anywhere"], "`no-such-program-anywhere` is not found on PATH", ""),
        (["--", "./not-here.sh"], "`./not-here.sh` is not an executable file", ""),
        (["--cwd", str(tmp_path / "gone"), "--", "cat"], f"--cwd {tmp_path / 'gone'}: no such directory", ""),
    ]
    for args, said, install in cases:
        agent = ExecAgent(server, *args, env=bare)
        out, err = agent.proc.communicate(timeout=10)
        assert agent.proc.returncode == 2, (args, out, err)
        assert said in err and install in err, (args, err)
        assert "Connect" not in out, out


def test_a_program_gone_after_start_is_an_error_not_a_hang(server, exec_agent, tmp_path):
    program = tmp_path / "answer.sh"
    program.write_text("#!/bin/sh\ncat\n")
    program.chmod(0o755)
    exec_agent("ghost", "--", str(program))
    program.unlink()
    with pytest.raises(openai.APIStatusError) as failed:
        client(server).chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    assert f"could not start `{program}`" in failed.value.body["message"]


def test_a_hung_command_times_out_and_is_killed(server, exec_agent):
    marker, sleep = sleeper()
    agent = exec_agent("hang", "--timeout-secs", "1", "--", "sh", "-c", sleep)
    with pytest.raises(openai.APIStatusError) as failed:
        client(server).chat.completions.create(model="hang", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 504
    assert "within 1 s" in failed.value.body["message"]
    wait_gone(marker)
    wait_reaped(agent)


def test_an_editor_that_leaves_gets_its_command_killed(server, exec_agent):
    marker, sleep = sleeper()
    agent = exec_agent("slow", "--", "sh", "-c", f"printf 'thinking '; {sleep}; echo done")
    stream = client(server).chat.completions.create(
        model="slow", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first.choices[0].delta.content == "thinking "
    wait_running(marker)
    stream.close()
    wait_gone(marker)
    wait_reaped(agent)


def test_a_background_process_holding_stderr_neither_holds_the_answer_nor_outlives_the_run(
    server, exec_agent
):
    """A CLI that answers, leaves a process running in the background with
    its stderr (not its stdout), and exits: the editor gets the answer at
    once, not when the request times out, and the leftover process goes
    with the run, so the one slot is free for the next request."""
    marker = uuid.uuid4().hex
    script = "cat >/dev/null; echo hello; sleep 97 >/dev/null & exit 0"
    agent = exec_agent(
        "leaver", "--max-running", "1", "--timeout-secs", "60", "--", "sh", "-c", script,
        env={"EXEC_TEST_MARKER": marker},
    )
    c = client(server)
    for _ in range(2):
        started = time.monotonic()
        answer = c.chat.completions.create(
            model="leaver", messages=[{"role": "user", "content": "x"}], timeout=20
        )
        assert answer.choices[0].message.content.strip() == "hello"
        assert time.monotonic() - started < 5
    # Only `agent exec` itself has the marker once its runs are over.
    left = lambda: live_processes(with_env("EXEC_TEST_MARKER", marker), but={agent.proc.pid})  # noqa: E731
    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left() == []
    wait_reaped(agent)


def test_past_the_queue_requests_are_refused_with_retry_after(server, exec_agent):
    marker, sleep = sleeper()
    exec_agent("one", "--max-running", "1", "--max-queued", "0", "--", "sh", "-c", f"printf 'busy '; {sleep}")
    c = client(server)
    held = c.chat.completions.create(model="one", stream=True, messages=[{"role": "user", "content": "x"}])
    next(iter(held))
    with pytest.raises(openai.APIStatusError) as refused:
        c.chat.completions.create(model="one", messages=[{"role": "user", "content": "y"}])
    assert refused.value.status_code == 503
    assert refused.value.response.headers.get("retry-after") == "1"
    held.close()
    wait_gone(marker)


def test_stopping_the_agent_kills_its_running_commands(server):
    marker, sleep = sleeper()
    agent = ExecAgent(server, "--model", "stoppable", "--", "sh", "-c", f"printf 'on '; {sleep}")
    server.wait_for_model("stoppable")
    stream = client(server).chat.completions.create(
        model="stoppable", stream=True, messages=[{"role": "user", "content": "x"}]
    )
    next(iter(stream))
    wait_running(marker)
    agent.proc.send_signal(signal.SIGTERM)
    agent.proc.wait(timeout=10)
    wait_gone(marker)
    # The editor is told: its stream ends with an error, not a silent stop.
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    server.wait_for_model("stoppable", present=False)


def test_usage_errors_name_what_is_missing(server):
    agent = ExecAgent(server)
    out, err = agent.proc.communicate(timeout=10)
    assert agent.proc.returncode == 2
    assert "--preset" in err and "agent exec -- cat" in err


def claude_env(server, home):
    return {
        "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        **claude_code_env(server.base, API_KEY),
    }


def test_claude_code_serves_as_a_model(server, exec_agent, tmp_path):
    """Claude Code runs per request, on the provider's own Messages API with
    the echo model behind it: the editor gets claude's streamed text once."""
    exec_agent("claude", "--preset", "claude", "--cwd", str(tmp_path), env=claude_env(server, tmp_path))
    stream = client(server).chat.completions.create(
        model="claude",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say the word pelican"}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("Say the word pelican")
    # Streamed deltas, the whole assistant message and the result all carry
    # the text: it must reach the editor once.
    assert text.count("pelican") == 1
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    usage = next(c.usage for c in chunks if c.usage)
    # Claude's own count of its request (its system prompt included).
    assert usage.prompt_tokens > 100


def test_codex_serves_as_a_model(server, exec_agent, tmp_path):
    """codex runs per request, on the provider's own Responses API with the
    echo model behind it."""
    codex_agent(server, exec_agent, tmp_path)
    answer = client(server).chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Say the word pelican"}]
    )
    text = answer.choices[0].message.content
    assert "Say the word pelican" in text and text.count("pelican") == 1
    assert answer.usage.prompt_tokens > 100


def codex_agent(server, exec_agent, home, *options):
    (home / ".codex").mkdir(exist_ok=True)
    provider = f'{{name="local",base_url="{server.base}/v1",env_key="LOCAL_KEY",wire_api="responses"}}'
    env = {
        "PATH": f"{NODE_BIN}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "CODEX_HOME": str(home / ".codex"),
        "LOCAL_KEY": API_KEY,
        **CLI_TELEMETRY_OFF,
    }
    extra = ["-c", "model_provider=local", "-c", f"model_providers.local={provider}", "-m", "echo"]
    return exec_agent("codex", "--preset", "codex", "--cwd", str(home), *options, "--", *extra, env=env)


def two_turns(server, model, first_text, second_text):
    """A chat's first turn, then its second (the first answer sent back as
    the editor would): both answers."""
    c = client(server)
    first = [{"role": "user", "content": first_text}]
    one = c.chat.completions.create(model=model, messages=first)
    answer = one.choices[0].message.content
    two = c.chat.completions.create(
        model=model,
        messages=[*first, {"role": "assistant", "content": answer}, {"role": "user", "content": second_text}],
    )
    return one, two


def codex_threads(home):
    """The threads codex recorded (one transcript file each)."""
    return list((home / ".codex" / "sessions").rglob("rollout-*.jsonl"))


def test_a_continued_chat_resumes_the_codex_thread(server, exec_agent, tmp_path):
    """The second turn of a chat resumes codex's own thread with the new
    message alone: codex sends its model the real history, so the echo
    model answers the new message, not a flattened transcript; and the
    turn's usage is the turn's, not the thread's running total."""
    codex_agent(server, exec_agent, tmp_path)
    one, two = two_turns(server, "codex", "first turn words", "second turn")
    assert one.choices[0].message.content.strip() == "first turn words"
    assert two.choices[0].message.content.strip() == "second turn"
    # codex reports the thread's total after a resume (here about twice
    # the first turn's); the editor gets the turn's own count.
    assert two.usage.prompt_tokens < 1.5 * one.usage.prompt_tokens
    # Both turns are in one codex thread: one transcript in its sessions.
    assert len(codex_threads(tmp_path)) == 1


def test_without_conversations_every_chat_is_rendered_whole(server, exec_agent, tmp_path):
    codex_agent(server, exec_agent, tmp_path, "--conversations", "0")
    _, two = two_turns(server, "codex", "first turn words", "second turn")
    assert two.choices[0].message.content.startswith("User: first turn words")
    assert len(codex_threads(tmp_path)) == 2


def test_a_continued_chat_resumes_the_claude_session(server, exec_agent, tmp_path):
    exec_agent("claude", "--preset", "claude", "--cwd", str(tmp_path), env=claude_env(server, tmp_path))
    _, two = two_turns(server, "claude", "Say the word pelican", "Now say heron")
    text = two.choices[0].message.content
    # Resumed, claude sent its model the conversation itself; rendered
    # afresh, the prompt would have been a transcript with speaker labels.
    assert text.endswith("Now say heron") and "User:" not in text, text
    # Claude Code kept one session for both turns.
    sessions = list((tmp_path / ".claude" / "projects").rglob("*.jsonl"))
    assert len(sessions) == 1, sessions
