//! Tasks run end to end: the real service and worker, the real Docker engine with the locally
//! built agent image (stub `amp`), and the GitHub simulator's repositories, pull requests and
//! comments.

mod common;

use amp_orchestrator::docker::Engine;
use amp_orchestrator::domain::TaskState;
use amp_orchestrator::entities::{task, task_event};
use common::github_sim::GitHubSim;
use common::github_sim::git::git;
use common::service::SECRET;
use common::story::{
    Story, assert_no_containers_for, exec_in_agent_container, service_env, story_with, tunables,
};
use common::{TestDb, TestService, eventually};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

const STUB_FILES: &[(&str, &str)] = &[
    ("README.md", "# widgets\n"),
    (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
    (".amp-stub/slowly.sh", "sleep 30\n"),
    // Stalls the first time only (the marker lives in the container's /tmp).
    (
        ".amp-stub/stall.sh",
        "[ -f /tmp/stalled ] && exit 0\ntouch /tmp/stalled\nsleep 30\n",
    ),
    // Leaves a process behind in the agent's container that keeps reading every other process's
    // environment for GitHub tokens (into /tmp/seen-tokens) while the service pushes.
    (
        ".amp-stub/linger.sh",
        "(i=0; while [ $i -lt 1200 ]; do i=$((i+1)); \
           for f in /proc/[0-9]*/environ; do tr '\\000' '\\n' < \"$f\" 2>/dev/null \
             | grep -o 'gh[opsur]_[A-Za-z0-9]\\{20,\\}' >> /tmp/seen-tokens; done; \
           sleep 0.05; done) </dev/null >/dev/null 2>&1 &\n\
         echo watching > WATCHING\n",
    ),
    // Makes its change once: run again on the same branch, it has nothing to do.
    (".amp-stub/once.sh", "[ -f ONCE ] || echo done > ONCE\n"),
    (
        ".amp-stub/reveal.sh",
        "echo 'the deploy password is hunter2-deploy-key'\n",
    ),
];

async fn story(db: TestDb, extra: &[(&str, &str)]) -> Story {
    story_with(db, extra, STUB_FILES).await
}

both_backends!(
    a_prompt_becomes_a_pushed_branch_and_a_draft_pr,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        s.sim
            .comment(&s.repo, 21, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;

        // The branch is on the simulator's repository, with the agent's change and honest authorship.
        let branch = task.branch.clone().unwrap();
        assert!(branch.starts_with("amp/21-"), "{branch}");
        let bare = s.sim.bare_repo(&s.repo);
        let flags = git(&bare, &["show", &format!("{branch}:FLAGS")]);
        assert_eq!(flags, "--json");
        let message = git(&bare, &["log", "-1", "--format=%an%n%B", &branch]);
        assert!(message.starts_with("amp-orchestrator[bot]"), "{message}");
        assert!(message.contains("Co-authored-by: writer <"), "{message}");
        assert_eq!(
            task.head_sha.as_ref().map(|h| h.as_str()),
            Some(git(&bare, &["rev-parse", &branch]).as_str())
        );

        // A draft pull request that closes the issue.
        let pulls = s.sim.pulls();
        assert_eq!(pulls.len(), 1);
        assert!(pulls[0].draft);
        assert_eq!(pulls[0].head, branch);
        assert!(pulls[0].body.contains("Closes #21"), "{}", pulls[0].body);
        assert!(pulls[0].body.contains(&task.public_id));
        assert_eq!(task.pr_number, Some(pulls[0].number));

        // The one status comment now links the pull request.
        let status = s.status_saying(21, "`awaiting_ci`").await;
        assert_eq!(s.sim.app_comments(&s.repo, 21).len(), 1);
        assert!(!status.edits.is_empty(), "edited in place");
        assert!(
            status.body.contains(&format!("/pull/{}", pulls[0].number)),
            "{}",
            status.body
        );
        assert!(status.body.contains("`awaiting_ci`"), "{}", status.body);

        // The agent's output is in the task's log, in order, with the thread id kept.
        let events = s.events(task.id).await;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
        assert!(
            events
                .iter()
                .any(|e| e.kind == amp_orchestrator::domain::EventKind::Agent
                    && e.data.contains("\"type\":\"init\""))
        );
        assert!(
            events
                .iter()
                .any(|e| e.kind == amp_orchestrator::domain::EventKind::Agent
                    && e.data.contains("\"type\":\"result\""))
        );
        assert!(
            task.thread_id
                .as_ref()
                .map(|t| t.as_str())
                .unwrap()
                .starts_with("T-")
        );
        assert!(
            !events
                .iter()
                .any(|e| e.data.contains("sgamp_test_key_0123456789"))
        );

        // The container stays for CI; /amp stop ends the task and removes it.
        s.sim.comment(&s.repo, 21, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_process_the_agent_leaves_behind_never_sees_the_token,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        s.sim
            .comment(&s.repo, 26, "writer", "/amp linger then add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        // The push happened while the agent's watcher ran.
        let bare = s.sim.bare_repo(&s.repo);
        let branch = task.branch.clone().unwrap();
        assert_eq!(
            git(&bare, &["show", &format!("{branch}:WATCHING")]),
            "watching"
        );

        // The watcher does see a token in any process of the agent's container that holds one.
        let canary = "ghs_canaryCANARYcanary0123456789";
        exec_in_agent_container(&task, "sleep 1", &[&format!("CANARY={canary}")]).await;
        let seen = exec_in_agent_container(&task, "cat /tmp/seen-tokens || true", &[]).await;
        assert!(seen.contains(canary), "the watcher works: {seen:?}");

        // But it never saw the installation token used to clone and push.
        let minted = s.sim.minted_tokens();
        assert!(!minted.is_empty());
        for token in &minted {
            assert!(
                !seen.contains(token.as_str()),
                "the agent saw the token: {seen}"
            );
        }
        s.sim.comment(&s.repo, 26, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_prompt_on_a_pull_request_pushes_to_its_branch,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        let number = s
            .sim
            .open_pull(&s.repo, "feature/dates", None, ("DATES", "iso\n"));
        let bare = s.sim.bare_repo(&s.repo);
        let before = git(&bare, &["rev-parse", "feature/dates"]);
        s.sim
            .pr_comment(&s.repo, number, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        assert!(task.is_pull_request);
        assert_eq!(task.branch.as_deref(), Some("feature/dates"));
        assert_eq!(task.pr_number, Some(number));

        // The commit went onto the pull request's own branch, after the contributor's.
        assert_eq!(git(&bare, &["show", "feature/dates:FLAGS"]), "--json");
        assert_eq!(git(&bare, &["show", "feature/dates:DATES"]), "iso");
        assert_eq!(git(&bare, &["rev-parse", "feature/dates~1"]), before);
        assert_eq!(
            task.head_sha.as_ref().map(|h| h.as_str()),
            Some(git(&bare, &["rev-parse", "feature/dates"]).as_str())
        );
        // No new pull request; the status comment links the existing one. (It does from the
        // start, so the wait is for the state: the comment is edited just after it is stored.)
        assert_eq!(s.sim.pulls().len(), 1);
        let status = s.status_saying(number, "`awaiting_ci`").await;
        assert!(
            status.body.contains(&format!("/pull/{number}")),
            "{}",
            status.body
        );

        s.sim
            .pr_comment(&s.repo, number, "writer", "/amp stop")
            .await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_prompt_on_a_pull_request_from_a_fork_is_refused,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        let number = s
            .sim
            .open_pull(&s.repo, "patch-1", Some("someone/widgets"), ("X", "x\n"));
        let bare = s.sim.bare_repo(&s.repo);
        let before = git(&bare, &["rev-parse", "patch-1"]);
        s.sim
            .pr_comment(&s.repo, number, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("failed", 60).await;
        let reason = task.error_message.clone().unwrap();
        assert!(reason.contains("fork someone/widgets"), "{reason}");
        let status = s
            .status_saying(number, "cannot work on pull requests from forks")
            .await;
        assert!(status.body.contains("`failed`"), "{}", status.body);
        // Nothing was started or pushed.
        assert_eq!(git(&bare, &["rev-parse", "patch-1"]), before);
        assert!(
            !s.events(task.id)
                .await
                .iter()
                .any(|e| e.data.contains("Starting the agent container"))
        );
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_prompt_that_needs_no_change_succeeds_without_a_pr,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        s.sim
            .comment(&s.repo, 22, "writer", "/amp explain the readme")
            .await;
        let task = s.wait_for_state("succeeded", 90).await;
        assert!(s.sim.pulls().is_empty());
        let status = s.status_saying(22, "No changes were needed").await;
        assert!(
            status.body.contains("No changes were needed"),
            "{}",
            status.body
        );
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(stop_while_the_agent_runs, |db: TestDb| async move {
    let s = story(db, &[]).await;
    s.sim
        .comment(&s.repo, 23, "writer", "/amp work slowly")
        .await;
    s.wait_for_state("running", 60).await;
    s.sim.comment(&s.repo, 23, "writer", "/amp stop").await;
    let task = s.wait_for_state("cancelled", 30).await;
    s.assert_no_containers_for(&task).await;
    s.status_saying(23, "`cancelled`").await;
});

both_backends!(an_idle_agent_times_out, |db: TestDb| async move {
    let s = story(db, &[("AGENT_IDLE_TIMEOUT", "2s")]).await;
    s.sim
        .comment(&s.repo, 24, "writer", "/amp work slowly")
        .await;
    let task = s.wait_for_state("timed_out", 60).await;
    assert!(
        task.error_message
            .as_deref()
            .unwrap()
            .contains("AGENT_IDLE_TIMEOUT")
    );
    s.assert_no_containers_for(&task).await;
});

both_backends!(
    a_task_longer_than_the_wall_clock_limit_times_out,
    |db: TestDb| async move {
        let s = story(db, &[("TASK_TIMEOUT", "3s")]).await;
        s.sim
            .comment(&s.repo, 25, "writer", "/amp work slowly")
            .await;
        let task = s.wait_for_state("timed_out", 60).await;
        assert!(
            task.error_message
                .as_deref()
                .unwrap()
                .contains("TASK_TIMEOUT")
        );
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_missing_image_fails_the_task_with_a_reply,
    |db: TestDb| async move {
        let s = story(
            db,
            &[("AGENT_IMAGE", "amp-orchestrator-no-such-image:never")],
        )
        .await;
        s.sim
            .comment(&s.repo, 26, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("failed", 60).await;
        let status = s
            .status_saying(26, "not present on the Docker engine")
            .await;
        assert!(
            status.body.contains("not present on the Docker engine"),
            "{}",
            status.body
        );
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    without_an_amp_key_no_container_starts,
    |db: TestDb| async move {
        let s = story(db, &[("AMP_API_KEY", "")]).await;
        s.sim
            .comment(&s.repo, 27, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("failed", 60).await;
        assert!(
            task.error_message
                .as_deref()
                .unwrap()
                .contains("AMP_API_KEY")
        );
        let events = s.events(task.id).await;
        assert!(
            !events
                .iter()
                .any(|e| e.data.contains("Starting the agent container"))
        );
    }
);

/// Start a service on a runtime of its own (a thread) and return its address and a switch that
/// crashes it: the runtime is torn down mid-task, as far as the database and Docker can tell.
async fn crashable_service(
    env: std::collections::HashMap<String, String>,
) -> (String, impl FnOnce()) {
    let (base_tx, base_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let service = rt.block_on(TestService::start_full(env, tunables()));
        base_tx.send(service.base.clone()).unwrap();
        crash_rx.recv().unwrap();
        std::mem::forget(service);
        rt.shutdown_background();
    });
    let base = base_rx.await.unwrap();
    (base, move || {
        crash_tx.send(()).unwrap();
        thread.join().unwrap();
    })
}

async fn latest_task(conn: &DatabaseConnection, state: &str, secs: u64) -> task::Model {
    eventually(secs, &format!("the task is {state}"), || async {
        let t = task::Entity::find()
            .order_by_desc(task::Column::Id)
            .one(conn)
            .await
            .unwrap()?;
        (t.state.as_str() == state).then_some(t)
    })
    .await
}

both_backends!(
    a_crash_mid_task_resumes_in_the_surviving_container,
    |db: TestDb| async move {
        let sim = GitHubSim::start(SECRET).await;
        let repo =
            sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], STUB_FILES);
        let env = service_env(&db, &sim, &[]);
        let conn = db.connect().await;
        let (base, crash) = crashable_service(env.clone()).await;
        sim.deliver_to(&base);
        sim.comment(&repo, 31, "writer", "/amp stall then add a json flag")
            .await;
        // The agent is stuck in its first step when the service dies.
        let task = latest_task(&conn, "running", 60).await;
        eventually(30, "the agent stalls", || async {
            let events = task_event::Entity::find()
                .filter(task_event::Column::TaskId.eq(task.id))
                .all(&conn)
                .await
                .unwrap();
            events
                .iter()
                .any(|e| e.data.contains("stall.sh"))
                .then_some(())
        })
        .await;
        crash();

        // After a restart the task goes on in the same container, and the agent finishes.
        let second = TestService::start_full(env, tunables()).await;
        sim.deliver_to(&second.base);
        let task = latest_task(&conn, "awaiting_ci", 60).await;
        let bare = sim.bare_repo(&repo);
        let branch = task.branch.clone().unwrap();
        assert_eq!(git(&bare, &["show", &format!("{branch}:FLAGS")]), "--json");
        assert_eq!(sim.pulls().len(), 1);
        let events = task_event::Entity::find()
            .filter(task_event::Column::TaskId.eq(task.id))
            .order_by_asc(task_event::Column::Seq)
            .all(&conn)
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.data.contains("resuming it in its container")),
            "the log says it was resumed"
        );
        // The agent's second turn continued its thread.
        let inits: Vec<&task_event::Model> = events
            .iter()
            .filter(|e| e.data.contains("\"type\":\"init\""))
            .collect();
        assert_eq!(inits.len(), 2);
        assert!(
            inits[1]
                .data
                .contains(task.thread_id.as_ref().map(|t| t.as_str()).unwrap())
        );
        let status = eventually(20, "the status comment links the PR", || async {
            let status = sim.app_comments(&repo, 31).remove(0);
            status.body.contains("`awaiting_ci`").then_some(status)
        })
        .await;
        assert!(status.body.contains("/pull/"), "{}", status.body);
        assert_eq!(sim.app_comments(&repo, 31).len(), 1);
        // The container the task resumed in is the one it started in: still one, still there.
        let engine = Engine::connect(None).await.unwrap();
        let mine: Vec<_> = engine
            .owned(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|(t, c)| *t == task.public_id && !c.id.is_empty())
            .collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        sim.comment(&repo, 31, "writer", "/amp stop").await;
        latest_task(&conn, "cancelled", 30).await;
        assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_crash_that_loses_the_container_fails_the_task_and_retry_runs_it_again,
    |db: TestDb| async move {
        let sim = GitHubSim::start(SECRET).await;
        let repo =
            sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], STUB_FILES);
        let env = service_env(&db, &sim, &[]);
        let conn = db.connect().await;
        let (base, crash) = crashable_service(env.clone()).await;
        sim.deliver_to(&base);
        sim.comment(&repo, 32, "writer", "/amp work slowly").await;
        let task = latest_task(&conn, "running", 60).await;
        crash();
        // The engine loses the container with the service (a reboot, say).
        let engine = Engine::connect(None).await.unwrap();
        for (t, c) in engine.owned(None).await.unwrap() {
            if t == task.public_id {
                engine.remove(&c).await;
            }
        }

        let second = TestService::start_full(env, tunables()).await;
        sim.deliver_to(&second.base);
        let task = latest_task(&conn, "failed", 60).await;
        assert!(
            task.error_message
                .as_deref()
                .unwrap()
                .contains("container is gone"),
            "{:?}",
            task.error_message
        );
        let status = eventually(20, "the status comment says what happened", || async {
            let status = sim.app_comments(&repo, 32).remove(0);
            status.body.contains("`failed`").then_some(status)
        })
        .await;
        assert!(status.body.contains("/amp retry"), "{}", status.body);

        // `/amp retry` runs the same task again.
        sim.comment(&repo, 32, "writer", "/amp retry").await;
        let again = latest_task(&conn, "running", 60).await;
        assert_eq!(again.id, task.id);
        assert_eq!(again.error_message, None);
        assert_eq!(task::Entity::find().all(&conn).await.unwrap().len(), 1);
        sim.comment(&repo, 32, "writer", "/amp stop").await;
        let task = latest_task(&conn, "cancelled", 30).await;
        assert_no_containers_for(&task).await;
        // A task that succeeded has nothing to retry.
        sim.comment(&repo, 33, "writer", "/amp explain the readme")
            .await;
        latest_task(&conn, "succeeded", 60).await;
        sim.comment(&repo, 33, "writer", "/amp retry").await;
        eventually(20, "the reply says there is nothing to retry", || async {
            sim.app_comments(&repo, 33)
                .into_iter()
                .find(|c| c.body.contains("nothing to retry"))
        })
        .await;
    }
);

both_backends!(
    a_task_abandoned_before_its_agent_started_is_queued_again,
    |db: TestDb| async move {
        let sim = GitHubSim::start(SECRET).await;
        let repo =
            sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], STUB_FILES);
        let conn = db.connect().await;
        // A replica claimed the task and died while preparing it.
        let created = amp_orchestrator::store::tasks::create(
            &conn,
            amp_orchestrator::store::tasks::NewTask {
                installation_id: repo.installation_id,
                repo_id: repo.id,
                repo_full_name: repo.full_name(),
                clone_url: sim.clone_url(&repo),
                default_branch: "main".into(),
                issue_number: 34,
                is_pull_request: false,
                issue_title: "Flags".into(),
                issue_body: String::new(),
                requester_login: "writer".into(),
                requester_id: 1,
                comment_id: 1,
                delivery_id: None,
                prompt: "add a json flag".into(),
                repo_config: None,
            },
        )
        .await
        .unwrap()
        .unwrap()
        .0;
        let claimed = amp_orchestrator::store::tasks::claim_next(&conn, "dead-replica", 1)
            .await
            .unwrap()
            .unwrap()
            .task;
        assert_eq!(
            (claimed.id, claimed.state.as_str()),
            (created.id, "preparing")
        );

        let service = TestService::start_full(service_env(&db, &sim, &[]), tunables()).await;
        sim.deliver_to(&service.base);
        let task = latest_task(&conn, "awaiting_ci", 60).await;
        let events = task_event::Entity::find()
            .filter(task_event::Column::TaskId.eq(task.id))
            .all(&conn)
            .await
            .unwrap();
        assert!(events.iter().any(|e| e.data.contains("queued again")));
        assert_ne!(task.lease_owner.as_deref(), Some("dead-replica"));
        sim.comment(&repo, 34, "writer", "/amp stop").await;
        let task = latest_task(&conn, "cancelled", 30).await;
        assert_no_containers_for(&task).await;
    }
);

both_backends!(
    stop_reaches_a_task_running_on_another_replica,
    |db: TestDb| async move {
        let sim = GitHubSim::start(SECRET).await;
        let repo =
            sim.add_repo_with_files("octo-org/widgets", 77, &[("writer", "write")], STUB_FILES);
        let env = service_env(&db, &sim, &[]);
        let conn = db.connect().await;
        // One replica runs tasks; the other takes the webhooks.
        let _runner = TestService::start_full(env.clone(), tunables()).await;
        let mut front_env = env;
        front_env.insert("MAX_CONCURRENT_TASKS".into(), "0".into());
        let front = TestService::start_full(front_env, tunables()).await;
        sim.deliver_to(&front.base);
        sim.comment(&repo, 35, "writer", "/amp work slowly").await;
        latest_task(&conn, "running", 60).await;
        sim.comment(&repo, 35, "writer", "/amp stop").await;
        let task = latest_task(&conn, "cancelled", 30).await;
        let events = task_event::Entity::find()
            .filter(task_event::Column::TaskId.eq(task.id))
            .all(&conn)
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.data.contains("received by another replica")),
            "the stop went through the database"
        );
        assert_no_containers_for(&task).await;
        let status = eventually(20, "the status comment says cancelled", || async {
            let status = sim.app_comments(&repo, 35).remove(0);
            status.body.contains("`cancelled`").then_some(status)
        })
        .await;
        assert!(status.body.contains("/amp stop"), "{}", status.body);
    }
);

both_backends!(
    tasks_run_concurrently_up_to_the_limit,
    |db: TestDb| async move {
        let s = story(db, &[("MAX_CONCURRENT_TASKS", "2")]).await;
        for issue in [41, 42, 43] {
            s.sim
                .comment(&s.repo, issue, "writer", "/amp work slowly")
                .await;
        }
        let running = eventually(60, "two tasks run at once", || async {
            let tasks = task::Entity::find().all(&s.conn).await.unwrap();
            let running: Vec<_> = tasks
                .iter()
                .filter(|t| t.state == TaskState::Running)
                .cloned()
                .collect();
            (tasks.len() == 3 && running.len() == 2).then_some(running)
        })
        .await;
        let tasks = task::Entity::find().all(&s.conn).await.unwrap();
        assert_eq!(
            tasks
                .iter()
                .filter(|t| t.state == TaskState::Queued)
                .count(),
            1,
            "the third waits"
        );
        // Stopping one frees a slot for the third.
        let first = &running[0];
        s.sim
            .comment(&s.repo, first.issue_number, "writer", "/amp stop")
            .await;
        eventually(60, "the third task starts", || async {
            let tasks = task::Entity::find().all(&s.conn).await.unwrap();
            (tasks
                .iter()
                .filter(|t| t.state == TaskState::Running)
                .count()
                == 2
                && tasks
                    .iter()
                    .filter(|t| t.state == TaskState::Queued)
                    .count()
                    == 0)
                .then_some(())
        })
        .await;
        for issue in [41, 42, 43] {
            s.sim.comment(&s.repo, issue, "writer", "/amp stop").await;
        }
        eventually(60, "all stopped", || async {
            let tasks = task::Entity::find().all(&s.conn).await.unwrap();
            tasks
                .iter()
                .all(|t| t.state == TaskState::Cancelled)
                .then_some(())
        })
        .await;
    }
);

both_backends!(
    the_real_amp_cli_fails_with_its_own_words,
    |db: TestDb| async move {
        // The real CLI (from npm, pinned) against an Amp server that is not there: it exits 1 with the
        // reason on stderr and nothing on stdout; the task must fail with that reason, promptly.
        // Without the sandbox, so that the CLI itself meets the missing server (in the sandbox the
        // relay does: tests/egress.rs).
        let image = std::env::var("TEST_REAL_AMP_IMAGE")
            .expect("TEST_REAL_AMP_IMAGE is not set: run ./scripts/test.sh, which builds it");
        let s = story(
            db,
            &[
                ("AGENT_IMAGE", image.as_str()),
                ("AMP_URL", "http://127.0.0.1:9"),
                ("AGENT_EGRESS", "open"),
                ("AGENT_IDLE_TIMEOUT", "60s"),
            ],
        )
        .await;
        s.sim
            .comment(&s.repo, 28, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("failed", 90).await;
        let reason = task.error_message.clone().unwrap();
        assert!(
            reason.contains("Couldn't connect to the Amp server at http://127.0.0.1:9"),
            "{reason}"
        );
        s.status_saying(28, "Couldn't connect to the Amp server")
            .await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    an_unreachable_docker_engine_fails_tasks_and_readiness,
    |db: TestDb| async move {
        let s = story(
            db,
            &[
                ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
                ("ADMIN_TOKEN", "worker-admin-token-0123456789"),
            ],
        )
        .await;
        let readiness = |token: Option<&'static str>| {
            let mut request = s.service.http.get(s.service.url("/readyz"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                (status, response.json::<serde_json::Value>().await.unwrap())
            }
        };
        // Anyone learns that the engine fails; not where it is, nor which instance answered.
        let (status, ready) = readiness(None).await;
        assert_eq!(status, 503);
        assert_eq!(ready["database"], "ok");
        assert_eq!(ready["docker"], "failing", "{ready}");
        assert!(ready.get("instance").is_none(), "{ready}");
        // The admin learns what the engine said.
        let (status, ready) = readiness(Some("worker-admin-token-0123456789")).await;
        assert_eq!(status, 503);
        assert!(
            ready["docker"]
                .as_str()
                .unwrap()
                .contains("cannot be reached"),
            "{ready}"
        );
        assert!(ready["instance"].is_string(), "{ready}");

        s.sim
            .comment(&s.repo, 29, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("failed", 60).await;
        assert!(
            task.error_message
                .as_deref()
                .unwrap()
                .contains("Docker engine cannot be reached"),
            "{:?}",
            task.error_message
        );
        let status = s.status_saying(29, "Docker engine cannot be reached").await;
        // What the engine said (its address among it) is for the logs, not for the comment.
        for shown in [status.body.as_str(), task.error_message.as_deref().unwrap()] {
            assert!(!shown.contains("/nonexistent/docker.sock"), "{shown}");
            assert!(shown.contains("the service's logs"), "{shown}");
        }
    }
);

both_backends!(
    configured_values_never_reach_the_log,
    |db: TestDb| async move {
        let s = story(db, &[("REDACT_VALUES", "hunter2-deploy-key")]).await;
        s.sim.comment(&s.repo, 30, "writer", "/amp reveal it").await;
        let task = s.wait_for_state("succeeded", 90).await;
        let events = s.events(task.id).await;
        assert!(
            events
                .iter()
                .any(|e| e.data.contains("the deploy password is [REDACTED]")),
            "{events:?}"
        );
        assert!(!events.iter().any(|e| e.data.contains("hunter2-deploy-key")));
    }
);

both_backends!(
    a_pull_request_opened_without_the_answer_arriving_is_found_and_used,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        // GitHub opens the pull request, but its answer is lost; the retried call finds it
        // exists already.
        s.sim.inject(
            axum::http::Method::POST,
            "/pulls",
            common::github_sim::Fault::LostAnswer(502),
        );
        s.sim
            .comment(&s.repo, 71, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        let pulls = s.sim.pulls();
        assert_eq!(pulls.len(), 1);
        assert_eq!(task.pr_number, Some(pulls[0].number));
        let events = s.events(task.id).await;
        assert!(events.iter().any(|e| e.data.contains("was open already")));
        s.sim.comment(&s.repo, 71, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

/// Run `prompt` on `issue` while opening the pull request keeps failing: the branch is pushed,
/// the task fails without a pull request.
async fn pushed_without_a_pull_request(s: &Story, issue: i64, prompt: &str) -> task::Model {
    for _ in 0..4 {
        s.sim.inject(
            axum::http::Method::POST,
            "/pulls",
            common::github_sim::Fault::Status(500),
        );
    }
    s.sim.comment(&s.repo, issue, "writer", prompt).await;
    let failed = s.wait_for_state("failed", 90).await;
    assert!(
        failed
            .error_message
            .as_deref()
            .unwrap()
            .contains("opening the pull request failed"),
        "{:?}",
        failed.error_message
    );
    assert!(s.sim.pulls().is_empty());
    failed
}

both_backends!(
    a_retry_after_the_branch_was_pushed_without_a_pull_request_goes_on_from_that_branch,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        let failed = pushed_without_a_pull_request(&s, 72, "/amp add a json flag").await;
        let branch = failed.branch.clone().unwrap();
        let bare = s.sim.bare_repo(&s.repo);
        let first = git(&bare, &["rev-parse", &branch]);

        // The retry builds on the pushed branch, so its push is a fast-forward.
        s.sim.comment(&s.repo, 72, "writer", "/amp retry").await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        assert_eq!(task.id, failed.id);
        assert_eq!(s.sim.pulls().len(), 1);
        let history = git(&bare, &["rev-list", &format!("main..{branch}")]);
        assert_eq!(history.lines().count(), 2, "{history}");
        assert!(
            history.lines().any(|c| c == first),
            "the first commit is kept"
        );
        let events = s.events(task.id).await;
        assert!(
            events
                .iter()
                .any(|e| e.data.contains("Continuing on the existing branch"))
        );
        s.sim.comment(&s.repo, 72, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_retry_with_nothing_new_still_opens_the_missing_pull_request,
    |db: TestDb| async move {
        let s = story(db, &[]).await;
        let failed = pushed_without_a_pull_request(&s, 73, "/amp write the once file").await;
        // The branch already holds the change; the retry adds nothing, and opens the pull
        // request the first run could not.
        s.sim.comment(&s.repo, 73, "writer", "/amp retry").await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        assert_eq!(task.id, failed.id);
        let pulls = s.sim.pulls();
        assert_eq!(pulls.len(), 1);
        assert_eq!(task.pr_number, Some(pulls[0].number));
        let bare = s.sim.bare_repo(&s.repo);
        let branch = task.branch.clone().unwrap();
        let history = git(&bare, &["rev-list", &format!("main..{branch}")]);
        assert_eq!(history.lines().count(), 1, "{history}");
        s.sim.comment(&s.repo, 73, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);
