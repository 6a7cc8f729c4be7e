//! A stateful fake GitHub on a loopback port, for end-to-end stories.
//!
//! It checks credentials the way GitHub does (the App JWT's RS256 signature, issuer and lifetime;
//! installation tokens' expiry and repository scope), answers with bodies shaped like GitHub's
//! (built from the real webhook examples' user, repository and comment objects, which share the
//! REST shapes), records what the service did, sends signed webhooks built from the real examples,
//! and injects faults on request. A request it does not know is recorded, answered 404, and
//! fails the test when the simulator is dropped.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde_json::{Value, json};

use super::fixtures::fixture;

pub const APP_ID: u64 = 4242;
pub const APP_SLUG: &str = "amp-orchestrator";

pub fn app_private_key() -> String {
    std::fs::read_to_string(super::fixtures::fixtures_dir().join("../app/test-app-key.pem"))
        .unwrap()
}

fn app_public_key() -> Vec<u8> {
    std::fs::read(super::fixtures::fixtures_dir().join("../app/test-app-key.pub.pem")).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(secs as i64, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A fault served instead of the next matching request (each is used once).
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and GitHub's error body.
    Status(u16),
    /// A secondary rate limit: 403 with `Retry-After`.
    SecondaryRateLimit { retry_after_secs: u64 },
    /// The primary rate limit: 403 with `x-ratelimit-remaining: 0` and a reset time.
    PrimaryRateLimit { reset_in_secs: u64 },
    /// Answer normally after a delay.
    Slow(Duration),
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub installation_id: i64,
    pub default_branch: String,
    pub archived: bool,
    /// login → role (`admin`, `maintain`, `write`, `triage`, `read`).
    pub collaborators: HashMap<String, String>,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: i64,
    pub repo: String,
    pub issue_number: i64,
    pub author: String,
    pub body: String,
    /// Earlier bodies, oldest first.
    pub edits: Vec<String>,
    pub via_app: bool,
}

#[derive(Debug, Clone)]
pub struct Reaction {
    pub comment_id: i64,
    pub content: String,
    pub by: String,
}

#[derive(Debug, Clone)]
struct Token {
    installation_id: i64,
    repo_ids: Vec<i64>,
    expires_at: u64,
}

/// One request the simulator answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Default)]
pub struct SimState {
    pub repos: Vec<Repo>,
    pub comments: Vec<Comment>,
    pub reactions: Vec<Reaction>,
    tokens: HashMap<String, Token>,
    pub tokens_minted: usize,
    /// Lifetime of minted installation tokens (GitHub: one hour).
    pub token_lifetime: Duration,
    faults: VecDeque<(Method, String, Fault)>,
    pub log: Vec<Logged>,
    pub unknown: Vec<String>,
    next_id: i64,
}

impl SimState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

pub type Shared = Arc<Mutex<SimState>>;

pub struct GitHubSim {
    pub addr: SocketAddr,
    pub state: Shared,
    pub http: reqwest::Client,
    /// Where webhooks go (the service under test), set with [`GitHubSim::deliver_to`].
    webhook_url: Mutex<Option<String>>,
    webhook_secret: String,
    deliveries: Mutex<u64>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GitHubSim {
    fn drop(&mut self) {
        self.server.abort();
        let unknown = self.state.lock().unwrap().unknown.clone();
        if !unknown.is_empty() && !std::thread::panicking() {
            panic!("the service made requests the GitHub simulator does not know: {unknown:?}");
        }
    }
}

impl GitHubSim {
    pub async fn start(webhook_secret: &str) -> GitHubSim {
        let state: Shared = Arc::new(Mutex::new(SimState {
            token_lifetime: Duration::from_secs(3600),
            next_id: 1000,
            ..Default::default()
        }));
        let app = Router::new()
            .route(
                "/app/installations/{installation}/access_tokens",
                post(create_token),
            )
            .route("/repos/{owner}/{repo}", get(get_repo))
            .route(
                "/repos/{owner}/{repo}/collaborators/{login}/permission",
                get(get_permission),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                post(create_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}",
                patch(update_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
                post(create_reaction),
            )
            .fallback(unknown)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                faults_and_log,
            ))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        GitHubSim {
            addr,
            state,
            http: reqwest::Client::new(),
            webhook_url: Mutex::new(None),
            webhook_secret: webhook_secret.to_string(),
            deliveries: Mutex::new(0),
            server,
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment the service needs to talk to this simulator as the App.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("APP_ID".into(), APP_ID.to_string()),
            ("PRIVATE_KEY".into(), app_private_key()),
            ("GITHUB_API_URL".into(), self.api_url()),
            ("PUBLIC_URL".into(), "https://amp.example.test".into()),
        ]
    }

    pub fn deliver_to(&self, service_base: &str) {
        *self.webhook_url.lock().unwrap() = Some(format!("{service_base}/api/github/webhooks"));
    }

    /// A repository with the App installed; `collaborators` are (login, role).
    pub fn add_repo(
        &self,
        full_name: &str,
        installation_id: i64,
        collaborators: &[(&str, &str)],
    ) -> Repo {
        let (owner, name) = full_name.split_once('/').unwrap();
        let mut state = self.state.lock().unwrap();
        let id = state.id();
        let repo = Repo {
            id,
            owner: owner.into(),
            name: name.into(),
            installation_id,
            default_branch: "main".into(),
            archived: false,
            collaborators: collaborators
                .iter()
                .map(|(l, r)| (l.to_string(), r.to_string()))
                .collect(),
        };
        state.repos.push(repo.clone());
        repo
    }

    /// Serve `fault` instead of the next `method` request whose path contains `path_part`.
    pub fn inject(&self, method: Method, path_part: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((method, path_part.to_string(), fault));
    }

    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().unwrap().token_lifetime = lifetime;
    }

    /// Make every installation token issued so far invalid, as if it had expired.
    pub fn expire_tokens(&self) {
        for token in self.state.lock().unwrap().tokens.values_mut() {
            token.expires_at = 0;
        }
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

    pub fn requests(&self, method: &str, path_part: &str) -> Vec<Logged> {
        self.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|l| l.method == method && l.path.contains(path_part))
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
        let delivery = self.next_delivery();
        self.send_webhook("issue_comment", &delivery, &payload)
            .await;
        (comment_id, delivery)
    }

    fn next_delivery(&self) -> String {
        let mut n = self.deliveries.lock().unwrap();
        *n += 1;
        format!("sim-delivery-{}-{}", self.addr.port(), *n)
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
        payload["repository"] = repo_json(repo);
        payload["installation"]["id"] = repo.installation_id.into();
        payload
    }

    /// Send a signed webhook to the service; returns its status.
    pub async fn send_webhook(&self, event: &str, delivery: &str, payload: &Value) -> u16 {
        let url = self
            .webhook_url
            .lock()
            .unwrap()
            .clone()
            .expect("deliver_to was not called");
        let body = serde_json::to_vec(payload).unwrap();
        let signature = amp_orchestrator::webhook::signature::sign(&self.webhook_secret, &body);
        self.http
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/sim")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
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
            user[key] = s.replace("Codertocat", login).into();
        }
    }
    user
}

