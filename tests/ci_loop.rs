//! The CI loop end to end: the real service and worker, the agent image with the stub `amp`, and
//! the GitHub simulator, which runs the repository's real `ci.sh` on every push and reports it as a
//! check suite (with annotations and a job log) and a `check_suite` webhook.

mod common;

use amp_orchestrator::domain::{TaskId, TaskState};
use amp_orchestrator::entities::{delivery, task, task_event, task_round};
use common::github_sim::git::git;
use common::story::{Story, story_with};
use common::{TestDb, eventually};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

/// `ci.sh` fails while `count.txt` is not 3, while `stock.txt` exists (its error line changes
/// with the file), while `stuck.txt` exists (always the same error), and while `lint-broken`
/// exists (on the default branch too, when a test adds it there).
const CI_SH: &str = "\
set -e
echo 'running widget tests'
if [ -f count.txt ] && [ \"$(cat count.txt)\" != 3 ]; then
  echo \"::error file=count.txt,line=1::count-is-wrong: expected 3, got $(cat count.txt)\"
  echo 'test widgets::count ... FAILED'
  exit 1
fi
if [ -f lint-broken ]; then
  echo '::error file=lint-broken,line=1::lint-broken: the linter rejects this repository'
  exit 1
fi
if [ -f stock.txt ]; then
  echo \"::error file=stock.txt,line=1::stock-mismatch: $(cat stock.txt)\"
  exit 1
fi
if [ -f stuck.txt ]; then
  echo '::error file=stuck.txt,line=1::stuck-failure: the same every time'
  exit 1
fi
echo 'all tests passed'
";

/// What the stub agent does for words in its prompt. The fix for the counter runs only when the
/// failure report (which names `count-is-wrong`) reaches it. (No step is named after a file the
/// report mentions: the stub would run it again on the report.)
const AGENT_STEPS: &[(&str, &str)] = &[
    (".amp-stub/counter.sh", "echo 2 > count.txt\n"),
    (".amp-stub/count-is-wrong.sh", "echo 3 > count.txt\n"),
    (".amp-stub/inventory.sh", "echo a > stock.txt\n"),
    (
        ".amp-stub/stock-mismatch.sh",
        "v=$(cat stock.txt); echo \"${v}x\" > stock.txt\n",
    ),
    (".amp-stub/blocker.sh", "echo a > stuck.txt\n"),
    (".amp-stub/stuck-failure.sh", "date >> notes.txt\n"),
    (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n"),
];

fn files(with_ci: bool) -> Vec<(&'static str, &'static str)> {
    let mut files = vec![("README.md", "# widgets\n")];
    files.extend_from_slice(AGENT_STEPS);
    if with_ci {
        files.push(("ci.sh", CI_SH));
    }
    files
}

async fn ci_story(db: TestDb, extra: &[(&str, &str)]) -> Story {
    story_with(db, extra, &files(true)).await
}

async fn rounds(s: &Story, task_id: amp_orchestrator::domain::TaskId) -> Vec<task_round::Model> {
    task_round::Entity::find()
        .filter(task_round::Column::TaskId.eq(task_id))
        .order_by_asc(task_round::Column::Id)
        .all(&s.conn)
        .await
        .unwrap()
}

async fn task_by_id(s: &Story, id: TaskId) -> task::Model {
    task::Entity::find_by_id(id)
        .one(&s.conn)
        .await
        .unwrap()
        .unwrap()
}

both_backends!(
    a_ci_failure_goes_back_to_the_agent_until_the_checks_pass,
    |db: TestDb| async move {
        let s = ci_story(db, &[]).await;
        s.sim
            .comment(&s.repo, 51, "writer", "/amp add the counter")
            .await;
        // The first push fails CI. Its webhook is delivered twice more at once, as GitHub may.
        let first = eventually(90, "the first check suite", || async {
            s.sim.check_suites().into_iter().next()
        })
        .await;
        assert_eq!(first.conclusion, "failure");
        tokio::join!(
            s.sim.resend_check_suite(first.id, "completed"),
            s.sim.resend_check_suite(first.id, "completed"),
            s.sim.resend_check_suite(first.id, "requested"),
        );
        let task = s.wait_for_state("succeeded", 120).await;

        // One round: the report reached the agent, which fixed the count.
        let rounds = rounds(&s, task.id).await;
        assert_eq!(rounds.len(), 1, "{rounds:?}");
        assert_eq!(rounds[0].kind.as_str(), "ci");
        assert_eq!(rounds[0].outcome.map(|o| o.as_str()), Some("pushed"));
        assert_eq!(
            rounds[0].head_sha.as_ref().map(|h| h.as_str()),
            Some(first.head_sha.as_str())
        );
        assert!(
            rounds[0]
                .prompt
                .contains("count-is-wrong: expected 3, got 2")
        );
        assert!(rounds[0].prompt.contains("count.txt:1: count-is-wrong"));
        assert!(rounds[0].prompt.contains("test widgets::count ... FAILED"));
        assert_eq!(task.ci_round, 1);
        let bare = s.sim.bare_repo(&s.repo);
        let branch = task.branch.clone().unwrap();
        assert_eq!(git(&bare, &["show", &format!("{branch}:count.txt")]), "3");
        assert_eq!(rounds[0].result_sha, task.head_sha);
        let events: Vec<task_event::Model> = task_event::Entity::find()
            .filter(task_event::Column::TaskId.eq(task.id))
            .all(&s.conn)
            .await
            .unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.data.contains("count-is-wrong.sh") && e.data.contains("tool_use"))
        );
        // The second turn continued the first one's Amp thread.
        let thread = task.thread_id.clone().unwrap();
        let inits = events
            .iter()
            .filter(|e| e.data.contains("\"type\":\"init\"") && e.data.contains(thread.as_str()))
            .count();
        assert_eq!(inits, 2);

        // The pull request is ready, the requester asked to review; two CI runs.
        let pull = s.sim.pulls().remove(0);
        assert!(!pull.draft);
        assert_eq!(pull.reviewers, ["writer"]);
        let suites = s.sim.check_suites();
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[1].conclusion, "success");
        let status = s.status_saying(51, "All checks passed").await;
        assert!(status.body.contains("`succeeded`"), "{}", status.body);
        assert!(
            status
                .body
                .contains("CI round 1: `ci` (failure) failed → pushed"),
            "{}",
            status.body
        );
        assert!(
            status.body.contains(&format!("#{}", pull.number)),
            "{}",
            status.body
        );
        s.assert_no_containers_for(&task).await;

        // Late and repeated deliveries change nothing: a stale commit, a finished task.
        s.sim.resend_check_suite(first.id, "completed").await;
        s.sim.resend_check_suite(suites[1].id, "completed").await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert_eq!(task_by_id(&s, task.id).await.state, TaskState::Succeeded);
        assert_eq!(self::rounds(&s, task.id).await.len(), 1);
        assert_eq!(s.sim.app_comments(&s.repo, 51).len(), 1);
    }
);

