"""Arize Phoenix, the suite's OpenTelemetry backend: the `phoenix` fixture.

One `phoenix serve` per test process (pytest-xdist worker), started the
first time a test asks for it, on free loopback ports and a working folder
of its own, and stopped at the end. Servers export to `phoenix.endpoint`;
`phoenix.spans(trace_id, count)` reads the trace back from Phoenix's REST
API (`GET /v1/projects/default/spans`).

Phoenix keeps what a trace says but not two things OTLP carries beside it:
the span's kind (it stores its own OpenInference kinds instead) and the
resource (service name, SDK). So the endpoint is a tap in front of Phoenix:
it decodes each export with the official `opentelemetry-proto` classes
(a body that does not decode is answered 400 and kept in `tap.errors`),
notes each span's kind and resource and the request's headers, and forwards
the export to Phoenix as it came. Phoenix takes only `http/protobuf`; an
`http/json` export is checked field by field against the OTLP schema
(unknown keys refused) and forwarded re-encoded as protobuf, so JSON traces
reach Phoenix too.
"""

import base64
import gzip
import http.server
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PHOENIX = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "phoenix"
# OTLP's SpanKind enum, by number.
KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
# The largest export the tap reads (the exporter's batches are far smaller).
MAX_BODY = 64 * 1024 * 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def any_value(value):
    """An OTLP AnyValue as the Python value it holds."""
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def attributes(key_values):
    return {kv.key: any_value(kv.value) for kv in key_values}


def json_to_proto(body):
    """An OTLP/JSON export as the protobuf message: ids are hex strings in
    OTLP/JSON where protobuf's JSON mapping has base64; everything else
    (camelCase keys, integer enums, int64 as strings) is the mapping's, and
    a key the schema does not have is an error."""
    request = json.loads(body)

    def ids(obj, keys):
        for key in keys:
            if obj.get(key):
                obj[key] = base64.b64encode(bytes.fromhex(obj[key])).decode()

    for resource_spans in request.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                ids(span, ("traceId", "spanId", "parentSpanId"))
                for link in span.get("links", []):
                    ids(link, ("traceId", "spanId"))
    return json_format.ParseDict(request, ExportTraceServiceRequest())


@dataclass
class Export:
    """One export the tap received: its headers (lowercased names) and the
    decoded request."""

    headers: dict
    content_type: str
    request: ExportTraceServiceRequest

    def trace_ids(self):
        return {
            span.trace_id.hex()
            for rs in self.request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        }


@dataclass
class Seen:
    """What Phoenix does not keep of a span: its kind, resource and scope."""

    kind: str
    resource: dict
    scope: str


