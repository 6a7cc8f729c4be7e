//! `installation` and `installation_repositories` webhooks keep the installations table current,
//! with GitHub's own answer for whether an installation is suspended or gone.

use anyhow::Context;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::github::InstallationNow;
use crate::store::deliveries::Outcome;
use crate::store::installations::{self, InstallationInfo};
use crate::webhook::events::{
    Action, Installation, InstallationAction, InstallationEvent, InstallationRepositoriesEvent,
};

/// The installation as stored: its account from the event, and whether it is suspended or gone
/// from GitHub's own answer (`None`: uninstalled).
fn info<'a>(installation: &'a Installation, now: Option<&InstallationNow>) -> InstallationInfo<'a> {
    InstallationInfo {
        id: installation.id,
        account_login: &installation.account.login,
        account_type: &installation.account.kind,
        repository_selection: installation.repository_selection.as_deref(),
        suspended: now.is_some_and(|n| n.suspended_at.is_some()),
        deleted: now.is_none(),
    }
}

/// What GitHub says of the event's installation now, stored; `None` without a GitHub App to ask
/// (then nothing is stored: an event alone cannot be trusted, see below).
async fn confirm_and_store(
    ctx: &Ctx,
    installation: &Installation,
) -> anyhow::Result<Option<Confirmed>> {
    let Some(github) = ctx.github() else {
        warn!(
            installation_id = installation.id,
            "installation event not acted on: without a GitHub App it cannot be confirmed"
        );
        return Ok(None);
    };
    let now = github
        .installation(installation.id)
        .await
        .context("reading the installation from GitHub")?;
    let stored = info(installation, now.as_ref());
    let confirmed = Confirmed {
        suspended: stored.suspended,
        deleted: stored.deleted,
    };
    installations::upsert(&ctx.db, stored)
        .await
        .context("storing the installation")?;
    Ok(Some(confirmed))
}

/// Whether GitHub says the installation is suspended, or gone.
struct Confirmed {
    suspended: bool,
    deleted: bool,
}

/// An `installation` event says something changed; GitHub's API says what is. A signed event
/// replayed later (a `deleted` or `suspend` from long ago) must not stop an installation that is
/// in use, so the state stored, and acted on, is the one GitHub gives now.
pub async fn handle_installation(ctx: &Ctx, event: &InstallationEvent) -> anyhow::Result<Outcome> {
    let Some(now) = confirm_and_store(ctx, &event.installation).await? else {
        return Ok(Outcome::Ignored(
            "an installation change cannot be confirmed without a GitHub App".into(),
        ));
    };
    let (suspended, deleted) = (now.suspended, now.deleted);
    let contradicted = match event.action {
        Action::Known(InstallationAction::Deleted) => !deleted,
        Action::Known(InstallationAction::Suspend) => !suspended && !deleted,
        Action::Known(InstallationAction::Unsuspend | InstallationAction::Created) => {
            suspended || deleted
        }
        _ => false,
    };
    if contradicted {
        warn!(
            installation_id = event.installation.id,
            action = %event.action,
            suspended,
            deleted,
            "GitHub does not confirm what the installation event says (an old event delivered again?): GitHub's answer is kept"
        );
    }
    if deleted || suspended {
        let cancelled = ctx
            .lifecycle
            .cancel_queued(event.installation.id, suspended && !deleted)
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
        suspended,
        deleted,
        "installation updated"
    );
    Ok(Outcome::Done)
}

pub async fn handle_repositories(
    ctx: &Ctx,
    event: &InstallationRepositoriesEvent,
) -> anyhow::Result<Outcome> {
    if confirm_and_store(ctx, &event.installation).await?.is_none() {
        return Ok(Outcome::Ignored(
            "an installation change cannot be confirmed without a GitHub App".into(),
        ));
    }
    info!(
        installation_id = event.installation.id,
        added = event.repositories_added.len(),
        removed = event.repositories_removed.len(),
        "installation repositories changed"
    );
    Ok(Outcome::Done)
}
