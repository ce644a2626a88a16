"""Stored responses in OpenAI's Responses API: `store` keeps an answer in
memory (bounded in bytes and age, oldest evicted first, never one still
running) for `GET /v1/responses/{id}`, its `input_items` and `DELETE`;
`previous_response_id` continues a stored response with the whole
conversation (each API key sees only its own); `background` answers at once
and works on without the connection, to be polled, cancelled, or streamed
and resumed after any event by `starting_after`.

Clients are the official `openai` package, the OpenAI Agents SDK, raw HTTP,
and the codex and Claude Code CLIs run by `agent exec` (whose chain of
`previous_response_id`s must continue one CLI session)."""

import http.client
import json
import sys
import threading
import time
from pathlib import Path

import agents
import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import API_KEY, BRIDGE_TOKEN, WsAgent, http_request, metric  # noqa: E402
from test_agent_exec import (  # noqa: E402,F401
    claude_env,
    codex_agent,
    codex_threads,
    exec_agent,
    sleeper,
    wait_gone,
    wait_running,
)

OTHER_KEY = "sk-test-other-key"

# An answer the echo agent sends one word at a time.
FORTY_WORDS = " ".join(f"word{i}" for i in range(40))


@pytest.fixture
def client(server):
    return make_client(server)


def make_client(server, key=API_KEY, timeout=20):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=key, max_retries=0, timeout=timeout)


def call(server, method, path, body=None, key=API_KEY):
    """A raw request: (status, parsed JSON body or None)."""
    status, _, raw = http_request(server, method, path, body, headers={"Authorization": f"Bearer {key}"})
    return status, json.loads(raw) if raw else None


def text_of(content):
    """The text of a message's content: a string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def wait_status(client, response_id, statuses, timeout=30):
    """Polls `client.responses.retrieve` until the status is one of
    `statuses`; the last response seen."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.responses.retrieve(response_id)
        if r.status in statuses or time.monotonic() > deadline:
            return r
        time.sleep(0.05)



def padded(i, size):
    """A distinct input of about `size` bytes."""
    head = f"request {i} "
    return head + "x" * (size - len(head))


class TranscriptAgent(WsAgent):
    """Answers with the conversation it was given: a JSON list of
    `[role, text]`, one per message of the invocation's payload."""

    def __init__(self, server, model="transcript"):
        super().__init__(server, [model], self._answer)
        server.wait_for_model(model)

    def _answer(self, invoke, agent):
        seen = [[m["role"], text_of(m.get("content"))] for m in invoke["payload"]["messages"]]
        agent.send({
            "type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0,
            "delta": {"role": "assistant", "content": json.dumps(seen)}, "finish_reason": "stop",
        })


def test_a_stored_response_is_retrieved_and_deleted(server, client):
    r = client.responses.create(model="echo", input="keep these words")
    got = client.responses.retrieve(r.id)
    assert (got.id, got.status, got.output_text) == (r.id, "completed", "keep these words")
    assert got.usage.output_tokens == r.usage.output_tokens == 3
    assert got.usage.input_tokens == r.usage.input_tokens
    status, raw = call(server, "GET", f"/v1/responses/{r.id}")
    assert status == 200
    assert (raw["id"], raw["object"], raw["store"], raw["background"], raw["previous_response_id"]) == (
        r.id, "response", True, False, None,
    )
    assert raw["output"][0]["content"][0]["text"] == "keep these words"

    status, deleted = call(server, "DELETE", f"/v1/responses/{r.id}")
    assert (status, deleted) == (200, {"id": r.id, "object": "response.deleted", "deleted": True})
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    assert call(server, "GET", f"/v1/responses/{r.id}/input_items")[0] == 404
    assert call(server, "DELETE", f"/v1/responses/{r.id}")[0] == 404

    # The same through the SDK.
    other = client.responses.create(model="echo", input="short lived")
    assert client.responses.delete(other.id) is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(other.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(other.id)


def test_an_unknown_id_is_a_404_in_openai_shape(server, client):
    for method, path in [
        ("GET", "/v1/responses/resp_never_made"),
        ("GET", "/v1/responses/resp_never_made/input_items"),
        ("DELETE", "/v1/responses/resp_never_made"),
    ]:
        status, body = call(server, method, path)
        assert status == 404, (method, path)
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert "type" in error
        # Never made is not evicted.
        assert "evict" not in error["message"].lower()
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_never_made")


def test_store_false_keeps_nothing(client):
    r = client.responses.create(model="echo", input="forget me", store=False)
    assert r.output_text == "forget me" and r.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="echo", input="again", previous_response_id=r.id)
    assert refused.value.code == "previous_response_not_found"


