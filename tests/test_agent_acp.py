"""`agent acp`: an agent speaking the Agent Client Protocol serves as a
model, kept warm, on every runtime. These tests drive a scripted ACP agent
(tests/fixtures/fake_acp.py) whose every received message is logged, so
they can count what reached it: processes started (`initialize`), sessions
opened (`session/new`), prompts and what they held, cancels.

What an editor must see: the agent's message streamed on every editor API;
a conversation's later turns in the same session, sent only their new
message; an edited conversation in a session of its own, with its history;
a cancel reaching the agent when the editor leaves; a crash, a garbled or
oversized line, a silent or mismatched agent as a clear error, the agent
restarted for the next turn; permission requests answered by the policy at
once, or put to the user through the control API (allowed, rejected, or
rejected when nobody answers in time); nothing left running."""

import json
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import threading

import anthropic
import httpx
import openai
import pytest

from conftest import API_KEY, BRIDGE_TOKEN, ROOT, metric, wait_until
from test_agent_exec import ExecAgent, running, wait_gone

FAKE = ROOT / "tests" / "fixtures" / "fake_acp.py"


class Acp:
    """`agent acp` running the scripted agent, with its log."""

    def __init__(self, server, tmp_path, *args, env=None):
        self.server = server
        self.log = tmp_path / f"acp-{uuid.uuid4().hex[:6]}.jsonl"
        self.log.touch()
        self.model = f"acp-{uuid.uuid4().hex[:8]}"
        self.marker = str(self.log)
        self.agent = ExecAgent(
            server,
            "--model",
            self.model,
            *args,
            "--",
            sys.executable,
            str(FAKE),
            self.marker,
            env={"FAKE_ACP_LOG": str(self.log), **(env or {})},
            kind="acp",
        )
        server.wait_for_model(self.model)

    def received(self, method=None):
        """What the agent received, in order (of one method)."""
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [m for m in lines if method is None or m.get("method") == method]

    def prompts(self):
        return [" ".join(b["text"] for b in m["params"]["prompt"]) for m in self.received("session/prompt")]

    def wait_received(self, method, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.received(method)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received(method)) >= count, f"{method} not received: {self.received()}"

    def chat(self, messages, **kwargs):
        return client(self.server).chat.completions.create(model=self.model, messages=messages, **kwargs)

    def stop(self):
        out, err = self.agent.stop()
        wait_gone(self.marker)
        return out, err


@pytest.fixture
def acp(server, tmp_path):
    started = []

    def start(*args, env=None):
        agent = Acp(server, tmp_path, *args, env=env)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=60)


def user(text):
    return {"role": "user", "content": text}


def streamed_text(stream):
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_an_acp_agent_answers_on_every_editor_api_with_its_thoughts_as_reasoning(server, acp):
    """The agent's message is the answer's text and its thought chunk
    (`Thinking it over.`) the reasoning, each in its API's own field."""
    agent = acp()
    text, reasoning = "", ""
    for chunk in agent.chat([user("hello there")], stream=True):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            reasoning += getattr(chunk.choices[0].delta, "reasoning_content", None) or ""
    assert text.startswith("Turn 1 of s1-") and text.endswith("hello there")
    assert reasoning == "Thinking it over."

    events = list(client(server).responses.create(model=agent.model, input="from responses", stream=True))
    [done] = [e for e in events if e.type == "response.completed"]
    assert done.response.output_text.endswith("from responses")
    thought = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert thought == "Thinking it over."

    messages = anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0)
    said = messages.messages.create(model=agent.model, max_tokens=100, messages=[user("from messages")])
    blocks = {b.type: b for b in said.content}
    assert blocks["thinking"].thinking == "Thinking it over."
    assert blocks["text"].text.endswith("from messages")

    with httpx.stream(
        "POST",
        server.base + "/api/chat",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": agent.model, "messages": [user("from ollama")]},
        timeout=30,
    ) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines).endswith("from ollama")
    assert "".join(line["message"].get("thinking", "") for line in lines) == "Thinking it over."
    assert len(agent.received("initialize")) == 1, "one process for every request"


