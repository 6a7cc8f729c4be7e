//! Webhook intake through the real router and database, on SQLite and PostgreSQL.

mod common;

use amp_orchestrator::domain::TaskState;
use amp_orchestrator::entities::{delivery, task, task_event};
use amp_orchestrator::store::deliveries as inbox_store;
use common::fixtures::issue_comment;
use common::service::FIXTURE_INSTALLATION;
use common::{TestDb, TestService, eventually, fixture_bytes};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};

async fn deliveries(db: &DatabaseConnection) -> Vec<delivery::Model> {
    delivery::Entity::find().all(db).await.unwrap()
}

async fn delivery_status(db: &DatabaseConnection, id: &str) -> Option<String> {
    delivery::Entity::find()
        .filter(delivery::Column::DeliveryId.eq(id))
        .one(db)
        .await
        .unwrap()
        .map(|d| d.status)
}

both_backends!(
    bad_signatures_are_refused_and_nothing_is_stored,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let conn = db.connect().await;
        let body = fixture_bytes("webhooks/issue_comment/created.payload.json");

        let (status, json) = service
            .webhook_signed(
                "issue_comment",
                "d-1",
                &body,
                &amp_orchestrator::webhook::signature::sign("wrong", &body),
            )
            .await;
        assert_eq!(status, 401);
        assert!(
            json["error"].as_str().unwrap().contains("does not match"),
            "{json}"
        );

        // No signature header at all.
        let response = service
            .http
            .post(service.url("/api/github/webhooks"))
            .header("x-github-event", "issue_comment")
            .header("x-github-delivery", "d-2")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "missing X-Hub-Signature-256 header");

        // Malformed signature, and a body changed after signing.
        let (status, _) = service
            .webhook_signed("issue_comment", "d-3", &body, "sha256=nothex")
            .await;
        assert_eq!(status, 401);
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        let signature = amp_orchestrator::webhook::signature::sign(common::service::SECRET, &body);
        let (status, _) = service
            .webhook_signed("issue_comment", "d-4", &tampered, &signature)
            .await;
        assert_eq!(status, 401);

        assert!(deliveries(&conn).await.is_empty());
    }
);

both_backends!(missing_headers_are_named, |db: TestDb| async move {
    let service = TestService::start(&db).await;
    let body = fixture_bytes("webhooks/issue_comment/created.payload.json");
    let signature = amp_orchestrator::webhook::signature::sign(common::service::SECRET, &body);
    for (header, present) in [
        ("x-github-event", "x-github-delivery"),
        ("x-github-delivery", "x-github-event"),
    ] {
        let response = service
            .http
            .post(service.url("/api/github/webhooks"))
            .header("x-hub-signature-256", &signature)
            .header(present, "issue_comment")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let json: serde_json::Value = response.json().await.unwrap();
        let expected = if header == "x-github-event" {
            "missing X-GitHub-Event header"
        } else {
            "missing X-GitHub-Delivery header"
        };
        assert_eq!(json["error"], expected);
    }
    assert!(deliveries(&db.connect().await).await.is_empty());
});

both_backends!(oversized_bodies_get_413, |db: TestDb| async move {
    let service = TestService::start(&db).await;
    // One byte over GitHub's 25 MiB cap.
    let body = vec![b' '; 25 * 1024 * 1024 + 1];
    let (status, _) = service.webhook("issue_comment", "too-big", &body).await;
    assert_eq!(status, 413);
    // Exactly at the cap is read (and then fails as JSON, not as size).
    let mut body = vec![b' '; 25 * 1024 * 1024];
    body[0] = b'x';
    let (status, json) = service.webhook("issue_comment", "at-cap", &body).await;
    assert_eq!(status, 400, "{json}");
    assert!(
        deliveries(&db.connect().await)
            .await
            .iter()
            .all(|d| d.delivery_id != "too-big")
    );
});

