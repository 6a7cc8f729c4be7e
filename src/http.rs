//! Health and readiness.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;
use tracing::warn;

use crate::context::Ctx;
use crate::pages::guard::{Via, admin_refusal};

/// How long the Docker engine's answer to a readiness probe is reused: probes as often as anyone
/// likes cost the engine at most one ping per this interval.
const DOCKER_PROBE_REUSE: Duration = Duration::from_secs(5);

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The Docker engine's last answer to a readiness probe, shared by the probes that come while it
/// is fresh (and by those that wait while it is asked).
#[derive(Debug, Default)]
pub struct DockerProbe {
    last: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl DockerProbe {
    async fn check(&self, ctx: &Ctx) -> Result<(), String> {
        let mut last = self.last.lock().await;
        if let Some((at, answer)) = last.as_ref()
            && at.elapsed() < DOCKER_PROBE_REUSE
        {
            return answer.clone();
        }
        let answer = match crate::docker::Engine::connect(ctx.config.docker_host.as_deref()).await {
            Ok(engine) => engine.ping().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &answer {
            warn!(error = %e, "not ready: the Docker engine");
        }
        *last = Some((Instant::now(), answer.clone()));
        answer
    }
}

/// The service can do its work: the database answers, and, on an instance that runs tasks, the
/// Docker engine too. Anyone sees `ok` or `failing` for each; what failed, and which instance
/// answered, is for the logs and for a request with the admin token (`Authorization: Bearer`).
pub async fn readyz(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    let database = ctx.db.ping().await.map_err(|e| e.to_string());
    let docker = if ctx.runs_tasks() {
        Some(ctx.docker_probe.check(&ctx).await)
    } else {
        None
    };
    let ready = database.is_ok() && docker.as_ref().is_none_or(|d| d.is_ok());
    if let Err(e) = &database {
        warn!(error = %e, "not ready: the database");
    }
    let detailed = headers.contains_key(header::AUTHORIZATION)
        && admin_refusal(&ctx, &headers, Via::Bearer).is_none();
    let state = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) if detailed => json!(e),
        Err(_) => json!("failing"),
    };
    let mut body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "database": state(&database),
    });
    if let Some(docker) = &docker {
        body["docker"] = state(docker);
    }
    if detailed {
        body["instance"] = json!(ctx.instance_id);
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}
