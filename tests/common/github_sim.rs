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
use axum::extract::{Path, Query, Request, State};
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

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn rfc3339(secs: u64) -> String {
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
    /// Do the work, then answer with this status as if the answer were lost on the way (a
    /// proxy's 502 after the pull request was created, say).
    LostAnswer(u16),
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

#[derive(Debug, Clone)]
pub struct Pull {
    pub number: i64,
    pub node_id: String,
    pub repo: String,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub draft: bool,
    pub reviewers: Vec<String>,
    /// Where the head branch lives when it is not `repo`: a fork's full name.
    pub head_repo: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: i64,
    pub name: String,
    pub conclusion: String,
    pub title: String,
    pub summary: String,
    pub annotations: Vec<Value>,
    /// Served as the job's log.
    pub log: String,
}

#[derive(Debug, Clone)]
pub struct CheckSuite {
    pub id: i64,
    pub repo: String,
    pub head_branch: String,
    pub head_sha: String,
    pub conclusion: String,
    pub runs: Vec<CheckRun>,
    pub created_at: u64,
}

#[derive(Default)]
pub struct SimState {
    /// Where the bare repositories live.
    pub root: std::path::PathBuf,
    pub base_url: String,
    pub webhook_url: Option<String>,
    /// Several services behind one App (replicas behind a load balancer): deliveries go to
    /// each in turn.
    pub round_robin: Vec<String>,
    round_robin_next: usize,
    pub webhook_secret: String,
    deliveries: u64,
    pub pulls: Vec<Pull>,
    pub check_suites: Vec<CheckSuite>,
    /// Webhook delivery attempts (GitHub's record, for redelivery).
    pub hook_deliveries: Vec<HookDelivery>,
    /// Issues opened through the API: (repository, number, title, body).
    pub issues: Vec<(String, i64, String, String)>,
    /// Legacy commit statuses: (repository, commit, the status as GitHub returns it).
    pub statuses: Vec<(String, String, Value)>,
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
    /// Job id → the signature its log's download URL carries.
    log_links: HashMap<i64, String>,
    /// Apps created from a manifest whose code has not been exchanged yet: code → (manifest,
    /// owner).
    manifest_codes: HashMap<String, (Value, String)>,
    /// Codes exchanged for an App's credentials (each works once).
    pub manifest_conversions: usize,
}

impl SimState {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn next(&mut self) -> i64 {
        self.id()
    }

    fn next_delivery(&mut self) -> String {
        self.deliveries += 1;
        format!(
            "sim-delivery-{}-{}",
            self.base_url.rsplit(':').next().unwrap_or(""),
            self.deliveries
        )
    }
}

/// Whether `token` is a valid installation token for `repo` right now.
pub fn token_allows(state: &SimState, token: &str, repo: &Repo) -> bool {
    state.tokens.get(token).is_some_and(|t| {
        t.expires_at > now()
            && t.installation_id == repo.installation_id
            && t.repo_ids.contains(&repo.id)
    })
}

/// Sign and send a webhook to the service (when one is connected).
pub async fn send_webhook_with(state: &Shared, event: &str, payload: &Value) -> Option<u16> {
    let delivery = {
        let mut s = state.lock().unwrap();
        s.webhook_url.as_ref()?;
        s.next_delivery()
    };
    Some(deliver(state, event, &delivery, payload, false).await)
}

/// One delivery attempt, recorded as GitHub records it (`GET /app/hook/deliveries`): the status
/// code, 0 when the service could not be reached.
async fn deliver(
    state: &Shared,
    event: &str,
    guid: &str,
    payload: &Value,
    redelivery: bool,
) -> u16 {
    let (url, secret) = {
        let mut s = state.lock().unwrap();
        let url = if s.round_robin.is_empty() {
            s.webhook_url.clone().expect("deliver_to was not called")
        } else {
            let i = s.round_robin_next % s.round_robin.len();
            s.round_robin_next += 1;
            s.round_robin[i].clone()
        };
        (url, s.webhook_secret.clone())
    };
    let status = post_webhook(&url, &secret, event, guid, payload).await;
    let mut s = state.lock().unwrap();
    let id = s.id();
    s.hook_deliveries.push(HookDelivery {
        id,
        guid: guid.to_string(),
        event: event.to_string(),
        action: payload["action"].as_str().map(str::to_string),
        status_code: status,
        redelivery,
        payload: payload.clone(),
        installation_id: payload["installation"]["id"].as_i64(),
        repository_id: payload["repository"]["id"].as_i64(),
    });
    status
}

/// A webhook delivery attempt, as GitHub lists it for the App.
#[derive(Debug, Clone)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub status_code: u16,
    pub redelivery: bool,
    pub payload: Value,
    pub installation_id: Option<i64>,
    pub repository_id: Option<i64>,
}

