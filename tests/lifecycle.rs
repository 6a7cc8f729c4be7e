//! The process as a user runs it: configuration errors, `migrate`, the default SQLite file, graceful
//! shutdown on SIGTERM, and deliveries that survive a crash.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amp_orchestrator::entities::{delivery, task};
use amp_orchestrator::store::deliveries::{self, DeliveryStatus, NewDelivery};
use common::fixtures::issue_comment;
use common::service::FIXTURE_INSTALLATION;
use common::{TestDb, TestService, eventually};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use common::process::{BIN, free_port};

fn command(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            let _ = stream.read_to_string(&mut text);
            if text.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("the service exited with {status}: {err}");
        }
        assert!(
            Instant::now() < deadline,
            "the service did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn configuration_problems_are_all_reported_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .env("APP_ID", "12")
        .env("PORT", "eighty")
        .env("TASK_TIMEOUT", "a while")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("WEBHOOK_SECRET is not set"), "{stderr}");
    assert!(
        stderr.contains("PORT must be a non-negative integer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("TASK_TIMEOUT \"a while\" is not a duration"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created on a bad config"
    );
}

#[test]
fn migrate_creates_the_default_sqlite_database_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .arg("migrate")
        .env("WEBHOOK_SECRET", "x")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let file = dir.path().join("data/amp-orchestrator.sqlite");
    assert!(file.exists());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = amp_orchestrator::db::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "PRAGMA journal_mode",
            ))
            .await
            .unwrap()
            .unwrap();
        let mode: String = row.try_get_by_index(0).unwrap();
        assert_eq!(mode, "wal");
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap();
        let applied: i64 = row.try_get_by_index(0).unwrap();
        assert!(applied >= 1);
    });
}

/// SIGTERM: the listener closes, a request already in flight is answered, the process exits 0.
#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = command(dir.path())
        .env("WEBHOOK_SECRET", common::service::SECRET)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .spawn()
        .unwrap();
    wait_healthy(port, &mut child);

    let body = serde_json::to_vec(&issue_comment("created", "/amp hello", Some(1))).unwrap();
    let signature = amp_orchestrator::webhook::signature::sign(common::service::SECRET, &body);
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "POST /api/github/webhooks HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         x-github-event: issue_comment\r\nx-github-delivery: in-flight-1\r\n\
         x-hub-signature-256: {signature}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(first).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // New connections are no longer accepted...
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the listener still accepts after SIGTERM"
    );
    // ...but the request in flight completes.
    stream.write_all(rest).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shutdown requested"), "{stderr}");
}

both_backends!(
    deliveries_stored_before_a_crash_are_processed_after_restart,
    |db: TestDb| async move {
        let conn = db.connect().await;
        // One delivery stored but never picked up, and one a dead process had claimed.
        let pending = serde_json::to_vec(&issue_comment(
            "created",
            "/amp first prompt",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();
        let mut claimed_payload =
            issue_comment("created", "/amp second prompt", Some(FIXTURE_INSTALLATION));
        claimed_payload["issue"]["number"] = 2.into();
        let claimed = serde_json::to_vec(&claimed_payload).unwrap();
        for (id, body) in [("before-crash-1", &pending), ("before-crash-2", &claimed)] {
            assert!(
                deliveries::insert(
                    &conn,
                    NewDelivery {
                        delivery_id: id,
                        event: "issue_comment",
                        action: Some("created"),
                        installation_id: Some(FIXTURE_INSTALLATION),
                        status: DeliveryStatus::Pending,
                        payload: body,
                        error: None,
                    },
                )
                .await
                .unwrap()
            );
        }
        let stale = deliveries::claim(&conn, "dead-replica", -1, 1)
            .await
            .unwrap();
        assert_eq!(
            stale.len(),
            1,
            "the dead process held one, with a lease already expired"
        );

        let (service, _github) = TestService::start_with_github(&db).await;
        for id in ["before-crash-1", "before-crash-2"] {
            eventually(15, "the stored delivery is processed", || async {
                delivery::Entity::find()
                    .filter(delivery::Column::DeliveryId.eq(id))
                    .one(&conn)
                    .await
                    .unwrap()
                    .filter(|d| d.status == "done")
            })
            .await;
        }
        let mut prompts: Vec<String> = task::Entity::find()
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.prompt)
            .collect();
        prompts.sort();
        assert_eq!(prompts, ["first prompt", "second prompt"]);
        drop(service);
    }
);

both_backends!(
    a_delivery_processed_twice_creates_one_task,
    |db: TestDb| async move {
        // A worker that dies after creating the task but before recording the outcome: the delivery
        // is processed again after its lease expires, and the task is not created twice.
        let (service, _github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let body = serde_json::to_vec(&issue_comment(
            "created",
            "/amp once",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();
        service.webhook("issue_comment", "twice-1", &body).await;
        eventually(10, "processed", || async {
            delivery::Entity::find()
                .filter(delivery::Column::DeliveryId.eq("twice-1"))
                .one(&conn)
                .await
                .unwrap()
                .filter(|d| d.status == "done")
        })
        .await;
        conn.execute_unprepared("UPDATE deliveries SET status = 'pending', processed_at = NULL")
            .await
            .unwrap();
        service.ctx().inbox_wakeup.notify_one();
        eventually(10, "processed again", || async {
            delivery::Entity::find()
                .filter(delivery::Column::DeliveryId.eq("twice-1"))
                .one(&conn)
                .await
                .unwrap()
                .filter(|d| d.status == "done" && d.attempts == 2)
        })
        .await;
        assert_eq!(task::Entity::find().all(&conn).await.unwrap().len(), 1);
    }
);
