//! The egress gateway on loopback: the forward proxy's policy (credential, allowlist, addresses),
//! the relay's key swap and streaming, the control port, and the binary's `gateway-probe`.
//! Every server here is one the test runs itself on 127.0.0.1.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use amp_orchestrator::gateway::{self, GatewayConfig, credential};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const AMP_KEY: &str = "sgamp_user_01TESTREALKEY";
const TASK: &str = "k7Qx2mTask";

fn loopback() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn token_for(task: &str, ip: IpAddr, valid_for: Duration) -> String {
    credential::mint(AMP_KEY, task, SystemTime::now() + valid_for, ip)
}

fn token() -> String {
    token_for(TASK, loopback(), Duration::from_secs(3600))
}

fn proxy_auth(token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("amp:{token}"));
    format!("Basic {b64}")
}

/// A gateway running in this process.
struct Gateway {
    addr: SocketAddr,
    control: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_gateway(vars: &[(&str, &str)]) -> Gateway {
    let mut all: Vec<(String, String)> = vec![("AMP_API_KEY".into(), AMP_KEY.into())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = GatewayConfig::from_lookup(|name| {
        all.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .expect("a valid gateway configuration");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gw = Gateway {
        addr: listener.local_addr().unwrap(),
        control: control.local_addr().unwrap(),
        stop: CancellationToken::new(),
    };
    let stop = gw.stop.clone();
    tokio::spawn(async move {
        gateway::run(config, listener, control, stop).await.unwrap();
    });
    gw
}

/// Read a response head (up to the blank line), leaving what follows in the stream.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert!(
            n > 0,
            "closed in the head: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Send a raw request that asks for the connection to close; the whole answer.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut body))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    (
        status_of(&head),
        head,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn connect_request(gw: &Gateway, target: &str, auth: Option<&str>) -> (u16, String, String) {
    let auth = auth
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    raw(
        gw.addr,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}Connection: close\r\n\r\n"),
    )
    .await
}

async fn blocked(gw: &Gateway, task: &str) -> serde_json::Value {
    let (status, _, body) = raw(
        gw.control,
        &format!("GET /blocked?task={task} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A TCP server that greets, then echoes.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                s.write_all(b"hello from upstream\n").await.unwrap();
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

type TestBody = BoxBody<Bytes, Infallible>;

fn text(s: &str) -> TestBody {
    Full::new(Bytes::from(s.to_owned())).boxed()
}

/// What a test HTTP server saw.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: HeaderMap,
}

/// An HTTP server on loopback that records each request and answers with `handler`.
async fn http_server<H, F>(handler: H) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    log.lock().unwrap().push(Seen {
                        method: req.method().to_string(),
                        uri: req.uri().to_string(),
                        headers: req.headers().clone(),
                    });
                    let answer = handler(req);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn connect_tunnels_to_an_allowed_host_in_an_allowed_network() {
    let upstream = echo_server().await;
    let gw = start_gateway(&[
        ("GATEWAY_ALLOW", &format!("localhost:{}", upstream.port())),
        ("GATEWAY_ALLOW_NETWORKS", "127.0.0.0/8,::1/128"),
    ])
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let target = format!("localhost:{}", upstream.port());
    s.write_all(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
            proxy_auth(&token())
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let mut greeting = [0u8; 20];
    s.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"hello from upstream\n");
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echo = [0u8; 23];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping through the tunnel");
    assert_eq!(blocked(&gw, TASK).await, serde_json::json!([]));
}

#[tokio::test]
async fn a_task_reaches_the_hosts_its_credential_adds_and_no_other_task_does() {
    let upstream = echo_server().await;
    let gw = start_gateway(&[
        ("GATEWAY_ALLOW", "registry.example.invalid"),
        ("GATEWAY_ALLOW_NETWORKS", "127.0.0.0/8,::1/128"),
    ])
    .await;
    let target = format!("localhost:{}", upstream.port());
    // The task's repository adds the host (`egress.allow`): the service signs it into the token.
    let adding = credential::mint_allowing(
        AMP_KEY,
        TASK,
        SystemTime::now() + Duration::from_secs(3600),
        loopback(),
        std::slice::from_ref(&target),
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: {}\r\n\r\n",
            proxy_auth(&adding)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    let mut greeting = [0u8; 20];
    s.read_exact(&mut greeting).await.unwrap();
    assert_eq!(&greeting, b"hello from upstream\n");
    // Another task, without it, is refused.
    let other = token_for("otherTask", loopback(), Duration::from_secs(3600));
    let (status, _, body) = connect_request(&gw, &target, Some(&proxy_auth(&other))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(blocked(&gw, TASK).await, serde_json::json!([]));
    assert_eq!(blocked(&gw, "otherTask").await.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn connect_to_a_name_that_resolves_to_loopback_is_refused() {
    let upstream = echo_server().await;
    let gw = start_gateway(&[("GATEWAY_ALLOW", &format!("localhost:{}", upstream.port()))]).await;
    let target = format!("localhost:{}", upstream.port());
    let (status, _, body) = connect_request(&gw, &target, Some(&proxy_auth(&token()))).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("127.0.0.1, which is loopback"), "{body}");
}

#[tokio::test]
async fn ip_literals_and_hosts_off_the_list_are_refused_and_counted() {
    let upstream = echo_server().await;
    let gw = start_gateway(&[
        ("GATEWAY_ALLOW", &format!("localhost:{}", upstream.port())),
        ("GATEWAY_ALLOW_NETWORKS", "127.0.0.0/8"),
    ])
    .await;
    let auth = proxy_auth(&token());
    for target in [
        format!("127.0.0.1:{}", upstream.port()),
        format!("[::1]:{}", upstream.port()),
        "169.254.169.254:80".to_owned(),
    ] {
        let (status, _, body) = connect_request(&gw, &target, Some(&auth)).await;
        assert_eq!(status, 403, "{target}: {body}");
        assert!(
            body.contains("IP addresses are not allowed, use a host name"),
            "{body}"
        );
    }
    for _ in 0..3 {
        let (status, _, body) = connect_request(&gw, "example.com:443", Some(&auth)).await;
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("example.com:443 is not on the allowlist for this task"),
            "{body}"
        );
    }
    // The allowed name on another port is not allowed.
    let (status, _, _) = connect_request(&gw, "localhost:1", Some(&auth)).await;
    assert_eq!(status, 403);
    // Plain HTTP goes through the same policy.
    let (status, _, body) = raw(
        gw.addr,
        &format!(
            "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: \
             {auth}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    // Another task's refusals are its own.
    let other = token_for("otherTask", loopback(), Duration::from_secs(60));
    connect_request(&gw, "pypi.org:443", Some(&proxy_auth(&other))).await;

    assert_eq!(
        blocked(&gw, TASK).await,
        serde_json::json!([
            {"host": "127.0.0.1", "port": upstream.port(), "count": 1},
            {"host": "169.254.169.254", "port": 80, "count": 1},
            {"host": "[::1]", "port": upstream.port(), "count": 1},
            {"host": "example.com", "port": 80, "count": 1},
            {"host": "example.com", "port": 443, "count": 3},
            {"host": "localhost", "port": 1, "count": 1},
        ])
    );
    assert_eq!(
        blocked(&gw, "otherTask").await,
        serde_json::json!([{"host": "pypi.org", "port": 443, "count": 1}])
    );
    assert_eq!(blocked(&gw, "neverSeen").await, serde_json::json!([]));
    let (status, _, _) = raw(
        gw.control,
        "GET /blocked?task=a.b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, body) = raw(
        gw.control,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn missing_or_invalid_proxy_credentials_get_407_and_are_not_counted() {
    let gw = start_gateway(&[("GATEWAY_ALLOW", "example.com")]).await;
    let elsewhere = token_for(TASK, "172.30.0.9".parse().unwrap(), Duration::from_secs(60));
    let expired = credential::mint(
        AMP_KEY,
        TASK,
        SystemTime::now() - Duration::from_secs(1),
        loopback(),
    );
    let wrong_key = credential::mint("another key", TASK, SystemTime::now(), loopback());
    for (auth, why) in [
        (None, "none was sent"),
        (Some("Basic !!!".to_owned()), "not an egress credential"),
        (
            Some(format!("Bearer {}", token())),
            "not an egress credential",
        ),
        (Some(proxy_auth(AMP_KEY)), "not an egress credential"),
        (
            Some(proxy_auth(&elsewhere)),
            "not valid from this container",
        ),
        (
            Some(proxy_auth(&wrong_key)),
            "not valid from this container",
        ),
        (Some(proxy_auth(&expired)), "expired"),
    ] {
        let (status, head, body) = connect_request(&gw, "example.com:443", auth.as_deref()).await;
        assert_eq!(status, 407, "{auth:?}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authenticate: basic realm=\"amp-gateway\""),
            "{head}"
        );
        assert!(body.contains(why), "{auth:?}: {body}");
    }
    assert_eq!(blocked(&gw, TASK).await, serde_json::json!([]));
}

#[tokio::test]
async fn plain_http_is_forwarded_without_the_proxy_credential() {
    let (upstream, seen) = http_server(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Response::new(text(&format!(
            "upstream got {}",
            String::from_utf8_lossy(&body)
        )))
    })
    .await;
    let gw = start_gateway(&[
        ("GATEWAY_ALLOW", &format!("localhost:{}", upstream.port())),
        ("GATEWAY_ALLOW_NETWORKS", "127.0.0.0/8,::1/128"),
    ])
    .await;
    let host = format!("localhost:{}", upstream.port());
    let (status, _, body) = raw(
        gw.addr,
        &format!(
            "POST http://{host}/simple/pkg/?x=1 HTTP/1.1\r\nHost: {host}\r\n\
             Proxy-Authorization: {}\r\nProxy-Connection: keep-alive\r\nX-Custom: kept\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\nhello",
            proxy_auth(&token())
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "upstream got hello");
    let first = seen.lock().unwrap().clone();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].method, "POST");
    assert_eq!(first[0].uri, "/simple/pkg/?x=1");
    assert_eq!(first[0].headers["host"], host.as_str());
    assert_eq!(first[0].headers["x-custom"], "kept");
    assert!(!first[0].headers.contains_key("proxy-authorization"));
    assert!(!first[0].headers.contains_key("proxy-connection"));
    // Without the exception for loopback, the same request is refused before any connection.
    let gw = start_gateway(&[("GATEWAY_ALLOW", &format!("localhost:{}", upstream.port()))]).await;
    let (status, _, _) = raw(
        gw.addr,
        &format!(
            "GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {}\r\n\
             Connection: close\r\n\r\n",
            proxy_auth(&token())
        ),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_gateway_does_not_proxy_to_itself() {
    // The gateway's own ports allowed explicitly, on loopback opened explicitly: still refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, control_addr) = (
        listener.local_addr().unwrap(),
        control.local_addr().unwrap(),
    );
    let config = GatewayConfig::from_lookup(|name| match name {
        "AMP_API_KEY" => Some(AMP_KEY.into()),
        "GATEWAY_ALLOW" => Some(format!(
            "localhost:{},localhost:{}",
            addr.port(),
            control_addr.port()
        )),
        "GATEWAY_ALLOW_NETWORKS" => Some("127.0.0.0/8,::1/128".into()),
        _ => None,
    })
    .unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(gateway::run(config, listener, control, stop.clone()));
    let gw = Gateway {
        addr,
        control: control_addr,
        stop,
    };
    for port in [addr.port(), control_addr.port()] {
        let (status, _, body) = connect_request(
            &gw,
            &format!("localhost:{port}"),
            Some(&proxy_auth(&token())),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("this gateway itself"), "{body}");
    }
}

/// The relay's test upstream: records requests; `/api/stream` echoes the first chunk of the
/// request body at once, then waits for a signal before its last chunk; `/api/ws` switches
/// protocols and echoes.
async fn amp_stand_in(release: Arc<tokio::sync::Notify>) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    http_server(move |mut req: Request<Incoming>| {
        let release = release.clone();
        async move {
            match req.uri().path() {
                "/api/stream" => {
                    let first = req.body_mut().frame().await.unwrap().unwrap();
                    let first = first.into_data().unwrap();
                    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
                    tokio::spawn(async move {
                        let mut line = b"got: ".to_vec();
                        line.extend_from_slice(&first);
                        tx.send(Ok(Frame::data(Bytes::from(line)))).await.unwrap();
                        release.notified().await;
                        let rest = req.into_body().collect().await.unwrap().to_bytes();
                        let mut line = b" then: ".to_vec();
                        line.extend_from_slice(&rest);
                        tx.send(Ok(Frame::data(Bytes::from(line)))).await.unwrap();
                    });
                    let stream = futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|item| (item, rx))
                    });
                    Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(StreamBody::new(stream).boxed())
                        .unwrap()
                }
                "/api/ws" => {
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let upgraded = on_upgrade.await.unwrap();
                        let mut io = TokioIo::new(upgraded);
                        let mut buf = [0u8; 64];
                        loop {
                            let n = io.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            io.write_all(&buf[..n]).await.unwrap();
                        }
                    });
                    Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header("connection", "upgrade")
                        .header("upgrade", "echo")
                        .body(text(""))
                        .unwrap()
                }
                _ => Response::builder()
                    .header("content-type", "application/json")
                    .body(text(r#"{"user":"stand-in"}"#))
                    .unwrap(),
            }
        }
    })
    .await
}

async fn relay_client(gw: &Gateway) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn the_relay_swaps_the_credential_for_the_key_and_streams_both_ways() {
    let release = Arc::new(tokio::sync::Notify::new());
    let (upstream, seen) = amp_stand_in(release.clone()).await;
    let gw = start_gateway(&[("AMP_URL", &format!("http://{upstream}"))]).await;
    let token = token();

    let mut client = relay_client(&gw).await;
    let resp = client
        .send_request(
            Request::post("/api/internal?getUserInfo")
                .header("host", gw.addr.to_string())
                .header("authorization", format!("Bearer {token}"))
                .header("x-amp-client-application", "cli")
                .body(text("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"user":"stand-in"}"#);

    // A streamed request and a streamed response: the upstream answers the first chunk before
    // the request body ends, and that answer arrives before the upstream finishes.
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    let req_body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
    .boxed();
    let mut client = relay_client(&gw).await;
    let send = client.send_request(
        Request::post("/api/stream?thread=T-1")
            .header("host", gw.addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(req_body)
            .unwrap(),
    );
    tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
        .await
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), send)
        .await
        .expect("the response starts before the request body ends")
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let chunk = tokio::time::timeout(Duration::from_secs(30), body.frame())
        .await
        .expect("the first chunk arrives before the upstream finishes")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(chunk, "got: first");
    tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    drop(tx);
    release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, " then: second");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, "/api/internal?getUserInfo");
    assert_eq!(seen[1].uri, "/api/stream?thread=T-1");
    for s in &seen {
        assert_eq!(
            s.headers["authorization"],
            format!("Bearer {AMP_KEY}").as_str()
        );
        assert_eq!(s.headers["host"], upstream.to_string().as_str());
        for (name, value) in &s.headers {
            assert!(
                !value.to_str().unwrap_or("").contains(&token),
                "the token reached the upstream in {name}"
            );
        }
    }
    assert_eq!(seen[0].headers["x-amp-client-application"], "cli");
}

#[tokio::test]
async fn the_relay_refuses_a_wrong_credential_and_the_upstream_sees_nothing() {
    let (upstream, seen) = amp_stand_in(Arc::new(tokio::sync::Notify::new())).await;
    let gw = start_gateway(&[("AMP_URL", &format!("http://{upstream}"))]).await;
    let good = token();
    let last = good.chars().last().unwrap();
    let tampered = format!(
        "{}{}",
        &good[..good.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let expired = credential::mint(
        AMP_KEY,
        TASK,
        SystemTime::now() - Duration::from_secs(1),
        loopback(),
    );
    let elsewhere = token_for(TASK, "172.30.0.9".parse().unwrap(), Duration::from_secs(60));
    let other_key = credential::mint("another", TASK, SystemTime::now(), loopback());
    for auth in [
        None,
        Some(format!("Bearer {tampered}")),
        Some(format!("Bearer {expired}")),
        Some(format!("Bearer {elsewhere}")),
        Some(format!("Bearer {other_key}")),
        Some(format!("Bearer {AMP_KEY}")),
        Some(proxy_auth(&good)),
    ] {
        let mut client = relay_client(&gw).await;
        let mut req = Request::post("/api/internal?getUserInfo").header("host", "gateway");
        if let Some(auth) = &auth {
            req = req.header("authorization", auth.as_str());
        }
        let resp = client
            .send_request(req.body(text("{}")).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, r#"{"error":"invalid or expired credential"}"#);
    }
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_relay_passes_a_protocol_switch_through() {
    let (upstream, seen) = amp_stand_in(Arc::new(tokio::sync::Notify::new())).await;
    let gw = start_gateway(&[("AMP_URL", &format!("http://{upstream}"))]).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /api/ws HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {}\r\n\
             Connection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            token()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 101, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    s.write_all(b"over the upgraded connection").await.unwrap();
    let mut echo = [0u8; 28];
    read_exact_within(&mut s, &mut echo).await;
    assert_eq!(&echo, b"over the upgraded connection");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].headers["authorization"],
        format!("Bearer {AMP_KEY}").as_str()
    );
    assert_eq!(seen[0].headers["upgrade"], "echo");
}

async fn read_exact_within(s: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) {
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(buf))
        .await
        .expect("bytes arrive")
        .unwrap();
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let gw = start_gateway(&[]).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let big = "a".repeat(70 * 1024);
    let _ = s
        .write_all(
            format!("GET /api/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nX-Big: {big}\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn gateway_probe_prints_the_control_ports_answer() {
    let gw = start_gateway(&[]).await;
    // A refusal to report.
    connect_request(&gw, "example.com:443", Some(&proxy_auth(&token()))).await;
    let control = gw.control.to_string();
    let probe = |path: &str| {
        let control = control.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_amp-orchestrator"))
                .args(["gateway-probe", &path])
                .env_clear()
                .env("GATEWAY_CONTROL", control)
                .output()
                .unwrap()
        })
    };
    let out = probe("/healthz").await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    let out = probe(&format!("/blocked?task={TASK}")).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"[{"host":"example.com","port":443,"count":1}]"#
    );
    let out = probe("/nothing-here").await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // Nothing listening: exit 1.
    drop(gw);
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_amp-orchestrator"))
            .args(["gateway-probe", "/healthz"])
            .env_clear()
            .env("GATEWAY_CONTROL", free.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test]
async fn the_gateway_subcommand_needs_only_its_own_settings() {
    let bin = env!("CARGO_BIN_EXE_amp-orchestrator");
    // Without AMP_API_KEY it refuses to start, saying why.
    let out = std::process::Command::new(bin)
        .arg("gateway")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AMP_API_KEY is required"),
        "{out:?}"
    );

    // With it (and none of the service's settings) it serves; the probe sees it healthy.
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (listen, control) = (free(), free());
    let mut child = std::process::Command::new(bin)
        .arg("gateway")
        .env_clear()
        .env("AMP_API_KEY", AMP_KEY)
        .env("AMP_URL", "http://127.0.0.1:9")
        .env("GATEWAY_LISTEN", listen.to_string())
        .env("GATEWAY_CONTROL", control.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok((200, body)) = gateway::probe::probe(control, "/healthz") {
            assert_eq!(body, "ok");
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(healthy, "the gateway process answered its health check");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let gw = start_gateway(&[]).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: exa")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the gateway closes the connection");
    // Closed by the gateway's header timeout (10 s), not by anything sooner.
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}
