//! An editor's connection: requests in, the provider's answers out, in
//! order; a peer that leaves, one that reads slowly, one that sends what
//! is not HTTP, and one past the connection cap.

use futures_lite::io::AsyncWriteExt;
use mcp_provider_core::backlog::PAUSE_AT;
use serde_json::Value;

use super::{chat, duplex, request, run, within, Served, Test, EDITOR_BUFFER};
use crate::driver::server::Gate;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body: {e}: {body}"))
}

#[test]
fn a_request_is_answered_with_the_providers_response() {
    run(async {
        let served = Served::new(|_| {});
        let mut editor = served.editor();
        editor.send(&request("GET", "/v1/models", None)).await;
        let (status, body) = editor.response().await;
        assert_eq!(status, 200);
        assert_eq!(json(&body)["object"], "list");
    });
}

#[test]
fn pipelined_requests_are_answered_in_the_order_they_came() {
    run(async {
        let served = Served::new(|_| {});
        let mut editor = served.editor();
        let pipelined = [
            request("GET", "/v1/models/nowhere", None),
            request("GET", "/v1/models", None),
            request("GET", "/api/version", None),
        ];
        editor.send(&pipelined.concat()).await;
        let (first, body) = editor.response().await;
        assert_eq!(
            (first, &json(&body)["error"]["code"]),
            (404, &"model_not_found".into())
        );
        let (second, body) = editor.response().await;
        assert_eq!((second, &json(&body)["object"]), (200, &"list".into()));
        let (third, body) = editor.response().await;
        assert_eq!(third, 200);
        assert!(json(&body)["version"].is_string(), "{body}");
    });
}

#[test]
fn bytes_that_are_not_http_are_refused_in_the_apis_shape_and_the_connection_ends() {
    run(async {
        let served = Served::new(|c| c.http.max_body = 1000);
        let mut editor = served.editor();
        editor.send("\x01\x02 not http\r\n\r\n").await;
        let (status, body) = editor.response().await;
        assert_eq!(status, 400);
        let error = &json(&body)["error"];
        assert_eq!(
            error["type"], "invalid_request_error",
            "OpenAI's shape: {body}"
        );
        assert!(error["message"].is_string(), "{body}");
        let (rest, _) = editor.until("never sent").await;
        assert_eq!(rest, "", "nothing after the answer: the connection ended");
        // A body too large for Anthropic's API is refused in its shape.
        let mut editor = served.editor();
        let body = serde_json::json!({"model": "m", "max_tokens": 1, "messages": [
            {"role": "user", "content": "y".repeat(2000)}]});
        editor
            .send(&request("POST", "/v1/messages", Some(body)))
            .await;
        let (status, body) = editor.response().await;
        assert_eq!((status, &json(&body)["type"]), (413, &"error".into()));
        assert!(json(&body)["error"]["message"].is_string(), "{body}");
    });
}

#[test]
fn an_editor_gone_mid_answer_ends_its_connection_and_its_agent_hears_cancel() {
    run(async {
        let served = Served::new(|_| {});
        let mut agent = served.agent().await;
        let (mut editor, ended) = served.connect(EDITOR_BUFFER);
        let sent = editor.write_all(chat(true).as_bytes()).await;
        assert!(sent.is_ok());
        let id = agent.invoked().await;
        drop(editor);
        // The next write finds the editor gone, if the read did not first.
        agent.chunk(&id, 0, "Hel").await;
        within("the connection's end", ended).await;
        let cancel = agent.next_of("cancel").await;
        assert_eq!(cancel["id"], id.as_str());
    });
}

#[test]
fn an_editor_that_stops_reading_pauses_its_answer_until_it_reads_again() {
    run(async {
        let served = Served::new(|_| {});
        let mut agent = served.agent().await;
        let mut editor = served.editor();
        editor.send(&chat(true)).await;
        let id = agent.invoked().await;
        // The editor reads nothing while more than the pause level comes.
        let piece = "y".repeat(1000);
        let pieces = (PAUSE_AT / 1000) as u64 + 16;
        for index in 0..pieces {
            agent.chunk(&id, index, &piece).await;
        }
        let pause = agent.next().await;
        assert_eq!(
            (&pause["type"], &pause["id"]),
            (&"pause".into(), &id.as_str().into())
        );
        // Reading it all drains the backlog: the agent may go on.
        let (read, all) = editor.until_count(&piece, pieces as usize).await;
        assert!(read.starts_with("HTTP/1.1 200"), "{read}");
        assert!(all, "every piece reaches the editor");
        let resume = agent.next().await;
        assert_eq!(
            (&resume["type"], &resume["id"]),
            (&"resume".into(), &id.as_str().into())
        );
        agent
            .send(serde_json::json!({"type": "model_stream_chunk", "id": id,
                "chunk_index": pieces, "delta": {}, "finish_reason": "stop"}))
            .await;
        let (_, done) = editor.until("data: [DONE]").await;
        assert!(done, "the answer ends as usual");
    });
}

#[test]
fn an_editor_that_never_reads_has_its_answer_cut_at_the_output_cap() {
    run(async {
        let cap = 2 * PAUSE_AT;
        let served = Served::new(|c| c.max_output_bytes = cap);
        let mut agent = served.agent().await;
        let mut editor = served.editor();
        editor.send(&chat(true)).await;
        let id = agent.invoked().await;
        // An agent that pays no heed to `pause`.
        let piece = "y".repeat(1000);
        for index in 0..(3 * cap / 1000) as u64 {
            agent.chunk(&id, index, &piece).await;
        }
        assert_eq!(agent.next().await["type"], "pause");
        let cancel = agent.next().await;
        assert_eq!(
            (&cancel["type"], &cancel["id"]),
            (&"cancel".into(), &id.as_str().into())
        );
        let (read, cut) = editor.until("read too slowly").await;
        assert!(cut, "the editor is told why its answer ended");
        // What it got was held in memory, at most the cap and the rest of
        // the burst of frames that passed it (a burst is handled whole
        // before the backlog is looked at; how many frames one holds
        // depends on how far the agent ran ahead of the link), or in the
        // connection's buffer.
        let delivered = read.matches(piece.as_str()).count() * piece.len();
        let held = cap + crate::BURST_BYTES + piece.len() + EDITOR_BUFFER;
        assert!(delivered <= held, "{delivered} bytes held");
    });
}

#[test]
fn past_the_cap_a_connection_is_answered_503_and_closed() {
    run(async {
        let gate = Gate::new(1);
        let (_first, server) = duplex(EDITOR_BUFFER);
        let admitted = gate.admit::<Test>(server);
        assert!(admitted.is_some(), "under the cap");
        let (client, server) = duplex(EDITOR_BUFFER);
        assert!(gate.admit::<Test>(server).is_none(), "at the cap");
        let mut refused = super::Editor {
            conn: client,
            read: Vec::new(),
        };
        let (status, body) = refused.response().await;
        assert_eq!(status, 503);
        assert!(body.contains("error"), "{body}");
        // Once the first closes, a newcomer is admitted again.
        drop(admitted);
        let (_again, server) = duplex(EDITOR_BUFFER);
        assert!(gate.admit::<Test>(server).is_some());
    });
}
