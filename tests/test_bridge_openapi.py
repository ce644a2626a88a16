"""The bridged tools as an OpenAPI service, on both runtimes, against the
real server-everything bridged twice: `everything` whole, and `limited`,
whose `exclude_tools` leaves out `get-sum` and the `trigger-*` tools.

What an OpenAPI tool client (Open WebUI, an agent framework's toolkit) must
see: a document the reference validator accepts, with one operation per
tool it may call and none for a tool filtered out; calls made from the
document alone (its paths, its bearer scheme) answered with the tool's
result in the documented shape. That every mistake is a clear 4xx, never
a 500, is asserted in the core (`gateway::openapi`'s tests)."""

import re
import time
import uuid
from urllib.parse import urljoin

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from conftest import API_KEY, Server, wait_until
from test_bridge import EVERYTHING
from test_bridge_api import metrics

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@pytest.fixture(scope="module")
def bridge(runtime, tmp_path_factory):
    config = tmp_path_factory.mktemp("openapi") / "bridge.toml"
    config.write_text(
        f'[[bridge.servers]]\nname = "everything"\ncommand = "{EVERYTHING}"\nargs = ["stdio"]\n'
        f'[[bridge.servers]]\nname = "limited"\ncommand = "{EVERYTHING}"\nargs = ["stdio"]\n'
        'exclude_tools = ["get-sum", "trigger-*"]\n'
    )
    server = Server(runtime, "--config", str(config), env={"BRIDGE_TEST_MARK": uuid.uuid4().hex})
    yield server
    server.stop()


def fetch(bridge, path, key=API_KEY):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(bridge.base + path, headers=headers, timeout=60)


def document(bridge, path="/openapi.json"):
    answer = fetch(bridge, path)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    return answer.json()


def tools_of(doc, server):
    prefix = f"/tools/{server}/"
    return {path.removeprefix(prefix) for path in doc["paths"] if path.startswith(prefix)}


def resolved(doc, schema):
    """`schema` as a JSON Schema of its own: the document's components
    beside it, so its `$ref`s resolve."""
    return {**schema, "components": doc["components"]}


def test_the_document_validates_and_has_every_tool_but_the_filtered_ones(bridge):
    doc = document(bridge)
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert "x-unavailable" not in doc, doc["x-unavailable"]
    # The API key is the bearer scheme, required everywhere.
    [requirement] = doc["security"]
    [(scheme, scopes)] = requirement.items()
    assert scopes == []
    declared = doc["components"]["securitySchemes"][scheme]
    assert (declared["type"], declared["scheme"]) == ("http", "bearer")

    everything, limited = tools_of(doc, "everything"), tools_of(doc, "limited")
    assert {"echo", "get-sum", "get-structured-content", "trigger-long-running-operation"} <= everything
    assert "echo" in limited and "get-sum" not in limited
    assert not any(tool.startswith("trigger-") for tool in limited), limited
    assert limited == everything - {"get-sum"} - {t for t in everything if t.startswith("trigger-")}
    operations = [item["post"] for item in doc["paths"].values()]
    ids = [op["operationId"] for op in operations]
    assert len(set(ids)) == len(ids) and all(IDENTIFIER.match(i) for i in ids), ids
    served = {"everything": everything, "limited": limited}
    assert set(doc["paths"]) == {f"/tools/{s}/{t}" for s, tools in served.items() for t in tools}

    echo = doc["paths"]["/tools/everything/echo"]["post"]
    assert echo["operationId"] == "everything__echo"
    assert echo["summary"] == "Echo Tool" and echo["description"] == "Echoes back the input string"
    body = resolved(doc, echo["requestBody"]["content"]["application/json"]["schema"])
    jsonschema.validate({"message": "hi"}, body)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"message": 1}, body)
    assert {"200", "400", "401", "404", "502"} <= set(echo["responses"])
    # A tool with an output schema: it describes the structured result.
    structured = doc["paths"]["/tools/everything/get-structured-content"]["post"]
    result = structured["responses"]["200"]["content"]["application/json"]["schema"]
    output = resolved(doc, result["properties"]["structuredContent"])
    jsonschema.validate({"temperature": 1, "conditions": "sunny", "humidity": 2}, output)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"temperature": "warm"}, output)

    # One server's document: valid, that server's operations alone.
    one = document(bridge, "/openapi/limited.json")
    validate(one)
    assert set(one["paths"]) == {f"/tools/limited/{t}" for t in limited}
    assert "limited" in one["info"]["title"]


