//! One run of a task, start to end: its container and workspace, the agent's turn, publishing,
//! and how the run ends. Stops, the task timeout and a draining replica cut a run short; however
//! it ends, the lifecycle records it (and removes what must go).

use std::time::Duration;

use secrecy::SecretString;
use tracing::{error, info, warn};

use super::image::{self, Lack};
use super::job::{Job, container_spec, github_failure};
use super::lease;
use super::outcome::{End, Facts, Next, next_step};
use super::publish;
use super::snapshot;
use super::target::{self, Target};
use super::workspace::{Seed, ShellError, StartError, Workspace};
use crate::agent::stream::TurnOutcome;
use crate::context::Ctx;
use crate::docker::{DockerError, Engine, TaskContainer};
use crate::domain::{BlockedEgress, Failure, TaskState};
use crate::entities::{task, task_round};
use crate::github::GitHub;
use crate::lifecycle::Move;
use crate::lifecycle::requests::Asking;
use crate::repo_config::{self, Effective, SetupFailure};
use crate::store::{rounds, tasks};
use crate::texts::{failures, prompts};

/// How a run begins.
pub enum Start {
    /// A task claimed from the queue, or a round claimed for a task whose container is gone.
    Fresh,
    /// A task whose worker died while its container lived on.
    Resume(TaskContainer),
}

/// Run a task claimed by this replica, until it ends or is handed back.
pub async fn execute(ctx: &Ctx, task: task::Model, start: Start) {
    let task_id = task.id;
    let stop = ctx.lifecycle.local.insert(task_id);
    let keeper = lease::keep(ctx, task_id, stop.clone());
    let mut run = Job {
        ctx,
        state: task.state,
        journal: ctx.lifecycle.journal(task.id),
        pushed: None,
        continued_branch: false,
        task,
    };
    run.journal
        .info(&format!("Picked up by replica {}", ctx.instance_id))
        .await;
    let timeout = ctx.config.task_timeout;
    let end = tokio::select! {
        // A run that has finished is not handed back or stopped after the fact.
        biased;
        end = drive(&mut run, start) => end,
        _ = stop.cancelled() => End::Stopped(stop_note(ctx, task_id).await),
        _ = ctx.handoff.cancelled() => End::HandedBack,
        _ = tokio::time::sleep(timeout) => End::TimedOut(failures::task_too_long(timeout)),
    };
    // The lease is kept until the final state is stored: no other replica takes the task over
    // while it is being wound up. A task handed back lets go of it.
    match end {
        End::HandedBack => {
            keeper.end().await;
            hand_back(&run).await;
        }
        end => {
            finish(&mut run, end).await;
            keeper.end().await;
        }
    }
    ctx.lifecycle.local.remove(run.task.id);
    // A stop that came while the run was winding up (nothing listened for it any more) ends the
    // task now, if the run left it waiting for CI.
    let Ok(Some(task)) = tasks::get(&ctx.db, run.task.id).await else {
        return;
    };
    if task.state == TaskState::AwaitingCi
        && (stop.is_cancelled() || task.stop_requested_at.is_some())
    {
        if let Err(e) = ctx.lifecycle.stop(&task).await {
            warn!(task_id = %task.id, error = %e, "ending a stopped task failed");
        }
        return;
    }
    // What people asked while the round ran starts the next one (not after a stop: that
    // dropped them).
    if stop.is_cancelled() || task.stop_requested_at.is_some() {
        return;
    }
    if let Err(e) = ctx
        .lifecycle
        .take_requests(&task, Asking::AfterRun, None)
        .await
    {
        warn!(task_id = %task.id, error = %e, "starting a round for the requests made meanwhile failed");
    }
}

/// Why a stop was asked for the task, when not with `/amp stop`.
async fn stop_note(ctx: &Ctx, task_id: crate::domain::TaskId) -> Option<String> {
    match tasks::get(&ctx.db, task_id).await {
        Ok(task) => task.and_then(|t| t.stop_note),
        Err(e) => {
            warn!(%task_id, error = %e, "reading why the task was stopped failed");
            None
        }
    }
}