def test_a_conversation_is_one_session_of_one_process_sent_only_its_new_messages(acp):
    agent = acp()
    messages = [{"role": "system", "content": "Be brief."}, user("first question")]
    for turn in range(1, 4):
        answer = agent.chat(messages).choices[0].message.content
        assert answer.startswith(f"Turn {turn} of s1-"), answer
        messages += [{"role": "assistant", "content": answer}, user(f"question {turn + 1}")]
    assert len(agent.received("initialize")) == 1
    # The first session, kept for it; the probe's; and the spare opened
    # in place of the first.
    agent.wait_received("session/new", 3)
    assert len(agent.received("session/new")) == 3 and not tool_sessions(agent)
    prompts = agent.prompts()
    assert prompts[0] == "Be brief.\n\nfirst question"
    assert prompts[1:] == ["question 2", "question 3"]


def test_an_edited_conversation_opens_a_session_with_its_history(acp):
    agent = acp()
    first = agent.chat([user("one")]).choices[0].message.content
    edited = [user("one"), {"role": "assistant", "content": first + " (edited)"}, user("two")]
    answer = agent.chat(edited).choices[0].message.content
    # The spare opened in place of the first (s2 is the probe's).
    assert answer.startswith("Turn 1 of s3-"), answer
    prompted = [m["params"]["sessionId"] for m in agent.received("session/prompt")]
    assert len(set(prompted)) == 2
    history = agent.prompts()[-1]
    assert "one" in history and "(edited)" in history and history.endswith("two")


def test_a_new_conversations_prompt_goes_to_a_session_opened_ahead(acp):
    """The first the agent hears of a new conversation is its prompt, in a
    spare session opened before it came, another opened in its place:
    without the editor's tools, or, once a conversation was given them,
    with the relay listing them."""
    agent = acp()

    def heard_first(chat):
        before = len(agent.received())
        answer = chat()
        return [m for m in agent.received()[before:] if "method" in m][0], answer

    for n in range(3):
        # s1, the first spare, and the probe's; then one spare each.
        agent.wait_received("session/new", 2 + n)
        first, answer = heard_first(lambda: agent.chat([user(f"new {n}")]).choices[0].message.content)
        assert first["method"] == "session/prompt", first
        assert answer.endswith(f"new {n}")
    # The third's spare, opened once its turn was heard from.
    agent.wait_received("session/new", 5)
    # Given the editor's tools, a conversation opens its own session (the
    # spare has none), and the next spare is given them.
    first, _ = heard_first(lambda: agent.chat([user("tools one")], tools=[WEATHER]))
    assert first["method"] == "session/new" and first["params"]["mcpServers"]
    assert wait_until(lambda: len([m for m in agent.received() if "listed" in m]) == 3)
    first, answer = heard_first(lambda: agent.chat([user("tools two")], tools=[WEATHER]))
    assert first["method"] == "session/prompt", first
    assert answer.choices[0].message.content.endswith("tools two")
    assert len(tool_sessions(agent)) == 2 and len(set(tool_sessions(agent))) == 2
    listed = [m["listed"] for m in agent.received() if m.get("session") == first["params"]["sessionId"]]
    assert listed == [["get_weather"]]


def test_an_editor_that_leaves_cancels_the_turn_and_the_agent_goes_on(acp):
    agent = acp()
    stream = agent.chat([user("SLOW please")], stream=True)
    got = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got += 1
            if got == 3:
                break
    stream.close()
    agent.wait_received("session/cancel")
    cancelled = agent.received("session/cancel")[0]["params"]["sessionId"]
    assert cancelled.startswith("s1-")
    answer = agent.chat([user("after")]).choices[0].message.content
    assert answer.endswith("after")
    assert len(agent.received("initialize")) == 1


