"""A release bridge started for a measurement: `start` runs `mcp-provider
bridge` (or `-blocking`) on a free port of 127.0.0.1 with the given
`--server` arguments; `stop` ends it with its children."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = ROOT / "tests/node/node_modules/.bin/mcp-server-everything"
BINARIES = {"smol": "mcp-provider", "blocking": "mcp-provider-blocking"}


def release_binary(runtime):
    """The release binary of `runtime`; exits saying what is missing."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    binary = target / BINARIES[runtime]
    for path in (EVERYTHING, binary):
        if not path.exists():
            sys.exit(f"{path} is missing")
    return binary


def start(runtime, servers, api_key):
    """The bridge's process (leading a group of its own) and its port."""
    env = {**os.environ, "MCP_PROVIDER_API_KEY": api_key, "MCP_PROVIDER_BRIDGE_TOKEN": "bt-x",
           "RUST_LOG": "error"}
    proc = subprocess.Popen(
        [str(release_binary(runtime)), "bridge", "--listen", "127.0.0.1:0", "--set", "secrets_file=",
         *servers],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True, start_new_session=True,
    )
    for line in proc.stdout:
        if "listening on http://" in line:
            return proc, int(line.rsplit(":", 1)[1])
    stop(proc)
    sys.exit("the bridge did not start")


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