/// Everything a run does, in order; how it ended.
async fn drive(run: &mut Job<'_>, start: Start) -> End {
    let ctx = run.ctx;
    let Some(amp_key) = ctx.config.amp_api_key.clone() else {
        return failures::no_amp_key().into();
    };
    let Some(github) = ctx.github() else {
        return failures::no_github_app().into();
    };
    // The repository's configuration the task was started with.
    let bounds = repo_config::Bounds::from_config(&ctx.config);
    let config = match repo_config::of_task(&run.task, &bounds) {
        Ok(config) => config,
        Err(problems) => return failures::config_out_of_bounds(&problems).into(),
    };
    let target = match target::resolve(&github, &run.task).await {
        Ok(target) => target,
        Err(failure) => return failure.into(),
    };
    let engine = match Engine::connect(ctx.config.docker_host.as_deref()).await {
        Ok(engine) => engine,
        Err(e) => return Failure::internal("the Docker engine cannot be reached", e).into(),
    };
    let round = match rounds::pending(&ctx.db, run.task.id).await {
        Ok(round) => round,
        Err(e) => return Failure::internal("reading the task's rounds failed", e).into(),
    };
    let (ws, opened) = match open_workspace(run, &github, engine, &target, start, &config).await {
        Ok(opened) => opened,
        Err(end) => return end,
    };
    let resumed = opened == Opened::Resumed;
    let prompt = match &round {
        Some(round) => round.prompt.clone(),
        None => prompts::with_instructions(
            prompts::agent_prompt(&run.task, &target.branch),
            config.instructions.value.as_deref(),
        ),
    };
    if round.is_none() && !resumed {
        let waited = (crate::db::now_ms() - run.task.created_at).max(0) as u64;
        crate::metrics::METRICS
            .agent_start
            .observe(Duration::from_millis(waited));
    }
    let prompt = if resumed {
        prompts::resumed(&prompt)
    } else {
        prompt
    };
    if let Some(workdir) = &config.workdir.value
        && let Err(e) = ws
            .sh("test -d \"$DIR\"", vec![format!("DIR={workdir}")])
            .await
    {
        return match e {
            ShellError::Failed(_) => failures::workdir_missing(workdir).into(),
            ShellError::Docker(e) => {
                Failure::internal("looking for the working directory failed", e).into()
            }
        };
    }
    // A new container is set up as the repository says before the agent starts in it (and one
    // whose run was cut off before its setup was through, when it resumes).
    let save_as = match &opened {
        Opened::New { save_as } => Some(save_as.clone()),
        Opened::Resumed if !config.setup.value.is_empty() && !setup_done(&ws).await => Some(None),
        _ => None,
    };
    let prompt = if let Some(save_as) = save_as {
        match super::setup::run(ctx, &ws, &run.journal, &run.task, &amp_key, &config).await {
            Ok(None) => {
                mark_setup_done(&ws).await;
                if let Some(key) = save_as {
                    save_snapshot(run, &ws, &key).await;
                }
                prompt
            }
            Ok(Some(failed)) if config.setup_failure.value == SetupFailure::Continue => {
                mark_setup_done(&ws).await;
                run.journal
                    .info(&format!(
                        "Setup command {} failed; the agent starts anyway (setup_failure = \"continue\")",
                        failed.number
                    ))
                    .await;
                prompts::with_setup_failure(prompt, &failed)
            }
            Ok(Some(failed)) => return failures::setup_failed(&failed).into(),
            Err(end) => return end,
        }
    } else {
        prompt
    };
    let turn = Turn {
        prompt,
        round: round.as_ref(),
        config: &config,
    };
    let end = match work(run, &ws, &github, &amp_key, &target, turn).await {
        Ok(end) | Err(end) => end,
    };
    // Record how the round went (a failed run leaves it pending, for `/amp retry`).
    if let Some(round) = &round
        && let Some(outcome) = end.round_outcome(run.pushed.is_some())
        && let Err(e) = rounds::finish(&ctx.db, round.id, outcome, run.pushed.as_ref()).await
    {
        return Failure::internal("recording how the round went failed", e).into();
    }
    end
}

