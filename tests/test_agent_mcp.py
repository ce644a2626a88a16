"""`agent mcp`: an MCP host's agent serves as the model, on both runtimes.
The official MCP Python SDK plays the host: it starts `agent mcp` as a stdio
server, its "agent" takes editors' requests with `next_request` and answers
with `respond`, in both protocol generations; and in sampling mode it
answers `sampling/createMessage` from its sampling callback. The editor is
the official `openai` client, streaming from the provider."""

import asyncio
import json
import os
import socket
import threading

import mcp.types as types
import openai
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conftest import API_KEY, BIN_DIR, BRIDGE_TOKEN, RUNTIMES

TIMEOUT = 30


def host_params(server, model, *extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
    env.update({"MCP_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN, "RUST_LOG": "warn"})
    return StdioServerParameters(
        command=str(BIN_DIR / RUNTIMES[server.runtime]),
        args=["agent", "mcp", "--url", server.agent_url, "--model", model, *extra],
        env=env,
    )


class Editor(threading.Thread):
    """An editor streaming one chat from `model` on a thread of its own."""

    def __init__(self, server, model, text, **kwargs):
        super().__init__(daemon=True)
        self.client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT)
        self.model, self.text, self.kwargs = model, text, kwargs
        self.pieces, self.finish, self.error = [], None, None
        self.start()

    def run(self):
        try:
            stream = self.client.chat.completions.create(
                model=self.model, stream=True, messages=[{"role": "user", "content": self.text}], **self.kwargs
            )
            for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        self.pieces.append(choice.delta.content)
                    self.finish = choice.finish_reason or self.finish
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            self.error = e

    def answer(self):
        self.join(TIMEOUT)
        assert not self.is_alive(), "the editor's stream never ended"
        assert self.error is None, self.error
        return "".join(self.pieces)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, TIMEOUT * 2))


async def serve_one(session, server, model, generation):
    """The host's agent takes one request and answers it in two pieces."""
    tools = await session.list_tools()
    assert [t.name for t in tools.tools] == ["next_request", "respond"]
    editor = Editor(server, model, f"hello over {generation}")
    taken = await session.call_tool("next_request", {"wait_seconds": 20})
    assert not taken.is_error
    request = taken.structured_content
    assert request["messages"][-1]["content"] == f"hello over {generation}"
    assert request["request_id"] in taken.content[0].text
    first = await session.call_tool(
        "respond", {"request_id": request["request_id"], "text": "Answered ", "final": False}
    )
    assert not first.is_error
    last = await session.call_tool("respond", {"request_id": request["request_id"], "text": generation})
    assert not last.is_error
    return editor


def test_a_session_generation_host_serves_the_model(server):
    async def host():
        async with stdio_client(host_params(server, "host-legacy")) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                assert init.protocol_version == "2025-11-25"
                await asyncio.to_thread(server.wait_for_model, "host-legacy")
                editor = await serve_one(session, server, "host-legacy", "sessions")
                return await asyncio.to_thread(editor.answer), editor.finish

    text, finish = run(host())
    assert text == "Answered sessions" and finish == "stop"


def test_a_stateless_generation_host_serves_the_model(server):
    async def host():
        async with stdio_client(host_params(server, "host-modern")) as (read, write):
            async with ClientSession(read, write) as session:
                discovered = await session.discover()
                assert "2026-07-28" in discovered.supported_versions
                assert "next_request" in (discovered.instructions or "")
                await asyncio.to_thread(server.wait_for_model, "host-modern")
                editor = await serve_one(session, server, "host-modern", "stateless")
                prompts = await session.list_prompts()
                assert [p.name for p in prompts.prompts] == ["serve"]
                return await asyncio.to_thread(editor.answer)

    assert run(host()) == "Answered stateless"


