//! OTLP/HTTP export bodies: finished spans as an `ExportTraceServiceRequest`,
//! in protobuf (`http/protobuf`) or in OTLP/JSON (`http/json`).
//!
//! The protobuf is written by hand, field numbers from
//! `opentelemetry/proto/{collector/trace,trace,common,resource}/v1/*.proto`:
//! the `opentelemetry-proto` crate would bring tonic and through it tokio
//! into every runtime's tree, the blocking one's included, which must stay
//! free of any async runtime. A request is a handful of message types, so
//! the writer below is short, and the tests check it byte for byte.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value as Json};

use super::{Event, Kind, Span, Value};

/// The instrumentation scope every span is reported under.
pub const SCOPE: &str = "mcp-provider";

/// What produced the spans: the service's name and version, and the
/// version of the SDK (this crate) that reports them, which is also the
/// instrumentation scope's.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub service_name: String,
    pub service_version: String,
    pub sdk_version: String,
}

impl Resource {
    /// The resource of `service_name` at `service_version`, reported by
    /// this crate's version.
    pub fn new(service_name: impl Into<String>, service_version: impl Into<String>) -> Self {
        Resource {
            service_name: service_name.into(),
            service_version: service_version.into(),
            sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// The resource's attributes, by the semantic conventions.
    fn attributes(&self) -> [(&'static str, Value); 5] {
        [
            ("service.name", self.service_name.as_str().into()),
            ("service.version", self.service_version.as_str().into()),
            ("telemetry.sdk.name", SCOPE.into()),
            ("telemetry.sdk.language", "rust".into()),
            ("telemetry.sdk.version", self.sdk_version.as_str().into()),
        ]
    }
}

/// The body's encoding, as `OTEL_EXPORTER_OTLP_PROTOCOL` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// `http/protobuf`, the default.
    #[default]
    Protobuf,
    /// `http/json`.
    Json,
}

impl Format {
    /// The format a protocol name stands for, or the error to report
    /// (`grpc` is a protocol OTLP has that this exporter does not speak).
    pub fn parse(protocol: &str) -> Result<Self, String> {
        match protocol.trim() {
            "http/protobuf" => Ok(Format::Protobuf),
            "http/json" => Ok(Format::Json),
            other => Err(format!(
                "unknown OTLP protocol {other:?} (http/protobuf or http/json)"
            )),
        }
    }

    /// The `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The export request carrying `spans` of `resource`, in `format`.
pub fn encode(resource: &Resource, spans: &[Span], format: Format) -> Vec<u8> {
    match format {
        Format::Protobuf => protobuf::request(resource, spans),
        Format::Json => json_request(resource, spans).to_string().into_bytes(),
    }
}

/// OTLP's `SpanKind` number.
fn kind_number(kind: Kind) -> u64 {
    match kind {
        Kind::Internal => 1,
        Kind::Server => 2,
        Kind::Client => 3,
    }
}

/// `Status.code` ERROR.
const STATUS_ERROR: u64 = 2;

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The protobuf wire format of the request's messages.
mod protobuf {
    use super::*;

    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LENGTH: u64 = 2;

    pub(super) fn request(resource: &Resource, spans: &[Span]) -> Vec<u8> {
        let mut out = Vec::new();
        // ExportTraceServiceRequest.resource_spans = 1
        message(&mut out, 1, |rs| {
            // ResourceSpans.resource = 1, Resource.attributes = 1
            message(rs, 1, |r| attributes(r, 1, &resource.attributes()));
            // ResourceSpans.scope_spans = 2
            message(rs, 2, |ss| {
                // ScopeSpans.scope = 1: name = 1, version = 2
                message(ss, 1, |scope| {
                    string(scope, 1, SCOPE);
                    string(scope, 2, &resource.sdk_version);
                });
                // ScopeSpans.spans = 2
                for s in spans {
                    message(ss, 2, |out| span(out, s));
                }
            });
        });
        out
    }

    fn span(out: &mut Vec<u8>, span: &Span) {
        bytes(out, 1, &span.context.trace_id.0);
        bytes(out, 2, &span.context.span_id.0);
        if let Some(state) = &span.context.state {
            string(out, 3, state);
        }
        if let Some(parent) = &span.parent {
            bytes(out, 4, &parent.0);
        }
        string(out, 5, &span.name);
        field(out, 6, VARINT, kind_number(span.kind));
        fixed64(out, 7, unix_nanos(span.start));
        fixed64(out, 8, unix_nanos(span.end));
        attributes(out, 9, &span.attributes);
        for e in &span.events {
            message(out, 11, |out| event(out, e));
        }
        if let Some(description) = &span.error {
            // Span.status = 15: message = 2, code = 3
            message(out, 15, |status| {
                string(status, 2, description);
                field(status, 3, VARINT, STATUS_ERROR);
            });
        }
    }

    fn event(out: &mut Vec<u8>, event: &Event) {
        fixed64(out, 1, unix_nanos(event.time));
        string(out, 2, event.name);
        attributes(out, 3, &event.attributes);
    }

    /// Repeated `KeyValue`s in field `number`: key = 1, value = 2.
    fn attributes(out: &mut Vec<u8>, number: u64, attributes: &[(&'static str, Value)]) {
        for (key, value) in attributes {
            message(out, number, |kv| {
                string(kv, 1, key);
                message(kv, 2, |any| any_value(any, value));
            });
        }
    }

    /// An `AnyValue`'s one field (a oneof: written even when it is the
    /// default, as its presence is what says which it is).
    fn any_value(out: &mut Vec<u8>, value: &Value) {
        match value {
            Value::Str(s) => string(out, 1, s),
            Value::Bool(b) => field(out, 2, VARINT, u64::from(*b)),
            // int64 is written as its two's complement (ten bytes when negative).
            Value::Int(n) => field(out, 3, VARINT, *n as u64),
            Value::Double(d) => {
                key(out, 4, FIXED64);
                out.extend_from_slice(&d.to_le_bytes());
            }
            // array_value = 5, ArrayValue.values = 1
            Value::Strs(items) => message(out, 5, |array| {
                for item in items {
                    message(array, 1, |any| string(any, 1, item));
                }
            }),
        }
    }

    fn message(out: &mut Vec<u8>, number: u64, write: impl FnOnce(&mut Vec<u8>)) {
        let mut inner = Vec::new();
        write(&mut inner);
        bytes(out, number, &inner);
    }

    fn string(out: &mut Vec<u8>, number: u64, s: &str) {
        bytes(out, number, s.as_bytes());
    }

    fn bytes(out: &mut Vec<u8>, number: u64, b: &[u8]) {
        key(out, number, LENGTH);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    fn fixed64(out: &mut Vec<u8>, number: u64, n: u64) {
        key(out, number, FIXED64);
        out.extend_from_slice(&n.to_le_bytes());
    }

    fn field(out: &mut Vec<u8>, number: u64, wire: u64, n: u64) {
        key(out, number, wire);
        varint(out, n);
    }

    fn key(out: &mut Vec<u8>, number: u64, wire: u64) {
        varint(out, number << 3 | wire);
    }

    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
}

/// OTLP/JSON: protobuf's JSON mapping with the OTLP exceptions: ids in
/// lower-case hex, enums as numbers, camelCase keys, 64-bit integers as
/// strings.
fn json_request(resource: &Resource, spans: &[Span]) -> Json {
    json!({
        "resourceSpans": [{
            "resource": {"attributes": json_attributes(&resource.attributes())},
            "scopeSpans": [{
                "scope": {"name": SCOPE, "version": resource.sdk_version},
                "spans": spans.iter().map(json_span).collect::<Vec<_>>(),
            }],
        }],
    })
}

fn json_span(span: &Span) -> Json {
    let mut out = Map::new();
    out.insert("traceId".into(), span.context.trace_id.to_string().into());
    out.insert("spanId".into(), span.context.span_id.to_string().into());
    if let Some(state) = &span.context.state {
        out.insert("traceState".into(), state.as_str().into());
    }
    if let Some(parent) = &span.parent {
        out.insert("parentSpanId".into(), parent.to_string().into());
    }
    out.insert("name".into(), span.name.as_str().into());
    out.insert("kind".into(), kind_number(span.kind).into());
    out.insert(
        "startTimeUnixNano".into(),
        unix_nanos(span.start).to_string().into(),
    );
    out.insert(
        "endTimeUnixNano".into(),
        unix_nanos(span.end).to_string().into(),
    );
    out.insert("attributes".into(), json_attributes(&span.attributes));
    let events: Vec<Json> = span
        .events
        .iter()
        .map(|e| {
            json!({
                "timeUnixNano": unix_nanos(e.time).to_string(),
                "name": e.name,
                "attributes": json_attributes(&e.attributes),
            })
        })
        .collect();
    out.insert("events".into(), events.into());
    if let Some(description) = &span.error {
        out.insert(
            "status".into(),
            json!({"code": STATUS_ERROR, "message": description}),
        );
    }
    Json::Object(out)
}

fn json_attributes(attributes: &[(&'static str, Value)]) -> Json {
    attributes
        .iter()
        .map(|(key, value)| json!({"key": key, "value": json_value(value)}))
        .collect()
}

fn json_value(value: &Value) -> Json {
    match value {
        Value::Str(s) => json!({"stringValue": s}),
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Int(n) => json!({"intValue": n.to_string()}),
        // JSON has no NaN or infinities: the mapping writes them as strings.
        Value::Double(d) if d.is_nan() => json!({"doubleValue": "NaN"}),
        Value::Double(d) if d.is_infinite() => {
            json!({"doubleValue": if *d > 0.0 { "Infinity" } else { "-Infinity" }})
        }
        Value::Double(d) => json!({"doubleValue": d}),
        Value::Strs(items) => json!({"arrayValue": {
            "values": items.iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>(),
        }}),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{SpanContext, SpanId, TraceId};
    use super::*;

    fn resource() -> Resource {
        Resource {
            service_name: "svc".into(),
            service_version: "1.0".into(),
            sdk_version: "VERSION".into(),
        }
    }

    fn at(nanos: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(nanos)
    }

    /// A small span: ids of 0x11.. and 0x22.., a parent of 0x33..,
    /// started at 1 ns, ended at 2 ns, one attribute.
    fn small_span() -> Span {
        Span {
            context: SpanContext {
                trace_id: TraceId([0x11; 16]),
                span_id: SpanId([0x22; 8]),
                sampled: true,
                state: None,
            },
            parent: Some(SpanId([0x33; 8])),
            name: "op".into(),
            kind: Kind::Server,
            start: at(1),
            end: at(2),
            attributes: vec![("k", Value::Int(7))],
            events: Vec::new(),
            error: None,
        }
    }

    /// The bytes the official Python classes (`opentelemetry-proto`)
    /// serialize for the same request.
    const SMALL_SPAN_REQUEST: &str = "\
        0a84020a9d010a150a0c736572766963652e6e616d6512050a037376630a180a0f736572766963652e76657273\
        696f6e12050a03312e300a240a1274656c656d657472792e73646b2e6e616d65120e0a0c6d63702d70726f7669\
        6465720a200a1674656c656d657472792e73646b2e6c616e677561676512060a04727573740a220a1574656c65\
        6d657472792e73646b2e76657273696f6e12090a0756455253494f4e12620a170a0c6d63702d70726f76696465\
        72120756455253494f4e12470a10111111111111111111111111111111111208222222222222222222083333333\
        3333333332a026f7030023901000000000000004102000000000000004a070a016b12021807";

    #[test]
    fn a_small_span_is_the_exact_protobuf_bytes() {
        let body = encode(&resource(), &[small_span()], Format::Protobuf);
        let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, SMALL_SPAN_REQUEST);
    }

    #[test]
    fn values_status_state_and_events_are_written_by_their_field_numbers() {
        let mut span = small_span();
        span.attributes = vec![
            ("b", Value::Bool(true)),
            ("n", Value::Int(-1)),
            ("d", Value::Double(0.5)),
            ("a", Value::Strs(vec!["x".into()])),
        ];
        span.context.state = Some("s=1".into());
        span.events.push(Event {
            name: "e",
            time: at(300),
            attributes: Vec::new(),
        });
        span.error = Some("bad".into());
        let body = protobuf::request(&resource(), &[span]);
        let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"\x0a\x01b\x12\x02\x10\x01"), "bool");
        assert!(
            has(b"\x0a\x01n\x12\x0b\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
            "negative int"
        );
        let mut double = b"\x0a\x01d\x12\x09\x21".to_vec();
        double.extend(0.5f64.to_le_bytes());
        assert!(has(&double), "double");
        assert!(has(b"\x0a\x01a\x12\x07\x2a\x05\x0a\x03\x0a\x01x"), "array");
        assert!(has(b"\x1a\x03s=1"), "trace state");
        assert!(has(b"\x5a\x0c\x09\x2c\x01\0\0\0\0\0\0\x12\x01e"), "event");
        assert!(has(b"\x7a\x07\x12\x03bad\x18\x02"), "status");
    }

    #[test]
    fn json_is_the_otlp_json_shape() {
        let mut span = small_span();
        span.attributes = vec![
            ("n", Value::Int(7)),
            ("a", Value::Strs(vec!["stop".into()])),
            ("d", Value::Double(f64::NAN)),
        ];
        span.events.push(Event {
            name: "first_chunk",
            time: at(5),
            attributes: Vec::new(),
        });
        span.fail("timeout", "agent did not answer");
        let body = encode(&resource(), &[span], Format::Json);
        let got: Json = serde_json::from_slice(&body).unwrap();
        let rs = &got["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "svc"}})
        );
        assert_eq!(
            rs["resource"]["attributes"][3],
            json!({"key": "telemetry.sdk.language", "value": {"stringValue": "rust"}})
        );
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "mcp-provider");
        let s = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "11".repeat(16));
        assert_eq!(s["spanId"], "22".repeat(8));
        assert_eq!(s["parentSpanId"], "33".repeat(8));
        assert_eq!(s["kind"], 2);
        assert_eq!(s["startTimeUnixNano"], "1");
        assert_eq!(s["endTimeUnixNano"], "2");
        assert_eq!(
            s["attributes"],
            json!([
                {"key": "n", "value": {"intValue": "7"}},
                {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}}},
                {"key": "d", "value": {"doubleValue": "NaN"}},
                {"key": "error.type", "value": {"stringValue": "timeout"}},
            ])
        );
        assert_eq!(
            s["events"],
            json!([{"timeUnixNano": "5", "name": "first_chunk", "attributes": []}])
        );
        assert_eq!(
            s["status"],
            json!({"code": 2, "message": "agent did not answer"})
        );
    }

    #[test]
    fn an_unset_status_is_left_out() {
        let body = encode(&resource(), &[small_span()], Format::Json);
        let got: Json = serde_json::from_slice(&body).unwrap();
        assert!(got["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
            .get("status")
            .is_none());
    }

    #[test]
    fn protocols_are_named_as_otel_exporter_otlp_protocol_names_them() {
        assert_eq!(Format::parse("http/protobuf"), Ok(Format::Protobuf));
        assert_eq!(Format::parse("http/json"), Ok(Format::Json));
        assert!(Format::parse("grpc").unwrap_err().contains("grpc"));
        assert_eq!(Format::Json.content_type(), "application/json");
    }
}
