//! How a run ends, decided from what happened: pure functions, with table tests that need no
//! Docker.

use crate::domain::{Failure, RoundKind, RoundOutcome, TaskState};
use crate::texts::{failures, notes};

/// How a task's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Changes pushed (and a pull request open): CI takes over.
    AwaitingCi {
        summary: String,
    },
    /// The agent decided nothing needed to change.
    NoChanges {
        explanation: String,
    },
    /// A round in which the agent changed nothing that had to change something.
    NeedsHuman(String),
    Failed(Failure),
    /// Stopped on request: `/amp stop`, or the reason stored with the request.
    Stopped(Option<String>),
    TimedOut(String),
    /// This replica is shutting down: the task goes on elsewhere, in its container.
    HandedBack,
}

impl End {
    /// The state the task ends the run in, and what its status comment says about it. `None`
    /// for a task handed back, which keeps its state.
    pub fn outcome(&self) -> Option<(TaskState, String)> {
        Some(match self {
            End::AwaitingCi { summary } => (TaskState::AwaitingCi, summary.clone()),
            End::NoChanges { explanation } => {
                (TaskState::Succeeded, notes::no_changes(explanation))
            }
            End::NeedsHuman(why) => (TaskState::NeedsHuman, why.clone()),
            End::Failed(failure) => (TaskState::Failed, failures::shown(failure)),
            End::Stopped(why) => (
                TaskState::Cancelled,
                why.clone().unwrap_or_else(notes::stopped),
            ),
            End::TimedOut(why) => (TaskState::TimedOut, why.clone()),
            End::HandedBack => return None,
        })
    }

    /// How the round the run worked on came out; `None` leaves it pending (a run that failed,
    /// was stopped or was handed back), for `/amp retry` or the replica that takes it over.
    pub fn round_outcome(&self, pushed: bool) -> Option<RoundOutcome> {
        match self {
            End::AwaitingCi { .. } if pushed => Some(RoundOutcome::Pushed),
            End::AwaitingCi { .. } | End::NoChanges { .. } | End::NeedsHuman(_) => {
                Some(RoundOutcome::NoChanges)
            }
            _ => None,
        }
    }
}

impl From<Failure> for End {
    fn from(failure: Failure) -> End {
        End::Failed(failure)
    }
}

/// What the workspace holds once the agent's turn is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// The round the run works on (`None`: the task's first turn).
    pub round: Option<RoundKind>,
    /// The task works on a pull request already (it was asked on one, or opened one).
    pub has_pull: bool,
    /// The task has pushed a commit before.
    pub pushed_before: bool,
    /// The workspace has commits its base branch lacks.
    pub ahead: bool,
    /// `HEAD` is the commit the task pushed last (a container reused for a round).
    pub head_is_last_pushed: bool,
    /// The workspace went on from a branch an earlier run pushed without opening its pull
    /// request: that commit still needs one.
    pub continued_branch: bool,
}

/// What comes after the agent's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Push the new commits; open a pull request when the task has none.
    Push { open_pull: bool },
    /// Nothing new: the task is done, nothing needed changing.
    NoChanges,
    /// Nothing new for a CI failure: a person has to look.
    NeedsHuman,
    /// A follow-up that changed nothing: the pull request still waits for its CI.
    BackToCi,
}

