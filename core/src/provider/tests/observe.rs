//! What the provider tells about itself: `/metrics`, `/health/deep`,
//! `/control/streams` and the audit trail.

use super::*;

fn page(t: &mut Pair, path: &str, auth: &str) -> (u16, String) {
    t.request(
        ConnId(50),
        "GET",
        path,
        &[("authorization", auth)],
        Value::Null,
    );
    let (status, body, _) = t.editor(ConnId(50));
    (status.unwrap_or(0), String::from_utf8(body).unwrap())
}

/// The value of the sample `series` (name and labels as printed).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_requests_chunks_and_first_chunk_latency() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    t.now += Duration::from_millis(30);
    t.agent(AGENT, chunk(&id, 0, "a", None));
    t.agent(AGENT, chunk(&id, 1, "b", Some("stop")));
    t.editor(EDITOR);
    t.request(
        ConnId(2),
        "GET",
        "/v1/models",
        &[("authorization", "Bearer nope")],
        Value::Null,
    );

    let (status, text) = page(&mut t, "/metrics", "Bearer bridge");
    assert_eq!(status, 200);
    let chat = r#"{route="/v1/chat/completions",api="openai"#;
    assert_eq!(
        sample(
            &text,
            &format!("mcp_provider_requests_total{chat}\",status=\"200\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"mcp_provider_requests_total{route="/v1/models",api="provider",status="401"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "mcp_provider_chunks_streamed_total"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "mcp_provider_auth_failures_total"), Some(1.0));
    // The first chunk came 30 ms after the request: in the 0.05 bucket,
    // not the 0.025 one.
    let first = "mcp_provider_first_chunk_seconds_bucket";
    assert_eq!(
        sample(&text, &format!("{first}{chat}\",le=\"0.025\"}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, &format!("{first}{chat}\",le=\"0.05\"}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!("mcp_provider_first_chunk_seconds_count{chat}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"mcp_provider_sessions{state="active"}"#),
        Some(1.0)
    );
    assert_eq!(sample(&text, "mcp_provider_agent_links"), Some(1.0));
    // Editors' keys read it too; nobody else does.
    assert_eq!(page(&mut t, "/metrics", "Bearer key").0, 200);
    assert_eq!(page(&mut t, "/metrics", "Bearer wrong").0, 401);
}

#[test]
fn an_editor_leaving_before_its_answer_is_counted_as_499() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, false);
    t.p.handle_conn_closed(EDITOR, t.now);
    t.drain();
    let (_, text) = page(&mut t, "/metrics", "Bearer key");
    assert_eq!(
        sample(
            &text,
            r#"mcp_provider_requests_total{route="/v1/chat/completions",api="openai",status="499"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn deep_health_is_503_while_an_expected_agent_is_away() {
    let mut t = Pair::new(|c| c.expected_agents = vec!["agent".to_owned()]);
    let (status, body) = page(&mut t, "/health/deep", "Bearer key");
    assert_eq!(status, 503);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "degraded");
    assert_eq!(
        v["checks"][0],
        json!({"name": "agent", "ok": false, "detail": "not connected"})
    );

    t.connect_agent(AGENT, register(3600));
    let (status, body) = page(&mut t, "/health/deep", "Bearer key");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, &v["status"], &v["agents"]),
        (200, &json!("ok"), &json!(1))
    );
    assert_eq!(v["sessions"]["active"], 1);

    drop_link(&mut t, AGENT);
    assert_eq!(page(&mut t, "/health/deep", "Bearer key").0, 503);
}

#[test]
fn control_streams_lists_answers_in_flight() {
    let mut t = Pair::new(|_| {});
    t.connect_agent(AGENT, register(3600));
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&id, 0, "a", None));
    t.now += Duration::from_millis(7);
    let (status, body) = page(&mut t, "/control/streams", "Bearer bridge");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let s = &v["streams"][0];
    assert_eq!(
        (
            &s["id"],
            &s["route"],
            &s["model"],
            &s["stream"],
            &s["chunks"],
            &s["age_ms"]
        ),
        (
            &json!(id),
            &json!("/v1/chat/completions"),
            &json!("m"),
            &json!(true),
            &json!(1),
            &json!(7)
        )
    );
    assert_eq!(page(&mut t, "/control/streams", "Bearer key").0, 401);
}

#[test]
fn the_audit_trail_records_events_without_prompts_or_secrets() {
    let mut t = Pair::new(|c| {
        c.audit = true;
        c.approval = Approval::Manual;
    });
    t.connect_agent(AGENT, register(3600));
    let sid = t.agent_frames(AGENT)[0]["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.request(
        ConnId(3),
        "POST",
        "/control/approve",
        &BRIDGE,
        json!({"session_id": sid}),
    );
    let prompt = "the secret plan is 42";
    let body = json!({"model": "m", "messages": [{"role": "user", "content": prompt}]});
    t.request(EDITOR, "POST", "/v1/chat/completions", &[], body);
    let id = t.last_invoke_id(AGENT);
    t.agent(AGENT, chunk(&id, 0, "ok", Some("stop")));
    t.request(
        ConnId(4),
        "GET",
        "/v1/models",
        &[("authorization", "Bearer guess")],
        Value::Null,
    );
    t.request(
        ConnId(5),
        "GET",
        "/v1/models",
        &[("host", "evil.example")],
        Value::Null,
    );

    let mut lines = Vec::new();
    while let Some(line) = t.p.poll_audit() {
        assert!(
            !line.contains(prompt) && !line.contains("guess") && !line.contains("bridge\""),
            "{line}"
        );
        lines.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "session_registered",
            "session_approved",
            "request",
            "request",
            "auth_failure",
            "request",
            "security_refusal",
            "request"
        ]
    );
    assert_eq!(lines[0]["status"], "pending");
    assert_eq!(lines[1]["status"], "active");
    let chat = &lines[3];
    assert_eq!(
        (&chat["route"], &chat["status"], &chat["model"]),
        (&json!("/v1/chat/completions"), &json!(200), &json!("m"))
    );
    assert_eq!(chat["session_id"], json!(sid));
    assert_eq!(chat["prompt_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(lines[4]["status"], 401);
    assert_eq!(lines[6]["status"], 403);
}
