//! `POST /api/github/webhooks`: verify, store, acknowledge. Nothing else happens in the request.
//!
//! Order matters: the signature is checked before anything is read from the body or headers, so an
//! unsigned request learns nothing and stores nothing; the delivery is committed before the 2xx, so
//! an acknowledged delivery is never lost; processing happens later from the inbox.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{Instrument, debug, error, info_span, warn};

use super::events;
use super::signature;
use crate::context::Ctx;
use crate::store::deliveries::DeliveryStatus;
use crate::store::delivery_writer::OwnedDelivery;

/// GitHub caps webhook payloads at 25 MiB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Counts a request's time in the intake histogram when it is answered, whatever the answer.
struct Timed(std::time::Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        crate::metrics::METRICS.intake.observe(self.0.elapsed());
    }
}

pub async fn receive(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let _timed = Timed(std::time::Instant::now());
    let mut identity = ctx.identity();
    if identity.webhook_secrets.is_empty() && ctx.look_for_registered_app().await {
        identity = ctx.identity();
    }
    if identity.webhook_secrets.is_empty() {
        // GitHub records the failure; missed-webhook recovery asks for it again once the App
        // is registered.
        warn!("webhook refused: no GitHub App is registered yet, so it cannot be verified");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "this service has no GitHub App yet; register one on its home page"}),
        );
    }
    if let Err(e) = signature::verify(
        &identity.webhook_secrets,
        headers.get("x-hub-signature-256").map(|v| v.as_bytes()),
        &body,
    ) {
        warn!(reason = %e, "webhook rejected");
        return reply(StatusCode::UNAUTHORIZED, json!({"error": e.to_string()}));
    }
    let Some(event) = header(&headers, "x-github-event") else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "missing X-GitHub-Event header"}),
        );
    };
    let Some(delivery_id) = header(&headers, "x-github-delivery") else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "missing X-GitHub-Delivery header"}),
        );
    };
    if delivery_id.len() > 128 {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "X-GitHub-Delivery header is longer than 128 characters"}),
        );
    }
    let span = info_span!("webhook", delivery_id = %delivery_id, event = %event);
    accept(ctx, event, delivery_id, body).instrument(span).await
}

async fn accept(ctx: Ctx, event: &str, delivery_id: &str, body: Bytes) -> Response {
    let parsed = events::parse(event, &body);
    let error_text = parsed.as_ref().err().map(|e| e.to_string());
    let (status, payload, code, label): (DeliveryStatus, &[u8], StatusCode, &str) = match &parsed {
        Ok(Some(events::WebhookEvent::Ping)) => {
            return reply(StatusCode::OK, json!({"status": "pong"}));
        }
        Ok(Some(ev)) if ev.is_actionable() => (
            DeliveryStatus::Pending,
            &body,
            StatusCode::ACCEPTED,
            "queued",
        ),
        // Recorded (so a redelivery is recognised) without the body, which is not needed.
        Ok(_) => (
            DeliveryStatus::Ignored,
            &[],
            StatusCode::ACCEPTED,
            "ignored",
        ),
        // Kept whole for inspection.
        Err(_) => (
            DeliveryStatus::Invalid,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
    };
    let known = parsed.as_ref().ok().and_then(|e| e.as_ref());
    let record = OwnedDelivery {
        delivery_id: delivery_id.to_string(),
        event: event.to_string(),
        action: known.and_then(|e| e.action()).map(str::to_string),
        installation_id: known.and_then(|e| e.installation_id()),
        status,
        payload: payload.to_vec(),
        error: error_text.clone(),
    };
    let stored = match ctx.deliveries.insert(record).await {
        Ok(stored) => stored,
        Err(e) => {
            // GitHub records the delivery as failed; missed-delivery recovery redelivers it.
            error!(error = %e, "storing the delivery failed");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the delivery could not be stored; please redeliver"}),
            );
        }
    };
    if !stored {
        debug!("duplicate delivery");
        return reply(
            StatusCode::OK,
            json!({"status": "duplicate", "delivery": delivery_id}),
        );
    }
    if let Some(error) = error_text {
        warn!(%error, "webhook payload does not parse; stored as invalid");
        return reply(code, json!({"error": error, "delivery": delivery_id}));
    }
    if status == DeliveryStatus::Pending {
        ctx.inbox_wakeup.notify_one();
    }
    reply(code, json!({"status": label, "delivery": delivery_id}))
}
