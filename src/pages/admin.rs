//! What needs `ADMIN_TOKEN`: the list of tasks (`GET /tasks`), the form to create one
//! (`GET /tasks/new`, `POST /tasks`) and the JSON API (`POST /api/tasks`,
//! `GET /api/tasks/{public_id}`). The token comes as `Authorization: Bearer <token>` (the API,
//! which takes nothing else) or as the password of HTTP Basic authentication (a browser); see
//! [`super::guard`] for what keeps other sites out. Without `ADMIN_TOKEN` configured these pages
//! do not exist.
//!
//! A task made here goes through the normal pipeline: on a new issue opened for it, or on a given
//! issue, with the same status comment, worker and CI loop as an `/amp` comment.

use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::guard::{self, Via};

use crate::context::Ctx;
use crate::domain::TaskState;
use crate::entities::task;
use crate::github::GitHubError;
use crate::lifecycle::{Created, TaskRequest};
use crate::store::tasks;
use crate::texts::{prompts, refusals};

/// The refusal for a page request without the admin token (Bearer, or a browser's Basic).
pub(crate) fn refusal(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    guard::admin_refusal(ctx, headers, Via::BearerOrBasic)
}

#[derive(serde::Deserialize, Default)]
pub struct ListFilter {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    repo: Option<String>,
}

pub struct Row {
    pub public_id: String,
    pub state: String,
    pub repo: String,
    pub subject: String,
    pub age: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "tasks.html")]
pub struct TaskList {
    pub version: &'static str,
    pub rows: Vec<Row>,
    pub state: String,
    pub repo: String,
    pub states: Vec<&'static str>,
}

/// Tasks shown in the list, newest first.
const LIST_LIMIT: u64 = 200;

pub async fn list(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(filter): Query<ListFilter>,
) -> Response {
    if let Some(r) = refusal(&ctx, &headers) {
        return r;
    }
    let state = filter.state.unwrap_or_default();
    let repo = filter.repo.unwrap_or_default();
    let found = match state.parse::<TaskState>() {
        // A state that does not exist has no tasks.
        Err(_) if !state.is_empty() => Ok(Vec::new()),
        parsed => {
            let repo = (!repo.is_empty()).then_some(repo.as_str());
            tasks::recent(&ctx.db, parsed.ok(), repo, LIST_LIMIT).await
        }
    };
    let found = match found {
        Ok(found) => found,
        Err(e) => return super::internal_error(e),
    };
    let now = crate::db::now_ms();
    TaskList {
        version: env!("CARGO_PKG_VERSION"),
        rows: found
            .into_iter()
            .map(|t| Row {
                subject: format!(
                    "{} #{}",
                    if t.is_pull_request { "PR" } else { "issue" },
                    t.issue_number
                ),
                age: humantime::format_duration(std::time::Duration::from_secs(
                    ((now - t.created_at).max(0) / 1000) as u64,
                ))
                .to_string(),
                public_id: t.public_id,
                state: t.state.as_str().to_string(),
                repo: t.repo_full_name,
            })
            .collect(),
        state,
        repo,
        states: TaskState::ALL.iter().map(|s| s.as_str()).collect(),
    }
    .into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "new_task.html")]
pub struct NewTaskForm {
    pub version: &'static str,
    pub error: Option<String>,
    pub repo: String,
    pub issue: String,
    pub prompt: String,
}

pub async fn form(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Some(r) = refusal(&ctx, &headers) {
        return r;
    }
    NewTaskForm {
        version: env!("CARGO_PKG_VERSION"),
        error: None,
        repo: String::new(),
        issue: String::new(),
        prompt: String::new(),
    }
    .into_response()
}

/// What creates a task, from the form or the API.
#[derive(serde::Deserialize, Debug, Clone)]
pub struct Request {
    /// `owner/name`, a repository the App is installed on.
    pub repo: String,
    pub prompt: String,
    /// An existing issue to work on; without it, an issue is opened for the task.
    #[serde(default, deserialize_with = "issue_number")]
    pub issue: Option<i64>,
    /// Who the task is for (named in the commit and asked to review); the App by default.
    #[serde(default)]
    pub requester: Option<String>,
}

/// An issue number from JSON (a number) or a form (text, possibly empty).
fn issue_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(i64),
        Text(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::Num(n)) => Ok(Some(n)),
        Some(N::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(N::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("the issue must be a number")),
    }
}

/// Why a task could not be created, for the person asking.
#[derive(Debug)]
pub struct CreateError {
    pub status: StatusCode,
    pub message: String,
}

fn refused(status: StatusCode, message: impl Into<String>) -> CreateError {
    CreateError {
        status,
        message: message.into(),
    }
}