both_backends!(
    a_delivery_is_committed_before_the_2xx_and_processed_once,
    |db: TestDb| async move {
        let (service, _github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let body = serde_json::to_vec(&issue_comment(
            "created",
            "/amp add a --json flag",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();

        let (status, json) = service.webhook("issue_comment", "guid-1", &body).await;
        assert_eq!(status, 202, "{json}");
        assert_eq!(json["status"], "queued");
        // Stored at the moment the 2xx arrived, whatever the worker has done since.
        let stored = deliveries(&conn).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].delivery_id, "guid-1");
        assert_eq!(stored[0].event, "issue_comment");
        assert_eq!(stored[0].action.as_deref(), Some("created"));
        assert_eq!(stored[0].installation_id, Some(FIXTURE_INSTALLATION));
        assert_eq!(
            inbox_store::payload(&conn, stored[0].id).await.unwrap(),
            body
        );

        eventually(10, "the delivery is processed", || async {
            (delivery_status(&conn, "guid-1").await.as_deref() == Some("done")).then_some(())
        })
        .await;

        // GitHub redelivers the same id: acknowledged, not processed again.
        let (status, json) = service.webhook("issue_comment", "guid-1", &body).await;
        assert_eq!(status, 200);
        assert_eq!(json["status"], "duplicate");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(deliveries(&conn).await.len(), 1);
        assert_eq!(task::Entity::find().count(&conn).await.unwrap(), 1);
    }
);

both_backends!(
    ping_unknown_and_unhandled_actions,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let conn = db.connect().await;

        let (status, json) = service
            .webhook(
                "ping",
                "ping-1",
                &fixture_bytes("webhooks/ping/payload.json"),
            )
            .await;
        assert_eq!((status, json["status"].as_str()), (200, Some("pong")));

        let (status, json) = service
            .webhook(
                "push",
                "push-1",
                &fixture_bytes("webhooks/push/with-new-branch.payload.json"),
            )
            .await;
        assert_eq!((status, json["status"].as_str()), (202, Some("ignored")));

        // A comment that carries no `/amp` command (the real example, unchanged) needs no work.
        let (status, json) = service
            .webhook(
                "issue_comment",
                "no-command-1",
                &fixture_bytes("webhooks/issue_comment/created.with-installation.payload.json"),
            )
            .await;
        assert_eq!((status, json["status"].as_str()), (202, Some("ignored")));

        let (status, json) = service
            .webhook(
                "issue_comment",
                "deleted-1",
                &fixture_bytes("webhooks/issue_comment/deleted.payload.json"),
            )
            .await;
        assert_eq!((status, json["status"].as_str()), (202, Some("ignored")));

        let (status, json) = service
            .webhook(
                "check_suite",
                "requested-1",
                &fixture_bytes("webhooks/check_suite/requested.payload.json"),
            )
            .await;
        assert_eq!((status, json["status"].as_str()), (202, Some("ignored")));

        let stored = deliveries(&conn).await;
        assert_eq!(
            stored.len(),
            4,
            "ignored deliveries are recorded, ping is not"
        );
        for d in &stored {
            assert_eq!(d.status, "ignored");
            assert!(
                inbox_store::payload(&conn, d.id).await.unwrap().is_empty(),
                "an ignored delivery's body is not kept"
            );
        }
        // A redelivered ignored event is still a duplicate.
        let (status, _) = service
            .webhook(
                "push",
                "push-1",
                &fixture_bytes("webhooks/push/with-new-branch.payload.json"),
            )
            .await;
        assert_eq!(status, 200);
    }
);

both_backends!(
    malformed_json_names_the_path_and_keeps_the_body,
    |db: TestDb| async move {
        let service = TestService::start(&db).await;
        let conn = db.connect().await;

        let mut payload = issue_comment("created", "/amp do it", Some(1));
        payload["comment"]["id"] = "not-a-number".into();
        let body = serde_json::to_vec(&payload).unwrap();
        let (status, json) = service.webhook("issue_comment", "bad-1", &body).await;
        assert_eq!(status, 400);
        let error = json["error"].as_str().unwrap();
        assert!(error.contains("`comment.id`"), "{error}");

        let truncated = b"{\"action\": \"completed\", \"check_suite\": {";
        let (status, json) = service.webhook("check_suite", "bad-2", truncated).await;
        assert_eq!(status, 400);
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("invalid check_suite payload"),
            "{json}"
        );

        let stored = delivery::Entity::find()
            .filter(delivery::Column::DeliveryId.eq("bad-1"))
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.status, "invalid");
        assert_eq!(
            inbox_store::payload(&conn, stored.id).await.unwrap(),
            body,
            "the raw body is kept for inspection"
        );
        assert!(stored.error.unwrap().contains("comment.id"));
        assert_eq!(task::Entity::find().count(&conn).await.unwrap(), 0);
    }
);

