"""Bad input over raw HTTP: each answered with the right status and error
shape, and the server keeps serving."""

import json

import openai

from conftest import API_KEY, WeatherAgent, http_request, raw_request

CHAT = "/v1/chat/completions"
GOOD = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}


def error_of(body):
    return json.loads(body)["error"]


def test_oversized_body_is_413(make_server):
    s = make_server("--set", "max_body_bytes=1000")
    s.wait_for_model("echo")
    big = {"model": "echo", "messages": [{"role": "user", "content": "x" * 2000}]}
    status, _, body = http_request(s, "POST", CHAT, big)
    assert status == 413 and error_of(body)["code"] == "request_too_large"
    status, _, body = http_request(s, "POST", "/api/chat", big)
    assert status == 413 and isinstance(error_of(body), str)
    assert http_request(s, "POST", CHAT, GOOD)[0] == 200


def test_oversized_headers_are_431(server):
    head = f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 20000}\r\n\r\n".encode()
    status, _, body = raw_request(server, head)
    assert status == 431 and error_of(body)["code"] == "headers_too_large"


def test_garbage_bytes_are_400(server):
    status, _, _ = raw_request(server, b"\x16\x03\x01 definitely not http\r\n\r\n")
    assert status == 400


def test_chunked_request_body_is_read(server):
    body = json.dumps(GOOD).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:10], body[10:])) + b"0\r\n\r\n"
    status, _, answer = raw_request(server, head + chunked)
    assert status == 200 and json.loads(answer)["choices"][0]["message"]["content"] == "hi"


def test_non_local_host_and_origin_are_refused(server):
    assert http_request(server, "GET", "/v1/models", headers={"Host": "attacker.example"})[0] == 403
    assert http_request(server, "GET", "/v1/models", headers={"Origin": "http://attacker.example"})[0] == 403
    status, headers, _ = http_request(server, "GET", "/v1/models", headers={"Origin": "http://localhost:5173"})
    assert status == 200 and headers["access-control-allow-origin"] == "http://localhost:5173"


def test_rate_limit_429_with_retry_after(make_server):
    s = make_server("--set", "requests_per_minute=2")
    s.wait_for_model("echo")
    assert [http_request(s, "POST", CHAT, GOOD)[0] for _ in range(2)] == [200, 200]
    status, headers, body = http_request(s, "POST", CHAT, GOOD)
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert error_of(body)["type"] == "rate_limit_error"


def test_still_serving_after_all_that(server):
    assert server.alive()
    status, _, body = http_request(server, "POST", CHAT, GOOD)
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "hi"


def test_keep_alive_serves_several_requests_on_one_connection(server):
    body = json.dumps(GOOD).encode()
    one = (
        f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(one * 3)
        data = b""
        while data.count(b'"content":"hi"') < 3:
            chunk = s.recv(65536)
            assert chunk, "connection closed early"
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 3


# The largest integer a TOML file or `--set` can hold: someone's "never".
NEVER = str(2**63 - 1)
# Every configured wait, of the provider and of the bridge.
WAITS = [
    "request_timeout_secs", "stream_idle_timeout_secs", "keepalive_ms", "session_ttl_secs",
    "session_grace_secs", "read_timeout_secs", "responses_store_secs",
    "bridge.session_idle_secs", "bridge.startup_timeout_secs", "bridge.ping_timeout_secs",
]


def test_a_configured_wait_of_any_length_is_a_wait_never_a_crash(make_server):
    """Waits configured as long as the configuration allows (a deadline
    past the clock's range): the echo agent answers whole and streamed,
    the Responses store keeps an answer, an agent on the agent link gets
    its session and answers, a bridged server answers, and the server is
    still there after it all."""
    from test_bridge import bridge_server, client, everything, run

    sets = [a for key in WAITS for a in ("--set", f"{key}={NEVER}")]
    server = bridge_server(lambda *args, env: make_server(*sets, *args, env=env), everything())
    openai_client = openai.OpenAI(base_url=server.base + "/v1", api_key=API_KEY, max_retries=0, timeout=20)
    whole = openai_client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    assert whole.choices[0].message.content
    pieces = openai_client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices)
    stored = openai_client.responses.create(model="echo", input="hi")
    assert openai_client.responses.retrieve(stored.id).output_text == stored.output_text
    agent = WeatherAgent(server)
    asked = openai_client.chat.completions.create(model="weather", messages=[{"role": "user", "content": "Paris?"}])
    assert asked.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'
    agent.close()

    async def call():
        async with client(server) as c:
            return (await c.call_tool("echo", {"message": "later"})).content[0].text

    assert run(call()) == "Echo: later"
    assert server.alive()
