"""The official MCP conformance suite (`@modelcontextprotocol/conformance`,
pinned in tests/conformance) against its own reference server
(tests/conformance/everything-server.ts) run as a remote Streamable HTTP
server behind the bridge, on every runtime: reached at `/mcp/NAME`, and
at the aggregate `/mcp` with the server's prefix empty, in both protocol
generations, each scored by the scenarios its revision requires
(`--requirements`). Every scenario that passes against the reference
server directly must pass through the bridge, at both paths (those the
server itself fails are its own)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest

from conftest import ROOT, wait_until

SUITE = ROOT / "tests" / "conformance"
BIN = SUITE / "node_modules" / ".bin"
WIRES = ["2025-11-25", "2026-07-28"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env():
    """Node 22 of the suite's own install first on PATH."""
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}


def checks(url, wire, out, only=None):
    """Runs the suite's server scenarios (every one revision `wire`
    requires, or `only`) against `url`: each scenario's name and its
    checks' statuses by id (a check made more than once passes only if it
    always does)."""
    args = [str(BIN / "conformance"), "server", "--url", url, "-o", str(out)]
    if only:
        args += ["--scenario", only, "--spec-version", wire]
    else:
        args += ["--requirements", wire]
    subprocess.run(args, env=node_env(), cwd=SUITE, capture_output=True, timeout=600)
    results = {}
    for run in sorted(out.iterdir()):
        name = re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", run.name.removeprefix("server-"))
        statuses = results.setdefault(name, {})
        for check in json.loads((run / "checks.json").read_text()):
            if statuses.get(check["id"], "SUCCESS") in ("SUCCESS", "INFO"):
                statuses[check["id"]] = check["status"]
    shutil.rmtree(out)
    return results


def passed(statuses):
    """Whether every check of a scenario passed."""
    return all(status in ("SUCCESS", "INFO") for status in statuses.values())


def scenarios(url, wire, out, only=None):
    """As `checks`: whether every check of each scenario passed."""
    return {name: passed(statuses) for name, statuses in checks(url, wire, out, only).items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The suite's reference server, and what it passes when reached
    directly, per wire."""
    subprocess.run([str(SUITE / "install")], check=True, timeout=600)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "tsx"), "everything-server.ts"],
        cwd=SUITE,
        env={**node_env(), "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # tsx runs the server in a Node process of its own: the whole group
        # is killed at the end, or that one outlives the module.
        start_new_session=True,
    )

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    assert wait_until(listening, timeout=60), "the reference server did not start"
    url = f"http://localhost:{port}/mcp"
    out = tmp_path_factory.mktemp("direct")
    direct = {wire: scenarios(url, wire, out / wire) for wire in WIRES}
    yield url, direct
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def bridging(make_server, url, tmp_path):
    """A provider bridging the reference server at `url` as `everything`,
    its tools unprefixed at `/mcp`."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"everything": {"type": "http", "url": url, "prefix": ""}}}))
    return make_server("--mcp-json", str(config), "--set", "require_api_key=false")


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("path", ["/mcp/everything", "/mcp"])
def test_the_suite_passes_through_the_bridge_as_it_does_directly(make_server, reference, tmp_path, path, wire):
    url, direct = reference
    server = bridging(make_server, url, tmp_path)
    bridged = scenarios(f"http://localhost:{server.port}{path}", wire, tmp_path / "out")
    passing = {name for name, ok in direct[wire].items() if ok}
    assert len(passing) >= 10, direct[wire]
    failing = sorted(name for name in passing if not bridged.get(name))
    assert not failing, f"pass directly, fail through {path}: {failing}"


@pytest.mark.parametrize("path", ["/mcp/everything", "/mcp"])
def test_the_bridge_checks_the_standard_headers_the_reference_server_does_not(make_server, reference, tmp_path, path):
    """`http-header-validation` is pending in the suite (its reference
    server fails it): the bridge, which requires and checks `Mcp-Method`
    and `Mcp-Name` on every stateless POST, passes it."""
    url, _ = reference
    server = bridging(make_server, url, tmp_path)
    only = "http-header-validation"
    bridged = scenarios(f"http://localhost:{server.port}{path}", "2026-07-28", tmp_path / "out", only)
    assert bridged == {only: True}, bridged


# The stateless revision's listen stream, as the suite's `server-stateless`
# scenario checks it (the scenario's other checks need tools the reference
# server lists only to clients of that revision, where the bridge reaches
# it in a session).
LISTEN_CHECKS = [
    "sep-2575-server-sends-subscription-ack",
    "sep-2575-server-tags-subscription-id",
    "sep-2575-server-honors-notification-filter",
]


@pytest.mark.parametrize("path", ["/mcp/everything", "/mcp"])
def test_the_bridge_serves_listen_streams_as_the_suite_checks_them(make_server, reference, tmp_path, path):
    url, _ = reference
    server = bridging(make_server, url, tmp_path)
    only = "server-stateless"
    bridged = checks(f"http://localhost:{server.port}{path}", "2026-07-28", tmp_path / "out", only)
    statuses = bridged.get(only, {})
    assert {check: statuses.get(check) for check in LISTEN_CHECKS} == dict.fromkeys(LISTEN_CHECKS, "SUCCESS"), statuses
