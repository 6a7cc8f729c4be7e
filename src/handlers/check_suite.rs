//! `check_suite` webhooks: the CI watcher's input.

use crate::app::Ctx;
use crate::store::deliveries::Outcome;
use crate::webhook::events::CheckSuiteEvent;

pub async fn handle(_ctx: &Ctx, event: &CheckSuiteEvent) -> anyhow::Result<Outcome> {
    if event.action != "completed" {
        return Ok(Outcome::Ignored(format!("check_suite {}", event.action)));
    }
    tracing::debug!(
        repo = %event.repository.full_name,
        head_sha = %event.check_suite.head_sha,
        conclusion = ?event.check_suite.conclusion,
        "check suite completed"
    );
    Ok(Outcome::Done)
}
