//! `issue_comment` webhooks: where `/amp` commands come from.
//!
//! Order: bots are ignored silently; a comment acted on before (a copy under a new delivery id) is
//! ignored; the commenter's role on the repository is checked, and without a GitHub App to ask
//! nothing is done (one reply an hour per user and issue when the role is not enough); then each
//! command is acted on. A prompt becomes a task, gets a 👀 on
//! the comment and one status comment; control commands get a short reply. Errors split the way
//! people need them: what they can act on is a reply; anything else is an internal error, retried
//! with the delivery and, when it keeps failing, answered with one generic reply (details in the
//! logs, under the delivery id).

use std::sync::Arc;

use anyhow::Context;
use tracing::{error, info, warn};

use crate::command::Command;
use crate::context::Ctx;
use crate::domain::{RepoRef, RoundKind, TaskState};
use crate::entities::task;
use crate::github::GitHub;
use crate::lifecycle::requests::Asking;
use crate::lifecycle::status_comment::AnnounceError;
use crate::lifecycle::{Created, Move, Stopped, TaskRequest};
use crate::repo_config::{self, Found};
use crate::store::commands::{self as commands_seen, Seen};
use crate::store::deliveries::Outcome;
use crate::store::requests;
use crate::store::rounds::{self, NewRound};
use crate::store::tasks;
use crate::texts::repo_config::FileFound;
use crate::texts::{self, TaskView, comments, notes};
use crate::webhook::events::IssueCommentEvent;

