//! Credentials, checked the way GitHub checks them: the App JWT, installation tokens (as a bearer
//! token for the REST API, or HTTP Basic auth for git), and [`AuthorizedRepo`], the extractor
//! through which every REST route on a repository gets its repository.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::apps::{APP_ID, app_public_key};
use super::json::github_error;
use super::state::{Permissions, Repo, Shared, SimState, Token, find_repo, now};

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

/// The App JWT, checked like GitHub: RS256 against the App's public key, `iss` the App id,
/// not expired, not issued in the future, and valid for at most ten minutes.
pub(super) fn check_app_jwt(headers: &HeaderMap) -> Result<(), Response> {
    #[derive(serde::Deserialize)]
    struct Claims {
        iss: serde_json::Value,
        iat: u64,
        exp: u64,
    }
    let unauthorized = |m: &str| github_error(StatusCode::UNAUTHORIZED, m);
    let token = bearer(headers).ok_or_else(|| unauthorized("Requires authentication"))?;
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(&app_public_key()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    // `iss` is a number for GitHub Apps, which the library's own check does not accept; it is
    // checked below.
    validation.required_spec_claims = ["exp", "iat"].map(String::from).into();
    let data = jsonwebtoken::decode::<Claims>(&token, &key, &validation)
        .map_err(|e| unauthorized(&format!("A JSON web token could not be decoded ({e})")))?;
    let claims = data.claims;
    let iss_ok = claims.iss == json!(APP_ID) || claims.iss == json!(APP_ID.to_string());
    if !iss_ok {
        return Err(unauthorized("'Issuer' claim ('iss') must be an Integer"));
    }
    if claims.iat > now() + 60 {
        return Err(unauthorized(
            "'Issued at' claim ('iat') must be an Integer representing a time in the past",
        ));
    }
    if claims.exp.saturating_sub(claims.iat) > 600 + 60 {
        return Err(unauthorized(
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(())
}

/// The permission an installation token needs for a REST call on a repository (`rest` is the
/// path after `/repos/{owner}/{repo}`), as GitHub's documentation lists it for each endpoint.
pub(super) fn required_permission(
    method: &Method,
    rest: &str,
) -> Option<(&'static str, &'static str)> {
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let level = if *method == Method::GET {
        "read"
    } else {
        "write"
    };
    Some(match parts.as_slice() {
        [""] | ["collaborators", ..] => ("metadata", "read"),
        ["issues", ..] => ("issues", level),
        ["git" | "contents", ..] => ("contents", level),
        ["pulls", ..] => ("pull_requests", level),
        ["commits", _, "status"] => ("statuses", "read"),
        ["commits", _, "check-suites" | "check-runs"] | ["check-runs", ..] => ("checks", level),
        ["actions", ..] => ("actions", level),
        _ => return None,
    })
}

/// Whether `granted` covers `needed` at `level` (`write` includes `read`).
pub(super) fn grants(granted: &Permissions, needed: &str, level: &str) -> bool {
    match granted.get(needed).map(String::as_str) {
        Some("write" | "admin") => true,
        Some("read") => level == "read",
        _ => false,
    }
}

/// GitHub's answer to a token without the permission a call needs.
pub(super) fn not_accessible() -> Response {
    github_error(
        StatusCode::FORBIDDEN,
        "Resource not accessible by integration",
    )
}

/// An installation token valid now and scoped to `repo`.
fn check_token(state: &SimState, headers: &HeaderMap, repo: &Repo) -> Result<Token, Response> {
    let token = bearer(headers)
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("token "))
                .map(str::to_string)
        })
        .ok_or_else(|| github_error(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
    check_installation_token(state, &token, repo)
}

/// `token` is an installation token valid now and scoped to `repo`: GitHub answers 401 for a
/// token it does not know or that has expired, 404 for one that cannot see `repo`.
pub(super) fn check_installation_token(
    state: &SimState,
    token: &str,
    repo: &Repo,
) -> Result<Token, Response> {
    let Some(info) = state.tokens.get(token) else {
        return Err(github_error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    };
    if info.expires_at <= now() {
        return Err(github_error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    if info.installation_id != repo.installation_id || !info.repo_ids.contains(&repo.id) {
        return Err(github_error(StatusCode::NOT_FOUND, "Not Found"));
    }
    Ok(info.clone())
}

/// The installation token from HTTP Basic auth (`x-access-token:<token>`, as GitHub takes it).
pub(super) fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// The repository `owner/name`, when the request's installation token is valid for it and has
/// the permission the call needs; otherwise GitHub's answer: 404 for a repository that does not
/// exist or that the token cannot see, 401 without a valid token, 403 without the permission.
pub(super) fn authorized_repo(
    state: &SimState,
    owner: &str,
    name: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Repo, Response> {
    let Some(repo) = find_repo(state, owner, name) else {
        return Err(github_error(StatusCode::NOT_FOUND, "Not Found"));
    };
    let token = check_token(state, headers, &repo)?;
    let rest = path
        .strip_prefix(&format!("/repos/{owner}/{name}"))
        .unwrap_or(path);
    let Some((needed, level)) = required_permission(method, rest) else {
        // A route added to the simulator without its permission: a 500 the test shows.
        return Err(github_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the simulator knows no permission for {method} {path}"),
        ));
    };
    if !grants(&token.permissions, needed, level) {
        return Err(not_accessible());
    }
    Ok(repo)
}

/// The repository a request's path names (`{owner}/{repo}`), when the request carries an
/// installation token valid for it (see [`authorized_repo`]); otherwise the request is answered
/// with GitHub's error. Every REST route on a repository takes its repository through this.
pub(super) struct AuthorizedRepo(pub(super) Repo);

impl FromRequestParts<Shared> for AuthorizedRepo {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let param = |key: &str| params.get(key).map(String::as_str).unwrap_or_default();
        let state = state.lock().unwrap();
        authorized_repo(
            &state,
            param("owner"),
            param("repo"),
            &parts.method,
            parts.uri.path(),
            &parts.headers,
        )
        .map(AuthorizedRepo)
    }
}
