use std::time::{Duration, Instant, SystemTime};

use super::*;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_is_read_and_written_back_the_same() {
    let ctx = SpanContext::parse(PARENT, Some("congo=t61rcWkgMzE")).unwrap();
    assert!(ctx.sampled);
    assert_eq!(ctx.traceparent(), PARENT);
    assert_eq!(ctx.state.as_deref(), Some("congo=t61rcWkgMzE"));
}

#[test]
fn invalid_traceparents_are_refused() {
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ] {
        assert_eq!(SpanContext::parse(bad, None), None, "{bad}");
    }
    // A later version may carry more after its four fields.
    let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
    assert!(!SpanContext::parse(later, None).unwrap().sampled);
}

#[test]
fn a_tracestate_too_long_or_unprintable_is_left_out() {
    let long = "a=".to_owned() + &"b".repeat(600);
    assert_eq!(SpanContext::parse(PARENT, Some(&long)).unwrap().state, None);
    assert_eq!(
        SpanContext::parse(PARENT, Some("a=\u{7}")).unwrap().state,
        None
    );
}

#[test]
fn the_context_goes_in_and_out_of_meta() {
    let meta = serde_json::json!({"traceparent": PARENT, "tracestate": "k=v"});
    let ctx = SpanContext::from_meta(&meta).unwrap();
    let mut out = serde_json::Map::new();
    ctx.put_in_meta(&mut out);
    assert_eq!(serde_json::Value::Object(out), meta);
}

#[test]
fn a_child_span_continues_its_parents_trace() {
    let now = Instant::now();
    let mut tracer = Tracer::new(Some(Sampler::default()), 1, now, SystemTime::UNIX_EPOCH);
    let parent = SpanContext::parse(PARENT, None).unwrap();
    let span = tracer
        .start("chat echo", Kind::Server, Some(&parent), now)
        .unwrap();
    assert_eq!(span.context.trace_id, parent.trace_id);
    assert_eq!(span.parent, Some(parent.span_id));
    assert_ne!(span.context.span_id, parent.span_id);
    tracer.finish(span, now + Duration::from_millis(5));
    let done = tracer.poll().unwrap();
    assert_eq!(
        done.end.duration_since(done.start).unwrap(),
        Duration::from_millis(5)
    );
}

#[test]
fn roots_get_new_traces_and_unsampled_spans_are_not_exported() {
    let now = Instant::now();
    let mut tracer = Tracer::new(Some(Sampler::default()), 1, now, SystemTime::UNIX_EPOCH);
    let a = tracer.start("a", Kind::Server, None, now).unwrap();
    let b = tracer.start("b", Kind::Server, None, now).unwrap();
    assert_ne!(a.context.trace_id, b.context.trace_id);
    let unsampled = SpanContext::parse(&PARENT.replace("-01", "-00"), None).unwrap();
    let c = tracer
        .start("c", Kind::Server, Some(&unsampled), now)
        .unwrap();
    assert!(!c.context.sampled);
    tracer.finish(c, now);
    assert!(tracer.poll().is_none());
}

#[test]
fn a_tracer_that_is_off_starts_nothing() {
    let mut tracer = Tracer::off();
    assert!(tracer
        .start("a", Kind::Server, None, Instant::now())
        .is_none());
}

#[test]
fn a_full_queue_drops_and_counts() {
    let now = Instant::now();
    let mut tracer = Tracer::new(Some(Sampler::AlwaysOn), 1, now, SystemTime::UNIX_EPOCH);
    for _ in 0..MAX_PENDING + 3 {
        let span = tracer.start("a", Kind::Internal, None, now).unwrap();
        tracer.finish(span, now);
    }
    assert_eq!(tracer.dropped(), 3);
}

#[test]
fn samplers_by_their_names() {
    assert_eq!(
        Sampler::parse("parentbased_always_on", None).unwrap(),
        Sampler::default()
    );
    assert_eq!(
        Sampler::parse("traceidratio", Some("0.25")).unwrap(),
        Sampler::Ratio(0.25)
    );
    assert!(Sampler::parse("sometimes", None).is_err());
    let none = Sampler::Ratio(0.0);
    let all = Sampler::Ratio(1.0);
    let id = TraceId([0xab; 16]);
    assert!(!none.samples(None, id));
    assert!(all.samples(None, id));
}

#[test]
fn long_values_are_cut_on_a_character_boundary() {
    let now = Instant::now();
    let mut tracer = Tracer::new(Some(Sampler::AlwaysOn), 1, now, SystemTime::UNIX_EPOCH);
    let mut span = tracer.start("a", Kind::Internal, None, now).unwrap();
    span.set("k", "é".repeat(5000));
    let Some(Value::Str(s)) = span.get("k") else {
        panic!("not a string")
    };
    assert!(s.len() <= span::MAX_VALUE && s.chars().all(|c| c == 'é'));
}

#[test]
fn content_is_captured_only_when_asked_and_never_by_a_tracer_that_is_off() {
    let now = Instant::now();
    let new = || Tracer::new(Some(Sampler::default()), 1, now, SystemTime::UNIX_EPOCH);
    assert!(!new().captures_content());
    assert!(new().capturing_content(true).captures_content());
    assert!(!new().capturing_content(false).captures_content());
    assert!(!Tracer::off().capturing_content(true).captures_content());
}

#[test]
fn json_text_is_cut_at_the_bound_on_a_character_boundary() {
    let small = serde_json::json!({"city": "Paris", "days": 3});
    assert_eq!(capped_json(&small), r#"{"city":"Paris","days":3}"#);
    let large = serde_json::json!({"text": "é".repeat(MAX_VALUE)});
    let cut = capped_json(&large);
    assert!(
        cut.len() <= MAX_VALUE && cut.len() > MAX_VALUE - 4,
        "{}",
        cut.len()
    );
    assert!(cut.starts_with(r#"{"text":"éé"#));
}