def test_a_crashed_agent_fails_its_turn_and_is_restarted_for_the_next(acp):
    agent = acp()
    with pytest.raises(openai.APIError) as failed:
        streamed_text(agent.chat([user("CRASH now")], stream=True))
    assert "exited with status 3" in str(failed.value)
    answer = agent.chat([user("again")]).choices[0].message.content
    assert answer.startswith("Turn 1 of s1-") and answer.endswith("again")
    starts = agent.received("initialize")
    assert len(starts) == 2 and starts[0]["pid"] != starts[1]["pid"]


@pytest.mark.parametrize(
    ("policy", "kind", "chosen"),
    [("never", "edit", "no"), ("always", "edit", "yes"), ("read-only", "read", "yes"), ("read-only", "execute", "no")],
)
def test_permission_requests_follow_the_policy_at_once(acp, policy, kind, chosen):
    agent = acp("--allow-own-tools", policy)
    answer = agent.chat([user(f"ASK:{kind}")]).choices[0].message.content
    assert answer.startswith(f"[permission {chosen}] ")


def control(server, method, path, body=None):
    """A control API call with the bridge token: (status, JSON body)."""
    r = httpx.request(method, server.base + path, json=body, timeout=10,
                      headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    return r.status_code, r.json()


def questions(server, model=None):
    """The permission questions waiting for the user (of one model)."""
    status, body = control(server, "GET", "/control/permissions")
    assert status == 200, body
    return [q for q in body["questions"] if model is None or q["model"] == model]


def asking(agent, text):
    """A chat asked in the background: (its thread, where its answer
    lands)."""
    answer = {}

    def ask():
        answer["text"] = agent.chat([user(text)]).choices[0].message.content

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    return thread, answer


def the_question(server, agent):
    found = []
    assert wait_until(lambda: found.extend(questions(server, agent.model)) or found, timeout=20)
    [question] = found
    return question


@pytest.mark.parametrize(("allow", "chosen"), [(True, "yes"), (False, "no")])
def test_asked_the_user_decides_through_the_control_api(server, acp, allow, chosen):
    """With `ask`, the question waits for the user with the agent's tool
    and its input; the decision reaches the agent, which runs its tool only
    when allowed."""
    agent = acp("--allow-own-tools", "ask")
    thread, answer = asking(agent, "ASK:edit")
    question = the_question(server, agent)
    assert question["tool"]["title"] == "Touch a file"
    assert question["tool"]["kind"] == "edit"
    assert "notes.txt" in question["tool"]["input"] and "hello from the agent" in question["tool"]["input"]
    assert question["agent_id"] and question["session_id"]
    assert thread.is_alive(), "the turn waits for the user"
    decided = metric(server, "mcp_provider_permission_questions_total")

    status, body = control(server, "POST", "/control/permission", {"id": question["id"], "allow": allow})
    assert (status, body) == (200, {"id": question["id"], "allow": allow})
    thread.join(timeout=20)
    assert not thread.is_alive()
    text = answer["text"]
    assert text.startswith(f"[permission {chosen}] ")
    assert ("[wrote notes.txt]" in text) == allow, text
    assert questions(server, agent.model) == []
    assert metric(server, "mcp_provider_permission_questions_total") == decided + 1
    # Decided once: a second decision finds nothing.
    status, body = control(server, "POST", "/control/permission", {"id": question["id"], "allow": True})
    assert status == 404 and "No permission question" in body["error"]["message"]


def test_a_question_nobody_answers_is_rejected_in_time_and_the_turn_ends(server, acp):
    agent = acp("--allow-own-tools", "ask", "--ask-timeout-secs", "1")
    started = time.monotonic()
    thread, answer = asking(agent, "ASK:execute")
    the_question(server, agent)
    thread.join(timeout=20)
    assert not thread.is_alive(), "the turn did not end"
    assert 1 <= time.monotonic() - started < 15
    assert answer["text"].startswith("[permission no] ")
    assert "[wrote notes.txt]" not in answer["text"]
    assert wait_until(lambda: questions(server, agent.model) == [])


def test_stop_reasons_become_finish_reasons(acp):
    agent = acp()
    assert agent.chat([user("REFUSE")]).choices[0].finish_reason == "content_filter"
    assert agent.chat([user("MAXTOK")]).choices[0].finish_reason == "length"
    assert agent.chat([user("plain")]).choices[0].finish_reason == "stop"


def test_garbage_floods_and_unknown_requests_are_survived(acp):
    agent = acp()
    for word in ["GARBAGE", "FLOOD", "FS"]:
        answer = agent.chat([user(word)]).choices[0].message.content
        assert answer.endswith(word), answer
    assert "[fs error -32601]" in agent.chat([user("FS")]).choices[0].message.content
    assert len(agent.received("initialize")) == 1


def test_an_oversized_line_ends_the_agent_with_an_error_and_it_comes_back(acp):
    agent = acp()
    with pytest.raises(openai.APIStatusError) as failed:
        agent.chat([user("HUGE")])
    assert "longer than 16 MiB" in str(failed.value)
    assert agent.chat([user("fine")]).choices[0].message.content.endswith("fine")


@pytest.mark.parametrize(
    ("env", "args", "said"),
    [
        ({"FAKE_ACP_SILENT": "1"}, ["--start-timeout-secs", "2"], "did not answer `initialize` within 2 s"),
        ({"FAKE_ACP_VERSION": "2"}, [], "speaks ACP version 2"),
        ({"FAKE_ACP_AUTH": "1"}, [], "refused a new session: Authentication required"),
    ],
)
def test_an_agent_that_cannot_serve_says_why(acp, env, args, said):
    agent = acp(*args, env=env)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as failed:
        agent.chat([user("hello")])
    assert said in str(failed.value)
    assert time.monotonic() - started < 10


def test_nothing_is_left_running_when_the_agent_stops(acp):
    agent = acp()
    agent.chat([user("hello")])
    assert running(agent.marker)
    agent.stop()
    assert not running(agent.marker)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "description": "The time in a city.", "parameters": {"type": "object"}},
}


