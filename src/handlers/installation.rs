//! `installation` and `installation_repositories` webhooks keep the installations table current.

use anyhow::Context;
use tracing::info;

use crate::app::Ctx;
use crate::store::deliveries::Outcome;
use crate::store::installations::{self, InstallationInfo};
use crate::store::tasks;
use crate::webhook::events::{Installation, InstallationEvent, InstallationRepositoriesEvent};

fn info<'a>(installation: &'a Installation, action: &str) -> InstallationInfo<'a> {
    InstallationInfo {
        id: installation.id,
        account_login: &installation.account.login,
        account_type: &installation.account.kind,
        repository_selection: installation.repository_selection.as_deref(),
        suspended: action == "suspend"
            || (action != "unsuspend" && installation.suspended_at.is_some()),
        deleted: action == "deleted",
    }
}

pub async fn handle_installation(ctx: &Ctx, event: &InstallationEvent) -> anyhow::Result<Outcome> {
    installations::upsert(&ctx.db, info(&event.installation, &event.action))
        .await
        .context("storing the installation")?;
    if matches!(event.action.as_str(), "deleted" | "suspend") {
        let reason = if event.action == "deleted" {
            "the app was uninstalled"
        } else {
            "the installation was suspended"
        };
        let cancelled =
            tasks::cancel_queued_for_installation(&ctx.db, event.installation.id, reason)
                .await
                .context("cancelling the installation's queued tasks")?;
        if cancelled > 0 {
            info!(
                installation_id = event.installation.id,
                cancelled, "queued tasks cancelled"
            );
        }
    }
    info!(
        installation_id = event.installation.id,
        account = %event.installation.account.login,
        action = %event.action,
        "installation updated"
    );
    Ok(Outcome::Done)
}

pub async fn handle_repositories(
    ctx: &Ctx,
    event: &InstallationRepositoriesEvent,
) -> anyhow::Result<Outcome> {
    installations::upsert(&ctx.db, info(&event.installation, &event.action))
        .await
        .context("storing the installation")?;
    info!(
        installation_id = event.installation.id,
        added = event.repositories_added.len(),
        removed = event.repositories_removed.len(),
        "installation repositories changed"
    );
    Ok(Outcome::Done)
}
