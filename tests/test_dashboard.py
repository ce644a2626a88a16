"""The dashboard in a real browser: Debian's headless Chromium driven by
Playwright, against the real server. The page signs in with the bridge
token, lists a waiting agent session, approves it with a click, shows the
metrics of a request the approved agent answered, lists the answers
running and cancels one with its button, and sends a wrong token back to
the form.

Needs the `playwright` Python package and /usr/bin/chromium (Debian's
`chromium` package); `playwright install` is never used. Without Chromium
these tests are reported as not run, with the line that installs it (in CI,
where it is installed, they fail instead).
"""

import concurrent.futures
import json
import re
import threading
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import API_KEY, BRIDGE_TOKEN, CHROMIUM, ROOT, WsAgent, wait_until
from test_remote_oauth import call, setup, world  # noqa: F401 (fixtures)

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "target" / "screenshots"
pytestmark = pytest.mark.browser
# Every wait in the browser is bounded.
TIMEOUT_MS = 10_000


def control(server, path, body=None, token=BRIDGE_TOKEN):
    """A control API call with the bridge token: (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    req = urllib.request.Request(server.base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def session_status(server, session_id):
    _, body = control(server, "/control/sessions")
    return next(s["status"] for s in body["sessions"] if s["session_id"] == session_id)


# Closed, it holds the test agent's answers after their first chunk.
gate = threading.Event()


def answer(invoke, agent):
    """The test agent's answer: two chunks, the second once `gate` is open."""
    for i, (text, finish) in enumerate([("dashboard ", None), ("answer", "stop")]):
        if i == 1:
            assert gate.wait(timeout=10)
        agent.send(
            {
                "type": "model_stream_chunk",
                "id": invoke["id"],
                "chunk_index": i,
                "delta": {"content": text},
                "finish_reason": finish,
            }
        )


