//! Stories through the real router, store and inbox against the GitHub simulator: what a person
//! sees on GitHub after commenting `/amp …`.

mod common;

use amp_orchestrator::domain::TaskState;
use std::time::Duration;

use amp_orchestrator::entities::task;
use amp_orchestrator::github::Options;
use axum::http::Method;
use common::github_sim::{Fault, GitHubSim, Repo};
use common::service::{SECRET, test_env};
use common::{TestDb, TestService, eventually};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait};

struct Story {
    sim: GitHubSim,
    _service: TestService,
    conn: DatabaseConnection,
    repo: Repo,
    _db: TestDb,
}

fn fast() -> Options {
    Options {
        call_timeout: Duration::from_secs(5),
        max_attempts: 4,
        backoff: Duration::from_millis(20),
        max_rate_limit_wait: Duration::from_secs(30),
        token_refresh_margin: Duration::from_secs(2),
        ..Options::default()
    }
}

async fn story(db: TestDb) -> Story {
    story_with(db, fast()).await
}

async fn story_with(db: TestDb, options: Options) -> Story {
    let sim = GitHubSim::start(SECRET).await;
    let repo = sim.add_repo(
        "octo-org/widgets",
        77,
        &[
            ("maintainer", "maintain"),
            ("writer", "write"),
            ("reader", "read"),
            ("admin", "admin"),
            // Custom repository roles, named in `role_name`, built on a base role.
            ("ops", "ci-manager=write"),
            ("auditor", "auditor=read"),
        ],
    );
    let mut env = test_env(&db);
    env.extend(sim.service_env());
    let service = TestService::start_full(
        env,
        amp_orchestrator::context::Tunables {
            github: options,
            inbox_retry_base: Duration::from_millis(20),
            ..Default::default()
        },
    )
    .await;
    sim.deliver_to(&service.base);
    let conn = db.connect().await;
    Story {
        sim,
        _service: service,
        conn,
        repo,
        _db: db,
    }
}

impl Story {
    async fn tasks(&self) -> Vec<task::Model> {
        task::Entity::find().all(&self.conn).await.unwrap()
    }

    async fn expect_app_comments(&self, issue: i64, n: usize) -> Vec<common::github_sim::Comment> {
        eventually(10, &format!("{n} app comments on #{issue}"), || async {
            let comments = self.sim.app_comments(&self.repo, issue);
            (comments.len() >= n).then_some(comments)
        })
        .await
    }

    /// Wait until every delivery has been processed, so "nothing else happened" can be checked.
    async fn settle(&self) {
        eventually(10, "the inbox drains", || async {
            let backlog = amp_orchestrator::store::deliveries::backlog(&self.conn)
                .await
                .unwrap();
            (backlog == 0).then_some(())
        })
        .await;
    }
}

both_backends!(
    a_writers_prompt_gets_eyes_and_one_status_comment,
    |db: TestDb| async move {
        let s = story(db).await;
        let (comment_id, _) = s
            .sim
            .comment(&s.repo, 12, "writer", "/amp add a --json flag")
            .await;

        let comments = s.expect_app_comments(12, 1).await;
        s.settle().await;
        let reactions = s.sim.reactions_on(comment_id);
        assert_eq!(reactions.len(), 1);
        assert_eq!(reactions[0].content, "eyes");
        let comments_now = s.sim.app_comments(&s.repo, 12);
        assert_eq!(comments_now.len(), 1, "one status comment, no stream");

        let tasks = s.tasks().await;
        assert_eq!(tasks.len(), 1);
        let task = &tasks[0];
        assert_eq!(task.state, TaskState::Queued);
        assert_eq!(task.prompt, "add a --json flag");
        assert_eq!(task.requester_login, "writer");
        assert_eq!(task.status_comment_id, Some(comments[0].id));
        let body = &comments[0].body;
        assert!(
            body.contains(&format!(
                "https://amp.example.test/tasks/{}",
                task.public_id
            )),
            "{body}"
        );
        assert!(body.contains("`queued`"), "{body}");
        // The App asked for a token scoped to this one repository.
        assert!(s.sim.state.lock().unwrap().tokens_minted >= 1);
    }
);