both_backends!(
    the_loop_gives_up_after_max_ci_rounds,
    |db: TestDb| async move {
        let s = ci_story(db, &[("MAX_CI_ROUNDS", "2")]).await;
        s.sim
            .comment(&s.repo, 52, "writer", "/amp add the inventory")
            .await;
        let task = s.wait_for_state("needs_human", 150).await;
        let rounds = rounds(&s, task.id).await;
        let kinds: Vec<(&str, Option<&str>)> = rounds
            .iter()
            .map(|r| (r.kind.as_str(), r.outcome.map(|o| o.as_str())))
            .collect();
        assert_eq!(
            kinds,
            [
                ("ci", Some("pushed")),
                ("ci", Some("pushed")),
                ("ci", Some("gave_up"))
            ]
        );
        assert_eq!(task.ci_round, 2);
        assert_eq!(s.sim.check_suites().len(), 3);
        assert!(s.sim.pulls()[0].draft, "the pull request stays a draft");
        let status = s.status_saying(52, "`needs_human`").await;
        assert!(status.body.contains("after 2 rounds"), "{}", status.body);
        assert!(status.body.contains("/amp retry"), "{}", status.body);
        assert!(status.body.contains("`ci` (failure)"), "{}", status.body);
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    the_same_failure_twice_stops_early_and_retry_starts_again,
    |db: TestDb| async move {
        let s = ci_story(db, &[]).await;
        s.sim
            .comment(&s.repo, 53, "writer", "/amp add the blocker")
            .await;
        let task = s.wait_for_state("needs_human", 120).await;
        let kinds: Vec<(String, Option<String>)> = rounds(&s, task.id)
            .await
            .into_iter()
            .map(|r| {
                (
                    r.kind.as_str().to_string(),
                    r.outcome.map(|o| o.as_str().to_string()),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("ci".to_string(), Some("pushed".to_string())),
                ("ci".to_string(), Some("gave_up".to_string()))
            ]
        );
        let status = s.status_saying(53, "exactly as before").await;
        assert!(status.body.contains("`needs_human`"), "{}", status.body);

        // `/amp retry` gives Amp the failure again, with the rounds counted afresh.
        s.sim.comment(&s.repo, 53, "writer", "/amp retry").await;
        eventually(
            120,
            "the retry round ran and the loop ended again",
            || async {
                let rounds = rounds(&s, task.id).await;
                let t = task_by_id(&s, task.id).await;
                (t.state == TaskState::NeedsHuman && rounds.len() >= 5).then_some(())
            },
        )
        .await;
        let rounds = rounds(&s, task.id).await;
        assert_eq!(rounds[2].kind.as_str(), "retry");
        assert_eq!(rounds[2].outcome.map(|o| o.as_str()), Some("pushed"));
        assert!(rounds[2].prompt.contains("stuck-failure"));
        assert_eq!(s.sim.check_suites().len(), 4);
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(a_red_base_branch_is_reported, |db: TestDb| async move {
    let s = ci_story(db, &[("MAX_CI_ROUNDS", "1")]).await;
    // The default branch is already red.
    let bare = s.sim.bare_repo(&s.repo);
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["clone", "-q", bare.to_str().unwrap(), "."]);
    std::fs::write(work.path().join("lint-broken"), "yes\n").unwrap();
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "Break the linter"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    s.sim.run_ci_on(&s.repo, "main").await;
    assert_eq!(s.sim.check_suites()[0].conclusion, "failure");

    s.sim
        .comment(&s.repo, 54, "writer", "/amp add the counter")
        .await;
    let task = s.wait_for_state("needs_human", 120).await;
    let rounds = rounds(&s, task.id).await;
    assert!(
        rounds[0]
            .prompt
            .contains("the base branch's own checks fail too (`ci`)"),
        "{}",
        rounds[0].prompt
    );
    let status = s.status_saying(54, "`needs_human`").await;
    assert!(
        status.body.contains("The base branch is already failing"),
        "{}",
        status.body
    );
});

both_backends!(
    a_repository_without_ci_gets_a_ready_pull_request_after_the_wait,
    |db: TestDb| async move {
        let s = story_with(db, &[("CI_WAIT_TIMEOUT", "2s")], &files(false)).await;
        s.sim
            .comment(&s.repo, 55, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("succeeded", 90).await;
        assert!(s.sim.check_suites().is_empty());
        let pull = s.sim.pulls().remove(0);
        assert!(!pull.draft);
        let status = s.status_saying(55, "taken to have no CI").await;
        assert!(status.body.contains("`succeeded`"), "{}", status.body);
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    a_commit_status_counts_like_a_check_run,
    |db: TestDb| async move {
        let s = story_with(db, &[("CI_WAIT_TIMEOUT", "2s")], &files(false)).await;
        s.sim
            .comment(&s.repo, 56, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        let sha = task.head_sha.clone().unwrap().0;
        // An external CI is still running: past the wait, the task keeps waiting.
        s.sim.add_status(&s.repo, &sha, "ci/external", "pending");
        tokio::time::sleep(std::time::Duration::from_secs(4)).await;
        assert_eq!(task_by_id(&s, task.id).await.state, TaskState::AwaitingCi);
        // Then it passes.
        s.sim.add_status(&s.repo, &sha, "ci/external", "success");
        s.wait_for_state("succeeded", 30).await;
        s.status_saying(56, "All checks passed").await;
    }
);

both_backends!(
    a_follow_up_on_the_pull_request_continues_in_the_same_container,
    |db: TestDb| async move {
        let s = story_with(db, &[("CI_WAIT_TIMEOUT", "10m")], &files(false)).await;
        s.sim
            .comment(&s.repo, 57, "writer", "/amp add the counter")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        let engine = amp_orchestrator::docker::Engine::connect(None)
            .await
            .unwrap();
        let containers = |public_id: String| {
            let engine = engine.clone();
            async move {
                engine
                    .owned(None)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|(t, c)| *t == public_id && !c.id.is_empty())
                    .map(|(_, c)| c.id)
                    .collect::<Vec<_>>()
            }
        };
        let before = containers(task.public_id.clone()).await;
        assert_eq!(before.len(), 1);
        let pr = task.pr_number.unwrap();

        let (_, delivery) = s
            .sim
            .pr_comment(&s.repo, pr, "writer", "/amp also add a json flag")
            .await;
        eventually(90, "the follow-up is pushed", || async {
            let rounds = rounds(&s, task.id).await;
            let t = task_by_id(&s, task.id).await;
            (t.state == TaskState::AwaitingCi
                && rounds.first()?.outcome.map(|o| o.as_str()) == Some("pushed"))
            .then_some(())
        })
        .await;

        // The same delivery handled once more (as after a worker died before recording that it
        // was done) starts nothing.
        s.conn
            .execute_raw(sea_orm::Statement::from_string(
                s.conn.get_database_backend(),
                format!(
                    "UPDATE deliveries SET status = 'pending', lease_owner = NULL, \
                     lease_until = NULL, processed_at = NULL WHERE delivery_id = '{delivery}'"
                ),
            ))
            .await
            .unwrap();
        s.service.ctx().inbox_wakeup.notify_one();
        eventually(30, "the delivery is handled again", || async {
            let d = amp_orchestrator::entities::delivery::Entity::find()
                .filter(
                    amp_orchestrator::entities::delivery::Column::DeliveryId.eq(delivery.as_str()),
                )
                .one(&s.conn)
                .await
                .unwrap()?;
            (d.status == "done" && d.attempts == 2).then_some(())
        })
        .await;
        assert_eq!(
            rounds(&s, task.id).await.len(),
            1,
            "no second follow-up round"
        );
        assert_eq!(task_by_id(&s, task.id).await.state, TaskState::AwaitingCi);
        let task = task_by_id(&s, task.id).await;
        let bare = s.sim.bare_repo(&s.repo);
        let branch = task.branch.clone().unwrap();
        assert_eq!(git(&bare, &["show", &format!("{branch}:FLAGS")]), "--json");
        assert_eq!(git(&bare, &["show", &format!("{branch}:count.txt")]), "2");
        assert_eq!(s.sim.pulls().len(), 1, "no second pull request");
        assert_eq!(
            containers(task.public_id.clone()).await,
            before,
            "the same container"
        );
        let rounds = rounds(&s, task.id).await;
        assert_eq!(rounds[0].kind.as_str(), "follow_up");
        assert!(rounds[0].prompt.contains("also add a json flag"));
        assert!(
            s.sim
                .app_comments(&s.repo, pr)
                .iter()
                .any(|c| c.body.contains("same branch and thread"))
        );
        s.sim.comment(&s.repo, 57, "writer", "/amp stop").await;
        let task = s.wait_for_state("cancelled", 30).await;
        s.assert_no_containers_for(&task).await;
    }
);

both_backends!(
    ci_that_never_finishes_hands_the_task_to_a_person,
    |db: TestDb| async move {
        let s = story_with(db, &[("CI_WAIT_TIMEOUT", "2s")], &files(false)).await;
        s.sim
            .comment(&s.repo, 58, "writer", "/amp add a json flag")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        // A check that is queued and never runs (no runner, an approval nobody gives).
        s.sim.add_status(
            &s.repo,
            task.head_sha.as_ref().unwrap().as_str(),
            "ci/external",
            "pending",
        );
        let task = s.wait_for_state("needs_human", 30).await;
        assert!(
            task.error_message
                .as_deref()
                .unwrap()
                .contains("seems stuck"),
            "{:?}",
            task.error_message
        );
        assert!(s.sim.pulls()[0].draft, "the pull request stays a draft");
        s.status_saying(58, "seems stuck").await;
        s.assert_no_containers_for(&task).await;
    }
);

/// Wait until task `id` is in `state`.
async fn task_reaches(s: &Story, id: TaskId, state: TaskState, secs: u64) -> task::Model {
    eventually(secs, &format!("task {id} is {state}"), || async {
        let task = task_by_id(s, id).await;
        (task.state == state).then_some(task)
    })
    .await
}

both_backends!(
    a_pull_request_closed_or_merged_while_it_waits_ends_its_task,
    |db: TestDb| async move {
        let mut repo_files = files(false);
        repo_files.push((".amp-stub/slowly.sh", "sleep 300\n"));
        let s = story_with(db, &[("CI_WAIT_TIMEOUT", "10m")], &repo_files).await;
        let mut waiting = Vec::new();
        for issue in [61, 62, 63] {
            s.sim
                .comment(&s.repo, issue, "writer", "/amp add the counter")
                .await;
            let task = eventually(90, "the task waits for CI", || async {
                let newest = s.wait_for_state("awaiting_ci", 90).await;
                (newest.issue_number == issue).then_some(newest)
            })
            .await;
            waiting.push(task);
        }
        let (closed, merged, still_open) = (&waiting[0], &waiting[1], &waiting[2]);
        let pr = |t: &task::Model| t.pr_number.unwrap();

        // Closed without merging: cancelled, its container gone, the status comment says who.
        s.sim.close_pull(pr(closed), false, "writer").await;
        task_reaches(&s, closed.id, TaskState::Cancelled, 30).await;
        let status = s
            .status_saying(61, &format!("#{} was closed by @writer", pr(closed)))
            .await;
        assert!(status.body.contains("`cancelled`"), "{}", status.body);
        s.assert_no_containers_for(closed).await;

        // Merged: the work is in, the task succeeded.
        s.sim.close_pull(pr(merged), true, "writer").await;
        task_reaches(&s, merged.id, TaskState::Succeeded, 30).await;
        let status = s
            .status_saying(62, &format!("#{} was merged by @writer", pr(merged)))
            .await;
        assert!(status.body.contains("`succeeded`"), "{}", status.body);
        s.assert_no_containers_for(merged).await;

        // A signed `closed` delivery replayed for a pull request that is open (as after a
        // reopen) ends nothing: GitHub's own answer says it is open.
        let mut replay = s
            .sim
            .hook_deliveries()
            .into_iter()
            .find(|d| d.event == "pull_request")
            .unwrap()
            .payload;
        replay["number"] = pr(still_open).into();
        replay["pull_request"]["number"] = pr(still_open).into();
        let status = s
            .sim
            .send_webhook("pull_request", "replayed-close", &replay)
            .await;
        assert_eq!(status, 202);
        eventually(20, "the replayed delivery is handled", || async {
            let delivery = delivery::Entity::find()
                .filter(delivery::Column::DeliveryId.eq("replayed-close"))
                .one(&s.conn)
                .await
                .unwrap()?;
            (delivery.status == "ignored").then_some(delivery)
        })
        .await;
        assert_eq!(
            task_by_id(&s, still_open.id).await.state,
            TaskState::AwaitingCi
        );

        // Closed while the agent works on a follow-up: stopped, saying why.
        s.sim
            .pr_comment(&s.repo, pr(still_open), "writer", "/amp slowly")
            .await;
        task_reaches(&s, still_open.id, TaskState::Fixing, 30).await;
        eventually(30, "the agent is at work", || async {
            let events = s.events(still_open.id).await;
            let agent_runs = events.iter().filter(|e| e.data.contains("Starting Amp"));
            (agent_runs.count() >= 2).then_some(())
        })
        .await;
        s.sim.close_pull(pr(still_open), false, "writer").await;
        task_reaches(&s, still_open.id, TaskState::Cancelled, 30).await;
        let status = s
            .status_saying(63, &format!("#{} was closed by @writer", pr(still_open)))
            .await;
        assert!(!status.body.contains("/amp stop"), "{}", status.body);
        s.assert_no_containers_for(still_open).await;
    }
);

both_backends!(
    what_people_ask_while_a_round_runs_is_taken_by_the_next_round_in_order,
    |db: TestDb| async move {
        let mut repo_files = files(false);
        repo_files.push((".amp-stub/leisurely.sh", "sleep 8\n"));
        repo_files.push((".amp-stub/patiently.sh", "sleep 300\n"));
        let s = story_with(db, &[("CI_WAIT_TIMEOUT", "10m")], &repo_files).await;
        s.sim.add_collaborator(&s.repo, "maintainer", "maintain");
        s.sim
            .comment(&s.repo, 64, "writer", "/amp add the counter")
            .await;
        let task = s.wait_for_state("awaiting_ci", 90).await;
        let pr = task.pr_number.unwrap();

        // A round that takes a while; two people ask for more while it runs.
        s.sim
            .pr_comment(&s.repo, pr, "writer", "/amp take it leisurely")
            .await;
        task_reaches(&s, task.id, TaskState::Fixing, 30).await;
        s.sim
            .pr_comment(&s.repo, pr, "maintainer", "/amp also add json output")
            .await;
        s.sim
            .pr_comment(&s.repo, pr, "writer", "/amp and document the flag")
            .await;
        let replies = eventually(30, "both are answered", || async {
            let replies: Vec<_> = s
                .sim
                .app_comments(&s.repo, pr)
                .into_iter()
                .filter(|c| c.body.contains("next round"))
                .collect();
            (replies.len() == 2).then_some(replies)
        })
        .await;
        // Each is answered (the two deliveries are handled at once, in either order).
        for login in ["@maintainer", "@writer"] {
            assert!(
                replies.iter().any(|r| r.body.starts_with(login)),
                "{replies:?}"
            );
        }
        assert!(
            s.sim
                .app_comments(&s.repo, pr)
                .iter()
                .all(|c| !c.body.contains("already running")),
            "nothing was refused"
        );

        // The round ends; the next one has both requests, in order, with who asked.
        let next = eventually(60, "a round takes both requests", || async {
            rounds(&s, task.id)
                .await
                .into_iter()
                .find(|r| r.prompt.contains("1. From @maintainer"))
        })
        .await;
        let first = next.prompt.find("also add json output").unwrap();
        let second = next
            .prompt
            .find("2. From @writer:\n\nand document the flag")
            .unwrap();
        assert!(first < second, "{}", next.prompt);
        assert_eq!(next.requested_by.as_deref(), Some("maintainer"));
        // It runs and the task waits for CI again, in the same container.
        eventually(60, "the follow-up round is done", || async {
            let done = rounds(&s, task.id)
                .await
                .into_iter()
                .all(|r| r.outcome.is_some());
            let waiting = task_by_id(&s, task.id).await.state == TaskState::AwaitingCi;
            (done && waiting).then_some(())
        })
        .await;
        let events = s.events(task.id).await;
        assert!(
            events
                .iter()
                .any(|e| e.data.contains("follow-up from @maintainer and @writer")),
            "the timeline says who asked"
        );

        // A stop drops what waits for the next round: nothing starts after it.
        s.sim
            .pr_comment(&s.repo, pr, "writer", "/amp take it patiently")
            .await;
        task_reaches(&s, task.id, TaskState::Fixing, 30).await;
        s.sim
            .pr_comment(&s.repo, pr, "maintainer", "/amp one more thing")
            .await;
        eventually(30, "the request is queued", || async {
            let replies = s.sim.app_comments(&s.repo, pr);
            (replies
                .iter()
                .filter(|c| c.body.contains("next round"))
                .count()
                == 3)
                .then_some(())
        })
        .await;
        s.sim.pr_comment(&s.repo, pr, "writer", "/amp stop").await;
        task_reaches(&s, task.id, TaskState::Cancelled, 30).await;
        eventually(20, "the log says the request was dropped", || async {
            let events = s.events(task.id).await;
            events
                .iter()
                .any(|e| {
                    e.data
                        .contains("A request made for the next round was dropped")
                })
                .then_some(())
        })
        .await;
        let rounds_then = rounds(&s, task.id).await.len();
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        assert_eq!(
            task_by_id(&s, task.id).await.state,
            TaskState::Cancelled,
            "no round starts after the stop"
        );
        assert_eq!(rounds(&s, task.id).await.len(), rounds_then);
    }
);
