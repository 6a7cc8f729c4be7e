//! Bodies shaped like GitHub's, built from the real webhook examples and REST answers: users,
//! repositories, issues, comments, pull requests, check suites and runs, errors, and timestamps
//! as GitHub writes them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::apps::{APP_ID, APP_SLUG, app_permissions};
use super::git::{bare_path, branches};
use super::state::{CheckRun, CheckSuite, Comment, Pull, Repo, SimState};
use crate::common::fixtures::fixture;

pub fn rfc3339(secs: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn github_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        })),
    )
        .into_response()
}

/// A user object as GitHub's REST API and webhooks return it.
pub fn user_json(login: &str, user_type: &str) -> Value {
    let mut user = fixture("webhooks/issue_comment/created.payload.json")["sender"].clone();
    let id = login
        .bytes()
        .fold(7i64, |h, b| h.wrapping_mul(31).wrapping_add(b as i64))
        .abs()
        % 10_000_000;
    user["login"] = login.into();
    user["id"] = id.into();
    user["type"] = user_type.into();
    // In URLs a bot's login is percent-encoded (`amp-orchestrator%5Bbot%5D`), as GitHub writes it.
    let in_url = login.replace('[', "%5B").replace(']', "%5D");
    for key in [
        "url",
        "html_url",
        "followers_url",
        "following_url",
        "gists_url",
        "starred_url",
        "subscriptions_url",
        "organizations_url",
        "repos_url",
        "events_url",
        "received_events_url",
    ] {
        if let Some(s) = user[key].as_str() {
            user[key] = s.replace("Codertocat", &in_url).into();
        }
    }
    if user_type == "Bot" {
        // A bot's page is its App's.
        let slug = login.strip_suffix("[bot]").unwrap_or(login);
        user["html_url"] = format!("https://github.com/apps/{slug}").into();
    }
    user
}

pub(super) fn app_user() -> Value {
    user_json(&format!("{APP_SLUG}[bot]"), "Bot")
}

/// The App as GitHub's REST API shows it on the comments it makes (an `integration`).
pub(super) fn app_json(owner: &str) -> Value {
    json!({
        "id": APP_ID,
        "slug": APP_SLUG,
        "node_id": "MDM6QXBwNDI0Mg==",
        "client_id": "Iv1.8a61f9b3a7aba766",
        "owner": user_json(owner, "Organization"),
        "name": APP_SLUG,
        "description": "Runs the Amp coding agent on /amp comments",
        "external_url": "https://amp.example.test",
        "html_url": format!("https://github.com/apps/{APP_SLUG}"),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "permissions": app_permissions(),
        "events": ["issue_comment", "check_suite", "pull_request"],
    })
}

/// A repository as `GET /repos/{owner}/{repo}` answers (a `full-repository`): the repository
/// with the counts and settings only that answer has.
pub(super) fn full_repo_json(state: &SimState, repo: &Repo) -> Value {
    let mut json = repo_json(state, repo);
    json["has_discussions"] = false.into();
    json["network_count"] = 0.into();
    json["subscribers_count"] = 1.into();
    json
}

pub fn repo_json(state: &SimState, repo: &Repo) -> Value {
    let mut json = fixture("webhooks/issue_comment/created.payload.json")["repository"].clone();
    let full = repo.full_name();
    json["id"] = repo.id.into();
    json["name"] = repo.name.clone().into();
    json["full_name"] = full.clone().into();
    json["owner"] = user_json(&repo.owner, "User");
    json["default_branch"] = repo.default_branch.clone().into();
    json["archived"] = repo.archived.into();
    json["private"] = repo.private.into();
    json["visibility"] = if repo.private { "private" } else { "public" }.into();
    json["clone_url"] = format!("{}/git/{full}.git", state.base_url).into();
    json["html_url"] = format!("https://github.com/{full}").into();
    json["url"] = format!("https://api.github.com/repos/{full}").into();
    json
}

