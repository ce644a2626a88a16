"""The example agents in examples/agents/ (Python with `websockets`, Node
with `ws`) serve a model as the README says, on both runtimes: the
`openai` client gets their answers streamed and whole, an editor that
leaves mid-stream does not stop the next answer, and after the server
restarts on the same port they reconnect and serve again."""

import os
import shutil
import subprocess
import sys
import threading
import time

import openai
import pytest

from conftest import API_KEY, BRIDGE_TOKEN, ROOT
from test_agent_reconnect import free_port

EXAMPLES = ROOT / "examples" / "agents"
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
WAIT = 20
SENTENCE = "the quick brown fox jumps over the lazy dog"


class Example:
    """An example agent run as its header says."""

    def __init__(self, language, url, model, folder):
        if language == "node":
            # An ES module finds `ws` from its own folder up: a copy beside
            # the suite's node_modules, as `npm install ws` would leave it.
            shutil.copy(EXAMPLES / "echo-agent.mjs", folder)
            (folder / "node_modules").symlink_to(NODE_MODULES)
        command = {
            "python": [sys.executable, str(EXAMPLES / "echo_agent.py")],
            "node": ["node", str(folder / "echo-agent.mjs")],
        }[language]
        env = {**os.environ, "MCP_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN}
        self.proc = subprocess.Popen(
            [*command, "--url", url, "--model", model, "--delay", "0.01" if language == "python" else "10"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        )
        self.lines = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def connected(self, count):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if sum("Connected: session" in line for line in self.lines) >= count:
                return
            time.sleep(0.02)
        raise AssertionError(f"not connected {count}×:\n{''.join(self.lines)}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=WAIT)


def streamed(server, model):
    stream = client(server).chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": SENTENCE}])
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.mark.parametrize("language", ["python", "node"])
def test_an_example_agent_serves_leaves_and_comes_back(make_server, language, tmp_path):
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--no-echo-agent"]
    model = f"{language}-example"
    first = make_server(*listen)
    agent = Example(language, f"ws://127.0.0.1:{port}/v1/agent", model, tmp_path)
    try:
        agent.connected(1)
        first.wait_for_model(model)
        assert streamed(first, model) == SENTENCE
        whole = client(first).chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
        assert whole.choices[0].message.content == "hello there"
        # An editor that leaves after the first word: the agent is told
        # (`cancel`) and goes on with the next request.
        stream = client(first).chat.completions.create(
            model=model, stream=True, messages=[{"role": "user", "content": SENTENCE * 20}])
        next(iter(stream))
        stream.close()
        assert streamed(first, model) == SENTENCE

        first.stop()
        second = make_server(*listen)
        agent.connected(2)
        second.wait_for_model(model)
        assert streamed(second, model) == SENTENCE
        assert any("reconnecting" in line for line in agent.lines), agent.lines
    finally:
        agent.stop()
