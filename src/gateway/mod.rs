//! The egress gateway: the only thing an agent's container can reach.
//!
//! One port (`GATEWAY_LISTEN`) serves both halves, told apart per request:
//! - `CONNECT host:port` and absolute-form `GET http://host/…` go to the forward proxy, which lets
//!   a task reach the hosts on the allowlist and nothing else (see [`proxy`]);
//! - origin-form requests (`POST /api/…`) go to the relay to the Amp service, which swaps the
//!   task's placeholder credential for the real `AMP_API_KEY` (see [`relay`]).
//!
//! Both authenticate the task by its [`credential`], which is bound to the agent container's
//! address. A second port (`GATEWAY_CONTROL`, loopback by default) answers health checks and
//! tells the service which hosts a task was refused (see [`control`]).
//!
//! The gateway runs as `amp-orchestrator gateway` in its own container and needs none of the
//! service's configuration.

pub mod addresses;
pub mod allowlist;
pub mod blocked;
mod control;
pub mod credential;
mod headers;
pub mod probe;
mod proxy;
mod relay;
pub mod texts;
mod tunnel;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::{ConfigError, LogFormat};
use addresses::{Cidr, LocalAddresses};
use allowlist::Allowlist;
use blocked::Blocked;
use credential::Key;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:3128";
pub const DEFAULT_CONTROL: &str = "127.0.0.1:3129";
pub const DEFAULT_AMP_URL: &str = "https://ampcode.com";

/// At most this many client connections at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections to the control port at once (health checks and the service's queries).
const MAX_CONTROL_CONNECTIONS: usize = 16;
/// The time a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (the read buffer, which bounds it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// A tunnel (or an upgraded relay connection) with no bytes either way for this long is closed.
pub const TUNNEL_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Connecting to an upstream, and resolving its name.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The gateway's configuration, from its own environment.
#[derive(Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub control: SocketAddr,
    pub amp_api_key: String,
    /// The Amp service, without a trailing slash (`https://ampcode.com`).
    pub amp_url: String,
    pub allow: Allowlist,
    pub allow_networks: Vec<Cidr>,
    pub log_level: String,
    pub log_format: LogFormat,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("listen", &self.listen)
            .field("control", &self.control)
            .field("amp_api_key", &"[REDACTED]")
            .field("amp_url", &self.amp_url)
            .field("allow", &self.allow.to_string())
            .field("allow_networks", &self.allow_networks)
            .finish()
    }
}

impl GatewayConfig {
    pub fn from_env() -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the configuration through `lookup` (tests never touch the process environment).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<GatewayConfig, ConfigError> {
        let mut problems = Vec::new();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut addr = |name: &str, default: &str| {
            let value = get(name).unwrap_or_else(|| default.into());
            value.trim().parse::<SocketAddr>().unwrap_or_else(|_| {
                problems.push(format!(
                    "{name} must be an address and port like {default}, got {value:?}"
                ));
                default.parse().expect("valid default")
            })
        };
        let listen = addr("GATEWAY_LISTEN", DEFAULT_LISTEN);
        let control = addr("GATEWAY_CONTROL", DEFAULT_CONTROL);
        let amp_api_key = match get("AMP_API_KEY") {
            Some(key) if HeaderValue::from_str(&format!("Bearer {}", key.trim())).is_ok() => {
                key.trim().to_owned()
            }
            Some(_) => {
                problems.push("AMP_API_KEY contains characters a header cannot carry".into());
                String::new()
            }
            None => {
                problems.push(
                    "AMP_API_KEY is required: the gateway relays the agent's requests to the Amp \
                     service with it"
                        .into(),
                );
                String::new()
            }
        };
        let amp_url = get("AMP_URL").unwrap_or_else(|| DEFAULT_AMP_URL.into());
        let amp_url = match check_amp_url(amp_url.trim()) {
            Ok(url) => url,
            Err(e) => {
                problems.push(e);
                DEFAULT_AMP_URL.into()
            }
        };
        let allow =
            Allowlist::parse(&get("GATEWAY_ALLOW").unwrap_or_default()).unwrap_or_else(|e| {
                problems.push(e);
                Allowlist::default()
            });
        let allow_networks =
            addresses::parse_networks(&get("GATEWAY_ALLOW_NETWORKS").unwrap_or_default())
                .unwrap_or_else(|e| {
                    problems.push(format!("GATEWAY_ALLOW_NETWORKS: {e}"));
                    Vec::new()
                });
        let log_level = get("LOG_LEVEL").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            problems.push(format!(
                "LOG_LEVEL {log_level:?} is not a level (trace, debug, info, warn, error) or filter"
            ));
        }
        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                problems.push(format!("LOG_FORMAT must be json or pretty, got {other:?}"));
                LogFormat::Pretty
            }
        };
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(GatewayConfig {
            listen,
            control,
            amp_api_key,
            amp_url,
            allow,
            allow_networks,
            log_level,
            log_format,
        })
    }
}