/// A user without access who keeps commenting is told so at most this often per issue.
pub const REFUSAL_REPLY_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

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
    // One comment is one command, however often it arrives: a signed body replayed under a new
    // delivery id (anyone who saw one can) finds the first delivery's record.
    match commands_seen::first_seen(&ctx.db, &event.command_key(), delivery_id)
        .await
        .context("recording the command")?
    {
        Seen::First => {}
        Seen::Before { delivery_id: first } => {
            warn!(first_delivery = %first, "this comment was acted on already; a copy under a new delivery id is ignored");
            return Ok(Outcome::Ignored(format!(
                "comment acted on already (delivery {first})"
            )));
        }
    }
    let repo = event.repository.repo_ref(installation.id);
    // Who may command the agent is GitHub's answer; without an App to ask, nobody.
    let Some(github) = ctx.github() else {
        warn!(login = %event.sender.login, "command refused: without a GitHub App the commenter's access cannot be checked");
        return Ok(Outcome::Ignored(
            "the commenter's access cannot be checked without a GitHub App".into(),
        ));
    };
    let turn = Turn {
        ctx,
        delivery_id,
        event,
        repo: &repo,
        github: &github,
        config: &Found::Absent,
    };

    let role = github
        .collaborator_role(&repo, &event.sender.login)
        .await
        .context("checking the commenter's permission")?;
    let minimum = ctx.config.required_permission;
    if role < minimum {
        info!(login = %event.sender.login, role = %role, "command refused: not enough access");
        if turn.refusal_due().await? {
            turn.reply(&comments::not_permitted(
                &event.sender.login,
                role.as_str(),
                minimum.as_str(),
            ))
            .await?;
        }
        return Ok(Outcome::Done);
    }

    // The repository's own rules, from its default branch (never from a branch a task writes).
    let bounds = repo_config::Bounds::from_config(&ctx.config);
    let config = repo_config::read(&github, &repo, &event.repository.default_branch, &bounds)
        .await
        .context("reading the repository's .github/amp.toml")?;
    let effective = config.effective(&bounds);
    let asks_for_work = commands
        .iter()
        .any(|c| !matches!(c, Command::Help | Command::Config | Command::Status));
    if asks_for_work {
        let refusal = if role < effective.minimum.value {
            Some(comments::not_permitted(
                &event.sender.login,
                role.as_str(),
                effective.minimum.value.as_str(),
            ))
        } else {
            effective
                .users
                .value
                .as_ref()
                .filter(|users| {
                    !users
                        .iter()
                        .any(|u| u.eq_ignore_ascii_case(&event.sender.login))
                })
                .map(|_| texts::repo_config::not_listed(&event.sender.login))
        };
        if let Some(refusal) = refusal {
            info!(login = %event.sender.login, role = %role, "command refused by the repository's .github/amp.toml");
            if turn.refusal_due().await? {
                turn.reply(&refusal).await?;
            }
            return Ok(Outcome::Done);
        }
    }
    let turn = Turn {
        config: &config,
        ..turn
    };

    for command in commands {
        match command {
            Command::Prompt(prompt) => turn.prompt(prompt).await?,
            Command::Config => {
                let found = match &config {
                    Found::Absent => FileFound::Absent,
                    Found::Valid { .. } => FileFound::Valid,
                    Found::Invalid(problems) => FileFound::Invalid(problems),
                };
                turn.reply(&texts::repo_config::config_reply(found, &effective))
                    .await?
            }
            Command::Rebuild => {
                let engine = crate::docker::Engine::connect(ctx.config.docker_host.as_deref())
                    .await
                    .context("connecting to the Docker engine to remove snapshots")?;
                let removed =
                    crate::worker::snapshot::remove_for_repo(&ctx.db, &engine, repo.repo_id)
                        .await
                        .context("removing the repository's setup snapshots")?;
                info!(repo = %repo.full_name, removed, "setup snapshots removed on request");
                turn.reply(&texts::repo_config::rebuilt(removed)).await?
            }
            Command::Help => turn.reply(&comments::help()).await?,
            Command::Status => {
                let latest = turn.latest_task().await?;
                let text = match &latest {
                    Some(task) => comments::status_reply(&turn.view(task)),
                    None => comments::no_task(),
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
    let repo = event.repository.repo_ref(installation.id);
    let task = tasks::get_by_delivery(&ctx.db, delivery_id)
        .await
        .ok()
        .flatten();
    let turn = Turn {
        ctx,
        delivery_id,
        event,
        repo: &repo,
        github: &github,
        config: &Found::Absent,
    };
    let view = task.as_ref().map(|t| turn.view(t));
    turn.reply(&comments::internal_error(view.as_ref())).await
}

/// One delivery's worth of context for acting on its commands.
struct Turn<'a> {
    ctx: &'a Ctx,
    delivery_id: &'a str,
    event: &'a IssueCommentEvent,
    repo: &'a RepoRef,
    github: &'a Arc<GitHub>,
    /// The repository's `.github/amp.toml` (absent until it is read, after the access check).
    config: &'a Found,
}

impl Turn<'_> {
    /// Whether a refusal is to be said now: a storm of comments from one user gets one answer an
    /// hour per issue, not one each.
    async fn refusal_due(&self) -> anyhow::Result<bool> {
        commands_seen::refusal_due(
            &self.ctx.db,
            self.repo.repo_id,
            self.event.issue.number,
            &self.event.sender.login,
            REFUSAL_REPLY_EVERY.as_millis() as i64,
        )
        .await
        .context("recording the refusal")
    }

    fn view<'t>(&'t self, task: &'t task::Model) -> TaskView<'t> {
        TaskView::of(task, &self.ctx.config.public_url)
    }

    fn login(&self) -> &str {
        &self.event.sender.login
    }

    /// Post a reply on the issue. A refusal GitHub will never accept (4xx) is logged, not
    /// retried; a GitHub that cannot answer now fails the delivery so it is tried again.
    async fn reply(&self, body: &str) -> anyhow::Result<()> {
        match self
            .github
            .create_comment(self.repo, self.event.issue.number, body)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                error!(delivery_id = self.delivery_id, error = %e, "posting a reply failed");
                Ok(())
            }
            Err(e) => Err(e).context("posting a reply"),
        }
    }

    /// React 👀 to the command's comment. It may be gone, or reactions refused: logged.
    async fn acknowledge(&self) -> anyhow::Result<()> {
        match self
            .github
            .react_to_comment(self.repo, self.event.comment.id, "eyes")
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                warn!(error = %e, "could not react to the comment");
                Ok(())
            }
            Err(e) => Err(e).context("reacting to the comment"),
        }
    }

    /// `/amp stop`: whatever the task is doing, the lifecycle stops it.
    async fn stop(&self) -> anyhow::Result<()> {
        let active =
            match tasks::active_for_issue(&self.ctx.db, self.repo.repo_id, self.event.issue.number)
                .await
                .context("looking for the running task")?
            {
                Some(task) => Some(task),
                // On the pull request a task opened.
                None => self
                    .task_of_pull()
                    .await?
                    .filter(|t| !t.state.is_terminal()),
            };
        let Some(task) = active else {
            return self.reply(&comments::control_accepted("stop", None)).await;
        };
        info!(task_id = %task.id, "stop requested");
        match self
            .ctx
            .lifecycle
            .stop(&task)
            .await
            .context("stopping the task")?
        {
            // The status comment says so.
            Stopped::Ended | Stopped::Over => Ok(()),
            Stopped::Asked => {
                self.reply(&comments::control_accepted("stop", Some(&self.view(&task))))
                    .await
            }
        }
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
            info!(task_id = %task.id, "this delivery's command was carried out already");
        }
        again
    }

    /// A prompt for a task that exists: on its pull request, or on its issue while it is
    /// active. It is queued on the task and taken by the task's next round: at once when the
    /// task waits for CI (the same container and Amp thread) or has ended (a new container, the
    /// same thread); when a round runs, after it, with whatever else was asked meanwhile.
    async fn follow_up(&self, task: task::Model, prompt: String) -> anyhow::Result<()> {
        if self.handled_before(&task) {
            return Ok(());
        }
        let login = self.login();
        requests::queue(&self.ctx.db, task.id, login, &prompt, self.event.comment.id)
            .await
            .context("queueing the request on the task")?;
        let started = self
            .ctx
            .lifecycle
            .take_requests(&task, Asking::Now, Some(self.delivery_id))
            .await
            .context("starting a follow-up round")?;
        self.acknowledge().await?;
        if started {
            info!(task_id = %task.id, "follow-up round queued");
            self.reply(&comments::follow_up_accepted(login, &self.view(&task)))
                .await
        } else {
            info!(task_id = %task.id, "request queued for the task's next round");
            let fresh = tasks::get(&self.ctx.db, task.id)
                .await
                .context("reading the task")?
                .unwrap_or(task);
            self.reply(&comments::queued_for_next_round(login, &self.view(&fresh)))
                .await
        }
    }

    /// `/amp retry`: the issue's last task, if it ended without success, is queued again. It
    /// keeps its branch, pull request and Amp thread, so the agent picks up where it left off.
    async fn retry(&self) -> anyhow::Result<()> {
        let Some(task) = self.latest_task().await? else {
            return self.reply(&comments::control_accepted("retry", None)).await;
        };
        if self.handled_before(&task) {
            return Ok(());
        }
        if self.refused_for_config().await? {
            return Ok(());
        }
        if !task.state.is_terminal() {
            return self
                .reply(&comments::already_running(self.login(), &self.view(&task)))
                .await;
        }
        if task.state == TaskState::Succeeded {
            return self
                .reply(&comments::nothing_to_retry(self.login(), &self.view(&task)))
                .await;
        }
        let reason = notes::retry_reason(self.login());
        let note = notes::retried();
        let mut mv = Move::to(TaskState::Queued)
            .reason(&reason)
            .note(&note)
            .by_command(self.delivery_id);
        // After the CI loop gave up, Amp gets the failure again, with a fresh set of rounds.
        if task.state == TaskState::NeedsHuman {
            let last_report = rounds::list(&self.ctx.db, task.id)
                .await
                .context("reading the task's rounds")?
                .into_iter()
                .rev()
                .find(|r| r.kind != RoundKind::FollowUp);
            if let Some(last) = last_report {
                let round = NewRound {
                    head_sha: last.head_sha.clone(),
                    failed_checks: last.failed_checks(),
                    requested_by: Some(self.login().to_string()),
                    ..NewRound::new(RoundKind::Retry, last.prompt.clone())
                };
                mv = mv.ci_round(0).with_round(round);
            }
        }
        let queued = self
            .ctx
            .lifecycle
            .transition(&task, mv)
            .await
            .context("queueing the task again")?;
        if queued.is_none() {
            // Retried twice at once: the other one won.
            return Ok(());
        }
        info!(task_id = %task.id, "task queued again with /amp retry");
        self.reply(&comments::control_accepted(
            "retry",
            Some(&self.view(&task)),
        ))
        .await
    }

    /// When `.github/amp.toml` has problems, say so instead of starting work: whether it did.
    async fn refused_for_config(&self) -> anyhow::Result<bool> {
        let Found::Invalid(problems) = self.config else {
            return Ok(false);
        };
        info!(
            problems = problems.len(),
            "command refused: the repository's .github/amp.toml has problems"
        );
        self.reply(&texts::repo_config::invalid_config(self.login(), problems))
            .await?;
        Ok(true)
    }

    async fn prompt(&self, prompt: String) -> anyhow::Result<()> {
        if self.refused_for_config().await? {
            return Ok(());
        }
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
        let request = TaskRequest {
            repo: self.repo.clone(),
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
            prompt: prompt.clone(),
            repo_config: self.config.text().map(str::to_string),
        };
        let task = match ctx
            .lifecycle
            .create_task(request)
            .await
            .context("creating the task")?
        {
            Created::New(task) | Created::Again(task) => task,
            // The issue's task is at work: this is for its next round.
            Created::Busy(active) => return self.follow_up(active, prompt).await,
        };
        self.acknowledge().await?;
        match ctx.lifecycle.announce(&task).await {
            Ok(()) => Ok(()),
            Err(AnnounceError::GitHub(e)) if e.is_permanent() => {
                error!(delivery_id = self.delivery_id, task_id = %task.id, error = %e, "posting the status comment failed");
                self.reply(&comments::internal_error(Some(&self.view(&task))))
                    .await
            }
            Err(e) => Err(e).context("posting the status comment"),
        }
    }
}
