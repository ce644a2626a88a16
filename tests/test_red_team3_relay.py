"""`agent exec`'s tool relay against hostile peers, on every runtime: the
private socket runs' relays connect to, flooded with connections that
never say a hello (R3-2), and a CLI whose own relay connections never read
while it floods them (R3-3). The CLI is `tests/fixtures/exec/relay_cli.py`
in Claude Code's place (`--preset claude`): it speaks claude's stream-json
and reaches the editor's tools through the relay it is configured with."""

import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

import openai
import pytest

from conftest import API_KEY, ROOT
from test_agent_exec import exec_agent  # noqa: F401
from test_editor_tools import WEATHER, chat_round_trip, spawns

FAKE_CLI = ROOT / "tests" / "fixtures" / "exec" / "relay_cli.py"
# How long a connection may take to say its hello (the core's HELLO_WAIT),
# and what a loaded machine may add.
HELLO_WAIT = 3
SLACK = 2
WORDS = [f"w{i} " for i in range(20)]


class FakeCli:
    """`agent exec --preset claude` running `relay_cli.py` as its `claude`
    (its starts counted in `count`), in its own HOME; `state` is the
    folder the CLI and the test signal each other through."""

    def __init__(self, server, exec_agent, home):
        bin_dir, self.count, self.state = home / "bin", home / "spawns", home / "state"
        bin_dir.mkdir()
        self.state.mkdir()
        wrapper = bin_dir / "claude"
        wrapper.write_text(f'#!/bin/sh\necho start >> "{self.count}"\nexec "{sys.executable}" "{FAKE_CLI}" "$@"\n')
        wrapper.chmod(0o755)
        env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "HOME": str(home), "RELAY_CLI_STATE": str(self.state)}
        self.model = f"relay-{uuid.uuid4().hex[:8]}"
        self.agent = exec_agent(self.model, "--preset", "claude", "--cwd", str(home), env=env)
        self.server = server

    def openai(self):
        return openai.OpenAI(base_url=self.server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60)

    def socket_path(self):
        """The relays' socket: in `agent exec`'s private temp folder."""
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        [path] = tmp.glob(f"mcp-provider-tools-{self.agent.proc.pid}-*/tools.sock")
        return str(path)


def closed_by(s, deadline):
    """Whether the other end closed `s` before `deadline` (monotonic)."""
    s.settimeout(max(0.01, deadline - time.monotonic()))
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except OSError:
        return False


def test_r3_2_silent_connections_never_keep_a_run_s_relay_out(server, exec_agent, tmp_path):
    """300 connections that never say a hello leave a run's relay its place
    (its tool call goes through and the chat completes), and each is
    closed within the hello deadline."""
    cli = FakeCli(server, exec_agent, tmp_path)
    path = cli.socket_path()
    silent = []
    try:
        for _ in range(300):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            silent.append(s)
        opened = time.monotonic()
        ask = [{"role": "user", "content": "What is the weather in Oslo? mode:call"}]
        [call], text = chat_round_trip(cli, ask, lambda city: f"rain in {city}")
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        assert "The tool said: rain in Oslo" in text
        assert spawns(cli.count) == 1
        deadline = opened + HELLO_WAIT + SLACK
        still_open = [i for i, s in enumerate(silent) if not closed_by(s, deadline)]
        assert still_open == [], f"{len(still_open)} silent connections still open"
    finally:
        for s in silent:
            s.close()


@pytest.mark.parametrize("hog", ["20:pings", "1:pings", "1:junk", "1:long"])
@pytest.mark.serial
def test_r3_3_one_run_s_relays_cost_only_that_run(server, exec_agent, tmp_path, hog):
    """A CLI that holds 20 relay connections with its run's secret and never
    reads them while flooding pings, or floods one with 20,000 pings,
    20,000 junk lines or a 3 MiB line: another chat of the same agent gets
    its first chunk within 1 s of its request, and all of its answer."""
    cli = FakeCli(server, exec_agent, tmp_path)
    client = cli.openai()
    ask = [{"role": "user", "content": f"Weather? mode:hog:{hog}"}]
    hogging = threading.Thread(target=drain, args=(client, cli.model, ask), daemon=True)
    hogging.start()
    flooded = cli.state / "flooded"
    deadline = time.monotonic() + 20
    while not flooded.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert flooded.exists(), "the CLI never flooded its relays"
    asked = time.monotonic()
    stream = client.chat.completions.create(
        model=cli.model, messages=[{"role": "user", "content": "Hello mode:text"}], stream=True)
    first, words, finish = None, [], []
    for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.delta.content:
            first = first or time.monotonic()
            words.append(choice.delta.content)
        if choice.finish_reason:
            finish.append(choice.finish_reason)
    assert first is not None, "no text came"
    assert first - asked < 1.0, f"the first chunk came {first - asked:.1f} s after the request"
    assert "".join(words) == "".join(WORDS)
    assert finish == ["stop"]
    (cli.state / "release").write_text("")
    hogging.join(timeout=60)
    assert not hogging.is_alive(), "the flooding run never ended"


def drain(client, model, messages):
    """Reads a chat with the editor's tool to its end, whatever it is."""
    try:
        for _ in client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], stream=True):
            pass
    except openai.OpenAIError:
        pass
