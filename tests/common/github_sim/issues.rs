//! Issues and what is said on them: the repository itself, issues, issue comments (the App's, and
//! a person's with its `issue_comment` webhook), reactions, and a collaborator's permission.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GitHubSim;
use super::apps::APP_SLUG;
use super::auth::AuthorizedRepo;
use super::json::{
    app_user, comment_json, full_repo_json, github_error, issue_json, repo_json, rfc3339, user_json,
};
use super::state::{Comment, Reaction, Repo, Shared, now};
use crate::common::fixtures::fixture;

pub(super) async fn get_repo(
    State(state): State<Shared>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    axum::Json(full_repo_json(&s, &repo)).into_response()
}

pub(super) async fn get_permission(
    Path((_, _, login)): Path<(String, String, String)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let role = repo
        .collaborators
        .get(&login)
        .cloned()
        .unwrap_or_else(|| if repo.private { "none" } else { "read" }.into());
    // A custom role (`ci-manager=write`) is named in `role_name`; `permission` is the base
    // role it builds on.
    let (role, base) = match role.split_once('=') {
        Some((custom, base)) => (custom.to_string(), base.to_string()),
        None => (role.clone(), role),
    };
    let legacy = match base.as_str() {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    };
    // The user as a collaborator: with their role and what it allows.
    let mut user = user_json(&login, "User");
    let role_in = |roles: &[&str]| roles.contains(&role.as_str());
    user["permissions"] = json!({
        "admin": role_in(&["admin"]),
        "maintain": role_in(&["admin", "maintain"]),
        "push": role_in(&["admin", "maintain", "write"]),
        "triage": role_in(&["admin", "maintain", "write", "triage"]),
        "pull": true,
    });
    user["role_name"] = role.clone().into();
    axum::Json(json!({
        "permission": legacy,
        "role_name": role,
        "user": user,
    }))
    .into_response()
}