both_backends!(a_readers_prompt_is_refused_once, |db: TestDb| async move {
    let s = story(db).await;
    let (comment_id, _) = s
        .sim
        .comment(&s.repo, 3, "reader", "/amp delete everything\n/amp status")
        .await;
    let comments = s.expect_app_comments(3, 1).await;
    s.settle().await;
    assert_eq!(
        s.sim.app_comments(&s.repo, 3).len(),
        1,
        "one reply for the whole comment"
    );
    assert!(comments[0].body.contains("@reader"), "{}", comments[0].body);
    assert!(
        comments[0].body.contains("write access"),
        "{}",
        comments[0].body
    );
    assert!(s.sim.reactions_on(comment_id).is_empty());
    assert_eq!(s.tasks().await.len(), 0);
});

both_backends!(
    a_custom_role_counts_as_the_base_role_it_builds_on,
    |db: TestDb| async move {
        let s = story(db).await;
        s.sim
            .comment(&s.repo, 5, "ops", "/amp add a --json flag")
            .await;
        s.sim
            .comment(&s.repo, 6, "auditor", "/amp add a --json flag")
            .await;
        let started = s.expect_app_comments(5, 1).await;
        assert!(started[0].body.contains("`queued`"), "{}", started[0].body);
        let refused = s.expect_app_comments(6, 1).await;
        assert!(refused[0].body.contains("@auditor"), "{}", refused[0].body);
        let tasks = s.tasks().await;
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].requester_login, "ops");
    }
);

both_backends!(
    bots_and_the_app_itself_are_ignored_silently,
    |db: TestDb| async move {
        let s = story(db).await;
        s.sim
            .comment_as(&s.repo, 4, "dependabot[bot]", "Bot", "/amp bump everything")
            .await;
        s.sim
            .comment_as(&s.repo, 4, "amp-orchestrator[bot]", "Bot", "/amp help")
            .await;
        s.settle().await;
        assert!(s.sim.app_comments(&s.repo, 4).is_empty());
        assert_eq!(s.tasks().await.len(), 0);
        assert!(
            s.sim.requests("GET", "/permission").is_empty(),
            "bots cost no API calls"
        );
    }
);

both_backends!(help_status_and_a_second_prompt, |db: TestDb| async move {
    let s = story(db).await;
    s.sim.comment(&s.repo, 5, "maintainer", "/amp help").await;
    let comments = s.expect_app_comments(5, 1).await;
    assert!(
        comments[0].body.contains("`/amp stop`"),
        "{}",
        comments[0].body
    );

    s.sim.comment(&s.repo, 5, "maintainer", "/amp status").await;
    let comments = s.expect_app_comments(5, 2).await;
    assert!(
        comments[1].body.contains("no task on this issue"),
        "{}",
        comments[1].body
    );

    s.sim
        .comment(&s.repo, 5, "writer", "/amp write the docs")
        .await;
    let comments = s.expect_app_comments(5, 3).await;
    let task = s.tasks().await.remove(0);
    assert!(comments[2].body.contains(&task.public_id));

    s.sim.comment(&s.repo, 5, "admin", "/amp status").await;
    let comments = s.expect_app_comments(5, 4).await;
    assert!(
        comments[3].body.contains("`queued`"),
        "{}",
        comments[3].body
    );
    assert!(comments[3].body.contains(&task.public_id));

    s.sim
        .comment(&s.repo, 5, "admin", "/amp do something else")
        .await;
    // The issue's task has not started: this is for its next round, not refused.
    let comments = s.expect_app_comments(5, 5).await;
    assert!(
        comments[4].body.contains("takes this up in the next round"),
        "{}",
        comments[4].body
    );
    assert!(
        comments[4].body.contains("/amp stop"),
        "{}",
        comments[4].body
    );
    s.settle().await;
    assert_eq!(s.tasks().await.len(), 1, "no second task");
});

