//! The control port: `GET /healthz` for Docker's health check, and `GET /blocked?task=<id>`, the
//! hosts a task was refused, for the service to tell the person who started it.

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{Body, Conn, Gateway, full, plain, texts};

pub(super) async fn handle(
    gw: Arc<Gateway>,
    _conn: Conn,
    req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz" => plain(StatusCode::OK, "ok".into()),
        "/blocked" => {
            let task = req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|pair| pair.strip_prefix("task="))
                    .filter(|t| super::credential::is_task_name(t))
            });
            let Some(task) = task else {
                return plain(StatusCode::BAD_REQUEST, texts::control_needs_task());
            };
            let body =
                serde_json::to_string(&gw.blocked.for_task(task)).unwrap_or_else(|_| "[]".into());
            full(StatusCode::OK, "application/json", body)
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}