pub(super) fn issue_json(
    state: &SimState,
    repo: &Repo,
    number: i64,
    title: &str,
    body: &str,
) -> Value {
    let mut json = fixture("webhooks/issue_comment/created.payload.json")["issue"].clone();
    let full = repo.full_name();
    json["id"] = (number * 1000 + repo.id).into();
    json["number"] = number.into();
    json["title"] = title.into();
    json["body"] = body.into();
    json["state"] = "open".into();
    json["locked"] = false.into();
    json["html_url"] = format!("https://github.com/{full}/issues/{number}").into();
    json["url"] = format!("https://api.github.com/repos/{full}/issues/{number}").into();
    json["user"] = app_user();
    let _ = state;
    json
}

pub(super) fn comment_json(c: &Comment) -> Value {
    let mut json = fixture("webhooks/issue_comment/created.payload.json")["comment"].clone();
    json["id"] = c.id.into();
    json["body"] = c.body.clone().into();
    json["user"] = if c.via_app {
        app_user()
    } else {
        user_json(&c.author, "User")
    };
    json["html_url"] = format!(
        "https://github.com/{}/issues/{}#issuecomment-{}",
        c.repo, c.issue_number, c.id
    )
    .into();
    json["url"] = format!(
        "https://api.github.com/repos/{}/issues/comments/{}",
        c.repo, c.id
    )
    .into();
    json["issue_url"] = format!(
        "https://api.github.com/repos/{}/issues/{}",
        c.repo, c.issue_number
    )
    .into();
    if c.via_app {
        let owner = c.repo.split('/').next().unwrap_or_default();
        json["performed_via_github_app"] = app_json(owner);
    }
    json
}

/// A pull request as `GET` and `POST …/pulls` answer (a `pull-request`): the listed shape with
/// its merge state, counts and who may change it.
pub(super) fn full_pull_json(state: &SimState, repo: &Repo, pull: &Pull) -> Value {
    let mut json = pull_json(state, repo, pull);
    json["merged"] = pull.merged.into();
    json["mergeable"] = Value::Null;
    json["mergeable_state"] = "unknown".into();
    json["merged_by"] = match &pull.closed_by {
        Some(login) if pull.merged => user_json(login, "User"),
        _ => Value::Null,
    };
    json["maintainer_can_modify"] = false.into();
    json["comments"] = 0.into();
    json["review_comments"] = 0.into();
    json["commits"] = 1.into();
    json["additions"] = 1.into();
    json["deletions"] = 0.into();
    json["changed_files"] = 1.into();
    json
}

