//! The CI loop: after a push, the task waits in `awaiting_ci`. Each `check_suite` `completed`
//! for its head commit (and a periodic sweep, which also covers lost webhooks and repositories
//! without CI) re-reads every check suite, check run and commit status of the commit and decides:
//!
//! - failed → a failure report goes back to Amp as a new round in the same container and thread
//!   (the worker picks the round up), unless `MAX_CI_ROUNDS` are used or the failure is the same
//!   as last round's: then the task ends `needs_human`;
//! - passed → the pull request is marked ready, the requester asked for a review, the task ends
//!   `succeeded` and its container goes;
//! - still running → wait; nothing at all within `CI_WAIT_TIMEOUT` (or the repository's
//!   `ci.wait_timeout`) → taken as no CI.
//!
//! The repository's `ci.required` and `ci.ignore` say which checks decide ([`CheckRules`]).
//!
//! Every decision is a compare-and-set on the task's state and head commit (through the
//! lifecycle), so duplicate and out-of-order events lead to one decision, acted on once.

pub mod verdict;

use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::db::now_ms;
use crate::domain::round::FailedCheck;
use crate::domain::{CommitSha, LogLine, RepoRef, RoundKind, RoundOutcome, TaskId, TaskState};
use crate::entities::task;
use crate::github::{GitHub, GitHubError};
use crate::lifecycle::Move;
use crate::lifecycle::requests::Asking;
use crate::repo_config::{self, Effective};
use crate::store::deliveries::Outcome;
use crate::store::rounds::{self, NewRound};
use crate::store::tasks;
use crate::texts::notes::{self, GiveUp};
use crate::texts::{comments, prompts};
use crate::webhook::events::{CheckSuiteAction, CheckSuiteEvent};
use verdict::{CheckRules, Detail, Failure, Verdict};

/// GitHub's words for a call the installation's permissions do not allow.
const NO_PERMISSION: &str = "Resource not accessible by integration";

/// `check_suite` webhooks.
pub async fn on_check_suite(ctx: &Ctx, event: &CheckSuiteEvent) -> anyhow::Result<Outcome> {
    if !event.action.is(CheckSuiteAction::Completed) {
        return Ok(Outcome::Ignored(format!("check_suite {}", event.action)));
    }
    let sha = CommitSha(event.check_suite.head_sha.clone());
    if let (Some(app), Some(own)) = (&event.check_suite.app, ctx.app_id())
        && app.id as u64 == own
    {
        return Ok(Outcome::Ignored("a check suite of this app".into()));
    }
    let Some(task) = tasks::by_head_sha(&ctx.db, event.repository.id, &sha)
        .await
        .context("looking up the commit's task")?
    else {
        // Not a commit the service pushed, or one a later push replaced.
        return Ok(Outcome::Ignored(format!(
            "commit {sha} is not the head of any task"
        )));
    };
    if task.state != TaskState::AwaitingCi {
        return Ok(Outcome::Ignored(format!(
            "task {} is {}, not waiting for CI",
            task.id, task.state
        )));
    }
    info!(task_id = %task.id, %sha, suite = event.check_suite.id, "check suite completed; deciding");
    evaluate(ctx, &task, false).await?;
    Ok(Outcome::Done)
}

/// How many times `CI_WAIT_TIMEOUT` a task waits for checks that never finish before a person is
/// asked to look.
const CI_STUCK_FACTOR: u32 = 6;

/// How long `task` has waited for CI on its head commit.
fn waited(task: &task::Model) -> Duration {
    let since = task.awaiting_since.unwrap_or(task.updated_at);
    Duration::from_millis((now_ms() - since).max(0) as u64)
}

/// The shortest wait for CI any task may have: the service's, or the least a repository may set.
fn shortest_wait(ctx: &Ctx) -> Duration {
    ctx.config
        .ci_wait_timeout
        .min(repo_config::MIN_WAIT_TIMEOUT)
}

/// How often the sweep runs: often enough for the shortest wait a task may have.
fn sweep_every(ctx: &Ctx) -> Duration {
    (shortest_wait(ctx) / 4).clamp(Duration::from_millis(200), Duration::from_secs(30))
}

