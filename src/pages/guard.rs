//! Who may use the operator's pages and API, and from where.
//!
//! The admin token comes as `Authorization: Bearer <token>` (the JSON API, scripts) or as the
//! password of HTTP Basic authentication (a browser, which asks once and then resends it on every
//! request to this site, including requests another site makes it send). So:
//!
//! - the JSON API takes only a Bearer token, which a browser never adds by itself;
//! - every request that changes something refuses a foreign `Origin` and a `Sec-Fetch-Site`
//!   other than `same-origin` or `none`, so another site cannot make an admin's browser post;
//! - wrong tokens are throttled (a burst, then one guess every few seconds for everyone), and the
//!   comparison takes the same time whatever the guess's length or content.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::context::Ctx;
use crate::texts::refusals;

/// Wrong tokens accepted in a burst before guesses are slowed down.
pub const WRONG_TOKEN_BURST: u32 = 20;
/// Once the burst is spent, one more guess per this interval.
pub const WRONG_TOKEN_REFILL: Duration = Duration::from_secs(3);

/// How the token may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Bearer or Basic: the pages a browser shows.
    BearerOrBasic,
    /// Bearer only: the JSON API.
    Bearer,
}

/// Counts wrong admin tokens: a bucket of [`WRONG_TOKEN_BURST`] guesses, refilled one per
/// [`WRONG_TOKEN_REFILL`]. While it is empty every token, right or wrong, gets a 429, so a
/// guesser learns nothing from the answers.
pub struct WrongTokens {
    bucket: Mutex<(f64, Instant)>,
}

impl Default for WrongTokens {
    fn default() -> Self {
        WrongTokens {
            bucket: Mutex::new((f64::from(WRONG_TOKEN_BURST), Instant::now())),
        }
    }
}

impl WrongTokens {
    fn refilled(&self) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.1).as_secs_f64() / WRONG_TOKEN_REFILL.as_secs_f64();
        bucket.0 = (bucket.0 + earned).min(f64::from(WRONG_TOKEN_BURST));
        bucket.1 = now;
        bucket
    }

    /// How long until a guess is listened to again; `None` when one is now.
    fn wait(&self) -> Option<Duration> {
        let bucket = self.refilled();
        (bucket.0 < 1.0).then(|| WRONG_TOKEN_REFILL.mul_f64(1.0 - bucket.0))
    }

    fn count_one(&self) {
        let mut bucket = self.refilled();
        bucket.0 = (bucket.0 - 1.0).max(0.0);
    }
}

/// The token the request carries, as it may come.
fn given_token(headers: &HeaderMap, via: Via) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    if via == Via::Bearer {
        return None;
    }
    let basic = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    pair.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// Equal in constant time, whatever the lengths: digests of equal length are compared.
fn same_token(given: &str, expected: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    bool::from(given.ct_eq(&expected))
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The response to send when the request does not carry the admin token as `via` allows; `None`
/// when it does. Without `ADMIN_TOKEN` configured the admin pages do not exist (404).
pub fn admin_refusal(ctx: &Ctx, headers: &HeaderMap, via: Via) -> Option<Response> {
    let Some(expected) = &ctx.config.admin_token else {
        return Some(super::not_found());
    };
    if let Some(wait) = ctx.wrong_admin_tokens.wait() {
        let seconds = wait.as_secs() + 1;
        let mut response = plain(
            StatusCode::TOO_MANY_REQUESTS,
            refusals::too_many_wrong_tokens(seconds),
        );
        if let Ok(value) = seconds.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Some(response);
    }
    let given = given_token(headers, via);
    if given
        .as_deref()
        .is_some_and(|g| same_token(g, expected.expose_secret()))
    {
        return None;
    }
    if given.is_some() {
        ctx.wrong_admin_tokens.count_one();
        tracing::warn!("a request came with a wrong admin token");
    }
    let mut response = plain(
        StatusCode::UNAUTHORIZED,
        refusals::admin_token_missing(
            via == Via::Bearer
                && headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("Basic ")),
        ),
    );
    // A browser asks for a password only when offered Basic; the API names its own scheme.
    let challenge = match via {
        Via::BearerOrBasic => "Basic realm=\"amp-orchestrator admin\"",
        Via::Bearer => "Bearer realm=\"amp-orchestrator admin\"",
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static(challenge),
    );
    Some(response)
}

/// The scheme, host and port of an origin or URL (`https://amp.example.com:8443`), lower-cased.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// The refusal for a state-changing request another site may have made the browser send: an
/// `Origin` that is neither this service's public address nor the host the request was sent to,
/// or a `Sec-Fetch-Site` that is not `same-origin` or `none`. Requests without either header
/// (scripts, older browsers on same-site forms) pass: a browser sends `Origin` on every
/// cross-site `POST`.
pub fn cross_site_refusal(ctx: &Ctx, headers: &HeaderMap) -> Option<Response> {
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::trim);
    let site_refused = text("sec-fetch-site").is_some_and(|site| {
        !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none")
    });
    let origin_refused = headers.get(header::ORIGIN).is_some_and(|value| {
        let Some(origin) = value.to_str().ok().and_then(origin_of) else {
            // `null` (a sandboxed frame, a redirect chain) or garbage.
            return true;
        };
        if Some(&origin) == origin_of(&ctx.config.public_url).as_ref() {
            return false;
        }
        let authority = origin.split_once("://").map(|(_, a)| a);
        !matches!((authority, text("host")), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
    });
    (site_refused || origin_refused).then(|| plain(StatusCode::FORBIDDEN, refusals::cross_site()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whatever_their_length() {
        assert!(same_token(
            "admin-token-0123456789",
            "admin-token-0123456789"
        ));
        assert!(!same_token("admin", "admin-token-0123456789"));
        assert!(!same_token("", "admin-token-0123456789"));
        assert!(!same_token(
            "admin-token-0123456788",
            "admin-token-0123456789"
        ));
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://Amp.example.com/tasks?x=1").as_deref(),
            Some("https://amp.example.com")
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin_of("null"), None);
        assert_eq!(origin_of("https://"), None);
    }

    #[test]
    fn wrong_tokens_are_slowed_after_the_burst() {
        let wrong = WrongTokens::default();
        for _ in 0..WRONG_TOKEN_BURST {
            assert_eq!(wrong.wait(), None);
            wrong.count_one();
        }
        let wait = wrong.wait().expect("the burst is spent");
        assert!(wait <= WRONG_TOKEN_REFILL, "{wait:?}");
    }
}
