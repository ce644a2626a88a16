"""Reasoning (thinking) text an agent sends beside its answer, through the
official client of every editor API: OpenAI chat's `reasoning_content`, a
Responses `reasoning` item, an Anthropic `thinking` block and Ollama's
`thinking`. The agent streams it as `reasoning_content` deltas (the model
`thinker`) or sends it in one `model_result` (the model `thinker-whole`);
each API must show the reasoning whole, in order, in its own field, and the
answer's text in its own."""

import time

import anthropic
import ollama
import openai
import pytest

from conftest import API_KEY, WsAgent

# Pieces with escapes and non-ASCII text, so the JSON of each is checked.
THOUGHTS = ["Let me ", "think about é ", '"quotes"\nand lines.']
WORDS = ["The ", "answer ", "is 42."]
REASONING = "".join(THOUGHTS)
ANSWER = "".join(WORDS)
MODELS = ["thinker", "thinker-whole"]


class Thinker(WsAgent):
    """Answers every request with REASONING then ANSWER: `thinker` in
    stream chunks (each thought, then each word), `thinker-whole` in one
    `model_result`."""

    def __init__(self, server):
        super().__init__(server, MODELS, self._answer)
        for model in MODELS:
            server.wait_for_model(model)

    def _answer(self, invoke, agent):
        if invoke["model_meta"]["model"] == "thinker-whole":
            message = {"role": "assistant", "content": ANSWER, "reasoning_content": REASONING}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            agent.send({"type": "model_result", "id": invoke["id"], "status": "ok", "result": {"choices": [choice]}})
            return
        deltas = [{"reasoning_content": t} for t in THOUGHTS] + [{"content": w} for w in WORDS]
        for i, delta in enumerate(deltas):
            last = i == len(deltas) - 1
            agent.send(
                {
                    "type": "model_stream_chunk",
                    "id": invoke["id"],
                    "chunk_index": i,
                    "delta": delta,
                    "finish_reason": "stop" if last else None,
                }
            )


@pytest.fixture(scope="module")
def thinker(server):
    agent = Thinker(server)
    yield agent
    agent.close()


@pytest.fixture
def oai(server, thinker):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)


@pytest.fixture
def claude(server, thinker):
    return anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0, timeout=20)


@pytest.fixture
def llama(server, thinker):
    return ollama.Client(host=server.base, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20)


USER = [{"role": "user", "content": "What is the answer?"}]


@pytest.mark.parametrize("model", MODELS)
def test_chat_completions_stream_reasoning_content_then_content(oai, model):
    reasoning, content = [], []
    for chunk in oai.chat.completions.create(model=model, messages=USER, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        piece = getattr(delta, "reasoning_content", None)
        if piece:
            assert not content, "reasoning came after the answer's text"
            reasoning.append(piece)
        if delta.content:
            content.append(delta.content)
    assert "".join(reasoning) == REASONING
    assert "".join(content) == ANSWER
    if model == "thinker":
        assert reasoning == THOUGHTS and content == WORDS


@pytest.mark.parametrize("model", MODELS)
def test_chat_completions_whole_message_has_reasoning_content(oai, model):
    r = oai.chat.completions.create(model=model, messages=USER)
    message = r.choices[0].message
    assert message.content == ANSWER
    assert message.reasoning_content == REASONING
    assert r.choices[0].finish_reason == "stop"


def test_the_echo_agent_sends_no_reasoning(oai):
    r = oai.chat.completions.create(model="echo", messages=[{"role": "user", "content": "same as ever"}])
    assert r.choices[0].message.content == "same as ever"
    assert "reasoning_content" not in r.choices[0].message.model_dump(exclude_none=True)


@pytest.mark.parametrize("model", MODELS)
def test_responses_stream_a_reasoning_item_before_the_message(oai, model):
    events = list(oai.responses.create(model=model, input="What is the answer?", stream=True))
    kinds = [e.type for e in events]
    reasoning = [e for e in events if e.type == "response.reasoning_text.delta"]
    text = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in reasoning) == REASONING
    assert "".join(e.delta for e in text) == ANSWER
    assert {e.output_index for e in reasoning} == {0}
    assert {e.output_index for e in text} == {1}
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    done = next(e for e in events if e.type == "response.reasoning_text.done")
    assert done.text == REASONING and done.item_id == reasoning[0].item_id
    items = [e.item for e in events if e.type == "response.output_item.done"]
    assert [(i.type, i.id) for i in items] == [("reasoning", done.item_id), ("message", text[0].item_id)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1]
    assert final.type == "response.completed"
    assert [i.type for i in final.response.output] == ["reasoning", "message"]
    assert final.response.output[0].content[0].text == REASONING
    assert final.response.output_text == ANSWER


