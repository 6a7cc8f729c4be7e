//! Publishing the agent's work: the commit, the push, the pull request.

use super::job::Job;
use super::job::{BOT_NAME, github_failure};
use super::outcome::End;
use super::target::Target;
use super::workspace::{Head, Workspace};
use crate::domain::{Failure, LogLine, TaskState};
use crate::github::GitHub;
use crate::store::tasks::{self, Progress};
use crate::texts::{notes, prompts};

/// Commit whatever the agent left uncommitted, as the App, with the requester as co-author.
pub async fn commit(run: &mut Job<'_>, ws: &Workspace, summary: &str) -> Result<(), End> {
    let dirty = ws
        .is_dirty()
        .await
        .map_err(|e| Failure::internal("reading the workspace failed", e))?;
    if !dirty {
        return Ok(());
    }
    run.move_to(TaskState::Pushing).await?;
    let app_id = run.ctx.app_id().unwrap_or(0);
    ws.commit_all(
        &prompts::commit_message(&run.task, summary),
        BOT_NAME,
        &prompts::bot_email(app_id, BOT_NAME),
    )
    .await
    .map_err(|e| Failure::internal("committing the changes failed", e))?;
    Ok(())
}

/// Push `head` to the task's branch and, when the task has none yet, open its draft pull
/// request; the run then waits for CI.
pub async fn publish(
    run: &mut Job<'_>,
    ws: &Workspace,
    github: &GitHub,
    target: &Target,
    head: &Head,
    summary: String,
) -> Result<End, End> {
    if run.state != TaskState::Pushing {
        run.move_to(TaskState::Pushing).await?;
    }
    let repo = run.task.repo();
    refuse_unpushable_workflows(run, ws, github, target).await?;
    let token = github
        .repo_token(&repo)
        .await
        .map_err(|e| github_failure("getting a token for the push failed", &e))?;
    if let Err(e) = ws
        .push(&token, &run.task.clone_url, &head.sha, &target.branch)
        .await
    {
        // Workflow files a check above could not see (GitHub has the last word).
        let workflows = refused_workflows(&e.to_string());
        if !workflows.is_empty() {
            return Err(keep_unpushed(run, ws, target, &workflows).await);
        }
        return Err(Failure::internal("pushing the branch failed", e).into());
    }
    run.journal
        .info(&format!("Pushed {} at {}", target.branch, head.sha))
        .await;
    run.pushed = Some(head.sha.clone());
    let progress = Progress {
        head_sha: Some(head.sha.clone()),
        ..Default::default()
    };
    tasks::record_progress(&run.ctx.db, run.task.id, progress)
        .await
        .map_err(|e| Failure::internal("recording the pushed commit failed", e))?;
    if target.pull.is_some() {
        // The pull request exists (the task is on one, or opened it before a restart): the new
        // commit is on its branch, nothing else to open.
        return Ok(End::AwaitingCi { summary });
    }
    let number = open_pull(run, github, target, &summary).await?;
    let progress = Progress {
        pr_number: Some(number),
        ..Default::default()
    };
    tasks::record_progress(&run.ctx.db, run.task.id, progress)
        .await
        .map_err(|e| Failure::internal("recording the pull request failed", e))?;
    Ok(End::AwaitingCi { summary })
}

/// The most of a change kept on the task page when it cannot be pushed.
const MAX_KEPT_PATCH: usize = 256 * 1024;

/// GitHub refuses a push from an App without the `workflows` permission that adds, changes or
/// removes a workflow file. Such a change is not pushed: the task asks for a person, and the
/// change stays on the task page as a patch.
async fn refuse_unpushable_workflows(
    run: &mut Job<'_>,
    ws: &Workspace,
    github: &GitHub,
    target: &Target,
) -> Result<(), End> {
    let pushed = run.task.head_sha.clone();
    let workflows = ws
        .workflow_changes(
            pushed.as_ref(),
            &target.clone_branch,
            &run.task.default_branch,
        )
        .await
        .map_err(|e| Failure::internal("listing the changed files failed", e))?;
    if workflows.is_empty() {
        return Ok(());
    }
    let allowed = github
        .may_write(&run.task.repo(), "workflows")
        .await
        .map_err(|e| github_failure("getting a token for the push failed", &e))?;
    if allowed {
        return Ok(());
    }
    Err(keep_unpushed(run, ws, target, &workflows).await)
}

