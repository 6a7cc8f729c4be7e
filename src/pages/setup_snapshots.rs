//! The admin API over setup snapshots (Bearer `ADMIN_TOKEN`): `GET /api/snapshots` lists them,
//! least recently used first; `DELETE /api/snapshots/{key}` removes one and `DELETE
//! /api/snapshots?repo_id=N` every one of a repository (`/amp config --rebuild` does the same
//! from an issue).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::guard::{self, Via};
use crate::context::Ctx;
use crate::docker::Engine;
use crate::store::snapshots;
use crate::worker::snapshot;

pub async fn api_list(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = guard::admin_refusal(&ctx, &headers, Via::Bearer) {
        return r;
    }
    match snapshots::least_recently_used(&ctx.db, None).await {
        Ok(rows) => Json(
            rows.iter()
                .map(|r| {
                    json!({
                        "key": r.key, "repo_id": r.repo_id, "image": r.image, "bytes": r.bytes,
                        "created_at": r.created_at, "used_at": r.used_at,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => super::internal_error(e),
    }
}

#[derive(Deserialize)]
pub struct Which {
    repo_id: Option<i64>,
}

/// `DELETE /api/snapshots?repo_id=N`: a repository's snapshots (the query is required: the
/// whole store is not removed by a missing parameter).
pub async fn api_remove_for_repo(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(which): Query<Which>,
) -> Response {
    if let Some(r) = guard::cross_site_refusal(&ctx, &headers)
        .or_else(|| guard::admin_refusal(&ctx, &headers, Via::Bearer))
    {
        return r;
    }
    let Some(repo_id) = which.repo_id else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "name the repository: ?repo_id=<its GitHub id>"})),
        )
            .into_response();
    };
    let engine = match Engine::connect(ctx.config.docker_host.as_deref()).await {
        Ok(engine) => engine,
        Err(e) => return super::internal_error(e),
    };
    match snapshot::remove_for_repo(&ctx.db, &engine, repo_id).await {
        Ok(removed) => Json(json!({"removed": removed})).into_response(),
        Err(e) => super::internal_error(e),
    }
}

/// `DELETE /api/snapshots/{key}`: one snapshot.
pub async fn api_remove(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if let Some(r) = guard::cross_site_refusal(&ctx, &headers)
        .or_else(|| guard::admin_refusal(&ctx, &headers, Via::Bearer))
    {
        return r;
    }
    let engine = match Engine::connect(ctx.config.docker_host.as_deref()).await {
        Ok(engine) => engine,
        Err(e) => return super::internal_error(e),
    };
    match snapshot::remove_key(&ctx.db, &engine, &key).await {
        Ok(true) => Json(json!({"removed": 1})).into_response(),
        Ok(false) => super::not_found(),
        Err(e) => super::internal_error(e),
    }
}
