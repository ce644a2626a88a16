"""Tool results reach only the run of their own conversation. Chat A's
Claude Code (under `agent exec`, given the editor's tool, on `FakeClaude`)
waits for its editor's result; chat B, another conversation with its own
system prompt, sends a history ending with A's call and a result that
names no call. OpenAI requires a `tool` message's `tool_call_id`, so B is
refused; Ollama's results carry no id, so B's history decides: it is not
A's, and B is an ordinary request. A's own result still reaches A's CLI."""

import ollama
import openai
import pytest

from conftest import API_KEY
from test_agent_exec import exec_agent  # noqa: F401
from test_editor_tools import ASK, RUN_TIMEOUT, WEATHER, FakeClaude, Setup, spawns

CHAT_A = [{"role": "system", "content": "You are agent A."}, *ASK]
CHAT_B = [{"role": "system", "content": "You are agent B, in another window."}, *ASK]
PLANTED = "planted by chat B"


@pytest.fixture
def fake():
    with FakeClaude() as fake:
        yield fake


def test_r3_1_an_openai_result_without_its_call_id_is_a_400_and_never_reaches_another_chats_cli(
    server, exec_agent, tmp_path, fake
):
    """Chat B's `tool` message without `tool_call_id` is refused naming the
    field, and chat A's parked CLI goes on with A's own result."""
    s = Setup(server, exec_agent, tmp_path, fake, "--tool-wait-secs", "300")
    client = s.openai()
    first = client.chat.completions.create(model=s.model, messages=CHAT_A, tools=[WEATHER])
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls
    calling = first.choices[0].message.model_dump(exclude_none=True)
    planted = [*CHAT_B, calling, {"role": "tool", "content": PLANTED}]
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=s.model, messages=planted, tools=[WEATHER])
    assert refused.value.body["param"] == "messages[3].tool_call_id", refused.value.body
    assert "tool_call_id" in refused.value.body["message"]
    own = [*CHAT_A, calling, {"role": "tool", "tool_call_id": call.id, "content": "rainy, 7 C"}]
    text = client.chat.completions.create(model=s.model, messages=own, tools=[WEATHER]).choices[0].message.content
    assert "The tool said: rainy, 7 C" in text
    assert spawns(s.count) == 1, "A's result went to A's CLI; B started nothing"


def test_r3_1_an_ollama_result_after_another_chats_history_is_an_ordinary_request(server, exec_agent, tmp_path, fake):
    """Chat B's id-less Ollama result for A's call is answered as B's own
    request (a fresh run, its own call), not with A's continuation; A's own
    result then resumes A's CLI, which goes on with it."""
    s = Setup(server, exec_agent, tmp_path, fake, "--tool-wait-secs", "300")
    client = ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=RUN_TIMEOUT)
    first = client.chat(model=s.model, messages=CHAT_A, tools=[WEATHER], stream=False)
    [call] = first.message.tool_calls
    assert (call.function.name, dict(call.function.arguments)) == ("get_weather", {"city": "Oslo"})
    planted = [*CHAT_B, first.message, {"role": "tool", "content": PLANTED, "tool_name": "get_weather"}]
    b = client.chat(model=s.model, messages=planted, tools=[WEATHER], stream=False)
    assert "The tool said" not in (b.message.content or ""), "B got A's continuation"
    assert [c.function.name for c in b.message.tool_calls or []] == ["get_weather"], b.message
    assert spawns(s.count) == 2, "B's request had a run of its own"
    own = [*CHAT_A, first.message, {"role": "tool", "content": "foggy, 3 C", "tool_name": "get_weather"}]
    text = "".join(part.message.content or "" for part in client.chat(model=s.model, messages=own, tools=[WEATHER], stream=True))
    assert "The tool said: foggy, 3 C" in text
    assert spawns(s.count) == 2, "A's result went to A's CLI"


def test_r3_1_two_chats_with_one_system_prompt_and_tools_do_not_end_each_others_cli(server, exec_agent, tmp_path, fake):
    """Two conversations of one window (same system prompt, same tools):
    the second's request leaves the first's parked CLI waiting, and the
    first's result still reaches it."""
    s = Setup(server, exec_agent, tmp_path, fake, "--tool-wait-secs", "300")
    client = s.openai()
    first = client.chat.completions.create(model=s.model, messages=CHAT_A, tools=[WEATHER])
    [call] = first.choices[0].message.tool_calls
    other = [CHAT_A[0], {"role": "user", "content": "And the weather in Rome?"}]
    beside = client.chat.completions.create(model=s.model, messages=other, tools=[WEATHER])
    assert beside.choices[0].finish_reason == "tool_calls"
    calling = first.choices[0].message.model_dump(exclude_none=True)
    own = [*CHAT_A, calling, {"role": "tool", "tool_call_id": call.id, "content": "rainy, 7 C"}]
    answer = client.chat.completions.create(model=s.model, messages=own, tools=[WEATHER]).choices[0]
    assert answer.finish_reason == "stop", "A's CLI was ended and its result ran afresh"
    assert "The tool said: rainy, 7 C" in answer.message.content
    assert spawns(s.count) == 2, "A's result went to A's waiting CLI"