pub fn next_step(f: Facts) -> Next {
    let new_work = f.ahead && (f.continued_branch || !f.head_is_last_pushed);
    if new_work {
        return Next::Push {
            open_pull: !f.has_pull,
        };
    }
    match f.round {
        Some(kind) if kind.answers_ci() => Next::NeedsHuman,
        Some(RoundKind::FollowUp) if f.has_pull && f.pushed_before => Next::BackToCi,
        _ => Next::NoChanges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST_TURN: Facts = Facts {
        round: None,
        has_pull: false,
        pushed_before: false,
        ahead: true,
        head_is_last_pushed: false,
        continued_branch: false,
    };

    #[test]
    fn what_follows_the_agents_turn() {
        let table = [
            // A first turn with a change opens a pull request.
            (FIRST_TURN, Next::Push { open_pull: true }),
            // On a pull request (asked there, or opened before a restart): no new one.
            (
                Facts {
                    has_pull: true,
                    ..FIRST_TURN
                },
                Next::Push { open_pull: false },
            ),
            // A first turn without a change.
            (
                Facts {
                    ahead: false,
                    ..FIRST_TURN
                },
                Next::NoChanges,
            ),
            // A CI round whose container still holds the last push, and nothing new.
            (
                Facts {
                    round: Some(RoundKind::Ci),
                    has_pull: true,
                    pushed_before: true,
                    head_is_last_pushed: true,
                    ..FIRST_TURN
                },
                Next::NeedsHuman,
            ),
            (
                Facts {
                    round: Some(RoundKind::Retry),
                    has_pull: true,
                    pushed_before: true,
                    head_is_last_pushed: true,
                    ..FIRST_TURN
                },
                Next::NeedsHuman,
            ),
            // A CI round with a fix.
            (
                Facts {
                    round: Some(RoundKind::Ci),
                    has_pull: true,
                    pushed_before: true,
                    ..FIRST_TURN
                },
                Next::Push { open_pull: false },
            ),
            // A follow-up that changed nothing goes back to waiting for CI.
            (
                Facts {
                    round: Some(RoundKind::FollowUp),
                    has_pull: true,
                    pushed_before: true,
                    head_is_last_pushed: true,
                    ..FIRST_TURN
                },
                Next::BackToCi,
            ),
            // A follow-up on a pull request the task never pushed to (asked on someone's pull
            // request) that changed nothing.
            (
                Facts {
                    round: Some(RoundKind::FollowUp),
                    has_pull: true,
                    ahead: false,
                    ..FIRST_TURN
                },
                Next::NoChanges,
            ),
            // A retry on a branch pushed without its pull request: the pushed commit still
            // needs one, even when the retry adds nothing.
            (
                Facts {
                    pushed_before: true,
                    head_is_last_pushed: true,
                    continued_branch: true,
                    ..FIRST_TURN
                },
                Next::Push { open_pull: true },
            ),
        ];
        for (facts, next) in table {
            assert_eq!(next_step(facts), next, "{facts:?}");
        }
    }

    #[test]
    fn how_a_run_ends() {
        let summary = "Added --json.".to_string();
        assert_eq!(
            End::AwaitingCi {
                summary: summary.clone()
            }
            .outcome(),
            Some((TaskState::AwaitingCi, summary.clone()))
        );
        let (state, note) = End::NoChanges {
            explanation: "It exists.".into(),
        }
        .outcome()
        .unwrap();
        assert_eq!(state, TaskState::Succeeded);
        assert_eq!(note, "No changes were needed. It exists.");
        let (state, note) = End::Failed(Failure::internal(
            "cloning the repository failed",
            "fatal: 10.0.0.1 refused",
        ))
        .outcome()
        .unwrap();
        assert_eq!(state, TaskState::Failed);
        assert!(note.starts_with("cloning the repository failed"), "{note}");
        assert!(!note.contains("10.0.0.1"));
        assert_eq!(
            End::Stopped(None).outcome().unwrap().0,
            TaskState::Cancelled
        );
        assert_eq!(End::HandedBack.outcome(), None);
    }

    #[test]
    fn how_a_round_comes_out() {
        let awaiting = End::AwaitingCi {
            summary: String::new(),
        };
        assert_eq!(awaiting.round_outcome(true), Some(RoundOutcome::Pushed));
        assert_eq!(awaiting.round_outcome(false), Some(RoundOutcome::NoChanges));
        assert_eq!(
            End::NeedsHuman(String::new()).round_outcome(false),
            Some(RoundOutcome::NoChanges)
        );
        assert_eq!(End::Stopped(None).round_outcome(true), None);
        assert_eq!(End::Failed(Failure::user("x")).round_outcome(false), None);
    }
}