/// Whether a sweep every `every` re-decides a task that has `waited` for CI, its wait being
/// `wait`: once it is past its wait, on the first sweep of each period of a quarter of its wait
/// (at most 30 s), so a task whose CI runs long costs GitHub a few calls a minute, not some
/// each sweep.
fn due(waited: Duration, wait: Duration, every: Duration) -> bool {
    let Some(past) = waited.checked_sub(wait).filter(|p| !p.is_zero()) else {
        return false;
    };
    let period = (wait / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
    if period <= every {
        return true;
    }
    past.as_millis() % period.as_millis() < every.as_millis()
}

/// Re-decide every task that has waited longer than its wait for CI (`CI_WAIT_TIMEOUT`, or its
/// repository's `ci.wait_timeout`): no checks at all means no CI; anything else is acted on as if
/// its webhook had arrived (GitHub does not redeliver).
pub async fn sweep(ctx: &Ctx) {
    let cutoff = now_ms() - shortest_wait(ctx).as_millis() as i64;
    let waiting = match tasks::awaiting_ci_since(&ctx.db, cutoff).await {
        Ok(waiting) => waiting,
        Err(e) => {
            warn!(error = %e, "looking for tasks waiting for CI failed");
            return;
        }
    };
    let every = sweep_every(ctx);
    for task in waiting {
        let wait = repo_config::settings_of(&task, &ctx.config)
            .wait_timeout
            .value;
        if !due(waited(&task), wait, every) {
            continue;
        }
        if let Err(e) = evaluate(ctx, &task, true).await {
            warn!(task_id = %task.id, error = %format!("{e:#}"), "deciding on CI failed");
        }
    }
}

/// Decide on a task that has just started waiting for CI, in case its checks finished first.
async fn recheck(ctx: &Ctx, task_id: TaskId) {
    match tasks::get(&ctx.db, task_id).await {
        Ok(Some(task)) if task.state == TaskState::AwaitingCi => {
            if let Err(e) = evaluate(ctx, &task, false).await {
                warn!(%task_id, error = %format!("{e:#}"), "deciding on CI failed");
            }
        }
        Ok(_) => {}
        Err(e) => warn!(%task_id, error = %e, "reading the task failed"),
    }
}

/// Until shutdown: decide on each task as it starts waiting for CI, and [`sweep`] often enough
/// for the shortest wait for CI a task may have.
pub async fn watch(ctx: Ctx, mut started_waiting: mpsc::UnboundedReceiver<TaskId>) {
    let every = sweep_every(&ctx);
    let mut next_sweep = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            Some(task_id) = started_waiting.recv() => {
                let ctx = ctx.clone();
                tokio::spawn(async move { recheck(&ctx, task_id).await });
            }
            _ = tokio::time::sleep_until(next_sweep) => {
                sweep(&ctx).await;
                next_sweep = tokio::time::Instant::now() + every;
            }
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

/// The checks that decide for a task, from its repository's configuration.
fn check_rules(settings: &Effective) -> CheckRules<'_> {
    CheckRules {
        required: settings.required.value.as_deref(),
        ignore: &settings.ignore.value,
    }
}

/// What GitHub says about a commit's checks, as `rules` count them.
pub async fn verdict_for(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    sha: &str,
    rules: CheckRules<'_>,
) -> Result<Verdict, GitHubError> {
    let suites = github.check_suites(repo, sha).await?;
    let runs = github.check_runs(repo, sha).await?;
    let statuses = github.commit_statuses(repo, sha).await?;
    Ok(verdict::decide(
        &suites,
        &runs,
        &statuses,
        ctx.app_id(),
        rules,
    ))
}

async fn evaluate(ctx: &Ctx, task: &task::Model, waited_out: bool) -> anyhow::Result<()> {
    let (Some(github), Some(sha)) = (ctx.github(), &task.head_sha) else {
        return Ok(());
    };
    // What people asked meanwhile goes first (the run that ended normally starts it; this
    // catches a run that could not): its round pushes a new head whose checks decide.
    if ctx
        .lifecycle
        .take_requests(task, Asking::AfterRun, None)
        .await?
    {
        return Ok(());
    }
    let repo = task.repo();
    let settings = repo_config::settings_of(task, &ctx.config);
    let rules = check_rules(&settings);
    let verdict = match verdict_for(ctx, &github, &repo, sha.as_str(), rules).await {
        Ok(verdict) => verdict,
        // GitHub refused for good (a permission the installation has not granted, a repository
        // gone): asking again will not change that, so the wait ends with the reason.
        Err(e) if e.is_permanent() => {
            warn!(task_id = %task.id, error = %e, "GitHub refused to show the commit's checks");
            let said = e.github_message().unwrap_or_default();
            let note = notes::ci_unreadable(said, said == NO_PERMISSION);
            return end(ctx, task, sha, TaskState::NeedsHuman, &note).await;
        }
        Err(e) => return Err(e.into()),
    };
    let wait = &settings.wait_timeout;
    match verdict {
        Verdict::Waiting if waited_out && waited(task) > wait.value * CI_STUCK_FACTOR => {
            let note = notes::ci_stuck(wait, CI_STUCK_FACTOR);
            end(ctx, task, sha, TaskState::NeedsHuman, &note).await
        }
        Verdict::Waiting => Ok(()),
        Verdict::NoChecks if !waited_out => Ok(()),
        Verdict::NoChecks => {
            let note = notes::no_ci(wait);
            succeed(ctx, &github, &repo, task, sha, &note).await
        }
        Verdict::Passed { not_required } => {
            let took = Duration::from_millis((now_ms() - task.created_at).max(0) as u64);
            let names: Vec<&str> = not_required.iter().map(|f| f.name.as_str()).collect();
            let note = notes::ci_passed(task.ci_round, took, &names);
            succeed(ctx, &github, &repo, task, sha, &note).await
        }
        Verdict::Failed(failures) => {
            failed(ctx, &github, &repo, task, sha, failures, &settings).await
        }
    }
}

/// CI passed (or there is none): the pull request leaves draft, the requester is asked to review.
async fn succeed(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
    sha: &CommitSha,
    note: &str,
) -> anyhow::Result<()> {
    // Only for the commit still at the head of the task (a slow decision about an older one
    // must not pass a newer one).
    let fresh = tasks::get(&ctx.db, task.id).await?;
    if fresh
        .as_ref()
        .is_none_or(|t| t.state != TaskState::AwaitingCi || t.head_sha.as_ref() != Some(sha))
    {
        return Ok(());
    }
    // The steps on GitHub are idempotent, so doing them before the state change is safe when
    // two deliveries get here at once; the state change below picks one to report. A refusal
    // (a pull request closed meanwhile, a reviewer without access) is logged, not retried.
    let mut say_ready_on = None;
    if let Some(number) = task.pr_number {
        let pull = github
            .get_pull(repo, number)
            .await
            .context("reading the pull request")?;
        if pull.is_open() {
            let readied = if pull.draft == Some(true) {
                github.mark_ready_for_review(repo, &pull.node_id).await
            } else if let Some(title) =
                prompts::ready_title(&pull.title).filter(|_| !task.is_pull_request)
            {
                // Opened by this task as work in progress where drafts are not available: the
                // title loses its mark, and once the task has ended a comment says it is ready.
                say_ready_on = Some(number);
                github.retitle_pull(repo, number, title).await
            } else {
                Ok(())
            };
            permanent_is_logged(task, "marking the pull request ready for review", readied)?;
            let asked = github
                .request_reviewer(repo, number, &task.requester_login)
                .await;
            permanent_is_logged(task, "requesting a review", asked)?;
        }
    }
    let ended = ended(ctx, task, sha, TaskState::Succeeded, note).await?;
    if ended && let Some(number) = say_ready_on {
        let said = comments::ready_for_review(&task.requester_login);
        if let Err(e) = github.create_comment(repo, number, &said).await {
            warn!(task_id = %task.id, error = %e, "saying the pull request is ready failed");
        }
    }
    Ok(())
}

/// A step GitHub refused for good is logged; one that may work later fails the decision, which
/// is made again.
fn permanent_is_logged(
    task: &task::Model,
    what: &'static str,
    result: Result<(), GitHubError>,
) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.is_permanent() => {
            warn!(task_id = %task.id, error = %e, "{what} failed");
            Ok(())
        }
        Err(e) => Err(e).context(what),
    }
}

