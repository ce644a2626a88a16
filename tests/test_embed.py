"""The provider embedded in a tokio application: the example of
runtime-tokio/examples/embed.rs (the README's snippet, the same text) serves
its own page and, on the same listener, the provider's routes, answered by
an agent written in the application. Driven with the official `openai` and
`anthropic` clients, as an editor would."""

import asyncio
import re
import socket
import subprocess
import time
import urllib.request

import anthropic
import openai
import pytest

from conftest import BIN_DIR, ROOT

EXAMPLE = ROOT / "runtime-tokio" / "examples" / "embed.rs"
BINARY = BIN_DIR / "examples" / "embed"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    if not BINARY.exists():
        subprocess.run(["cargo", "build", "-p", "mcp-provider-tokio", "--example", "embed"], cwd=ROOT, check=True)
    port = free_port()
    proc = subprocess.Popen(
        [str(BINARY), f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"listening on http://127.0.0.1:{port}", line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_readme_shows_the_example_as_it_is():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```rust\n(.*?)^```$", readme, flags=re.S | re.M)
    assert EXAMPLE.read_text() in blocks
    assert len(EXAMPLE.read_text().splitlines()) < 100


def test_the_application_keeps_its_own_route(app):
    with urllib.request.urlopen(f"{app}/hello", timeout=10) as response:
        assert response.read() == b"hello from the application\n"


def test_the_application_agent_answers_the_openai_client(app):
    client = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)
    assert [m.id for m in client.models.list().data] == ["shout"]
    reply = client.chat.completions.create(
        model="shout", messages=[{"role": "user", "content": "hello from the editor"}]
    )
    assert reply.choices[0].message.content == "HELLO FROM THE EDITOR"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 4
    stream = client.chat.completions.create(
        model="shout", stream=True, messages=[{"role": "user", "content": "one two three"}]
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces == ["ONE ", "TWO ", "THREE"]


def test_many_editors_at_once_each_get_their_own_answer(app):
    client = openai.AsyncOpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)

    async def ask(i):
        stream = await client.chat.completions.create(
            model="shout", stream=True, messages=[{"role": "user", "content": f"editor {i} asks"}]
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def all_of_them():
        return await asyncio.gather(*(ask(i) for i in range(40)))

    answers = asyncio.run(all_of_them())
    assert answers == [f"EDITOR {i} ASKS" for i in range(40)]


def test_other_apis_and_wrong_keys_are_the_providers_as_usual(app):
    claude = anthropic.Anthropic(base_url=app, api_key="sk-app", max_retries=0, timeout=30)
    message = claude.messages.create(
        model="shout", max_tokens=100, messages=[{"role": "user", "content": "quiet words"}]
    )
    assert message.content[0].text == "QUIET WORDS"
    wrong = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-wrong", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    unknown = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)
    with pytest.raises(openai.NotFoundError):
        unknown.chat.completions.create(model="whisper", messages=[{"role": "user", "content": "x"}])


def test_an_editor_that_leaves_mid_answer_leaves_the_application_serving(app):
    # Streams dropped after their first chunk, then a whole answer.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", int(app.rsplit(":", 1)[1])), timeout=10) as s:
            body = b'{"model":"shout","stream":true,"messages":[{"role":"user","content":"' + b"word " * 2000 + b'"}]}'
            s.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-app\r\n"
                b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.2)
    client = openai.OpenAI(base_url=f"{app}/v1", api_key="sk-app", max_retries=0, timeout=30)
    reply = client.chat.completions.create(model="shout", messages=[{"role": "user", "content": "still here"}])
    assert reply.choices[0].message.content == "STILL HERE"