def test_input_items_are_listed_in_openai_shape(server, client):
    texts = ["one", "two", "three", "four", "five"]
    items = [{"type": "message", "role": "user" if i % 2 == 0 else "assistant", "content": t}
             for i, t in enumerate(texts[:-1])]
    # An item may leave out its type, and give its content as parts.
    items.append({"role": "user", "content": [{"type": "input_text", "text": texts[-1]}]})
    r = client.responses.create(model="echo", input=items)
    assert r.output_text == "five"
    path = f"/v1/responses/{r.id}/input_items"

    status, page = call(server, "GET", path)
    assert status == 200
    assert page["object"] == "list" and page["has_more"] is False
    data = page["data"]
    # Newest first by default.
    assert [text_of(item["content"]) for item in data] == texts[::-1]
    assert [item["role"] for item in data] == ["user", "assistant", "user", "assistant", "user"]
    # Each in OpenAI's item shape, whatever shape it was sent in: a typed
    # message whose content is a list of typed text parts.
    for item in data:
        assert item.get("type") == "message", item
        assert isinstance(item["content"], list), item
        assert all(part["type"] in ("input_text", "output_text") for part in item["content"]), item
    ids = [item["id"] for item in data]
    assert all(isinstance(i, str) and i for i in ids) and len(set(ids)) == 5
    assert (page["first_id"], page["last_id"]) == (ids[0], ids[-1])

    status, page = call(server, "GET", path + "?order=asc")
    assert status == 200 and [item["id"] for item in page["data"]] == ids[::-1]
    asc = ids[::-1]

    status, page = call(server, "GET", path + "?limit=2")
    assert status == 200 and [item["id"] for item in page["data"]] == ids[:2]
    assert page["has_more"] is True and (page["first_id"], page["last_id"]) == (ids[0], ids[1])

    status, page = call(server, "GET", path + f"?order=asc&after={asc[1]}")
    assert status == 200 and [item["id"] for item in page["data"]] == asc[2:]
    assert page["has_more"] is False
    status, page = call(server, "GET", path + f"?order=asc&after={asc[1]}&limit=2")
    assert [item["id"] for item in page["data"]] == asc[2:4] and page["has_more"] is True
    status, page = call(server, "GET", path + f"?order=asc&before={asc[3]}")
    assert status == 200 and [item["id"] for item in page["data"]] == asc[:3]

    # The SDK pages through them two at a time.
    listed = list(client.responses.input_items.list(r.id, limit=2))
    assert [item.id for item in listed] == ids
    assert [item.content[0].text for item in listed] == texts[::-1]

    for query in ["limit=0", "limit=101", "order=sideways"]:
        status, body = call(server, "GET", f"{path}?{query}")
        assert status == 400 and body["error"]["type"] == "invalid_request_error", query


def test_previous_response_id_continues_with_the_whole_conversation(server, client):
    """The agent gets the earlier inputs and outputs, then the new input;
    instructions are the new request's alone."""
    agent = TranscriptAgent(server)
    try:
        one = client.responses.create(model="transcript", instructions="Be brief.", input="first question")
        assert json.loads(one.output_text) == [["system", "Be brief."], ["user", "first question"]]
        two = client.responses.create(
            model="transcript", instructions="Be terse.", input="second question", previous_response_id=one.id
        )
        seen = json.loads(two.output_text)
        assert [m for m in seen if m[0] == "system"] == [["system", "Be terse."]]
        assert [m for m in seen if m[0] != "system"] == [
            ["user", "first question"],
            ["assistant", one.output_text],
            ["user", "second question"],
        ]
        three = client.responses.create(
            model="transcript",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "third question"}]}],
            previous_response_id=two.id,
        )
        assert json.loads(three.output_text) == [
            ["user", "first question"],
            ["assistant", one.output_text],
            ["user", "second question"],
            ["assistant", two.output_text],
            ["user", "third question"],
        ]
        assert client.responses.retrieve(three.id).previous_response_id == two.id
        assert client.responses.retrieve(two.id).previous_response_id == one.id
    finally:
        agent.close()
    # Echo answers the newest message, not the first.
    first = client.responses.create(model="echo", input="first words")
    second = client.responses.create(model="echo", input="second words", previous_response_id=first.id)
    assert (second.output_text, second.previous_response_id) == ("second words", first.id)


