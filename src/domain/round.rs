//! A round: one turn of the agent after a task's first, and how it came out.

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};

/// Why a round runs. Stored as its snake_case name in `task_rounds.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
pub enum RoundKind {
    /// CI failed on the task's head commit: the failure report goes back to the agent.
    Ci,
    /// A prompt on the task's pull request.
    FollowUp,
    /// `/amp retry` after the CI loop gave up: the last failure, with a fresh set of rounds.
    Retry,
}

impl RoundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundKind::Ci => "ci",
            RoundKind::FollowUp => "follow_up",
            RoundKind::Retry => "retry",
        }
    }

    /// A round that answers a CI failure (counts as the loop's work, and must change something).
    pub fn answers_ci(self) -> bool {
        matches!(self, RoundKind::Ci | RoundKind::Retry)
    }
}

/// How a round ended. Stored as its snake_case name in `task_rounds.outcome` (`NULL` while it
/// is pending).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
pub enum RoundOutcome {
    /// The agent changed something and the commit was pushed.
    Pushed,
    /// The agent changed nothing.
    NoChanges,
    /// Recorded, never sent: the CI loop gave up on this failure.
    GaveUp,
}

impl RoundOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RoundOutcome::Pushed => "pushed",
            RoundOutcome::NoChanges => "no_changes",
            RoundOutcome::GaveUp => "gave_up",
        }
    }
}

/// A check that failed, as a round records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedCheck {
    pub name: String,
    #[serde(default = "failed")]
    pub conclusion: String,
}

fn failed() -> String {
    "failed".into()
}