/// A pull request as lists answer it (a `pull-request-simple`).
pub(super) fn pull_json(state: &SimState, repo: &Repo, pull: &Pull) -> Value {
    let mut json = fixture("rest/pull_requests_list.json")[0].clone();
    let full = repo.full_name();
    let api = format!("https://api.github.com/repos/{full}");
    json["id"] = (pull.number * 1000 + repo.id).into();
    json["node_id"] = pull.node_id.clone().into();
    json["number"] = pull.number.into();
    json["state"] = pull.state.clone().into();
    json["title"] = pull.title.clone().into();
    json["body"] = pull.body.clone().into();
    json["draft"] = pull.draft.into();
    json["merged"] = pull.merged.into();
    json["closed_at"] = if pull.state == "closed" {
        "2026-01-02T00:00:00Z".into()
    } else {
        Value::Null
    };
    json["merged_at"] = if pull.merged {
        "2026-01-02T00:00:00Z".into()
    } else {
        Value::Null
    };
    json["user"] = app_user();
    json["url"] = format!("{api}/pulls/{}", pull.number).into();
    json["html_url"] = format!("https://github.com/{full}/pull/{}", pull.number).into();
    json["requested_reviewers"] = Value::Array(
        pull.reviewers
            .iter()
            .map(|l| user_json(l, "User"))
            .collect(),
    );
    json["requested_teams"] = json!([]);
    json["labels"] = json!([]);
    json["milestone"] = Value::Null;
    json["assignee"] = Value::Null;
    json["assignees"] = json!([]);
    let bare = bare_path(&state.root, repo);
    for (side, branch) in [("head", &pull.head), ("base", &pull.base)] {
        let sha = branches(&bare)
            .into_iter()
            .find(|(r, _)| *r == format!("refs/heads/{branch}"))
            .map(|(_, s)| s)
            .unwrap_or_default();
        json[side]["ref"] = branch.clone().into();
        json[side]["sha"] = sha.into();
        json[side]["label"] = format!("{}:{branch}", repo.owner).into();
        json[side]["repo"] = repo_json(state, repo);
        json[side]["user"] = user_json(&repo.owner, "User");
    }
    if let Some(fork) = &pull.head_repo {
        let (owner, name) = fork.split_once('/').unwrap_or((fork, fork));
        let head = &mut json["head"];
        head["label"] = format!("{owner}:{}", pull.head).into();
        head["user"] = user_json(owner, "User");
        head["repo"]["id"] = (repo.id + 100_000).into();
        head["repo"]["name"] = name.into();
        head["repo"]["full_name"] = fork.clone().into();
        head["repo"]["owner"] = user_json(owner, "User");
        head["repo"]["fork"] = true.into();
        head["repo"]["clone_url"] = format!("https://github.com/{fork}.git").into();
    }
    if pull.head_repo_deleted {
        json["head"]["repo"] = Value::Null;
    }
    json
}

pub(super) fn suite_json(state: &SimState, repo: &Repo, suite: &CheckSuite) -> Value {
    let mut json = fixture("rest/list_check_suites_for_ref.json")["check_suites"][0].clone();
    json["id"] = suite.id.into();
    json["head_branch"] = suite.head_branch.clone().into();
    json["head_sha"] = suite.head_sha.clone().into();
    json["after"] = suite.head_sha.clone().into();
    json["status"] = suite.status.clone().into();
    json["conclusion"] = null_if_empty(&suite.conclusion);
    json["pull_requests"] = json!([]);
    json["repository"] = repo_json(state, repo);
    let latest: std::collections::HashSet<&str> =
        suite.runs.iter().map(|r| r.name.as_str()).collect();
    json["latest_check_runs_count"] = latest.len().into();
    json["created_at"] = rfc3339(suite.created_at).into();
    json["updated_at"] = rfc3339(suite.created_at).into();
    json["head_commit"]["id"] = suite.head_sha.clone().into();
    json
}

pub(super) fn run_json(repo: &Repo, suite: &CheckSuite, run: &CheckRun) -> Value {
    let mut json = fixture("rest/commit_check_runs.json")["check_runs"][0].clone();
    let full = repo.full_name();
    json["id"] = run.id.into();
    json["name"] = run.name.clone().into();
    json["head_sha"] = suite.head_sha.clone().into();
    json["status"] = run.status.clone().into();
    json["conclusion"] = null_if_empty(&run.conclusion);
    json["details_url"] = format!(
        "https://github.com/{full}/actions/runs/{}/job/{}",
        suite.id, run.id
    )
    .into();
    json["output"] = json!({
        "title": run.title, "summary": run.summary, "text": null,
        "annotations_count": run.annotations.len(),
        "annotations_url": format!("https://api.github.com/repos/{full}/check-runs/{}/annotations", run.id),
    });
    json["check_suite"] = json!({"id": suite.id});
    json["pull_requests"] = json!([]);
    json["started_at"] = rfc3339(suite.created_at).into();
    json["completed_at"] = if run.status == "completed" {
        rfc3339(suite.created_at).into()
    } else {
        Value::Null
    };
    json
}

/// An empty string as `null` (a conclusion not reached yet).
fn null_if_empty(s: &str) -> Value {
    if s.is_empty() { Value::Null } else { s.into() }
}