def assert_not_found(refused, response_id):
    error = refused.value
    assert error.status_code == 400
    assert (error.code, error.param) == ("previous_response_not_found", "previous_response_id")
    assert response_id in error.message


def test_a_missing_previous_response_is_a_400_naming_it(make_server):
    """Unknown, deleted, or another API key's: each is
    `previous_response_not_found`; another key's stored responses are
    invisible in every route."""
    server = make_server(env={"MCP_PROVIDER_API_KEY": f"{API_KEY},{OTHER_KEY}"})
    server.wait_for_model("echo")
    mine, theirs = make_client(server), make_client(server, OTHER_KEY)
    with pytest.raises(openai.BadRequestError) as refused:
        mine.responses.create(model="echo", input="x", previous_response_id="resp_not_a_real_one")
    assert_not_found(refused, "resp_not_a_real_one")

    deleted = mine.responses.create(model="echo", input="gone soon")
    mine.responses.delete(deleted.id)
    with pytest.raises(openai.BadRequestError) as refused:
        mine.responses.create(model="echo", input="x", previous_response_id=deleted.id)
    assert_not_found(refused, deleted.id)

    kept = mine.responses.create(model="echo", input="mine alone")
    with pytest.raises(openai.BadRequestError) as refused:
        theirs.responses.create(model="echo", input="x", previous_response_id=kept.id)
    assert_not_found(refused, kept.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(kept.id)
    assert call(server, "GET", f"/v1/responses/{kept.id}/input_items", key=OTHER_KEY)[0] == 404
    # Still there for its owner, and it continues.
    assert mine.responses.retrieve(kept.id).output_text == "mine alone"
    assert mine.responses.create(model="echo", input="on", previous_response_id=kept.id).output_text == "on"
    # The other key's own chain works.
    their_own = theirs.responses.create(model="echo", input="theirs")
    assert theirs.responses.create(model="echo", input="next", previous_response_id=their_own.id).output_text == "next"
    with pytest.raises(openai.NotFoundError):
        mine.responses.retrieve(their_own.id)


def test_the_oldest_are_evicted_past_the_byte_bound(make_server):
    server = make_server("--set", "responses_store_bytes=20000")
    server.wait_for_model("echo")
    client = make_client(server)
    ids = [client.responses.create(model="echo", input=padded(i, 2000), max_output_tokens=1).id for i in range(30)]
    status, body = call(server, "GET", f"/v1/responses/{ids[0]}")
    assert status == 404 and "evicted" in body["error"]["message"].lower(), body
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(ids[1])
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="echo", input="x", previous_response_id=ids[0])
    assert_not_found(refused, ids[0])
    for kept in ids[-3:]:
        # One word of a longer answer: incomplete, at max_output_tokens.
        assert client.responses.retrieve(kept).status == "incomplete"


def test_responses_expire_after_the_age_bound(make_server):
    server = make_server("--set", "responses_store_secs=1")
    server.wait_for_model("echo")
    client = make_client(server)
    r = client.responses.create(model="echo", input="brief life")
    assert client.responses.retrieve(r.id).output_text == "brief life"
    deadline = time.monotonic() + 10
    while call(server, "GET", f"/v1/responses/{r.id}")[0] == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    status, body = call(server, "GET", f"/v1/responses/{r.id}")
    assert status == 404
    message = body["error"]["message"].lower()
    assert "evicted" in message or "expired" in message, message
    fresh = client.responses.create(model="echo", input="newer")
    assert client.responses.retrieve(fresh.id).output_text == "newer"


