//! The task store on SQLite and PostgreSQL: creation, the event log's sequence numbers, and the
//! state machine's compare-and-set transitions.

mod common;

use amp_orchestrator::domain::{EventKind, EventPayload, LogLine, TaskId, TaskState};
use amp_orchestrator::entities::task;
use amp_orchestrator::store::tasks::{self, Applied, Change, NewTask, TaskError};
use common::TestDb;
use sea_orm::{DatabaseConnection, DbErr};

/// Create a task; `None` when its delivery made one already.
async fn create(conn: &DatabaseConnection, new: NewTask) -> Result<Option<task::Model>, DbErr> {
    Ok(tasks::create(conn, new).await?.map(|(task, _)| task))
}

/// A plain state change, with its reason on the timeline.
async fn transition(
    conn: &DatabaseConnection,
    id: TaskId,
    from: TaskState,
    to: TaskState,
    reason: Option<&str>,
) -> Result<Applied, TaskError> {
    let change = Change {
        reason,
        ..Change::new(from, to)
    };
    tasks::transition(conn, id, &change, None).await
}

fn new_task(delivery: &str) -> NewTask {
    NewTask {
        installation_id: 1,
        repo_id: 10,
        repo_full_name: "octo/repo".into(),
        clone_url: "http://127.0.0.1:1/octo/repo.git".into(),
        default_branch: "main".into(),
        issue_number: 5,
        is_pull_request: false,
        issue_title: "Export as JSON".into(),
        issue_body: "It would help.".into(),
        requester_login: "octocat".into(),
        requester_id: 583231,
        comment_id: 99,
        delivery_id: Some(delivery.into()),
        prompt: "add --json — and make it 🚀".into(),
        repo_config: None,
    }
}

both_backends!(
    tasks_are_created_once_per_delivery,
    |db: TestDb| async move {
        let conn = db.connect().await;
        let task = create(&conn, new_task("d-1")).await.unwrap().unwrap();
        assert_eq!(task.state, TaskState::Queued);
        assert_eq!(task.last_seq, 1);
        assert_eq!(task.prompt, "add --json — and make it 🚀");
        assert!(create(&conn, new_task("d-1")).await.unwrap().is_none());
        let other = create(&conn, new_task("d-2")).await.unwrap().unwrap();
        assert_ne!(task.public_id, other.public_id);
        let found = tasks::get_by_public_id(&conn, &task.public_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, task.id);
        assert!(
            tasks::get_by_public_id(&conn, "nope")
                .await
                .unwrap()
                .is_none()
        );
    }
);

