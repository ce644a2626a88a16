"""Remote MCP servers behind OAuth, on every runtime.

The official MCP conformance suite (`@modelcontextprotocol/conformance`,
installed by tests/conformance/install) runs its `client --suite auth`
scenarios against this product: tests/oauth_conformance_client.py
configures the suite's server as a remote server, and the official `mcp`
client calls it through the running bridge, whose login, step-up and
limit on refused tokens meet every 401 and 403. Every check of every
scenario must pass, in both protocol generations; so must the 2025-03-26
fallbacks and the draft's auth scenarios, among them the hostile ones
(a resource or issuer that is not the server's, a redirect's wrong `iss`).

Then the product's own path against a local server and authorization
server: `login` keeps a 0600 file and prints no token, a running bridge
takes it up without a restart and refreshes a refused token, `logout`
forgets it; tokens and the client secret never reach `print-config`,
`/metrics` or the log; a hostile authorization server is refused with why,
and nothing is kept."""

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import API_KEY, BIN_DIR, ROOT, RUNTIMES, FakeHandler, LocalHttpServer, Silent, http_request, wait_until
from conformance_client import conformance, failed_checks, run_suite  # noqa: F401 (a fixture)

BROWSER = ROOT / "tests" / "fixtures" / "oauth" / "browser.py"
AUTH_SCENARIOS = 14
TIMEOUT = 60


@pytest.mark.serial
@pytest.mark.parametrize("version", ["2025-11-25", "2026-07-28"])
def test_every_auth_scenario_of_the_conformance_suite_passes(conformance, runtime, tmp_path, version):
    results = run_suite(conformance, runtime, tmp_path, "--suite", "auth", "--spec-version", version)
    assert len(results) == AUTH_SCENARIOS, sorted(results)
    failed = failed_checks(results)
    assert not failed, failed
    assert all(len(checks) >= 8 for checks in results.values())


@pytest.mark.serial
def test_the_2025_03_26_fallbacks_and_the_drafts_auth_scenarios_pass(conformance, runtime, tmp_path):
    """No protected-resource metadata (metadata at the server's root, or
    none and `/authorize`, `/token`, `/register` there); and the next
    revision's: a resource or metadata issuer not the server's refused
    before any authorization, `iss` compared exactly, offline access, an
    authorization server that changes."""
    backcompat = run_suite(conformance, runtime, tmp_path / "backcompat", "--suite", "backcompat")
    assert sorted(backcompat) == [
        "auth/2025-03-26-oauth-endpoint-fallback",
        "auth/2025-03-26-oauth-metadata-backcompat",
    ]
    draft = run_suite(conformance, runtime, tmp_path / "draft", "--suite", "draft")
    draft = {name: checks for name, checks in draft.items() if name.startswith("auth/")}
    assert len(draft) == 11, sorted(draft)
    for name in ("auth/resource-mismatch", "auth/iss-wrong-issuer", "auth/metadata-issuer-mismatch"):
        assert name in draft
    failed = {**failed_checks(backcompat), **failed_checks(draft)}
    assert not failed, failed


# The product's own path, against a local server and authorization server.

ACCESS = "at-7f3c9e"
REFRESH = "rt-52ab10"
CLIENT_SECRET = "cs-0d9e44"


