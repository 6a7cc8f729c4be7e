//! The GitHub App's client, on octocrab.
//!
//! octocrab provides the HTTP client (TLS, timeouts, redirects), the App JWT and the response
//! models; this module adds what a long-running App needs on top:
//!
//! - installation tokens minted **per repository** (a token for one task can touch nothing else),
//!   cached, and replaced ahead of their expiry, or at once when GitHub answers 401;
//! - one retry policy for every call: transport errors, timeouts and 5xx back off exponentially;
//!   primary and secondary rate limits wait for `Retry-After` / `x-ratelimit-reset`, so a
//!   rate-limited GitHub delays work and never drops it; other 4xx fail at once with GitHub's
//!   message, for the caller to turn into a reply;
//! - a typed function per operation the service uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::models::{InstallationToken, Repository, issues::Comment, reactions::Reaction};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::config::Config;
pub use crate::domain::{RepoRef, Role};

/// Tunables, with production defaults; tests shorten them.
#[derive(Debug, Clone)]
pub struct Options {
    /// Limit on one HTTP exchange.
    pub call_timeout: Duration,
    /// Attempts for a call that fails with a 5xx or a transport error.
    pub max_attempts: u32,
    /// The first backoff after a 5xx; doubled each time.
    pub backoff: Duration,
    /// The longest a rate limit is waited out in one go (GitHub's resets are at most an hour).
    pub max_rate_limit_wait: Duration,
    /// A cached installation token is replaced when it has less than this left.
    pub token_refresh_margin: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            call_timeout: Duration::from_secs(30),
            max_attempts: 4,
            backoff: Duration::from_millis(500),
            max_rate_limit_wait: Duration::from_secs(3600),
            token_refresh_margin: Duration::from_secs(10 * 60),
        }
    }
}

/// A call GitHub refused or could not answer.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// A 4xx that retrying cannot fix (or a 5xx that outlasted the retries).
    #[error("GitHub answered {status} to {method} {path}: {message}")]
    Status {
        status: u16,
        method: Method,
        path: String,
        message: String,
    },
    #[error("GitHub could not be reached for {method} {path}: {message}")]
    Transport {
        method: Method,
        path: String,
        message: String,
    },
    #[error("the GitHub App is not configured (APP_ID and PRIVATE_KEY are needed)")]
    NotConfigured,
    #[error("{0}")]
    Other(String),
}

