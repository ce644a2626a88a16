//! How things the provider waits on end: an answer ([`Ended`]) and an
//! agent's permission question ([`Decision`]). Below the parts that end
//! them and the metrics that count them, so neither imports the other.

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    Completed,
    Failed,
    /// By its id, or because its editor left.
    Cancelled,
}

impl Ended {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ended::Completed => "completed",
            Ended::Failed => "failed",
            Ended::Cancelled => "cancelled",
        }
    }
}

/// How questions end, as counted in
/// `mcp_provider_permission_questions_total{decision=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The user allowed the call.
    Allow,
    /// The user rejected it.
    Reject,
    /// Nobody decided in time.
    Timeout,
    /// Its agent stopped waiting: the answer it belongs to ended, or the
    /// link dropped.
    Withdrawn,
    /// Answered no at once: over the caps, or about no answer in progress.
    Refused,
}

impl Decision {
    pub const ALL: [Decision; 5] = [
        Decision::Allow,
        Decision::Reject,
        Decision::Timeout,
        Decision::Withdrawn,
        Decision::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Reject => "reject",
            Decision::Timeout => "timeout",
            Decision::Withdrawn => "withdrawn",
            Decision::Refused => "refused",
        }
    }
}
