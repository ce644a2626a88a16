"""README.md's commands, run exactly as written, in order, the way a new
user pastes them: the start command, then every `sh` and `python` snippet
after it. The snippets are read from README.md itself, so the README cannot
drift from what works.

The user has a fresh home directory (generated secrets land there). They
start the README's first command on the README's own port, 8788, and leave
it running, as the README says — then the snippets run against another,
free port (8788 rewritten in their text, and the defaults moved there by
`MCP_PROVIDER_LISTEN` and `MCP_PROVIDER_URL`), the way the suite runs while
that server is still up. When 8788 is already taken (the user's own server),
that server stands in for the first one. Snippets are classified by what
they do:

* `scripts/test`, the suite's own command, is the one not run (it is what
  runs this);
* a `serve` without `--print-config` is a server: started in the background
  (replacing the previous one) and waited for;
* `agent echo` and `agent exec` are agents: started in the background,
  waited for until they say they are connected, then asked a question
  through their model. `agent exec --preset claude` finds Claude Code
  installed (tests/node) and pointed at this server's echo model, as a
  logged-in user's would be pointed at Anthropic;
* `claude mcp add` installs `agent mcp` in Claude Code (tests/node), with
  the binary `cargo install` put on PATH; Claude Code's own health check
  (`claude mcp list`) must then find it connected;
* anything else must finish with exit code 0; Python snippets run in a
  shell that sourced the secrets file, as the README says.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, claude_code_env

README = ROOT / "README.md"
README_PORT = 8788
# The first `cargo run --release` builds the release binary.
BUILD_TIMEOUT = 1500
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


def snippets():
    """(language, text) of every fenced block, dedented, in order."""
    blocks, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening.group(2):
            i += 1
            continue
        indent, lang = opening.groups()
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        blocks.append((lang, "\n".join(body) + "\n"))
        i += 1
    return blocks


class Background:
    """A snippet left running, its output collected as it comes."""

    def __init__(self, text, env, ready, timeout):
        self.proc = subprocess.Popen(
            ["bash", "-c", text], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        self.lines = []
        self.seen = threading.Event()

        def collect():
            for line in self.proc.stdout:
                self.lines.append(line)
                if ready in line:
                    self.seen.set()

        threading.Thread(target=collect, daemon=True).start()
        if not self.seen.wait(timeout):
            self.stop()
            raise AssertionError(f"`{text.strip()}` never printed {ready!r}:\n{''.join(self.lines)[-3000:]}")

    def stop(self):
        """Ends the snippet's whole process group: what it started (the
        server under `cargo run`) may outlive the shell that started it."""
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    return
                self.proc.poll()
                time.sleep(0.1)


def user_env(home, port=None):
    """A new user's environment; with `port`, the server's and the agents'
    default address moved to it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_PROVIDER_", "XDG_", "CARGO_INSTALL"))}
    real_home = Path(os.environ.get("HOME", "/root"))
    # The toolchain stays where it is installed; the user's files are new.
    env.setdefault("CARGO_HOME", str(real_home / ".cargo"))
    env.setdefault("RUSTUP_HOME", str(real_home / ".rustup"))
    env["HOME"] = str(home)
    env["CARGO_INSTALL_ROOT"] = str(home / "installed")
    # `cargo install` builds where `cargo run --release` already did (by
    # default it builds everything again in a folder of its own): the
    # same commands, minutes less of the suite.
    env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target"))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    if port is not None:
        env["MCP_PROVIDER_LISTEN"] = f"127.0.0.1:{port}"
        env["MCP_PROVIDER_URL"] = f"ws://127.0.0.1:{port}/v1/agent"
    return env


