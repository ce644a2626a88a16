//! One run's round trips through the editor's tools: the MCP calls its CLI
//! made, gathered into one answer, then held open while the editor runs
//! them.
//!
//! A model turn may call several tools at once, and a CLI sends their MCP
//! calls one by one (or only after the first returns). The CLI's output
//! says how many calls its turn made ([`Round::turn`]); the calls are given
//! to the editor together once that many arrived, or [`BATCH_WAIT`] after
//! the first, whichever is sooner. Once given, the run is parked until the
//! editor's results come or its deadline passes.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::link::{self, LinkId};
use super::tools::{Given, Offer, ToolResult};
use super::MAX_CALLS;
use crate::mcp;

/// The longest the first call of a turn waits for the others the turn
/// made, when the CLI's output did not say they all came.
pub const BATCH_WAIT: Duration = Duration::from_millis(200);

/// An MCP call from the CLI, not answered yet.
struct Open {
    link: LinkId,
    rpc: Value,
    given: Given,
}

pub struct Round {
    pub offer: Offer,
    /// Calls not yet given to the editor.
    pending: Vec<Open>,
    /// Calls the editor was given, waiting for its results.
    given: Vec<Open>,
    /// Calls of the editor's tools the CLI's last turn made and did not
    /// send yet, when its output said.
    expected: Option<u64>,
    /// When the pending calls go to the editor, however many came.
    batch_due: Option<Instant>,
    /// Parked: the editor has the calls; past this the run is ended.
    parked_until: Option<Instant>,
    /// Calls made so far, for their ids.
    made: u64,
}

impl Round {
    pub fn new(offer: Offer) -> Self {
        Round {
            offer,
            pending: Vec::new(),
            given: Vec::new(),
            expected: None,
            batch_due: None,
            parked_until: None,
            made: 0,
        }
    }

    /// Whether the run waits for the editor's results.
    pub fn parked(&self) -> bool {
        self.parked_until.is_some()
    }

    /// The calls the editor was given.
    pub fn given(&self) -> Vec<Given> {
        self.given.iter().map(|o| o.given.clone()).collect()
    }

    /// When [`ProcessAgent::handle_timeout`](crate::agent::process::ProcessAgent::handle_timeout)
    /// has something to do for this round.
    pub fn deadline(&self) -> Option<Instant> {
        self.parked_until.or(self.batch_due)
    }

    /// The CLI called a tool over `link`: held, unless the run is parked
    /// or too many are held (then the CLI gets this error line back). A
    /// parked run's editor has its answer, the calls it was given: a call
    /// made now would be nobody's (the CLI waits for their results), and
    /// taken in, it would be handed to the editor in place of what the run
    /// says after them.
    pub fn call(
        &mut self,
        link: LinkId,
        rpc: Value,
        name: String,
        arguments: Value,
        id: impl FnOnce(u64) -> String,
        now: Instant,
    ) -> Result<(), String> {
        if self.parked() {
            let message =
                "the editor has this turn's calls and no other is taken until their results come";
            return Err(mcp::error(&rpc, mcp::INVALID_REQUEST, message, None));
        }
        if self.pending.len() + self.given.len() >= MAX_CALLS {
            let message = format!("more than {MAX_CALLS} tool calls at once");
            return Err(link::result(&rpc, &message, true));
        }
        let id = id(self.made);
        self.made += 1;
        self.pending.push(Open {
            link,
            rpc,
            given: Given {
                id,
                name,
                arguments,
            },
        });
        self.batch_due.get_or_insert(now + BATCH_WAIT);
        Ok(())
    }

    /// The CLI's output says its model turn ended having called `calls` of
    /// the editor's tools.
    pub fn turn(&mut self, calls: u64) {
        self.expected = Some(calls);
    }

    /// Whether the pending calls are all the turn made (they go at once).
    pub fn complete(&self) -> bool {
        !self.pending.is_empty()
            && !self.parked()
            && self
                .expected
                .is_some_and(|e| self.pending.len() as u64 >= e)
    }

    /// Whether the pending calls are due by the bound.
    pub fn due(&self, now: Instant) -> bool {
        !self.parked() && self.batch_due.is_some_and(|due| due <= now)
    }

    /// Gives the pending calls to the editor: the run is parked until
    /// `until`.
    pub fn give(&mut self, until: Instant) -> Vec<Given> {
        let pending = std::mem::take(&mut self.pending);
        let n = pending.len() as u64;
        self.expected = self.expected.map(|e| e.saturating_sub(n));
        self.batch_due = None;
        self.parked_until = Some(until);
        let given = pending.iter().map(|o| o.given.clone()).collect();
        self.given = pending;
        given
    }

