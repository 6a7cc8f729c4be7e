//! Webhooks: signed deliveries to the service (one at a time, or to replicas in turn), GitHub's
//! record of each attempt (`GET /app/hook/deliveries`) and redelivery.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GitHubSim;
use super::auth::check_app_jwt;
use super::json::{github_error, rfc3339};
use super::state::{HookDelivery, Shared, now};

/// Sign and send a webhook to the service (when one is connected).
pub async fn send_webhook_with(state: &Shared, event: &str, payload: &Value) -> Option<u16> {
    let delivery = {
        let mut s = state.lock().unwrap();
        s.webhook_url.as_ref()?;
        s.next_delivery()
    };
    Some(deliver(state, event, &delivery, payload, false).await)
}

/// One delivery attempt, recorded as GitHub records it (`GET /app/hook/deliveries`): the status
/// code, 0 when the service could not be reached.
async fn deliver(
    state: &Shared,
    event: &str,
    guid: &str,
    payload: &Value,
    redelivery: bool,
) -> u16 {
    let (url, secret) = {
        let mut s = state.lock().unwrap();
        let url = if s.round_robin.is_empty() {
            s.webhook_url.clone().expect("deliver_to was not called")
        } else {
            let i = s.round_robin_next % s.round_robin.len();
            s.round_robin_next += 1;
            s.round_robin[i].clone()
        };
        (url, s.webhook_secret.clone())
    };
    let status = post_webhook(&url, &secret, event, guid, payload).await;
    let mut s = state.lock().unwrap();
    let id = s.id();
    s.hook_deliveries.push(HookDelivery {
        id,
        guid: guid.to_string(),
        event: event.to_string(),
        action: payload["action"].as_str().map(str::to_string),
        status_code: status,
        redelivery,
        payload: payload.clone(),
        installation_id: payload["installation"]["id"].as_i64(),
        repository_id: payload["repository"]["id"].as_i64(),
        delivered_at: now(),
    });
    status
}

async fn post_webhook(
    url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> u16 {
    let body = serde_json::to_vec(payload).unwrap();
    let signature = amp_orchestrator::webhook::signature::sign(secret, &body);
    match reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/sim")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        // The service could not be reached: GitHub records the attempt as failed.
        Err(_) => 0,
    }
}

#[derive(serde::Deserialize)]
pub(super) struct DeliveriesQuery {
    per_page: Option<usize>,
    cursor: Option<String>,
}

/// The App's deliveries, newest first, a page at a time: `per_page` (at most 100, 30 unless
/// given) and an opaque `cursor`, with the next page's URL in a `Link` header, as GitHub pages
/// this list.
pub(super) async fn list_hook_deliveries(
    State(state): State<Shared>,
    Query(query): Query<DeliveriesQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let s = state.lock().unwrap();
    let per_page = query.per_page.unwrap_or(30).clamp(1, 100);
    // The cursor names the delivery the page starts after.
    let after: Option<i64> = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => match cursor.strip_prefix("v1_").and_then(|id| id.parse().ok()) {
            Some(id) => Some(id),
            None => return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid cursor"),
        },
    };
    let newest_first: Vec<&HookDelivery> = s
        .hook_deliveries
        .iter()
        .rev()
        .filter(|d| after.is_none_or(|a| d.id < a))
        .collect();
    let page = &newest_first[..newest_first.len().min(per_page)];
    let list: Vec<Value> = page
        .iter()
        .map(|d| {
            json!({
                "id": d.id, "guid": d.guid, "delivered_at": rfc3339(d.delivered_at),
                "redelivery": d.redelivery, "duration": 0.01,
                "status": if (200..300).contains(&d.status_code) { "OK" } else { "Invalid HTTP Response" },
                "status_code": d.status_code, "event": d.event, "action": d.action,
                "installation_id": d.installation_id, "repository_id": d.repository_id,
                "throttled_at": null,
            })
        })
        .collect();
    let mut response = axum::Json(Value::Array(list)).into_response();
    if newest_first.len() > per_page
        && let Some(last) = page.last()
    {
        let next = format!(
            "<{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
            s.base_url, last.id
        );
        response.headers_mut().insert("link", next.parse().unwrap());
    }
    response
}

pub(super) async fn redeliver(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let Some(original) = state
        .lock()
        .unwrap()
        .hook_deliveries
        .iter()
        .find(|d| d.id == id)
        .cloned()
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let state = state.clone();
    tokio::spawn(async move {
        deliver(
            &state,
            &original.event,
            &original.guid,
            &original.payload,
            true,
        )
        .await;
    });
    (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
}

impl GitHubSim {
    /// Deliver to each of `service_bases` in turn, as a load balancer in front of replicas does.
    pub fn deliver_round_robin(&self, service_bases: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.round_robin = service_bases
            .iter()
            .map(|b| format!("{b}/api/github/webhooks"))
            .collect();
        s.webhook_url = s.round_robin.first().cloned();
    }

    pub fn deliver_to(&self, service_base: &str) {
        let mut s = self.state.lock().unwrap();
        s.round_robin.clear();
        s.webhook_url = Some(format!("{service_base}/api/github/webhooks"));
    }

    /// Send a signed webhook to the service; returns its status (0: it could not be reached).
    pub async fn send_webhook(&self, event: &str, delivery: &str, payload: &Value) -> u16 {
        deliver(&self.state, event, delivery, payload, false).await
    }

    /// Every webhook delivery attempt so far.
    pub fn hook_deliveries(&self) -> Vec<HookDelivery> {
        self.state.lock().unwrap().hook_deliveries.clone()
    }
}
