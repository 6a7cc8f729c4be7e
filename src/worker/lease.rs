//! Keeping a running task's claim: the lease is renewed every third of `TASK_LEASE`, and a stop
//! asked through the database (a `/amp stop` taken by another replica) stops the run.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::domain::{LogLine, TaskId};
use crate::store::tasks;

/// How often a running task checks the database for a stop asked on another replica.
const STOP_CHECK: Duration = Duration::from_secs(2);

/// Renews a task's lease while its run goes on.
pub struct LeaseKeeper {
    handle: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Stop renewing (the lease then runs out on its own, or is released).
    pub async fn end(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

/// Renew `task_id`'s lease until [`LeaseKeeper::end`]; cancel `stop` when a stop is asked
/// through the database.
pub fn keep(ctx: &Ctx, task_id: TaskId, stop: CancellationToken) -> LeaseKeeper {
    let ctx = ctx.clone();
    let handle = tokio::spawn(async move {
        let renew_every = Duration::from_millis(ctx.lease_ms() as u64 / 3);
        let check_every = STOP_CHECK.min(renew_every);
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(check_every).await;
            if !stop.is_cancelled()
                && let Ok(true) = tasks::stop_requested(&ctx.db, task_id).await
            {
                info!(%task_id, "a stop was requested through the database");
                let line = LogLine::info("Stop requested (received by another replica)");
                ctx.lifecycle.log(task_id, line).await;
                stop.cancel();
            }
            if renewed.elapsed() < renew_every {
                continue;
            }
            renewed = tokio::time::Instant::now();
            match tasks::renew_lease(&ctx.db, task_id, &ctx.instance_id, ctx.lease_ms()).await {
                Ok(true) => {}
                Ok(false) => warn!(%task_id, "the task's lease was taken over"),
                Err(e) => warn!(%task_id, error = %e, "renewing the task's lease failed"),
            }
        }
    });
    LeaseKeeper { handle }
}