/// End a task that waits for CI, while `sha` is still its head.
async fn end(
    ctx: &Ctx,
    task: &task::Model,
    sha: &CommitSha,
    to: TaskState,
    note: &str,
) -> anyhow::Result<()> {
    ended(ctx, task, sha, to, note).await.map(drop)
}

/// [`end`], saying whether this call ended it (another may have first).
async fn ended(
    ctx: &Ctx,
    task: &task::Model,
    sha: &CommitSha,
    to: TaskState,
    note: &str,
) -> anyhow::Result<bool> {
    let mv = Move::to(to).saying(note).at_head(sha);
    if ctx.lifecycle.transition(task, mv).await?.is_none() {
        return Ok(false);
    }
    info!(task_id = %task.id, state = %to, "CI loop ended the task");
    if to == TaskState::Succeeded {
        crate::metrics::METRICS
            .time_to_green
            .observe(Duration::from_millis(
                (now_ms() - task.created_at).max(0) as u64
            ));
    }
    Ok(true)
}

async fn failed(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
    sha: &CommitSha,
    failures: Vec<Failure>,
    settings: &Effective,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (gathered, downloading) = gather(github, repo, task, failures).await;
    let base_red = base_failures(ctx, github, repo, task, check_rules(settings)).await;
    let branch = task.branch.clone().unwrap_or_default();
    let report = verdict::report(
        sha.as_str(),
        &branch,
        &gathered,
        base_red.as_deref(),
        verdict::REPORT_BUDGET,
    );
    let fingerprint = verdict::fingerprint(&gathered);
    let decided = started.elapsed();
    let failed_checks: Vec<FailedCheck> = gathered
        .iter()
        .map(|(f, _)| FailedCheck {
            name: f.name.clone(),
            conclusion: f.conclusion.clone(),
        })
        .collect();
    let names = notes::code_list(&gathered.iter().map(|(f, _)| &f.name).collect::<Vec<_>>());

    let previous = rounds::list(&ctx.db, task.id)
        .await?
        .into_iter()
        .rev()
        .find(|r| r.kind != RoundKind::FollowUp && r.fingerprint.is_some());
    let max = settings.max_rounds.value;
    let previous = previous.as_ref().and_then(|p| p.fingerprint.as_deref());
    let give_up = should_give_up(task.ci_round, max, previous, &fingerprint);
    let round = NewRound {
        round: task.ci_round + 1,
        head_sha: Some(sha.clone()),
        failed_checks,
        fingerprint: Some(fingerprint),
        ..NewRound::new(RoundKind::Ci, report)
    };
    if let Some(why) = give_up {
        let note = notes::ci_gave_up(why, &names, base_red.as_deref());
        let round = NewRound {
            round: task.ci_round,
            outcome: Some(RoundOutcome::GaveUp),
            ..round
        };
        let mv = Move::to(TaskState::NeedsHuman)
            .saying(&note)
            .at_head(sha)
            .with_round(round);
        if ctx.lifecycle.transition(task, mv).await?.is_some() {
            info!(task_id = %task.id, "the CI loop gave up");
        }
        return Ok(());
    }
    let next = round.round;
    let reason = notes::ci_failed_reason(&names);
    let note = notes::ci_failed(&names, next, max, base_red.as_deref());
    let mv = Move::to(TaskState::Fixing)
        .reason(&reason)
        .note(&note)
        .at_head(sha)
        .ci_round(next)
        .with_round(round);
    let Some(applied) = ctx.lifecycle.transition(task, mv).await? else {
        return Ok(());
    };
    let bytes = applied.round.as_ref().map_or(0, |r| r.prompt.len());
    let mut line = LogLine::info(format!(
        "CI failed ({names}): round {next} report built ({bytes} bytes) in {} ms, of which {} ms \
         downloading job logs",
        decided.as_millis(),
        downloading.as_millis()
    ));
    line.measured.insert(
        "decision_ms".into(),
        serde_json::json!(decided.as_secs_f64() * 1000.0),
    );
    line.measured.insert(
        "log_download_ms".into(),
        serde_json::json!(downloading.as_secs_f64() * 1000.0),
    );
    ctx.lifecycle.log(task.id, line).await;
    info!(task_id = %task.id, round = next, "CI failed; the report goes back to Amp");
    Ok(())
}

