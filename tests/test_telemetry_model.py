"""Traces of model requests, read back from Arize Phoenix: each editor API
(through its official client, which passes a `traceparent` header) makes a
SERVER span named by the GenAI conventions with an `invoke_agent` child;
an error answer is an ERROR span; `agent exec` hands its CLI the
`invoke_agent` span's context as `TRACEPARENT`, `agent acp` its agent in
`session/prompt`'s `_meta`; and in agent mode an
editor tool call is an `execute_tool` span until its result comes back.
On every runtime."""

import json
import secrets

import anthropic
import ollama
import openai
import pytest

from conftest import API_KEY, BRIDGE_TOKEN, Server, WeatherAgent
from test_agent_acp import Acp
from test_agent_exec import ExecAgent


@pytest.fixture(scope="module")
def traced(runtime, phoenix):
    """A server with the echo agent, exporting its spans to Phoenix."""
    s = Server(runtime, env={"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.endpoint})
    s.wait_for_model("echo")
    yield s
    s.stop()


class Trace:
    """A fresh trace for one test: the `traceparent` its requests carry,
    naming a caller span that is not exported."""

    def __init__(self):
        self.trace_id = secrets.token_hex(16)
        self.caller = secrets.token_hex(8)
        self.headers = {"traceparent": f"00-{self.trace_id}-{self.caller}-01"}


def by_name(spans, name):
    found = [s for s in spans if s["name"] == name]
    assert found, f"no span {name!r} in {[s['name'] for s in spans]}"
    return found[0]


def assert_model_request(spans, trace, name, operation, route, agent="echo-in-process"):
    """The request's SERVER span, a child of the caller, with its
    `invoke_agent` child: both returned."""
    server = by_name(spans, name)
    assert server["span_kind"] == "SERVER"
    assert server["parent_id"] == trace.caller
    attrs = server["attributes"]
    assert attrs["gen_ai.operation.name"] == operation
    assert attrs["gen_ai.request.model"] == "echo"
    assert attrs["http.request.method"] == "POST"
    assert attrs["http.route"] == route
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert "gen_ai.first_chunk" in server["events"]
    assert server["status_code"] != "ERROR"
    [invoked] = [s for s in spans if s["parent_id"] == server["span_id"]]
    assert invoked["name"] == f"invoke_agent {agent}"
    assert invoked["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert invoked["attributes"]["gen_ai.agent.name"] == agent
    assert invoked["status_code"] != "ERROR"
    return server, invoked


def never_secret(spans, *secrets_):
    for span in spans:
        shown = repr(span["attributes"])
        for secret in (API_KEY, BRIDGE_TOKEN, *secrets_):
            assert secret not in shown, f"{secret!r} in {span['name']}"


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_is_a_server_span_with_the_agents_span_under_it(traced, phoenix, stream):
    trace = Trace()
    client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    prompt = f"a private prompt {secrets.token_hex(4)}"
    messages = [{"role": "user", "content": prompt}]
    if stream:
        chunks = client.chat.completions.create(
            model="echo", messages=messages, stream=True, extra_headers=trace.headers
        )
        answer_id = [c.id for c in chunks][0]
    else:
        answer_id = client.chat.completions.create(model="echo", messages=messages, extra_headers=trace.headers).id
    spans = phoenix.spans(trace.trace_id, 2)
    server, _ = assert_model_request(spans, trace, "chat echo", "chat", "/v1/chat/completions")
    attrs = server["attributes"]
    assert attrs["gen_ai.response.id"] == answer_id
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert attrs["gen_ai.usage.output_tokens"] > 0
    never_secret(spans, prompt)


def test_openai_completions_and_embeddings_name_their_operations(traced, phoenix):
    client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    trace = Trace()
    done = client.completions.create(model="echo", prompt="def f():", extra_headers=trace.headers)
    spans = phoenix.spans(trace.trace_id, 2)
    server, _ = assert_model_request(spans, trace, "text_completion echo", "text_completion", "/v1/completions")
    assert server["attributes"]["gen_ai.response.id"] == done.id

    trace = Trace()
    client.embeddings.create(model="echo", input=["one", "two"], extra_headers=trace.headers)
    spans = phoenix.spans(trace.trace_id, 2)
    assert_model_request(spans, trace, "embeddings echo", "embeddings", "/v1/embeddings")


def test_openai_responses_span_has_the_response_id(traced, phoenix):
    trace = Trace()
    client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    response = client.responses.create(model="echo", input="hello", store=False, extra_headers=trace.headers)
    spans = phoenix.spans(trace.trace_id, 2)
    server, _ = assert_model_request(spans, trace, "chat echo", "chat", "/v1/responses")
    assert server["attributes"]["gen_ai.response.id"] == response.id
    assert response.id.startswith("resp_")


def test_anthropic_messages_span_has_the_message_id(traced, phoenix):
    trace = Trace()
    client = anthropic.Anthropic(base_url=traced.base, api_key=API_KEY, max_retries=0, timeout=20)
    message = client.messages.create(
        model="echo",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers=trace.headers,
    )
    spans = phoenix.spans(trace.trace_id, 2)
    server, _ = assert_model_request(spans, trace, "chat echo", "chat", "/v1/messages")
    assert server["attributes"]["gen_ai.response.id"] == message.id
    assert message.id.startswith("msg_")


def test_ollama_chat_and_generate(traced, phoenix):
    trace = Trace()
    client = ollama.Client(
        host=traced.base, headers={"Authorization": f"Bearer {API_KEY}", **trace.headers}, timeout=20
    )
    client.chat(model="echo", messages=[{"role": "user", "content": "hello"}], stream=False)
    client.generate(model="echo", prompt="hello", stream=False)
    spans = phoenix.spans(trace.trace_id, 4)
    assert_model_request(spans, trace, "chat echo", "chat", "/api/chat")
    assert_model_request(spans, trace, "text_completion echo", "text_completion", "/api/generate")


def test_an_error_answer_is_an_error_span_with_its_type(traced, phoenix):
    trace = Trace()
    client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}], extra_headers=trace.headers
        )
    [server] = phoenix.spans(trace.trace_id, 1)
    assert server["name"] == "chat no-such-model"
    assert server["span_kind"] == "SERVER"
    assert server["parent_id"] == trace.caller
    assert server["status_code"] == "ERROR"
    assert server["attributes"]["error.type"] == "model_not_found"
    assert server["attributes"]["http.response.status_code"] == 404