fn app_user() -> Value {
    user_json(&format!("{APP_SLUG}[bot]"), "Bot")
}

pub fn repo_json(repo: &Repo) -> Value {
    let mut json = fixture("webhooks/issue_comment/created.payload.json")["repository"].clone();
    let full = repo.full_name();
    json["id"] = repo.id.into();
    json["name"] = repo.name.clone().into();
    json["full_name"] = full.clone().into();
    json["owner"] = user_json(&repo.owner, "User");
    json["default_branch"] = repo.default_branch.clone().into();
    json["archived"] = repo.archived.into();
    json["clone_url"] = format!("https://github.com/{full}.git").into();
    json["html_url"] = format!("https://github.com/{full}").into();
    json["url"] = format!("https://api.github.com/repos/{full}").into();
    json
}

fn comment_json(c: &Comment) -> Value {
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
        json["performed_via_github_app"] =
            json!({"id": APP_ID, "slug": APP_SLUG, "name": APP_SLUG});
    }
    json
}

fn github_error(status: StatusCode, message: &str) -> Response {
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
fn check_app_jwt(headers: &HeaderMap) -> Result<(), Response> {
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

/// An installation token valid now and scoped to `repo`.
fn check_token(state: &SimState, headers: &HeaderMap, repo: &Repo) -> Result<(), Response> {
    let token = bearer(headers)
        .or_else(|| {
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("token "))
                .map(str::to_string)
        })
        .ok_or_else(|| github_error(StatusCode::UNAUTHORIZED, "Requires authentication"))?;
    let Some(info) = state.tokens.get(&token) else {
        return Err(github_error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    };
    if info.expires_at <= now() {
        return Err(github_error(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    if info.installation_id != repo.installation_id || !info.repo_ids.contains(&repo.id) {
        return Err(github_error(StatusCode::NOT_FOUND, "Not Found"));
    }
    Ok(())
}

fn find_repo(state: &SimState, owner: &str, name: &str) -> Option<Repo> {
    state
        .repos
        .iter()
        .find(|r| r.owner == owner && r.name == name)
        .cloned()
}

async fn faults_and_log(
    State(state): State<Shared>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let fault = {
        let mut s = state.lock().unwrap();
        let position = s
            .faults
            .iter()
            .position(|(m, p, _)| *m == method && path.contains(p.as_str()));
        position.and_then(|i| s.faults.remove(i)).map(|(_, _, f)| f)
    };
    let response = match fault {
        Some(Fault::Status(code)) => github_error(
            StatusCode::from_u16(code).unwrap(),
            if code >= 500 {
                "Server Error"
            } else {
                "Fault injected"
            },
        ),
        Some(Fault::SecondaryRateLimit { retry_after_secs }) => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            r.headers_mut()
                .insert("retry-after", retry_after_secs.to_string().parse().unwrap());
            r
        }
        Some(Fault::PrimaryRateLimit { reset_in_secs }) => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for installation.",
            );
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", "5000".parse().unwrap());
            h.insert("x-ratelimit-remaining", "0".parse().unwrap());
            h.insert(
                "x-ratelimit-reset",
                (now() + reset_in_secs).to_string().parse().unwrap(),
            );
            r
        }
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        None => next.run(request).await,
    };
    state.lock().unwrap().log.push(Logged {
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
    });
    response
}

async fn unknown(State(state): State<Shared>, method: Method, uri: axum::http::Uri) -> Response {
    state
        .lock()
        .unwrap()
        .unknown
        .push(format!("{method} {uri}"));
    github_error(StatusCode::NOT_FOUND, "Not Found")
}

async fn create_token(
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
    if installed.is_empty() {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let repo_ids: Vec<i64> = match request["repository_ids"].as_array() {
        Some(ids) => ids.iter().filter_map(Value::as_i64).collect(),
        None => installed.clone(),
    };
    if repo_ids.iter().any(|id| !installed.contains(id)) {
        return github_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        );
    }
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    let expires_at = now() + s.token_lifetime.as_secs();
    s.tokens.insert(
        token.clone(),
        Token {
            installation_id: installation,
            repo_ids,
            expires_at,
        },
    );
    s.tokens_minted += 1;
    (
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": rfc3339(expires_at),
            "permissions": {"contents": "write", "issues": "write", "pull_requests": "write",
                            "checks": "read", "actions": "read", "metadata": "read"},
            "repository_selection": "selected"
        })),
    )
        .into_response()
}

