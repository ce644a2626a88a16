"""The coding agents people point at local models, as real binaries from
npm (installed into tests/node by scripts/test): OpenAI's codex over the
Responses API, and Claude Code over the Messages API, each answered by the
echo agent. Everything stays on 127.0.0.1; telemetry is off."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import API_KEY, ROOT, claude_code_env

BIN = ROOT / "tests" / "node" / "node_modules" / ".bin"
WORD = "pelican"
PROMPT = f"Say the word {WORD}"


def run(binary, args, env, home, timeout=120):
    """Runs a CLI with its own home folder; kills its whole process group if
    it outlives `timeout`."""
    path = BIN / binary
    if not path.exists():
        pytest.fail(f"{path} is missing: run `npm ci --prefix tests/node` (scripts/test does)")
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "NO_COLOR": "1",
        **env,
    }
    proc = subprocess.Popen(
        [str(path), *args],
        cwd=home,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        pytest.fail(f"{binary} did not finish in {timeout}s: {out[-2000:]} {err[-2000:]}")
    return proc.returncode, out, err


def codex(args, env, home):
    (home / ".codex").mkdir(exist_ok=True)
    return run(
        "codex",
        ["exec", "--skip-git-repo-check", "--json", *args, PROMPT],
        {"CODEX_HOME": str(home / ".codex"), **env},
        home,
    )


def agent_messages(out):
    """The text of every `agent_message` item codex reported."""
    texts = []
    for line in out.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        item = event.get("item") or {}
        if event.get("type") == "item.completed" and item.get("type") == "agent_message":
            texts.append(item.get("text", ""))
    return texts


def test_codex_with_a_responses_provider(server, tmp_path):
    provider = f'{{name="local",base_url="{server.base}/v1",env_key="LOCAL_KEY",wire_api="responses"}}'
    code, out, err = codex(
        ["-c", "model_provider=local", "-c", f"model_providers.local={provider}", "-m", "echo"],
        {"LOCAL_KEY": API_KEY},
        tmp_path,
    )
    assert code == 0, err[-3000:]
    assert any(WORD in text for text in agent_messages(out)), out[-3000:]


def test_codex_oss_against_the_ollama_api(make_server, tmp_path):
    # codex's Ollama provider sends no key: the server is opened to keyless
    # editors, as a user pointing codex --oss at it would.
    server = make_server("--set", "require_api_key=false")
    server.wait_for_model("echo")
    code, out, err = codex(
        ["--oss", "--local-provider", "ollama", "-m", "echo"],
        {"CODEX_OSS_BASE_URL": f"{server.base}/v1"},
        tmp_path,
    )
    assert code == 0, err[-3000:]
    assert any(WORD in text for text in agent_messages(out)), out[-3000:]


def test_claude_code_over_the_messages_api(server, tmp_path):
    env = claude_code_env(server.base, API_KEY)
    args = ["-p", PROMPT, "--output-format", "stream-json", "--verbose", "--include-partial-messages"]
    code, out, err = run("claude", args, env, tmp_path)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result = next(e for e in events if e.get("type") == "result")
    assert code == 0 and not result["is_error"], (result, err[-2000:])
    assert WORD in result["result"]
    # The text arrived as streamed Messages events.
    deltas = [
        e["event"]["delta"]["text"]
        for e in events
        if e.get("type") == "stream_event" and e["event"].get("type") == "content_block_delta"
    ]
    assert WORD in "".join(deltas)