both_backends!(
    an_amp_prompt_becomes_a_queued_task,
    |db: TestDb| async move {
        let (service, _github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let mut payload = issue_comment(
            "created",
            "Thanks!\n\n/amp add a --json flag\nto the export command",
            Some(FIXTURE_INSTALLATION),
        );
        payload["sender"]["login"] = "octocat".into();
        payload["sender"]["id"] = 583231.into();
        let (status, _) = service
            .webhook(
                "issue_comment",
                "prompt-1",
                &serde_json::to_vec(&payload).unwrap(),
            )
            .await;
        assert_eq!(status, 202);

        let task = eventually(10, "a task is created", || async {
            task::Entity::find().one(&conn).await.unwrap()
        })
        .await;
        assert_eq!(task.state, TaskState::Queued);
        assert_eq!(task.prompt, "add a --json flag\nto the export command");
        assert_eq!(task.installation_id, FIXTURE_INSTALLATION);
        assert_eq!(
            task.repo_full_name,
            payload["repository"]["full_name"].as_str().unwrap()
        );
        assert_eq!(
            task.clone_url,
            payload["repository"]["clone_url"].as_str().unwrap()
        );
        assert_eq!(
            task.issue_number,
            payload["issue"]["number"].as_i64().unwrap()
        );
        assert_eq!(task.requester_login, "octocat");
        assert_eq!(task.requester_id, 583231);
        assert_eq!(task.comment_id, payload["comment"]["id"].as_i64().unwrap());
        assert_eq!(task.delivery_id.as_deref(), Some("prompt-1"));
        assert!(task.public_id.len() >= 22);

        let events = task_event::Entity::find()
            .filter(task_event::Column::TaskId.eq(task.id))
            .all(&conn)
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].seq, 1);
        assert_eq!(events[0].kind, amp_orchestrator::domain::EventKind::State);
        let data: serde_json::Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(data["to"], "queued");
    }
);