both_backends!(
    a_server_error_is_retried_and_posts_once,
    |db: TestDb| async move {
        let s = story(db).await;
        s.sim
            .inject(Method::POST, "/issues/7/comments", Fault::Status(500));
        s.sim
            .comment(&s.repo, 7, "writer", "/amp fix the flaky test")
            .await;
        s.expect_app_comments(7, 1).await;
        s.settle().await;
        assert_eq!(s.sim.app_comments(&s.repo, 7).len(), 1);
        let posts = s.sim.requests("POST", "/issues/7/comments");
        assert_eq!(
            posts.iter().map(|r| r.status).collect::<Vec<_>>(),
            [500, 201],
            "retried once"
        );
    }
);

both_backends!(
    rate_limits_delay_work_and_drop_nothing,
    |db: TestDb| async move {
        let s = story(db).await;
        s.sim.inject(
            Method::POST,
            "/reactions",
            Fault::SecondaryRateLimit {
                retry_after_secs: 1,
            },
        );
        s.sim.inject(
            Method::POST,
            "/issues/8/comments",
            Fault::PrimaryRateLimit { reset_in_secs: 1 },
        );
        let (comment_id, _) = s
            .sim
            .comment(&s.repo, 8, "writer", "/amp speed it up")
            .await;
        s.expect_app_comments(8, 1).await;
        s.settle().await;
        assert_eq!(s.sim.reactions_on(comment_id).len(), 1);
        assert_eq!(s.sim.app_comments(&s.repo, 8).len(), 1);
        let statuses: Vec<u16> = s
            .sim
            .requests("POST", "/reactions")
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [403, 201]);
        let statuses: Vec<u16> = s
            .sim
            .requests("POST", "/issues/8/comments")
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(statuses, [403, 201]);
    }
);

