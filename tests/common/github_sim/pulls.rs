//! Pull requests: creating the head branch's ref, creating, listing and getting pull requests,
//! requesting reviewers, marking one ready for review (the one GraphQL mutation the service uses),
//! and a person opening or commenting on one.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GitHubSim;
use super::auth::{AuthorizedRepo, authorized_repo};
use super::git::{bare_path, branches, git};
use super::json::{full_pull_json, github_error, pull_json, repo_json, user_json};
use super::state::{Comment, Pull, Repo, Shared, find_repo};
use super::webhooks::send_webhook_with;
use crate::common::fixtures::fixture;

pub(super) async fn create_ref(
    State(state): State<Shared>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let bare = bare_path(&state.lock().unwrap().root, &repo);
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let (Some(refname), Some(sha)) = (request["ref"].as_str(), request["sha"].as_str()) else {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
    };
    if !refname.starts_with("refs/") {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Reference name must start with 'refs/'",
        );
    }
    let exists = std::process::Command::new("git")
        .args(["show-ref", "--verify", "--quiet", refname])
        .current_dir(&bare)
        .status()
        .unwrap()
        .success();
    if exists {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Reference already exists");
    }
    let ok = std::process::Command::new("git")
        .args(["update-ref", refname, sha])
        .current_dir(&bare)
        .output()
        .unwrap()
        .status
        .success();
    if !ok {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Object does not exist");
    }
    let full = repo.full_name();
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "ref": refname,
            "node_id": "MDM6UmVmcmVmcy9oZWFkcy9mZWF0dXJlQQ==",
            "url": format!("https://api.github.com/repos/{full}/git/{refname}"),
            "object": {"type": "commit", "sha": sha,
                       "url": format!("https://api.github.com/repos/{full}/git/commits/{sha}")}
        })),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct PullsQuery {
    head: Option<String>,
    state: Option<String>,
}

/// `GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=open` (every simulated pull request
/// is open).
pub(super) async fn list_pulls(
    State(state): State<Shared>,
    Query(query): Query<PullsQuery>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let wanted = query.state.as_deref().unwrap_or("open");
    let full = repo.full_name();
    let found: Vec<Value> = s
        .pulls
        .iter()
        .filter(|p| p.repo == full)
        .filter(|p| wanted == "all" || p.state == wanted)
        .filter(|p| {
            query.head.as_deref().is_none_or(|h| {
                let owner = p
                    .head_repo
                    .as_deref()
                    .unwrap_or(&full)
                    .split('/')
                    .next()
                    .unwrap_or("");
                h == format!("{owner}:{}", p.head)
            })
        })
        .map(|p| pull_json(&s, &repo, p))
        .collect();
    axum::Json(found).into_response()
}

pub(super) async fn get_pull(
    State(state): State<Shared>,
    Path((_, _, number)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let full = repo.full_name();
    match s
        .pulls
        .iter()
        .find(|p| p.repo == full && p.number == number)
    {
        Some(pull) => axum::Json(full_pull_json(&s, &repo, pull)).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub(super) async fn create_pull(
    State(state): State<Shared>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let (Some(head), Some(base), Some(title)) = (
        request["head"].as_str(),
        request["base"].as_str(),
        request["title"].as_str(),
    ) else {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let branches = branches(&bare_path(&s.root, &repo));
    let has = |b: &str| {
        branches
            .iter()
            .any(|(r, _)| *r == format!("refs/heads/{b}"))
    };
    if !has(head) || !has(base) {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let full = repo.full_name();
    let draft = request["draft"].as_bool().unwrap_or(false);
    if draft && repo.private && !repo.drafts {
        return validation_failed(
            "Draft pull requests are not supported in this repository.",
            "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
        );
    }
    if s.pulls
        .iter()
        .any(|p| p.repo == full && p.head == head && p.state == "open")
    {
        // GitHub's shape: the reason is in `errors`, the message is generic.
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": format!("A pull request already exists for {}:{head}.", repo.owner),
                }],
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                "status": "422",
            })),
        )
            .into_response();
    }
    let number = s.id();
    let pull = Pull {
        number,
        node_id: format!("PR_sim{number}"),
        repo: full,
        head: head.into(),
        base: base.into(),
        title: title.into(),
        body: request["body"].as_str().unwrap_or("").into(),
        draft,
        state: "open".into(),
        merged: false,
        reviewers: vec![],
        head_repo: None,
        head_repo_deleted: false,
        closed_by: None,
    };
    s.pulls.push(pull.clone());
    (
        StatusCode::CREATED,
        axum::Json(full_pull_json(&s, &repo, &pull)),
    )
        .into_response()
}

