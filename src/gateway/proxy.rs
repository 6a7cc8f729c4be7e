//! The forward proxy: `CONNECT host:port` tunnels and absolute-form plain-HTTP requests, for the
//! hosts on the allowlist only.
//!
//! The policy, in order: the task's credential (407), no IP literals, the allowlist (the
//! gateway's, and the hosts the task's credential adds: its repository's `egress.allow`), then every
//! address the name resolves to must be a public one (or inside `GATEWAY_ALLOW_NETWORKS`), and
//! the connection goes to one of exactly those checked addresses, so a DNS answer that changes
//! between the check and the connection (rebinding) gains nothing.

use std::net::SocketAddr;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::credential::{self, Credential, Refusal, TaskName};
use super::tunnel::{self, Ended};
use super::{Body, CONNECT_TIMEOUT, Conn, Gateway, TUNNEL_IDLE_TIMEOUT, allowlist, headers};
use super::{addresses, plain, texts};

/// A plain-HTTP upstream has this long to start its response.
const RESPONSE_TIMEOUT: std::time::Duration = TUNNEL_IDLE_TIMEOUT;

/// Why the policy refused a destination (each is counted for the task).
enum Refused {
    IpLiteral,
    NotAllowed,
    Address(std::net::IpAddr, &'static str),
    GatewayItself,
}

/// `CONNECT host:port`: check, connect, answer 200 and copy bytes both ways.
pub(super) async fn connect(
    gw: &Gateway,
    conn: Conn,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let credential = match authenticate(gw, conn, &req) {
        Ok(credential) => credential,
        Err(why) => return auth_required(conn, why),
    };
    let task = credential.task.clone();
    let target = req.uri().to_string();
    let Some((host, port)) = req
        .uri()
        .authority()
        .filter(|_| req.uri().scheme().is_none() && req.uri().path_and_query().is_none())
        .and_then(|a| Some((a.host().to_owned(), a.port_u16()?)))
        .filter(|(_, port)| *port != 0)
    else {
        return plain(StatusCode::BAD_REQUEST, texts::bad_target(&target));
    };
    let addrs = match check(gw, conn, &credential, &host, port).await {
        Ok(addrs) => addrs,
        Err(resp) => return resp,
    };
    let Some(upstream) = connect_any(&addrs).await else {
        return plain(StatusCode::BAD_GATEWAY, texts::unreachable(&host, port));
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let client = match on_upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => {
                debug!(task = %task, error = %e, "CONNECT: the client went away");
                return;
            }
        };
        match tunnel::copy_with_idle_timeout(client, upstream, TUNNEL_IDLE_TIMEOUT).await {
            Ended::Closed(up, down) => {
                debug!(task = %task, host, port, up, down, "tunnel closed");
            }
            Ended::Idle => info!(task = %task, host, port, "tunnel closed after being idle"),
            Ended::Failed(e) => debug!(task = %task, host, port, error = %e, "tunnel failed"),
        }
    });
    Response::new(super::empty())
}

/// An absolute-form `GET http://host/path`: check, then forward it (streaming both ways)
/// without the proxy's own headers.
pub(super) async fn forward(gw: &Gateway, conn: Conn, req: Request<Incoming>) -> Response<Body> {
    let credential = match authenticate(gw, conn, &req) {
        Ok(credential) => credential,
        Err(why) => return auth_required(conn, why),
    };
    let task = credential.task.clone();
    let uri = req.uri().clone();
    let target = uri.to_string();
    let Some(authority) = uri.authority().filter(|_| uri.scheme_str() == Some("http")) else {
        return plain(StatusCode::BAD_REQUEST, texts::bad_target(&target));
    };
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(80);
    if port == 0 {
        return plain(StatusCode::BAD_REQUEST, texts::bad_target(&target));
    }
    let addrs = match check(gw, conn, &credential, &host, port).await {
        Ok(addrs) => addrs,
        Err(resp) => return resp,
    };
    let Some(stream) = connect_any(&addrs).await else {
        return plain(StatusCode::BAD_GATEWAY, texts::unreachable(&host, port));
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(_) => return plain(StatusCode::BAD_GATEWAY, texts::upstream_failed(&host, port)),
        };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, "upstream connection ended with an error");
        }
    });

    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    let host_header = match authority.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let Ok(host_header) = HeaderValue::from_str(&host_header) else {
        return plain(StatusCode::BAD_REQUEST, texts::bad_target(&target));
    };
    parts.headers.insert(header::HOST, host_header);
    let path = uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .filter(|pq| pq.starts_with('/'))
        .unwrap_or("/");
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return plain(StatusCode::BAD_REQUEST, texts::bad_target(&target)),
    };
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body);

    let response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(upstream_req)).await;
    match response {
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, false);
            debug!(task = %task, host, port, status = parts.status.as_u16(), "forwarded");
            Response::from_parts(parts, body.boxed())
        }
        _ => plain(StatusCode::BAD_GATEWAY, texts::upstream_failed(&host, port)),
    }
}