/// How the workspace of a run came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Opened {
    /// A new container, freshly cloned; its setup, once it succeeds, is saved as the snapshot of
    /// `save_as` (`None`: no setup, or no key could be made).
    New { save_as: Option<String> },
    /// A new container from a setup snapshot, freshly cloned with the snapshot's workspace files
    /// unpacked: setup is done.
    FromSnapshot,
    /// The task's container, still running from its last round.
    Continued,
    /// The container of an interrupted run.
    Resumed,
}

/// The workspace the run works in, and how it came to be. A round continues in the task's
/// container while it still runs; a task resumed after a restart goes on in its surviving
/// container; anything else starts a new container and clones.
async fn open_workspace(
    run: &mut Job<'_>,
    github: &GitHub,
    engine: Engine,
    target: &Target,
    start: Start,
    config: &Effective,
) -> Result<(Workspace, Opened), End> {
    let ctx = run.ctx;
    let mut spec = container_spec(ctx, &run.task, &config.image.value);
    let own_image = config.image.source == repo_config::Source::File;
    if own_image {
        spec.cli_volume = Some(image::cli_volume(&engine, &spec).await.map_err(|e| {
            Failure::internal("providing the Amp CLI to the repository's image failed", e)
        })?);
    }
    let journal = run.journal.clone();
    if let Start::Resume(container) = start {
        run.journal.info("This task's previous worker is gone (a restart, a crash, or a replica that handed it over); resuming it in its container").await;
        let ws = Workspace::reopen(engine, spec, container, ctx.sandbox.clone(), journal)
            .await
            .map_err(|e| Failure::internal("resuming in the agent container failed", e))?;
        // Whatever the interrupted run left running in the container goes first.
        ws.kill_leftovers().await;
        return Ok((ws, Opened::Resumed));
    }
    let alive = if run.state == TaskState::Fixing {
        engine
            .running_agent_container(&ctx.store_label, &run.task.public_id)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    if let Some(container) = alive {
        run.journal.info("Continuing in the task's container").await;
        let ws = Workspace::reopen(engine, spec, container, ctx.sandbox.clone(), journal)
            .await
            .map_err(|e| Failure::internal("continuing in the agent container failed", e))?;
        return Ok((ws, Opened::Continued));
    }
    if own_image {
        pull_if_missing(run, &engine, &spec.image).await?;
    }
    // A setup snapshot for this task, if it has setup: the one to start from, or the key to save
    // one as.
    let key = if config.setup.value.is_empty() {
        None
    } else {
        snapshot_key(run, github, &engine, target, config, &spec.image).await
    };
    let from_snapshot = match &key {
        Some(key) => snapshot::find(&ctx.db, &engine, key).await,
        None => None,
    };
    if let Some(found) = &from_snapshot {
        let age = std::time::Duration::from_secs(
            ((crate::db::now_ms() - found.created_at).max(0) / 1000) as u64,
        );
        run.journal
            .info(&format!(
                "Starting from the setup snapshot {} (saved {} ago): setup is skipped",
                found.image,
                humantime::format_duration(age)
            ))
            .await;
        spec.image = found.image.clone();
    }
    let token = github
        .repo_token(&run.task.repo())
        .await
        .map_err(|e| github_failure("getting a token for the clone failed", &e))?;
    run.journal
        .info(&format!(
            "Starting the agent container ({}) and cloning {}",
            spec.image, run.task.repo_full_name
        ))
        .await;
    let seed = Seed {
        token: &token,
        clone_url: &run.task.clone_url,
        branch: &target.clone_branch,
    };
    let ws = match Workspace::start(engine, spec, ctx.sandbox.clone(), journal, &seed).await {
        Ok(ws) => ws,
        Err(StartError::Docker(DockerError::MissingImage(image))) => {
            return Err(failures::missing_image(&image).into());
        }
        Err(StartError::Docker(DockerError::Api { message, .. }))
            if own_image && image::no_executable(&message) =>
        {
            return Err(failures::image_lacks(&config.image.value, Lack::Shell).into());
        }
        Err(StartError::Docker(e)) => {
            return Err(Failure::internal("starting the agent container failed", e).into());
        }
        Err(StartError::Clone(e)) => {
            return Err(Failure::internal("cloning the repository failed", e).into());
        }
    };
    if own_image {
        let lack = ws
            .image_lacks()
            .await
            .map_err(|e| Failure::internal("checking the repository's image failed", e))?;
        if let Some(lack) = lack {
            return Err(failures::image_lacks(&config.image.value, lack).into());
        }
    }
    prepare(run, &ws, &token, target).await?;
    if let Some(found) = from_snapshot {
        ws.sh(&snapshot::restore_script(), vec![])
            .await
            .map_err(|e| {
                Failure::internal("unpacking the setup snapshot's workspace files failed", e)
            })?;
        if let Err(e) = crate::store::snapshots::used(&ctx.db, &found.key).await {
            warn!(error = %e, "recording a snapshot's use failed");
        }
        return Ok((ws, Opened::FromSnapshot));
    }
    Ok((ws, Opened::New { save_as: key }))
}

/// Where a container records that its setup is through (kept in its snapshot too).
const SETUP_DONE: &str = "/tmp/.amp-orchestrator-setup-done";

async fn setup_done(ws: &Workspace) -> bool {
    ws.sh(&format!("test -f {SETUP_DONE}"), vec![])
        .await
        .is_ok()
}

async fn mark_setup_done(ws: &Workspace) {
    if let Err(e) = ws.sh(&format!("touch {SETUP_DONE}"), vec![]).await {
        warn!(error = %e, "marking the setup done failed");
    }
}

/// The key of the task's setup snapshot (see [`snapshot::key`]); `None` when it cannot be made
/// (the task then runs setup and saves nothing).
async fn snapshot_key(
    run: &Job<'_>,
    github: &GitHub,
    engine: &Engine,
    target: &Target,
    config: &Effective,
    image: &str,
) -> Option<String> {
    let image_id = match engine.image_id(image).await {
        Ok(Some(id)) => id,
        Ok(None) | Err(_) => return None,
    };
    let files = snapshot::cache_files(config);
    match snapshot::file_ids(github, &run.task.repo(), &target.clone_branch, files).await {
        Ok(ids) => Some(snapshot::key(&image_id, config, &ids)),
        Err(e) => {
            warn!(task_id = %run.task.id, error = %e, "reading the cache key's files failed; no setup snapshot");
            None
        }
    }
}

/// Save the container, its setup just done, as the snapshot of `key` (a failure is noted, and
/// the task goes on).
async fn save_snapshot(run: &Job<'_>, ws: &Workspace, key: &str) {
    let ctx = run.ctx;
    let started = std::time::Instant::now();
    if let Err(e) = ws.sh(&snapshot::archive_script(), vec![]).await {
        run.journal
            .info(&format!(
                "The setup snapshot was not saved: archiving the workspace failed ({e})"
            ))
            .await;
        return;
    }
    let limits = snapshot::Limits {
        per_repo: ctx.config.snapshots_per_repo,
        total_bytes: (ctx.config.snapshot_max_gib as i64) << 30,
    };
    let saved = snapshot::save(
        &ctx.db,
        ws.engine(),
        ws.container(),
        run.task.repo_id,
        key,
        limits,
    )
    .await;
    let _ = ws.sh(&format!("rm -f {}", snapshot::ARCHIVE), vec![]).await;
    match saved {
        Ok(bytes) => {
            run.journal
                .info(&format!(
                    "Saved the setup as a snapshot ({:.1} MiB) in {:.1} s: the next task with the same setup and cache key skips it",
                    bytes as f64 / 1_048_576.0,
                    started.elapsed().as_secs_f64()
                ))
                .await
        }
        Err(e) => {
            warn!(task_id = %run.task.id, error = %e, "saving the setup snapshot failed");
            run.journal
                .info("The setup snapshot was not saved (the service's logs say why)")
                .await
        }
    }
}

/// Pull a repository's image the engine does not have yet.
async fn pull_if_missing(run: &Job<'_>, engine: &Engine, name: &str) -> Result<(), End> {
    let present = engine
        .image_exists(name)
        .await
        .map_err(|e| Failure::internal("the Docker engine cannot be reached", e))?;
    if present {
        return Ok(());
    }
    run.journal
        .info(&format!("Pulling the repository's image {name}"))
        .await;
    let started = std::time::Instant::now();
    match engine.pull_image(name, image::PULL_LIMIT).await {
        Ok(()) => {
            run.journal
                .info(&format!(
                    "Pulled {name} in {:.1} s",
                    started.elapsed().as_secs_f64()
                ))
                .await;
            Ok(())
        }
        Err(e) => {
            let said = match &e {
                DockerError::Api { message, .. } => message.clone(),
                other => other.to_string(),
            };
            Err(failures::image_unavailable(name, &run.journal.redact(&said)).into())
        }
    }
}

/// Keep on the task what the sandbox refused during the turn (shown on its page and in its
/// status comment), and say it in the log when it is new.
async fn record_blocked_egress(run: &Job<'_>, ws: &Workspace) {
    let Some(blocked) = ws.blocked_egress().await else {
        return;
    };
    let before = BlockedEgress::from_stored(run.task.egress_blocked.as_deref());
    if blocked.is_empty() || blocked == before {
        return;
    }
    if let Err(e) = tasks::record_blocked_egress(&run.ctx.db, run.task.id, &blocked).await {
        warn!(task_id = %run.task.id, error = %e, "recording the refused connections failed");
    }
    let list = crate::texts::comments::blocked_list(&blocked, |address| address.to_string());
    run.journal
        .info(&format!("The sandbox refused {}", list.join(", ")))
        .await;
}

/// The branch the task works on, in the freshly cloned workspace: a new branch from the default
/// branch (or from the task's branch pushed before), or a pull request's head as cloned.
async fn prepare(
    run: &mut Job<'_>,
    ws: &Workspace,
    token: &SecretString,
    target: &Target,
) -> Result<(), End> {
    if target.pull.is_none() {
        // A task run before may have pushed its branch without getting as far as a pull request
        // (stopped, or failed opening it): go on from that branch, so the next push is a
        // fast-forward. A branch that is not there starts from the default branch.
        let existing = match &run.task.branch {
            None => false,
            Some(_) => ws
                .fetch_if_present(token, &target.branch)
                .await
                .map_err(|e| Failure::internal("looking for the task's branch failed", e))?,
        };
        let start = if existing { "FETCH_HEAD" } else { "HEAD" };
        ws.checkout_new_branch(&target.branch, start)
            .await
            .map_err(|e| Failure::internal("creating the branch failed", e))?;
        if existing {
            run.journal
                .info(&format!(
                    "Continuing on the existing branch {}",
                    target.branch
                ))
                .await;
        }
        run.continued_branch = existing;
    }
    let progress = tasks::Progress {
        branch: Some(target.branch.clone()),
        pr_number: target.pull,
        ..Default::default()
    };
    tasks::record_progress(&run.ctx.db, run.task.id, progress)
        .await
        .map_err(|e| Failure::internal("recording the task's branch failed", e))?;
    Ok(())
}

/// What one turn of the agent is asked and runs with.
struct Turn<'a> {
    prompt: String,
    /// The round it answers (`None`: the task's first turn).
    round: Option<&'a task_round::Model>,
    config: &'a Effective,
}

