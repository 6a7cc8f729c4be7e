//! The CI loop: after a push, the task waits in `awaiting_ci`. Each `check_suite` `completed`
//! for its head commit (and a periodic sweep, which also covers lost webhooks and repositories
//! without CI) re-reads every check suite, check run and commit status of the commit and decides:
//!
//! - failed → a failure report goes back to Amp as a new round in the same container and thread
//!   (the worker picks the round up), unless `MAX_CI_ROUNDS` are used or the failure is the same
//!   as last round's: then the task ends `needs_human`;
//! - passed → the pull request is marked ready, the requester asked for a review, the task ends
//!   `succeeded` and its container goes;
//! - still running → wait; nothing at all within `CI_WAIT_TIMEOUT` → taken as no CI.
//!
//! Every action is a compare-and-set on the task's state and head commit, so duplicate and
//! out-of-order events lead to one decision, acted on once.

pub mod verdict;

use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tracing::{info, warn};

use crate::app::Ctx;
use crate::bus::Published;
use crate::db::now_ms;
use crate::entities::task;
use crate::github::{GitHub, GitHubError, RepoRef};
use crate::state::TaskState;
use crate::store::deliveries::Outcome;
use crate::store::rounds::{self, Change, NewRound, round_kind};
use crate::store::tasks::{self, kind};
use crate::webhook::events::CheckSuiteEvent;
use verdict::{Detail, Failure, Verdict};

/// `check_suite` webhooks.
pub async fn on_check_suite(ctx: &Ctx, event: &CheckSuiteEvent) -> anyhow::Result<Outcome> {
    if event.action != "completed" {
        return Ok(Outcome::Ignored(format!("check_suite {}", event.action)));
    }
    let sha = &event.check_suite.head_sha;
    if let (Some(app), Some(own)) = (&event.check_suite.app, ctx.app_id())
        && app.id as u64 == own
    {
        return Ok(Outcome::Ignored("a check suite of this app".into()));
    }
    let Some(task) = tasks::by_head_sha(&ctx.db, event.repository.id, sha)
        .await
        .context("looking up the commit's task")?
    else {
        // Not a commit the service pushed, or one a later push replaced.
        return Ok(Outcome::Ignored(format!(
            "commit {sha} is not the head of any task"
        )));
    };
    if task.state != TaskState::AwaitingCi.as_str() {
        return Ok(Outcome::Ignored(format!(
            "task {} is {}, not waiting for CI",
            task.id, task.state
        )));
    }
    info!(task_id = task.id, %sha, suite = event.check_suite.id, "check suite completed; deciding");
    evaluate(ctx, &task, false).await?;
    Ok(Outcome::Done)
}

/// How many times `CI_WAIT_TIMEOUT` a task waits for checks that never finish before a person is
/// asked to look.
const CI_STUCK_FACTOR: u32 = 6;

fn waited_too_long(ctx: &Ctx, task: &task::Model) -> bool {
    let since = task.awaiting_since.unwrap_or(task.updated_at);
    now_ms() - since > (ctx.config.ci_wait_timeout * CI_STUCK_FACTOR).as_millis() as i64
}

/// Re-decide every task that has waited longer than `CI_WAIT_TIMEOUT`: no checks at all means
/// no CI; anything else is acted on as if its webhook had arrived (GitHub does not redeliver).
pub async fn sweep(ctx: &Ctx) {
    let cutoff = now_ms() - ctx.config.ci_wait_timeout.as_millis() as i64;
    let waiting = match tasks::awaiting_ci_since(&ctx.db, cutoff).await {
        Ok(waiting) => waiting,
        Err(e) => {
            warn!(error = %e, "looking for tasks waiting for CI failed");
            return;
        }
    };
    for task in waiting {
        if let Err(e) = evaluate(ctx, &task, true).await {
            warn!(task_id = task.id, error = %format!("{e:#}"), "deciding on CI failed");
        }
    }
}

/// Decide on a task that has just started waiting for CI, in case its checks finished first.
pub async fn recheck(ctx: &Ctx, task_id: i64) {
    match tasks::get(&ctx.db, task_id).await {
        Ok(Some(task)) if task.state == TaskState::AwaitingCi.as_str() => {
            if let Err(e) = evaluate(ctx, &task, false).await {
                warn!(task_id, error = %format!("{e:#}"), "deciding on CI failed");
            }
        }
        Ok(_) => {}
        Err(e) => warn!(task_id, error = %e, "reading the task failed"),
    }
}