class OAuthHandler(FakeHandler):
    """A remote MCP server and its authorization server on one origin.
    Tokens are `at-7f3c9e-N`, each taken for `self.server.lifetime`
    seconds (none once `self.server.token` is `None`), refreshed with
    `rt-52ab10-N`; `self.server.hostile` makes one endpoint misbehave."""

    def do_GET(self):
        world = self.server
        url = urllib.parse.urlsplit(self.path)
        base = world.base
        if url.path == "/.well-known/oauth-protected-resource/mcp":
            resource = "https://evil.example.com/mcp" if world.hostile == "resource" else f"{base}/mcp"
            self.send_json(200, {"resource": resource, "authorization_servers": [base], "scopes_supported": ["tools"]})
        elif url.path == "/.well-known/oauth-authorization-server":
            self.send_json(
                200,
                {
                    "issuer": base,
                    "authorization_endpoint": f"{base}/authorize",
                    "token_endpoint": f"{base}/token",
                    "registration_endpoint": f"{base}/register",
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post"],
                },
            )
        elif url.path == "/authorize":
            query = dict(urllib.parse.parse_qsl(url.query))
            world.authorized.append(query)
            state = "forged" if world.hostile == "state" else query["state"]
            back = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": "the-code", "state": state, "iss": base})
            self.send_response(302)
            self.send_header("location", back)
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_json(404, {})

    def do_POST(self):
        world = self.server
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if url.path == "/register":
            self.send_json(201, {"client_id": "local-client", "client_secret": CLIENT_SECRET})
        elif url.path == "/token":
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            world.grants.append(form["grant_type"])
            if world.hostile == "html":
                body = b"<!doctype html><title>Sign in</title><p>Please sign in"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif world.hostile == "endless":
                self.start_sse()
                try:
                    for _ in range(4096):
                        self.chunk(b'{"access_token":"' + b"x" * 1024)
                except OSError:
                    pass
                self.cut()
            else:
                with world.lock:
                    world.issued += 1
                    world.token = f"{ACCESS}-{world.issued}"
                    world.live[world.token] = time.monotonic() + world.lifetime
                    granted = {
                        "access_token": world.token,
                        "token_type": "Bearer",
                        "expires_in": world.lifetime,
                        "refresh_token": f"{REFRESH}-{world.issued}",
                    }
                self.send_json(200, granted)
        elif url.path == "/mcp":
            self.mcp(json.loads(raw or b"{}"))
        else:
            self.send_json(404, {})

    def mcp(self, message):
        world = self.server
        bearer = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        with world.lock:
            taken = world.token is not None and time.monotonic() < world.live.get(bearer, 0)
            if not taken:
                world.refused += 1
        if not taken:
            challenge = f'Bearer resource_metadata="{world.base}/.well-known/oauth-protected-resource/mcp", scope="tools"'
            self.send_json(401, {"error": "invalid_token"}, {"www-authenticate": challenge})
            return
        world.bearers.add(bearer)
        method, id_ = message.get("method"), message.get("id")
        if id_ is None:
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()
        elif method == "initialize":
            result = {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "oauth-fixture", "version": "1"}}
            self.send_json(200, {"jsonrpc": "2.0", "id": id_, "result": result})
        elif method == "tools/list":
            tool = {"name": "whoami", "inputSchema": {"type": "object"}}
            self.send_json(200, {"jsonrpc": "2.0", "id": id_, "result": {"tools": [tool]}})
        elif method == "tools/call":
            content = [{"type": "text", "text": "an authorized caller"}]
            self.send_json(200, {"jsonrpc": "2.0", "id": id_, "result": {"content": content}})
        else:
            self.send_json(400, {"jsonrpc": "2.0", "id": id_, "error": {"code": -32601, "message": "Method not found"}})


@pytest.fixture
def world():
    with LocalHttpServer(OAuthHandler) as world:
        world.hostile = None
        world.token = None
        world.lifetime = 3600
        world.live = {}
        world.issued = 0
        world.refused = 0
        world.authorized = []
        world.grants = []
        world.bearers = set()
        yield world


