//! Checks: check suites, check runs and their annotations, the combined commit status (the
//! legacy status API), and job logs (a redirect to storage that needs no credentials); and an
//! external CI reporting a status.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GitHubSim;
use super::auth::AuthorizedRepo;
use super::json::{github_error, repo_json, run_json, suite_json};
use super::state::{CheckRun, CheckSuite, Repo, Shared, SimState};

/// GitHub's page parameters: `per_page` (30 unless given, at most 100) and `page` (from 1).
#[derive(serde::Deserialize)]
pub(super) struct Paging {
    per_page: Option<usize>,
    page: Option<usize>,
    /// Check runs: `latest` (the default) keeps the newest run of each check; `all` keeps re-runs.
    filter: Option<String>,
}

impl Paging {
    /// The items of the page asked for.
    fn page<T: Clone>(&self, items: &[T]) -> Vec<T> {
        let per_page = self.per_page.unwrap_or(30).clamp(1, 100);
        let page = self.page.unwrap_or(1).max(1);
        items
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .cloned()
            .collect()
    }
}

pub(super) async fn list_check_suites(
    State(state): State<Shared>,
    Path((_, _, sha)): Path<(String, String, String)>,
    Query(paging): Query<Paging>,
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
    axum::Json(json!({"total_count": suites.len(), "check_suites": paging.page(&suites)}))
        .into_response()
}

pub(super) async fn list_check_runs(
    State(state): State<Shared>,
    Path((_, _, sha)): Path<(String, String, String)>,
    Query(paging): Query<Paging>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let full = repo.full_name();
    let all: Vec<(&CheckSuite, &CheckRun)> = s
        .check_suites
        .iter()
        .filter(|c| c.repo == full && c.head_sha == sha)
        .flat_map(|c| c.runs.iter().map(move |r| (c, r)))
        .collect();
    // A re-run is a new run of the same check in the same suite; `latest` keeps the newest.
    let latest_only = paging.filter.as_deref() != Some("all");
    let runs: Vec<Value> = all
        .iter()
        .filter(|(c, r)| {
            !latest_only
                || !all
                    .iter()
                    .any(|(c2, r2)| c2.id == c.id && r2.name == r.name && r2.id > r.id)
        })
        .map(|(c, r)| run_json(&repo, c, r))
        .collect();
    axum::Json(json!({"total_count": runs.len(), "check_runs": paging.page(&runs)})).into_response()
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
    let location = format!("{}/_blobs/job-logs/{id}?sig={sig}", s.blob_base_url);
    let mut response = StatusCode::FOUND.into_response();
    response
        .headers_mut()
        .insert("location", location.parse().unwrap());
    response
}

/// The storage host's answer to a log download (it serves nothing else).
pub(super) async fn job_log_blob(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    Query(query): Query<HashMap<String, String>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap();
    if headers.contains_key("authorization") {
        s.blob_requests_with_credentials += 1;
    }
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
    Query(paging): Query<Paging>,
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
    let commit_url = format!("https://api.github.com/repos/{full}/commits/{sha}");
    axum::Json(json!({
        "state": combined, "sha": sha, "total_count": latest.len(),
        "statuses": paging.page(&latest),
        "repository": repo_json(&s, &repo),
        "url": format!("{commit_url}/status"),
        "commit_url": commit_url,
    }))
    .into_response()
}

impl GitHubSim {
    pub fn check_suites(&self) -> Vec<CheckSuite> {
        self.state.lock().unwrap().check_suites.clone()
    }

    /// An app reports a check run on `sha` in a suite of its own: `status` `queued`,
    /// `in_progress` or `completed`, `conclusion` empty until completed. A run named like one
    /// already in that suite is a re-run. Returns the suite's id.
    pub fn add_check_run(
        &self,
        repo: &Repo,
        sha: &str,
        suite: Option<i64>,
        name: &str,
        status: &str,
        conclusion: &str,
    ) -> i64 {
        let mut s = self.state.lock().unwrap();
        let id = s.id();
        let run = CheckRun {
            id,
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.into(),
            title: format!("{name}: {status} {conclusion}"),
            summary: String::new(),
            annotations: vec![],
            log: String::new(),
        };
        if let Some(existing) =
            suite.and_then(|sid| s.check_suites.iter_mut().find(|c| c.id == sid))
        {
            existing.runs.push(run);
            return existing.id;
        }
        let suite_id = s.id();
        s.check_suites.push(CheckSuite {
            id: suite_id,
            repo: repo.full_name(),
            head_branch: repo.default_branch.clone(),
            head_sha: sha.into(),
            status: status.into(),
            conclusion: conclusion.into(),
            runs: vec![run],
            created_at: super::state::now(),
        });
        suite_id
    }

    /// An external CI reports a commit status (the legacy status API).
    pub fn add_status(&self, repo: &Repo, sha: &str, context: &str, state: &str) {
        let mut s = self.state.lock().unwrap();
        let id = s.id();
        s.statuses.push((
            repo.full_name(),
            sha.to_string(),
            json!({
                "id": id, "node_id": format!("SC_sim{id}"), "context": context, "state": state,
                "url": format!("https://api.github.com/repos/{}/statuses/{sha}", repo.full_name()),
                "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4",
                "description": format!("{context} says {state}"),
                "target_url": format!("https://ci.example.com/{id}"),
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            }),
        ));
    }
}