impl GitHubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A refusal that asking again will not change: a 4xx (the rate limits, which are 4xx too,
    /// are waited out before an error is returned) or a client without an App. Transport
    /// failures, 5xx and answers that do not parse may go away.
    pub fn is_permanent(&self) -> bool {
        match self {
            GitHubError::Status { status, .. } => (400..500).contains(status),
            GitHubError::NotConfigured => true,
            GitHubError::Transport { .. } | GitHubError::Other(_) => false,
        }
    }

    /// GitHub's own words, without the method and path (for a person).
    pub fn github_message(&self) -> Option<&str> {
        match self {
            GitHubError::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    token: SecretString,
    expires_at: SystemTime,
}

/// How the request authenticates.
#[derive(Clone, Copy)]
enum Auth<'a> {
    /// No credentials (the manifest conversion, which the one-time code authorizes).
    Anonymous,
    App,
    Repo(&'a RepoRef),
}

/// The App's GitHub client. Cheap to share (`Arc`).
pub struct GitHub {
    http: Octocrab,
    app_id: u64,
    key: Option<jsonwebtoken::EncodingKey>,
    options: Options,
    tokens: Mutex<HashMap<(i64, i64), CachedToken>>,
}

impl GitHub {
    pub fn new(config: &Config, options: Options) -> anyhow::Result<Arc<GitHub>> {
        Self::for_app(
            &config.github_api_url,
            config.app_id,
            config.private_key.as_ref(),
            options,
        )
    }

    /// A client for the App `app_id` signing with `private_key`; without them, a client that can
    /// only make calls that need no App credentials.
    pub fn for_app(
        api_url: &str,
        app_id: Option<u64>,
        private_key: Option<&SecretString>,
        options: Options,
    ) -> anyhow::Result<Arc<GitHub>> {
        let key = match private_key {
            Some(pem) => Some(
                jsonwebtoken::EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes())
                    .context("the App's private key is not an RSA private key in PEM form")?,
            ),
            None => None,
        };
        let http = Octocrab::builder()
            .base_uri(api_url)
            .context("GITHUB_API_URL")?
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(options.call_timeout))
            .set_write_timeout(Some(options.call_timeout))
            .build()
            .context("building the GitHub client")?;
        Ok(Arc::new(GitHub {
            http,
            app_id: app_id.unwrap_or(0),
            key,
            options,
            tokens: Mutex::new(HashMap::new()),
        }))
    }

    /// The App id this client signs as (0 when it has none).
    pub fn app_id(&self) -> u64 {
        self.app_id
    }

    fn jwt(&self) -> Result<String, GitHubError> {
        let key = self.key.as_ref().ok_or(GitHubError::NotConfigured)?;
        octocrab::auth::create_jwt(octocrab::models::AppId(self.app_id), key)
            .map_err(|e| GitHubError::Other(format!("signing the App JWT: {e}")))
    }

    /// A token for one repository of one installation, from the cache while it has more than
    /// the refresh margin left.
    pub async fn repo_token(&self, repo: &RepoRef) -> Result<SecretString, GitHubError> {
        let key = (repo.installation_id, repo.repo_id);
        let mut tokens = self.tokens.lock().await;
        if let Some(cached) = tokens.get(&key)
            && cached
                .expires_at
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > self.options.token_refresh_margin)
        {
            return Ok(cached.token.clone());
        }
        let minted: InstallationToken = self
            .call(
                Auth::App,
                Method::POST,
                &format!("/app/installations/{}/access_tokens", repo.installation_id),
                Some(&json!({ "repository_ids": [repo.repo_id] })),
            )
            .await?;
        let expires_at = minted
            .expires_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64))
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        let token = SecretString::from(minted.token);
        debug!(installation = repo.installation_id, repo = %repo.full_name, "minted an installation token");
        tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                expires_at,
            },
        );
        Ok(token)
    }

    async fn forget_token(&self, repo: &RepoRef) {
        self.tokens
            .lock()
            .await
            .remove(&(repo.installation_id, repo.repo_id));
    }

    /// One call with the retry policy; the body of a 2xx is deserialized into `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, GitHubError> {
        let bytes = self.call_raw(auth, method.clone(), path, body).await?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"null")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            GitHubError::Other(format!(
                "GitHub's answer to {method} {} does not parse: {e}",
                shown(path)
            ))
        })
    }

    async fn call_raw(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Bytes, GitHubError> {
        // What logs and errors show of the path (a manifest code is a credential).
        let shown_path = shown(path);
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let authorization = match auth {
                Auth::Anonymous => None,
                Auth::App => Some(format!("Bearer {}", self.jwt()?)),
                Auth::Repo(repo) => {
                    // Boxed: minting a token is itself a call (as the App).
                    let token = Box::pin(self.repo_token(repo)).await?;
                    Some(format!("Bearer {}", token.expose_secret()))
                }
            };
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::ACCEPT, "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28");
            if let Some(authorization) = authorization {
                builder = builder.header(http::header::AUTHORIZATION, authorization);
            }
            let request = self
                .http
                .build_request(builder, body)
                .map_err(|e| GitHubError::Other(format!("building {method} {shown_path}: {e}")))?;
            let outcome =
                tokio::time::timeout(self.options.call_timeout, self.exchange(request)).await;
            let failure = match outcome {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(message)) => Err(message),
                Err(_) => Err(format!("no answer within {:?}", self.options.call_timeout)),
            };
            let (status, headers, bytes) = match failure {
                Ok(response) => response,
                Err(message) if attempt < self.options.max_attempts => {
                    let wait = self.backoff(attempt);
                    warn!(%method, path = %shown_path, attempt, ?wait, error = %message, "GitHub call failed in transport; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(message) => {
                    return Err(GitHubError::Transport {
                        method,
                        path: shown_path.clone(),
                        message,
                    });
                }
            };
            if status.is_success() {
                return Ok(bytes);
            }
            if let Some(wait) = rate_limit_wait(status, &headers, &bytes) {
                let wait = wait.min(self.options.max_rate_limit_wait);
                warn!(%method, path = %shown_path, status = status.as_u16(), ?wait, "GitHub rate limit; waiting");
                tokio::time::sleep(wait).await;
                attempt -= 1; // A rate limit delays the call; it does not use up an attempt.
                continue;
            }
            if status == StatusCode::UNAUTHORIZED
                && let Auth::Repo(repo) = auth
                && !refreshed
            {
                // Revoked or expired early: mint a fresh token once.
                warn!(%method, path = %shown_path, "installation token refused; minting a new one");
                self.forget_token(repo).await;
                refreshed = true;
                continue;
            }
            if status.is_server_error() && attempt < self.options.max_attempts {
                let wait = self.backoff(attempt);
                warn!(%method, path = %shown_path, status = status.as_u16(), attempt, ?wait, "GitHub server error; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(GitHubError::Status {
                status: status.as_u16(),
                method,
                path: shown_path.clone(),
                message: error_message(&bytes),
            });
        }
    }

    async fn exchange(
        &self,
        request: http::Request<octocrab::OctoBody>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), String> {
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(e) => {
                crate::metrics::METRICS.github_call(None, None);
                return Err(e.to_string());
            }
        };
        let (parts, body) = response.into_parts();
        crate::metrics::METRICS.github_call(
            Some(parts.status.as_u16()),
            parts
                .headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        );
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status, parts.headers, bytes))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(10));
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 + jitter)
    }

    // --- Operations -------------------------------------------------------------------------

    /// React to an issue comment (`+1`, `eyes`, `rocket`, …). GitHub answers 200 with the existing
    /// reaction when the App already reacted, so this is safe to repeat.
    pub async fn react_to_comment(
        &self,
        repo: &RepoRef,
        comment_id: i64,
        content: &str,
    ) -> Result<Reaction, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!(
                "/repos/{}/issues/comments/{comment_id}/reactions",
                repo.full_name
            ),
            Some(&json!({ "content": content })),
        )
        .await
    }

    /// Post a comment on an issue or pull request.
    pub async fn create_comment(
        &self,
        repo: &RepoRef,
        issue_number: i64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!("/repos/{}/issues/{issue_number}/comments", repo.full_name),
            Some(&json!({ "body": body })),
        )
        .await
    }

    /// Replace a comment's text (the task's status comment).
    pub async fn update_comment(
        &self,
        repo: &RepoRef,
        comment_id: i64,
        body: &str,
    ) -> Result<Comment, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::PATCH,
            &format!("/repos/{}/issues/comments/{comment_id}", repo.full_name),
            Some(&json!({ "body": body })),
        )
        .await
    }

    /// The repository (default branch, fork and archived flags).
    pub async fn repository(&self, repo: &RepoRef) -> Result<Repository, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// A user's role on the repository (`admin`, `maintain`, `write`, `triage`, `read`; a user
    /// who is not a collaborator gets `read` on a public repository and `none` otherwise).
    pub async fn collaborator_role(
        &self,
        repo: &RepoRef,
        login: &str,
    ) -> Result<Role, GitHubError> {
        let permission: Value = self
            .call(
                Auth::Repo(repo),
                Method::GET,
                &format!("/repos/{}/collaborators/{login}/permission", repo.full_name),
                None::<&Value>,
            )
            .await?;
        // `role_name` names custom roles too ("provides the name of the assigned role, including
        // custom roles"); `permission` is always one of the base roles a custom one builds on.
        let role = permission["role_name"]
            .as_str()
            .and_then(Role::base)
            .or_else(|| permission["permission"].as_str().and_then(Role::base))
            .unwrap_or(Role::None);
        Ok(role)
    }
}

