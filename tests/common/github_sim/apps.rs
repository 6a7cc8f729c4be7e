//! The App: its identity (id, slug, key pair), installation tokens, the installation of a
//! repository, and the manifest flow that creates it (GitHub's new-App page, then the code's
//! conversion into the App's credentials).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::GitHubSim;
use super::auth::{check_app_jwt, grants};
use super::json::{github_error, repo_json, rfc3339, user_json};
use super::state::{Permissions, Shared, SimState, Token, find_repo, now};
use crate::common::fixtures::fixtures_dir;

pub const APP_ID: u64 = 4242;
pub const APP_SLUG: &str = "amp-orchestrator";

pub fn app_private_key() -> String {
    std::fs::read_to_string(fixtures_dir().join("../app/test-app-key.pem")).unwrap()
}

/// What the App may do (`app-manifest.json`), as GitHub lists it on the App.
pub(super) fn app_permissions() -> Value {
    json!(super::state::manifest_permissions())
}

pub(super) fn app_public_key() -> Vec<u8> {
    std::fs::read(fixtures_dir().join("../app/test-app-key.pub.pem")).unwrap()
}

pub(super) async fn create_token(
    State(state): State<Shared>,
    Path(installation): Path<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let mut s = state.lock().unwrap();
    let installed: Vec<i64> = s
        .repos
        .iter()
        .filter(|r| r.installation_id == installation)
        .map(|r| r.id)
        .collect();
    if installed.is_empty() || s.uninstalled.contains(&installation) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    if s.suspended_installations.contains_key(&installation) {
        return github_error(
            StatusCode::FORBIDDEN,
            "This installation has been suspended",
        );
    }
    let by_name: Option<Vec<i64>> = request["repositories"].as_array().map(|names| {
        names
            .iter()
            .filter_map(Value::as_str)
            .map(|n| {
                s.repos
                    .iter()
                    .find(|r| r.installation_id == installation && r.name == n)
                    .map(|r| r.id)
                    .unwrap_or(-1)
            })
            .collect()
    });
    let restricted = by_name.is_some() || request["repository_ids"].is_array();
    let repo_ids: Vec<i64> = match (by_name, request["repository_ids"].as_array()) {
        (Some(ids), _) => ids,
        (None, Some(ids)) => ids.iter().filter_map(Value::as_i64).collect(),
        (None, None) => installed.clone(),
    };
    if repo_ids.iter().any(|id| !installed.contains(id)) {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        );
    }
    // A token has the installation's permissions, or those asked for, which the installation
    // must grant.
    let granted = s.installation_grants(installation);
    let permissions: Permissions = match request["permissions"].as_object() {
        Some(asked) => {
            let asked: Permissions = asked
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            if asked
                .iter()
                .any(|(name, level)| !grants(&granted, name, level))
            {
                return github_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "The permissions requested are not granted to this installation.",
                );
            }
            asked
        }
        None => granted,
    };
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    let expires_at = now() + s.token_lifetime.as_secs();
    s.tokens.insert(
        token.clone(),
        Token {
            installation_id: installation,
            repo_ids: repo_ids.clone(),
            expires_at,
            permissions: permissions.clone(),
        },
    );
    s.tokens_minted += 1;
    let mut answer = json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "permissions": permissions,
        "repository_selection": "selected"
    });
    if restricted {
        let repos: Vec<Value> = s
            .repos
            .iter()
            .filter(|r| repo_ids.contains(&r.id))
            .map(|r| repo_json(&s, r))
            .collect();
        answer["repositories"] = Value::Array(repos);
    }
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