both_backends!(
    edits_count_only_new_commands_and_bots_are_ignored,
    |db: TestDb| async move {
        let (service, _github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;

        // The edit keeps the same prompt and fixes a typo elsewhere: nothing new to do.
        let mut edited = issue_comment(
            "edited",
            "Fixed typo.\n/amp fix the flaky test",
            Some(FIXTURE_INSTALLATION),
        );
        edited["changes"]["body"]["from"] = "Fixd typo.\n/amp fix the flaky test".into();
        let (status, _) = service
            .webhook(
                "issue_comment",
                "edit-1",
                &serde_json::to_vec(&edited).unwrap(),
            )
            .await;
        assert_eq!(status, 202);

        // A comment by a bot (this App included) never triggers work.
        let mut by_bot = issue_comment("created", "/amp do something", Some(FIXTURE_INSTALLATION));
        by_bot["sender"]["type"] = "Bot".into();
        by_bot["sender"]["login"] = "amp-orchestrator[bot]".into();
        by_bot["comment"]["user"] = by_bot["sender"].clone();
        let (status, _) = service
            .webhook(
                "issue_comment",
                "bot-1",
                &serde_json::to_vec(&by_bot).unwrap(),
            )
            .await;
        assert_eq!(status, 202);

        for id in ["edit-1", "bot-1"] {
            eventually(10, "the delivery is processed", || async {
                (delivery_status(&conn, id).await.as_deref() == Some("ignored")).then_some(())
            })
            .await;
        }
        assert_eq!(task::Entity::find().count(&conn).await.unwrap(), 0);

        // The edit adds a prompt that was not there before: it counts.
        let mut edited = issue_comment(
            "edited",
            "/amp fix the flaky test",
            Some(FIXTURE_INSTALLATION),
        );
        edited["changes"]["body"]["from"] = "please fix the flaky test".into();
        service
            .webhook(
                "issue_comment",
                "edit-2",
                &serde_json::to_vec(&edited).unwrap(),
            )
            .await;
        let task = eventually(10, "a task from the edit", || async {
            task::Entity::find().one(&conn).await.unwrap()
        })
        .await;
        assert_eq!(task.prompt, "fix the flaky test");
    }
);

both_backends!(
    installation_events_keep_the_table_current,
    |db: TestDb| async move {
        use amp_orchestrator::entities::installation;
        let (service, github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let mut created = common::fixture("webhooks/installation/created.payload.json");
        let id = FIXTURE_INSTALLATION;
        created["installation"]["id"] = id.into();
        service
            .webhook(
                "installation",
                "inst-1",
                &serde_json::to_vec(&created).unwrap(),
            )
            .await;
        let row = eventually(10, "the installation is stored", || async {
            installation::Entity::find_by_id(id)
                .one(&conn)
                .await
                .unwrap()
        })
        .await;
        assert_eq!(
            row.account_login,
            created["installation"]["account"]["login"]
                .as_str()
                .unwrap()
        );
        assert!(row.suspended_at.is_none() && row.deleted_at.is_none());

        // Uninstalled on GitHub, which then says so.
        github.uninstall(id);
        let mut deleted = common::fixture("webhooks/installation/deleted.payload.json");
        deleted["installation"]["id"] = id.into();
        service
            .webhook(
                "installation",
                "inst-2",
                &serde_json::to_vec(&deleted).unwrap(),
            )
            .await;
        eventually(10, "the installation is marked deleted", || async {
            installation::Entity::find_by_id(id)
                .one(&conn)
                .await
                .unwrap()
                .and_then(|r| r.deleted_at)
        })
        .await;
    }
);

both_backends!(health_and_readiness, |db: TestDb| async move {
    let service = TestService::start(&db).await;
    let response = service
        .http
        .get(service.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = service
        .http
        .get(service.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["database"], "ok");
    assert!(json.get("instance").is_none(), "{json}");

    let response = service.http.get(service.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // No App yet and no admin token: the home page says how to set one up.
    let page = response.text().await.unwrap();
    assert!(page.contains("ADMIN_TOKEN"), "{page}");

    if db.backend == common::Backend::Postgres {
        // The database goes away: still alive, no longer ready.
        db.drop_now().await;
        let response = service
            .http
            .get(service.url("/readyz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        // What went wrong is for the logs, not for anyone who asks.
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["database"], "failing", "{json}");
        let response = service
            .http
            .get(service.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
});

both_backends!(
    concurrent_copies_of_one_delivery_are_stored_once,
    |db: TestDb| async move {
        // GitHub redelivering while the original is still in flight: the copies may be committed in
        // the same batch or in different ones; either way one is queued and the rest are duplicates.
        let (service, _github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let body = serde_json::to_vec(&issue_comment(
            "created",
            "/amp only once",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();
        let ids: Vec<String> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    "same-guid".to_string()
                } else {
                    format!("other-{i}")
                }
            })
            .collect();
        let replies = futures::future::join_all(
            ids.iter()
                .map(|id| service.webhook("issue_comment", id, &body)),
        )
        .await;
        let same: Vec<&str> = replies
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, (_, json))| json["status"].as_str().unwrap_or_else(|| panic!("{json}")))
            .collect();
        assert_eq!(
            same.iter().filter(|s| **s == "queued").count(),
            1,
            "{same:?}"
        );
        assert_eq!(
            same.iter().filter(|s| **s == "duplicate").count(),
            19,
            "{same:?}"
        );
        assert!(
            replies
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .all(|(_, (status, json))| *status == 202 && json["status"] == "queued")
        );
        assert_eq!(deliveries(&conn).await.len(), 21);
        // The copies under other delivery ids carry the same comment: one of the 21 acts on it,
        // the other 20 are ignored as replays.
        let statuses = eventually(15, "all processed", || async {
            let stored = deliveries(&conn).await;
            stored
                .iter()
                .all(|d| d.status == "done" || d.status == "ignored")
                .then(|| stored.iter().map(|d| d.status.clone()).collect::<Vec<_>>())
        })
        .await;
        assert_eq!(
            statuses.iter().filter(|s| *s == "done").count(),
            1,
            "{statuses:?}"
        );
    }
);
