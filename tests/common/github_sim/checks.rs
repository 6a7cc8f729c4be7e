//! Checks: check suites, check runs and their annotations, the combined commit status (the
//! legacy status API), and job logs (a redirect to storage that needs no credentials); and an
//! external CI reporting a status.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GitHubSim;
use super::auth::AuthorizedRepo;
use super::json::{github_error, repo_json, run_json, suite_json};
use super::state::{CheckRun, CheckSuite, Repo, Shared, SimState};

pub(super) async fn list_check_suites(
    State(state): State<Shared>,
    Path((_, _, sha)): Path<(String, String, String)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let full = repo.full_name();
    let suites: Vec<Value> = s
        .check_suites
        .iter()
        .filter(|c| c.repo == full && c.head_sha == sha)
        .map(|c| suite_json(&s, &repo, c))
        .collect();
    axum::Json(json!({"total_count": suites.len(), "check_suites": suites})).into_response()
}

pub(super) async fn list_check_runs(
    State(state): State<Shared>,
    Path((_, _, sha)): Path<(String, String, String)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let full = repo.full_name();
    let runs: Vec<Value> = s
        .check_suites
        .iter()
        .filter(|c| c.repo == full && c.head_sha == sha)
        .flat_map(|c| c.runs.iter().map(move |r| (c, r)))
        .map(|(c, r)| run_json(&repo, c, r))
        .collect();
    axum::Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

fn find_run(state: &SimState, full: &str, id: i64) -> Option<CheckRun> {
    state
        .check_suites
        .iter()
        .filter(|c| c.repo == full)
        .flat_map(|c| c.runs.iter())
        .find(|r| r.id == id)
        .cloned()
}

pub(super) async fn list_annotations(
    State(state): State<Shared>,
    Path((_, _, id)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    match find_run(&s, &repo.full_name(), id) {
        Some(run) => axum::Json(Value::Array(run.annotations)).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Like GitHub: a redirect to short-lived storage that needs no credentials.
pub(super) async fn job_log_redirect(
    State(state): State<Shared>,
    Path((_, _, id)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let mut s = state.lock().unwrap();
    if find_run(&s, &repo.full_name(), id).is_none() {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let sig = uuid::Uuid::new_v4().simple().to_string();
    s.log_links.insert(id, sig.clone());
    let location = format!("{}/_blobs/job-logs/{id}?sig={sig}", s.base_url);
    let mut response = StatusCode::FOUND.into_response();
    response
        .headers_mut()
        .insert("location", location.parse().unwrap());
    response
}

pub(super) async fn job_log_blob(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let s = state.lock().unwrap();
    if s.log_links.get(&id) != query.get("sig") {
        return (StatusCode::FORBIDDEN, "AuthenticationFailed").into_response();
    }
    let log = s
        .check_suites
        .iter()
        .flat_map(|c| c.runs.iter())
        .find(|r| r.id == id)
        .map(|r| r.log.clone())
        .unwrap_or_default();
    ([("content-type", "text/plain")], log).into_response()
}

pub(super) async fn combined_status(
    State(state): State<Shared>,
    Path((_, _, sha)): Path<(String, String, String)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let full = repo.full_name();
    // The newest status per context, as GitHub combines them.
    let mut latest: Vec<Value> = Vec::new();
    for (_, _, status) in s
        .statuses
        .iter()
        .rev()
        .filter(|(r, c, _)| *r == full && *c == sha)
    {
        if !latest.iter().any(|l| l["context"] == status["context"]) {
            latest.push(status.clone());
        }
    }
    let state_of = |wanted: &str| latest.iter().any(|l| l["state"] == wanted);
    let combined = if latest.is_empty() || state_of("pending") {
        "pending"
    } else if state_of("error") || state_of("failure") {
        "failure"
    } else {
        "success"
    };
    axum::Json(json!({
        "state": combined, "sha": sha, "total_count": latest.len(), "statuses": latest,
        "repository": repo_json(&s, &repo),
    }))
    .into_response()
}

impl GitHubSim {
    pub fn check_suites(&self) -> Vec<CheckSuite> {
        self.state.lock().unwrap().check_suites.clone()
    }

    /// An external CI reports a commit status (the legacy status API).
    pub fn add_status(&self, repo: &Repo, sha: &str, context: &str, state: &str) {
        let mut s = self.state.lock().unwrap();
        let id = s.id();
        s.statuses.push((
            repo.full_name(),
            sha.to_string(),
            json!({
                "id": id, "context": context, "state": state,
                "description": format!("{context} says {state}"),
                "target_url": format!("https://ci.example.com/{id}"),
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            }),
        ));
    }
}