    /// The editor's results, one per given call in order: the MCP answers
    /// to send, each on its link. The run goes on.
    pub fn answer(&mut self, results: Vec<ToolResult>) -> Vec<(LinkId, String)> {
        self.parked_until = None;
        std::mem::take(&mut self.given)
            .into_iter()
            .zip(results)
            .map(|(open, r)| (open.link, link::result(&open.rpc, &r.text, r.is_error)))
            .collect()
    }

    /// The link closed: its calls can no longer be answered.
    pub fn link_closed(&mut self, link: LinkId) {
        self.pending.retain(|o| o.link != link);
        if self.pending.is_empty() {
            self.batch_due = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(round: &mut Round, n: u64, now: Instant) {
        let name = "weather".to_owned();
        let id = |made| format!("call_{made}");
        round
            .call(LinkId(1), json!(n), name, json!({"n": n}), id, now)
            .unwrap();
    }

    fn round() -> Round {
        let offer = Offer::of(&json!({"kind": "chat", "messages": [],
            "parameters": {"tools": [{"type": "function", "function": {"name": "weather"}}]}}));
        Round::new(offer.unwrap())
    }

    #[test]
    fn calls_of_one_turn_go_together_once_all_came() {
        let now = Instant::now();
        let mut r = round();
        call(&mut r, 1, now);
        assert!(!r.complete(), "the turn's count is not known yet");
        r.turn(2);
        assert!(!r.complete());
        call(&mut r, 2, now);
        assert!(r.complete());
        let given = r.give(now + Duration::from_secs(300));
        assert_eq!(
            given.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
            ["call_0", "call_1"]
        );
        assert!(r.parked() && !r.complete());
        assert_eq!(r.deadline(), Some(now + Duration::from_secs(300)));
        let results = ["sun", "rain"].map(|t| ToolResult {
            id: None,
            text: t.into(),
            is_error: t == "rain",
        });
        let answers = r.answer(results.to_vec());
        let second: Value = serde_json::from_str(&answers[1].1).unwrap();
        assert_eq!(second["id"], 2);
        assert_eq!(second["result"]["isError"], true);
        assert_eq!(second["result"]["content"][0]["text"], "rain");
        assert!(!r.parked() && r.deadline().is_none());
    }

    #[test]
    fn without_the_turns_count_calls_go_after_the_bound() {
        let now = Instant::now();
        let mut r = round();
        call(&mut r, 1, now);
        assert_eq!(r.deadline(), Some(now + BATCH_WAIT));
        assert!(!r.due(now + BATCH_WAIT - Duration::from_millis(1)));
        assert!(r.due(now + BATCH_WAIT));
        r.link_closed(LinkId(1));
        assert!(!r.due(now + BATCH_WAIT) && r.deadline().is_none());
    }

    #[test]
    fn a_call_while_parked_is_refused_and_never_given() {
        let now = Instant::now();
        let mut r = round();
        call(&mut r, 1, now);
        r.give(now + Duration::from_secs(300));
        let id = |made| format!("call_{made}");
        let city = json!({"city": "Oslo"});
        let refused = r.call(LinkId(2), json!(9), "weather".into(), city, id, now);
        let refused: Value = serde_json::from_str(&refused.unwrap_err()).unwrap();
        assert_eq!(refused["id"], 9);
        assert_eq!(refused["error"]["code"], mcp::INVALID_REQUEST);
        // The results come: nothing is left to give after them.
        let result = ToolResult {
            id: None,
            text: "sun".into(),
            is_error: false,
        };
        assert_eq!(r.answer(vec![result]).len(), 1);
        assert!(!r.due(now + BATCH_WAIT) && r.deadline().is_none());
        assert!(r.give(now + BATCH_WAIT).is_empty());
    }

    #[test]
    fn calls_past_the_cap_are_refused() {
        let now = Instant::now();
        let mut r = round();
        for n in 0..MAX_CALLS as u64 {
            call(&mut r, n, now);
        }
        let id = |made| format!("call_{made}");
        let refused = r.call(LinkId(1), json!(99), "weather".into(), json!({}), id, now);
        let refused: Value = serde_json::from_str(&refused.unwrap_err()).unwrap();
        assert_eq!(refused["result"]["isError"], true);
    }
}
