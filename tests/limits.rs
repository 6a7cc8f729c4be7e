//! What a client that has proven nothing can hold: connections, time and memory. The real
//! service over loopback (SQLite), with its limits set short through the configuration; raw TCP
//! where the test must control exactly what is sent and when.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::service::test_env;
use common::{Backend, TestDb, TestService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// A well-formed signature that matches nothing: what anyone can send.
const FORGED: &str = "sha256=0000000000000000000000000000000000000000000000000000000000000000";

async fn start(
    db: &TestDb,
    vars: &[(&str, &str)],
    tunables: amp_orchestrator::context::Tunables,
) -> TestService {
    let mut env: HashMap<String, String> = test_env(db);
    for (name, value) in vars {
        env.insert(name.to_string(), value.to_string());
    }
    TestService::start_full(env, tunables).await
}

async fn connect(service: &TestService) -> TcpStream {
    TcpStream::connect(service.running.as_ref().unwrap().addr)
        .await
        .unwrap()
}

/// The head of an unsigned-but-plausible webhook declaring `length` bytes of body.
fn webhook_head(length: u64) -> String {
    format!(
        "POST /api/github/webhooks HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: issue_comment\r\nX-GitHub-Delivery: d-1\r\n\
         X-Hub-Signature-256: {FORGED}\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Everything the server sends until it closes the connection; panics if it is still open
/// after `secs` seconds.
async fn read_until_closed(stream: &mut TcpStream, secs: u64, what: &str) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "{what}: the connection is still open after {secs}s (received {:?})",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&received).into_owned(),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// One response's head and body on a kept-alive connection (the body is read by its length).
async fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10s")
            .unwrap();
        assert!(n > 0, "closed before a whole response: {received:?}");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_header_is_disconnected_after_the_header_timeout() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = start(&db, &[("HEADER_READ_TIMEOUT", "300ms")], Default::default()).await;

    let mut half = connect(&service).await;
    half.write_all(b"POST /api/github/webhooks HTTP/1.1\r\nHost: test\r\nContent-Le")
        .await
        .unwrap();
    let mut silent = connect(&service).await;
    // A kept-alive connection that has had its answer and says nothing more.
    let mut idle = connect(&service).await;
    idle.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));

    let started = Instant::now();
    for (stream, what) in [
        (&mut half, "half a header"),
        (&mut silent, "nothing sent"),
        (&mut idle, "idle after a request"),
    ] {
        let got = read_until_closed(stream, 5, what).await;
        assert!(!got.contains(" 200 "), "{what}: {got:?}");
    }
    // Not closed at once: the timeout, not something else, ended them.
    assert!(started.elapsed() >= Duration::from_millis(200));
    // Someone who sends a whole request in time is still served.
    let mut whole = connect(&service).await;
    whole.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut whole).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let db = TestDb::new(Backend::Sqlite).await;
    let token = "an-admin-token-of-some-length";
    let service = start(
        &db,
        &[("BODY_READ_TIMEOUT", "500ms"), ("ADMIN_TOKEN", token)],
        Default::default(),
    )
    .await;

    // A webhook whose body stops after ten bytes.
    let mut slow = connect(&service).await;
    slow.write_all(webhook_head(1000).as_bytes()).await.unwrap();
    slow.write_all(br#"{"action":"#).await.unwrap();
    let got = read_until_closed(&mut slow, 5, "webhook body").await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    assert!(got.contains("did not arrive in time"), "{got:?}");

    // The same for any route that reads a body, here the admin API (which reads before it
    // checks the token).
    let mut slow = connect(&service).await;
    slow.write_all(
        format!(
            "POST /api/tasks HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{\"repo\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut slow, 5, "admin body").await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");

    // A body sent at once is unaffected.
    let (status, _) = service
        .webhook_signed("issue_comment", "d-2", b"{}", FORGED)
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_limit_wait_briefly_then_get_503() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = start(
        &db,
        &[
            ("MAX_CONCURRENT_WEBHOOK_BODIES", "1"),
            ("BODY_READ_TIMEOUT", "30s"),
        ],
        amp_orchestrator::context::Tunables {
            webhook_body_wait: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .await;

    // The one slot: a body being read.
    let body = br#"{"zen":"hold on"}"#;
    let mut first = connect(&service).await;
    first
        .write_all(webhook_head(body.len() as u64).as_bytes())
        .await
        .unwrap();
    first.write_all(&body[..7]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let response = service
        .http
        .post(service.url("/api/github/webhooks"))
        .header("x-github-event", "issue_comment")
        .header("x-github-delivery", "d-2")
        .header("x-hub-signature-256", FORGED)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    // What can be refused without reading the body does not wait for a slot.
    let oversized = service
        .http
        .post(service.url("/api/github/webhooks"))
        .header("x-hub-signature-256", FORGED)
        .header("content-length", (25 * 1024 * 1024 + 1).to_string())
        .body(vec![b' '; 25 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    let (status, json) = service
        .webhook_signed("issue_comment", "d-3", b"{}", "sha1=abc")
        .await;
    assert_eq!(status, 401, "{json}");

    // The first body completes, is found unsigned, and frees its slot.
    first.write_all(&body[7..]).await.unwrap();
    let got = read_response(&mut first).await;
    assert!(got.starts_with("HTTP/1.1 401"), "{got:?}");
    let (status, json) = service
        .webhook_signed("issue_comment", "d-4", b"{}", FORGED)
        .await;
    assert_eq!(status, 401, "{json}");
    // A signed delivery goes through as before.
    let (status, json) = service.webhook("ping", "d-5", br#"{"zen":"hi"}"#).await;
    assert_eq!(status, 200, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_declared_length_is_refused_before_the_body() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = start(&db, &[], Default::default()).await;
    let mut stream = connect(&service).await;
    // Nothing of the body is sent: the answer cannot depend on reading it.
    stream
        .write_all(webhook_head(25 * 1024 * 1024 + 1).as_bytes())
        .await
        .unwrap();
    let got = read_response(&mut stream).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = start(
        &db,
        &[("MAX_CONNECTIONS", "2"), ("HEADER_READ_TIMEOUT", "60s")],
        Default::default(),
    )
    .await;
    let mut first = connect(&service).await;
    first.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = connect(&service).await;
    second.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));

    // The third connects (the kernel's backlog takes it) but is not served...
    let mut third = connect(&service).await;
    third.write_all(HEALTH).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    // ...until one of the two closes.
    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
    // The second is still served meanwhile.
    second.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_log_streams_outlast_the_timeouts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let service = start(
        &db,
        &[
            ("HEADER_READ_TIMEOUT", "200ms"),
            ("BODY_READ_TIMEOUT", "200ms"),
        ],
        amp_orchestrator::context::Tunables {
            sse_keep_alive: Duration::from_millis(100),
            ..Default::default()
        },
    )
    .await;
    let task = common::service::new_task(service.ctx()).await;
    let mut response = reqwest::get(service.url(&format!("/tasks/{}/events", task.public_id)))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let until = Instant::now() + Duration::from_millis(1500);
    let mut received = 0;
    while Instant::now() < until {
        let chunk = timeout(Duration::from_secs(2), response.chunk())
            .await
            .expect("the stream keeps sending")
            .expect("the stream is not cut");
        assert!(chunk.is_some(), "the stream ended after {received} bytes");
        received += chunk.unwrap().len();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_half_a_header() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut service = start(&db, &[("HEADER_READ_TIMEOUT", "500ms")], Default::default()).await;
    let mut half = connect(&service).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    timeout(Duration::from_secs(10), service.stop())
        .await
        .expect("the service stops although a client never finished its headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_routes_read_at_most_64_kib_of_a_body() {
    let db = TestDb::new(Backend::Sqlite).await;
    let token = "an-admin-token-of-some-length";
    let service = start(&db, &[("ADMIN_TOKEN", token)], Default::default()).await;
    let prompt = "x".repeat(100 * 1024);
    let body = serde_json::json!({"repo": "octo-org/widgets", "prompt": prompt}).to_string();
    // Read before the token is checked, so whoever sends it could make the service hold it.
    for authorization in [None, Some(format!("Bearer {token}"))] {
        let mut request = service
            .http
            .post(service.url("/api/tasks"))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 413, "{authorization:?}");
    }
    let form = format!("repo=octo-org%2Fwidgets&prompt={prompt}");
    let response = service
        .http
        .post(service.url("/tasks"))
        .header("content-type", "application/x-www-form-urlencoded")
        .basic_auth("admin", Some(token))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}
