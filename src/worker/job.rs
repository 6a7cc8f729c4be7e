//! What every stage of a run shares: the task as the run knows it, how the run moves it on, the
//! container it gets, and how a GitHub refusal is put to the person who asked.

use crate::context::Ctx;
use crate::docker::ContainerSpec;
use crate::domain::{CommitSha, Failure, TaskState};
use crate::entities::task;
use crate::github::GitHubError;
use crate::lifecycle::{Journal, Move};
use crate::texts::failures;

use super::outcome::End;
use super::workspace::AGENT_USER;

/// The agent container's limits.
pub const AGENT_MEMORY: i64 = 4 * 1024 * 1024 * 1024;
pub const AGENT_NANO_CPUS: i64 = 2_000_000_000;
pub const AGENT_PIDS: i64 = 1024;
/// The name the App commits under.
pub const BOT_NAME: &str = "amp-orchestrator[bot]";

/// A GitHub error as the person who asked sees it: GitHub's own words when it refused for a
/// reason (a 4xx), one line and the logs otherwise.
pub fn github_failure(summary: &str, e: &GitHubError) -> Failure {
    match e.github_message() {
        Some(message) if e.is_permanent() => failures::github_refused(summary, message),
        _ => Failure::internal(summary, e),
    }
}

/// A task as this run knows it.
pub struct Job<'a> {
    pub ctx: &'a Ctx,
    pub task: task::Model,
    /// The state this run last moved the task to.
    pub state: TaskState,
    pub journal: Journal,
    /// The commit this run pushed.
    pub pushed: Option<CommitSha>,
    /// The workspace went on from a branch an earlier run pushed without its pull request.
    pub continued_branch: bool,
}

impl Job<'_> {
    /// Move the task on; a task someone else moved meanwhile ends the run.
    pub async fn move_to(&mut self, to: TaskState) -> Result<(), End> {
        let moved = self
            .ctx
            .lifecycle
            .transition_from(&self.task, self.state, Move::to(to))
            .await;
        match moved {
            Ok(Some(_)) => {
                self.state = to;
                Ok(())
            }
            Ok(None) => Err(Failure::internal(
                "the task changed state unexpectedly",
                format!("it was no longer {} when it was to become {to}", self.state),
            )
            .into()),
            Err(e) => Err(Failure::internal("recording the task's state failed", e).into()),
        }
    }
}

/// The agent container a task gets, of `image` (the service's, or its repository's).
pub fn container_spec(ctx: &Ctx, task: &task::Model, image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.to_string(),
        helper_image: ctx.config.agent_image.clone(),
        cli_volume: None,
        task: task.public_id.clone(),
        instance_id: ctx.instance_id.clone(),
        store: ctx.store_label.clone(),
        network: ctx.config.agent_network.as_docker_mode().to_string(),
        git_network: ctx.config.egress.git_network.clone(),
        memory_bytes: AGENT_MEMORY,
        nano_cpus: AGENT_NANO_CPUS,
        pids_limit: AGENT_PIDS,
        user: AGENT_USER.into(),
    }
}