/// `AMP_URL` must be an absolute http(s) URL without a query; a path prefix is kept.
fn check_amp_url(url: &str) -> Result<String, String> {
    let bad = || format!("AMP_URL must be an http:// or https:// URL, got {url:?}");
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad()),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad());
    };
    if authority.as_str().contains('@') || uri.query().is_some() {
        return Err(bad());
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// What the request handlers share.
struct Gateway {
    key: Key,
    /// `Bearer <AMP_API_KEY>`, marked sensitive.
    amp_authorization: HeaderValue,
    amp_url: String,
    upstream: relay::Upstream,
    allow: Allowlist,
    allow_networks: Vec<Cidr>,
    blocked: Blocked,
    local: LocalAddresses,
    /// The ports the gateway itself listens on; never a destination on its own addresses.
    own_ports: Vec<u16>,
}

/// The client connection a request came on.
#[derive(Clone, Copy, Debug)]
struct Conn {
    /// The agent container's address (IPv4-mapped IPv6 normalised to IPv4).
    peer: IpAddr,
    /// The gateway's address the client connected to.
    local: SocketAddr,
}

type Body = BoxBody<Bytes, hyper::Error>;

fn full(status: StatusCode, content_type: &'static str, text: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(text.into()).map_err(|e| match e {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

fn empty() -> Body {
    http_body_util::Empty::new().map_err(|e| match e {}).boxed()
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    full(status, "text/plain; charset=utf-8", text)
}

/// Run the gateway on listeners the caller bound (the proxy/relay port and the control port)
/// until `shutdown` is cancelled.
pub async fn run(
    config: GatewayConfig,
    listener: TcpListener,
    control: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut own_ports = vec![listener.local_addr()?.port(), control.local_addr()?.port()];
    own_ports.dedup();
    let mut amp_authorization = HeaderValue::from_str(&format!("Bearer {}", config.amp_api_key))
        .context("AMP_API_KEY cannot be sent in a header")?;
    amp_authorization.set_sensitive(true);
    let gateway = Arc::new(Gateway {
        key: Key::derive(&config.amp_api_key),
        amp_authorization,
        upstream: relay::Upstream::new(&config.amp_url)?,
        amp_url: config.amp_url,
        allow: config.allow,
        allow_networks: config.allow_networks,
        blocked: Blocked::new(),
        local: LocalAddresses::new(),
        own_ports,
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        control = %control.local_addr()?,
        amp_url = %gateway.amp_url,
        allow = %gateway.allow,
        "egress gateway listening"
    );
    let control_loop = accept_loop(
        control,
        MAX_CONTROL_CONNECTIONS,
        shutdown.clone(),
        gateway.clone(),
        control::handle,
    );
    let main_loop = accept_loop(
        listener,
        MAX_CONNECTIONS,
        shutdown,
        gateway,
        |gw: Arc<Gateway>, conn: Conn, req: Request<Incoming>| handle(gw, conn, req),
    );
    tokio::join!(control_loop, main_loop);
    Ok(())
}

/// Bind the configured addresses and [`run`] until `shutdown`.
pub async fn serve(config: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding GATEWAY_LISTEN {}", config.listen))?;
    let control = TcpListener::bind(config.control)
        .await
        .with_context(|| format!("binding GATEWAY_CONTROL {}", config.control))?;
    run(config, listener, control, shutdown).await
}

/// Route one request on the agents' port.
async fn handle(gw: Arc<Gateway>, conn: Conn, req: Request<Incoming>) -> Response<Body> {
    // hyper bounds the head by its read buffer, which one large read can overshoot; this is the
    // exact bound.
    let head_size = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>();
    if head_size > MAX_HEADER_BYTES {
        return plain(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            texts::head_too_large(MAX_HEADER_BYTES),
        );
    }
    if req.method() == Method::CONNECT {
        proxy::connect(&gw, conn, req).await
    } else if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        proxy::forward(&gw, conn, req).await
    } else {
        relay::relay(&gw, conn, req).await
    }
}

/// Accept connections until `shutdown`, at most `max` at once, and serve HTTP/1 on each with
/// `handler`. A connection beyond the limit is closed at once.
async fn accept_loop<H, F>(
    listener: TcpListener,
    max: usize,
    shutdown: CancellationToken,
    gw: Arc<Gateway>,
    handler: H,
) where
    H: Fn(Arc<Gateway>, Conn, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "connection limit reached; closing a new connection");
            drop(stream);
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let conn = Conn {
            peer: peer.ip().to_canonical(),
            local,
        };
        let gw = gw.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, conn, gw, handler).await;
        });
    }
}