def stream_text(server, model):
    """A streamed chat's whole body, as the editor read it."""
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hello dashboard"}]}
    req = urllib.request.Request(
        server.base + "/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def chat(server, model):
    text = stream_text(server, model)
    assert "dashboard " in text and "answer" in text, text


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_dashboard_approves_a_pending_agent_and_shows_live_metrics(make_server, runtime, browser):
    server = make_server("--set", "approval=manual")
    gate.set()
    agent = WsAgent(server, ["dash-model"], answer)
    session_id = agent.registered["session_id"]
    assert agent.registered.get("status") == "pending", agent.registered
    _, health = control(server, "/health/deep")
    agents = health["agents"]
    assert agents >= 1

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    try:
        # `/` to a browser is the page (Chromium asks for text/html itself).
        response = page.goto(server.base + "/")
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/html")
        page_html = response.text()
        with urllib.request.urlopen(server.base + "/dashboard", timeout=5) as r:
            assert r.read().decode() == page_html
        with urllib.request.urlopen(server.base + "/", timeout=5) as r:
            assert not r.headers["content-type"].startswith("text/html")
        assert BRIDGE_TOKEN not in page_html and API_KEY not in page_html

        # Sign in with the bridge token.
        expect(page.locator("#token")).to_be_visible()
        page.fill("#token", BRIDGE_TOKEN)
        page.press("#token", "Enter")
        expect(page.locator("#signin")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('mcp-provider-token')") == BRIDGE_TOKEN

        # The agent's session waits, connected; the count of agent links shows.
        row = page.locator(f'tr[data-session="{session_id}"]')
        expect(row.locator('[data-field="status"]')).to_have_text("pending", timeout=TIMEOUT_MS)
        expect(row.locator('[data-field="connected"]')).to_have_text("connected")
        expect(row).to_contain_text("dash-model")
        expect(page.locator("#agents")).to_have_text(str(agents))
        expect(page.locator("#models")).not_to_contain_text("dash-model")

        # Approve it with a click: the row turns active, and so does the
        # session the control API reports.
        row.locator(f'button[data-action="approve"][data-session="{session_id}"]').click()
        expect(row.locator('[data-field="status"]')).to_have_text("active", timeout=TIMEOUT_MS)
        expect(row.locator('button[data-action="approve"]')).to_have_count(0)
        expect(row.locator('button[data-action="revoke"]')).to_have_count(1)
        assert session_status(server, session_id) == "active"
        assert agent.wait_for("approved")["session_id"] == session_id
        expect(page.locator("#models")).to_contain_text("dash-model")

        # One request through the provider, answered by the approved agent:
        # the metrics show it (the model request count, a rate, and a time to
        # first chunk in milliseconds).
        server.wait_for_model("dash-model")
        chat(server, "dash-model")
        # The rate covers one poll's interval: watched closely, first.
        page.wait_for_function(
            "() => parseFloat(document.getElementById('rps').textContent) > 0",
            polling=50,
            timeout=TIMEOUT_MS,
        )
        expect(page.locator("#model-total")).to_have_text(re.compile(r"^1 model request\b"))
        expect(page.locator("#ttfc")).to_have_text(re.compile(r"^\d+(\.\d+)? ms$"))
        expect(row.locator('[data-field="requests"]')).to_have_text("1")
        expect(page.locator("#error")).to_be_hidden()
        expect(page.locator("#action-error")).to_be_hidden()

        # An answer held after its first chunk is listed in flight until it ends.
        gate.clear()
        held = threading.Thread(target=chat, args=(server, "dash-model"), daemon=True)
        held.start()
        stream = page.locator("#streams tr")
        expect(stream).to_have_count(1)
        expect(stream).to_contain_text("/v1/chat/completions")
        expect(stream).to_contain_text("dash-model")
        expect(stream).to_contain_text(session_id)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"dashboard-{runtime}.png"), full_page=True)
        gate.set()
        held.join(timeout=10)
        assert not held.is_alive()
        expect(stream).to_have_count(0)
        expect(page.locator("#streams-empty")).to_be_visible()

        # An answer cancelled from the page: the editor's stream ends at once
        # with what it had and its normal end, the agent is told, and the
        # row goes.
        gate.clear()
        ended = {}
        cancelled = threading.Thread(target=lambda: ended.update(text=stream_text(server, "dash-model")), daemon=True)
        cancelled.start()
        expect(stream).to_have_count(1)
        stream.locator('button[data-action="cancel"]').click()
        cancelled.join(timeout=5)
        assert not cancelled.is_alive(), "the cancelled answer did not end"
        text = ended["text"]
        assert "dashboard " in text and "answer" not in text and text.rstrip().endswith("data: [DONE]"), text
        expect(stream).to_have_count(0)
        gate.set()
        assert agent.wait_for("cancel")["type"] == "cancel"
        expect(page.locator("#action-error")).to_be_hidden()

        # Forget the token: the form is back and the token is gone.
        page.click("#forget")
        expect(page.locator("#token")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('mcp-provider-token')") is None

        # A wrong token (here the API key, which the control API refuses)
        # is answered with the 401 message and the form again.
        page.fill("#token", API_KEY)
        page.press("#token", "Enter")
        expect(page.locator("#auth-msg")).to_be_visible()
        expect(page.locator("#auth-msg")).to_contain_text("401")
        expect(page.locator("#token")).to_be_visible()
        expect(page.locator("#dash")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('mcp-provider-token')") is None

        # No script error; the only failed loads are HTTP answers the page
        # expects (401 for the wrong token, 503 from /health/deep while the
        # built-in echo agent's session is pending).
        problems = [p for p in problems if "Failed to load resource" not in p]
        assert not problems, problems
    finally:
        gate.set()
        context.close()
        agent.close()


def slow_chat(server, words):
    """A streamed chat the built-in echo agent answers a word at a time."""
    body = {"model": "echo", "stream": True,
            "messages": [{"role": "user", "content": " ".join(["word"] * words)}]}
    req = urllib.request.Request(
        server.base + "/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.read().count(b"word") == words


def test_the_dashboard_counts_streaming_answers_and_leaves_its_rows_in_place(make_server, runtime, browser):
    """Two answers streaming: the request rate counts them (they are being
    answered) beside the chunk rate. Polls that change nothing leave the
    sessions' rows and buttons where they are, so a click is never lost."""
    server = make_server("--set", "echo_chunk_delay_ms=150")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(server.base + "/")
        page.fill("#token", BRIDGE_TOKEN)
        page.press("#token", "Enter")
        revoke = page.locator('#sessions button[data-action="revoke"]')
        expect(revoke).to_have_count(1)
        # Watch the table for two polls: nothing moves, nothing is rebuilt.
        page.evaluate("""() => {
            window.moved = 0;
            window.button = document.querySelector('#sessions button[data-action="revoke"]');
            new MutationObserver((m) => { window.moved += m.length; })
                .observe(document.getElementById('sessions'), {childList: true, subtree: true});
        }""")
        page.wait_for_timeout(2500)
        assert page.evaluate("window.moved") == 0
        assert page.evaluate("""() => window.button.isConnected
            && window.button === document.querySelector('#sessions button[data-action="revoke"]')""")

        streams = [threading.Thread(target=slow_chat, args=(server, 60), daemon=True) for _ in range(2)]
        for stream in streams:
            stream.start()
        expect(page.locator("#in-flight")).to_have_text("2")
        page.wait_for_function(
            """() => document.getElementById('in-flight').textContent === '2'
                && parseFloat(document.getElementById('rps').textContent) >= 1
                && parseFloat(document.getElementById('cps').textContent) > 0""",
            polling=100, timeout=TIMEOUT_MS,
        )
        for stream in streams:
            stream.join(timeout=30)
            assert not stream.is_alive()
    finally:
        context.close()


def test_an_agents_permission_request_is_allowed_from_the_dashboard(make_server, runtime, browser, tmp_path):
    """`agent acp --allow-own-tools ask`: the agent's question shows as a
    card with its tool and input; Allow lets the agent run its tool and the
    turn finish, and the card goes."""
    from test_agent_acp import Acp, asking

    server = make_server()
    agent = Acp(server, tmp_path, "--allow-own-tools", "ask")
    context, page, problems = signed_in(browser, server)
    try:
        expect(page.locator("#questions-box")).to_be_hidden()

        thread, answer = asking(agent, "ASK:edit")
        card = page.locator("#questions [data-question]")
        expect(card).to_have_count(1, timeout=20_000)
        expect(page.locator("#questions-box")).to_be_visible()
        expect(card.locator('[data-field="title"]')).to_have_text("Touch a file")
        expect(card.locator('[data-field="kind"]')).to_have_text("edit")
        expect(card.locator('[data-field="input"]')).to_contain_text("notes.txt")
        expect(card.locator('[data-field="input"]')).to_contain_text("hello from the agent")
        expect(card.locator('[data-field="agent"]')).to_contain_text(agent.model)
        assert thread.is_alive(), "the turn waits for the user"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"dashboard-permission-{runtime}.png"), full_page=True)

        card.locator('button[data-action="allow"]').click()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the turn did not finish"
        assert answer["text"].startswith("[permission yes] [wrote notes.txt] "), answer["text"]
        expect(card).to_have_count(0)
        expect(page.locator("#questions-box")).to_be_hidden()
        expect(page.locator("#action-error")).to_be_hidden()
        assert not problems, problems
    finally:
        context.close()
        agent.stop()


def signed_in(browser, server):
    """A new browser context on the dashboard, signed in with the bridge
    token: the context, its page, and the page errors it will collect."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(server.base + "/")
    page.fill("#token", BRIDGE_TOKEN)
    page.press("#token", "Enter")
    expect(page.locator("#signin")).to_be_hidden()
    return context, page, problems


def off_loop(f, *args):
    """`f(*args)` on a thread of its own: the MCP client runs an event loop,
    and Playwright's keeps this thread's."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(f, *args).result()


def test_a_remote_server_waiting_for_a_login_is_logged_in_from_the_dashboard(make_server, runtime, browser, world, setup):
    """A remote server behind OAuth with no login kept: its health row says
    it needs a login and offers a button; the button opens the
    authorization server's page in a new tab, whose redirect comes back to
    the running server, which keeps the login and serves its clients."""
    config, env, kept = setup
    server = make_server("--config", str(config), env={"XDG_STATE_HOME": env["XDG_STATE_HOME"]})
    with pytest.raises(Exception) as refused:
        off_loop(call, server)
    said = f"{refused.value!r} {getattr(refused.value, 'exceptions', '')}"
    assert "run `mcp-provider login remote`" in said, said
    context, page, problems = signed_in(browser, server)
    try:
        row = page.locator('[data-check="MCP server remote"]')
        expect(row).to_contain_text("needs login", timeout=20_000)
        with context.expect_page() as opened:
            row.locator('button[data-login="remote"]').click()
        signin = opened.value
        signin.wait_for_load_state()
        assert signin.url.startswith("http://127.0.0.1:"), signin.url
        expect(signin.locator("body")).to_contain_text("close", timeout=20_000)
        assert wait_until(kept.exists, timeout=20), "the login was not kept"
        assert world.authorized and world.authorized[0]["resource"] == f"{world.base}/mcp"
        assert off_loop(call, server) == (["whoami"], "an authorized caller")
        expect(row).not_to_contain_text("needs login", timeout=20_000)
        expect(page.locator("#action-error")).to_be_hidden()
        assert not problems, problems
    finally:
        context.close()
