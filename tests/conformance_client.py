"""The official MCP conformance suite's `client` scenarios run against this
product: tests/oauth_conformance_client.py is the client the suite
launches (the provider with the suite's server as a remote server, and
the official `mcp` client calling it through the bridge)."""

import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from conftest import BIN_DIR, LOG_DIR, ROOT, RUNTIMES

CONFORMANCE = ROOT / "tests" / "conformance"
DRIVER = ROOT / "tests" / "oauth_conformance_client.py"


@pytest.fixture(scope="session")
def conformance():
    """The conformance suite's command, installed (Node 22 first on PATH)."""
    subprocess.run([str(CONFORMANCE / "install")], check=True)
    bin_dir = CONFORMANCE / "node_modules" / ".bin"
    return bin_dir / "conformance", {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def run_suite(conformance, runtime, tmp_path, *selection):
    """Runs `client` with `selection`: each scenario's checks by name.
    No provider's log may hold a token the suite issued."""
    command, env = conformance
    out = tmp_path / "results"
    tag = uuid.uuid4().hex
    env = {
        **env,
        "OAUTH_TEST_PROVIDER_BIN": str(BIN_DIR / RUNTIMES[runtime]),
        "OAUTH_TEST_LOG_DIR": str(LOG_DIR),
        "OAUTH_TEST_LOG_TAG": tag,
    }
    subprocess.run(
        [
            str(command),
            "client",
            "--command",
            f"{sys.executable} {DRIVER}",
            *selection,
            "--timeout",
            "120000",
            "-o",
            str(out),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=900,
    )
    logs = sorted(LOG_DIR.glob(f"oauth-{tag}-*.log"))
    assert logs, "no provider ran"
    for log in logs:
        assert "test-token" not in log.read_text(), f"{log.name} holds a token"
    results = {}
    for path in out.rglob("checks.json"):
        # Each scenario's folder is its name and the time it ran.
        scenario = re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", str(path.parent.relative_to(out)))
        results[scenario] = json.loads(path.read_text())
    return results


def failures(checks):
    return [f"{c['id']}: {c['status']} {c.get('description', '')}" for c in checks if c["status"] in ("FAILURE", "WARNING")]


def failed_checks(results):
    """The failed checks of each scenario that has any."""
    return {name: bad for name, checks in results.items() if (bad := failures(checks))}
