//! Follow-up requests: what people ask of a task after its first round. Each is queued on the
//! task (nothing said is refused because a round is running) and taken, all waiting ones in
//! the order they were made, by the next round: at once when the task is between rounds, or
//! when the running round ends.

use crate::domain::{RoundKind, TaskState};
use crate::entities::{task, task_request};
use crate::store::requests;
use crate::store::rounds::NewRound;
use crate::store::tasks::{self, TaskError};
use crate::texts::{notes, prompts};

use super::{Lifecycle, Move};

/// When a round may start for waiting requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asking {
    /// Someone has just asked: a task that ended in any way, stopped included, starts again.
    Now,
    /// A run has just ended: requests that waited for it go on, unless it was stopped.
    AfterRun,
}

/// At most this many requests go into one round, and at most this many bytes of what they
/// asked: the prompt stays well within what one argument of a command may hold (128 KiB on
/// Linux); the rest wait for the round after.
const REQUESTS_PER_ROUND: usize = 10;
const REQUEST_BYTES_PER_ROUND: usize = 64 * 1024;

/// The oldest of `waiting` that fit one round (always the first: one comment is at most
/// 65,536 characters on GitHub).
fn within_one_round(waiting: Vec<task_request::Model>) -> Vec<task_request::Model> {
    let mut bytes = 0;
    let mut taken = Vec::new();
    for request in waiting.into_iter().take(REQUESTS_PER_ROUND) {
        bytes += request.prompt.len();
        if !taken.is_empty() && bytes > REQUEST_BYTES_PER_ROUND {
            break;
        }
        taken.push(request);
    }
    taken
}

impl Lifecycle {
    /// Start a round for the requests waiting on `task` if it is between rounds: waiting for CI
    /// (the same container and Amp thread) or ended (queued again, a new container with the same
    /// thread). A task queued or mid-run takes them when its run ends. Whether a round started.
    /// `command` is the delivery of the comment that asked, when someone has just asked.
    pub async fn take_requests(
        &self,
        task: &task::Model,
        asking: Asking,
        command: Option<&str>,
    ) -> Result<bool, TaskError> {
        for _ in 0..3 {
            let waiting = within_one_round(requests::waiting(&self.db, task.id).await?);
            if waiting.is_empty() {
                return Ok(false);
            }
            let Some(task) = tasks::get(&self.db, task.id).await? else {
                return Err(TaskError::NotFound(task.id));
            };
            let to = match task.state {
                TaskState::AwaitingCi => TaskState::Fixing,
                TaskState::Cancelled if asking == Asking::AfterRun => return Ok(false),
                state if state.is_terminal() => TaskState::Queued,
                _ => return Ok(false),
            };
            let place = match task.pr_number {
                Some(number) => format!("pull request #{number}"),
                None => format!("issue #{}", task.issue_number),
            };
            let short_place = format!("#{}", task.pr_number.unwrap_or(task.issue_number));
            let asked: Vec<prompts::Asked<'_>> = waiting
                .iter()
                .map(|r| prompts::Asked {
                    login: &r.login,
                    prompt: &r.prompt,
                })
                .collect();
            let logins: Vec<&str> = waiting.iter().map(|r| r.login.as_str()).collect();
            let round = NewRound {
                requested_by: logins.first().map(|l| l.to_string()),
                requests: waiting.iter().map(|r| r.id).collect(),
                ..NewRound::new(
                    RoundKind::FollowUp,
                    prompts::follow_up_prompt(&place, &asked),
                )
            };
            let reason = notes::follow_up_reason(&logins);
            let note = notes::follow_up(&logins, &short_place);
            let mut mv = Move::to(to).reason(&reason).note(&note).with_round(round);
            if let Some(delivery) = command {
                mv = mv.by_command(delivery);
            }
            if to == TaskState::Queued {
                // A finished task reopened by a follow-up gets a fresh set of CI rounds.
                mv = mv.ci_round(0);
            }
            if self.transition(&task, mv).await?.is_some() {
                tracing::info!(task_id = %task.id, requests = waiting.len(), "follow-up round started");
                return Ok(true);
            }
            // The task moved, or another round took the requests: look again.
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: i64, bytes: usize) -> task_request::Model {
        task_request::Model {
            id,
            task_id: crate::domain::TaskId(1),
            login: "mona".into(),
            prompt: "x".repeat(bytes),
            comment_id: id,
            created_at: 0,
            round_id: None,
        }
    }

    fn ids(taken: Vec<task_request::Model>) -> Vec<i64> {
        taken.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn one_round_takes_the_oldest_requests_that_fit() {
        let many = (1..=12).map(|i| request(i, 10)).collect();
        assert_eq!(ids(within_one_round(many)), (1..=10).collect::<Vec<_>>());
        let large = vec![request(1, 40_000), request(2, 30_000), request(3, 10)];
        assert_eq!(
            ids(within_one_round(large)),
            [1],
            "the rest wait for the next round"
        );
        let huge = vec![request(1, 70_000), request(2, 10)];
        assert_eq!(ids(within_one_round(huge)), [1], "the first always goes");
        assert!(within_one_round(Vec::new()).is_empty());
    }
}