both_backends!(
    concurrent_appends_get_gap_free_sequence_numbers,
    |db: TestDb| async move {
        let conn = db.connect().await;
        let task = create(&conn, new_task("d-1")).await.unwrap().unwrap();
        let mut handles = Vec::new();
        for writer in 0..8 {
            let conn = conn.clone();
            handles.push(tokio::spawn(async move {
                for line in 0..25 {
                    tasks::log_event(
                        &conn,
                        task.id,
                        &EventPayload::Log(LogLine::info(format!("writer {writer} line {line}"))),
                    )
                    .await
                    .unwrap();
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let events = tasks::events_after(&conn, task.id, 0, 1000).await.unwrap();
        assert_eq!(events.len(), 201);
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.seq, i as i64 + 1);
        }
        let tail = tasks::events_after(&conn, task.id, 195, 1000)
            .await
            .unwrap();
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![196, 197, 198, 199, 200, 201]
        );
        let task = tasks::get(&conn, task.id).await.unwrap().unwrap();
        assert_eq!(task.last_seq, 201);
    }
);

both_backends!(
    transitions_follow_the_state_machine,
    |db: TestDb| async move {
        let conn = db.connect().await;
        let task = create(&conn, new_task("d-1")).await.unwrap().unwrap();

        let err = transition(&conn, task.id, TaskState::Queued, TaskState::Running, None)
            .await
            .unwrap_err();
        assert!(matches!(err, TaskError::IllegalTransition { .. }), "{err}");

        for (from, to) in [
            (TaskState::Queued, TaskState::Preparing),
            (TaskState::Preparing, TaskState::Running),
            (TaskState::Running, TaskState::Pushing),
            (TaskState::Pushing, TaskState::AwaitingCi),
        ] {
            transition(&conn, task.id, from, to, Some("test"))
                .await
                .unwrap();
        }
        let row = tasks::get(&conn, task.id).await.unwrap().unwrap();
        assert_eq!(row.state, TaskState::AwaitingCi);
        assert!(row.started_at.is_some());
        assert!(row.finished_at.is_none());

        // Someone else moved it first: the compare-and-set loses and says what it found.
        let err = transition(&conn, task.id, TaskState::Running, TaskState::Failed, None)
            .await
            .unwrap_err();
        match err {
            TaskError::Conflict { actual, .. } => assert_eq!(actual, TaskState::AwaitingCi),
            other => panic!("{other}"),
        }

        transition(
            &conn,
            task.id,
            TaskState::AwaitingCi,
            TaskState::Succeeded,
            None,
        )
        .await
        .unwrap();
        let row = tasks::get(&conn, task.id).await.unwrap().unwrap();
        assert!(row.finished_at.is_some());

        let states: Vec<&str> = tasks::events_after(&conn, task.id, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == EventKind::State)
            .filter_map(|e| e.payload().new_state())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(
            states,
            [
                "queued",
                "preparing",
                "running",
                "pushing",
                "awaiting_ci",
                "succeeded"
            ]
        );

        // Only one of two racing transitions from the same state wins.
        let again = create(&conn, new_task("d-2")).await.unwrap().unwrap();
        let (a, b) = tokio::join!(
            transition(
                &conn,
                again.id,
                TaskState::Queued,
                TaskState::Preparing,
                None
            ),
            transition(
                &conn,
                again.id,
                TaskState::Queued,
                TaskState::Cancelled,
                None
            ),
        );
        assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
    }
);

both_backends!(active_and_latest_task_per_issue, |db: TestDb| async move {
    let conn = db.connect().await;
    assert!(
        tasks::active_for_issue(&conn, 10, 5)
            .await
            .unwrap()
            .is_none()
    );
    let first = create(&conn, new_task("d-1")).await.unwrap().unwrap();
    assert_eq!(
        tasks::active_for_issue(&conn, 10, 5)
            .await
            .unwrap()
            .unwrap()
            .id,
        first.id
    );
    transition(
        &conn,
        first.id,
        TaskState::Queued,
        TaskState::Cancelled,
        None,
    )
    .await
    .unwrap();
    assert!(
        tasks::active_for_issue(&conn, 10, 5)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        tasks::latest_for_issue(&conn, 10, 5)
            .await
            .unwrap()
            .unwrap()
            .id,
        first.id
    );
    assert!(
        tasks::latest_for_issue(&conn, 10, 6)
            .await
            .unwrap()
            .is_none()
    );
});

both_backends!(migrations_are_idempotent, |db: TestDb| async move {
    let conn = db.connect().await;
    amp_orchestrator::db::migrate(&conn).await.unwrap();
    amp_orchestrator::db::migrate(&conn).await.unwrap();
});

both_backends!(
    a_batch_of_deliveries_stores_each_id_once,
    |db: TestDb| async move {
        use amp_orchestrator::store::deliveries::{self, DeliveryStatus, NewDelivery};
        use sea_orm::TransactionTrait;
        let conn = db.connect().await;
        let new = |id: &'static str, payload: &'static [u8]| NewDelivery {
            delivery_id: id,
            event: "issue_comment",
            action: Some("created"),
            installation_id: Some(1),
            status: DeliveryStatus::Pending,
            payload,
            error: None,
        };
        assert!(
            deliveries::insert(&conn, new("earlier", b"{\"a\":1}"))
                .await
                .unwrap()
        );
        let txn = conn.begin().await.unwrap();
        let stored = deliveries::insert_many(
            &txn,
            &[
                new("one", b"{\"one\":1}"),
                new("earlier", b"{\"again\":1}"),
                new("two", b""),
                new("one", b"{\"one\":2}"),
            ],
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
        assert_eq!(stored, [true, false, true, false]);

        let claimed = deliveries::claim(&conn, "me", 60_000, 10).await.unwrap();
        let got: Vec<(&str, &[u8])> = claimed
            .iter()
            .map(|c| (c.delivery_id.as_str(), c.payload.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("earlier", &b"{\"a\":1}"[..]),
                ("one", &b"{\"one\":1}"[..]),
                ("two", &b""[..]),
            ],
            "the first copy of each id is kept, with its own body"
        );
    }
);

both_backends!(
    claims_take_turns_between_installations,
    |db: TestDb| async move {
        use amp_orchestrator::store::deliveries::{self, DeliveryStatus, NewDelivery, Outcome};
        use sea_orm::EntityTrait;
        let conn = db.connect().await;
        let ids: Vec<String> = (0..10).map(|i| format!("storm-{i}")).collect();
        fn new(id: &str, installation: i64) -> NewDelivery<'_> {
            NewDelivery {
                delivery_id: id,
                event: "issue_comment",
                action: Some("created"),
                installation_id: Some(installation),
                status: DeliveryStatus::Pending,
                payload: b"{}",
                error: None,
            }
        }
        // Ten deliveries for one installation, then one for another.
        for id in &ids {
            deliveries::insert(&conn, new(id, 1)).await.unwrap();
        }
        deliveries::insert(&conn, new("quiet", 2)).await.unwrap();
        let claimed = deliveries::claim(&conn, "me", 60_000, 3).await.unwrap();
        let got: Vec<&str> = claimed.iter().map(|c| c.delivery_id.as_str()).collect();
        assert_eq!(got, ["storm-0", "storm-1", "quiet"]);

        // A delivery put back for later is not claimed before its time, and keeps its attempts.
        let storm_1 = claimed[1].id;
        deliveries::finish(
            &conn,
            "me",
            &[(
                storm_1,
                Outcome::Later {
                    reason: "rate limited".into(),
                    due_in_ms: 60_000,
                },
            )],
        )
        .await
        .unwrap();
        let next = deliveries::claim(&conn, "me", 60_000, 20).await.unwrap();
        assert!(next.iter().all(|c| c.id != storm_1));
        assert_eq!(next.len(), 8);
        let put_back = amp_orchestrator::entities::delivery::Entity::find_by_id(storm_1)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (put_back.status.as_str(), put_back.attempts),
            ("pending", 0)
        );
    }
);

both_backends!(
    the_agents_output_is_stored_in_bulk_and_its_oldest_dropped_for_a_marker,
    |db: TestDb| async move {
        use amp_orchestrator::domain::AgentLine;
        use amp_orchestrator::store::task_log;
        let conn = db.connect().await;
        let task = create(&conn, new_task("d-log")).await.unwrap().unwrap();
        let line = |text: &str| EventPayload::Agent(AgentLine::Raw { text: text.into() });
        let result = EventPayload::Agent(AgentLine::Result {
            is_error: false,
            text: "Done.".into(),
            duration_ms: None,
            num_turns: Some(2),
            input_tokens: None,
            output_tokens: None,
        });
        // A batch: a result among lines, stored with one statement, sequence numbers in order.
        let mut batch: Vec<String> = (0..10).map(|i| line(&format!("é {i}")).to_json()).collect();
        batch.insert(3, result.to_json());
        let first = task_log::append_many(&conn, task.id, EventKind::Agent, &batch)
            .await
            .unwrap();
        assert_eq!(first, 2);
        let stored = tasks::events_after(&conn, task.id, 0, 100).await.unwrap();
        let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
        assert_eq!(stored[1].payload(), line("é 0"));
        assert_eq!(stored[4].payload(), result);
        assert_eq!(
            tasks::get(&conn, task.id).await.unwrap().unwrap().last_seq,
            12
        );

        // What may be dropped: every line but the result, with its stored size in bytes.
        let (kept, marker) = task_log::agent_output(&conn, task.id).await.unwrap();
        assert_eq!(kept.len(), 10);
        assert_eq!(kept[0].seq, 2);
        assert_eq!(kept[0].bytes, line("é 0").to_json().len() as u64);
        assert!(marker.is_none());

        // Drop the lines before seq 7 and put the marker at 7: the result and the task's
        // creation stay.
        let dropped = AgentLine::Dropped {
            lines: 5,
            bytes: 99,
        };
        let deleted = task_log::drop_agent_output(&conn, task.id, 7, &dropped)
            .await
            .unwrap();
        assert_eq!(deleted, 4);
        let stored = tasks::events_after(&conn, task.id, 0, 100).await.unwrap();
        let seqs: Vec<i64> = stored.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 5, 7, 8, 9, 10, 11, 12]);
        assert_eq!(stored[2].payload(), EventPayload::Agent(dropped.clone()));
        let (kept, marker) = task_log::agent_output(&conn, task.id).await.unwrap();
        assert_eq!(kept.len(), 6);
        assert_eq!(marker, Some((7, dropped)));
        let results = task_log::turn_results(&conn, task.id).await.unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].seq, 5);

        // The page's view: the newest lines before a point, and the timeline.
        let page = task_log::lines_before(&conn, task.id, Some(11), 3)
            .await
            .unwrap();
        let seqs: Vec<i64> = page.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [10, 9, 8]);
        let timeline = task_log::timeline(&conn, task.id, 10).await.unwrap();
        assert_eq!(timeline.len(), 1);
    }
);

