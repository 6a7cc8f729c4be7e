//! `pull_request` webhooks: a task's pull request closed or merged ends the task.
//!
//! The event alone is not trusted to end work (a signed `closed` delivery can be replayed after
//! the pull request was reopened): GitHub's own answer for the pull request decides whether it is
//! closed, and whether it was merged. A pull request reopened starts nothing: work resumes when
//! someone asks for it.

use anyhow::Context;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::lifecycle::Stopped;
use crate::store::deliveries::Outcome;
use crate::store::tasks;
use crate::webhook::events::{PullRequestAction, PullRequestEvent};

pub async fn handle(ctx: &Ctx, event: &PullRequestEvent) -> anyhow::Result<Outcome> {
    if !event.action.is(PullRequestAction::Closed) {
        return Ok(Outcome::Ignored(format!(
            "pull_request {} is not acted on",
            event.action
        )));
    }
    let Some(installation) = &event.installation else {
        return Ok(Outcome::Ignored("delivery without an installation".into()));
    };
    let repo = event.repository.repo_ref(installation.id);
    let Some(task) = tasks::by_pull(&ctx.db, repo.repo_id, event.number)
        .await
        .context("looking for the pull request's task")?
    else {
        return Ok(Outcome::Ignored("not a task's pull request".into()));
    };
    if task.state.is_terminal() {
        return Ok(Outcome::Ignored(format!(
            "the pull request's task had ended ({})",
            task.state
        )));
    }
    let Some(github) = ctx.github() else {
        warn!(task_id = %task.id, "a closed pull request not acted on: without a GitHub App it cannot be confirmed");
        return Ok(Outcome::Ignored(
            "a closed pull request cannot be confirmed without a GitHub App".into(),
        ));
    };
    let pull = match github.get_pull(&repo, event.number).await {
        Ok(pull) => pull,
        Err(e) if e.is_permanent() => {
            warn!(task_id = %task.id, error = %e, "a closed pull request that GitHub will not show: not acted on");
            return Ok(Outcome::Ignored(format!("reading the pull request: {e}")));
        }
        Err(e) => return Err(e).context("reading the pull request from GitHub"),
    };
    if pull.is_open() {
        info!(task_id = %task.id, pr = event.number, "a closed event for a pull request that is open: ignored");
        return Ok(Outcome::Ignored("the pull request is open".into()));
    }
    let merged = pull.merged == Some(true);
    // Who merged it says GitHub; the event's sender may be the merge queue's bot.
    let by = match pull.merged_by.and_then(|a| a.login) {
        Some(login) if merged => login,
        _ => event.sender.login.clone(),
    };
    let stopped = ctx
        .lifecycle
        .pull_closed(&task, merged, &by)
        .await
        .context("ending the pull request's task")?;
    info!(task_id = %task.id, pr = event.number, merged, ?stopped, "the task's pull request was closed");
    Ok(match stopped {
        Stopped::Ended | Stopped::Asked => Outcome::Done,
        Stopped::Over => Outcome::Ignored("the pull request's task had ended".into()),
    })
}