/// The agent's turn, then commit, push and the pull request.
async fn work(
    run: &mut Job<'_>,
    ws: &Workspace,
    github: &GitHub,
    amp_key: &SecretString,
    target: &Target,
    turn: Turn<'_>,
) -> Result<End, End> {
    let Turn {
        prompt,
        round,
        config,
    } = turn;
    // A CI round stays `fixing` until it pushes; everything else runs as `running`.
    if matches!(run.state, TaskState::Preparing | TaskState::Pushing) {
        run.move_to(TaskState::Running).await?;
    }
    let turn = super::agent_turn::run(
        run.ctx,
        ws,
        &run.journal,
        &run.task,
        amp_key,
        prompt,
        config,
    )
    .await;
    record_blocked_egress(run, ws).await;
    let turn = turn?;
    let summary = match turn {
        TurnOutcome::Succeeded { message, .. } => message,
        TurnOutcome::Failed { reason, .. } => return Err(failures::agent_failed(&reason).into()),
    };
    // Commit what changed (the agent may also have committed, though told not to).
    publish::commit(run, ws, &summary).await?;
    let head = ws
        .head(&target.clone_branch, &run.task.default_branch)
        .await
        .map_err(|e| Failure::internal("reading the workspace failed", e))?;
    let facts = Facts {
        round: round.map(|r| r.kind),
        has_pull: target.pull.is_some(),
        pushed_before: run.task.head_sha.is_some(),
        ahead: head.ahead,
        head_is_last_pushed: run.task.head_sha.as_ref() == Some(&head.sha),
        continued_branch: run.continued_branch,
    };
    match next_step(facts) {
        Next::NeedsHuman => Ok(End::NeedsHuman(failures::no_change_for_ci(&summary))),
        Next::BackToCi => Ok(End::AwaitingCi { summary }),
        Next::NoChanges => Ok(End::NoChanges {
            explanation: summary,
        }),
        Next::Push { .. } => publish::publish(run, ws, github, target, &head, summary).await,
    }
}