def test_responses_stream_helper_assembles_the_reasoning_item(oai):
    with oai.responses.stream(model="thinker", input="What is the answer?") as stream:
        deltas = [e.delta for e in stream if e.type == "response.reasoning_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REASONING
    reasoning = final.output[0]
    assert (reasoning.type, reasoning.summary) == ("reasoning", [])
    assert [(c.type, c.text) for c in reasoning.content] == [("reasoning_text", REASONING)]
    assert final.output_text == ANSWER


@pytest.mark.parametrize("model", MODELS)
def test_responses_whole_and_stored_keep_the_reasoning_item(oai, thinker, model):
    r = oai.responses.create(model=model, input="What is the answer?", store=True)
    assert [i.type for i in r.output] == ["reasoning", "message"]
    assert r.output[0].id.startswith("rs_")
    assert r.output[0].content[0].text == REASONING
    assert r.output_text == ANSWER
    stored = oai.responses.retrieve(r.id)
    assert [i.type for i in stored.output] == ["reasoning", "message"]
    assert stored.output[0].content[0].text == REASONING
    # A chained request continues with the answer's text, not its
    # reasoning.
    before = thinker.received.qsize()
    chained = oai.responses.create(model=model, input="And then?", previous_response_id=r.id)
    assert chained.output_text == ANSWER
    invokes = [m for m in list(thinker.received.queue)[before:] if m.get("type") == "model_invoke"]
    messages = invokes[-1]["payload"]["messages"]
    assert {"role": "assistant", "content": ANSWER} in messages
    assert REASONING not in str(messages)


def test_a_background_response_keeps_its_reasoning_item(oai):
    r = oai.responses.create(model="thinker", input="What is the answer?", background=True)
    for _ in range(200):
        r = oai.responses.retrieve(r.id)
        if r.status not in ("queued", "in_progress"):
            break
        time.sleep(0.05)
    assert r.status == "completed"
    assert [i.type for i in r.output] == ["reasoning", "message"]
    assert r.output[0].content[0].text == REASONING
    assert r.output_text == ANSWER


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream_a_thinking_block_before_the_text(claude, model):
    thinking, text, order = [], [], []
    with claude.messages.stream(model=model, max_tokens=100, messages=USER) as stream:
        for event in stream:
            if event.type == "content_block_start":
                order.append((event.index, event.content_block.type))
            elif event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking.append(event.delta.thinking)
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)
        final = stream.get_final_message()
    assert order == [(0, "thinking"), (1, "text")]
    assert "".join(thinking) == REASONING
    assert "".join(text) == ANSWER
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == REASONING
    assert final.content[1].text == ANSWER
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", MODELS)
def test_messages_whole_has_a_thinking_block(claude, model):
    m = claude.messages.create(model=model, max_tokens=100, messages=USER)
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking == REASONING
    assert m.content[1].text == ANSWER


@pytest.mark.parametrize("model", MODELS)
def test_ollama_chat_streams_and_answers_thinking(llama, model):
    parts = list(llama.chat(model=model, messages=USER, stream=True))
    thinking = [p.message.thinking for p in parts if p.message.thinking]
    content = [p.message.content for p in parts if p.message.content]
    assert "".join(thinking) == REASONING
    assert "".join(content) == ANSWER
    first_text = next(i for i, p in enumerate(parts) if p.message.content)
    assert all(not p.message.thinking for p in parts[first_text:])
    assert parts[-1].done
    whole = llama.chat(model=model, messages=USER, stream=False)
    assert whole.message.thinking == REASONING
    assert whole.message.content == ANSWER


@pytest.mark.parametrize("model", MODELS)
def test_ollama_generate_streams_and_answers_thinking(llama, model):
    parts = list(llama.generate(model=model, prompt="What is the answer?", stream=True))
    assert "".join(p.thinking or "" for p in parts) == REASONING
    assert "".join(p.response for p in parts) == ANSWER
    whole = llama.generate(model=model, prompt="What is the answer?")
    assert (whole.thinking, whole.response) == (REASONING, ANSWER)


class Switcher(WsAgent):
    """Streams reasoning and text a byte each in turn, `runs` runs in all,
    then stops: each run is an output item of its own in the Responses
    API and a block of its own in Messages."""

    def __init__(self, server, model, runs):
        self.runs = runs
        super().__init__(server, [model], self._answer)
        server.wait_for_model(model)

    def _answer(self, invoke, agent):
        for i in range(self.runs):
            delta = {"reasoning_content": "r"} if i % 2 == 0 else {"content": "t"}
            last = i == self.runs - 1
            agent.send({"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": i,
                        "delta": delta, "finish_reason": "stop" if last else None})


def test_an_answer_switching_between_reasoning_and_text_without_end_is_cut(server):
    """A few thousand runs are an answer like any other; past the cap
    (4096) the answer ends with an error saying why, in each API's shape,
    instead of growing items and blocks the size of the text would not
    bound."""
    client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=30)
    fine = Switcher(server, "switcher-fine", 4096)
    answer = client.responses.create(model="switcher-fine", input="go")
    assert len(answer.output) == 4096
    assert answer.output_text == "t" * 2048
    fine.close()
    Switcher(server, "switcher", 6000)
    with pytest.raises(openai.APIError, match="switches between reasoning and text more than 4096 times"):
        client.responses.create(model="switcher", input="go")
    messages = anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0, timeout=30)
    with pytest.raises(anthropic.APIError, match="switches between reasoning and text more than 4096 times"):
        with messages.messages.stream(model="switcher", max_tokens=10, messages=[{"role": "user", "content": "go"}]) as s:
            for _ in s:
                pass