/// Create a task through the normal pipeline.
pub async fn create(ctx: &Ctx, request: Request) -> Result<task::Model, CreateError> {
    let prompt = request.prompt.trim().to_string();
    if prompt.is_empty() {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the prompt is empty",
        ));
    }
    let Some(github) = ctx.github() else {
        return Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the GitHub App is not configured on this server",
        ));
    };
    let full_name = request.repo.trim().to_string();
    if !crate::domain::ids::is_repo_full_name(&full_name) {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{:?} is not a repository name like owner/name",
                full_name.chars().take(200).collect::<String>()
            ),
        ));
    }
    let github_error = |what: &str, e: GitHubError| match e.status() {
        Some(404) => refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{what}: not found (is the App installed on {full_name}?)"),
        ),
        Some(status) if status < 500 => {
            refused(StatusCode::UNPROCESSABLE_ENTITY, format!("{what}: {e}"))
        }
        _ => refused(StatusCode::BAD_GATEWAY, format!("{what}: {e}")),
    };
    let (repo, details) = github
        .locate_repo(&full_name)
        .await
        .map_err(|e| github_error(&format!("finding {full_name}"), e))?;
    if details.archived {
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{full_name} is archived"),
        ));
    }
    let bounds = crate::repo_config::Bounds::from_config(&ctx.config);
    let config = crate::repo_config::read(&github, &repo, &details.default_branch, &bounds)
        .await
        .map_err(|e| github_error(&format!("reading {}", crate::repo_config::PATH), e))?;
    if let crate::repo_config::Found::Invalid(problems) = &config {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{full_name}'s configuration has problems: {}",
                listed.join("; ")
            ),
        ));
    }
    let issue = match request.issue {
        Some(number) => github
            .get_issue(&repo, number)
            .await
            .map_err(|e| github_error(&format!("reading issue #{number}"), e))?,
        None => {
            let (title, body) = prompts::admin_issue(&prompt);
            github
                .create_issue(&repo, &title, &body)
                .await
                .map_err(|e| github_error("opening an issue for the task", e))?
        }
    };
    let requester = request
        .requester
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "amp-orchestrator[bot]".to_string());
    let created = ctx
        .lifecycle
        .create_task(TaskRequest {
            repo: repo.clone(),
            clone_url: details.clone_url.clone(),
            default_branch: details.default_branch.clone(),
            issue_number: issue.number,
            is_pull_request: issue.pull_request.is_some(),
            issue_title: issue.title.clone(),
            issue_body: issue.body.clone().unwrap_or_default(),
            requester_login: requester,
            requester_id: 0,
            comment_id: 0,
            delivery_id: None,
            prompt,
            repo_config: config.text().map(str::to_string),
        })
        .await
        .map_err(|e| {
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("storing the task: {e}"),
            )
        })?;
    let created = match created {
        Created::New(task) | Created::Again(task) => task,
        Created::Busy(active) => {
            return Err(refused(
                StatusCode::CONFLICT,
                format!(
                    "a task is already running on issue #{} ({}/tasks/{}); stop it first",
                    active.issue_number, ctx.config.public_url, active.public_id
                ),
            ));
        }
    };
    tracing::info!(task_id = %created.id, public_id = %created.public_id, repo = %full_name, issue = created.issue_number, "task created by an admin");
    if let Err(e) = ctx.lifecycle.announce(&created).await {
        tracing::warn!(task_id = %created.id, error = %e, "posting the status comment failed");
    }
    Ok(created)
}

/// The form's `POST /tasks`.
pub async fn submit(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Form(request): Form<Request>,
) -> Response {
    // A browser sends Basic credentials on any request to this site: only this site's own form
    // may create tasks.
    if let Some(r) = guard::cross_site_refusal(&ctx, &headers).or_else(|| refusal(&ctx, &headers)) {
        return r;
    }
    match create(&ctx, request.clone()).await {
        Ok(task) => Redirect::to(&format!("/tasks/{}", task.public_id)).into_response(),
        Err(e) => (
            e.status,
            NewTaskForm {
                version: env!("CARGO_PKG_VERSION"),
                error: Some(e.message),
                repo: request.repo,
                issue: request.issue.map(|n| n.to_string()).unwrap_or_default(),
                prompt: request.prompt,
            },
        )
            .into_response(),
    }
}

fn task_json(ctx: &Ctx, task: &task::Model) -> serde_json::Value {
    json!({
        "public_id": task.public_id,
        "url": format!("{}/tasks/{}", ctx.config.public_url, task.public_id),
        "state": task.state.as_str(),
        "repo": task.repo_full_name,
        "issue": task.issue_number,
        "is_pull_request": task.is_pull_request,
        "requester": task.requester_login,
        "prompt": task.prompt,
        "branch": task.branch,
        "pull_request": task.pr_number,
        "head_sha": task.head_sha,
        "ci_rounds": task.ci_round,
        "error": task.error_message,
        "created_at": task.created_at,
        "finished_at": task.finished_at,
    })
}

/// `POST /api/tasks`: `{"repo", "prompt", "issue"?, "requester"?}` → 201 with the task.
pub async fn api_create(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = guard::cross_site_refusal(&ctx, &headers)
        .or_else(|| guard::admin_refusal(&ctx, &headers, Via::Bearer))
    {
        return r;
    }
    // Only JSON: a browser cannot send it to another site without asking first (CORS), while a
    // `text/plain` form body can be shaped to parse as JSON.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let is_json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Json(json!({"error": refusals::json_only(content_type)})),
        )
            .into_response();
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("invalid request: {e}")})),
            )
                .into_response();
        }
    };
    match create(&ctx, request).await {
        Ok(task) => (StatusCode::CREATED, Json(task_json(&ctx, &task))).into_response(),
        Err(e) => (e.status, Json(json!({"error": e.message}))).into_response(),
    }
}

/// `GET /api/tasks/{public_id}`.
pub async fn api_show(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Path(public_id): Path<String>,
) -> Response {
    if let Some(r) = guard::admin_refusal(&ctx, &headers, Via::Bearer) {
        return r;
    }
    match tasks::get_by_public_id(&ctx.db, &public_id).await {
        Ok(Some(task)) => Json(task_json(&ctx, &task)).into_response(),
        Ok(None) => super::not_found(),
        Err(e) => super::internal_error(e),
    }
}