both_backends!(
    a_stop_request_is_taken_only_mid_run_and_keeps_its_first_reason,
    |db: TestDb| async move {
        let conn = db.connect().await;
        let task = create(&conn, new_task("d-1")).await.unwrap().unwrap();
        let stop = |note: Option<&'static str>| {
            let conn = conn.clone();
            async move { tasks::request_stop(&conn, task.id, note).await.unwrap() }
        };
        let stored = || async { tasks::get(&conn, task.id).await.unwrap().unwrap() };
        // Queued: whoever asks ends it; nothing is left on it to stop a later run.
        assert!(!stop(Some("closed")).await);
        assert!(stored().await.stop_requested_at.is_none());

        transition(
            &conn,
            task.id,
            TaskState::Queued,
            TaskState::Preparing,
            None,
        )
        .await
        .unwrap();
        transition(
            &conn,
            task.id,
            TaskState::Preparing,
            TaskState::Running,
            None,
        )
        .await
        .unwrap();
        assert!(stop(Some("Pull request #7 was closed by @mona.")).await);
        assert!(stop(None).await, "asked again: still taken");
        let asked = stored().await;
        assert!(asked.stop_requested_at.is_some());
        assert_eq!(
            asked.stop_note.as_deref(),
            Some("Pull request #7 was closed by @mona."),
            "the first reason stands"
        );

        // Waiting for CI: no longer taken (the one who asks ends the task there).
        transition(
            &conn,
            task.id,
            TaskState::Running,
            TaskState::AwaitingCi,
            None,
        )
        .await
        .unwrap();
        assert!(!stop(Some("later")).await);
        assert_eq!(
            stored().await.stop_note.as_deref(),
            Some("Pull request #7 was closed by @mona."),
            "a request the run missed while winding up is still there for it"
        );
        // Ended: both go.
        transition(
            &conn,
            task.id,
            TaskState::AwaitingCi,
            TaskState::Cancelled,
            None,
        )
        .await
        .unwrap();
        let ended = stored().await;
        assert!(ended.stop_requested_at.is_none() && ended.stop_note.is_none());
    }
);
