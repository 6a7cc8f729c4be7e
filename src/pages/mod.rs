//! Server-rendered pages (askama templates in `templates/`): the landing page, a task's status
//! page and its live stream, the admin's task list and task form, the JSON API, and the static
//! files the pages use.

pub mod admin;
pub mod guard;
pub mod log;
pub mod metrics;
pub mod setup;
pub mod setup_snapshots;
pub mod sse;
pub mod task;

use askama::Template;
use askama_web::WebTemplate;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The landing page: what the app does and its commands.
#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct Index {
    pub version: &'static str,
}

/// `GET /`: the landing page, or the setup page while the service has no App.
pub async fn index(
    axum::extract::State(ctx): axum::extract::State<crate::context::Ctx>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<setup::SetupQuery>,
) -> Response {
    if ctx.in_setup() {
        return setup::page(&ctx, &headers, query).await;
    }
    Index {
        version: env!("CARGO_PKG_VERSION"),
    }
    .into_response()
}

/// Every missing page, unknown task ids included: the same status and body.
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Not found\n",
    )
        .into_response()
}

pub async fn fallback() -> Response {
    not_found()
}

/// A failure on our side: logged, and a plain 500 without details.
pub fn internal_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "a page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "Something went wrong; it has been logged.\n",
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn style() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/style.css"),
    )
}

pub async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/task.js"),
    )
}

/// Headers on every response. The status page's address is a capability: it must not leak
/// through `Referer`, and nothing inline may run.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];