def test_agent_exec_hands_its_cli_the_invoke_agent_span_as_traceparent(traced, phoenix):
    agent = ExecAgent(traced, "--model", "traced-cli", "--", "sh", "-c", 'cat >/dev/null; printf %s "$TRACEPARENT"')
    try:
        traced.wait_for_model("traced-cli")
        trace = Trace()
        client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
        answer = client.chat.completions.create(
            model="traced-cli", messages=[{"role": "user", "content": "hi"}], extra_headers=trace.headers
        )
    finally:
        agent.stop()
    version, trace_id, parent, flags = answer.choices[0].message.content.split("-")
    assert (version, trace_id, flags) == ("00", trace.trace_id, "01")
    spans = phoenix.spans(trace.trace_id, 2)
    server = by_name(spans, "chat traced-cli")
    invoked = by_name(spans, "invoke_agent exec")
    assert invoked["parent_id"] == server["span_id"]
    assert parent == invoked["span_id"]


def test_agent_acp_hands_its_agent_the_invoke_agent_span_in_the_prompts_meta(traced, phoenix, tmp_path):
    agent = Acp(traced, tmp_path)
    try:
        trace = Trace()
        answer = agent.chat([{"role": "user", "content": "hi"}], extra_headers=trace.headers)
        assert answer.choices[0].message.content
        [prompt] = agent.received("session/prompt")
    finally:
        agent.stop()
    meta = prompt["params"]["_meta"]
    version, trace_id, parent, flags = meta["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", trace.trace_id, "01")
    spans = phoenix.spans(trace.trace_id, 2)
    server = by_name(spans, f"chat {agent.model}")
    [invoked] = [s for s in spans if s["name"].startswith("invoke_agent ")]
    assert invoked["parent_id"] == server["span_id"]
    assert invoked["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    assert parent == invoked["span_id"]


def test_an_editor_tool_call_is_an_execute_tool_span_until_its_result(traced, phoenix):
    WeatherAgent(traced)
    trace = Trace()
    client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="weather", messages=messages, tools=tools, extra_headers=trace.headers)
    [call] = first.choices[0].message.tool_calls
    assert call.id == "call_42"
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(model="weather", messages=messages, tools=tools, extra_headers=trace.headers)
    assert second.choices[0].message.content == "It is sunny."
    spans = phoenix.spans(trace.trace_id, 5)
    tool = by_name(spans, "execute_tool get_weather")
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "get_weather"
    assert tool["attributes"]["gen_ai.tool.call.id"] == "call_42"
    assert tool["status_code"] != "ERROR"
    # Under the invoke_agent span of the answer that made the call.
    first_server = next(s for s in spans if s["attributes"].get("gen_ai.response.id") == first.id)
    invoked = next(s for s in spans if s["name"].startswith("invoke_agent") and s["parent_id"] == first_server["span_id"])
    assert tool["parent_id"] == invoked["span_id"]
    assert first_server["attributes"]["gen_ai.response.finish_reasons"] == ["tool_calls"]
    never_secret(spans, "Paris")


CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.system_instructions", "gen_ai.output.messages")


@pytest.fixture(scope="module")
def capturing(runtime, phoenix):
    """A server with the echo agent whose spans carry content."""
    s = Server(runtime, env={"OTEL_EXPORTER_OTLP_ENDPOINT": phoenix.endpoint, CAPTURE: "true"})
    s.wait_for_model("echo")
    yield s
    s.stop()


def content(attrs, key):
    """A content attribute: JSON text, as the GenAI conventions shape it."""
    value = attrs[key]
    return json.loads(value) if isinstance(value, str) else value


@pytest.mark.parametrize("stream", [False, True])
def test_with_content_captured_a_chat_span_carries_the_prompt_and_the_answer(capturing, phoenix, stream):
    trace = Trace()
    client = openai.OpenAI(base_url=capturing.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    prompt = f"a prompt to keep {secrets.token_hex(4)}"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    if stream:
        chunks = client.chat.completions.create(model="echo", messages=messages, stream=True, extra_headers=trace.headers)
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        done = client.chat.completions.create(model="echo", messages=messages, extra_headers=trace.headers)
        answer = done.choices[0].message.content
    assert answer
    spans = phoenix.spans(trace.trace_id, 2)
    server, invoked = assert_model_request(spans, trace, "chat echo", "chat", "/v1/chat/completions")
    attrs = server["attributes"]
    assert content(attrs, "gen_ai.input.messages") == [
        {"role": "user", "parts": [{"type": "text", "content": prompt}]}
    ]
    assert content(attrs, "gen_ai.system_instructions") == [{"type": "text", "content": "Be brief."}]
    assert content(attrs, "gen_ai.output.messages") == [
        {"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}
    ]
    # Content, yes; the key and the bridge token, never.
    never_secret(spans)
    assert not any(key in invoked["attributes"] for key in CONTENT_KEYS)


def test_captured_content_is_cut_to_the_attribute_bound(capturing, phoenix):
    trace = Trace()
    client = openai.OpenAI(base_url=capturing.base + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    prompt = "long " * 20_000
    client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": prompt}], extra_headers=trace.headers
    )
    [server] = [s for s in phoenix.spans(trace.trace_id, 2) if s["name"] == "chat echo"]
    for key in ("gen_ai.input.messages", "gen_ai.output.messages"):
        value = server["attributes"][key]
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        assert len(text.encode()) <= 4096, (key, len(text))
    messages = content(server["attributes"], "gen_ai.input.messages")
    assert messages[0]["parts"][0]["content"].startswith("long long")


def test_with_content_captured_tool_calls_and_results_are_in_the_messages(capturing, phoenix):
    WeatherAgent(capturing)
    trace = Trace()
    client = openai.OpenAI(base_url=capturing.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="weather", messages=messages, tools=tools, extra_headers=trace.headers)
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_42", "content": "sunny"},
    ]
    client.chat.completions.create(model="weather", messages=messages, tools=tools, extra_headers=trace.headers)
    spans = phoenix.spans(trace.trace_id, 5)
    servers = [s for s in spans if s["name"] == "chat weather"]
    first_server = next(s for s in servers if s["attributes"]["gen_ai.response.id"] == first.id)
    second_server = next(s for s in servers if s is not first_server)
    call = {"type": "tool_call", "id": "call_42", "name": "get_weather", "arguments": {"city": "Paris"}}
    assert content(first_server["attributes"], "gen_ai.output.messages") == [
        {"role": "assistant", "parts": [call], "finish_reason": "tool_calls"}
    ]
    sent = content(second_server["attributes"], "gen_ai.input.messages")
    assert sent[1:] == [
        {"role": "assistant", "parts": [call]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_42", "response": "sunny"}]},
    ]
    assert content(second_server["attributes"], "gen_ai.output.messages")[0]["parts"] == [
        {"type": "text", "content": "It is sunny."}
    ]


def test_without_the_variable_no_span_carries_content(traced, phoenix):
    trace = Trace()
    client = openai.OpenAI(base_url=traced.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    client.chat.completions.create(model="echo", messages=messages, extra_headers=trace.headers)
    for span in phoenix.spans(trace.trace_id, 2):
        assert not any(key in span["attributes"] for key in CONTENT_KEYS), span["attributes"]
