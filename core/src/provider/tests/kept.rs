//! Answers kept past their connection (the Responses API's store,
//! background answers) and answers found by their id.

use super::*;

const OTHER: ConnId = ConnId(2);

fn ready() -> Pair {
    let mut t = Pair::new(|c| c.api_keys.push(crate::auth::SecretHash::of("other")));
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    t
}

fn respond(t: &mut Pair, conn: ConnId, body: Value) {
    t.request(conn, "POST", "/v1/responses", &[], body);
}

/// The agent answers invocation `id` with `words`, one chunk each.
fn answer(t: &mut Pair, id: &str, words: &[&str]) {
    for (i, w) in words.iter().enumerate() {
        let finish = (i + 1 == words.len()).then_some("stop");
        t.agent(AGENT, chunk(id, i as u64, w, finish));
    }
}

/// Starts a background response on `EDITOR`: its immediate answer's
/// status, the response id, and the agent's invocation id.
fn background(t: &mut Pair) -> (String, String, String) {
    respond(
        t,
        EDITOR,
        json!({"model": "m", "input": "go", "background": true}),
    );
    let (status, queued) = json_body(t, EDITOR);
    assert_eq!(status, 200);
    let rid = queued["id"].as_str().unwrap().to_owned();
    let id = t.last_invoke_id(AGENT);
    (queued["status"].as_str().unwrap().to_owned(), rid, id)
}

/// `POST /v1/responses/{rid}/cancel` on `EDITOR`.
fn cancel(t: &mut Pair, rid: &str) -> (u16, Value) {
    let path = format!("/v1/responses/{rid}/cancel");
    t.request(EDITOR, "POST", &path, &[], Value::Null);
    json_body(t, EDITOR)
}

fn json_body(t: &mut Pair, conn: ConnId) -> (u16, Value) {
    let (status, body, ended) = t.editor(conn);
    assert!(ended, "a whole answer");
    (status.unwrap(), serde_json::from_slice(&body).unwrap())
}

fn get(t: &mut Pair, conn: ConnId, path: &str, key: &str) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    t.request(conn, "GET", path, &[("authorization", &auth)], Value::Null);
    json_body(t, conn)
}

#[test]
fn a_chained_response_sends_the_agent_the_whole_conversation_but_not_the_old_instructions() {
    let mut t = ready();
    respond(
        &mut t,
        EDITOR,
        json!({"model": "m", "input": "first", "instructions": "old rules"}),
    );
    let id = t.last_invoke_id(AGENT);
    answer(&mut t, &id, &["one"]);
    let (status, first) = json_body(&mut t, EDITOR);
    assert_eq!((status, first["status"].as_str()), (200, Some("completed")));
    let first_id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["store"], true);

    respond(
        &mut t,
        EDITOR,
        json!({"model": "m", "input": "second",
        "instructions": "new rules", "previous_response_id": first_id}),
    );
    let frames = t.agent_frames(AGENT);
    let invoke = frames.iter().find(|f| f["type"] == "model_invoke").unwrap();
    let texts: Vec<&str> = invoke["payload"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["content"]
                .as_str()
                .unwrap_or_else(|| m["content"][0]["text"].as_str().unwrap())
        })
        .collect();
    assert_eq!(texts, ["new rules", "first", "one", "second"]);
    let id = invoke["id"].as_str().unwrap().to_owned();
    answer(&mut t, &id, &["two"]);
    let (_, second) = json_body(&mut t, EDITOR);
    assert_eq!(second["previous_response_id"], first_id.as_str());

    // Another key sees neither, and cannot continue them.
    let path = format!("/v1/responses/{first_id}");
    assert_eq!(get(&mut t, OTHER, &path, "other").0, 404);
    t.request(
        OTHER,
        "POST",
        "/v1/responses",
        &[("authorization", "Bearer other")],
        json!({"model": "m", "input": "x", "previous_response_id": first_id}),
    );
    let (status, error) = json_body(&mut t, OTHER);
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (400, Some("previous_response_not_found"))
    );
    let (status, stored) = get(&mut t, OTHER, &path, "key");
    assert_eq!(
        (status, stored["output"][0]["content"][0]["text"].as_str()),
        (200, Some("one"))
    );
}

#[test]
fn a_background_answer_runs_without_its_asker_and_is_replayed_from_any_event() {
    let mut t = ready();
    let (status, rid, id) = background(&mut t);
    assert_eq!(status, "in_progress");
    // The asker is gone: nothing is cancelled.
    t.p.handle_conn_closed(EDITOR, t.now);
    t.drain();
    t.agent(AGENT, chunk(&id, 0, "a ", None));
    t.agent(AGENT, chunk(&id, 1, "b ", None));

    // A follower from event 3 on gets what is recorded after it, then the rest live.
    let path = format!("/v1/responses/{rid}?stream=true&starting_after=3");
    t.request(OTHER, "GET", &path, &[], Value::Null);
    let (status, body, ended) = t.editor(OTHER);
    assert_eq!((status, ended), (Some(200), false));
    let text = String::from_utf8(body).unwrap();
    assert!(text.starts_with("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,"), "{text}");
    t.agent(AGENT, chunk(&id, 2, "c", Some("stop")));
    let (_, body, ended) = t.editor(OTHER);
    let text = String::from_utf8(body).unwrap();
    assert!(
        ended && text.contains("\"delta\":\"c\"") && text.contains("response.completed"),
        "{text}"
    );
    assert!(t.agent_frames(AGENT).iter().all(|f| f["type"] != "cancel"));

    let (_, done) = get(&mut t, EDITOR, &format!("/v1/responses/{rid}"), "key");
    assert_eq!(done["output"][0]["content"][0]["text"], "a b c");
    // Past the last event, or not a number: 400.
    for bad in ["starting_after=99", "starting_after=-1"] {
        let (status, _) = get(
            &mut t,
            EDITOR,
            &format!("/v1/responses/{rid}?stream=true&{bad}"),
            "key",
        );
        assert_eq!(status, 400, "{bad}");
    }
    // Over: cancelling it is refused; deleting it works, then it is gone.
    assert_eq!(cancel(&mut t, &rid).0, 400);
    t.request(
        EDITOR,
        "DELETE",
        &format!("/v1/responses/{rid}"),
        &[],
        Value::Null,
    );
    assert_eq!(json_body(&mut t, EDITOR).1["deleted"], true);
    assert_eq!(
        get(&mut t, EDITOR, &format!("/v1/responses/{rid}"), "key").0,
        404
    );
}