async fn serve_connection<H, F>(stream: TcpStream, conn: Conn, gw: Arc<Gateway>, handler: H)
where
    H: Fn(Arc<Gateway>, Conn, Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| {
        let response = handler(gw.clone(), conn, req);
        async move { Ok::<_, Infallible>(response.await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        debug!(peer = %conn.peer, error = %e, "client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults() {
        let c = GatewayConfig::from_lookup(lookup(&[("AMP_API_KEY", "k")])).unwrap();
        assert_eq!(c.listen, "0.0.0.0:3128".parse().unwrap());
        assert_eq!(c.control, "127.0.0.1:3129".parse().unwrap());
        assert_eq!(c.amp_url, "https://ampcode.com");
        assert!(c.allow.is_empty());
        assert!(c.allow_networks.is_empty());
        assert!(!format!("{c:?}").contains("\"k\""));
    }

    #[test]
    fn the_amp_key_is_required() {
        let e = GatewayConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(e.to_string().contains("AMP_API_KEY is required"), "{e}");
    }

    #[test]
    fn every_problem_is_reported() {
        let e = GatewayConfig::from_lookup(lookup(&[
            ("AMP_API_KEY", "k"),
            ("GATEWAY_LISTEN", "3128"),
            ("GATEWAY_CONTROL", "localhost:3129"),
            ("AMP_URL", "ftp://x"),
            ("GATEWAY_ALLOW", "10.0.0.1"),
            ("GATEWAY_ALLOW_NETWORKS", "10.0.0.0/99"),
            ("LOG_FORMAT", "xml"),
        ]))
        .unwrap_err();
        assert_eq!(e.problems.len(), 6, "{e}");
    }

    #[test]
    fn settings_are_read() {
        let c = GatewayConfig::from_lookup(lookup(&[
            ("AMP_API_KEY", " k "),
            ("GATEWAY_LISTEN", "127.0.0.1:1"),
            ("AMP_URL", "http://127.0.0.1:9/prefix/"),
            ("GATEWAY_ALLOW", "crates.io,*.npmjs.org:443"),
            ("GATEWAY_ALLOW_NETWORKS", "10.9.0.0/16"),
        ]))
        .unwrap();
        assert_eq!(c.amp_api_key, "k");
        assert_eq!(c.amp_url, "http://127.0.0.1:9/prefix");
        assert!(c.allow.allows("registry.npmjs.org", 443));
        assert_eq!(c.allow_networks.len(), 1);
    }
}