/// Run [`sweep`] until shutdown, often enough for `CI_WAIT_TIMEOUT`.
pub async fn watch(ctx: Ctx) {
    let every =
        (ctx.config.ci_wait_timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => sweep(&ctx).await,
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// What GitHub says about a commit's checks.
pub async fn verdict_for(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    sha: &str,
) -> Result<Verdict, GitHubError> {
    let suites = github.check_suites(repo, sha).await?;
    let runs = github.check_runs(repo, sha).await?;
    let statuses = github.combined_status(repo, sha).await?;
    Ok(verdict::decide(
        &suites.check_suites,
        &runs.check_runs,
        &statuses.statuses,
        ctx.app_id(),
    ))
}

async fn evaluate(ctx: &Ctx, task: &task::Model, waited_out: bool) -> anyhow::Result<()> {
    let (Some(github), Some(sha)) = (ctx.github(), &task.head_sha) else {
        return Ok(());
    };
    let repo = RepoRef::of_task(task);
    match verdict_for(ctx, &github, &repo, sha).await? {
        Verdict::Waiting if waited_out && waited_too_long(ctx, task) => {
            let note = format!(
                "CI has not finished on this commit after {} (CI_WAIT_TIMEOUT × {CI_STUCK_FACTOR}): \
                 a check seems stuck (no runner, or waiting for an approval). The pull request \
                 stays a draft; comment `/amp retry` once CI has run.",
                humantime::format_duration(ctx.config.ci_wait_timeout * CI_STUCK_FACTOR)
            );
            end(ctx, task, TaskState::NeedsHuman, &note).await
        }
        Verdict::Waiting => Ok(()),
        Verdict::NoChecks if !waited_out => Ok(()),
        Verdict::NoChecks => {
            let note = format!(
                "No CI reported on this commit within CI_WAIT_TIMEOUT ({}), so the repository \
                 is taken to have no CI. The pull request is ready for review.",
                humantime::format_duration(ctx.config.ci_wait_timeout)
            );
            succeed(ctx, &github, &repo, task, &note).await
        }
        Verdict::Passed => {
            let rounds = task.ci_round;
            let took = humantime::format_duration(Duration::from_secs(
                ((now_ms() - task.created_at).max(0) / 1000) as u64,
            ));
            let note = format!(
                "✅ All checks passed. The pull request is ready for review. CI rounds used: \
                 {rounds}; time taken: {took}."
            );
            succeed(ctx, &github, &repo, task, &note).await
        }
        Verdict::Failed(failures) => failed(ctx, &github, &repo, task, sha, failures).await,
    }
}

/// CI passed (or there is none): the pull request leaves draft, the requester is asked to review.
async fn succeed(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
    note: &str,
) -> anyhow::Result<()> {
    // Only for the commit still at the head of the task (a slow decision about an older one
    // must not pass a newer one).
    let fresh = tasks::get(&ctx.db, task.id).await?;
    if fresh
        .as_ref()
        .is_none_or(|t| t.state != TaskState::AwaitingCi.as_str() || t.head_sha != task.head_sha)
    {
        return Ok(());
    }
    // Both are idempotent on GitHub, so doing them before the state change is safe when two
    // deliveries get here at once; the state change below picks one to report.
    if let Some(number) = task.pr_number {
        let pull = github
            .get_pull(repo, number)
            .await
            .context("reading the pull request")?;
        if pull.draft == Some(true) {
            let node_id = pull.node_id.clone().unwrap_or_default();
            github
                .mark_ready_for_review(repo, &node_id)
                .await
                .context("marking the pull request ready for review")?;
        }
        match github
            .request_reviewer(repo, number, &task.requester_login)
            .await
        {
            Ok(_) => {}
            // GitHub refuses a reviewer without access, or the pull request's author.
            Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) => {
                warn!(task_id = task.id, error = %e, "requesting a review failed")
            }
            Err(e) => return Err(e).context("requesting a review"),
        }
    }
    end(ctx, task, TaskState::Succeeded, note).await
}

/// End a task that waits for CI: the state change (compare-and-set on its state and head
/// commit), its container and volume removed, the status comment edited.
async fn end(ctx: &Ctx, task: &task::Model, to: TaskState, note: &str) -> anyhow::Result<()> {
    if !crate::worker::end_waiting_task_at(ctx, task, to, note, task.head_sha.as_deref()).await? {
        return Ok(());
    }
    info!(
        task_id = task.id,
        state = to.as_str(),
        "CI loop ended the task"
    );
    if to == TaskState::Succeeded {
        crate::metrics::METRICS
            .time_to_green
            .observe(Duration::from_millis(
                (now_ms() - task.created_at).max(0) as u64
            ));
    }
    Ok(())
}

async fn failed(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
    sha: &str,
    failures: Vec<Failure>,
) -> anyhow::Result<()> {
    // Gather what GitHub knows about each failure.
    let started = std::time::Instant::now();
    let mut downloading = Duration::ZERO;
    let mut gathered = Vec::new();
    for failure in failures {
        let mut detail = Detail::default();
        if let Some(run_id) = failure.run_id {
            match github.check_run_annotations(repo, run_id).await {
                Ok(annotations) => {
                    detail.annotations = annotations
                        .iter()
                        .map(|a| {
                            format!(
                                "{}:{}: {}",
                                a.path,
                                a.start_line.unwrap_or(1),
                                a.message.as_deref().unwrap_or("").trim()
                            )
                        })
                        .collect()
                }
                Err(e) => warn!(task_id = task.id, error = %e, "reading annotations failed"),
            }
            if failure.actions_job {
                let download = std::time::Instant::now();
                let log = github.job_log(repo, run_id).await;
                downloading += download.elapsed();
                match log {
                    Ok(log) => detail.log = Some(log),
                    Err(e) => warn!(task_id = task.id, error = %e, "downloading a job log failed"),
                }
            }
        }
        gathered.push((failure, detail));
    }
    let base_red = base_failures(ctx, github, repo, task).await;
    let branch = task.branch.clone().unwrap_or_default();
    let report = verdict::report(
        sha,
        &branch,
        &gathered,
        base_red.as_deref(),
        verdict::REPORT_BUDGET,
    );
    let fingerprint = verdict::fingerprint(&gathered);
    let decided = started.elapsed();
    let failed_checks = json!(
        gathered
            .iter()
            .map(|(f, _)| json!({"name": f.name, "conclusion": f.conclusion}))
            .collect::<Vec<_>>()
    );
    let names: Vec<String> = gathered
        .iter()
        .map(|(f, _)| format!("`{}`", f.name))
        .collect();
    let names = names.join(", ");

    let previous = rounds::list(&ctx.db, task.id)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.kind != round_kind::FOLLOW_UP && r.fingerprint.is_some());
    let max = ctx.config.max_ci_rounds as i32;
    let base_note = base_red
        .as_ref()
        .map(|b| {
            format!(
                " The base branch is already failing ({b}), so this may not come from this change."
            )
        })
        .unwrap_or_default();
    let give_up = if task.ci_round >= max {
        Some(format!(
            "CI still fails ({names}) after {} rounds of fixes (MAX_CI_ROUNDS).",
            task.ci_round
        ))
    } else if previous.as_ref().and_then(|p| p.fingerprint.as_deref()) == Some(&fingerprint)
        && task.ci_round > 0
    {
        Some(format!(
            "CI fails ({names}) exactly as before the last fix, so another round is unlikely to help."
        ))
    } else {
        None
    };
    let new = NewRound {
        kind: round_kind::CI,
        round: task.ci_round + 1,
        head_sha: Some(sha.to_string()),
        failed_checks,
        fingerprint: Some(fingerprint),
        prompt: report,
        requested_by: None,
        outcome: None,
    };
    if let Some(why) = give_up {
        let note = format!(
            "{why}{base_note} The pull request stays a draft. Comment `/amp retry` to give Amp \
             more rounds, or `/amp <what to do>` on the pull request to guide it."
        );
        let started = rounds::start(
            &ctx.db,
            task.id,
            Change {
                delivery_id: None,
                from: TaskState::AwaitingCi,
                to: TaskState::NeedsHuman,
                reason: &note,
                head_sha: Some(sha),
                ci_round: None,
            },
            NewRound {
                round: task.ci_round,
                outcome: Some("gave_up"),
                ..new
            },
        )
        .await?;
        let Some((_, event)) = started else {
            return Ok(());
        };
        publish_state(ctx, task.id, &event);
        info!(task_id = task.id, "the CI loop gave up");
        crate::worker::after_waiting_task_ended(ctx, task, TaskState::NeedsHuman, &note).await;
        return Ok(());
    }
    let reason = format!("CI failed: {names}");
    let started = rounds::start(
        &ctx.db,
        task.id,
        Change {
            delivery_id: None,
            from: TaskState::AwaitingCi,
            to: TaskState::Fixing,
            reason: &reason,
            head_sha: Some(sha),
            ci_round: Some(new.round),
        },
        new,
    )
    .await?;
    let Some((round, event)) = started else {
        return Ok(());
    };
    publish_state(ctx, task.id, &event);
    ctx.record_event(
        task.id,
        kind::LOG,
        json!({
            "level": "info",
            "text": format!(
                "CI failed ({names}): round {} report built ({} bytes) in {} ms, of which {} ms \
                 downloading job logs",
                round.round,
                round.prompt.len(),
                decided.as_millis(),
                downloading.as_millis()
            ),
            "decision_ms": decided.as_secs_f64() * 1000.0,
            "log_download_ms": downloading.as_secs_f64() * 1000.0,
        }),
    )
    .await;
    info!(
        task_id = task.id,
        round = round.round,
        "CI failed; the report goes back to Amp"
    );
    ctx.task_wakeup.notify_one();
    let note = format!(
        "CI failed ({names}). Round {} of {max}: the failure report went back to Amp.{base_note}",
        round.round
    );
    crate::worker::edit_status_comment(ctx, task.id, TaskState::Fixing, Some(&note)).await;
    Ok(())
}

/// The base commit's failed checks, if the base branch is red already.
async fn base_failures(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
) -> Option<String> {
    let pull = github.get_pull(repo, task.pr_number?).await.ok()?;
    match verdict_for(ctx, github, repo, &pull.base.sha).await {
        Ok(Verdict::Failed(failures)) => Some(
            failures
                .iter()
                .map(|f| format!("`{}`", f.name))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

fn publish_state(ctx: &Ctx, task_id: i64, event: &crate::entities::task_event::Model) {
    ctx.bus.publish(Published {
        task_id,
        seq: event.seq,
        kind: kind::STATE.into(),
        data: serde_json::from_str(&event.data).unwrap_or_default(),
    });
}
