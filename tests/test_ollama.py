"""The official `ollama` client against the provider."""

import ollama
import pytest

from conftest import API_KEY


@pytest.fixture
def client(server):
    return ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20)


def test_chat_stream_and_whole(client):
    text = "ollama streams by default"
    parts = list(client.chat(model="echo", messages=[{"role": "user", "content": text}], stream=True))
    assert "".join(p.message.content for p in parts) == text
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop"
    assert last.eval_count == 4
    assert last.prompt_eval_count > 0
    assert last.total_duration > 0
    whole = client.chat(model="echo", messages=[{"role": "user", "content": text}], stream=False)
    assert whole.message.content == text
    assert whole.done


def test_generate_and_load_only(client):
    r = client.generate(model="echo", prompt="fill in the middle", suffix="end", options={"temperature": 0.1})
    assert r.response == "fill in the middle"
    assert r.done
    parts = list(client.generate(model="echo", prompt="a b", stream=True))
    assert "".join(p.response for p in parts) == "a b"
    load = client.generate(model="echo", prompt="")
    assert load.done_reason == "load"


def test_list_show_ps_version(client, server):
    # Ollama lists names with their tag; the bare name still routes.
    names = [m.model for m in client.list().models]
    assert "echo:latest" in names
    show = client.show("echo")
    assert "tools" in show.capabilities and "completion" in show.capabilities
    assert ".Suffix" in show.template
    assert show.modelinfo["agent.context_length"] > 0
    assert client.show("echo:latest").capabilities == show.capabilities
    assert "echo:latest" in [m.model for m in client.ps().models]
    with pytest.raises(ollama.ResponseError) as e:
        client.show("missing")
    assert e.value.status_code == 404
    assert client.chat(model="echo:latest", messages=[{"role": "user", "content": "tagged"}]).message.content == "tagged"
    # codex --oss refuses servers older than 0.13.4.
    version = tuple(int(x) for x in client._client.get("/api/version").json()["version"].split("."))
    assert version >= (0, 13, 4)


def test_pull_of_a_served_model_succeeds(client):
    assert client.pull("echo").status == "success"
    statuses = [p.status for p in client.pull("echo:latest", stream=True)]
    assert statuses[-1] == "success"
    with pytest.raises(ollama.ResponseError) as e:
        client.pull("missing")
    assert e.value.status_code == 404


def test_legacy_embeddings(client):
    r = client.embeddings(model="echo", prompt="abc")
    assert len(r.embedding) == 8
    assert r.embedding == client.embed(model="echo", input="abc").embeddings[0]


def test_embed(client):
    r = client.embed(model="echo", input=["a", "bb"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 8


def test_errors_are_ollama_shaped(client, server):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert "nope" in e.value.error
    anonymous = ollama.Client(host=server.base)
    with pytest.raises(ollama.ResponseError) as e:
        anonymous.list()
    assert e.value.status_code == 401