pub(super) async fn get_repo_installation(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let s = state.lock().unwrap();
    let Some(repo) = find_repo(&s, &owner, &name) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if s.uninstalled.contains(&repo.installation_id) {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    axum::Json(installation_json(&s, repo.installation_id, &repo.owner)).into_response()
}

/// `GET /app/installations/{id}`: 404 once uninstalled; `suspended_at` set while suspended.
pub(super) async fn get_installation(
    State(state): State<Shared>,
    Path(installation): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let s = state.lock().unwrap();
    let owner = s
        .repos
        .iter()
        .find(|r| r.installation_id == installation)
        .map(|r| r.owner.clone());
    match owner {
        Some(owner) if !s.uninstalled.contains(&installation) => {
            axum::Json(installation_json(&s, installation, &owner)).into_response()
        }
        _ => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// An installation of the App on `owner`'s account, as GitHub describes it.
fn installation_json(s: &SimState, id: i64, owner: &str) -> Value {
    let account = user_json(owner, "Organization");
    let suspended_at = s.suspended_installations.get(&id).cloned();
    json!({
        "id": id,
        "account": account,
        "app_id": APP_ID,
        "app_slug": APP_SLUG,
        "target_id": account["id"],
        "target_type": "Organization",
        "repository_selection": "selected",
        "single_file_name": null,
        "access_tokens_url": format!("https://api.github.com/app/installations/{id}/access_tokens"),
        "repositories_url": "https://api.github.com/installation/repositories",
        "html_url": format!(
            "https://github.com/organizations/{owner}/settings/installations/{id}"
        ),
        "events": ["issue_comment", "check_suite", "pull_request"],
        "permissions": s.installation_grants(id),
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "suspended_by": suspended_at.as_ref().map(|_| user_json(owner, "User")),
        "suspended_at": suspended_at,
    })
}

#[derive(serde::Deserialize)]
pub(super) struct NewAppQuery {
    state: Option<String>,
}

#[derive(serde::Deserialize)]
pub(super) struct ManifestForm {
    manifest: String,
}

/// GitHub's "Create GitHub App" page receiving a manifest form, with the person confirming at
/// once: the App is created and the browser is sent to the manifest's `redirect_url` with a
/// one-time code and the `state` it came with.
async fn new_app(state: &Shared, owner: &str, query: NewAppQuery, form: ManifestForm) -> Response {
    let Ok(manifest) = serde_json::from_str::<Value>(&form.manifest) else {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid manifest");
    };
    let (Some(redirect), Some(_hook)) = (
        manifest["redirect_url"].as_str(),
        manifest["hook_attributes"]["url"].as_str(),
    ) else {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Manifest needs redirect_url and hook_attributes.url",
        );
    };
    let code = format!("{:032x}", rand::random::<u128>());
    state
        .lock()
        .unwrap()
        .manifest_codes
        .insert(code.clone(), (manifest.clone(), owner.to_string()));
    let mut location = format!("{redirect}?code={code}");
    if let Some(s) = query.state {
        location.push_str(&format!("&state={s}"));
    }
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, location)],
    )
        .into_response()
}

pub(super) async fn new_app_for_user(
    State(state): State<Shared>,
    Query(query): Query<NewAppQuery>,
    axum::Form(form): axum::Form<ManifestForm>,
) -> Response {
    new_app(&state, "octocat", query, form).await
}

pub(super) async fn new_app_for_org(
    State(state): State<Shared>,
    Path(org): Path<String>,
    Query(query): Query<NewAppQuery>,
    axum::Form(form): axum::Form<ManifestForm>,
) -> Response {
    new_app(&state, &org, query, form).await
}

/// `POST /app-manifests/{code}/conversions`: no authentication, the code works once. The App
/// the simulator creates is the one it knows (`APP_ID`, the test key), with a new webhook secret
/// that it signs webhooks with from now on, sent to the manifest's webhook URL.
pub(super) async fn convert_manifest(
    State(state): State<Shared>,
    Path(code): Path<String>,
) -> Response {
    let mut s = state.lock().unwrap();
    let Some((manifest, owner)) = s.manifest_codes.remove(&code) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    s.manifest_conversions += 1;
    let secret = format!("{:032x}", rand::random::<u128>());
    s.webhook_secret = secret.clone();
    s.webhook_url = manifest["hook_attributes"]["url"]
        .as_str()
        .map(str::to_string);
    let name = manifest["name"].as_str().unwrap_or(APP_SLUG).to_string();
    s.client_secret = format!("{:040x}", rand::random::<u128>());
    let body = json!({
        "id": APP_ID,
        "slug": APP_SLUG,
        "node_id": "MDM6QXBwNDI0Mg==",
        "owner": user_json(&owner, "Organization"),
        "name": name,
        "description": manifest["description"],
        "external_url": manifest["url"],
        "html_url": format!("{}/apps/{APP_SLUG}", s.base_url),
        "created_at": rfc3339(now()),
        "updated_at": rfc3339(now()),
        "permissions": manifest["default_permissions"],
        "events": manifest["default_events"],
        "client_id": "Iv1.8a61f9b3a7aba766",
        "client_secret": s.client_secret,
        "webhook_secret": secret,
        "pem": app_private_key(),
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

impl GitHubSim {
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().token_lifetime = lifetime;
    }

    /// Every installation token issued so far.
    pub fn minted_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.keys().cloned().collect()
    }

    /// Installation `installation_id` grants `permissions` instead of the manifest's (one that has
    /// not accepted permissions the App asked for later, or one given more).
    pub fn set_installation_permissions(&self, installation_id: i64, permissions: &[(&str, &str)]) {
        self.state.lock().unwrap().installation_permissions.insert(
            installation_id,
            permissions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }

    /// The owner suspends installation `installation_id` (GitHub then refuses its tokens).
    pub fn suspend_installation(&self, installation_id: i64) {
        self.state
            .lock()
            .unwrap()
            .suspended_installations
            .insert(installation_id, "2026-01-02T00:00:00Z".into());
    }

    /// The owner removes installation `installation_id`.
    pub fn uninstall(&self, installation_id: i64) {
        self.state
            .lock()
            .unwrap()
            .uninstalled
            .insert(installation_id);
    }

    /// Make every installation token issued so far invalid, as if it had expired.
    pub fn expire_tokens(&self) {
        for token in self.state.lock().unwrap().tokens.values_mut() {
            token.expires_at = 0;
        }
    }
}
