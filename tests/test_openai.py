"""The official `openai` client against the provider."""

import json

import openai
import pytest

from conftest import API_KEY, WsAgent


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)


def test_models_list_and_retrieve(client):
    assert "echo" in [m.id for m in client.models.list()]
    assert client.models.retrieve("echo").id == "echo"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_non_stream_has_text_and_usage(client):
    r = client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "Hello there, world"}])
    assert r.choices[0].message.content == "Hello there, world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 3
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_content_parts_and_history(client):
    r = client.chat.completions.create(
        model="echo",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "part"}]},
        ],
    )
    assert r.choices[0].message.content == "second part"


def test_chat_stream_with_include_usage(client):
    text = "  streamed   one word\tper chunk\n"
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.completion_tokens == 5
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_max_tokens_cuts_with_length(client):
    r = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "a b c d e"}], max_completion_tokens=2
    )
    assert r.choices[0].message.content == "a b "
    assert r.choices[0].finish_reason == "length"


def test_legacy_completion_with_suffix(client):
    r = client.completions.create(model="echo", prompt="def add(a, b):", suffix="\n    return c", max_tokens=50)
    assert r.choices[0].text == "def add(a, b):"
    assert r.usage.total_tokens > 0
    stream = client.completions.create(model="echo", prompt="x = 1 + 2", stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == "x = 1 + 2"


def test_embeddings(client):
    r = client.embeddings.create(model="echo", input=["one", "two"])
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 8
    assert r.data[0].embedding != r.data[1].embedding


def test_tool_call_streamed_back_from_an_agent(server, client):
    def answer(invoke, agent):
        assert invoke["payload"]["parameters"]["tools"][0]["function"]["name"] == "get_weather"
        pieces = ['{"city":', ' "Paris"', "}"]
        for i, args in enumerate(pieces):
            call = {"index": 0, "function": {"arguments": args}}
            if i == 0:
                call.update({"id": "call_42", "type": "function"})
                call["function"]["name"] = "get_weather"
            agent.send(
                {
                    "type": "model_stream_chunk",
                    "id": invoke["id"],
                    "chunk_index": i,
                    "delta": {"tool_calls": [call]},
                    "finish_reason": "tool_calls" if i == len(pieces) - 1 else None,
                }
            )

    agent = WsAgent(server, ["tooly"], answer)
    try:
        server.wait_for_model("tooly")
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
        stream = client.chat.completions.create(
            model="tooly", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True
        )
        name, args, finish = "", "", None
        for chunk in stream:
            for call in chunk.choices[0].delta.tool_calls or []:
                assert call.index == 0
                name += call.function.name or ""
                args += call.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        assert name == "get_weather"
        assert json.loads(args) == {"city": "Paris"}
        assert finish == "tool_calls"
        whole = client.chat.completions.create(model="tooly", messages=[{"role": "user", "content": "w"}], tools=tools)
        call = whole.choices[0].message.tool_calls[0]
        assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("call_42", "get_weather", {"city": "Paris"})
    finally:
        agent.close()


def test_errors_are_openai_shaped(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert e.value.param == "temperature"
    bad = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
