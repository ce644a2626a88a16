"""OpenAI's Responses API, through the official `openai` client."""

import json

import openai
import pytest

from conftest import API_KEY, WeatherAgent


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_create_answers_with_a_message_and_usage(client):
    r = client.responses.create(model="echo", input="hello from responses")
    assert r.status == "completed"
    assert r.output_text == "hello from responses"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens == 3
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.id.startswith("resp_")


def test_stream_sends_every_event_in_order(client):
    events = list(client.responses.create(model="echo", input="one two three four", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 4
    assert "".join(deltas) == "one two three four"
    done = events[-1].response
    assert done.status == "completed" and done.output_text == "one two three four"
    assert done.usage.output_tokens > 0
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_items_and_instructions_reach_the_agent_as_chat(server, client):
    agent = WeatherAgent(server)
    try:
        client.responses.create(
            model="weather",
            instructions="Answer briefly.",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
                {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
            tools=[WEATHER_TOOL],
            tool_choice="auto",
            max_output_tokens=50,
        )
        payload = agent.payloads[-1]
        messages = payload["messages"]
        assert messages[0] == {"role": "system", "content": "Answer briefly."}
        assert messages[1]["role"] == "user"
        assert messages[2]["tool_calls"][0]["id"] == "call_1"
        assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        params = payload["parameters"]
        assert params["tools"][0]["function"]["name"] == "get_weather"
        assert params["max_tokens"] == 50
    finally:
        agent.close()


def test_function_call_round_trip(server, client):
    agent = WeatherAgent(server)
    try:
        # Streamed: the call arrives as an item with argument deltas.
        events = list(client.responses.create(model="weather", input="Weather?", tools=[WEATHER_TOOL], stream=True))
        kinds = [e.type for e in events]
        added = next(e for e in events if e.type == "response.output_item.added")
        assert added.item.type == "function_call" and added.item.name == "get_weather"
        pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert "".join(pieces) == done.arguments
        assert json.loads(done.arguments) == {"city": "Paris"}
        assert kinds[-1] == "response.completed"
        # Whole: the call, then its output sent back, then the answer.
        first = client.responses.create(model="weather", input="Weather?", tools=[WEATHER_TOOL])
        call = next(item for item in first.output if item.type == "function_call")
        assert (call.call_id, call.name) == ("call_42", "get_weather")
        assert json.loads(call.arguments) == {"city": "Paris"}
        second = client.responses.create(
            model="weather",
            input=[
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
            tools=[WEATHER_TOOL],
        )
        assert second.output_text == "It is sunny."
    finally:
        agent.close()


def test_a_function_call_chained_by_previous_response_id(server, client):
    """The Agents SDK's way: the second request sends only the call's output
    and the first response's id; the agent sees the question, its own call
    and the result, in order, and answers."""
    agent = WeatherAgent(server)
    try:
        first = client.responses.create(model="weather", input="Weather?", tools=[WEATHER_TOOL])
        call = next(item for item in first.output if item.type == "function_call")
        second = client.responses.create(
            model="weather",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            tools=[WEATHER_TOOL],
        )
        assert second.output_text == "It is sunny."
        messages = agent.payloads[-1]["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
        assert messages[1]["tool_calls"][0]["id"] == call.call_id == messages[2]["tool_call_id"]
        assert messages[1]["tool_calls"][0]["function"]["arguments"] == call.arguments
    finally:
        agent.close()


def test_bad_requests_get_openai_errors(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="echo", input="x", previous_response_id="resp_123")
    assert e.value.param == "previous_response_id"
    assert e.value.code == "previous_response_not_found" and "resp_123" in e.value.message
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="nope", input="x")
    assert e.value.code == "model_not_found"
    bad = openai.OpenAI(base_url=server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="echo", input="x")
