//! `installation` and `installation_repositories` webhooks keep the installations table current.

use anyhow::Context;
use tracing::info;

use crate::context::Ctx;
use crate::store::deliveries::Outcome;
use crate::store::installations::{self, InstallationInfo};
use crate::webhook::events::{
    Action, Installation, InstallationAction, InstallationEvent, InstallationRepositoriesEvent,
};

/// The installation as stored, after `action` (`None`: an event that does not change whether it
/// is suspended or deleted).
fn info(installation: &Installation, action: Option<InstallationAction>) -> InstallationInfo<'_> {
    use InstallationAction::{Deleted, Suspend, Unsuspend};
    InstallationInfo {
        id: installation.id,
        account_login: &installation.account.login,
        account_type: &installation.account.kind,
        repository_selection: installation.repository_selection.as_deref(),
        suspended: action == Some(Suspend)
            || (action != Some(Unsuspend) && installation.suspended_at.is_some()),
        deleted: action == Some(Deleted),
    }
}

pub async fn handle_installation(ctx: &Ctx, event: &InstallationEvent) -> anyhow::Result<Outcome> {
    let action = match event.action {
        Action::Known(action) => Some(action),
        Action::Other(_) => None,
    };
    installations::upsert(&ctx.db, info(&event.installation, action))
        .await
        .context("storing the installation")?;
    if let Some(gone @ (InstallationAction::Deleted | InstallationAction::Suspend)) = action {
        let cancelled = ctx
            .lifecycle
            .cancel_queued(event.installation.id, gone == InstallationAction::Suspend)
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
    installations::upsert(&ctx.db, info(&event.installation, None))
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