/// One attempt at delivering a webhook, as GitHub lists them for the App.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HookDelivery {
    pub id: i64,
    /// The `X-GitHub-Delivery` of the delivery (the same for its redeliveries).
    pub guid: String,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
}

#[cfg(test)]
mod error_message_tests {
    use super::error_message;

    #[test]
    fn validation_errors_carry_their_reasons() {
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom","message":"A pull request already exists for octo-org:amp/7-x."}],"documentation_url":"https://docs.github.com/rest/pulls/pulls#create-a-pull-request","status":"422"}"#;
        assert_eq!(
            error_message(body),
            "Validation Failed: A pull request already exists for octo-org:amp/7-x."
        );
        let body = br#"{"message":"Validation Failed","errors":[{"resource":"Issue","field":"title","code":"missing_field"}]}"#;
        assert_eq!(
            error_message(body),
            "Validation Failed: title missing_field"
        );
        assert_eq!(error_message(br#"{"message":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }
}

/// `path` as logs and errors may show it: the one-time code of the manifest flow, which can be
/// exchanged for the App's credentials, is masked.
fn shown(path: &str) -> String {
    match path.strip_prefix("/app-manifests/") {
        Some(rest) => match rest.split_once('/') {
            Some((_, tail)) => format!("/app-manifests/…/{tail}"),
            None => "/app-manifests/…".to_string(),
        },
        None => path.to_string(),
    }
}

/// A new App, as GitHub describes it after the manifest flow: its id and the credentials it
/// will never show again.
#[derive(Clone, serde::Deserialize)]
pub struct AppRegistration {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub owner: Option<Account>,
    pub html_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Null when the manifest asked for no webhook; this App's manifest always asks for one.
    pub webhook_secret: Option<String>,
    pub pem: String,
}

/// The account that owns an App.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Account {
    pub login: String,
}

/// Never prints the credentials.
impl std::fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRegistration")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .finish_non_exhaustive()
    }
}