/// Each failure with what GitHub knows about it (a check run's annotations, a GitHub Actions
/// job's log), and the time spent downloading logs.
async fn gather(
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
    failures: Vec<Failure>,
) -> (Vec<(Failure, Detail)>, Duration) {
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
                Err(e) => warn!(task_id = %task.id, error = %e, "reading annotations failed"),
            }
            if failure.actions_job {
                let download = std::time::Instant::now();
                let log = github.job_log(repo, run_id).await;
                downloading += download.elapsed();
                match log {
                    Ok(log) => detail.log = Some(log),
                    Err(e) => warn!(task_id = %task.id, error = %e, "downloading a job log failed"),
                }
            }
        }
        gathered.push((failure, detail));
    }
    (gathered, downloading)
}

/// Whether the loop stops at a failure, given the rounds used, the bound, and the fingerprints
/// of the last failure sent to the agent and of this one.
fn should_give_up(
    rounds_used: i32,
    max: u32,
    previous: Option<&str>,
    fingerprint: &str,
) -> Option<GiveUp> {
    if rounds_used >= max as i32 {
        Some(GiveUp::OutOfRounds(rounds_used))
    } else if rounds_used > 0 && previous == Some(fingerprint) {
        Some(GiveUp::NoProgress)
    } else {
        None
    }
}

