"""The client the MCP conformance suite's `client` scenarios launch (its
auth suite, and the scenarios of the provider as a client of a remote
server): this product, configured with the suite's server as a remote
server, and an MCP client calling it through the bridge.

The suite appends the MCP server's URL to the command, and sets
MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_PROTOCOL_VERSION and (for some
scenarios) MCP_CONFORMANCE_CONTEXT. The provider binary is
$OAUTH_TEST_PROVIDER_BIN; its log goes to $OAUTH_TEST_LOG_DIR, in a file
named after $OAUTH_TEST_LOG_TAG and the scenario.

The provider runs `bridge` with the server as `[[bridge.servers]]` (the
context's pre-registered client and the suite's client metadata document
URL as its OAuth settings) and `$BROWSER` set to a script that approves
the authorization page. The official `mcp` client then initializes at
/mcp/remote, calls every tool the server lists (with the arguments the
scenario's context names for it, else the least its schema allows),
reads every resource and gets every prompt, and answers a form the
server asks for as a user who accepts it as shown: every 401
and 403 the suite's server answers is met inside the running provider —
its login, its step-up, its limit on refused tokens — and every request
the scenario looks at goes through the provider's own client."""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mcp.types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

HERE = Path(__file__).resolve().parent
BROWSER = HERE / "fixtures" / "oauth" / "browser.py"
CLIENT_METADATA_URL = "https://conformance-test.local/client-metadata.json"
API_KEY = "sk-oauth-conformance"


def toml_string(text):
    return json.dumps(text)


def config(url, context):
    lines = [
        "[[bridge.servers]]",
        'name = "remote"',
        f"url = {toml_string(url)}",
        f"client_metadata_url = {toml_string(CLIENT_METADATA_URL)}",
    ]
    for key in ("client_id", "client_secret"):
        if context.get(key):
            lines.append(f"{key} = {toml_string(context[key])}")
    return "\n".join(lines) + "\n"


def start(binary, workdir, url, context, log):
    config_path = workdir / "config.toml"
    config_path.write_text(config(url, context))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROVIDER_")}
    env.update(
        {
            "MCP_PROVIDER_API_KEY": API_KEY,
            "MCP_PROVIDER_BRIDGE_TOKEN": "bt-oauth-conformance",
            "XDG_STATE_HOME": str(workdir / "state"),
            "BROWSER": f"{sys.executable} {BROWSER}",
            "RUST_LOG": env.get("RUST_LOG", "info"),
        }
    )
    proc = subprocess.Popen(
        [binary, "bridge", "--listen", "127.0.0.1:0", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on http://" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(line.rsplit(":", 1)[1])
    proc.kill()
    sys.exit(f"{binary} did not start")


async def use(port, version, context):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {API_KEY}"})
    mode = "legacy" if version < "2026" else "auto"
    transport = streamable_http_client(f"http://127.0.0.1:{port}/mcp/remote", http_client=http)
    async with Client(transport, mode=mode, elicitation_callback=accept_as_shown) as client:
        tools = (await client.list_tools()).tools
        print("tools:", [t.name for t in tools], flush=True)
        for tool in tools:
            result = await client.call_tool(tool.name, arguments_for(tool, tools, context))
            if result.is_error:
                raise RuntimeError(f"{tool.name} failed: {result.content}")
            text = result.content[0].text if result.content else ""
            print(f"{tool.name}:", text, flush=True)
        capabilities = client.server_capabilities
        if capabilities is not None and capabilities.resources is not None:
            for resource in (await client.list_resources()).resources:
                await client.read_resource(resource.uri)
        if capabilities is not None and capabilities.prompts is not None:
            for prompt in (await client.list_prompts()).prompts:
                await client.get_prompt(prompt.name)


async def accept_as_shown(context, params):
    """A form the server asks for, accepted as an editor shows it: each
    field holding the default the server's schema gives it, if any (so
    the schema must reach the editor intact, and the answer the server)."""
    schema = getattr(params, "requested_schema", None) or {}
    fields = schema.get("properties") or {}
    content = {name: field["default"] for name, field in fields.items() if "default" in field}
    return types.ElicitResult(action="accept", content=content)


def arguments_for(tool, tools, context):
    """The arguments the scenario's context names for `tool`, or, for the
    schema-echo tool, the input schema of the tool it is for as listed
    (what the client received, sent back for the scenario to compare), or
    the least its schema allows."""
    for call in context.get("toolCalls") or []:
        if call.get("name") == tool.name:
            return call.get("arguments") or {}
    if tool.name == "json_schema_echo":
        echoed = [t.input_schema for t in tools if t.name == "json_schema_2020_12_tool"]
        return {"schema": echoed[0] if echoed else {}}
    return least_arguments(tool.input_schema)


def least_arguments(schema):
    """A value for each required property of `schema`, of its type."""
    blank = {"string": "x", "number": 1, "integer": 1, "boolean": False, "array": [], "object": {}}
    properties = schema.get("properties") or {}
    return {name: blank.get((properties.get(name) or {}).get("type"), "x") for name in schema.get("required") or []}


def main():
    url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    version = os.environ.get("MCP_CONFORMANCE_PROTOCOL_VERSION", "2025-11-25")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    binary = os.environ["OAUTH_TEST_PROVIDER_BIN"]
    log_dir = Path(os.environ.get("OAUTH_TEST_LOG_DIR") or tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    tag = os.environ.get("OAUTH_TEST_LOG_TAG", "run")
    log_path = log_dir / f"oauth-{tag}-{scenario.replace('/', '-')}-{version}-{os.getpid()}.log"
    with tempfile.TemporaryDirectory() as tmp, open(log_path, "w") as log:
        proc, port = start(binary, Path(tmp), url, context, log)
        try:
            asyncio.run(asyncio.wait_for(use(port, version, context), 60))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
