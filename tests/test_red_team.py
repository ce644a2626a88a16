"""What a hostile client, a hostile stdio MCP server or a careless user
could do to either runtime, each hole closed and kept closed: every test
here failed before its fix."""

import json
import uuid

from conftest import BRIDGE_TOKEN, http_request, wait_until
from test_bridge import marked


def integration(name, mark):
    """A bridged server whose child, once started, can be found by `mark`."""
    return {"name": name, "command": "sh", "args": ["-c", "exec sleep 30"], "env": {"BRIDGE_TEST_MARK": mark}}


def test_no_spelling_of_the_integrations_path_runs_a_command_with_the_api_key(make_server):
    mark = uuid.uuid4().hex
    server = make_server()
    added = integration("sneaky", mark)
    same_path = [
        ("POST", "//integrations"),
        ("POST", "///integrations"),
        ("POST", "/./integrations"),
        ("POST", "/integrations/"),
        ("POST", "/x/../integrations"),
        ("POST", "/%69ntegrations"),
        ("GET", "//integrations"),
        ("GET", "//integrations//sneaky"),
        ("DELETE", "//integrations/sneaky"),
        ("PUT", "//integrations"),
    ]
    for method, target in same_path:
        status, _, body = http_request(server, method, target, added)
        assert status == 401, (method, target, status, body)
    # What cannot be made canonical is refused before any route is chosen.
    for target in ["/integrations%2Fsneaky", "/%2Fintegrations", "/../integrations", "/integrations%00"]:
        status, _, body = http_request(server, "POST", target, added)
        assert status == 400 and b"request path" in body, (target, status, body)
    # Another case is another path: no route at all.
    assert http_request(server, "POST", "/INTEGRATIONS", added)[0] == 404
    # Nothing was added, nothing runs.
    status, _, listed = http_request(server, "GET", "/integrations", headers={"Authorization": f"Bearer {BRIDGE_TOKEN}"})
    assert status == 200 and json.loads(listed)["integrations"] == []
    assert http_request(server, "POST", "//mcp/sneaky", {"jsonrpc": "2.0", "id": 1, "method": "ping"})[0] == 404
    assert not marked(mark, but={server.proc.pid})
    # The bridge token still works under any spelling of the path.
    token = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    status, _, _ = http_request(server, "POST", "//integrations/", added, headers=token)
    assert status == 201
    assert http_request(server, "DELETE", "/./integrations//sneaky", headers=token)[0] == 200


def test_without_api_keys_a_local_page_cannot_add_a_server_through_another_spelling(make_server):
    mark = uuid.uuid4().hex
    server = make_server("--set", "require_api_key=false")
    page = {"Authorization": None, "Origin": "http://localhost:3000"}
    for target in ["/integrations", "//integrations", "///integrations", "/./integrations"]:
        status, _, body = http_request(server, "POST", target, integration("page", mark), headers=page)
        assert status == 401, (target, status, body)
    assert not wait_until(lambda: marked(mark, but={server.proc.pid}), timeout=1)