/// Pages read at most from a paginated list (100 items each).
const MAX_PAGES: u32 = 10;

/// The check suites of a commit.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckSuites {
    pub total_count: u64,
    pub check_suites: Vec<CheckSuite>,
}

/// A check suite, with what deciding on CI needs (octocrab's model leaves out its app).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckSuite {
    pub id: u64,
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub app: Option<AppRef>,
    #[serde(default)]
    pub latest_check_runs_count: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AppRef {
    pub id: u64,
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckRuns {
    pub total_count: u64,
    pub check_runs: Vec<CheckRun>,
}

/// A check run, with its status and app (octocrab's model leaves them out).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub output: CheckRunOutput,
    #[serde(default)]
    pub app: Option<AppRef>,
    #[serde(default)]
    pub check_suite: Option<IdRef>,
    #[serde(default)]
    pub details_url: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CheckRunOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub annotations_count: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct IdRef {
    pub id: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CombinedStatus {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub statuses: Vec<CommitStatus>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CommitStatus {
    pub context: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

/// A check run annotation (GitHub's `GET …/check-runs/{id}/annotations`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct Annotation {
    pub path: String,
    pub start_line: Option<u64>,
    pub end_line: Option<u64>,
    pub annotation_level: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
    pub raw_details: Option<String>,
}

impl GitHub {
    /// Open a draft pull request from `head` into `base`.
    pub async fn open_draft_pr(
        &self,
        repo: &RepoRef,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<octocrab::models::pulls::PullRequest, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!("/repos/{}/pulls", repo.full_name),
            Some(&json!({
                "title": title, "head": head, "base": base, "body": body,
                "draft": true, "maintainer_can_modify": true,
            })),
        )
        .await
    }

    /// The open pull request from `branch` of the repository itself, if there is one.
    pub async fn find_open_pull(
        &self,
        repo: &RepoRef,
        branch: &str,
    ) -> Result<Option<octocrab::models::pulls::PullRequest>, GitHubError> {
        let owner = repo.full_name.split('/').next().unwrap_or_default();
        let found: Vec<octocrab::models::pulls::PullRequest> = self
            .call(
                Auth::Repo(repo),
                Method::GET,
                &format!(
                    "/repos/{}/pulls?state=open&head={owner}:{branch}",
                    repo.full_name
                ),
                None::<&Value>,
            )
            .await?;
        Ok(found.into_iter().next())
    }

    /// Find a repository the App is installed on by its name: its installation (as the App),
    /// then its id (from a token minted for that one repository by name), then its details.
    pub async fn locate_repo(&self, full_name: &str) -> Result<(RepoRef, Repository), GitHubError> {
        let Some((_, name)) = full_name.split_once('/') else {
            return Err(GitHubError::Other(format!(
                "{full_name:?} is not a repository name (owner/name)"
            )));
        };
        let installation: Value = self
            .call(
                Auth::App,
                Method::GET,
                &format!("/repos/{full_name}/installation"),
                None::<&Value>,
            )
            .await?;
        let installation_id = installation["id"]
            .as_i64()
            .ok_or_else(|| GitHubError::Other("the installation has no id".into()))?;
        let minted: Value = self
            .call(
                Auth::App,
                Method::POST,
                &format!("/app/installations/{installation_id}/access_tokens"),
                Some(&json!({ "repositories": [name], "permissions": {"metadata": "read"} })),
            )
            .await?;
        let repo_id = minted["repositories"][0]["id"]
            .as_i64()
            .ok_or_else(|| GitHubError::Other(format!("{full_name} is not in the installation")))?;
        let repo = RepoRef {
            installation_id,
            repo_id,
            full_name: full_name.to_string(),
        };
        let details = self.repository(&repo).await?;
        Ok((repo, details))
    }

    /// The App's recent webhook deliveries (newest first, one page of 100).
    pub async fn hook_deliveries(&self) -> Result<Vec<HookDelivery>, GitHubError> {
        self.call(
            Auth::App,
            Method::GET,
            "/app/hook/deliveries?per_page=100",
            None::<&Value>,
        )
        .await
    }

    /// Turn the one-time code of the manifest flow into the new App's credentials. The code
    /// authorizes the call; it expires after an hour and works once.
    pub async fn convert_manifest(&self, code: &str) -> Result<AppRegistration, GitHubError> {
        if code.is_empty()
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(GitHubError::Other(
                "the code GitHub sent back is not a manifest code".into(),
            ));
        }
        self.call(
            Auth::Anonymous,
            Method::POST,
            &format!("/app-manifests/{code}/conversions"),
            None::<&Value>,
        )
        .await
    }

    /// Ask GitHub to deliver a webhook delivery again.
    pub async fn redeliver(&self, delivery_id: i64) -> Result<(), GitHubError> {
        let _: Value = self
            .call(
                Auth::App,
                Method::POST,
                &format!("/app/hook/deliveries/{delivery_id}/attempts"),
                None::<&Value>,
            )
            .await?;
        Ok(())
    }

    /// Open an issue.
    pub async fn create_issue(
        &self,
        repo: &RepoRef,
        title: &str,
        body: &str,
    ) -> Result<octocrab::models::issues::Issue, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!("/repos/{}/issues", repo.full_name),
            Some(&json!({ "title": title, "body": body })),
        )
        .await
    }

    /// An issue (or a pull request, seen as an issue).
    pub async fn get_issue(
        &self,
        repo: &RepoRef,
        number: i64,
    ) -> Result<octocrab::models::issues::Issue, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}/issues/{number}", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// A pull request (its head branch and the repository that holds it, its state).
    pub async fn get_pull(
        &self,
        repo: &RepoRef,
        number: i64,
    ) -> Result<octocrab::models::pulls::PullRequest, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}/pulls/{number}", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// Mark a draft pull request ready for review (GraphQL only; `pr_node_id` is its `node_id`).
    pub async fn mark_ready_for_review(
        &self,
        repo: &RepoRef,
        pr_node_id: &str,
    ) -> Result<(), GitHubError> {
        let answer: Value = self
            .call(
                Auth::Repo(repo),
                Method::POST,
                "/graphql",
                Some(&json!({
                    "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }",
                    "variables": { "id": pr_node_id },
                })),
            )
            .await?;
        if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
            return Err(GitHubError::Status {
                status: 422,
                method: Method::POST,
                path: "/graphql".into(),
                message: errors
                    .iter()
                    .filter_map(|e| e["message"].as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        Ok(())
    }

    /// Ask `login` to review a pull request.
    pub async fn request_reviewer(
        &self,
        repo: &RepoRef,
        pr_number: i64,
        login: &str,
    ) -> Result<octocrab::models::pulls::PullRequest, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!(
                "/repos/{}/pulls/{pr_number}/requested_reviewers",
                repo.full_name
            ),
            Some(&json!({ "reviewers": [login] })),
        )
        .await
    }

    /// The check suites of a commit.
    pub async fn check_suites(
        &self,
        repo: &RepoRef,
        sha: &str,
    ) -> Result<CheckSuites, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}/commits/{sha}/check-suites", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// The check runs of a commit (every page).
    pub async fn check_runs(&self, repo: &RepoRef, sha: &str) -> Result<CheckRuns, GitHubError> {
        let path = format!("/repos/{}/commits/{sha}/check-runs", repo.full_name);
        let (total_count, check_runs) = self
            .all_pages(repo, &path, |page: CheckRuns| {
                (page.total_count, page.check_runs)
            })
            .await?;
        Ok(CheckRuns {
            total_count,
            check_runs,
        })
    }

    /// The legacy commit statuses of a commit, the newest per context (every page).
    pub async fn combined_status(
        &self,
        repo: &RepoRef,
        sha: &str,
    ) -> Result<CombinedStatus, GitHubError> {
        let path = format!("/repos/{}/commits/{sha}/status", repo.full_name);
        let (total_count, statuses) = self
            .all_pages(repo, &path, |page: CombinedStatus| {
                (page.total_count, page.statuses)
            })
            .await?;
        Ok(CombinedStatus {
            total_count,
            statuses,
        })
    }

    /// Read a list GitHub pages with a `total_count` beside the items, up to [`MAX_PAGES`].
    async fn all_pages<P: DeserializeOwned, T>(
        &self,
        repo: &RepoRef,
        path: &str,
        split: impl Fn(P) -> (u64, Vec<T>),
    ) -> Result<(u64, Vec<T>), GitHubError> {
        let mut total = 0;
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let got: P = self
                .call(
                    Auth::Repo(repo),
                    Method::GET,
                    &format!("{path}?per_page=100&page={page}"),
                    None::<&Value>,
                )
                .await?;
            let (count, items) = split(got);
            total = count;
            let empty = items.is_empty();
            all.extend(items);
            if empty || all.len() as u64 >= total {
                break;
            }
        }
        Ok((total, all))
    }

    /// A check run's annotations (file, lines, message).
    pub async fn check_run_annotations(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
    ) -> Result<Vec<Annotation>, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!(
                "/repos/{}/check-runs/{check_run_id}/annotations?per_page=100",
                repo.full_name
            ),
            None::<&Value>,
        )
        .await
    }

    /// A GitHub Actions job's log as text. GitHub answers with a redirect to short-lived storage,
    /// which the client follows.
    pub async fn job_log(&self, repo: &RepoRef, job_id: u64) -> Result<String, GitHubError> {
        let bytes = self
            .call_raw(
                Auth::Repo(repo),
                Method::GET,
                &format!("/repos/{}/actions/jobs/{job_id}/logs", repo.full_name),
                None::<&Value>,
            )
            .await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// How long a rate-limited response says to wait, if it is one: `Retry-After` (secondary limits
/// and 429), or `x-ratelimit-remaining: 0` with `x-ratelimit-reset` (the primary limit). A 403
/// without these headers is a real refusal.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs.max(0) as u64));
    }
    if header("x-ratelimit-remaining") == Some(0)
        && let Some(reset) = header("x-ratelimit-reset")
    {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        return Some(Duration::from_secs((reset - now).clamp(1, 3600) as u64));
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        || error_message(body)
            .to_ascii_lowercase()
            .contains("secondary rate limit")
    {
        // GitHub asks for at least a minute when it gives no time.
        return Some(Duration::from_secs(60));
    }
    None
}

/// GitHub's `message` from an error body, or the body itself.
fn error_message(body: &[u8]) -> String {
    let Some(v) = serde_json::from_slice::<Value>(body).ok() else {
        return String::from_utf8_lossy(body).chars().take(300).collect();
    };
    let Some(message) = v["message"].as_str() else {
        return String::from_utf8_lossy(body).chars().take(300).collect();
    };
    // A 422 says "Validation Failed" and gives the reasons in `errors` (a message each, or the
    // field and a code).
    let details: Vec<String> = v["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| match e["message"].as_str() {
                    Some(m) => Some(m.to_string()),
                    None => e["code"].as_str().map(|code| match e["field"].as_str() {
                        Some(field) => format!("{field} {code}"),
                        None => code.to_string(),
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    if details.is_empty() {
        message.to_string()
    } else {
        format!("{message}: {}", details.join("; "))
    }
}