class Tap(http.server.ThreadingHTTPServer):
    """The OTLP endpoint the servers export to, in front of Phoenix."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, upstream):
        super().__init__(("127.0.0.1", 0), TapHandler)
        self.upstream = upstream
        self.lock = threading.Lock()
        self.exports = []
        self.errors = []
        self.seen = {}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, export):
        with self.lock:
            self.exports.append(export)
            for rs in export.request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.seen[span.span_id.hex()] = Seen(KINDS.get(span.kind, str(span.kind)), resource, ss.scope.name)


class TapHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        if self.path != "/v1/traces" or not 0 <= length <= MAX_BODY:
            self.answer(404, b"", "text/plain")
            return
        body = self.rfile.read(length)
        content_type = (self.headers.get("content-type") or "").split(";")[0].strip()
        try:
            if (self.headers.get("content-encoding") or "") == "gzip":
                body = gzip.decompress(body)
            if content_type == "application/x-protobuf":
                request = ExportTraceServiceRequest.FromString(body)
            elif content_type == "application/json":
                request = json_to_proto(body)
            else:
                raise ValueError(f"content type {content_type!r}")
        except Exception as e:  # anything that does not decode is the exporter's fault
            with self.server.lock:
                self.server.errors.append(f"{content_type}: {e!r}")
            self.answer(400, str(e).encode(), "text/plain")
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.record(Export(headers, content_type, request))
        forward = urllib.request.Request(
            self.server.upstream + "/v1/traces",
            data=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        try:
            with urllib.request.urlopen(forward, timeout=30) as r:
                status, answer = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read()
        if content_type == "application/json":
            self.answer(status, b"{}", "application/json")
        else:
            self.answer(status, answer, "application/x-protobuf")


@dataclass
class Phoenix:
    process: subprocess.Popen
    url: str
    tap: Tap
    log: Path
    _workdir: tempfile.TemporaryDirectory = field(repr=False)

    @property
    def endpoint(self):
        """The base URL for OTEL_EXPORTER_OTLP_ENDPOINT."""
        return self.tap.base

    def exports(self, trace_id):
        """The exports (headers, content type, request) that carried spans
        of `trace_id`."""
        with self.tap.lock:
            return [e for e in self.tap.exports if trace_id in e.trace_ids()]

    def spans(self, trace_id, count, timeout=30):
        """The spans of `trace_id` in Phoenix, once at least `count` are in
        (polled; an AssertionError past `timeout`): dicts with `name`,
        `span_kind` (SERVER/CLIENT/INTERNAL), `trace_id`, `span_id`,
        `parent_id`, `attributes` (flat, dotted keys: what the span sent, and
        what Phoenix derives from it under `llm.*`), `status_code`
        (OK/ERROR/UNSET), `status_message`, `events` (names), and the
        span's `resource` (a dict) and `scope` (its name)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._read(trace_id)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} span(s) of trace {trace_id} in Phoenix after {timeout}s, wanted {count}: "
                    f"{[s['name'] for s in found]}; tap errors: {self.tap.errors}"
                )
            time.sleep(0.1)

    def _read(self, trace_id):
        found, cursor = [], None
        while True:
            query = {"trace_id": trace_id, "limit": 1000}
            if cursor:
                query["cursor"] = cursor
            url = f"{self.url}/v1/projects/default/spans?{urllib.parse.urlencode(query)}"
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    page = json.load(r)
            except urllib.error.HTTPError as e:
                if e.code == 404:  # the default project appears with the first span
                    return []
                raise
            found.extend(self._span(s) for s in page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def _span(self, raw):
        span_id = raw["context"]["span_id"]
        with self.tap.lock:
            seen = self.tap.seen.get(span_id)
        return {
            "name": raw["name"],
            "span_kind": seen.kind if seen else None,
            "trace_id": raw["context"]["trace_id"],
            "span_id": span_id,
            "parent_id": raw.get("parent_id"),
            "attributes": raw.get("attributes") or {},
            "status_code": raw.get("status_code"),
            "status_message": raw.get("status_message") or "",
            "events": [e["name"] for e in raw.get("events") or []],
            "resource": seen.resource if seen else {},
            "scope": seen.scope if seen else None,
        }

    def stop(self):
        self.tap.shutdown()
        self.tap.server_close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._workdir.cleanup()


def start_phoenix(timeout=120):
    """`phoenix serve` on free loopback ports, up (its /healthz answers)
    within `timeout` seconds."""
    workdir = tempfile.TemporaryDirectory(prefix="phoenix-")
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": workdir.name,
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = Path(workdir.name) / "phoenix.log"
    process = subprocess.Popen(
        [str(PHOENIX), "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),
        cwd=workdir.name,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            text = log.read_text(errors="replace")[-4000:]
            workdir.cleanup()
            raise RuntimeError(f"phoenix serve did not come up within {timeout}s: {text}")
        time.sleep(0.2)
    return Phoenix(process, url, Tap(url), log, workdir)


@pytest.fixture(scope="session")
def phoenix():
    """A running Phoenix behind its tap, shared by the process's tests."""
    if not PHOENIX.exists():
        pytest.fail(f"{PHOENIX} is missing: scripts/test installs it (arize-phoenix in tests/requirements.txt)")
    p = start_phoenix()
    yield p
    p.stop()
