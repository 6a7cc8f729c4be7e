//! The relay to the Amp service: the agent's `AMP_URL` points here, and it sends the task's
//! placeholder credential as its API key. A valid one is swapped for the real `AMP_API_KEY`;
//! everything else (method, path, query, headers, body) passes through, streamed both ways, so
//! the CLI's streamed answers arrive as they are produced. A protocol switch (websocket) passes
//! through too.

use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::ResponseFuture;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tracing::{debug, info, warn};

use super::credential;
use super::tunnel::{self, Ended};
use super::{
    Body, CONNECT_TIMEOUT, Conn, Gateway, TUNNEL_IDLE_TIMEOUT, full, headers, plain, texts,
};

/// The HTTP client for the Amp service: TLS (with the system's CA certificates) for an https
/// `AMP_URL`, plain TCP for an http one (tests, or a local stand-in).
pub(super) enum Upstream {
    Plain(Client<HttpConnector, Incoming>),
    Tls(Client<HttpsConnector<HttpConnector>, Incoming>),
}

impl Upstream {
    pub(super) fn new(amp_url: &str) -> anyhow::Result<Upstream> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(60));
            b
        };
        if amp_url.starts_with("https://") {
            http.enforce_http(false);
            let tls = hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no CA certificates to check {amp_url} with (install them, or set \
                         SSL_CERT_FILE): {e}"
                    )
                })?
                .https_only()
                .enable_http1()
                .wrap_connector(http);
            Ok(Upstream::Tls(builder().build(tls)))
        } else {
            Ok(Upstream::Plain(builder().build(http)))
        }
    }

    fn request(&self, req: Request<Incoming>) -> ResponseFuture {
        match self {
            Upstream::Plain(c) => c.request(req),
            Upstream::Tls(c) => c.request(req),
        }
    }
}

/// Relay one origin-form request to the Amp service.
pub(super) async fn relay(gw: &Gateway, conn: Conn, mut req: Request<Incoming>) -> Response<Body> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    let verified = match token {
        Some(token) => credential::verify(&gw.key, token, conn.peer, SystemTime::now()),
        None => Err(credential::Refusal::Missing),
    };
    let task = match verified {
        Ok(credential) => credential.task,
        Err(why) => {
            info!(peer = %conn.peer, reason = %why, "relay: credential refused");
            return full(
                StatusCode::UNAUTHORIZED,
                "application/json",
                texts::RELAY_UNAUTHORIZED,
            );
        }
    };

    let Some(path) = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
    else {
        return plain(StatusCode::BAD_REQUEST, texts::relay_bad_request());
    };
    let Ok(uri) = format!("{}{path}", gw.amp_url).parse::<http::Uri>() else {
        return plain(StatusCode::BAD_REQUEST, texts::relay_bad_request());
    };
    let method = req.method().clone();
    let logged_path = req.uri().path().to_owned();

    let upgrade = headers::wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::AUTHORIZATION);
    parts
        .headers
        .insert(header::AUTHORIZATION, gw.amp_authorization.clone());
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;

    let mut resp = match gw.upstream.request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp,
        Err(e) => {
            warn!(task = %task, method = %method, path = logged_path, error = %e,
                "relay: the Amp service could not be reached");
            return plain(StatusCode::BAD_GATEWAY, texts::relay_upstream_failed());
        }
    };
    debug!(task = %task, method = %method, path = logged_path, status = resp.status().as_u16(),
        "relayed");

    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        let Some(client_upgrade) = client_upgrade else {
            // The service switched protocols nobody asked for.
            return plain(StatusCode::BAD_GATEWAY, texts::relay_upstream_failed());
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let task = task.clone();
        tokio::spawn(async move {
            let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(c), Ok(u)) => (TokioIo::new(c), TokioIo::new(u)),
                _ => {
                    debug!(task = %task, "relay: an upgrade did not complete");
                    return;
                }
            };
            match tunnel::copy_with_idle_timeout(client, upstream, TUNNEL_IDLE_TIMEOUT).await {
                Ended::Idle => {
                    info!(task = %task, "relay: upgraded connection closed after being idle")
                }
                other => debug!(task = %task, ended = ?other, "relay: upgraded connection closed"),
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, switching);
    Response::from_parts(parts, body.boxed())
}
