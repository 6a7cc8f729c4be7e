//! `issue_comment` webhooks: where `/amp` commands come from.

use anyhow::Context;
use tracing::info;

use crate::app::Ctx;
use crate::command::Command;
use crate::store::deliveries::Outcome;
use crate::store::tasks::{self, NewTask};
use crate::webhook::events::IssueCommentEvent;

pub async fn handle(
    ctx: &Ctx,
    delivery_id: &str,
    event: &IssueCommentEvent,
) -> anyhow::Result<Outcome> {
    let commands = event.commands();
    if commands.is_empty() {
        return Ok(Outcome::Ignored("no /amp command".into()));
    }
    if event.sender.is_bot()
        || event.comment.user.is_bot()
        || event.comment.performed_via_github_app.is_some()
    {
        return Ok(Outcome::Ignored("comment by a bot".into()));
    }
    let Some(installation) = &event.installation else {
        return Ok(Outcome::Ignored("delivery without an installation".into()));
    };
    for command in commands {
        match command {
            Command::Prompt(prompt) => {
                let created = tasks::create(
                    &ctx.db,
                    NewTask {
                        installation_id: installation.id,
                        repo_id: event.repository.id,
                        repo_full_name: event.repository.full_name.clone(),
                        clone_url: event.repository.clone_url.clone(),
                        default_branch: event.repository.default_branch.clone(),
                        issue_number: event.issue.number,
                        is_pull_request: event.issue.is_pull_request(),
                        issue_title: event.issue.title.clone(),
                        issue_body: event.issue.body.clone().unwrap_or_default(),
                        requester_login: event.sender.login.clone(),
                        requester_id: event.sender.id,
                        comment_id: event.comment.id,
                        delivery_id: Some(delivery_id.to_string()),
                        prompt,
                    },
                )
                .await
                .context("creating the task")?;
                match created {
                    Some(task) => {
                        info!(task_id = task.id, public_id = %task.public_id, repo = %task.repo_full_name, issue = task.issue_number, "task queued");
                        ctx.task_wakeup.notify_one();
                    }
                    None => info!("the task for this delivery already exists"),
                }
            }
            control => info!(command = control.name(), "control command received"),
        }
    }
    Ok(Outcome::Done)
}
