//! Missed-webhook recovery. GitHub does not retry a delivery that failed (the service was down,
//! unreachable or answered 5xx); it only redelivers when asked. On start and every
//! [`EVERY`], the App's recent deliveries are listed, and each one that failed, was never
//! redelivered and is not in the deliveries table is redelivered once. At most
//! [`MAX_PER_SWEEP`] per sweep.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tracing::{info, warn};

use crate::context::Ctx;
use crate::entities::delivery;
use crate::github::HookDelivery;

pub const EVERY: Duration = Duration::from_secs(600);
pub const MAX_PER_SWEEP: usize = 20;

/// One sweep; returns the GitHub ids of the deliveries it asked to be redelivered.
pub async fn sweep(ctx: &Ctx, asked: &mut HashSet<String>) -> anyhow::Result<Vec<i64>> {
    let Some(github) = ctx.github() else {
        return Ok(Vec::new());
    };
    let recent = github
        .hook_deliveries()
        .await
        .context("listing the App's deliveries")?;
    // Every attempt at one delivery shares its guid (the X-GitHub-Delivery header).
    let mut by_guid: HashMap<&str, Vec<&HookDelivery>> = HashMap::new();
    for d in &recent {
        by_guid.entry(d.guid.as_str()).or_default().push(d);
    }
    let mut missed: Vec<&HookDelivery> = by_guid
        .values()
        .filter(|attempts| {
            !attempts
                .iter()
                .any(|a| a.redelivery || (200..300).contains(&a.status_code))
        })
        .filter_map(|attempts| attempts.iter().max_by_key(|a| a.id).copied())
        .filter(|d| !asked.contains(&d.guid))
        .collect();
    if missed.is_empty() {
        return Ok(Vec::new());
    }
    // Those stored after all (answered late, or redelivered by hand) are not missed.
    let guids: Vec<String> = missed.iter().map(|d| d.guid.clone()).collect();
    let stored: HashSet<String> = delivery::Entity::find()
        .filter(delivery::Column::DeliveryId.is_in(guids))
        .all(&ctx.db)
        .await
        .context("reading the deliveries table")?
        .into_iter()
        .map(|d| d.delivery_id)
        .collect();
    missed.retain(|d| !stored.contains(&d.guid));
    missed.sort_by_key(|d| d.id);
    let mut redelivered = Vec::new();
    for d in missed.into_iter().take(MAX_PER_SWEEP) {
        match github.redeliver(d.id).await {
            Ok(()) => {
                info!(delivery_id = %d.guid, event = %d.event, status_code = d.status_code, "asked GitHub to redeliver a missed webhook");
                asked.insert(d.guid.clone());
                redelivered.push(d.id);
            }
            Err(e) => warn!(delivery_id = %d.guid, error = %e, "asking for a redelivery failed"),
        }
    }
    Ok(redelivered)
}

/// Sweep on start and every [`EVERY`] until shutdown.
pub async fn watch(ctx: Ctx) {
    let mut asked = HashSet::new();
    loop {
        if let Err(e) = sweep(&ctx, &mut asked).await {
            warn!(error = %format!("{e:#}"), "missed-webhook recovery failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}