/// GitHub's 422 with one custom reason.
fn validation_failed(reason: &str, documentation_url: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({
            "message": "Validation Failed",
            "errors": [{"resource": "PullRequest", "code": "custom", "message": reason}],
            "documentation_url": documentation_url,
            "status": "422",
        })),
    )
        .into_response()
}

/// `PATCH /repos/{owner}/{repo}/pulls/{number}`: title, body, state.
pub(super) async fn update_pull(
    State(state): State<Shared>,
    Path((_, _, number)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let full = repo.full_name();
    let Some(pull) = s
        .pulls
        .iter_mut()
        .find(|p| p.repo == full && p.number == number)
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Some(title) = request["title"].as_str() {
        pull.title = title.into();
    }
    if let Some(body) = request["body"].as_str() {
        pull.body = body.into();
    }
    if let Some(state) = request["state"].as_str() {
        pull.state = state.into();
    }
    let pull = pull.clone();
    axum::Json(full_pull_json(&s, &repo, &pull)).into_response()
}

pub(super) async fn request_reviewers(
    State(state): State<Shared>,
    Path((_, _, number)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let logins: Vec<String> = request["reviewers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if logins.iter().any(|l| !repo.collaborators.contains_key(l)) {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Reviews may only be requested from collaborators.",
        );
    }
    let full = repo.full_name();
    let Some(pull) = s
        .pulls
        .iter_mut()
        .find(|p| p.repo == full && p.number == number)
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    pull.reviewers.extend(logins);
    let pull = pull.clone();
    (StatusCode::CREATED, axum::Json(pull_json(&s, &repo, &pull))).into_response()
}

/// The one GraphQL mutation the service uses: `markPullRequestReadyForReview`.
pub(super) async fn graphql(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let query = request["query"].as_str().unwrap_or("");
    if !query.contains("markPullRequestReadyForReview") {
        s.unknown.push(format!("POST /graphql {query}"));
        return axum::Json(json!({"errors": [{"message": "unknown query"}]})).into_response();
    }
    let id = request["variables"]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Some(pull) = s.pulls.iter().find(|p| p.node_id == id).cloned() else {
        return axum::Json(json!({"data": null, "errors": [{"type": "NOT_FOUND",
            "message": format!("Could not resolve to a node with the global id of '{id}'")}]}))
        .into_response();
    };
    let (owner, name) = pull.repo.split_once('/').unwrap();
    let path = format!("/repos/{}/pulls/{}", pull.repo, pull.number);
    if let Err(r) = authorized_repo(&s, owner, name, &Method::POST, &path, &headers) {
        // GraphQL answers 200 with the refusal among its errors (401 stays 401).
        if r.status() != StatusCode::FORBIDDEN {
            return r;
        }
        return axum::Json(
            json!({"data": {"markPullRequestReadyForReview": null}, "errors": [{
            "type": "FORBIDDEN", "path": ["markPullRequestReadyForReview"],
            "message": "Resource not accessible by integration"}]}),
        )
        .into_response();
    }
    if pull.state != "open" {
        return axum::Json(
            json!({"data": {"markPullRequestReadyForReview": null}, "errors": [{
            "type": "UNPROCESSABLE", "path": ["markPullRequestReadyForReview"],
            "message": "Pull request is closed"}]}),
        )
        .into_response();
    }
    if let Some(p) = s.pulls.iter_mut().find(|p| p.node_id == id) {
        p.draft = false;
    }
    axum::Json(
        json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false}}}}),
    )
    .into_response()
}

impl GitHubSim {
    pub fn pulls(&self) -> Vec<Pull> {
        self.state.lock().unwrap().pulls.clone()
    }