/// GitHub's refusal of a push that touches workflow files: the files it names, if that is what
/// `message` is.
fn refused_workflows(message: &str) -> Vec<String> {
    message
        .lines()
        .filter(|l| l.contains("without `workflows` permission"))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_string)
        .collect()
}

/// Keep the change that could not be pushed on the task page, and end the run for a person.
async fn keep_unpushed(
    run: &mut Job<'_>,
    ws: &Workspace,
    target: &Target,
    files: &[String],
) -> End {
    let pushed = run.task.head_sha.clone();
    let patch = ws
        .patch(
            pushed.as_ref(),
            &target.clone_branch,
            &run.task.default_branch,
            MAX_KEPT_PATCH,
        )
        .await;
    let kept = match patch {
        Ok(Some(patch)) => {
            // On the task page only (the event store masks secrets); the service's log gets its
            // size, not the agent's text.
            tracing::info!(task_id = %run.task.id, bytes = patch.len(), "kept the unpushed change on the task page");
            run.journal
                .line(LogLine::info(notes::unpushed_patch(&patch)))
                .await;
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(task_id = %run.task.id, error = %e, "reading the unpushed change failed");
            false
        }
    };
    End::NeedsHuman(notes::workflows_not_pushed(files, kept))
}

/// Open the task's draft pull request; its number.
async fn open_pull(
    run: &Job<'_>,
    github: &GitHub,
    target: &Target,
    summary: &str,
) -> Result<i64, End> {
    let repo = run.task.repo();
    let body = prompts::pull_request_body(&run.task, summary, &run.ctx.config.public_url);
    let title = &run.task.issue_title;
    let base = &run.task.default_branch;
    let mut opened = github
        .open_pull(&repo, &target.branch, base, title, &body, true)
        .await;
    if let Err(e) = &opened
        && e.status() == Some(422)
        && e.to_string()
            .contains("Draft pull requests are not supported")
    {
        // Private repositories on plans without draft pull requests: a regular one, marked.
        run.journal
            .info("This repository does not support draft pull requests: opening a regular one marked as work in progress")
            .await;
        let (title, body) = prompts::work_in_progress(title, &body);
        opened = github
            .open_pull(&repo, &target.branch, base, &title, &body, false)
            .await;
    }
    let pr = match opened {
        Ok(pr) => pr,
        // Opened before, without the answer reaching us (a lost response retried, or a run
        // stopped between opening it and recording it): that one is the task's.
        Err(e) if e.status() == Some(422) && e.to_string().contains("already exists") => {
            match github.find_open_pull(&repo, &target.branch).await {
                Ok(Some(pr)) => {
                    run.journal
                        .info(&format!(
                            "A pull request from {} was open already: #{}",
                            target.branch, pr.number
                        ))
                        .await;
                    pr
                }
                Ok(None) => {
                    return Err(github_failure("opening the pull request failed", &e).into());
                }
                Err(find) => {
                    return Err(Failure::internal(
                        "opening the pull request failed",
                        format!("{e}; looking for it failed: {find}"),
                    )
                    .into());
                }
            }
        }
        Err(e) => return Err(github_failure("opening the pull request failed", &e).into()),
    };
    let kind = if pr.draft == Some(true) {
        "draft pull request"
    } else {
        "pull request"
    };
    run.journal
        .info(&format!("Opened {kind} {}", pr.html_url))
        .await;
    Ok(pr.number)
}

#[cfg(test)]
mod tests {
    use super::refused_workflows;

    #[test]
    fn github_s_refusal_names_the_workflow_files() {
        let said = "remote: error: GH013\n ! [remote rejected] amp/1-x -> amp/1-x (refusing to allow a GitHub App to create or update workflow `.github/workflows/ci.yml` without `workflows` permission)\nerror: failed to push some refs";
        assert_eq!(refused_workflows(said), [".github/workflows/ci.yml"]);
        assert!(refused_workflows("fatal: unable to access").is_empty());
    }
}