def tool_sessions(agent):
    """The sessions of conversations given the editor's tools: prompted,
    and given an MCP server (unlike the first, s1, opened to learn the
    agent's models; the probe's, s2, given one at start to see the agent
    list its tools, and spares not taken are never prompted)."""
    prompted = {m["params"]["sessionId"] for m in agent.received("session/prompt")}
    return [m["session"] for m in agent.received() if "listed" in m and m["session"] in prompted]


def results_for(message, texts):
    """The editor's tool messages answering `message`'s calls."""
    return [
        {"role": "tool", "tool_call_id": call.id, "content": texts[call.function.name]}
        for call in message.tool_calls
    ]


def test_the_editors_tools_round_trip_in_the_same_session(acp):
    agent = acp()
    messages = [user("TOOL:get_weather,get_time")]
    first = agent.chat(messages, tools=[WEATHER, TIME]).choices[0]
    assert first.finish_reason == "tool_calls"
    calls = sorted((c.function.name, json.loads(c.function.arguments)) for c in first.message.tool_calls)
    assert calls == [("get_time", {"city": "Paris"}), ("get_weather", {"city": "Paris"})]
    # The agent listed exactly the editor's tools when its session opened.
    [session] = tool_sessions(agent)
    [listed] = [m["listed"] for m in agent.received() if m.get("session") == session and "listed" in m]
    assert sorted(listed) == ["get_time", "get_weather"]

    messages += [first.message.model_dump(exclude_none=True)]
    messages += results_for(first.message, {"get_weather": "Sunny", "get_time": "Noon"})
    stream = agent.chat(messages, tools=[WEATHER, TIME], stream=True)
    text = streamed_text(stream)
    assert "[get_weather said: Sunny]" in text and "[get_time said: Noon]" in text, text
    assert text.startswith("[get_weather said: Sunny] [get_time said: Noon]") or "Turn 1 of s1-" in text
    # One session, one prompt: the agent's turn went on with the results.
    assert len(tool_sessions(agent)) == 1
    assert len(agent.received("session/prompt")) == 1