/// The base commit's failed checks, if the base branch is red already.
async fn base_failures(
    ctx: &Ctx,
    github: &GitHub,
    repo: &RepoRef,
    task: &task::Model,
    rules: CheckRules<'_>,
) -> Option<String> {
    let pull = github.get_pull(repo, task.pr_number?).await.ok()?;
    match verdict_for(ctx, github, repo, &pull.base.sha, rules).await {
        Ok(Verdict::Failed(failures)) => Some(notes::code_list(
            &failures.iter().map(|f| &f.name).collect::<Vec<_>>(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_past_its_wait_is_decided_once_a_period_not_each_sweep() {
        let s = Duration::from_secs;
        let every = Duration::from_millis(2500);
        let wait = s(600);
        assert!(!due(s(599), wait, every));
        assert!(!due(s(600), wait, every));
        // Swept every 2.5 s for ten minutes after the wait: one decision each 30 s.
        let decided = (1..=240)
            .map(|i| Duration::from_millis(600_000 + i * 2500 - 1))
            .filter(|&waited| due(waited, wait, every))
            .count();
        assert_eq!(decided, 20);
        // A wait as short as the sweep is decided on each sweep.
        assert!(due(s(11), s(10), every));
        assert!(due(s(13), s(10), every));
    }

    #[test]
    fn when_the_loop_gives_up() {
        // The first failure always goes to the agent, even one seen on an earlier task.
        assert_eq!(should_give_up(0, 3, Some("a"), "a"), None);
        assert_eq!(should_give_up(1, 3, Some("a"), "b"), None);
        assert_eq!(
            should_give_up(1, 3, Some("a"), "a"),
            Some(GiveUp::NoProgress)
        );
        assert_eq!(
            should_give_up(3, 3, Some("a"), "b"),
            Some(GiveUp::OutOfRounds(3))
        );
        assert_eq!(
            should_give_up(0, 0, None, "a"),
            Some(GiveUp::OutOfRounds(0))
        );
    }
}
