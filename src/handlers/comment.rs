//! `issue_comment` webhooks: where `/amp` commands come from.
//!
//! Order: bots are ignored silently; the commenter's role on the repository is checked (one reply
//! when it is not enough); then each command is acted on. A prompt becomes a task, gets a 👀 on
//! the comment and one status comment; control commands get a short reply.

use std::sync::Arc;

use anyhow::Context;
use tracing::{error, info, warn};

use crate::app::Ctx;
use crate::command::Command;
use crate::entities::task;
use crate::github::texts::{self, TaskView};
use crate::github::{GitHub, GitHubError, RepoRef, Role};
use crate::state::TaskState;
use crate::store::deliveries::Outcome;
use crate::store::rounds::{self, Change, NewRound, round_kind};
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
    if event.repository.archived {
        // GitHub refuses every write to an archived repository, a reply included.
        warn!(repo = %event.repository.full_name, "command on an archived repository ignored");
        return Ok(Outcome::Ignored("repository archived".into()));
    }
    let repo = RepoRef::of_event(installation.id, &event.repository);
    let github = ctx.github();
    let turn = Turn {
        ctx,
        delivery_id,
        event,
        repo: &repo,
        github: github.as_ref(),
    };

    if let Some(github) = turn.github {
        let role = github
            .collaborator_role(&repo, &event.sender.login)
            .await
            .context("checking the commenter's permission")?;
        let minimum = Role::parse(&ctx.config.required_permission);
        if role < minimum {
            info!(login = %event.sender.login, role = role.as_str(), "command refused: not enough access");
            turn.reply(&texts::not_permitted(
                &event.sender.login,
                role.as_str(),
                minimum.as_str(),
            ))
            .await?;
            return Ok(Outcome::Done);
        }
    }

    for command in commands {
        match command {
            Command::Prompt(prompt) => turn.prompt(prompt).await?,
            Command::Help => turn.reply(&texts::help()).await?,
            Command::Status => {
                let latest = turn.latest_task().await?;
                let text = match &latest {
                    Some(task) => texts::status_reply(&turn.view(task)),
                    None => texts::no_task(),
                };
                turn.reply(&text).await?;
            }
            Command::Stop => turn.stop().await?,
            Command::Retry => turn.retry().await?,
        }
    }
    Ok(Outcome::Done)
}

/// Post the one generic "something went wrong" reply for a delivery that could not be processed.
pub async fn report_failure(
    ctx: &Ctx,
    delivery_id: &str,
    event: &IssueCommentEvent,
) -> anyhow::Result<()> {
    let (Some(github), Some(installation)) = (ctx.github(), &event.installation) else {
        return Ok(());
    };
    if event.commands().is_empty() || event.sender.is_bot() {
        return Ok(());
    }
    let repo = RepoRef::of_event(installation.id, &event.repository);
    let task = tasks::get_by_delivery(&ctx.db, delivery_id)
        .await
        .ok()
        .flatten();
    let turn = Turn {
        ctx,
        delivery_id,
        event,
        repo: &repo,
        github: Some(&github),
    };
    let view = task.as_ref().map(|t| turn.view(t));
    turn.reply(&texts::internal_error(view.as_ref())).await
}

/// One delivery's worth of context for acting on its commands.
struct Turn<'a> {
    ctx: &'a Ctx,
    delivery_id: &'a str,
    event: &'a IssueCommentEvent,
    repo: &'a RepoRef,
    github: Option<&'a Arc<GitHub>>,
}