/// The task of the request's `Proxy-Authorization: Basic base64(<anything>:<token>)`, or why
/// not (`None`: no credential at all).
fn authenticate(
    gw: &Gateway,
    conn: Conn,
    req: &Request<Incoming>,
) -> Result<Credential, Option<Refusal>> {
    let value = req.headers().get(header::PROXY_AUTHORIZATION).ok_or(None)?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest)
        })
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|userpass| userpass.split_once(':').map(|(_, token)| token.to_owned()))
        .ok_or(Some(Refusal::Malformed))?;
    credential::verify(&gw.key, &token, conn.peer, SystemTime::now()).map_err(Some)
}

/// The 407 for a request [`authenticate`] refused.
fn auth_required(conn: Conn, why: Option<Refusal>) -> Response<Body> {
    let text = match why {
        None => texts::proxy_credential_missing(),
        Some(why) => texts::proxy_credential_refused(why),
    };
    let mut resp = plain(StatusCode::PROXY_AUTHENTICATION_REQUIRED, text);
    resp.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"amp-gateway\""),
    );
    debug!(peer = %conn.peer, reason = ?why, "proxy credential refused");
    resp
}

/// The policy after authentication: the checked addresses to connect to, or the answer.
async fn check(
    gw: &Gateway,
    conn: Conn,
    credential: &Credential,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, Response<Body>> {
    let task = &credential.task;
    // Longer than any DNS name (or bracketed IPv6 address): not worth a look, nor a place in
    // the task's refusals.
    if host.len() > 255 {
        return Err(plain(StatusCode::BAD_REQUEST, texts::invalid_host()));
    }
    if allowlist::is_ip_literal(host) {
        return Err(refuse(gw, task, host, port, Refused::IpLiteral));
    }
    let Some(name) = allowlist::normalize_host(host) else {
        info!(task = %task, port, "proxy request for an invalid host name");
        return Err(plain(StatusCode::BAD_REQUEST, texts::invalid_host()));
    };
    if !gw.allow.allows(&name, port) && !credential.allow.allows(&name, port) {
        return Err(refuse(gw, task, &name, port, Refused::NotAllowed));
    }
    let resolved = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::lookup_host((name.as_str(), port)),
    )
    .await;
    let addrs: Vec<SocketAddr> = match resolved {
        Ok(Ok(addrs)) => addrs
            .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            .collect(),
        _ => Vec::new(),
    };
    if addrs.is_empty() {
        info!(task = %task, host = name, port, "proxy: the name did not resolve");
        return Err(plain(StatusCode::BAD_GATEWAY, texts::cannot_resolve(&name)));
    }
    let own = gw.local.get();
    for addr in &addrs {
        let ip = addr.ip();
        let is_own = own.contains(&ip) || ip == conn.local.ip().to_canonical();
        if (is_own || ip.is_loopback() || ip.is_unspecified()) && gw.own_ports.contains(&port) {
            return Err(refuse(gw, task, &name, port, Refused::GatewayItself));
        }
        if gw.allow_networks.iter().any(|net| net.contains(ip)) {
            continue;
        }
        if let Some(range) = addresses::refused_range(ip) {
            return Err(refuse(gw, task, &name, port, Refused::Address(ip, range)));
        }
        if is_own {
            return Err(refuse(gw, task, &name, port, Refused::GatewayItself));
        }
    }
    Ok(addrs)
}

/// Count and log a refusal, and build its 403.
fn refuse(gw: &Gateway, task: &TaskName, host: &str, port: u16, why: Refused) -> Response<Body> {
    let (reason, text) = match why {
        Refused::IpLiteral => ("ip address".to_owned(), texts::ip_literal(host)),
        Refused::NotAllowed => (
            "not on the allowlist".to_owned(),
            texts::not_allowed(host, port),
        ),
        Refused::Address(ip, range) => (
            format!("resolves to {ip}, {range}"),
            texts::refused_address(host, port, ip, range),
        ),
        Refused::GatewayItself => (
            "the gateway itself".to_owned(),
            texts::gateway_itself(host, port),
        ),
    };
    gw.blocked.record(task.as_str(), host, port);
    info!(task = %task, host, port, reason, "egress refused");
    plain(StatusCode::FORBIDDEN, text)
}

/// Connect to the first of `addrs` that answers.
async fn connect_any(addrs: &[SocketAddr]) -> Option<TcpStream> {
    for addr in addrs {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Ok(Err(e)) => debug!(%addr, error = %e, "connecting upstream failed"),
            Err(_) => debug!(%addr, "connecting upstream timed out"),
        }
    }
    None
}
