//! The task state machine.
//!
//! ```text
//! queued → preparing → running → pushing → awaiting_ci ⇄ fixing → pushing → … → succeeded
//!                                      └→ succeeded (no changes)      └→ needs_human (gave up)
//! any active state → failed | cancelled | timed_out
//! a finished task → queued again (`/amp retry`, or a follow-up prompt on its pull request)
//! pushing → running (a run resumed after a restart of the service)
//! ```
//!
//! Every accepted transition is stored as a `state` event in `task_events`, so the timeline on the
//! status page is the database's, not a reconstruction.

use std::fmt;
use std::str::FromStr;

use sea_orm::sea_query::StringLen;
use sea_orm::{DeriveActiveEnum, EnumIter};

/// Stored as its snake_case name in `tasks.state`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    EnumIter,
    DeriveActiveEnum,
)]
#[serde(rename_all = "snake_case")]
#[sea_orm(
    rs_type = "String",
    db_type = "String(StringLen::None)",
    rename_all = "snake_case"
)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// A worker claimed it: starting the container, cloning.
    Preparing,
    /// The agent is working on the prompt.
    Running,
    /// Committing and pushing the agent's change, opening or updating the pull request.
    Pushing,
    /// Pushed; waiting for CI to finish on the new head commit.
    AwaitingCi,
    /// CI failed; the agent is working on the failure report.
    Fixing,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
    /// The CI loop gave up; a person has to look (or say `/amp retry`).
    NeedsHuman,
}

impl TaskState {
    pub const ALL: [TaskState; 11] = [
        TaskState::Queued,
        TaskState::Preparing,
        TaskState::Running,
        TaskState::Pushing,
        TaskState::AwaitingCi,
        TaskState::Fixing,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::TimedOut,
        TaskState::NeedsHuman,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Preparing => "preparing",
            TaskState::Running => "running",
            TaskState::Pushing => "pushing",
            TaskState::AwaitingCi => "awaiting_ci",
            TaskState::Fixing => "fixing",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::TimedOut => "timed_out",
            TaskState::NeedsHuman => "needs_human",
        }
    }

    /// Every state a task can still move on from.
    pub fn active() -> impl Iterator<Item = TaskState> {
        TaskState::ALL.into_iter().filter(|s| !s.is_terminal())
    }

    /// A task in the middle of a run: a worker holds it (or held it, if its lease expired).
    pub fn is_mid_run(self) -> bool {
        matches!(
            self,
            TaskState::Preparing | TaskState::Running | TaskState::Pushing | TaskState::Fixing
        )
    }

    /// A finished task holds no container and no worker.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::Cancelled
                | TaskState::TimedOut
                | TaskState::NeedsHuman
        )
    }

    /// Whether `self → next` is a legal transition.
    pub fn can_become(self, next: TaskState) -> bool {
        use TaskState::*;
        if self == next {
            return false;
        }
        if self.is_terminal() {
            // Finished tasks are only ever re-opened, through the queue.
            return next == Queued;
        }
        // Any active state can end badly.
        if matches!(next, Failed | Cancelled | TimedOut) {
            return true;
        }
        match self {
            Queued => matches!(next, Preparing),
            // A worker that drains or loses its lease hands the task back.
            Preparing => matches!(next, Running | Queued),
            // Straight to awaiting_ci or needs_human: a follow-up or retry round changed nothing.
            Running => matches!(next, Pushing | Succeeded | Queued | AwaitingCi | NeedsHuman),
            // Back to running: the run was resumed after a restart of the service.
            Pushing => matches!(next, AwaitingCi | Succeeded | Running | NeedsHuman),
            AwaitingCi => matches!(next, Fixing | Running | Succeeded | NeedsHuman),
            Fixing => matches!(next, Pushing | NeedsHuman | AwaitingCi | Succeeded),
            Succeeded | Failed | Cancelled | TimedOut | NeedsHuman => unreachable!(),
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::{self, *};

    #[test]
    fn names_round_trip() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::json!(state.as_str())
            );
        }
        assert!("done".parse::<TaskState>().is_err());
    }

    #[test]
    fn the_happy_path_with_a_ci_round_is_legal() {
        let path = [
            Queued, Preparing, Running, Pushing, AwaitingCi, Fixing, Pushing, AwaitingCi, Succeeded,
        ];
        for pair in path.windows(2) {
            assert!(pair[0].can_become(pair[1]), "{} → {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn terminal_states_only_reopen_through_the_queue() {
        for state in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for next in TaskState::ALL {
                assert_eq!(state.can_become(next), next == Queued, "{state} → {next}");
            }
        }
    }

    #[test]
    fn active_states_can_always_fail_be_cancelled_or_time_out() {
        for state in TaskState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            for end in [Failed, Cancelled, TimedOut] {
                assert!(state.can_become(end), "{state} → {end}");
            }
        }
    }

    #[test]
    fn illegal_shortcuts_are_refused() {
        assert!(!Queued.can_become(Running));
        assert!(!Queued.can_become(Succeeded));
        assert!(!Running.can_become(Fixing));
        assert!(!AwaitingCi.can_become(Pushing));
        assert!(!Queued.can_become(Queued));
        assert!(!Queued.can_become(NeedsHuman));
    }
}
