"""Faults end cleanly: an agent gone mid-stream, an editor gone mid-stream,
and many concurrent streams through one external agent."""

import asyncio
import json
import os
import socket
import subprocess
import time

import openai

from conftest import API_KEY, BRIDGE_TOKEN, WsAgent, http_request


def one_chunk(invoke, agent):
    agent.send(
        {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"role": "assistant", "content": "partial "}, "finish_reason": None}
    )


def test_agent_closing_mid_stream_ends_the_editor_stream_with_an_error(server):
    def vanish(invoke, agent):
        one_chunk(invoke, agent)
        agent.ws.close()

    agent = WsAgent(server, ["vanishing"], vanish)
    server.wait_for_model("vanishing")
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    stream = client.chat.completions.create(model="vanishing", messages=[{"role": "user", "content": "x"}], stream=True)
    received = []
    started = time.monotonic()
    try:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
        raise AssertionError("the stream ended without an error")
    except openai.APIError as e:
        assert "disconnected" in str(e)
    assert received == ["partial "]
    # Ended by the closed link, not by a timeout.
    assert time.monotonic() - started < 10
    assert server.alive()


def test_editor_disconnecting_mid_stream_sends_cancel(server):
    agent = WsAgent(server, ["slow"], one_chunk)
    try:
        server.wait_for_model("slow")
        body = json.dumps({"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(
                (
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                + body
            )
            data = b""
            while b"partial" not in data:
                data += s.recv(4096)
        invoke = agent.wait_for("model_invoke")
        cancel = agent.wait_for("cancel", timeout=5)
        assert cancel["id"] == invoke["id"]
        status, _, body = http_request(server, "GET", "/health", headers={"Authorization": None})
        assert status == 200 and json.loads(body)["cancels"] >= 1
    finally:
        agent.close()


def test_200_concurrent_streams_through_one_external_echo_agent(make_server):
    from conftest import BIN_DIR, RUNTIMES

    s = make_server("--no-echo-agent")
    env = dict(os.environ, MCP_PROVIDER_BRIDGE_TOKEN=BRIDGE_TOKEN, RUST_LOG="warn")
    agent = subprocess.Popen(
        [str(BIN_DIR / RUNTIMES[s.runtime]), "agent", "echo", "--url", s.agent_url], env=env, stderr=subprocess.PIPE
    )
    try:
        s.wait_for_model("echo")
        client = openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60)

        async def one(i):
            text = f"stream {i} says " + " ".join(f"w{i}x{j}" for j in range(20))
            stream = await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": text}], stream=True
            )
            got = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return text, got

        async def all_of_them():
            return await asyncio.gather(*(one(i) for i in range(200)))

        results = asyncio.run(all_of_them())
        assert len(results) == 200
        for text, got in results:
            assert got == text
    finally:
        agent.kill()
        agent.wait(timeout=10)