#[test]
fn cancelling_a_background_answer_tells_the_agent_and_records_it() {
    let mut t = ready();
    let (_, rid, id) = background(&mut t);
    t.agent(AGENT, chunk(&id, 0, "partial", None));
    let (status, cancelled) = cancel(&mut t, &rid);
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(cancelled["output"][0]["content"][0]["text"], "partial");
    assert!(t
        .agent_frames(AGENT)
        .iter()
        .any(|f| f["type"] == "cancel" && f["id"] == id.as_str()));
    assert_eq!(t.p.in_flight(), 0);
}

#[test]
fn cancelling_a_cancelled_answer_again_answers_it_as_it_ended() {
    let mut t = ready();
    let (_, rid, id) = background(&mut t);
    t.agent(AGENT, chunk(&id, 0, "partial", None));
    let (status, first) = cancel(&mut t, &rid);
    assert_eq!(status, 200);
    assert!(t.agent_frames(AGENT).iter().any(|f| f["type"] == "cancel"));
    for _ in 0..2 {
        let (status, again) = cancel(&mut t, &rid);
        assert_eq!((status, &again), (200, &first));
        assert_eq!(again["status"], "cancelled");
    }
    assert_eq!(
        t.agent_frames(AGENT),
        Vec::<Value>::new(),
        "the agent was told again"
    );
}

#[test]
fn a_stored_answer_whose_asker_leaves_is_cancelled_and_says_so() {
    let mut t = ready();
    respond(
        &mut t,
        EDITOR,
        json!({"model": "m", "input": "go", "stream": true}),
    );
    let (status, body, _) = t.editor(EDITOR);
    assert_eq!(status, Some(200));
    let text = String::from_utf8(body).unwrap();
    let rid = text
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    t.p.handle_conn_closed(EDITOR, t.now);
    t.drain();
    assert!(t.agent_frames(AGENT).iter().any(|f| f["type"] == "cancel"));
    let (_, record) = get(&mut t, OTHER, &format!("/v1/responses/{rid}"), "key");
    assert_eq!(record["status"], "cancelled");
    assert_eq!(t.p.in_flight(), 0);
}

#[test]
fn any_answer_is_found_and_cancelled_by_its_id() {
    let mut t = ready();
    t.chat(EDITOR, true);
    let id = t.last_invoke_id(AGENT);
    let head = t.response(EDITOR);
    let cid = head.header("x-completion-id").unwrap().to_owned();
    assert!(cid.starts_with("chatcmpl-"));
    t.agent(AGENT, chunk(&id, 0, "Hel", None));
    t.editor(EDITOR);

    let (status, running) = get(&mut t, OTHER, &format!("/completions/{cid}"), "key");
    assert_eq!(
        (
            status,
            running["status"].as_str(),
            running["model"].as_str()
        ),
        (200, Some("in_progress"), Some("m"))
    );
    assert!(running["started"]
        .as_str()
        .unwrap()
        .starts_with("2027-01-15T"));
    // Another key does not see it; the bridge token does.
    assert_eq!(
        get(&mut t, OTHER, &format!("/completions/{cid}"), "other").0,
        404
    );
    t.request(
        OTHER,
        "DELETE",
        &format!("/v1/completions/{cid}"),
        &[("authorization", "Bearer bridge")],
        Value::Null,
    );
    assert_eq!(json_body(&mut t, OTHER).1["status"], "cancelled");
    let (_, body, ended) = t.editor(EDITOR);
    let text = String::from_utf8(body).unwrap();
    assert!(
        ended && text.contains("\"finish_reason\":\"stop\"") && text.ends_with("data: [DONE]\n\n"),
        "{text}"
    );
    assert!(t.agent_frames(AGENT).iter().any(|f| f["type"] == "cancel"));
    // Over: still found, no longer cancellable.
    t.request(
        OTHER,
        "DELETE",
        &format!("/completions/{cid}"),
        &[],
        Value::Null,
    );
    assert_eq!(json_body(&mut t, OTHER).0, 400);
    assert_eq!(
        get(&mut t, OTHER, "/completions/chatcmpl-nope", "key").0,
        404
    );
}

#[test]
fn a_background_answers_kept_events_are_capped_like_an_answer() {
    let mut t = Pair::new(|c| c.max_output_bytes = 4096);
    t.connect_agent(AGENT, register(3600));
    t.agent_frames(AGENT);
    let (_, rid, id) = background(&mut t);
    // Small pieces: their events weigh far more than their text.
    for i in 0..200 {
        t.agent(AGENT, chunk(&id, i, "x", None));
    }
    assert!(t.agent_frames(AGENT).iter().any(|f| f["type"] == "cancel"));
    let (_, record) = get(&mut t, EDITOR, &format!("/v1/responses/{rid}"), "key");
    assert_eq!(record["status"], "failed");
    assert!(record["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_output_bytes"));
    assert!(
        t.p.kept.store.bytes() < 3 * 4096,
        "{}",
        t.p.kept.store.bytes()
    );
}