def test_an_edited_conversation_ends_the_turn_waiting_for_results(acp):
    agent = acp()
    first = agent.chat([user("TOOL:get_weather")], tools=[WEATHER]).choices[0]
    assert first.finish_reason == "tool_calls"
    # The editor went on in that conversation without the results: the
    # turn waiting for them is cancelled.
    went_on = [user("TOOL:get_weather"), {"role": "assistant", "content": "No calls."}, user("something else")]
    answer = agent.chat(went_on, tools=[WEATHER]).choices[0].message.content
    assert answer.endswith("something else")
    agent.wait_received("session/cancel")
    assert len(tool_sessions(agent)) == 2


def test_the_agents_models_are_listed_and_the_one_asked_for_is_set(server, acp):
    agent = acp()
    listed = {m.id for m in client(server).models.list()}
    assert {agent.model, f"{agent.model}/fast", f"{agent.model}/deep"} <= listed
    deep = client(server).chat.completions.create(model=f"{agent.model}/deep", messages=[user("hi")])
    assert deep.choices[0].message.content.startswith("[model deep] Turn 1 of s1-")
    [set_model] = agent.received("session/set_config_option")
    assert set_model["params"]["value"] == "deep"
    # The agent's own name is its default model.
    plain = agent.chat([user("hi")]).choices[0].message.content
    assert plain.startswith("Turn 1 of s3-")


def test_a_conversation_goes_on_in_its_session_loaded_into_the_restarted_agent(acp, tmp_path):
    agent = acp(env={"FAKE_ACP_STATE": str(tmp_path / "state.json")})
    messages = [user("first question")]
    answer = agent.chat(messages).choices[0].message.content
    assert answer.startswith("Turn 1 of s1-")
    session = answer.split(":")[0].removeprefix("Turn 1 of ")
    # Another conversation crashes the agent.
    with pytest.raises(openai.APIError):
        agent.chat([user("CRASH")])
    messages += [{"role": "assistant", "content": answer}, user("second question")]
    again = agent.chat(messages).choices[0].message.content
    # The same session, loaded into the new process; its replayed history
    # reached no editor.
    assert again == f"Turn 2 of {session}: second question"
    assert [m["params"]["sessionId"] for m in agent.received("session/load")] == [session]
    assert len(agent.received("initialize")) == 2


def test_the_reasoning_effort_each_api_asks_for_is_set_on_the_session(server, acp):
    """chat's `reasoning_effort`, Responses' `reasoning.effort`, a Messages
    thinking budget and Ollama's `think` set the agent's effort option."""
    agent = acp()
    chat = agent.chat([user("one")], reasoning_effort="high").choices[0].message.content
    assert chat.startswith("[effort high] ")
    responses = client(server).responses.create(model=agent.model, input="two", reasoning={"effort": "low"})
    assert responses.output_text.startswith("[effort low] ")
    messages = anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0)
    with messages.messages.stream(
        model=agent.model, max_tokens=30000, messages=[user("three")],
        thinking={"type": "enabled", "budget_tokens": 20000},
    ) as stream:
        assert "".join(stream.text_stream).startswith("[effort high] ")
    r = httpx.post(
        server.base + "/api/chat",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": agent.model, "messages": [user("four")], "think": "low", "stream": False},
        timeout=30,
    )
    assert r.json()["message"]["content"].startswith("[effort low] ")
    # Without one, the session keeps the agent's own.
    assert agent.chat([user("five")]).choices[0].message.content.startswith("Turn 1 of ")
    assert [m["params"]["value"] for m in agent.received("session/set_config_option")] == ["high", "low", "high", "low"]