impl Turn<'_> {
    fn view<'t>(&'t self, task: &'t task::Model) -> TaskView<'t> {
        TaskView::of(task, &self.ctx.config.public_url)
    }

    /// Post a reply on the issue. A refusal GitHub will never accept (4xx) is logged, not
    /// retried; a GitHub that cannot answer now fails the delivery so it is tried again.
    async fn reply(&self, body: &str) -> anyhow::Result<()> {
        let Some(github) = self.github else {
            info!("GitHub is not configured; reply not posted");
            return Ok(());
        };
        match github
            .create_comment(self.repo, self.event.issue.number, body)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_permanent(&e) => {
                error!(delivery_id = self.delivery_id, error = %e, "posting a reply failed");
                Ok(())
            }
            Err(e) => Err(e).context("posting a reply"),
        }
    }

    /// `/amp stop`: a queued task is cancelled here; a running one is told to stop (its worker
    /// removes the container and updates the status comment).
    async fn stop(&self) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let active =
            match tasks::active_for_issue(&ctx.db, self.repo.repo_id, self.event.issue.number)
                .await
                .context("looking for the running task")?
            {
                Some(task) => Some(task),
                // On the pull request a task opened.
                None => self
                    .task_of_pull()
                    .await?
                    .filter(|t| t.state.parse().is_ok_and(|s: TaskState| !s.is_terminal())),
            };
        let Some(task) = active else {
            return self.reply(&texts::control_accepted("stop", None)).await;
        };
        info!(task_id = task.id, "stop requested");
        if task.state == TaskState::Queued.as_str() {
            match tasks::transition(
                &ctx.db,
                task.id,
                TaskState::Queued,
                TaskState::Cancelled,
                Some("stopped with /amp stop before it started"),
            )
            .await
            {
                Ok(_) => {
                    if let (Some(github), Some(comment_id)) = (self.github, task.status_comment_id)
                    {
                        let mut view = self.view(&task);
                        view.state = TaskState::Cancelled;
                        view.note = Some("Stopped with /amp stop before it started.");
                        let _ = github
                            .update_comment(self.repo, comment_id, &texts::status_comment(&view))
                            .await;
                    }
                    return Ok(());
                }
                // Claimed meanwhile: stop it where it runs.
                Err(tasks::TaskError::Conflict { .. }) => {}
                Err(e) => return Err(e).context("cancelling the queued task"),
            }
        }
        // A task waiting for CI has nothing running: it ends here (even while the worker that
        // pushed it is still winding up).
        if task.state == TaskState::AwaitingCi.as_str()
            && crate::worker::end_waiting_task(
                ctx,
                &task,
                TaskState::Cancelled,
                "Stopped with /amp stop.",
            )
            .await?
        {
            return Ok(());
        }
        if !ctx.running.stop(task.id) {
            // It runs here after all (a CI round just started), or on another replica: the
            // worker sees the request at its next check.
            if ctx.running.stop(task.id) {
                return self
                    .reply(&texts::control_accepted("stop", Some(&self.view(&task))))
                    .await;
            }
            // Another replica runs it: it sees the request at its next check.
            tasks::request_stop(&ctx.db, task.id)
                .await
                .context("asking for the task to stop")?;
            info!(
                task_id = task.id,
                "the task runs on another replica; stop requested through the database"
            );
        }
        self.reply(&texts::control_accepted("stop", Some(&self.view(&task))))
            .await
    }

    /// The task working on the pull request this comment is on, if it is one.
    async fn task_of_pull(&self) -> anyhow::Result<Option<task::Model>> {
        if !self.event.issue.is_pull_request() {
            return Ok(None);
        }
        tasks::by_pull(&self.ctx.db, self.repo.repo_id, self.event.issue.number)
            .await
            .context("looking for the pull request's task")
    }

    /// The issue's newest task, or the task of the pull request the comment is on.
    async fn latest_task(&self) -> anyhow::Result<Option<task::Model>> {
        match tasks::latest_for_issue(&self.ctx.db, self.repo.repo_id, self.event.issue.number)
            .await
            .context("reading the latest task")?
        {
            Some(task) => Ok(Some(task)),
            None => self.task_of_pull().await,
        }
    }

    /// Whether this delivery already queued `task` again (it is being handled a second time,
    /// after its first handling was cut short): then it has nothing more to do.
    fn handled_before(&self, task: &task::Model) -> bool {
        let again = task.command_delivery_id.as_deref() == Some(self.delivery_id);
        if again {
            info!(
                task_id = task.id,
                "this delivery's command was carried out already"
            );
        }
        again
    }

    /// A prompt on a task's pull request: a new round on the same branch, in the same container
    /// and Amp thread while the task waits for CI, or in a new container (same thread) after it
    /// ended.
    async fn follow_up(&self, task: task::Model, prompt: String) -> anyhow::Result<()> {
        let ctx = self.ctx;
        if self.handled_before(&task) {
            return Ok(());
        }
        let login = &self.event.sender.login;
        let state: TaskState = task.state.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        let to = match state {
            TaskState::AwaitingCi => TaskState::Fixing,
            s if s.is_terminal() => TaskState::Queued,
            _ => {
                return self
                    .reply(&texts::already_running(login, &self.view(&task)))
                    .await;
            }
        };
        let reason = format!("follow-up from @{login}");
        let started = rounds::start(
            &ctx.db,
            task.id,
            Change {
                from: state,
                to,
                reason: &reason,
                head_sha: None,
                delivery_id: Some(self.delivery_id),
                // A finished task reopened by a follow-up gets a fresh set of CI rounds.
                ci_round: (to == TaskState::Queued).then_some(0),
            },
            NewRound {
                kind: round_kind::FOLLOW_UP,
                prompt: texts::follow_up_prompt(login, self.event.issue.number, &prompt),
                requested_by: Some(login.clone()),
                failed_checks: serde_json::json!([]),
                ..Default::default()
            },
        )
        .await
        .context("starting a follow-up round")?;
        if started.is_none() {
            // The task moved on meanwhile.
            return self
                .reply(&texts::already_running(login, &self.view(&task)))
                .await;
        }
        info!(task_id = task.id, "follow-up round queued");
        ctx.task_wakeup.notify_one();
        if let Some(github) = self.github
            && let Err(e) = github
                .react_to_comment(self.repo, self.event.comment.id, "eyes")
                .await
        {
            warn!(error = %e, "could not react to the comment");
        }
        crate::worker::edit_status_comment(
            ctx,
            task.id,
            to,
            Some(&format!(
                "Follow-up from @{login} on #{}.",
                self.event.issue.number
            )),
        )
        .await;
        self.reply(&texts::follow_up_accepted(login, &self.view(&task)))
            .await
    }

    /// `/amp retry`: the issue's last task, if it ended without success, is queued again. It
    /// keeps its branch, pull request and Amp thread, so the agent picks up where it left off.
    async fn retry(&self) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let latest = self.latest_task().await?;
        let Some(task) = latest else {
            return self.reply(&texts::control_accepted("retry", None)).await;
        };
        if self.handled_before(&task) {
            return Ok(());
        }
        let state: TaskState = task.state.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        if !state.is_terminal() {
            return self
                .reply(&texts::already_running(
                    &self.event.sender.login,
                    &self.view(&task),
                ))
                .await;
        }
        if state == TaskState::Succeeded {
            return self
                .reply(&texts::nothing_to_retry(
                    &self.event.sender.login,
                    &self.view(&task),
                ))
                .await;
        }
        let reason = format!("retried by @{}", self.event.sender.login);
        let last_report = rounds::list(&ctx.db, task.id)
            .await
            .context("reading the task's rounds")?
            .into_iter()
            .rev()
            .find(|r| r.kind != round_kind::FOLLOW_UP);
        match (state, last_report) {
            // After the CI loop gave up: Amp gets the failure again, with a fresh set of rounds.
            (TaskState::NeedsHuman, Some(last)) => {
                let started = rounds::start(
                    &ctx.db,
                    task.id,
                    Change {
                        from: state,
                        to: TaskState::Queued,
                        reason: &reason,
                        head_sha: None,
                        ci_round: Some(0),
                        delivery_id: Some(self.delivery_id),
                    },
                    NewRound {
                        kind: round_kind::RETRY,
                        head_sha: last.head_sha.clone(),
                        failed_checks: serde_json::from_str(&last.failed_checks)
                            .unwrap_or_default(),
                        prompt: last.prompt.clone(),
                        requested_by: Some(self.event.sender.login.clone()),
                        ..Default::default()
                    },
                )
                .await
                .context("queueing the task again")?;
                if started.is_none() {
                    return Ok(());
                }
            }
            _ => match tasks::transition_by_command(
                &ctx.db,
                task.id,
                state,
                TaskState::Queued,
                Some(&reason),
                self.delivery_id,
            )
            .await
            {
                Ok(_) => {}
                // Retried twice at once: the other one won.
                Err(tasks::TaskError::Conflict { .. }) => return Ok(()),
                Err(e) => return Err(e).context("queueing the task again"),
            },
        }
        info!(task_id = task.id, "task queued again with /amp retry");
        ctx.task_wakeup.notify_one();
        if let (Some(github), Some(comment_id)) = (self.github, task.status_comment_id) {
            let mut view = self.view(&task);
            view.state = TaskState::Queued;
            view.note = Some("Queued again with /amp retry.");
            if let Err(e) = github
                .update_comment(self.repo, comment_id, &texts::status_comment(&view))
                .await
            {
                warn!(error = %e, "editing the status comment failed");
            }
        }
        self.reply(&texts::control_accepted("retry", Some(&self.view(&task))))
            .await
    }

    async fn prompt(&self, prompt: String) -> anyhow::Result<()> {
        let ctx = self.ctx;
        let event = self.event;
        // On a pull request a task works on: a follow-up round of that task.
        if event.issue.is_pull_request()
            && let Some(task) = tasks::by_pull(&ctx.db, self.repo.repo_id, event.issue.number)
                .await
                .context("looking for the pull request's task")?
        {
            return self.follow_up(task, prompt).await;
        }
        // The task this delivery created before (a delivery processed again after a crash).
        let existing = tasks::get_by_delivery(&ctx.db, self.delivery_id)
            .await
            .context("looking up the delivery's task")?;
        let task = match existing {
            Some(task) => task,
            None => {
                if let Some(active) =
                    tasks::active_for_issue(&ctx.db, self.repo.repo_id, event.issue.number)
                        .await
                        .context("looking for a running task")?
                {
                    info!(
                        task_id = active.id,
                        "a task is already active on this issue"
                    );
                    return self
                        .reply(&texts::already_running(
                            &event.sender.login,
                            &self.view(&active),
                        ))
                        .await;
                }
                let created = tasks::create(
                    &ctx.db,
                    NewTask {
                        installation_id: self.repo.installation_id,
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
                        delivery_id: Some(self.delivery_id.to_string()),
                        prompt,
                    },
                )
                .await
                .context("creating the task")?;
                match created {
                    Some(task) => {
                        info!(task_id = task.id, public_id = %task.public_id, repo = %task.repo_full_name, issue = task.issue_number, "task queued");
                        ctx.task_wakeup.notify_one();
                        task
                    }
                    None => tasks::get_by_delivery(&ctx.db, self.delivery_id)
                        .await
                        .context("reading the delivery's task")?
                        .context("the delivery's task disappeared")?,
                }
            }
        };
        let Some(github) = self.github else {
            return Ok(());
        };
        if let Err(e) = github
            .react_to_comment(self.repo, event.comment.id, "eyes")
            .await
        {
            if !is_permanent(&e) {
                return Err(e).context("reacting to the comment");
            }
            warn!(error = %e, "could not react to the comment");
        }
        if task.status_comment_id.is_none() {
            match post_status_comment(ctx, github, self.repo, event.issue.number, &task).await {
                Ok(()) => {}
                Err(e) if is_permanent(&e) => {
                    error!(delivery_id = self.delivery_id, task_id = task.id, error = %e, "posting the status comment failed");
                    self.reply(&texts::internal_error(Some(&self.view(&task))))
                        .await?;
                }
                Err(e) => return Err(e).context("posting the status comment"),
            }
        }
        Ok(())
    }
}

