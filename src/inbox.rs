//! The delivery worker: drains the durable inbox.
//!
//! Intake wakes it after each stored delivery; a periodic sweep picks up anything else (deliveries
//! left by a process that died, retries whose time has come, another replica's expired leases).
//! Up to [`CONCURRENCY`] deliveries are handled at once, claimed as room frees up (taking turns
//! between installations, see [`deliveries::claim`]), and each outcome is written as soon as it
//! is known: one slow delivery holds up nobody else's. A delivery whose GitHub calls meet a rate
//! limit longer than [`RATE_LIMIT_PATIENCE`] is put back until the limit resets, without using up
//! an attempt.

use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{Instrument, error, info_span, warn};

use crate::context::Ctx;
use crate::dispatch;
use crate::github::{self, GitHubError};
use crate::store::deliveries::{self, Claimed, Outcome};

/// How long a claim is held before another worker may take the delivery over.
const LEASE_MS: i64 = 5 * 60 * 1000;
/// Deliveries handled at once by this process.
const CONCURRENCY: usize = 16;
/// The backstop sweep interval.
const SWEEP: Duration = Duration::from_secs(5);
/// The longest a delivery's GitHub call waits out a rate limit; a longer limit puts the delivery
/// back until it resets.
const RATE_LIMIT_PATIENCE: Duration = Duration::from_secs(10);
/// After this many failed attempts a delivery is marked failed and kept for inspection.
pub const MAX_ATTEMPTS: i32 = 5;

/// Run until shutdown is requested; the deliveries in hand are finished first.
pub async fn run(ctx: Ctx) {
    // Each delivery is its own task, so it goes on while this loop waits for the database.
    let mut in_flight: JoinSet<(i64, Outcome)> = JoinSet::new();
    // When the earliest retry scheduled by this worker is due (sooner than the sweep).
    let mut next_retry: Option<tokio::time::Instant> = None;
    let mut claim_now = true;
    loop {
        let stopping = ctx.shutdown.is_cancelled();
        if stopping && in_flight.is_empty() {
            return;
        }
        let room = CONCURRENCY - in_flight.len();
        if claim_now && !stopping && room > 0 {
            claim_now = false;
            match deliveries::claim(&ctx.db, &ctx.instance_id, LEASE_MS, room as u64).await {
                Ok(batch) => {
                    for claimed in batch {
                        in_flight.spawn(handle(ctx.clone(), claimed));
                    }
                }
                Err(e) => {
                    error!(error = %e, "claiming deliveries failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = ctx.shutdown.cancelled() => {}
                    }
                    claim_now = true;
                    continue;
                }
            }
        }
        let room = in_flight.len() < CONCURRENCY && !stopping;
        let sweep = tokio::time::Instant::now() + SWEEP;
        let wake = next_retry.map_or(sweep, |due| due.min(sweep));
        let first = tokio::select! {
            Some(done) = in_flight.join_next() => done,
            _ = ctx.inbox_wakeup.notified(), if room => {
                claim_now = true;
                continue;
            }
            _ = tokio::time::sleep_until(wake), if room => {
                if next_retry.is_some_and(|due| due <= tokio::time::Instant::now()) {
                    next_retry = None;
                }
                claim_now = true;
                continue;
            }
            _ = ctx.shutdown.cancelled(), if !stopping => continue,
        };
        // Whatever else has finished meanwhile is written with it. A handler that could not
        // finish (it panicked: logged by `handle`'s caller here) keeps its lease, which expires,
        // and the delivery is handled again.
        let mut outcomes = Vec::new();
        for done in std::iter::once(first).chain(std::iter::from_fn(|| in_flight.try_join_next())) {
            match done {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    error!(error = %e, "handling a delivery ended abnormally; its lease will expire and it is handled again")
                }
            }
        }
        for (_, outcome) in &outcomes {
            let retry_ms = match outcome {
                Outcome::Error {
                    retry_after_ms,
                    give_up: false,
                    ..
                } => *retry_after_ms,
                Outcome::Later { due_in_ms, .. } => *due_in_ms,
                _ => continue,
            };
            // A little after the retry time, so the claim finds it due.
            let due = tokio::time::Instant::now() + Duration::from_millis(retry_ms as u64 + 5);
            next_retry = Some(next_retry.map_or(due, |d| d.min(due)));
        }
        if let Err(e) = deliveries::finish(&ctx.db, &ctx.instance_id, &outcomes).await {
            // The leases expire and the deliveries are processed again; handling is idempotent.
            warn!(error = %e, "recording delivery outcomes failed");
        }
        claim_now = true;
    }
}

/// Handle one claimed delivery: what became of it.
async fn handle(ctx: Ctx, claimed: Claimed) -> (i64, Outcome) {
    let span = info_span!("delivery", delivery_id = %claimed.delivery_id, event = %claimed.event);
    async move {
        let handled =
            github::with_rate_limit_patience(RATE_LIMIT_PATIENCE, dispatch::handle(&ctx, &claimed))
                .await;
        let outcome = match handled {
            Ok(outcome) => outcome,
            Err(e) => match rate_limited_for(&e) {
                Some(wait) => {
                    warn!(
                        error = format!("{e:#}"),
                        "put back until GitHub's rate limit resets"
                    );
                    Outcome::Later {
                        reason: format!("{e:#}"),
                        due_in_ms: wait.as_millis() as i64,
                    }
                }
                None => {
                    let give_up = claimed.attempts >= MAX_ATTEMPTS;
                    error!(
                        error = format!("{e:#}"),
                        attempt = claimed.attempts,
                        give_up,
                        "processing the delivery failed"
                    );
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
            },
        };
        (claimed.id, outcome)
    }
    .instrument(span)
    .await
}

/// How long GitHub's rate limit holds the call that stopped `error`, if that is what stopped it.
fn rate_limited_for(error: &anyhow::Error) -> Option<Duration> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<GitHubError>())
        .and_then(GitHubError::rate_limited_for)
}
