//! After a crash, or another replica's death: tasks whose worker is gone (lease expired while
//! preparing, running, pushing or fixing) are found and dealt with. One that had not reached its
//! agent goes back to the queue; one whose agent container still runs is resumed there; any
//! other ends as failed. Containers (with their volumes and networks) of tasks that are over (or
//! unknown to the store) are removed.
//! Only the replica that takes a task's expired lease acts on it.

use tracing::{info, warn};

use super::run::Start;
use crate::context::Ctx;
use crate::docker::{Engine, TaskContainer};
use crate::domain::TaskState;
use crate::entities::task;
use crate::lifecycle::Move;
use crate::lifecycle::requests::Asking;
use crate::store::tasks;
use crate::texts::{failures, notes};

/// A task found mid-run with no live worker, whose agent container still runs.
pub struct Resumable {
    pub task: task::Model,
    container: TaskContainer,
}

/// Look for abandoned tasks and orphaned containers; the tasks to resume here.
pub async fn reconcile(ctx: &Ctx) -> Vec<Resumable> {
    let engine = Engine::connect(ctx.config.docker_host.as_deref())
        .await
        .ok();
    let mut resumable = Vec::new();
    match tasks::abandoned(&ctx.db).await {
        Ok(abandoned) => {
            for task in abandoned {
                if ctx.lifecycle.local.contains(task.id) {
                    continue;
                }
                if let Some(found) = recover(ctx, engine.as_ref(), task).await {
                    resumable.push(found);
                }
            }
        }
        Err(e) => warn!(error = %e, "looking for abandoned tasks failed"),
    }
    if let Some(engine) = engine {
        remove_orphans(ctx, &engine).await;
    }
    resumable
}

/// Remove the containers, volumes and task networks of tasks that are over, or that the store
/// does not know. The store's gateway belongs to no task and stays.
async fn remove_orphans(ctx: &Ctx, engine: &Engine) {
    let owned = match engine.owned(Some(&ctx.store_label)).await {
        Ok(owned) => owned,
        Err(e) => {
            warn!(error = %e, "listing the service's containers failed");
            return;
        }
    };
    for (public_id, container) in owned {
        let over = match tasks::get_by_public_id(&ctx.db, &public_id).await {
            Ok(Some(task)) => task.state.is_terminal(),
            Ok(None) => true,
            Err(_) => false,
        };
        if over {
            info!(task = %public_id, container = %container.id, "removing an orphaned container");
            engine.remove(&container).await;
        }
    }
}

/// Take the expired lease of `task` in its current state: `true` when this replica holds it.
async fn claim(ctx: &Ctx, task: &task::Model) -> bool {
    match tasks::take_over(
        &ctx.db,
        task.id,
        task.state,
        &ctx.instance_id,
        ctx.lease_ms(),
    )
    .await
    {
        Ok(won) => won,
        Err(e) => {
            warn!(task_id = %task.id, error = %e, "taking over an abandoned task failed");
            false
        }
    }
}

async fn recover(ctx: &Ctx, engine: Option<&Engine>, task: task::Model) -> Option<Resumable> {
    if task.state == TaskState::Preparing {
        if !claim(ctx, &task).await {
            return None;
        }
        // A stop asked for while it was being prepared still holds.
        if task.stop_requested_at.is_some() {
            let note = task.stop_note.clone().unwrap_or_else(notes::stopped);
            let mv = Move::to(TaskState::Cancelled).saying(&note);
            if let Err(e) = ctx.lifecycle.transition(&task, mv).await {
                warn!(task_id = %task.id, error = %e, "ending an abandoned task that was stopped failed");
            }
            return None;
        }
        // Nothing was done that cannot be done again.
        warn!(task_id = %task.id, "the task's worker is gone before its agent started; queueing it again");
        let reason = notes::requeued_after_restart();
        let mv = Move::to(TaskState::Queued).reason(&reason);
        if let Err(e) = ctx.lifecycle.transition(&task, mv).await {
            warn!(task_id = %task.id, error = %e, "queueing an abandoned task failed");
        }
        return None;
    }
    if matches!(
        task.state,
        TaskState::Running | TaskState::Pushing | TaskState::Fixing
    ) {
        // Whether the container survived decides between resuming and failing, so an engine
        // that cannot be asked now means: look again later.
        let Some(engine) = engine else {
            warn!(task_id = %task.id, "the Docker engine cannot be reached; an abandoned task waits");
            return None;
        };
        match engine
            .running_agent_container(&ctx.store_label, &task.public_id)
            .await
        {
            // Resumed by whichever replica takes the lease first (see `take_over`).
            Ok(Some(container)) => return Some(Resumable { task, container }),
            Ok(None) => {}
            Err(e) => {
                warn!(task_id = %task.id, error = %e, "looking for an abandoned task's container failed; it waits");
                return None;
            }
        }
    }
    if !claim(ctx, &task).await {
        return None;
    }
    warn!(task_id = %task.id, state = %task.state, "the task's worker and container are gone; ending it");
    let note = failures::container_lost();
    match ctx
        .lifecycle
        .transition(&task, Move::to(TaskState::Failed).saying(&note))
        .await
    {
        // What people asked meanwhile starts again in a new container, with the same thread.
        Ok(Some(_)) => {
            if let Err(e) = ctx
                .lifecycle
                .take_requests(&task, Asking::AfterRun, None)
                .await
            {
                warn!(task_id = %task.id, error = %e, "starting a round for the requests made meanwhile failed");
            }
        }
        Ok(None) => {}
        Err(e) => warn!(task_id = %task.id, error = %e, "ending an abandoned task failed"),
    }
    None
}

/// Take the lease of a task to resume; `None` when another worker got it first.
pub async fn take_over(ctx: &Ctx, r: Resumable) -> Option<(task::Model, Start)> {
    if !claim(ctx, &r.task).await {
        return None;
    }
    let task = tasks::get(&ctx.db, r.task.id).await.ok().flatten()?;
    warn!(task_id = %task.id, state = %task.state, "resuming a task whose worker is gone");
    Some((task, Start::Resume(r.container)))
}
