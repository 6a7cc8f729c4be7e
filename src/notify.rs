//! What replicas sharing one PostgreSQL tell each other, through `LISTEN`/`NOTIFY` (the
//! triggers are in the migrations):
//!
//! - task events were stored (`amp_task_events`, `"<task_id> <lowest new seq>"`, once per
//!   statement): when someone here watches that task, the new events are read from the store
//!   and published on this replica's bus, so a status page open on one replica streams a task
//!   running on another;
//! - work is waiting (`amp_work`): `queued` when a task becomes claimable, so an idle replica
//!   claims it at once; `handed-back` when a draining replica let go of a running task, so
//!   another takes it over without waiting for the lease to run out.
//!
//! Notifications are hints. The store is the record: a viewer that misses one sees the gap at
//! the next event and reads it from the store, and after a lost connection every watched
//! task is read again from its last published event.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgListener, PgNotification};
use tracing::{debug, info, warn};

use crate::bus::Published;
use crate::context::Ctx;
use crate::domain::TaskId;
use crate::store::tasks::{self, EVENTS_CHANNEL, HANDED_BACK, WORK_CHANNEL};

/// Notifications handled together (events of one task are read in one query).
const BATCH: usize = 256;
/// Events read per task and query.
const PAGE: u64 = 500;

/// Listen until shutdown; reconnects when the connection drops. On SQLite there is nobody to
/// listen to, and this returns at once.
pub async fn listen(ctx: Ctx) {
    if !crate::db::is_postgres(&ctx.db) {
        return;
    }
    let mut wait = Duration::from_millis(200);
    loop {
        let connected = tokio::select! {
            connected = connect(&ctx.config.database_url) => connected,
            _ = ctx.shutdown.cancelled() => return,
        };
        let mut listener = match connected {
            Ok(listener) => listener,
            Err(e) => {
                warn!(error = %e, ?wait, "listening for other replicas' notifications failed; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.shutdown.cancelled() => return,
                }
                wait = (wait * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        wait = Duration::from_millis(200);
        debug!("listening for other replicas' notifications");
        // Whatever happened while not listening: read it from the store.
        catch_up_all(&ctx).await;
        ctx.lifecycle.wakeups.worker.notify_one();
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = ctx.shutdown.cancelled() => return,
            };
            match received {
                Ok(Some(first)) => {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match listener.next_buffered() {
                            Some(n) => batch.push(n),
                            None => break,
                        }
                    }
                    handle(&ctx, batch).await;
                }
                Ok(None) => {
                    // Connect afresh, then read what was missed (after connecting, so nothing
                    // falls between the two).
                    info!("the notification connection dropped; reconnecting");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "receiving notifications failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all([EVENTS_CHANNEL, WORK_CHANNEL]).await?;
    Ok(listener)
}

async fn handle(ctx: &Ctx, batch: Vec<PgNotification>) {
    // The lowest new sequence number per watched task.
    let mut first_new: HashMap<TaskId, i64> = HashMap::new();
    for n in &batch {
        match n.channel() {
            EVENTS_CHANNEL => {
                let Some((task_id, seq)) = n
                    .payload()
                    .split_once(' ')
                    .and_then(|(t, s)| Some((TaskId(t.parse().ok()?), s.parse::<i64>().ok()?)))
                else {
                    continue;
                };
                if let Some(last) = ctx.bus.watched(task_id)
                    && seq > last
                {
                    let entry = first_new.entry(task_id).or_insert(seq);
                    *entry = (*entry).min(seq);
                }
            }
            WORK_CHANNEL => {
                if n.payload() == HANDED_BACK {
                    ctx.reconcile_soon.store(true, Ordering::Relaxed);
                }
                ctx.lifecycle.wakeups.worker.notify_one();
            }
            _ => {}
        }
    }
    for (task_id, seq) in first_new {
        let last = ctx.bus.watched(task_id).unwrap_or(0);
        // Published here already (stored by this replica, or read for an earlier
        // notification): only what is newer is read.
        forward(ctx, task_id, last.max(seq - 1)).await;
    }
}

/// Read a watched task's events after `after` from the store and publish them here, page by
/// page until caught up (one notification stands for all the events a statement stored).
async fn forward(ctx: &Ctx, task_id: TaskId, mut after: i64) {
    loop {
        match tasks::events_after(&ctx.db, task_id, after, PAGE).await {
            Ok(events) => {
                let full = events.len() as u64 == PAGE;
                for e in events {
                    after = e.seq;
                    ctx.bus.publish(Published::of(&e));
                }
                if !full {
                    return;
                }
            }
            Err(e) => {
                warn!(%task_id, error = %e, "reading another replica's task events failed");
                return;
            }
        }
    }
}

async fn catch_up_all(ctx: &Ctx) {
    for (task_id, last) in ctx.bus.watched_tasks() {
        forward(ctx, task_id, last).await;
    }
}
