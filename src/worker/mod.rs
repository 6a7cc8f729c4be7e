//! The worker: claims queued tasks and rounds and runs each in its own agent container.
//!
//! - [`mod@self`]: the scheduler (slots, claims, drain at shutdown);
//! - [`lease`]: keeping a running task's claim, and stops asked through the database;
//! - [`recovery`]: tasks whose worker is gone, and orphaned containers;
//! - [`run`]: one run of a task, start to end;
//! - [`job`]: what the stages of a run share;
//! - [`target`]: where the work goes (a new branch, or a pull request's);
//! - [`image`]: the agent's image, the service's or the repository's (with the CLI provided);
//! - [`workspace`]: the container and everything run in it;
//! - [`setup`]: the repository's setup commands, in a new workspace before the agent, and
//!   [`snapshot`]: the container saved after setup, for the next task to start from;
//! - [`agent_turn`]: one turn of the agent, and [`agent_log`]: its output into the log, bounded;
//! - [`publish`]: commit, push, pull request;
//! - [`outcome`]: how a run ends, decided from what happened.

pub mod agent_log;
pub mod agent_turn;
pub mod image;
pub mod job;
pub mod lease;
pub mod outcome;
pub mod publish;
pub mod recovery;
pub mod run;
pub mod setup;
pub mod snapshot;
pub mod target;
pub mod workspace;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{Instrument, error, info, info_span, warn};

use crate::context::Ctx;
use recovery::Resumable;
use run::Start;

/// The backstop interval between claims when nothing wakes the worker.
const SWEEP: Duration = Duration::from_secs(5);
/// How often orphaned containers and abandoned tasks are looked for.
const RECONCILE: Duration = Duration::from_secs(30);
/// How long handing back the running tasks may take at shutdown (after `DRAIN_TIMEOUT`); a
/// platform's stop timeout must leave room for both.
pub const HAND_BACK_WAIT: Duration = Duration::from_secs(10);
/// Claim and run tasks until shutdown, at most `MAX_CONCURRENT_TASKS` at once. Tasks whose
/// worker died while their container lived on are resumed first. At shutdown no more tasks
/// are claimed; see [`drain`].
pub async fn run(ctx: Ctx) {
    let slots = Arc::new(Semaphore::new(ctx.config.max_concurrent_tasks));
    let mut resumable: VecDeque<Resumable> = recovery::reconcile(&ctx).await.into();
    let mut last_reconcile = tokio::time::Instant::now();
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = ctx.shutdown.cancelled() => return drain(&ctx, &slots).await,
        };
        if ctx.shutdown.is_cancelled() {
            drop(permit);
            return drain(&ctx, &slots).await;
        }
        let handed_back = ctx
            .reconcile_soon
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        if handed_back || last_reconcile.elapsed() >= RECONCILE.min(ctx.config.task_lease) {
            for found in recovery::reconcile(&ctx).await {
                if !resumable.iter().any(|r| r.task.id == found.task.id) {
                    resumable.push_back(found);
                }
            }
            last_reconcile = tokio::time::Instant::now();
        }
        let next = match resumable.pop_front() {
            Some(r) => recovery::take_over(&ctx, r).await,
            None => match ctx
                .lifecycle
                .claim_next(&ctx.instance_id, ctx.lease_ms())
                .await
            {
                Ok(claimed) => claimed.map(|task| (task, Start::Fresh)),
                Err(e) => {
                    error!(error = %e, "claiming a task failed");
                    None
                }
            },
        };
        if let Some((task, start)) = next {
            let ctx = ctx.clone();
            let span = info_span!("task", task_id = %task.id, public_id = %task.public_id, repo = %task.repo_full_name);
            tokio::spawn(
                async move {
                    run::execute(&ctx, task, start).await;
                    drop(permit);
                }
                .instrument(span),
            );
            continue;
        }
        drop(permit);
        if !resumable.is_empty() {
            continue;
        }
        tokio::select! {
            _ = ctx.lifecycle.wakeups.worker.notified() => {}
            _ = tokio::time::sleep(SWEEP) => {}
            _ = ctx.shutdown.cancelled() => return drain(&ctx, &slots).await,
        }
    }
}

/// Shutting down: running tasks get `DRAIN_TIMEOUT` to finish; those still running then are
/// handed back (their lease released, their containers left running), for another replica to
/// take over at once, or this one at its next start.
async fn drain(ctx: &Ctx, slots: &Arc<Semaphore>) {
    let all = ctx.config.max_concurrent_tasks as u32;
    // A task just claimed may not be in the local runs yet, but it holds its slot.
    if slots.available_permits() == all as usize {
        return;
    }
    let running = ctx.lifecycle.local.len();
    let grace = ctx.config.drain_timeout;
    info!(
        running,
        ?grace,
        "draining: no new tasks are claimed; running tasks may finish"
    );
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_ok()
    {
        info!("drained: every running task finished");
        return;
    }
    info!(
        running = ctx.lifecycle.local.len(),
        "handing back the tasks still running"
    );
    ctx.handoff.cancel();
    if tokio::time::timeout(HAND_BACK_WAIT, slots.acquire_many(all))
        .await
        .is_err()
    {
        warn!("some tasks did not let go in time; their leases expire on their own");
    }
}