def port_is_free(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.long
def test_every_readme_snippet_works_as_pasted(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    blocks = [(lang, text) for lang, text in snippets() if lang in ("sh", "python")]
    start = blocks[0][1]
    assert start.strip() == "cargo run --release -p mcp-provider-smol -- serve"
    assert blocks[1][1].strip() == "scripts/test"
    first = None
    if port_is_free(README_PORT):
        first = Background(start, user_env(home), f"listening on http://127.0.0.1:{README_PORT}", BUILD_TIMEOUT)
    port = free_port()
    env = user_env(home, port)
    running, ran = [], []
    created = [ROOT / "mcp-provider.toml"]
    try:
        if first is not None:
            wait_for_echo(README_PORT)
        for lang, text in blocks:
            if text.strip() == "scripts/test":
                continue
            text = text.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}")
            if lang == "sh" and " serve" in text and "--print-config" not in text:
                for process in running:
                    process.stop()
                running = [Background(text, env, f"listening on http://127.0.0.1:{port}", BUILD_TIMEOUT)]
                wait_for_echo(port)
                ran.append(("server", text))
                continue
            if lang == "sh" and re.search(r"agent (echo|exec)", text):
                agent = Background(text, agent_env(env, text, port), "Connected: session", BUILD_TIMEOUT)
                running.append(agent)
                ran.append(("agent", text))
                check_agent(env, text, port)
                continue
            if lang == "sh" and "claude mcp add" in text:
                check_mcp_host(text, env)
                ran.append(("mcp host", text))
                continue
            if lang == "python":
                command = ["bash", "-c", '. "$HOME/.local/state/mcp-provider/env" && exec python -']
            else:
                command = ["bash", "-e", "-c", text]
            done = subprocess.run(
                command, input=text if lang == "python" else None, cwd=ROOT, env=env,
                capture_output=True, text=True, timeout=BUILD_TIMEOUT,
            )
            assert done.returncode == 0, f"`{text.strip()}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            ran.append((lang, text))
            check_output(text, done.stdout, home)
        if first is not None:
            # The server the user left running was never in the way.
            wait_for_echo(README_PORT)
    finally:
        for process in running + [first] * (first is not None):
            process.stop()
        for path in created:
            path.unlink(missing_ok=True)
    kinds = [kind for kind, _ in ran]
    assert kinds.count("python") == 4 and kinds.count("agent") == 3 and "server" in kinds, kinds
    assert "mcp host" in kinds, kinds


def check_output(text, out, home):
    """What each kind of snippet must have shown."""
    if "everything__echo" in text:
        # server-everything's echo, called through /mcp.
        answer = json.loads(out)
        assert answer["result"]["content"][0]["text"] == "Echo: hi", out
    elif text.startswith(". ~/.local/state/mcp-provider/env\ncurl"):
        assert "hello" in out and "there" in out and "data: [DONE]" in out, out
    elif "client.chat" in text or "messages.create" in text or "chat.completions" in text:
        assert out.strip() == "hi", out
    elif "call_tool" in text:
        # The bridged server-everything's echo tool answered.
        assert out.strip() == "Echo: hi", out
    elif "cargo install" in text:
        for binary in ("mcp-provider", "mcp-provider-blocking"):
            version = subprocess.run([str(home / "installed" / "bin" / binary), "--version"],
                                     capture_output=True, text=True, check=True).stdout
            assert version.startswith(binary), version
    elif "--print-config" in text:
        printed = (ROOT / "mcp-provider.toml").read_text()
        assert "requests_per_minute = 120" in printed
        # The second command read the file back and printed it unchanged.
        assert out == printed, out
        for secret in kept_secrets(home):
            assert secret not in printed


def kept_secrets(home):
    """The API key and bridge token the first `serve` generated."""
    text = (home / ".local/state/mcp-provider/env").read_text()
    return re.findall(r"^export MCP_PROVIDER_\w+='([^']+)'", text, re.M)


def wait_for_echo(port):
    """The built-in agent registers just after the banner: a user is
    slower than that, a test is not."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            if b'"sessions":1' in r.read():
                return
        time.sleep(0.05)
    raise AssertionError("the echo agent never registered")


def agent_env(env, text, port):
    """What an agent snippet runs with: a CLI preset finds its CLI on PATH,
    set up to reach a model (here: this server's echo model)."""
    if "--preset claude" not in text:
        return env
    key = kept_secrets(Path(env["HOME"]))[0]
    return {
        **env,
        "PATH": f"{ROOT / 'tests' / 'node' / 'node_modules' / '.bin'}:{env['PATH']}",
        **claude_code_env(f"http://127.0.0.1:{port}", key),
    }


def check_mcp_host(text, env):
    """Claude Code, told to use `agent mcp` as the README says, connects to
    it: `claude mcp list` starts each server and checks its handshake."""
    host_env = {
        **env,
        "PATH": f"{ROOT / 'tests' / 'node' / 'node_modules' / '.bin'}:{env['HOME']}/installed/bin:{env['PATH']}",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    for command in (text, "claude mcp list"):
        done = subprocess.run(["bash", "-e", "-c", command], cwd=ROOT, env=host_env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"`{command.strip()}` failed:\n{done.stdout}\n{done.stderr}"
    listed = next(line for line in done.stdout.splitlines() if line.startswith("mcp-provider"))
    assert "Connected" in listed, done.stdout


def check_agent(env, text, port):
    """The agent's model (its `--model`, else its preset's name) is served,
    and answers."""
    model = re.search(r"--(?:model|preset) (\S+)", text).group(1)
    key = kept_secrets(Path(env["HOME"]))[0]
    body = {"model": model, "messages": [{"role": "user", "content": "from the agent"}]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                answer = json.load(r)["choices"][0]["message"]["content"]
                assert "from the agent" in answer.lower(), answer
                return
        except urllib.error.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