async fn get_repo(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let Some(repo) = find_repo(&s, &owner, &name) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Err(r) = check_token(&s, &headers, &repo) {
        return r;
    }
    axum::Json(repo_json(&repo)).into_response()
}

async fn get_permission(
    State(state): State<Shared>,
    Path((owner, name, login)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let Some(repo) = find_repo(&s, &owner, &name) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Err(r) = check_token(&s, &headers, &repo) {
        return r;
    }
    let role = repo
        .collaborators
        .get(&login)
        .cloned()
        .unwrap_or_else(|| "read".into());
    let legacy = match role.as_str() {
        "maintain" => "write",
        "triage" => "read",
        other => other,
    };
    axum::Json(json!({
        "permission": legacy,
        "role_name": role,
        "user": user_json(&login, "User"),
    }))
    .into_response()
}

async fn create_comment(
    State(state): State<Shared>,
    Path((owner, name, number)): Path<(String, String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let Some(repo) = find_repo(&s, &owner, &name) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Err(r) = check_token(&s, &headers, &repo) {
        return r;
    }
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

async fn update_comment(
    State(state): State<Shared>,
    Path((owner, name, id)): Path<(String, String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let Some(repo) = find_repo(&s, &owner, &name) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Err(r) = check_token(&s, &headers, &repo) {
        return r;
    }
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

async fn create_reaction(
    State(state): State<Shared>,
    Path((owner, name, id)): Path<(String, String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let Some(repo) = find_repo(&s, &owner, &name) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Err(r) = check_token(&s, &headers, &repo) {
        return r;
    }
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