def test_a_response_in_progress_is_never_evicted(make_server):
    server = make_server("--set", "responses_store_bytes=20000", "--set", "echo_chunk_delay_ms=100")
    server.wait_for_model("echo")
    client = make_client(server)
    running = client.responses.create(model="echo", input=FORTY_WORDS, background=True)
    ids = [client.responses.create(model="echo", input=padded(i, 2000), max_output_tokens=1).id for i in range(20)]
    assert call(server, "GET", f"/v1/responses/{ids[0]}")[0] == 404, "the store was not bounded"
    still = client.responses.retrieve(running.id)
    assert still.status in ("queued", "in_progress"), "the answer ended before the store filled: too fast to test"
    # Followed to its end (once done it is the oldest in a full store, so
    # it may go at once: it is read as it ends).
    events = read_events(client.responses.retrieve(running.id, stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == FORTY_WORDS
    # Finished, it is the oldest and goes first.
    for i in range(20):
        client.responses.create(model="echo", input=padded(100 + i, 2000), max_output_tokens=1)
    assert call(server, "GET", f"/v1/responses/{running.id}")[0] == 404


def test_background_answers_at_once_and_completes_without_the_connection(make_server):
    server = make_server("--set", "echo_chunk_delay_ms=50")
    server.wait_for_model("echo")
    client = make_client(server)
    started = time.monotonic()
    r = client.responses.create(model="echo", input=FORTY_WORDS, background=True)
    # Forty words 50 ms apart take two seconds.
    assert time.monotonic() - started < 1.5
    assert r.status in ("queued", "in_progress") and r.background is True
    done = wait_status(client, r.id, ("completed", "failed", "cancelled"))
    assert (done.status, done.output_text, done.background) == ("completed", FORTY_WORDS, True)
    assert done.usage.output_tokens == 40


def test_background_needs_store(client):
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="echo", input="x", background=True, store=False)


def test_cancel_stops_a_background_answer(make_server):
    server = make_server("--set", "echo_chunk_delay_ms=150")
    server.wait_for_model("echo")
    client = make_client(server)
    r = client.responses.create(model="echo", input=FORTY_WORDS, background=True)
    time.sleep(0.6)
    cancelled = client.responses.cancel(r.id)
    assert (cancelled.id, cancelled.status) == (r.id, "cancelled")
    at_cancel = cancelled.output_text
    assert len(at_cancel) < len(FORTY_WORDS)
    # Six seconds of answer were left: none of it comes.
    time.sleep(1.5)
    later = client.responses.retrieve(r.id)
    assert later.status == "cancelled"
    assert later.output_text == at_cancel and FORTY_WORDS.startswith(later.output_text)
    status, body = call(server, "GET", "/control/streams", key=BRIDGE_TOKEN)
    assert status == 200 and body["streams"] == [], "the cancelled answer is still running"

    # Finished ones cannot be cancelled: a completed background answer, a
    # plain stored one.
    quick = client.responses.create(model="echo", input="a b", background=True)
    assert wait_status(client, quick.id, ("completed",)).status == "completed"
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(quick.id)
    plain = client.responses.create(model="echo", input="plain", max_output_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(plain.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_never_made")


def test_cancel_tells_the_agent(server, client):
    agent = WsAgent(server, ["hanging"], lambda invoke, a: a.send(
        {"type": "model_stream_chunk", "id": invoke["id"], "chunk_index": 0, "delta": {"content": "thinking"}}
    ))
    try:
        server.wait_for_model("hanging")
        r = client.responses.create(model="hanging", input="x", background=True)
        invoke = agent.wait_for("model_invoke")
        assert client.responses.cancel(r.id).status == "cancelled"
        assert agent.wait_for("cancel")["id"] == invoke["id"]
        assert client.responses.retrieve(r.id).status == "cancelled"
    finally:
        agent.close()


def read_events(stream, count=None):
    """Events from an SDK stream, `count` of them (all when None); the
    stream is closed after."""
    events = []
    try:
        for event in stream:
            events.append(event)
            if count is not None and len(events) >= count:
                break
    finally:
        stream.close()
    return events


def assert_whole(events, text):
    """Each sequence number once, in order and without a gap; the deltas
    make the whole answer, and the stream ended with it."""
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), numbers
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == text


def test_a_dropped_background_stream_resumes_after_its_last_event(make_server):
    server = make_server("--set", "echo_chunk_delay_ms=100")
    server.wait_for_model("echo")
    client = make_client(server)
    stream = client.responses.create(model="echo", input=FORTY_WORDS, background=True, stream=True)
    first = []
    try:
        for event in stream:
            first.append(event)
            if event.sequence_number >= 10:
                break
    finally:
        stream.close()
    assert first[0].type == "response.created"
    response_id = first[0].response.id
    last = first[-1].sequence_number
    assert last == 10
    rest = read_events(client.responses.retrieve(response_id, stream=True, starting_after=last))
    assert rest[0].sequence_number == last + 1
    assert_whole(first + rest, FORTY_WORDS)
    done = client.responses.retrieve(response_id)
    assert (done.status, done.output_text) == ("completed", FORTY_WORDS)
    # After the end, the same replay again.
    again = read_events(client.responses.retrieve(response_id, stream=True, starting_after=last))
    assert [e.sequence_number for e in again] == [e.sequence_number for e in rest]


def test_a_background_stream_survives_a_hundred_reconnects(make_server):
    """The client drops the connection after each event and comes back
    with the last sequence number it saw, a hundred times."""
    words = " ".join(f"w{i}" for i in range(200))
    server = make_server("--set", "echo_chunk_delay_ms=20")
    server.wait_for_model("echo")
    client = make_client(server)
    events = read_events(client.responses.create(model="echo", input=words, background=True, stream=True), 1)
    response_id = events[0].response.id
    for _ in range(100):
        assert events[-1].type != "response.completed", "the answer ended before a hundred reconnects"
        more = read_events(
            client.responses.retrieve(response_id, stream=True, starting_after=events[-1].sequence_number), 1
        )
        assert len(more) == 1
        events += more
    events += read_events(client.responses.retrieve(response_id, stream=True, starting_after=events[-1].sequence_number))
    assert_whole(events, words)
    assert client.responses.retrieve(response_id).output_text == words


def test_bad_stream_resumes_are_refused(server, client):
    r = client.responses.create(model="echo", input="a b c", background=True)
    done = wait_status(client, r.id, ("completed",))
    assert done.status == "completed"
    events = read_events(client.responses.retrieve(r.id, stream=True, starting_after=0))
    last = events[-1].sequence_number
    assert events[-1].type == "response.completed"
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(r.id, stream=True, starting_after=-1)
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(r.id, stream=True, starting_after=last + 1000)
    # Only a background response can be streamed again.
    plain = client.responses.create(model="echo", input="not background")
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(plain.id, stream=True)


def test_metrics_count_stored_background_and_cancelled(make_server):
    server = make_server("--set", "echo_chunk_delay_ms=150")
    server.wait_for_model("echo")
    client = make_client(server)
    stored = metric(server, "mcp_provider_responses_stored")
    background = metric(server, "mcp_provider_responses_background_total")
    cancelled = metric(server, "mcp_provider_answers_cancelled_total")
    kept = [client.responses.create(model="echo", input=f"n{i}").id for i in range(3)]
    client.responses.create(model="echo", input="unkept", store=False)
    assert metric(server, "mcp_provider_responses_stored") == stored + 3
    client.responses.delete(kept[0])
    assert metric(server, "mcp_provider_responses_stored") == stored + 2
    r = client.responses.create(model="echo", input=FORTY_WORDS, background=True)
    assert metric(server, "mcp_provider_responses_background_total") == background + 1
    assert client.responses.cancel(r.id).status == "cancelled"
    assert metric(server, "mcp_provider_answers_cancelled_total") == cancelled + 1
    assert metric(server, "mcp_provider_responses_stored") == stored + 3


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def post_many(server, indices, ids, size, finished=None):
    """POSTs one stored response per index on one keep-alive connection;
    `ids[i]` is set to each one's id, which is also appended to `finished`
    (shared by every thread: the order they were answered in)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    try:
        for i in indices:
            body = json.dumps({"model": "echo", "input": padded(i, size), "max_output_tokens": 1})
            conn.request("POST", "/v1/responses", body, headers)
            answer = conn.getresponse()
            raw = answer.read()
            assert answer.status == 200, raw
            ids[i] = json.loads(raw)["id"]
            if finished is not None:
                finished.append(ids[i])
    finally:
        conn.close()


@pytest.mark.long
def test_ten_thousand_stored_responses_stay_within_the_byte_bound(make_server):
    """10,000 responses of about 4 kB each (40 MB) through a store bounded to
    8 MB: the server's memory grows by no more than the bound and a margin,
    the first are evicted and the last are kept."""
    cap = 8_000_000
    server = make_server("--set", f"responses_store_bytes={cap}")
    server.wait_for_model("echo")
    warm = [None] * 200
    post_many(server, range(200), warm, 4000)
    baseline = rss_bytes(server.proc.pid)

    count, threads = 10_000, 4
    ids = [None] * count
    finished = []
    workers = [
        threading.Thread(
            target=post_many, args=(server, range(t, count, threads), ids, 4000, finished), daemon=True
        )
        for t in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not any(w.is_alive() for w in workers), "10,000 requests took over five minutes"
    assert None not in ids, "a request failed"

    grown = rss_bytes(server.proc.pid) - baseline
    assert grown < cap + 16_000_000, f"RSS grew by {grown / 1e6:.1f} MB with a store bound of {cap / 1e6:.0f} MB"
    stored = metric(server, "mcp_provider_responses_stored")
    assert 0 < stored < cap / 4000
    # The threads do not keep pace with each other: what was answered
    # first went first, and what was answered last is kept.
    for early in finished[:10]:
        status, body = call(server, "GET", f"/v1/responses/{early}")
        assert status == 404 and "evicted" in body["error"]["message"].lower()
    for late in finished[-10:]:
        assert call(server, "GET", f"/v1/responses/{late}")[0] == 200


def test_the_agents_sdk_continues_a_run_by_previous_response_id(server):
    agents.set_tracing_disabled(True)
    agents.set_default_openai_client(
        openai.AsyncOpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20),
        use_for_tracing=False,
    )
    agents.set_default_openai_api("responses")
    agent = agents.Agent(name="Echo", instructions="Repeat what you are told.", model="echo")
    one = agents.Runner.run_sync(agent, "first")
    assert one.final_output == "first"
    assert one.last_response_id and one.last_response_id.startswith("resp_")
    two = agents.Runner.run_sync(agent, "second", previous_response_id=one.last_response_id)
    assert two.final_output == "second"
    status, stored = call(server, "GET", f"/v1/responses/{two.last_response_id}")
    assert status == 200 and stored["previous_response_id"] == one.last_response_id
    assert stored["output"][0]["content"][0]["text"] == "second"


def chain(server, model, turns):
    """A chain of responses, each sending only its new input and the
    previous one's id: the answers."""
    client = make_client(server, timeout=120)
    answers, previous = [], {}
    for text in turns:
        r = client.responses.create(model=model, input=text, **previous)
        assert r.status == "completed"
        answers.append(r.output_text)
        previous = {"previous_response_id": r.id}
    return answers


def test_a_chain_continues_one_codex_thread(server, exec_agent, tmp_path):
    """codex run by `agent exec`: a three-response chain is one codex thread,
    each turn resumed with its new message alone (so echo, behind codex,
    answers the new message)."""
    codex_agent(server, exec_agent, tmp_path)
    turns = ["first turn words", "second turn", "third turn"]
    answers = chain(server, "codex", turns)
    assert [a.strip() for a in answers] == turns
    assert len(codex_threads(tmp_path)) == 1


def test_a_chain_continues_one_claude_session(server, exec_agent, tmp_path):
    exec_agent("claude", "--preset", "claude", "--cwd", str(tmp_path), env=claude_env(server, tmp_path))
    turns = ["Say the word pelican", "Now say heron", "And now say stork"]
    answers = chain(server, "claude", turns)
    for turn, answer in zip(turns, answers):
        assert answer.strip().endswith(turn) and "User:" not in answer, answer
    sessions = list((tmp_path / ".claude" / "projects").rglob("*.jsonl"))
    assert len(sessions) == 1, sessions


def test_a_background_cli_answer_is_polled_and_cancelled_with_nothing_left_running(server, exec_agent):
    """A CLI run by `agent exec` answers in the background: polled, it
    completes; cancelled mid-answer, its process is gone and the status says
    `cancelled`, with the text it had printed."""
    marker, sleep = sleeper()
    exec_agent("slow", "--timeout-secs", "60", "--", "sh", "-c", f'printf "started "; {sleep}; printf late')
    client = make_client(server)
    quick = make_client(server).responses.create(model="slow", input="go", background=True)
    assert quick.status in ("queued", "in_progress")
    wait_running(marker)
    # Polled mid-answer: in progress, the first words already there.
    deadline = time.monotonic() + 10
    while True:
        r = client.responses.retrieve(quick.id)
        if r.output and text_of(r.output[0].model_dump()["content"]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert r.status == "in_progress"
    cancelled = client.responses.cancel(quick.id)
    assert cancelled.status == "cancelled"
    wait_gone(marker)
    final = client.responses.retrieve(quick.id)
    assert final.status == "cancelled" and final.output_text == "started ", final.output_text
    # Another run of the same agent is served: the cancelled one left nothing behind.
    exec_agent("quick", "--", "sh", "-c", "tr a-z A-Z")
    done = client.responses.create(model="quick", input="after", background=True)
    assert wait_status(client, done.id, {"completed", "failed", "cancelled"}).output_text == "AFTER"