def test_every_session_busy_starts_another_agent_process_up_to_the_limit(acp):
    """One session per process, two processes: two conversations at once
    are answered by two processes, a third waits for a place, and a
    conversation goes on in the process that holds it."""
    agent = acp("--max-sessions", "1", "--max-processes", "2")
    with ThreadPoolExecutor(3) as pool:
        first, second = (pool.submit(agent.chat, [user(f"WAIT {n}")]) for n in ("one", "two"))
        agent.wait_received("session/prompt", 2)
        third = pool.submit(agent.chat, [user("three")])
        answers = [f.result().choices[0].message.content for f in (first, second, third)]
    pids = {m["pid"] for m in agent.received("initialize")}
    assert len(pids) == 2
    served = {a.split(":")[0].split("-")[-1] for a in answers}
    assert served == {str(p) for p in pids}, answers
    assert [a.endswith(w) for a, w in zip(answers, ("one", "two", "three"))] == [True] * 3
    history = [user("three"), {"role": "assistant", "content": answers[2]}, user("and on")]
    on = agent.chat(history).choices[0].message.content
    assert on.startswith("Turn 2 of " + answers[2].split(":")[0].removeprefix("Turn 1 of ")), (on, answers)
    assert len(agent.received("initialize")) == 2


def text_round_trip(agent, api_client):
    """A call the agent writes as text reaches the editor as a tool call,
    and its result goes back to the same session as its next prompt."""
    messages = [user("TEXTTOOL:get_weather")]
    first = api_client.chat.completions.create(model=agent.model, messages=messages, tools=[WEATHER]).choices[0]
    assert first.finish_reason == "tool_calls"
    assert first.message.content == "Calling. "
    [call] = first.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    prompt = agent.prompts()[-1]
    assert "- get_weather: The weather in a city." in prompt and "<tool_call>" in prompt
    messages += [first.message.model_dump(exclude_none=True)]
    messages += results_for(first.message, {"get_weather": "Sunny"})
    text = streamed_text(
        api_client.chat.completions.create(model=agent.model, messages=messages, tools=[WEATHER], stream=True)
    )
    session = agent.received("session/prompt")[-2]["params"]["sessionId"]
    assert text.startswith(f"Turn 2 of {session}: "), text
    assert '<tool_result name="get_weather">\nSunny\n</tool_result>' in agent.prompts()[-1]


def test_the_editors_tools_as_text_round_trip_in_the_same_session(server, acp):
    agent = acp("--editor-tools", "text")
    text_round_trip(agent, client(server))
    # Set to text, no probe session was opened, nor one given the relay.
    assert all(not m["params"]["mcpServers"] for m in agent.received("session/new"))


def test_an_agent_that_never_lists_an_mcp_servers_tools_gets_them_as_text(server, acp):
    agent = acp(env={"FAKE_ACP_NO_MCP": "1"})
    # The probe's session got the relay, and nothing listed its tools.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        first = client(server).chat.completions.create(
            model=agent.model, messages=[user("TEXTTOOL:get_weather")], tools=[WEATHER]
        )
        if first.choices[0].finish_reason == "tool_calls":
            break
        time.sleep(1)
    text_round_trip(agent, client(server))
    _, err = agent.stop()
    assert "did not list the tools of the MCP server its first session was given" in err, err


def test_the_context_an_agent_reports_is_the_prompts_usage(server, acp):
    """Without token counts in its answer, the context the agent reported
    (`usage_update`) is the prompt's tokens, its answer's taken out."""
    agent = acp()
    plain = agent.chat([user("hello")]).usage
    reported = agent.chat([user("USAGE please")]).usage
    assert plain.prompt_tokens < 100
    assert reported.prompt_tokens + reported.completion_tokens == 4321, reported
    messages = anthropic.Anthropic(base_url=server.base, api_key=API_KEY, max_retries=0)
    answer = messages.messages.create(model=agent.model, max_tokens=100, messages=[user("USAGE again")])
    assert answer.usage.input_tokens + answer.usage.output_tokens == 4321, answer.usage


def test_an_agent_that_needs_a_login_it_can_do_with_a_key_is_logged_in(acp):
    agent = acp(env={"FAKE_ACP_AUTH": "key"})
    assert agent.chat([user("hello")]).choices[0].message.content.endswith("hello")
    [login] = agent.received("authenticate")
    assert login["params"] == {"methodId": "api-key"}
