"""The editor's tools behind a search, for CLI and ACP agents, on every
runtime. An editor (the official `openai` client) hands an agent real
servers' tools (tests/fixtures/listings: the filesystem, GitHub and git
reference servers, 52 tools) as OpenAI function tools. Past the threshold
(30) the agent's relay lists `search_tools` and `call_tool` instead of the
52; the agent searches, is told its list changed, finds the tool listed,
calls it through `call_tool`, and the editor receives an ordinary call of
that tool with those arguments — and its result goes back to the agent.
Below the threshold, or with `--tool-search off`, the whole list is
listed as before.

The CLI is tests/fixtures/exec/relay_cli.py in Claude Code's place
(`agent exec --preset claude`); the ACP agent is tests/fixtures/fake_acp.py
(`agent acp`)."""

import json
import os
import sys
import uuid

import openai

from conftest import API_KEY, ROOT
from test_agent_acp import acp  # noqa: F401
from test_agent_exec import exec_agent  # noqa: F401

FAKE_CLI = ROOT / "tests" / "fixtures" / "exec" / "relay_cli.py"
LISTINGS = ROOT / "tests" / "fixtures" / "listings"
TIMEOUT = 60


def editor_tools(*servers):
    """The tools of real servers' listings as an editor hands them."""
    tools = []
    for server in servers:
        listing = json.loads((LISTINGS / f"{server}.json").read_text())
        for tool in listing["result"]["tools"]:
            function = {"name": tool["name"], "description": tool.get("description", ""),
                        "parameters": tool["inputSchema"]}
            tools.append({"type": "function", "function": function})
    return tools


MANY = editor_tools("filesystem", "server-github", "git")
FEW = editor_tools("filesystem")
NAMES = {t["function"]["name"] for t in MANY}


class Cli:
    """`agent exec --preset claude` running relay_cli.py as its `claude`,
    in its own HOME; the CLI's report of what it saw is in `state`."""

    def __init__(self, server, exec_agent, home, *options):
        bin_dir, self.state = home / "bin", home / "state"
        bin_dir.mkdir(parents=True)
        self.state.mkdir()
        wrapper = bin_dir / "claude"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_CLI}" "$@"\n')
        wrapper.chmod(0o755)
        env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", "HOME": str(home), "RELAY_CLI_STATE": str(self.state)}
        self.model = f"search-{uuid.uuid4().hex[:8]}"
        exec_agent(self.model, "--preset", "claude", "--cwd", str(home), *options, env=env)
        self.client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT)

    def chat(self, messages, tools):
        return self.client.chat.completions.create(model=self.model, messages=messages, tools=tools).choices[0]

    def report(self):
        return json.loads((self.state / "report.json").read_text())


def ask(words):
    return [{"role": "user", "content": f"mode:search:{words}"}]


def results(messages, message, text):
    """The history with the editor's answer to every call of `message`."""
    calls = [{"role": "tool", "tool_call_id": c.id, "content": text} for c in message.tool_calls]
    return [*messages, message.model_dump(exclude_none=True), *calls]


def test_a_cli_given_many_tools_searches_them_and_its_call_through_call_tool_reaches_the_editor(
    server, exec_agent, tmp_path
):
    cli = Cli(server, exec_agent, tmp_path)
    messages = ask("create+a+pull+request")
    first = cli.chat(messages, MANY)
    assert first.finish_reason == "tool_calls", first
    report = cli.report()
    # The CLI saw the two tools, not the 52, and was told when the list
    # changed (its capabilities say it will be).
    assert report["listed"] == ["search_tools", "call_tool"]
    assert report["capabilities"]["tools"]["listChanged"] is True
    assert "create_pull_request" in report["found"], report
    assert set(report["found"]) <= NAMES
    assert report["relisted"] == ["search_tools", "call_tool", *report["found"]]
    # The editor gets an ordinary call of the tool found, with the CLI's
    # arguments: never search_tools nor call_tool.
    [call] = first.message.tool_calls
    assert call.function.name == report["called"] == report["found"][0]
    assert json.loads(call.function.arguments) == report["arguments"]
    assert report["arguments"], "the tool takes required arguments"
    # Its result goes back to the CLI, unchanged, through call_tool.
    answer = cli.chat(results(messages, first.message, "Pull request #7 opened"), MANY)
    assert answer.finish_reason == "stop"
    assert answer.message.content == "The tool said: Pull request #7 opened"


def test_below_the_threshold_or_with_search_off_a_cli_lists_every_tool(server, exec_agent, tmp_path):
    few = Cli(server, exec_agent, tmp_path / "few")
    answer = few.chat(ask("list+a+directory"), FEW)
    assert answer.message.content == f"Listed {len(FEW)} tools."
    assert few.report()["listed"] == [t["function"]["name"] for t in FEW]
    assert few.report()["capabilities"]["tools"] == {}

    off = Cli(server, exec_agent, tmp_path / "off", "--tool-search", "off")
    answer = off.chat(ask("list+a+directory"), MANY)
    assert answer.message.content == f"Listed {len(MANY)} tools."
    assert len(off.report()["listed"]) == len(MANY)


def test_an_acp_agent_given_many_tools_searches_them_and_calls_one_through_call_tool(acp):
    agent = acp()
    messages = [{"role": "user", "content": "SEARCH:create+a+pull+request"}]
    first = agent.chat(messages, tools=MANY).choices[0]
    assert first.finish_reason == "tool_calls", first
    logged = agent.received()
    # Its session's MCP server listed the two tools, and so did the spare
    # session opened in its place for the next conversation offering the
    # same tools (the probe's session listed its own `probe`).
    listings = [m["listed"] for m in logged if "listed" in m and m["listed"] != ["probe"]]
    assert listings and all(listed == ["search_tools", "call_tool"] for listed in listings), listings
    [found] = [m["found"] for m in logged if "found" in m]
    assert "create_pull_request" in found and set(found) <= NAMES
    [call] = first.message.tool_calls
    assert call.function.name == found[0]
    required = next(t for t in MANY if t["function"]["name"] == found[0])["function"]["parameters"]["required"]
    assert json.loads(call.function.arguments) == {name: f"v-{name}" for name in required}

    answer = agent.chat(results(messages, first.message, "Pull request #7 opened"), tools=MANY).choices[0]
    assert f"[{found[0]} said: Pull request #7 opened]" in answer.message.content
