//! The GitHub App's client, on octocrab.
//!
//! octocrab provides the HTTP client (TLS, timeouts, redirects), the App JWT and the response
//! models; this module adds what a long-running App needs on top:
//!
//! - installation tokens minted **per repository** (a token for one task can touch nothing else),
//!   cached, and replaced ahead of their expiry, or at once when GitHub answers 401;
//! - one retry policy for every call: transport errors, timeouts and 5xx back off exponentially;
//!   primary and secondary rate limits wait for `Retry-After` / `x-ratelimit-reset`, so a
//!   rate-limited GitHub delays work and never drops it (work that must not hold others up, a
//!   webhook delivery, runs [`with_rate_limit_patience`] and gets [`GitHubError::RateLimited`]
//!   instead of a long wait, to be put back); other 4xx fail at once with GitHub's message, for
//!   the caller to turn into a reply;
//! - a typed function per operation the service uses ([`operations`]), its answer read into a
//!   narrow struct ([`models`]); a write whose answer cannot be read is not retried (it was done);
//! - redirects followed (octocrab's policy drops the credentials when a redirect leaves the API's
//!   host, as a job log's download does), a job log's size capped.

mod models;
mod operations;

pub use models::*;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::config::Config;
pub use crate::domain::{RepoRef, Role};
use crate::redact::Redactor;

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
    /// The most of a job log that is kept; a longer log is cut, keeping its end (the failure
    /// report uses 20 KB of it: error lines with their context, and the end).
    pub max_log_bytes: usize,
    /// The most of a job log that is read: a log that goes on is not read to its end (the CI
    /// run, and so the log, is the repository's, which is not trusted).
    pub max_log_read: usize,
    /// The largest answer read from the API; a larger one is an error.
    pub max_answer_bytes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            call_timeout: Duration::from_secs(30),
            max_attempts: 4,
            backoff: Duration::from_millis(500),
            max_rate_limit_wait: Duration::from_secs(3600),
            token_refresh_margin: Duration::from_secs(10 * 60),
            max_log_bytes: 1024 * 1024,
            max_log_read: 64 * 1024 * 1024,
            max_answer_bytes: 32 * 1024 * 1024,
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
    /// A 2xx whose body is not what GitHub's schema describes. `done`: the call changed
    /// something on GitHub (a write other than minting a token), so it is not made again.
    #[error("GitHub's answer to {method} {path} does not parse: {message}")]
    Unreadable {
        method: Method,
        path: String,
        message: String,
        done: bool,
    },
    /// GitHub's rate limit would have to be waited out for `wait`, longer than the patience of
    /// the work that made the call ([`with_rate_limit_patience`]).
    #[error("GitHub's rate limit holds {method} {path} for another {}s", wait.as_secs())]
    RateLimited {
        method: Method,
        path: String,
        wait: Duration,
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
    /// are waited out before an error is returned), a client without an App, or a write GitHub
    /// did (2xx) with an answer that does not parse: asking again would do it twice. Transport
    /// failures, 5xx and reads that do not parse may go away.
    pub fn is_permanent(&self) -> bool {
        match self {
            GitHubError::Status { status, .. } => (400..500).contains(status),
            GitHubError::NotConfigured => true,
            GitHubError::Unreadable { done, .. } => *done,
            GitHubError::Transport { .. }
            | GitHubError::RateLimited { .. }
            | GitHubError::Other(_) => false,
        }
    }

    /// How long until GitHub's rate limit lets the call through, when that is what stopped it.
    pub fn rate_limited_for(&self) -> Option<Duration> {
        match self {
            GitHubError::RateLimited { wait, .. } => Some(*wait),
            _ => None,
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

tokio::task_local! {
    /// The longest a rate limit is waited out by calls made within [`with_rate_limit_patience`].
    static RATE_LIMIT_PATIENCE: Duration;
}

/// Run `work` so that its GitHub calls wait out a rate limit for at most `patience`; a longer one
/// fails the call with [`GitHubError::RateLimited`] (how long it holds), so the work can be put
/// back for later instead of holding up what comes after it. Elsewhere a rate limit is waited
/// out (up to [`Options::max_rate_limit_wait`]).
pub async fn with_rate_limit_patience<F: std::future::Future>(
    patience: Duration,
    work: F,
) -> F::Output {
    RATE_LIMIT_PATIENCE.scope(patience, work).await
}

/// A 2xx answer.
struct Answer {
    headers: HeaderMap,
    bytes: Bytes,
    /// How the body was cut to stay within the size asked for.
    cut: Cut,
}

/// How an answer's body was cut (see [`GitHub::exchange`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Cut {
    /// The whole body.
    #[default]
    Whole,
    /// Its start was dropped: the bytes are its end.
    Start,
    /// It went on past the most that is read: the bytes are the end of what was read.
    Unread,
}

/// How much of a body to read and keep (the default: all of it, up to `max_answer_bytes`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keep {
    /// The end kept, at most.
    tail: usize,
    /// Read no further.
    read: usize,
}

#[derive(Clone)]
struct CachedToken {
    token: SecretString,
    expires_at: SystemTime,
    /// What the installation lets the token do (`contents` → `write`, …).
    permissions: HashMap<String, String>,
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
    /// Told every installation token minted, so it is masked wherever it shows up.
    redactor: Option<Arc<Redactor>>,
}

impl GitHub {
    pub fn new(
        config: &Config,
        options: Options,
        redactor: Option<Arc<Redactor>>,
    ) -> anyhow::Result<Arc<GitHub>> {
        Self::for_app(
            &config.github_api_url,
            config.app_id,
            config.private_key.as_ref(),
            options,
            redactor,
        )
    }

    /// A client for the App `app_id` signing with `private_key`; without them, a client that can
    /// only make calls that need no App credentials. The installation tokens it mints are added
    /// to `redactor`.
    pub fn for_app(
        api_url: &str,
        app_id: Option<u64>,
        private_key: Option<&SecretString>,
        options: Options,
        redactor: Option<Arc<Redactor>>,
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
            redactor,
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
        Ok(self.cached_token(repo).await?.token)
    }

    /// Whether the installation lets the App write `permission` (`workflows`, say) in `repo`, as
    /// its installation token says.
    pub async fn may_write(&self, repo: &RepoRef, permission: &str) -> Result<bool, GitHubError> {
        let cached = self.cached_token(repo).await?;
        Ok(cached
            .permissions
            .get(permission)
            .is_some_and(|level| level == "write" || level == "admin"))
    }

    async fn cached_token(&self, repo: &RepoRef) -> Result<CachedToken, GitHubError> {
        let key = (repo.installation_id, repo.repo_id);
        let mut tokens = self.tokens.lock().await;
        if let Some(cached) = tokens.get(&key)
            && cached
                .expires_at
                .duration_since(SystemTime::now())
                .is_ok_and(|left| left > self.options.token_refresh_margin)
        {
            return Ok(cached.clone());
        }
        let minted: MintedToken = self
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
        if let Some(redactor) = &self.redactor {
            redactor.add_token(&minted.token, expires_at);
        }
        let token = SecretString::from(minted.token);
        debug!(installation = repo.installation_id, repo = %repo.full_name, "minted an installation token");
        let cached = CachedToken {
            token,
            expires_at,
            permissions: minted.permissions,
        };
        tokens.insert(key, cached.clone());
        Ok(cached)
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
        let (_, bytes) = self.call_raw(auth, method.clone(), path, body).await?;
        self.parse(&method, path, &bytes)
    }

    /// A 2xx answer's body as `T`.
    fn parse<T: DeserializeOwned>(
        &self,
        method: &Method,
        path: &str,
        bytes: &[u8],
    ) -> Result<T, GitHubError> {
        let bytes = if bytes.is_empty() { b"null" } else { bytes };
        serde_json::from_slice(bytes).map_err(|e| GitHubError::Unreadable {
            method: method.clone(),
            path: shown(path),
            message: e.to_string(),
            done: *method != Method::GET && !path.ends_with("/access_tokens"),
        })
    }

    /// One call with the retry policy; a 2xx answer's headers and body.
    async fn call_raw(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<(HeaderMap, Bytes), GitHubError> {
        let answer = self.send(auth, method, path, body, None).await?;
        Ok((answer.headers, answer.bytes))
    }

    /// One call with the retry policy; the 2xx answer, or the error. With `keep`, only the end
    /// of a long body is kept, and a body that goes on is not read to its end.
    async fn send(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        keep: Option<Keep>,
    ) -> Result<Answer, GitHubError> {
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
                tokio::time::timeout(self.options.call_timeout, self.exchange(request, keep)).await;
            let failure = match outcome {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(message)) => Err(message),
                Err(_) => Err(format!("no answer within {:?}", self.options.call_timeout)),
            };
            let (status, headers, bytes, cut) = match failure {
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
                return Ok(Answer {
                    headers,
                    bytes,
                    cut,
                });
            }
            if let Some(wait) = rate_limit_wait(status, &headers, &bytes) {
                if RATE_LIMIT_PATIENCE.try_with(|patience| wait > *patience) == Ok(true) {
                    warn!(%method, path = %shown_path, status = status.as_u16(), ?wait, "GitHub rate limit; the work is put back");
                    return Err(GitHubError::RateLimited {
                        method,
                        path: shown_path,
                        wait,
                    });
                }
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

    /// Send `request` and read its answer: the whole body (an error beyond
    /// `max_answer_bytes`), or with `keep` its end (never more than twice `keep.tail` held,
    /// and nothing read past `keep.read`).
    async fn exchange(
        &self,
        request: http::Request<octocrab::OctoBody>,
        keep: Option<Keep>,
    ) -> Result<(StatusCode, HeaderMap, Bytes, Cut), String> {
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
        let mut body = body;
        let Some(keep) = keep else {
            let max = self.options.max_answer_bytes;
            let mut whole: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                if let Some(data) = frame.data_ref() {
                    if whole.len() + data.len() > max {
                        return Err(format!("the answer is larger than {max} bytes"));
                    }
                    whole.extend_from_slice(data);
                }
            }
            return Ok((parts.status, parts.headers, Bytes::from(whole), Cut::Whole));
        };
        // Read on, holding at most twice the tail, and keep the end.
        let mut kept: Vec<u8> = Vec::new();
        let mut read = 0usize;
        let mut cut = Cut::Whole;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                let room = keep.read - read;
                let data = &data[..data.len().min(room)];
                read += data.len();
                kept.extend_from_slice(data);
                if kept.len() > keep.tail.saturating_mul(2) {
                    kept.drain(..kept.len() - keep.tail);
                    cut = Cut::Start;
                }
                if read >= keep.read {
                    // The rest is not read: dropping the body closes the connection.
                    cut = Cut::Unread;
                    break;
                }
            }
        }
        if kept.len() > keep.tail {
            kept.drain(..kept.len() - keep.tail);
            if cut == Cut::Whole {
                cut = Cut::Start;
            }
        }
        Ok((parts.status, parts.headers, Bytes::from(kept), cut))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.options.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(10));
        let jitter = rand::random::<f64>() * 0.25;
        base.mul_f64(1.0 + jitter)
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