def test_a_client_driven_by_the_document_calls_echo_and_get_sum(bridge):
    """What an OpenAPI tool client does, with nothing but the document: the
    operation found by its path, the URL from `servers`, the key sent as
    the bearer scheme says; the answers match the documented schemas."""
    doc = httpx.get(f"{bridge.base}/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60).json()
    [scheme] = doc["security"][0]
    assert doc["components"]["securitySchemes"][scheme]["scheme"] == "bearer"
    base = urljoin(bridge.base + "/openapi.json", doc["servers"][0]["url"])

    def call(path, arguments):
        operation = doc["paths"][path]["post"]
        answer = httpx.post(urljoin(base, path.lstrip("/")), json=arguments,
                            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        jsonschema.validate(result, resolved(doc, schema))
        return result

    echoed = call("/tools/everything/echo", {"message": "through OpenAPI"})
    assert echoed["content"] == [{"type": "text", "text": "Echo: through OpenAPI"}]
    summed = call("/tools/everything/get-sum", {"a": 2, "b": 40})
    assert "42" in summed["content"][0]["text"], summed
    structured = call("/tools/everything/get-structured-content", {"location": "Chicago"})
    assert set(structured["structuredContent"]) == {"temperature", "conditions", "humidity"}
    # The filtered copy serves what it keeps.
    assert call("/tools/limited/echo", {"message": "kept"})["content"][0]["text"] == "Echo: kept"
    # Arguments the tool refuses: the tool's own answer, so a 200 saying so.
    refused = call("/tools/everything/echo", {"message": 1})
    assert refused["isError"] is True and "expected string" in refused["content"][0]["text"], refused


def calls_to(bridge, server):
    """Requests the bridge sent `server`, as /metrics has them (its figures
    are taken every REPORT_EVERY, a second)."""
    return metrics(bridge).get(("mcp_provider_bridge_calls_total", (("server", server),)), 0)


def settled_calls_to(bridge, server):
    """`calls_to` once the figures have caught up: the same two reports
    running."""
    seen = calls_to(bridge, server)
    while True:
        time.sleep(1.2)
        now = calls_to(bridge, server)
        if now == seen:
            return now
        seen = now


def test_an_excluded_tool_is_refused_without_reaching_its_server(bridge):
    for path in ("/openapi.json", "/openapi/limited.json"):
        assert "/tools/limited/get-sum" not in document(bridge, path)["paths"]
    before = settled_calls_to(bridge, "limited")
    for tool in ("get-sum", "trigger-long-running-operation"):
        answer = httpx.post(f"{bridge.base}/tools/limited/{tool}", json={"a": 1, "b": 2},
                            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
        assert answer.status_code == 404, answer.text
        assert f"has no tool `{tool}`" in answer.json()["error"]["message"]
    # Then a call the filter lets through: the list the documents above
    # read is kept, so the call alone. Once the figures count it, they
    # count whatever came before it.
    answer = httpx.post(f"{bridge.base}/tools/limited/echo", json={"message": "x"},
                        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert answer.status_code == 200
    assert wait_until(lambda: calls_to(bridge, "limited") >= before + 1), calls_to(bridge, "limited")
    time.sleep(1.2)
    assert calls_to(bridge, "limited") == before + 1, "a filtered tool's call reached the server"
    # The same tool, not filtered on the other server, is called there.
    answer = httpx.post(f"{bridge.base}/tools/everything/get-sum", json={"a": 1, "b": 2},
                        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert answer.status_code == 200 and "3" in answer.json()["content"][0]["text"]
