"""Agent processes (`agent echo`, `agent exec`, `agent mcp`) keep serving
when their link ends: a server that restarts (it closes links with 1001,
"reconnect and resume") or a connection that drops is dialed again with
backoff, one line says so, and a link that dropped while the server kept
running gets the same session back with its resume token. `--once` keeps
the old behaviour: the agent exits when its link ends. While a server
shuts down, an agent redialing it is not let in. Every runtime."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import openai
import pytest
from mcp import ClientSession
from mcp.client.stdio import stdio_client

from conftest import API_KEY, BIN_DIR, BRIDGE_TOKEN, RUNTIMES, Silent, wait_until
from test_agent_mcp import host_params, serve_one
from test_hostile import unread_flood

AGENTS = {
    # kind: (arguments after `agent`, model, what it answers to "hello there")
    "echo": (["echo", "--model", "again"], "again", "hello there"),
    "exec": (["exec", "--model", "shout", "--", "tr", "a-z", "A-Z"], "shout", "HELLO THERE"),
}
WAIT = 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    """An agent process as a user starts it, its stdout collected."""

    def __init__(self, runtime, kind, url, *extra):
        args, self.model, self.answer = AGENTS[kind]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
        env.update({"MCP_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN, "RUST_LOG": "warn"})
        command = [str(BIN_DIR / RUNTIMES[runtime]), "agent", args[0], "--url", url, *extra, *args[1:]]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines = []
        self.collector = threading.Thread(target=self._collect, daemon=True)
        self.collector.start()

    def _collect(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def exited(self):
        """Its exit status once it ended, with every line it wrote
        collected (the collector may still be reading when it exits)."""
        status = self.proc.wait(timeout=WAIT)
        self.collector.join(timeout=WAIT)
        return status

    def wait_for(self, pattern, count=1):
        """The `count`th line matching `pattern`."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            found = [m for m in map(re.compile(pattern).search, list(self.lines)) if m]
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.02)
        raise AssertionError(f"no {count}× {pattern!r} in:\n{''.join(self.lines)}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def agents():
    started = []

    def start(*args):
        agent = AgentProcess(*args)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def ask(server, model):
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=WAIT)
    answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])
    return answer.choices[0].message.content


class Cutter:
    """A loopback TCP relay to `port` whose connections can all be cut at
    once, without a WebSocket close (a link that simply drops), or frozen
    (a link that goes silent and stays open)."""

    def __init__(self, port):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets = []
        self.frozen = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source, sink):
        try:
            while data := source.recv(65536):
                if source not in self.frozen:
                    sink.sendall(data)
        except OSError:
            pass

    def freeze(self):
        """The connections open now carry nothing more either way, and
        nothing closes them: a peer gone without a word (its machine
        asleep, the network between cut off). New ones are carried."""
        self.frozen.update(self.sockets)

    def cut(self):
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.sockets = []

    def close(self):
        self.cut()
        self.listener.close()


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_an_agent_serves_again_after_the_server_restarts(make_server, runtime, agents, kind):
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--no-echo-agent"]
    first = make_server(*listen)
    agent = agents(runtime, kind, f"ws://127.0.0.1:{port}/v1/agent")
    agent.wait_for(r"Connected: session")
    first.wait_for_model(agent.model)
    assert ask(first, agent.model) == agent.answer

    first.stop()
    agent.wait_for(r"is shutting down; reconnecting when it is back")
    time.sleep(0.5)
    assert agent.proc.poll() is None, "".join(agent.lines)

    second = make_server(*listen)
    agent.wait_for(r"Connected: session sess-\S+ is active", count=2)
    second.wait_for_model(agent.model)
    assert ask(second, agent.model) == agent.answer


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_an_agent_is_not_let_back_in_while_the_server_shuts_down(make_server, runtime, agents, kind):
    """While a shutdown waits for an unread editor, a redialing agent is
    refused (not told it is connected, then cut off when the process exits)."""
    server = make_server("--no-echo-agent", "--set", "max_output_bytes=134217728")
    agent = agents(runtime, kind, server.agent_url)
    agent.wait_for(r"Connected: session")
    # An editor that never reads keeps the shutdown waiting (its grace).
    flooder, editor = unread_flood(server)
    try:
        server.proc.send_signal(signal.SIGTERM)
        agent.wait_for(r"is shutting down; reconnecting when it is back")
        server.proc.wait(timeout=15)
        time.sleep(0.5)
        said = "".join(agent.lines)
        assert len(re.findall(r"Connected: session", said)) == 1, said
        assert "agent link failed" not in said and "went away" not in said, said
        editor.close()
    finally:
        flooder.close()


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_a_dropped_link_gets_its_session_back(make_server, runtime, agents, kind):
    server = make_server("--no-echo-agent")
    relay = Cutter(server.port)
    try:
        agent = agents(runtime, kind, f"ws://127.0.0.1:{relay.port}/v1/agent")
        session = agent.wait_for(r"Connected: session (sess-\S+) is active").group(1)
        server.wait_for_model(agent.model)
        relay.cut()
        agent.wait_for(r"The provider at \S+ went away \(.*\); reconnecting")
        again = agent.wait_for(r"Connected: session (sess-\S+) is active", count=2).group(1)
        assert again == session, "".join(agent.lines)
        assert ask(server, agent.model) == agent.answer
    finally:
        relay.close()


