"""Traces leave the server for a real OpenTelemetry backend (Arize
Phoenix, see phoenix.py) the OpenTelemetry way: configured by the
OTEL_EXPORTER_OTLP_* variables, in protobuf or JSON, with the service's
resource and the configured headers; a collector that is down or silent
costs nothing but spans, counted in /metrics; with no endpoint, or the SDK
disabled, nothing is exported and no exporter runs. What each span says is
tested beside the feature that makes it (test_telemetry_model.py,
test_telemetry_bridge.py)."""

import os
import secrets
import socket
import subprocess

import pytest

from conftest import BIN_DIR, RUNTIMES, Silent, http_request, metric, wait_until

DROPPED = "mcp_provider_otel_spans_dropped_total"
EXPORT_THREAD = "otlp-export"


def traceparent():
    """A fresh trace (the test's own) and the caller's span in it: (trace
    id, span id, the traceparent header)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def chat(server, header=None, content="hello"):
    """A chat completion of the echo model: its status and body."""
    body = {"model": "echo", "messages": [{"role": "user", "content": content}]}
    headers = {"Content-Type": "application/json"}
    if header:
        headers["traceparent"] = header
    status, _, raw = http_request(server, "POST", "/v1/chat/completions", body, headers)
    return status, raw


def thread_names(server):
    task = f"/proc/{server.proc.pid}/task"
    names = []
    for tid in os.listdir(task):
        try:
            with open(f"{task}/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def thread_cpu_seconds(server, name):
    """CPU time the server's thread called `name` has used."""
    task = f"/proc/{server.proc.pid}/task"
    for tid in os.listdir(task):
        with open(f"{task}/{tid}/comm") as f:
            if f.read().strip() != name:
                continue
        with open(f"{task}/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    raise AssertionError(f"no thread {name}")


def rss_kib(server):
    with open(f"/proc/{server.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def closed_port():
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exporting(endpoint, **more):
    """The environment of a server exporting to `endpoint`, batches sent
    every 100 ms (not every second) so the tests wait less."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100", **more}


def started(make_server, env):
    server = make_server(env=env)
    server.wait_for_model("echo")
    return server


def test_a_request_s_spans_reach_phoenix_with_the_service_and_its_resource(make_server, phoenix, runtime):
    service = f"provider-under-test-{runtime}"
    server = started(make_server, exporting(phoenix.endpoint, OTEL_SERVICE_NAME=service))
    trace_id, parent, header = traceparent()
    status, body = chat(server, header)
    assert status == 200, body
    spans = phoenix.spans(trace_id, 2)
    request = [s for s in spans if s["parent_id"] == parent]
    assert [(s["name"], s["span_kind"]) for s in request] == [("chat echo", "SERVER")], spans
    agent = [s for s in spans if s["parent_id"] == request[0]["span_id"]]
    assert [s["attributes"]["gen_ai.operation.name"] for s in agent] == ["invoke_agent"], spans
    for span in spans:
        assert span["trace_id"] == trace_id
        assert span["scope"] == "mcp-provider"
        resource = span["resource"]
        assert resource["service.name"] == service
        assert resource["service.version"]
        assert resource["telemetry.sdk.name"] == "mcp-provider"
        assert resource["telemetry.sdk.language"] == "rust"
        assert resource["telemetry.sdk.version"]
    exports = phoenix.exports(trace_id)
    assert {e.content_type for e in exports} == {"application/x-protobuf"}
    assert not phoenix.tap.errors


def test_http_json_exports_reach_phoenix_too(make_server, phoenix):
    """Phoenix takes protobuf only: the tap checks the JSON against the OTLP
    schema (an unknown key or a wrong type is refused) and hands it on."""
    server = started(make_server, exporting(phoenix.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/json"))
    trace_id, parent, header = traceparent()
    assert chat(server, header)[0] == 200
    spans = phoenix.spans(trace_id, 2)
    assert any(s["parent_id"] == parent and s["span_kind"] == "SERVER" for s in spans), spans
    assert {e.content_type for e in phoenix.exports(trace_id)} == {"application/json"}
    assert spans[0]["resource"]["service.name"] == "mcp-provider"
    assert not phoenix.tap.errors


def test_the_configured_headers_reach_the_collector_and_no_log(make_server, phoenix):
    server = started(
        make_server,
        exporting(phoenix.endpoint, OTEL_EXPORTER_OTLP_HEADERS="x-collector-key=k3y%3Dvalue%2C1,x-team=blue"),
    )
    trace_id, _, header = traceparent()
    assert chat(server, header)[0] == 200
    phoenix.spans(trace_id, 2)
    for export in phoenix.exports(trace_id):
        assert export.headers["x-collector-key"] == "k3y=value,1"
        assert export.headers["x-team"] == "blue"
    server.stop()
    assert "k3y" not in server.log_path.read_text()


@pytest.mark.parametrize("collector", ["refused", "silent"])
def test_a_collector_down_or_silent_costs_nothing_but_spans(make_server, collector):
    """Every answer as usual while each export fails (the port refuses, or
    takes the request and never answers); the spans past the exporter's
    bounded queue are dropped and counted, and the server's memory stays
    flat."""
    with Silent() as silent:
        port = closed_port() if collector == "refused" else silent.port
        server = started(
            make_server,
            exporting(
                f"http://127.0.0.1:{port}",
                OTEL_EXPORTER_OTLP_TIMEOUT="300",
                OTEL_BSP_MAX_QUEUE_SIZE="64",
                OTEL_BSP_MAX_EXPORT_BATCH_SIZE="16",
            ),
        )
        for i in range(20):
            assert chat(server, traceparent()[2], f"warm {i}")[0] == 200
        before = rss_kib(server)
        for i in range(200):
            status, body = chat(server, traceparent()[2], f"request {i}")
            assert status == 200, body
            assert f"request {i}".encode() in body
        grown = rss_kib(server) - before
        # 440 spans were made (a request span and its agent's), and the
        # queue and the exporter's batch hold at most 128 of them.
        assert wait_until(lambda: metric(server, DROPPED) >= 440 - 128, timeout=30), metric(server, DROPPED)
        assert grown < 8 * 1024, f"RSS grew by {grown} KiB"
        # Exports pause for 1, 2, 4… s after each failure: the collector is
        # not hammered, and the exporter does not spin while it waits.
        assert thread_cpu_seconds(server, EXPORT_THREAD) < 0.5
        if collector == "silent":
            assert 1 <= silent.accepted <= 6, silent.accepted


def test_with_no_endpoint_nothing_is_exported_and_no_exporter_runs(make_server):
    with Silent() as collector:
        server = started(make_server, {})
        control = started(make_server, exporting(f"http://127.0.0.1:{collector.port}"))
        for s in (server, control):
            assert chat(s, traceparent()[2])[0] == 200
        # A thread takes its name once it first runs: on a loaded machine
        # the exporter may not have run yet.
        assert wait_until(lambda: EXPORT_THREAD in thread_names(control)), thread_names(control)
        assert EXPORT_THREAD not in thread_names(server)
        assert metric(server, DROPPED) == 0
        assert wait_until(lambda: collector.accepted >= 1)


def test_otel_sdk_disabled_exports_nothing_whatever_the_endpoint(make_server):
    with Silent() as collector:
        server = started(make_server, exporting(f"http://127.0.0.1:{collector.port}", OTEL_SDK_DISABLED="true"))
        for _ in range(5):
            assert chat(server, traceparent()[2])[0] == 200
        assert EXPORT_THREAD not in thread_names(server)
        # A server exporting sends what it holds when it stops.
        server.stop()
        assert collector.accepted == 0


def test_the_last_spans_are_sent_when_the_server_stops(make_server, phoenix):
    """SIGTERM: what is queued goes out before the process exits, though its
    batch was not due for a minute."""
    server = started(make_server, exporting(phoenix.endpoint, OTEL_BSP_SCHEDULE_DELAY="60000"))
    trace_id, parent, header = traceparent()
    assert chat(server, header)[0] == 200
    server.stop()
    assert server.proc.returncode == 0
    spans = phoenix.spans(trace_id, 2)
    assert any(s["parent_id"] == parent for s in spans), spans


def test_a_bad_telemetry_setting_stops_the_start_naming_it(runtime):
    """Which setting each bad OTEL variable is named as is asserted in the
    settings' tests; here, that the binary stops on one with exit code 2."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_PROVIDER_", "OTEL_"))}
    full.update({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    done = subprocess.run(
        [str(BIN_DIR / RUNTIMES[runtime]), "serve", "--listen", "127.0.0.1:0"],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done
    assert "telemetry.protocol" in done.stderr, done.stderr