pub(super) async fn create_issue(
    State(state): State<Shared>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(title) = request["title"].as_str().filter(|t| !t.is_empty()) else {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let body = request["body"].as_str().unwrap_or_default().to_string();
    let number = s.id();
    s.issues
        .push((repo.full_name(), number, title.to_string(), body.clone()));
    (
        StatusCode::CREATED,
        axum::Json(issue_json(&s, &repo, number, title, &body)),
    )
        .into_response()
}

pub(super) async fn get_issue(
    State(state): State<Shared>,
    Path((_, _, number)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    let s = state.lock().unwrap();
    let full = repo.full_name();
    match s
        .issues
        .iter()
        .find(|(r, n, _, _)| *r == full && *n == number)
    {
        Some((_, _, title, body)) => {
            axum::Json(issue_json(&s, &repo, number, title, body)).into_response()
        }
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub(super) async fn create_comment(
    State(state): State<Shared>,
    Path((_, _, number)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let Some(text) = request["body"].as_str() else {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request.\n\n\"body\" wasn't supplied.",
        );
    };
    let id = s.id();
    let comment = Comment {
        id,
        repo: repo.full_name(),
        issue_number: number,
        author: format!("{APP_SLUG}[bot]"),
        body: text.into(),
        edits: vec![],
        via_app: true,
    };
    s.comments.push(comment.clone());
    (StatusCode::CREATED, axum::Json(comment_json(&comment))).into_response()
}

pub(super) async fn update_comment(
    State(state): State<Shared>,
    Path((_, _, id)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let Some(text) = request["body"].as_str() else {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
    };
    let full = repo.full_name();
    let Some(comment) = s.comments.iter_mut().find(|c| c.id == id && c.repo == full) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if !comment.via_app {
        return github_error(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
        );
    }
    let previous = std::mem::replace(&mut comment.body, text.into());
    comment.edits.push(previous);
    let comment = comment.clone();
    axum::Json(comment_json(&comment)).into_response()
}

pub(super) async fn create_reaction(
    State(state): State<Shared>,
    Path((_, _, id)): Path<(String, String, i64)>,
    AuthorizedRepo(repo): AuthorizedRepo,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let content = request["content"].as_str().unwrap_or("").to_string();
    if ![
        "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
    ]
    .contains(&content.as_str())
    {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let full = repo.full_name();
    if !s.comments.iter().any(|c| c.id == id && c.repo == full) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let by = format!("{APP_SLUG}[bot]");
    let existing = s
        .reactions
        .iter()
        .any(|r| r.comment_id == id && r.content == content && r.by == by);
    let status = if existing {
        StatusCode::OK
    } else {
        s.reactions.push(Reaction {
            comment_id: id,
            content: content.clone(),
            by,
        });
        StatusCode::CREATED
    };
    let reaction_id = s.id();
    (
        status,
        axum::Json(json!({
            "id": reaction_id,
            "node_id": "MDg6UmVhY3Rpb24x",
            "user": app_user(),
            "content": content,
            "created_at": rfc3339(now()),
        })),
    )
        .into_response()
}

impl GitHubSim {
    /// A person opens an issue; returns its number.
    pub fn open_issue(&self, repo: &Repo, title: &str, body: &str) -> i64 {
        let mut s = self.state.lock().unwrap();
        let number = s.id();
        s.issues.push((
            repo.full_name(),
            number,
            title.to_string(),
            body.to_string(),
        ));
        number
    }

    pub fn comments_on(&self, repo: &Repo, issue_number: i64) -> Vec<Comment> {
        let full = repo.full_name();
        self.state
            .lock()
            .unwrap()
            .comments
            .iter()
            .filter(|c| c.repo == full && c.issue_number == issue_number)
            .cloned()
            .collect()
    }

    /// Comments the App posted on an issue.
    pub fn app_comments(&self, repo: &Repo, issue_number: i64) -> Vec<Comment> {
        self.comments_on(repo, issue_number)
            .into_iter()
            .filter(|c| c.via_app)
            .collect()
    }

    pub fn reactions_on(&self, comment_id: i64) -> Vec<Reaction> {
        self.state
            .lock()
            .unwrap()
            .reactions
            .iter()
            .filter(|r| r.comment_id == comment_id)
            .cloned()
            .collect()
    }

    /// A person comments on an issue: the comment is recorded and GitHub's `issue_comment`
    /// `created` webhook is sent, built from the real example with ids, repository, user and
    /// body replaced. Returns the comment id and the delivery id.
    pub async fn comment(
        &self,
        repo: &Repo,
        issue_number: i64,
        login: &str,
        body: &str,
    ) -> (i64, String) {
        self.comment_as(repo, issue_number, login, "User", body)
            .await
    }

    pub async fn comment_as(
        &self,
        repo: &Repo,
        issue_number: i64,
        login: &str,
        user_type: &str,
        body: &str,
    ) -> (i64, String) {
        let comment_id = {
            let mut state = self.state.lock().unwrap();
            let id = state.id();
            state.comments.push(Comment {
                id,
                repo: repo.full_name(),
                issue_number,
                author: login.into(),
                body: body.into(),
                edits: vec![],
                via_app: false,
            });
            id
        };
        let payload = self.comment_payload(repo, issue_number, comment_id, login, user_type, body);
        let delivery = self.state.lock().unwrap().next_delivery();
        self.send_webhook("issue_comment", &delivery, &payload)
            .await;
        (comment_id, delivery)
    }

    pub fn comment_payload(
        &self,
        repo: &Repo,
        issue_number: i64,
        comment_id: i64,
        login: &str,
        user_type: &str,
        body: &str,
    ) -> Value {
        let mut payload = fixture("webhooks/issue_comment/created.with-installation.payload.json");
        let user = user_json(login, user_type);
        payload["comment"]["id"] = comment_id.into();
        payload["comment"]["body"] = body.into();
        payload["comment"]["user"] = user.clone();
        payload["comment"]["html_url"] = format!(
            "https://github.com/{}/issues/{issue_number}#issuecomment-{comment_id}",
            repo.full_name()
        )
        .into();
        payload["sender"] = user;
        payload["issue"]["number"] = issue_number.into();
        payload["issue"]["locked"] = false.into();
        payload["repository"] = repo_json(&self.state.lock().unwrap(), repo);
        payload["installation"]["id"] = repo.installation_id.into();
        payload
    }
}