/// Record how the run ended (the lifecycle removes the containers of a task that is over and
/// brings the status comment up to date).
async fn finish(run: &mut Job<'_>, end: End) {
    let Some((to, note)) = end.outcome() else {
        return;
    };
    if let End::Failed(Failure::Internal { summary, detail }) = &end {
        error!(task_id = %run.task.id, %summary, detail = %run.journal.redact(detail), "the task failed");
    }
    let level_error = to == TaskState::Failed;
    let note = run.journal.redact(&note);
    if level_error {
        run.journal.error(&note).await;
    } else {
        run.journal.info(&note).await;
    }
    let moved = run
        .ctx
        .lifecycle
        .transition_from(&run.task, run.state, Move::to(to).saying(&note))
        .await;
    match moved {
        Ok(Some(_)) => {
            run.state = to;
            info!(state = %to, "task run ended");
        }
        Ok(None) => error!(%to, "the task's final state could not be recorded: it had moved on"),
        Err(e) => error!(%to, error = %e, "the task's final state could not be recorded"),
    }
}

/// Let go of a task at shutdown without ending it: it stays in its state, its container keeps
/// the workspace, and its lease ends now, so the next replica to look resumes it there.
async fn hand_back(run: &Job<'_>) {
    run.journal.info("This replica is shutting down; the task is handed to another replica and resumes in its container").await;
    let ctx = run.ctx;
    match tasks::release_lease(&ctx.db, run.task.id, &ctx.instance_id).await {
        Ok(true) => info!(task_id = %run.task.id, state = %run.state, "task handed back"),
        Ok(false) => warn!(
            task_id = %run.task.id,
            "handing back: the lease was no longer this replica's"
        ),
        Err(e) => {
            warn!(task_id = %run.task.id, error = %e, "handing back failed; the lease expires on its own")
        }
    }
}
