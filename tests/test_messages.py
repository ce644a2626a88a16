"""The messages of the usual first-hour mistakes say what to do, on
every runtime: an agent with the wrong bridge token, a second server on a taken
port, and a bridged server that cannot start (its working directory missing, or
its command failing with a reason on stderr). What an editor with a wrong or
missing API key or a model nobody serves is told is asserted in the core and
the settings' tests."""

import json
import os
import socket
import subprocess
import sys

from conftest import BIN_DIR, RUNTIMES, mcp_post
from test_bridge_scale import VERSION

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


def run(runtime, *args, env=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
    return subprocess.run([str(BIN_DIR / RUNTIMES[runtime]), *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=30)


def test_an_agent_with_a_wrong_bridge_token_is_told_where_the_right_one_is(server):
    refused = run(server.runtime, "agent", "echo", "--url", server.agent_url, "--token", "bt-wrong")
    assert refused.returncode == 1
    assert "refused the bridge token (401 Unauthorized)" in refused.stderr, refused.stderr
    assert "MCP_PROVIDER_BRIDGE_TOKEN" in refused.stderr and "--token" in refused.stderr, refused.stderr


def test_a_second_server_on_a_taken_port_says_what_to_do(runtime, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        second = run(runtime, "serve", "--listen", f"127.0.0.1:{port}", env={"HOME": str(tmp_path)})
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in second.stderr, second.stderr
    assert "an mcp-provider already running" in second.stderr and "--listen" in second.stderr, second.stderr


def bridged(tmp_path, name, command, cwd=None):
    program, *args = command
    config = tmp_path / f"{name}.toml"
    text = f"[[bridge.servers]]\nname = {json.dumps(name)}\ncommand = {json.dumps(program)}\nargs = {json.dumps(args)}\n"
    if cwd:
        text += f"cwd = {json.dumps(cwd)}\n"
    config.write_text(text)
    return str(config)


def test_a_bridged_server_whose_folder_is_missing_says_so(make_server, tmp_path):
    gone = str(tmp_path / "gone")
    server = make_server("--config", bridged(tmp_path, "files", [sys.executable, "-c", "pass"], cwd=gone))
    _, _, body = mcp_post(server, "/mcp/files", INIT, timeout=30)
    said = json.dumps(body)
    assert f"its working directory `{gone}` does not exist" in said, said


def test_a_bridged_server_that_fails_passes_its_last_words_to_the_client(make_server, tmp_path):
    fails = [sys.executable, "-c", "import sys; sys.stderr.write('noise\\nboom: GITHUB_TOKEN is not set\\n'); sys.exit(3)"]
    server = make_server("--config", bridged(tmp_path, "github", fails))
    _, _, body = mcp_post(server, "/mcp/github", INIT, timeout=30)
    said = json.dumps(body)
    assert "exited during startup; its stderr ended with: noise | boom: GITHUB_TOKEN is not set" in said, said