@pytest.mark.parametrize("kind", sorted(AGENTS))
def test_a_provider_gone_silent_is_taken_as_gone_and_dialed_again(make_server, runtime, agents, kind):
    """A provider that vanished without closing the link sends no close and
    no reset: the agent, hearing none of its pings for three of the
    intervals its `101` named, takes the link as lost and dials again,
    rather than waiting on it forever. A link that is pinged stays up."""
    server = make_server("--no-echo-agent", "--set", "agent_ping_secs=1")
    relay = Cutter(server.port)
    try:
        agent = agents(runtime, kind, f"ws://127.0.0.1:{relay.port}/v1/agent")
        agent.wait_for(r"Connected: session (sess-\S+) is active")
        server.wait_for_model(agent.model)
        time.sleep(4.5)
        said = "".join(agent.lines)
        assert said.count("Connected: session") == 1 and "reconnecting" not in said, said
        assert ask(server, agent.model) == agent.answer

        relay.freeze()
        frozen = time.monotonic()
        agent.wait_for(r"went away \(nothing came from the provider, or went to it, for 3 s")
        assert time.monotonic() - frozen < 6, "".join(agent.lines)
        agent.wait_for(r"Connected: session (sess-\S+) is active", count=2)
        assert ask(server, agent.model) == agent.answer
    finally:
        relay.close()


def test_a_provider_that_never_answers_the_handshake_is_given_up_on_in_time(runtime, agents):
    """Something that accepts the connection and never answers the
    WebSocket handshake: the agent gives up after 10 s, with an error
    naming the URL, and leaves no connection behind; it does not hang."""
    with Silent() as silent:
        url = f"ws://127.0.0.1:{silent.port}/v1/agent"
        started = time.monotonic()
        agent = agents(runtime, "echo", url)
        assert agent.exited() != 0
        took = time.monotonic() - started
        said = "".join(agent.lines)
        assert 9 < took < 15, took
        assert f"{url} did not answer within 10 s" in said, said
        wait_until(lambda: silent.open == 0)


def test_once_stops_when_the_link_ends(make_server, runtime, agents):
    server = make_server("--no-echo-agent")
    agent = agents(runtime, "echo", server.agent_url, "--once")
    agent.wait_for(r"Connected: session")
    server.stop()
    assert agent.exited() == 0
    assert not any("reconnecting" in line for line in agent.lines)


def test_an_mcp_host_keeps_its_session_across_a_server_restart(make_server, runtime):
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}", "--no-echo-agent"]
    first = make_server(*listen)

    class Where:
        """The provider as `host_params` needs it, whichever is running."""

        def __init__(self, server):
            self.server = server
            self.runtime = runtime
            self.agent_url = f"ws://127.0.0.1:{port}/v1/agent"

        def __getattr__(self, name):
            return getattr(self.server, name)

    async def host():
        async with stdio_client(host_params(Where(first), "host-again")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await asyncio.to_thread(first.wait_for_model, "host-again")
                editor = await serve_one(session, first, "host-again", "before")
                before = await asyncio.to_thread(editor.answer)
                await asyncio.to_thread(first.stop)
                second = await asyncio.to_thread(make_server, *listen)
                await asyncio.to_thread(second.wait_for_model, "host-again")
                # The same host session, never initialized again.
                editor = await serve_one(session, second, "host-again", "after")
                return before, await asyncio.to_thread(editor.answer)

    before, after = asyncio.run(asyncio.wait_for(host(), 90))
    assert (before, after) == ("Answered before", "Answered after")


def test_the_remote_echo_agent_is_told_apart_from_the_built_in_one(make_server, runtime, agents):
    server = make_server()
    agent = agents(runtime, "echo", server.agent_url)
    agent.wait_for(r"Connected: session")
    request = urllib.request.Request(server.base + "/control/sessions",
                                     headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        labels = {s["agent_id"]: s["label"] for s in json.load(r)["sessions"]}
    assert labels == {"echo-in-process": "Built-in echo agent", "echo": "Echo agent (agent echo)"}, labels
