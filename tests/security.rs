//! What a hostile party can do, each with its defined answer: an agent steered by an issue's
//! text, a webhook replayed under a new delivery id, a flood of commands, a service that cannot
//! tell who is commenting. The real service, database, Docker engine and git, against the GitHub
//! simulator.

mod common;

use amp_orchestrator::domain::TaskState;
use amp_orchestrator::entities::delivery;
use axum::http::Method;
use common::fixtures::issue_comment;
use common::github_sim::Fault;
use common::github_sim::git::git;
use common::service::FIXTURE_INSTALLATION;
use common::story::story_with;
use common::{TestDb, TestService, eventually};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const JOINER: char = '\u{200D}';

both_backends!(
    what_the_agent_writes_cannot_mention_or_close,
    |db: TestDb| async move {
        // An issue's text steered the agent into ending with mentions and closing keywords.
        let steered =
            "Fixed it. Closes #2, fixes octo-org/widgets#3; cc @octo-org/owners and @mona";
        let s = story_with(
            db,
            &[],
            &[
                ("README.md", "# widgets\n"),
                (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
                (".amp-stub/summary.txt", steered),
            ],
        )
        .await;
        s.sim
            .comment(&s.repo, 21, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        let pulls = s.sim.pulls();
        assert_eq!(pulls.len(), 1);
        let body = &pulls[0].body;
        let status = s.status_saying(21, "`awaiting_ci`").await.body;
        let bare = s.sim.bare_repo(&s.repo);
        let commit = git(
            &bare,
            &["log", "-1", "--format=%B", task.branch.as_deref().unwrap()],
        );
        for (what, text) in [
            ("pull request", body),
            ("status comment", &status),
            ("commit", &commit),
        ] {
            // The words are all there, to read…
            assert!(text.replace(JOINER, "").contains(steered), "{what}: {text}");
            // …and none of them acts.
            for acting in [
                "Closes #2,",
                "fixes octo-org/widgets#3",
                "@octo-org/owners",
                "@mona",
            ] {
                assert!(
                    !text.contains(acting),
                    "{what} still has {acting:?}: {text}"
                );
            }
        }
        // The project's own closing keyword is the only one, for the task's issue.
        assert!(body.starts_with("Closes #21\n"), "{body}");
    }
);

/// The store's tasks and the status of each delivery, once every delivery sent is processed.
async fn settled(
    conn: &sea_orm::DatabaseConnection,
    ids: &[&str],
) -> Vec<amp_orchestrator::entities::task::Model> {
    use amp_orchestrator::entities::{delivery, task};
    use sea_orm::EntityTrait;
    common::eventually(15, "every delivery is processed", || async {
        let all = delivery::Entity::find().all(conn).await.unwrap();
        ids.iter()
            .all(|id| {
                all.iter().any(|d| {
                    d.delivery_id == *id && matches!(d.status.as_str(), "done" | "ignored")
                })
            })
            .then_some(())
    })
    .await;
    task::Entity::find().all(conn).await.unwrap()
}

async fn delivery_error(conn: &sea_orm::DatabaseConnection, id: &str) -> String {
    use amp_orchestrator::entities::delivery;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let d = delivery::Entity::find()
        .filter(delivery::Column::DeliveryId.eq(id))
        .one(conn)
        .await
        .unwrap()
        .unwrap();
    format!("{} {}", d.status, d.error.unwrap_or_default())
}

both_backends!(
    a_comment_replayed_under_a_new_delivery_id_does_nothing,
    |db: TestDb| async move {
        let (service, github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let body = serde_json::to_vec(&issue_comment(
            "created",
            "/amp delete the tests",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();
        // The signed body as GitHub sent it once, then again and again by someone who saw it,
        // each time with a delivery id of their own.
        for id in ["original", "replay-1", "replay-2"] {
            let (status, json) = service.webhook("issue_comment", id, &body).await;
            assert_eq!(status, 202, "{json}");
        }
        let copies = ["original", "replay-1", "replay-2"];
        let tasks = settled(&conn, &copies).await;
        assert_eq!(tasks.len(), 1, "one comment, one task");
        // Copies handled at once: whichever comes first acts, the others say which did.
        let acted = tasks[0].delivery_id.clone().unwrap();
        for id in copies.iter().filter(|id| **id != acted) {
            let outcome = delivery_error(&conn, id).await;
            assert!(
                outcome.contains(&format!("acted on already (delivery {acted})")),
                "{outcome}"
            );
        }
        // One 👀 and one status comment, for the copy that acted only.
        let comments = github.requests("POST", "/issues/1/comments");
        assert_eq!(comments.len(), 1, "{comments:?}");

        // An edit is a new version of the comment: it counts once too.
        let mut edited = issue_comment(
            "edited",
            "/amp delete the tests\n/amp status",
            Some(FIXTURE_INSTALLATION),
        );
        edited["changes"]["body"]["from"] = "/amp delete the tests".into();
        edited["comment"]["updated_at"] = "2026-12-01T10:00:00Z".into();
        let edited = serde_json::to_vec(&edited).unwrap();
        for id in ["edit", "edit-replay"] {
            service.webhook("issue_comment", id, &edited).await;
        }
        settled(&conn, &["edit", "edit-replay"]).await;
        let outcomes = [
            delivery_error(&conn, "edit").await,
            delivery_error(&conn, "edit-replay").await,
        ];
        assert_eq!(
            outcomes.iter().filter(|o| o.starts_with("done")).count(),
            1,
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| o.contains("acted on already (delivery edit"))
                .count(),
            1,
            "{outcomes:?}"
        );
        assert_eq!(
            github.requests("POST", "/issues/1/comments").len(),
            2,
            "one status reply for the edit"
        );
    }
);

both_backends!(
    without_an_app_no_command_is_acted_on,
    |db: TestDb| async move {
        // A webhook secret and no App: nobody's access can be checked, so nobody commands.
        let service = TestService::start(&db).await;
        let conn = db.connect().await;
        let body = serde_json::to_vec(&issue_comment(
            "created",
            "/amp add a --json flag",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();
        let (status, _) = service.webhook("issue_comment", "no-app-1", &body).await;
        assert_eq!(status, 202);
        assert!(settled(&conn, &["no-app-1"]).await.is_empty());
        let outcome = delivery_error(&conn, "no-app-1").await;
        assert!(
            outcome.contains("cannot be checked without a GitHub App"),
            "{outcome}"
        );
    }
);

both_backends!(
    a_replayed_uninstall_does_not_stop_an_installation_in_use,
    |db: TestDb| async move {
        let (service, github) = TestService::start_with_github(&db).await;
        let conn = db.connect().await;
        let body = serde_json::to_vec(&issue_comment(
            "created",
            "/amp add a --json flag",
            Some(FIXTURE_INSTALLATION),
        ))
        .unwrap();
        service.webhook("issue_comment", "prompt", &body).await;
        // An old signed `deleted` (or `suspend`) event, sent again while the App is installed.
        for (id, fixture) in [
            ("old-deleted", "webhooks/installation/deleted.payload.json"),
            ("old-suspend", "webhooks/installation/suspend.payload.json"),
        ] {
            let mut event = common::fixture(fixture);
            event["installation"]["id"] = FIXTURE_INSTALLATION.into();
            service
                .webhook("installation", id, &serde_json::to_vec(&event).unwrap())
                .await;
        }
        let tasks = settled(&conn, &["prompt", "old-deleted", "old-suspend"]).await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(
            tasks[0].state,
            TaskState::Queued,
            "the task was not cancelled"
        );
        let stored = amp_orchestrator::store::installations::get(&conn, FIXTURE_INSTALLATION)
            .await
            .unwrap()
            .unwrap();
        assert!(
            stored.deleted_at.is_none() && stored.suspended_at.is_none(),
            "{stored:?}"
        );
        assert_eq!(
            github
                .requests("GET", &format!("/app/installations/{FIXTURE_INSTALLATION}"))
                .len(),
            2
        );
    }
);

both_backends!(
    a_comment_storm_on_one_repository_does_not_hold_up_the_others,
    |db: TestDb| async move {
        let s = story_with(db, &[], &[("README.md", "# widgets\n")]).await;
        let other = s
            .sim
            .add_repo("octo-org/gadgets", 78, &[("maker", "write")]);
        // A stranger's first command meets GitHub's rate limit for the next hour.
        s.sim.inject(
            Method::GET,
            "/collaborators/stranger/permission",
            Fault::PrimaryRateLimit {
                reset_in_secs: 3600,
            },
        );
        let (_, held) = s.sim.comment(&s.repo, 5, "stranger", "/amp rm -rf /").await;
        eventually(20, "the rate limit is met", || async {
            s.sim
                .requests("GET", "/collaborators/stranger/permission")
                .iter()
                .any(|r| r.status == 403)
                .then_some(())
        })
        .await;
        // Then a storm of commands from the same stranger on the same issue.
        let mut storm = Vec::new();
        for i in 0..30 {
            let (_, delivery) = s
                .sim
                .comment(&s.repo, 5, "stranger", &format!("/amp do thing {i}"))
                .await;
            storm.push(delivery);
        }
        // Another repository's writer is answered meanwhile.
        let (asked, _) = s.sim.comment(&other, 9, "maker", "/amp add a flag").await;
        eventually(20, "the other repository's command is answered", || async {
            (!s.sim.app_comments(&other, 9).is_empty() && !s.sim.reactions_on(asked).is_empty())
                .then_some(())
        })
        .await;
        // The storm is answered once, not thirty times.
        let storm: Vec<&str> = storm.iter().map(String::as_str).collect();
        eventually(30, "the storm is handled", || async {
            let mut handled = 0;
            for id in &storm {
                let outcome = delivery_error(&s.conn, id).await;
                if outcome.starts_with("done") || outcome.starts_with("ignored") {
                    handled += 1;
                }
            }
            (handled == storm.len()).then_some(())
        })
        .await;
        let replies = s.sim.app_comments(&s.repo, 5);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert!(replies[0].body.contains("@stranger"), "{}", replies[0].body);
        // The command that met the rate limit is put back until it resets, its attempts intact.
        let held = delivery::Entity::find()
            .filter(delivery::Column::DeliveryId.eq(held.as_str()))
            .one(&s.conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(held.status, "pending");
        assert_eq!(held.attempts, 0);
        let due_in = held.lease_until.unwrap() - amp_orchestrator::db::now_ms();
        assert!(due_in > 50 * 60 * 1000, "due in {due_in} ms");
        assert!(
            held.error
                .as_deref()
                .unwrap_or_default()
                .contains("rate limit"),
            "{:?}",
            held.error
        );
    }
);

both_backends!(
    readiness_probes_do_not_each_reach_the_docker_engine,
    |db: TestDb| async move {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A Docker engine address that only counts who connects to it.
        let engine = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = engine.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = engine.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        let mut env = common::service::test_env(&db);
        env.insert("MAX_CONCURRENT_TASKS".into(), "1".into());
        env.insert("DOCKER_HOST".into(), format!("tcp://{address}"));
        let service = TestService::start_with(env).await;
        let before = connections.load(Ordering::SeqCst);
        for _ in 0..30 {
            let response = service
                .http
                .get(service.url("/readyz"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 503);
            let ready: serde_json::Value = response.json().await.unwrap();
            assert_eq!(ready["docker"], "failing", "{ready}");
        }
        // Thirty probes in a row share the engine's one answer.
        let reached = connections.load(Ordering::SeqCst) - before;
        assert!(reached <= 4, "the engine was reached {reached} times");
    }
);