    /// A person opens a pull request from branch `head` (created from the default branch with
    /// one commit adding `file`), or from a fork's branch when `fork` names one. Returns its
    /// number, which is also its issue number.
    pub fn open_pull(
        &self,
        repo: &Repo,
        head: &str,
        fork: Option<&str>,
        file: (&str, &str),
    ) -> i64 {
        let mut s = self.state.lock().unwrap();
        let bare = bare_path(&s.root, repo);
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let bare_str = bare.to_str().unwrap();
        git(
            dir,
            &[
                "clone",
                "-q",
                "--branch",
                &repo.default_branch,
                bare_str,
                ".",
            ],
        );
        git(dir, &["checkout", "-q", "-b", head]);
        std::fs::write(dir.join(file.0), file.1).unwrap();
        git(dir, &["add", "-A"]);
        git(
            dir,
            &[
                "-c",
                "user.name=contributor",
                "-c",
                "user.email=c@example.com",
                "commit",
                "-q",
                "-m",
                "Start",
            ],
        );
        git(dir, &["push", "-q", "origin", head]);
        let number = s.id();
        s.pulls.push(Pull {
            number,
            node_id: format!("PR_sim{number}"),
            repo: repo.full_name(),
            head: head.into(),
            base: repo.default_branch.clone(),
            title: format!("Work on {head}"),
            body: String::new(),
            draft: false,
            state: "open".into(),
            merged: false,
            reviewers: vec![],
            head_repo: fork.map(str::to_string),
            head_repo_deleted: false,
            closed_by: None,
        });
        number
    }

    /// `login` closes pull request `number`, merged or not, and GitHub sends the
    /// `pull_request` `closed` webhook.
    pub async fn close_pull(&self, number: i64, merged: bool, login: &str) {
        let payload = {
            let mut s = self.state.lock().unwrap();
            let pull = s.pulls.iter_mut().find(|p| p.number == number).unwrap();
            pull.state = "closed".into();
            pull.merged = merged;
            pull.closed_by = Some(login.to_string());
            let pull = pull.clone();
            let (owner, name) = pull.repo.split_once('/').unwrap();
            let repo = find_repo(&s, owner, name).unwrap();
            let mut payload = fixture("webhooks/pull_request/closed.payload.json");
            payload["number"] = number.into();
            payload["pull_request"] = full_pull_json(&s, &repo, &pull);
            payload["repository"] = repo_json(&s, &repo);
            payload["sender"] = user_json(login, "User");
            payload["installation"]["id"] = repo.installation_id.into();
            payload
        };
        send_webhook_with(&self.state, "pull_request", &payload).await;
    }

    /// The fork holding pull request `number`'s head branch is deleted (`head.repo` is null).
    pub fn delete_head_repo(&self, number: i64) {
        let mut s = self.state.lock().unwrap();
        let pull = s.pulls.iter_mut().find(|p| p.number == number).unwrap();
        pull.head_repo_deleted = true;
    }

    /// A person comments on a pull request (its conversation tab): the `issue_comment` webhook
    /// with `issue.pull_request` set, as GitHub sends it.
    pub async fn pr_comment(
        &self,
        repo: &Repo,
        number: i64,
        login: &str,
        body: &str,
    ) -> (i64, String) {
        let comment_id = {
            let mut state = self.state.lock().unwrap();
            let id = state.id();
            state.comments.push(Comment {
                id,
                repo: repo.full_name(),
                issue_number: number,
                author: login.into(),
                body: body.into(),
                edits: vec![],
                via_app: false,
            });
            id
        };
        let mut payload = self.comment_payload(repo, number, comment_id, login, "User", body);
        let full = repo.full_name();
        payload["issue"]["pull_request"] = json!({
            "url": format!("https://api.github.com/repos/{full}/pulls/{number}"),
            "html_url": format!("https://github.com/{full}/pull/{number}"),
            "diff_url": format!("https://github.com/{full}/pull/{number}.diff"),
            "patch_url": format!("https://github.com/{full}/pull/{number}.patch"),
            "merged_at": null,
        });
        if let Some(pull) = self.pulls().into_iter().find(|p| p.number == number) {
            payload["issue"]["title"] = pull.title.into();
        }
        let delivery = self.state.lock().unwrap().next_delivery();
        self.send_webhook("issue_comment", &delivery, &payload)
            .await;
        (comment_id, delivery)
    }
}
