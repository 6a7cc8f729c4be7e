//! Health and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::json;

use crate::context::Ctx;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The service can do its work: the database answers, and, on an instance that runs tasks, the
/// Docker engine too.
pub async fn readyz(State(ctx): State<Ctx>) -> (StatusCode, Json<serde_json::Value>) {
    let database = match ctx.db.ping().await {
        Ok(()) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    let docker = if ctx.runs_tasks() {
        Some(
            match crate::docker::Engine::connect(ctx.config.docker_host.as_deref()).await {
                Ok(engine) => engine.ping().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            },
        )
    } else {
        None
    };
    let ready = database.is_ok() && docker.as_ref().is_none_or(|d| d.is_ok());
    let state = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": state(&database),
        "instance": ctx.instance_id,
    });
    if let Some(docker) = &docker {
        body["docker"] = state(docker);
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
