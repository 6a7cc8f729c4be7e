//! Faults served on request (error statuses, rate limits, slow or lost answers), the middleware
//! that serves them, logs every request and records the API's exchanges, and the fallback that records a request the
//! simulator does not know.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;

use super::GitHubSim;
use super::json::github_error;
use super::recording::{Recorder, is_api_path};
use super::state::{Logged, Shared, now};

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
    /// Do the work, then answer with this status and body instead of the usual one (an answer
    /// shaped other than the client expects).
    Reshaped(u16, String),
}

/// Marks an answer a test shaped off GitHub's schema on purpose: it is not recorded.
#[derive(Clone, Copy)]
struct OffSchema;

/// Serve the first injected fault that matches the request (or the request itself), and log it;
/// when the simulator records its exchanges ([`super::recording`]), record the API's.
pub(super) async fn faults_and_log(
    State(state): State<Shared>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let recorder = state.lock().unwrap().recorder.clone();
    match recorder {
        Some(recorder) if is_api_path(request.uri().path()) => {
            let (request, recorded) = match Recorder::take_request(request).await {
                Ok(taken) => taken,
                Err(refused) => return refused,
            };
            let response = serve_with_faults(&state, request, next).await;
            if response.extensions().get::<OffSchema>().is_some() {
                return response;
            }
            recorder.record(recorded, response).await
        }
        _ => serve_with_faults(&state, request, next).await,
    }
}

async fn serve_with_faults(
    state: &Shared,
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
        Some(Fault::Reshaped(code, body)) => {
            let _done = next.run(request).await;
            Response::builder()
                .status(code)
                .header("content-type", "application/json; charset=utf-8")
                .extension(OffSchema)
                .body(axum::body::Body::from(body))
                .unwrap()
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

/// A request the simulator does not know: recorded (the test fails when the simulator is
/// dropped) and answered 404.
pub(super) async fn unknown(
    State(state): State<Shared>,
    method: Method,
    uri: axum::http::Uri,
) -> Response {
    state
        .lock()
        .unwrap()
        .unknown
        .push(format!("{method} {uri}"));
    github_error(StatusCode::NOT_FOUND, "Not Found")
}

impl GitHubSim {
    /// Serve `fault` instead of the next `method` request whose path contains `path_part`.
    pub fn inject(&self, method: Method, path_part: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((method, path_part.to_string(), fault));
    }

    /// The requests answered so far with `method` whose path contains `path_part`.
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
}