/// A refusal that repeating will not change (a 4xx other than the rate limits, which the client
/// waits out itself).
fn is_permanent(e: &GitHubError) -> bool {
    matches!(e.status(), Some(400..=499))
}

/// Post a new task's one status comment on its issue and remember it. A worker may have moved
/// the task on (even finished it) before it could know the comment: then the comment is brought
/// up to date at once.
pub async fn post_status_comment(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    issue_number: i64,
    task: &task::Model,
) -> Result<(), GitHubError> {
    let view = TaskView::of(task, &ctx.config.public_url);
    let comment = github
        .create_comment(repo, issue_number, &texts::status_comment(&view))
        .await?;
    if let Err(e) = tasks::set_status_comment(&ctx.db, task.id, comment.id.0 as i64).await {
        return Err(GitHubError::Other(format!(
            "remembering the status comment failed: {e}"
        )));
    }
    // Until what the comment shows is what the store says, state and reason (each edit may race
    // a worker's, and the task may have ended before the comment existed).
    let mut shown = (task.state.clone(), None::<String>);
    for _ in 0..5 {
        let Ok(Some(fresh)) = tasks::get(&ctx.db, task.id).await else {
            break;
        };
        let state: TaskState = fresh.state.parse().unwrap_or(TaskState::Failed);
        let note = fresh.error_message.filter(|_| state.is_terminal());
        let want = (fresh.state, note);
        if want == shown {
            break;
        }
        crate::worker::edit_status_comment(ctx, task.id, state, want.1.as_deref()).await;
        shown = want;
    }
    Ok(())
}