@pytest.fixture
def setup(tmp_path, world):
    """A config naming the world's server, and a state folder of its own."""
    config = tmp_path / "config.toml"
    config.write_text(f'[[bridge.servers]]\nname = "remote"\nurl = "{world.base}/mcp"\nscopes = ["tools"]\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_") and k != "BROWSER"}
    env.update({"XDG_STATE_HOME": str(tmp_path / "state"), "RUST_LOG": "info"})
    return config, env, tmp_path / "state" / "mcp-provider" / "oauth" / "remote.json"


def cli(runtime, env, *args, timeout=60):
    return subprocess.run(
        [str(BIN_DIR / RUNTIMES[runtime]), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def login_no_browser(runtime, env, config):
    """`login remote --no-browser`, with the browser played from the URL
    it prints: (exit code, output)."""
    proc = subprocess.Popen(
        [str(BIN_DIR / RUNTIMES[runtime]), "login", "remote", "--no-browser", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("http://"):
            threading.Thread(target=subprocess.run, args=([sys.executable, str(BROWSER), line.strip()],), daemon=True).start()
            break
    lines.extend(proc.stdout)
    return proc.wait(timeout=TIMEOUT), "".join(lines)


def call(server):
    """Lists and calls the remote server's tools through /mcp/remote."""

    async def use():
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
        async with Client(streamable_http_client(f"{server.base}/mcp/remote", http_client=http), mode="legacy") as c:
            names = [t.name for t in (await c.list_tools()).tools]
            text = (await c.call_tool("whoami", {})).content[0].text
            return names, text

    return asyncio.run(asyncio.wait_for(use(), TIMEOUT))


def refusal(server):
    """The error a call through /mcp/remote gets."""

    async def use():
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
        async with Client(streamable_http_client(f"{server.base}/mcp/remote", http_client=http), mode="legacy") as c:
            try:
                await c.call_tool("whoami", {})
            except MCPError as e:
                return str(e)
        return "no error"

    return asyncio.run(asyncio.wait_for(use(), TIMEOUT))


def test_login_is_kept_for_the_user_alone_taken_up_live_refreshed_and_forgotten(runtime, make_server, world, setup):
    config, env, kept = setup
    # Started before there is a login (and with no browser to open).
    # Its log at debug, where a leak would show.
    server = make_server("--config", str(config), env={"XDG_STATE_HOME": env["XDG_STATE_HOME"], "RUST_LOG": "debug"})
    code, output = login_no_browser(runtime, env, config)
    assert code == 0, output
    assert "Logged in to `remote`" in output and "scopes tools" in output, output
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE(kept.parent.stat().st_mode) == 0o700
    assert f"{ACCESS}-1" in kept.read_text()
    assert ACCESS not in output and REFRESH not in output and CLIENT_SECRET not in output
    query = world.authorized[0]
    assert query["resource"] == f"{world.base}/mcp" and query["scope"] == "tools"
    assert query["code_challenge_method"] == "S256"

    # The running server takes the login up at its next request.
    assert call(server) == (["whoami"], "an authorized caller")
    assert world.bearers == {f"{ACCESS}-1"}

    # A token the server stops taking is refreshed once, and kept again
    # (with its `token` unset, the world takes none it issued).
    world.token = None
    assert call(server) == (["whoami"], "an authorized caller")
    assert world.grants == ["authorization_code", "refresh_token"]
    assert world.bearers == {f"{ACCESS}-1", f"{ACCESS}-2"}
    assert f"{ACCESS}-2" in kept.read_text() and stat.S_IMODE(kept.stat().st_mode) == 0o600

    # Nothing secret in the printed configuration, the metrics or the log.
    printed = cli(runtime, env, "serve", "--config", str(config), "--print-config")
    status, _, metrics = http_request(server, "GET", "/metrics")
    assert status == 200
    log = server.log_path.read_text()
    for secret in (ACCESS, REFRESH, CLIENT_SECRET):
        for name, text in (("print-config", printed.stdout), ("/metrics", metrics.decode()), ("log", log)):
            assert secret not in text, f"{secret} in {name}"

    done = cli(runtime, env, "logout", "remote", "--config", str(config))
    assert done.returncode == 0 and "Logged out of `remote`" in done.stdout, done
    assert not kept.exists()
    again = cli(runtime, env, "logout", "remote", "--config", str(config))
    assert again.returncode == 0 and "had no login kept" in again.stdout

    # Without a login, and no browser to open, the server's clients are
    # told what to run.
    world.token = None
    assert "run `mcp-provider login remote`" in refusal(server)


# Tokens good for this long, while clients call for CALLING seconds.
SHORT_LIFETIME = 6
CALLING = 60


def refreshes_shown(server):
    """The server's count of the remote's token refreshes, from /metrics."""
    status, _, metrics = http_request(server, "GET", "/metrics")
    assert status == 200
    found = re.search(rb'^mcp_provider_bridge_token_refreshes_total\{server="remote"\} (\d+)$', metrics, re.M)
    return int(found.group(1)) if found else None


@pytest.mark.long
def test_a_token_good_for_seconds_never_fails_a_call_in_a_minute_of_calls(runtime, make_server, world, setup):
    """Eight clients call a remote server for a minute while each access
    token it is given lasts six seconds: not one call fails. Tokens are
    refreshed ahead of their expiry, one refresh at a time for all the
    clients (so a few more than the minute needs, not one per client or
    per call), and the server counts them in `/metrics` as the
    authorization server counted them."""
    config, env, _ = setup
    world.lifetime = SHORT_LIFETIME
    code, output = login_no_browser(runtime, env, config)
    assert code == 0, output
    server = make_server("--config", str(config), env={"XDG_STATE_HOME": env["XDG_STATE_HOME"]})

    async def client(until):
        calls, failed = 0, []
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
        async with Client(streamable_http_client(f"{server.base}/mcp/remote", http_client=http), mode="legacy") as c:
            while time.monotonic() < until:
                try:
                    result = await c.call_tool("whoami", {})
                    text = result.content[0].text if result.content else ""
                    if result.is_error or text != "an authorized caller":
                        failed.append(text)
                except MCPError as e:
                    failed.append(str(e))
                calls += 1
                await asyncio.sleep(0.05)
        return calls, failed

    async def clients():
        until = time.monotonic() + CALLING
        return await asyncio.gather(*(client(until) for _ in range(8)))

    outcomes = asyncio.run(asyncio.wait_for(clients(), CALLING + TIMEOUT))
    calls = sum(n for n, _ in outcomes)
    failed = [why for _, whys in outcomes for why in whys]
    assert not failed, f"{len(failed)} of {calls} calls failed: {failed[:3]}"
    assert calls > 8 * CALLING, calls

    refreshes = world.grants.count("refresh_token")
    # A minute of six-second tokens needs ten refreshes at least; one each
    # time the token came due is about fifteen.
    assert CALLING // SHORT_LIFETIME <= refreshes <= 2 * CALLING // SHORT_LIFETIME + 2, world.grants
    # Refreshed ahead: a token the server refused is the exception.
    assert world.refused <= refreshes // 2, (world.refused, refreshes)
    assert wait_until(lambda: refreshes_shown(server) == refreshes), (refreshes_shown(server), refreshes)


def test_a_client_secret_is_hidden_when_the_configuration_is_printed(runtime, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        '[[bridge.servers]]\nname = "remote"\nurl = "https://mcp.example.com/mcp"\n'
        f'client_id = "pre-registered"\nclient_secret = "{CLIENT_SECRET}"\nredirect_port = 33418\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
    printed = cli(runtime, env, "serve", "--config", str(config), "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert CLIENT_SECRET not in printed.stdout
    assert 'client_secret = "(hidden)"' in printed.stdout
    assert 'client_id = "pre-registered"' in printed.stdout


def test_a_login_the_server_opens_a_browser_for_holds_up_nothing_else(runtime, make_server, world, setup):
    config, env, kept = setup
    config.write_text(config.read_text() + "open_browser = true\n")
    # The person takes 4 s to approve; the server runs on one thread.
    env["BROWSER"] = f"{sys.executable} {BROWSER} --wait 4"
    server = make_server("--config", str(config), "--set", "threads=1", env=env)
    answered = {}
    calling = threading.Thread(target=lambda: answered.setdefault("call", call(server)))
    calling.start()
    assert wait_until(lambda: world.refused, timeout=TIMEOUT), "the server was never asked"
    # While the browser is out, the server answers everything else at once.
    slowest = 0.0
    while calling.is_alive() and not kept.exists():
        started = time.monotonic()
        status, _, _ = http_request(server, "GET", "/health")
        assert status == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.2)
    calling.join(TIMEOUT)
    assert answered.get("call") == (["whoami"], "an authorized caller")
    assert kept.exists()
    assert slowest < 1.0, slowest


@pytest.mark.parametrize(
    ("hostile", "says"),
    [
        ("resource", "names the resource `https://evil.example.com/mcp`"),
        ("state", "`state` is not this login's: refused"),
        ("html", "HTML page (text/html), not JSON"),
        ("endless", "longer than"),
    ],
)
def test_a_hostile_server_is_refused_with_why_and_nothing_is_kept(runtime, world, setup, hostile, says):
    config, env, kept = setup
    world.hostile = hostile
    env["BROWSER"] = f"{sys.executable} {BROWSER}"
    done = cli(runtime, env, "login", "remote", "--config", str(config))
    assert done.returncode == 1, done
    assert says in done.stderr, done.stderr
    assert not kept.exists()
    if hostile == "resource":
        assert world.authorized == []
    if hostile in ("resource", "state"):
        assert world.grants == []


def test_a_login_to_a_server_that_never_speaks_tls_fails_in_time(runtime, tmp_path):
    """A server that accepts and never answers the TLS handshake: `login`
    gives up at the dial's limit (10 s) with an error naming the server,
    it does not hang, nor try the same origin's metadata paths one dial
    after another."""
    with Silent() as silent:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_") and k != "BROWSER"}
        env["XDG_STATE_HOME"] = str(tmp_path / "state")
        url = f"https://127.0.0.1:{silent.port}/mcp"
        started = time.monotonic()
        done = cli(runtime, env, "login", "silent", "--no-browser", "--server", f"silent={url}")
        took = time.monotonic() - started
    assert done.returncode != 0, done.stdout
    said = done.stdout + done.stderr
    assert f"127.0.0.1:{silent.port}" in said and "cannot be reached" in said, said
    assert 9 < took < 15, took
