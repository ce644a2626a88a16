"""Anthropic's Messages API, through the official `anthropic` client."""

import json

import anthropic
import pytest

from conftest import API_KEY, WeatherAgent, http_request


@pytest.fixture
def client(server):
    return anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0, timeout=20)


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_create_answers_with_text_and_usage(client):
    m = client.messages.create(
        model="echo", max_tokens=100, messages=[{"role": "user", "content": "hello from messages"}]
    )
    assert m.type == "message" and m.role == "assistant"
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == "hello from messages"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == 3
    assert m.id.startswith("msg_")


def test_stream_text_matches_the_final_message(client):
    with client.messages.stream(
        model="echo",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "one two three"}]}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_system_and_tool_use_round_trip(server, client):
    agent = WeatherAgent(server)
    try:
        first = client.messages.create(
            model="weather",
            max_tokens=100,
            system="Answer briefly.",
            tools=[WEATHER_TOOL],
            tool_choice={"type": "auto"},
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        )
        payload = agent.payloads[-1]
        assert payload["messages"][0] == {"role": "system", "content": "Answer briefly."}
        assert payload["parameters"]["tools"][0]["function"]["name"] == "get_weather"
        assert payload["parameters"]["tool_choice"] == "auto"
        assert first.stop_reason == "tool_use"
        use = next(b for b in first.content if b.type == "tool_use")
        assert (use.id, use.name, use.input) == ("call_42", "get_weather", {"city": "Paris"})

        # Streamed, the input arrives as JSON pieces the SDK assembles.
        with client.messages.stream(
            model="weather", max_tokens=100, tools=[WEATHER_TOOL], messages=[{"role": "user", "content": "Weather?"}]
        ) as stream:
            final = stream.get_final_message()
        assert final.content[-1].type == "tool_use" and final.content[-1].input == {"city": "Paris"}

        second = client.messages.create(
            model="weather",
            max_tokens=100,
            tools=[WEATHER_TOOL],
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
            ],
        )
        sent = agent.payloads[-1]["messages"]
        assert sent[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
        assert sent[-1] == {"role": "tool", "tool_call_id": "call_42", "content": "sunny"}
        assert second.content[0].text == "It is sunny."
    finally:
        agent.close()


def test_count_tokens_is_the_limiter_estimate(client):
    counted = client.messages.count_tokens(model="echo", messages=[{"role": "user", "content": "x" * 400}])
    assert counted.input_tokens == 100


def test_errors_are_anthropic_shaped(server, client):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="echo", max_tokens=5, messages=[{"role": "tool", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="echo", max_tokens=5, messages="hi")
    bad = anthropic.Anthropic(base_url=server.base, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="echo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"


def test_bearer_and_x_api_key_are_both_accepted(server):
    body = {"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    as_bearer = http_request(server, "POST", "/v1/messages", body)
    as_key = http_request(
        server, "POST", "/v1/messages", body, {"Authorization": None, "x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    )
    assert as_bearer[0] == as_key[0] == 200
    assert json.loads(as_key[2])["content"][0]["text"] == "hi"
