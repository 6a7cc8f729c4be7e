//! `POST /api/github/webhooks`: verify, store, acknowledge. Nothing else happens in the request.
//!
//! Order matters: the signature is checked before anything is read from the body or headers, so an
//! unsigned request learns nothing and stores nothing; the delivery is committed before the 2xx, so
//! an acknowledged delivery is never lost; processing happens later from the inbox. Before the
//! body is read at all, a request must declare no more than [`MAX_BODY_BYTES`], carry a
//! well-formed signature header and get one of the few slots for bodies being read
//! ([`super::body`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header::RETRY_AFTER};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use axum::{Extension, Json};
use serde_json::json;
use tracing::{Instrument, debug, error, info_span, warn};

use super::body::{self, BodyError, BodyGate};
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

/// The route, with its slots for bodies being read.
pub fn route(ctx: &Ctx) -> MethodRouter<Ctx> {
    let gate = BodyGate::new(
        ctx.config.max_concurrent_webhook_bodies,
        ctx.tunables.webhook_body_wait,
        // By then every body being read now has arrived or missed its deadline.
        ctx.config.body_read_timeout.as_secs().max(1),
    );
    post(receive).layer(Extension(Arc::new(gate)))
}

pub async fn receive(
    State(ctx): State<Ctx>,
    Extension(gate): Extension<Arc<BodyGate>>,
    request: Request,
) -> Response {
    let _timed = Timed(std::time::Instant::now());
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let mut identity = ctx.identity();
    if identity.webhook_secrets.is_empty() && ctx.look_for_registered_app().await {
        identity = ctx.identity();
    }
    if identity.webhook_secrets.is_empty() {
        // GitHub records the failure; missed-webhook recovery asks for it again once the App
        // is registered.
        warn!("webhook refused: no GitHub App is registered yet, so it cannot be verified");
        body::discard(body, &headers);
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "this service has no GitHub App yet; register one on its home page"}),
        );
    }
    // What can be refused without reading the body is refused first.
    let declared = body::declared_length(&headers);
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        body::discard(body, &headers);
        return too_large();
    }
    let digest =
        match signature::parse_header(headers.get("x-hub-signature-256").map(|v| v.as_bytes())) {
            Ok(digest) => digest,
            Err(e) => {
                body::discard(body, &headers);
                return unsigned(e);
            }
        };
    let Some(slot) = gate.enter().await else {
        body::discard(body, &headers);
        warn!("webhook refused: every slot for reading a body is taken");
        let mut response = reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "too many webhooks are being received at once; please redeliver"}),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(gate.retry_after));
        return response;
    };
    let body = match body::read(body, declared, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(_)) => return too_large(),
        Err(BodyError::TimedOut) => return crate::server::body_timed_out(),
        Err(e @ BodyError::Broken(_)) => {
            debug!(error = %e, "webhook body not read");
            return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
        }
    };
    if let Err(e) = signature::verify_digest(&identity.webhook_secrets, &digest, body.as_slices()) {
        return unsigned(e);
    }
    // Signed: from here on the body is GitHub's, and the slot is free for the next one.
    drop(slot);
    let body = body.join();
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

fn too_large() -> Response {
    reply(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({"error": format!("the body is larger than {MAX_BODY_BYTES} bytes")}),
    )
}

fn unsigned(e: signature::SignatureError) -> Response {
    warn!(reason = %e, "webhook rejected");
    reply(StatusCode::UNAUTHORIZED, json!({"error": e.to_string()}))
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