both_backends!(
    expired_installation_tokens_are_replaced,
    |db: TestDb| async move {
        let s = story(db).await;
        // Tokens that live 3 s, refreshed 2 s before expiry; and one revoked outright.
        s.sim.set_token_lifetime(Duration::from_secs(3));
        s.sim.comment(&s.repo, 9, "writer", "/amp first").await;
        s.expect_app_comments(9, 1).await;
        s.settle().await;
        let minted_before = s.sim.state.lock().unwrap().tokens_minted;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        s.sim.comment(&s.repo, 9, "writer", "/amp status").await;
        s.expect_app_comments(9, 2).await;
        let minted_after_refresh = s.sim.state.lock().unwrap().tokens_minted;
        assert!(
            minted_after_refresh > minted_before,
            "refreshed ahead of expiry"
        );

        // A long-lived token next (the short one is within its refresh margin by then)...
        s.sim.set_token_lifetime(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        s.sim.comment(&s.repo, 9, "writer", "/amp status").await;
        s.expect_app_comments(9, 3).await;
        s.settle().await;
        // ...which GitHub then stops accepting before its time.
        s.sim.expire_tokens();
        s.sim.comment(&s.repo, 9, "writer", "/amp status").await;
        s.expect_app_comments(9, 4).await;
        s.settle().await;
        let log = s.sim.state.lock().unwrap().log.clone();
        let refused = log.iter().filter(|l| l.status == 401).count();
        assert_eq!(
            refused, 1,
            "one 401, answered by minting a new token: {log:?}"
        );
    }
);

both_backends!(the_same_delivery_twice_acts_once, |db: TestDb| async move {
    let s = story(db).await;
    let (comment_id, delivery) = s.sim.comment(&s.repo, 10, "writer", "/amp once only").await;
    let payload =
        s.sim
            .comment_payload(&s.repo, 10, comment_id, "writer", "User", "/amp once only");
    assert_eq!(
        s.sim
            .send_webhook("issue_comment", &delivery, &payload)
            .await,
        200
    );
    s.expect_app_comments(10, 1).await;
    s.settle().await;
    assert_eq!(s.sim.reactions_on(comment_id).len(), 1);
    assert_eq!(s.sim.app_comments(&s.repo, 10).len(), 1);
    assert_eq!(task::Entity::find().count(&s.conn).await.unwrap(), 1);
});

/// The owner changes the story's installation on GitHub (`on_github`), and its event cancels the
/// queued task; returns the installation's stored row afterwards.
async fn installation_event_cancels_queued_task(
    s: &Story,
    on_github: fn(&common::github_sim::GitHubSim, i64),
    fixture: &str,
    issue: i64,
) -> amp_orchestrator::entities::installation::Model {
    s.sim
        .comment(&s.repo, issue, "writer", "/amp migrate the build")
        .await;
    s.expect_app_comments(issue, 1).await;
    s.settle().await;

    on_github(&s.sim, s.repo.installation_id);
    let mut payload = common::fixture(fixture);
    payload["installation"]["id"] = s.repo.installation_id.into();
    let delivery = format!("installation-{issue}");
    assert_eq!(
        s.sim
            .send_webhook("installation", &delivery, &payload)
            .await,
        202
    );
    eventually(10, "the queued task is cancelled", || async {
        let tasks = s.tasks().await;
        (tasks[0].state == TaskState::Cancelled).then_some(())
    })
    .await;
    amp_orchestrator::store::installations::get(&s.conn, s.repo.installation_id)
        .await
        .unwrap()
        .unwrap()
}

both_backends!(uninstalling_cancels_queued_tasks, |db: TestDb| async move {
    let s = story(db).await;
    let installation = installation_event_cancels_queued_task(
        &s,
        |sim, id| sim.uninstall(id),
        "webhooks/installation/deleted.payload.json",
        11,
    )
    .await;
    assert!(installation.deleted_at.is_some());
});

both_backends!(suspending_cancels_queued_tasks, |db: TestDb| async move {
    let s = story(db).await;
    let installation = installation_event_cancels_queued_task(
        &s,
        |sim, id| sim.suspend_installation(id),
        "webhooks/installation/suspend.payload.json",
        16,
    )
    .await;
    assert!(installation.suspended_at.is_some());
});

both_backends!(
    a_slow_answer_times_out_and_is_retried,
    |db: TestDb| async move {
        let s = story_with(
            db,
            Options {
                call_timeout: Duration::from_millis(300),
                ..fast()
            },
        )
        .await;
        s.sim.inject(
            Method::GET,
            "/permission",
            Fault::Slow(Duration::from_millis(1500)),
        );
        s.sim
            .comment(&s.repo, 13, "writer", "/amp be patient")
            .await;
        s.expect_app_comments(13, 1).await;
        s.settle().await;
        assert_eq!(s.tasks().await.len(), 1);
        // The slow answer was abandoned (its connection dropped, so the simulator never finished it)
        // and the client's own retry was answered, within the delivery's first attempt.
        assert_eq!(s.sim.requests("GET", "/permission").len(), 1);
        let deliveries = amp_orchestrator::entities::delivery::Entity::find()
            .all(&s.conn)
            .await
            .unwrap();
        assert!(deliveries.iter().all(|d| d.attempts == 1), "{deliveries:?}");
    }
);

both_backends!(
    a_status_comment_github_refuses_becomes_one_generic_reply,
    |db: TestDb| async move {
        let s = story(db).await;
        s.sim
            .inject(Method::POST, "/issues/14/comments", Fault::Status(422));
        s.sim.comment(&s.repo, 14, "writer", "/amp refactor").await;
        let comments = s.expect_app_comments(14, 1).await;
        s.settle().await;
        assert_eq!(s.sim.app_comments(&s.repo, 14).len(), 1);
        let task = s.tasks().await.remove(0);
        assert!(
            comments[0].body.contains("Something went wrong"),
            "{}",
            comments[0].body
        );
        assert!(
            comments[0].body.contains(&task.public_id),
            "{}",
            comments[0].body
        );
    }
);

both_backends!(
    a_delivery_that_keeps_failing_is_reported_once,
    |db: TestDb| async move {
        let s = story(db).await;
        // The permission check fails on every attempt of the delivery (4 calls per attempt, 5
        // attempts); then the reply goes through.
        for _ in 0..20 {
            s.sim.inject(Method::GET, "/permission", Fault::Status(502));
        }
        s.sim.comment(&s.repo, 15, "writer", "/amp try hard").await;
        let comments = s.expect_app_comments(15, 1).await;
        s.settle().await;
        assert_eq!(s.sim.app_comments(&s.repo, 15).len(), 1);
        assert!(
            comments[0].body.contains("Something went wrong"),
            "{}",
            comments[0].body
        );
        assert_eq!(s.tasks().await.len(), 0);
        let deliveries = amp_orchestrator::entities::delivery::Entity::find()
            .all(&s.conn)
            .await
            .unwrap();
        assert_eq!(deliveries[0].status, "failed");
        assert_eq!(deliveries[0].attempts, 5);
    }
);

both_backends!(
    ci_on_push_reports_a_check_suite_to_the_service,
    |db: TestDb| async move {
        let s = story(db).await;
        let gh = s._service.ctx().github().unwrap();
        let r = amp_orchestrator::github::RepoRef {
            installation_id: s.repo.installation_id,
            repo_id: s.repo.id,
            full_name: s.repo.full_name(),
        };
        let token = gh.repo_token(&r).await.unwrap();
        let work = tempfile::tempdir().unwrap();
        let url = s.sim.clone_url(&s.repo).replacen(
            "http://",
            &format!(
                "http://x-access-token:{}@",
                secrecy::ExposeSecret::expose_secret(&token)
            ),
            1,
        );
        let dir = work.path().join("w");
        common::github_sim::git::git(work.path(), &["clone", "-q", &url, "w"]);
        std::fs::write(dir.join("ci.sh"), "echo all good\n").unwrap();
        common::github_sim::git::git(&dir, &["add", "-A"]);
        common::github_sim::git::git(&dir, &["commit", "-q", "-m", "Add CI"]);
        common::github_sim::git::git(&dir, &["push", "-q", "origin", "HEAD:refs/heads/amp/ci"]);
        let delivery = eventually(
            60,
            "the check_suite webhook is stored and processed",
            || async {
                amp_orchestrator::entities::delivery::Entity::find()
                    .all(&s.conn)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|d| d.event == "check_suite" && d.status == "ignored")
            },
        )
        .await;
        assert_eq!(delivery.action.as_deref(), Some("completed"));
        // No task pushed that commit: nothing to decide.
        assert!(
            delivery
                .error
                .as_deref()
                .is_some_and(|e| e.contains("is not the head of any task")),
            "{:?}",
            delivery.error
        );
        assert_eq!(s.sim.check_suites()[0].conclusion, "success");
    }
);

both_backends!(
    a_queued_task_stopped_on_github_ends_on_an_open_page,
    |db: TestDb| async move {
        let s = story(db).await;
        s.sim
            .comment(&s.repo, 14, "writer", "/amp add a --json flag")
            .await;
        s.expect_app_comments(14, 1).await;
        let task = s.tasks().await.remove(0);
        let url = s._service.url(&format!("/tasks/{}/events", task.public_id));
        let mut page = common::sse::SseClient::connect(&url, None).await;
        let created = page.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(created.json()["state"], "queued");

        // Nothing runs it here (this replica runs no tasks): the stop cancels it, and the open
        // page hears of it at once.
        s.sim.comment(&s.repo, 14, "writer", "/amp stop").await;
        let stopped = page.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(stopped.event, "state");
        assert_eq!(stopped.json()["state"], "cancelled");
        let end = page.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(end.event, "end");
        let status = eventually(10, "the status comment says it stopped", || async {
            let c = s.sim.app_comments(&s.repo, 14).remove(0);
            c.body.contains("`cancelled`").then_some(c)
        })
        .await;
        assert!(
            status
                .body
                .contains("Stopped with /amp stop before it started"),
            "{}",
            status.body
        );
    }
);