def test_a_poll_with_nothing_waiting_comes_back_empty(server):
    async def host():
        async with stdio_client(host_params(server, "host-idle")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("next_request", {"wait_seconds": 0.5})

    result = run(host())
    assert not result.is_error and result.content[0].text.startswith("No editor request is waiting")


def test_a_poll_ends_in_its_own_time_however_long_one_before_it_waits(server):
    """A host's calls held at once: one asking to wait longer than any
    clock holds (held for the most a poll waits), then a short one, which
    comes back empty when its own time is up; then the long one takes the
    editor's next request."""
    async def host():
        async with stdio_client(host_params(server, "host-waits")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                long = asyncio.create_task(session.call_tool("next_request", {"wait_seconds": 1e300}))
                await asyncio.sleep(0.2)
                short = await session.call_tool("next_request", {"wait_seconds": 0.5})
                assert not long.done()
                editor = Editor(server, "host-waits", "still there?")
                taken = (await long).structured_content
                await session.call_tool("respond", {"request_id": taken["request_id"], "text": "yes"})
                return short, taken, editor.answer()

    short, taken, answer = run(host())
    assert not short.is_error and short.content[0].text.startswith("No editor request is waiting")
    assert taken["messages"][-1]["content"] == "still there?"
    assert answer == "yes"


def test_an_answer_for_a_request_the_editor_left_is_an_error(server):
    async def host():
        async with stdio_client(host_params(server, "host-left")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await asyncio.to_thread(server.wait_for_model, "host-left")
                # An editor that sends its request and hangs up.
                body = json.dumps({"model": "host-left", "stream": True,
                                   "messages": [{"role": "user", "content": "anyone?"}]}).encode()
                editor = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                editor.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    + f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n".encode()
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
                )
                taken = await session.call_tool("next_request", {"wait_seconds": 20})
                editor.close()
                # The provider notices the editor left and cancels the request.
                for _ in range(200):
                    late = await session.call_tool(
                        "respond", {"request_id": taken.structured_content["request_id"], "text": "too late", "final": False}
                    )
                    if late.is_error:
                        return late
                    await asyncio.sleep(0.05)
                return late

    late = run(host())
    assert late.is_error and "cancelled" in late.content[0].text


def test_sampling_mode_asks_the_host_to_sample(server):
    seen = []

    async def sample(context, params: types.CreateMessageRequestParams):
        seen.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by the host"),
            model="host-model",
            stop_reason="endTurn",
        )

    async def host():
        async with stdio_client(host_params(server, "host-sampling", "--sampling")) as (read, write):
            async with ClientSession(read, write, sampling_callback=sample) as session:
                await session.initialize()
                await asyncio.to_thread(server.wait_for_model, "host-sampling")
                editor = Editor(server, "host-sampling", "sample this", max_tokens=40)
                return await asyncio.to_thread(editor.answer)

    assert run(host()) == "sampled by the host"
    assert seen[0].max_tokens == 40
    assert seen[0].messages[-1].content.text == "sample this"


def test_a_host_agent_calls_the_editors_tool_and_goes_on_with_its_result(server):
    """The same round trip an editor in agent mode has with `agent exec`:
    the host's agent answers with a call of the editor's tool, the editor
    runs it and sends the result, and the agent's next answer uses it."""
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=TIMEOUT)
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    answers = []

    def editor(messages):
        thread = threading.Thread(
            target=lambda: answers.append(client.chat.completions.create(model="host-tools", messages=messages, tools=[weather])),
            daemon=True,
        )
        thread.start()
        return thread

    async def host():
        async with stdio_client(host_params(server, "host-tools")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await asyncio.to_thread(server.wait_for_model, "host-tools")
                first = editor(ask)
                taken = (await session.call_tool("next_request", {"wait_seconds": 20})).structured_content
                assert taken["tools"][0]["function"]["name"] == "get_weather"
                call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
                await session.call_tool("respond", {"request_id": taken["request_id"], "tool_calls": [call]})
                await asyncio.to_thread(first.join, TIMEOUT)
                message = answers[0].choices[0].message
                assert answers[0].choices[0].finish_reason == "tool_calls"
                [made] = message.tool_calls
                assert (made.function.name, json.loads(made.function.arguments)) == ("get_weather", {"city": "Oslo"})
                result = {"role": "tool", "tool_call_id": made.id, "content": "rain, 6 C"}
                second = editor([*ask, message.model_dump(exclude_none=True), result])
                taken = (await session.call_tool("next_request", {"wait_seconds": 20})).structured_content
                assert taken["messages"][-1] == result
                await session.call_tool("respond", {"request_id": taken["request_id"], "text": "It is rainy in Oslo (6 C)."})
                await asyncio.to_thread(second.join, TIMEOUT)

    run(host())
    assert answers[1].choices[0].message.content == "It is rainy in Oslo (6 C)."
