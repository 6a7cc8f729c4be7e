//! Routes a stored delivery to the handler for its event.

use anyhow::Context;

use crate::context::Ctx;
use crate::handlers;
use crate::store::deliveries::{Claimed, Outcome};
use crate::webhook::events::{self, WebhookEvent};

/// Handle one delivery. `Err` means "try again later"; everything the service decided not to act
/// on is an `Ok(Outcome::Ignored)` with the reason.
pub async fn handle(ctx: &Ctx, delivery: &Claimed) -> anyhow::Result<Outcome> {
    let event =
        events::parse(&delivery.event, &delivery.payload).context("parsing the stored payload")?;
    let Some(event) = event else {
        return Ok(Outcome::Ignored(format!(
            "event {} is not handled",
            delivery.event
        )));
    };
    match event {
        WebhookEvent::Ping => Ok(Outcome::Ignored("ping".into())),
        WebhookEvent::IssueComment(e) => {
            handlers::comment::handle(ctx, &delivery.delivery_id, &e).await
        }
        WebhookEvent::CheckSuite(e) => crate::ci::on_check_suite(ctx, &e).await,
        WebhookEvent::Installation(e) => handlers::installation::handle_installation(ctx, &e).await,
        WebhookEvent::InstallationRepositories(e) => {
            handlers::installation::handle_repositories(ctx, &e).await
        }
        WebhookEvent::PullRequest(e) => handlers::pull_request::handle(ctx, &e).await,
    }
}

/// A delivery failed for the last time: tell the person who asked, once, with the task's link
/// when there is a task. The details stay in the logs, under the delivery id.
pub async fn gave_up(ctx: &Ctx, delivery: &Claimed) {
    let Ok(Some(WebhookEvent::IssueComment(event))) =
        events::parse(&delivery.event, &delivery.payload)
    else {
        return;
    };
    if let Err(e) = handlers::comment::report_failure(ctx, &delivery.delivery_id, &event).await {
        tracing::error!(delivery_id = %delivery.delivery_id, error = format!("{e:#}"), "could not report the failure on GitHub");
    }
}
