//! The delivery worker: drains the durable inbox.
//!
//! Intake wakes it after each stored delivery; a periodic sweep picks up anything else (deliveries
//! left by a process that died, retries whose time has come, another replica's expired leases).
//! Deliveries of a batch are handled concurrently and their outcomes written in one transaction.

use std::time::Duration;

use futures::StreamExt;
use tracing::{Instrument, error, info_span, warn};

use crate::context::Ctx;
use crate::dispatch;
use crate::store::deliveries::{self, Outcome};

/// How long a claim is held before another worker may take the delivery over.
const LEASE_MS: i64 = 5 * 60 * 1000;
const BATCH: u64 = 64;
const CONCURRENCY: usize = 16;
/// The backstop sweep interval.
const SWEEP: Duration = Duration::from_secs(5);
/// After this many failed attempts a delivery is marked failed and kept for inspection.
pub const MAX_ATTEMPTS: i32 = 5;

/// Run until shutdown is requested; the batch in hand is finished first.
pub async fn run(ctx: Ctx) {
    // When the earliest retry scheduled by this worker is due (sooner than the sweep).
    let mut next_retry: Option<tokio::time::Instant> = None;
    loop {
        if ctx.shutdown.is_cancelled() {
            return;
        }
        let batch = match deliveries::claim(&ctx.db, &ctx.instance_id, LEASE_MS, BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                error!(error = %e, "claiming deliveries failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.shutdown.cancelled() => return,
                }
                continue;
            }
        };
        if batch.is_empty() {
            let sweep = tokio::time::Instant::now() + SWEEP;
            let wake = next_retry.take().map_or(sweep, |due| due.min(sweep));
            tokio::select! {
                _ = ctx.inbox_wakeup.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = ctx.shutdown.cancelled() => return,
            }
            continue;
        }
        let outcomes: Vec<(i64, Outcome)> = futures::stream::iter(batch)
            .map(|claimed| {
                let ctx = ctx.clone();
                let span = info_span!("delivery", delivery_id = %claimed.delivery_id, event = %claimed.event);
                async move {
                    let outcome = match dispatch::handle(&ctx, &claimed).await {
                        Ok(outcome) => outcome,
                        Err(e) => {
                            let give_up = claimed.attempts >= MAX_ATTEMPTS;
                            error!(error = format!("{e:#}"), attempt = claimed.attempts, give_up, "processing the delivery failed");
                            if give_up {
                                dispatch::gave_up(&ctx, &claimed).await;
                            }
                            Outcome::Error {
                                message: format!("{e:#}"),
                                retry_after_ms: ctx.tunables.inbox_retry_base.as_millis() as i64
                                    * 2i64.pow(claimed.attempts.clamp(0, 8) as u32),
                                give_up,
                            }
                        }
                    };
                    (claimed.id, outcome)
                }
                .instrument(span)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (_, outcome) in &outcomes {
            if let Outcome::Error {
                retry_after_ms,
                give_up: false,
                ..
            } = outcome
            {
                // A little after the retry time, so the claim finds it due.
                let due =
                    tokio::time::Instant::now() + Duration::from_millis(*retry_after_ms as u64 + 5);
                next_retry = Some(next_retry.map_or(due, |d| d.min(due)));
            }
        }
        if let Err(e) = deliveries::finish(&ctx.db, &ctx.instance_id, &outcomes).await {
            // The leases expire and the deliveries are processed again; handling is idempotent.
            warn!(error = %e, "recording delivery outcomes failed");
        }
    }
}
