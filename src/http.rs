//! Health and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::app::Ctx;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The service can do its work: the database answers.
pub async fn readyz(State(ctx): State<Ctx>) -> (StatusCode, Json<serde_json::Value>) {
    match ctx.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ready", "database": "ok"})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "database": e.to_string()})),
        ),
    }
}