async fn list_hook_deliveries(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let s = state.lock().unwrap();
    // Newest first, as GitHub lists them.
    let list: Vec<Value> = s
        .hook_deliveries
        .iter()
        .rev()
        .map(|d| {
            json!({
                "id": d.id, "guid": d.guid, "delivered_at": "2026-01-01T00:00:00Z",
                "redelivery": d.redelivery, "duration": 0.01,
                "status": if (200..300).contains(&d.status_code) { "OK" } else { "Invalid HTTP Response" },
                "status_code": d.status_code, "event": d.event, "action": d.action,
                "installation_id": d.installation_id, "repository_id": d.repository_id,
                "throttled_at": null,
            })
        })
        .collect();
    axum::Json(Value::Array(list)).into_response()
}

async fn redeliver(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_app_jwt(&headers) {
        return r;
    }
    let Some(original) = state
        .lock()
        .unwrap()
        .hook_deliveries
        .iter()
        .find(|d| d.id == id)
        .cloned()
    else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let state = state.clone();
    tokio::spawn(async move {
        deliver(
            &state,
            &original.event,
            &original.guid,
            &original.payload,
            true,
        )
        .await;
    });
    (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
}

#[derive(serde::Deserialize)]
struct NewAppQuery {
    state: Option<String>,
}

#[derive(serde::Deserialize)]
struct ManifestForm {
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

async fn new_app_for_user(
    State(state): State<Shared>,
    Query(query): Query<NewAppQuery>,
    axum::Form(form): axum::Form<ManifestForm>,
) -> Response {
    new_app(&state, "octocat", query, form).await
}

async fn new_app_for_org(
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
async fn convert_manifest(State(state): State<Shared>, Path(code): Path<String>) -> Response {
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
        "client_secret": format!("{:040x}", rand::random::<u128>()),
        "webhook_secret": secret,
        "pem": app_private_key(),
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn post_webhook(
    url: &str,
    secret: &str,
    event: &str,
    delivery: &str,
    payload: &Value,
) -> u16 {
    let body = serde_json::to_vec(payload).unwrap();
    let signature = amp_orchestrator::webhook::signature::sign(secret, &body);
    match reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/sim")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
    {
        Ok(response) => response.status().as_u16(),
        // The service could not be reached: GitHub records the attempt as failed.
        Err(_) => 0,
    }
}

pub type Shared = Arc<Mutex<SimState>>;

pub struct GitHubSim {
    pub addr: SocketAddr,
    pub state: Shared,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
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
        let root = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Shared = Arc::new(Mutex::new(SimState {
            token_lifetime: Duration::from_secs(3600),
            next_id: 1000,
            root: root.path().to_path_buf(),
            base_url: format!("http://{addr}"),
            webhook_secret: webhook_secret.to_string(),
            ..Default::default()
        }));
        let app = Router::new()
            .route(
                "/app/installations/{installation}/access_tokens",
                post(create_token),
            )
            .route("/settings/apps/new", post(new_app_for_user))
            .route(
                "/organizations/{org}/settings/apps/new",
                post(new_app_for_org),
            )
            .route("/app-manifests/{code}/conversions", post(convert_manifest))
            .route("/app/hook/deliveries", get(list_hook_deliveries))
            .route("/app/hook/deliveries/{id}/attempts", post(redeliver))
            .route("/repos/{owner}/{repo}", get(get_repo))
            .route(
                "/repos/{owner}/{repo}/installation",
                get(get_repo_installation),
            )
            .route("/repos/{owner}/{repo}/issues", post(create_issue))
            .route("/repos/{owner}/{repo}/issues/{number}", get(get_issue))
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
            .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
            .route(
                "/repos/{owner}/{repo}/pulls",
                post(create_pull).get(list_pulls),
            )
            .route("/repos/{owner}/{repo}/pulls/{number}", get(get_pull))
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/requested_reviewers",
                post(request_reviewers),
            )
            .route("/graphql", post(graphql))
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/status",
                get(combined_status),
            )
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/check-suites",
                get(list_check_suites),
            )
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/check-runs",
                get(list_check_runs),
            )
            .route(
                "/repos/{owner}/{repo}/check-runs/{id}/annotations",
                get(list_annotations),
            )
            .route(
                "/repos/{owner}/{repo}/actions/jobs/{id}/logs",
                get(job_log_redirect),
            )
            .route("/_blobs/job-logs/{id}", get(job_log_blob))
            .route("/git/{owner}/{repo}/{*rest}", get(git_http).post(git_http))
            .fallback(unknown)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                faults_and_log,
            ))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        GitHubSim {
            addr,
            state,
            http: reqwest::Client::new(),
            server,
            _root: root,
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

    /// Deliver to each of `service_bases` in turn, as a load balancer in front of replicas does.
    pub fn deliver_round_robin(&self, service_bases: &[&str]) {
        let mut s = self.state.lock().unwrap();
        s.round_robin = service_bases
            .iter()
            .map(|b| format!("{b}/api/github/webhooks"))
            .collect();
        s.webhook_url = s.round_robin.first().cloned();
    }

    pub fn deliver_to(&self, service_base: &str) {
        let mut s = self.state.lock().unwrap();
        s.round_robin.clear();
        s.webhook_url = Some(format!("{service_base}/api/github/webhooks"));
    }

    /// A repository with the App installed; `collaborators` are (login, role). Its git
    /// repository has one commit on `main` with a README.
    pub fn add_repo(
        &self,
        full_name: &str,
        installation_id: i64,
        collaborators: &[(&str, &str)],
    ) -> Repo {
        self.add_repo_with_files(
            full_name,
            installation_id,
            collaborators,
            &[("README.md", "# widgets\n")],
        )
    }

    /// Like [`GitHubSim::add_repo`], with the first commit's files given.
    pub fn add_repo_with_files(
        &self,
        full_name: &str,
        installation_id: i64,
        collaborators: &[(&str, &str)],
        files: &[(&str, &str)],
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
        super::github_sim_git::init_bare(&state.root, &repo, files);
        repo
    }

    /// The bare repository behind `repo` (for assertions with git).
    pub fn bare_repo(&self, repo: &Repo) -> std::path::PathBuf {
        super::github_sim_git::bare_path(&self.state.lock().unwrap().root, repo)
    }

    /// The URL to clone `repo` from (`clone_url` in its payloads).
    pub fn clone_url(&self, repo: &Repo) -> String {
        format!("http://{}/git/{}.git", self.addr, repo.full_name())
    }

    pub fn pulls(&self) -> Vec<Pull> {
        self.state.lock().unwrap().pulls.clone()
    }

    pub fn check_suites(&self) -> Vec<CheckSuite> {
        self.state.lock().unwrap().check_suites.clone()
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

    /// Send the `check_suite` webhook of suite `id` again, with `action` (GitHub delivers
    /// `requested`, `rerequested` and `completed`; deliveries can repeat and come out of order).
    pub async fn resend_check_suite(&self, id: i64, action: &str) {
        let (repo, suite) = {
            let s = self.state.lock().unwrap();
            let suite = s.check_suites.iter().find(|c| c.id == id).unwrap().clone();
            let repo = s
                .repos
                .iter()
                .find(|r| r.full_name() == suite.repo)
                .unwrap()
                .clone();
            (repo, suite)
        };
        let payload =
            super::github_sim_git::check_suite_payload(&self.state, &repo, &suite, action);
        send_webhook_with(&self.state, "check_suite", &payload).await;
    }

    /// Run the repository's CI on the head of `branch`, as a push would.
    pub async fn run_ci_on(&self, repo: &Repo, branch: &str) {
        let bare = self.bare_repo(repo);
        let sha = super::github_sim_git::git(&bare, &["rev-parse", branch]);
        super::github_sim_git::run_ci(
            self.state.clone(),
            repo.clone(),
            bare,
            branch.to_string(),
            sha,
        )
        .await;
    }

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

    /// Every installation token issued so far.
    pub fn minted_tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.keys().cloned().collect()
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
        let delivery = self.state.lock().unwrap().next_delivery();
        self.send_webhook("issue_comment", &delivery, &payload)
            .await;
        (comment_id, delivery)
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
        let bare = super::github_sim_git::bare_path(&s.root, repo);
        let work = tempfile::tempdir().unwrap();
        let dir = work.path();
        let bare_str = bare.to_str().unwrap();
        super::github_sim_git::git(
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
        super::github_sim_git::git(dir, &["checkout", "-q", "-b", head]);
        std::fs::write(dir.join(file.0), file.1).unwrap();
        super::github_sim_git::git(dir, &["add", "-A"]);
        super::github_sim_git::git(
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
        super::github_sim_git::git(dir, &["push", "-q", "origin", head]);
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
            reviewers: vec![],
            head_repo: fork.map(str::to_string),
        });
        number
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

    /// Send a signed webhook to the service; returns its status (0: it could not be reached).
    pub async fn send_webhook(&self, event: &str, delivery: &str, payload: &Value) -> u16 {
        deliver(&self.state, event, delivery, payload, false).await
    }

    /// Every webhook delivery attempt so far.
    pub fn hook_deliveries(&self) -> Vec<HookDelivery> {
        self.state.lock().unwrap().hook_deliveries.clone()
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

pub fn repo_json(state: &SimState, repo: &Repo) -> Value {
    let mut json = fixture("webhooks/issue_comment/created.payload.json")["repository"].clone();
    let full = repo.full_name();
    json["id"] = repo.id.into();
    json["name"] = repo.name.clone().into();
    json["full_name"] = full.clone().into();
    json["owner"] = user_json(&repo.owner, "User");
    json["default_branch"] = repo.default_branch.clone().into();
    json["archived"] = repo.archived.into();
    json["clone_url"] = format!("{}/git/{full}.git", state.base_url).into();
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
        Some(Fault::LostAnswer(code)) => {
            let _done = next.run(request).await;
            github_error(StatusCode::from_u16(code).unwrap(), "Server Error")
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
    let token = format!("ghs_{}", uuid::Uuid::new_v4().simple());
    let expires_at = now() + s.token_lifetime.as_secs();
    s.tokens.insert(
        token.clone(),
        Token {
            installation_id: installation,
            repo_ids: repo_ids.clone(),
            expires_at,
        },
    );
    s.tokens_minted += 1;
    let mut answer = json!({
        "token": token,
        "expires_at": rfc3339(expires_at),
        "permissions": {"contents": "write", "issues": "write", "pull_requests": "write",
                        "checks": "read", "actions": "read", "metadata": "read"},
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

async fn get_repo_installation(
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
    axum::Json(json!({
        "id": repo.installation_id,
        "account": user_json(&repo.owner, "Organization"),
        "app_id": APP_ID,
        "app_slug": APP_SLUG,
        "target_type": "Organization",
        "repository_selection": "selected",
    }))
    .into_response()
}

fn issue_json(state: &SimState, repo: &Repo, number: i64, title: &str, body: &str) -> Value {
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

async fn create_issue(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
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

async fn get_issue(
    State(state): State<Shared>,
    Path((owner, name, number)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
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
    axum::Json(repo_json(&s, &repo)).into_response()
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

fn authorized_repo(
    state: &SimState,
    owner: &str,
    name: &str,
    headers: &HeaderMap,
) -> Result<Repo, Response> {
    let Some(repo) = find_repo(state, owner, name) else {
        return Err(github_error(StatusCode::NOT_FOUND, "Not Found"));
    };
    check_token(state, headers, &repo)?;
    Ok(repo)
}

fn pull_json(state: &SimState, repo: &Repo, pull: &Pull) -> Value {
    let mut json = fixture("rest/pull_requests_list.json")[0].clone();
    let full = repo.full_name();
    let api = format!("https://api.github.com/repos/{full}");
    json["id"] = (pull.number * 1000 + repo.id).into();
    json["node_id"] = pull.node_id.clone().into();
    json["number"] = pull.number.into();
    json["state"] = "open".into();
    json["title"] = pull.title.clone().into();
    json["body"] = pull.body.clone().into();
    json["draft"] = pull.draft.into();
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
    let bare = super::github_sim_git::bare_path(&state.root, repo);
    for (side, branch) in [("head", &pull.head), ("base", &pull.base)] {
        let sha = super::github_sim_git::branches(&bare)
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
    json
}

#[derive(serde::Deserialize)]
struct PullsQuery {
    head: Option<String>,
    state: Option<String>,
}

/// `GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=open` (every simulated pull request
/// is open).
async fn list_pulls(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<PullsQuery>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    if query.state.as_deref().is_some_and(|st| st == "closed") {
        return axum::Json(json!([])).into_response();
    }
    let full = repo.full_name();
    let found: Vec<Value> = s
        .pulls
        .iter()
        .filter(|p| p.repo == full)
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

async fn get_pull(
    State(state): State<Shared>,
    Path((owner, name, number)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(response) => return response,
    };
    let full = repo.full_name();
    match s
        .pulls
        .iter()
        .find(|p| p.repo == full && p.number == number)
    {
        Some(pull) => axum::Json(pull_json(&s, &repo, pull)).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn create_ref(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (repo, bare) = {
        let s = state.lock().unwrap();
        match authorized_repo(&s, &owner, &name, &headers) {
            Ok(repo) => {
                let bare = super::github_sim_git::bare_path(&s.root, &repo);
                (repo, bare)
            }
            Err(r) => return r,
        }
    };
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

async fn create_pull(
    State(state): State<Shared>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let (Some(head), Some(base), Some(title)) = (
        request["head"].as_str(),
        request["base"].as_str(),
        request["title"].as_str(),
    ) else {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    };
    let branches =
        super::github_sim_git::branches(&super::github_sim_git::bare_path(&s.root, &repo));
    let has = |b: &str| {
        branches
            .iter()
            .any(|(r, _)| *r == format!("refs/heads/{b}"))
    };
    if !has(head) || !has(base) {
        return github_error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
    }
    let full = repo.full_name();
    if s.pulls.iter().any(|p| p.repo == full && p.head == head) {
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
        draft: request["draft"].as_bool().unwrap_or(false),
        reviewers: vec![],
        head_repo: None,
    };
    s.pulls.push(pull.clone());
    (StatusCode::CREATED, axum::Json(pull_json(&s, &repo, &pull))).into_response()
}

async fn request_reviewers(
    State(state): State<Shared>,
    Path((owner, name, number)): Path<(String, String, i64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
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
async fn graphql(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
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
    if let Err(r) = authorized_repo(&s, owner, name, &headers) {
        return r;
    }
    if let Some(p) = s.pulls.iter_mut().find(|p| p.node_id == id) {
        p.draft = false;
    }
    axum::Json(
        json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": false}}}}),
    )
    .into_response()
}

fn suite_json(state: &SimState, repo: &Repo, suite: &CheckSuite) -> Value {
    let mut json = fixture("rest/list_check_suites_for_ref.json")["check_suites"][0].clone();
    json["id"] = suite.id.into();
    json["head_branch"] = suite.head_branch.clone().into();
    json["head_sha"] = suite.head_sha.clone().into();
    json["after"] = suite.head_sha.clone().into();
    json["status"] = "completed".into();
    json["conclusion"] = suite.conclusion.clone().into();
    json["pull_requests"] = json!([]);
    json["repository"] = repo_json(state, repo);
    json["latest_check_runs_count"] = suite.runs.len().into();
    json["created_at"] = rfc3339(suite.created_at).into();
    json["updated_at"] = rfc3339(suite.created_at).into();
    json["head_commit"]["id"] = suite.head_sha.clone().into();
    json
}

fn run_json(repo: &Repo, suite: &CheckSuite, run: &CheckRun) -> Value {
    let mut json = fixture("rest/commit_check_runs.json")["check_runs"][0].clone();
    let full = repo.full_name();
    json["id"] = run.id.into();
    json["name"] = run.name.clone().into();
    json["head_sha"] = suite.head_sha.clone().into();
    json["status"] = "completed".into();
    json["conclusion"] = run.conclusion.clone().into();
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
    json["completed_at"] = rfc3339(suite.created_at).into();
    json
}

async fn list_check_suites(
    State(state): State<Shared>,
    Path((owner, name, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
    let full = repo.full_name();
    let suites: Vec<Value> = s
        .check_suites
        .iter()
        .filter(|c| c.repo == full && c.head_sha == sha)
        .map(|c| suite_json(&s, &repo, c))
        .collect();
    axum::Json(json!({"total_count": suites.len(), "check_suites": suites})).into_response()
}

async fn combined_status(
    State(state): State<Shared>,
    Path((owner, name, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
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

async fn list_check_runs(
    State(state): State<Shared>,
    Path((owner, name, sha)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
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

async fn list_annotations(
    State(state): State<Shared>,
    Path((owner, name, id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    let s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
    match find_run(&s, &repo.full_name(), id) {
        Some(run) => axum::Json(Value::Array(run.annotations)).into_response(),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Like GitHub: a redirect to short-lived storage that needs no credentials.
async fn job_log_redirect(
    State(state): State<Shared>,
    Path((owner, name, id)): Path<(String, String, i64)>,
    headers: HeaderMap,
) -> Response {
    let mut s = state.lock().unwrap();
    let repo = match authorized_repo(&s, &owner, &name, &headers) {
        Ok(repo) => repo,
        Err(r) => return r,
    };
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

async fn job_log_blob(
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

async fn git_http(
    State(state): State<Shared>,
    Path((owner, repo_git, rest)): Path<(String, String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    super::github_sim_git::serve(
        state,
        super::github_sim_git::GitRequest {
            owner,
            repo_git,
            rest,
            method,
            query: uri.query().map(str::to_string),
            headers,
            body,
        },
    )
    .await
}
