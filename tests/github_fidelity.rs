//! Stories where real GitHub differs from the easy case: a private repository without draft pull
//! requests, an installation that has not granted every permission the App asks for, a workflow
//! that does not start, and a change to workflow files the App may not push. The real service and
//! worker, the agent image with the stub `amp`, and the GitHub simulator, which enforces what
//! GitHub enforces. What they test is GitHub's behaviour, not storage: they run on SQLite.

mod common;

use amp_orchestrator::entities::task_round;
use common::github_sim::git::git;
use common::story::{Story, story_with};
use common::{Backend, TestDb, eventually};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

const PASSING_CI: (&str, &str) = ("ci.sh", "echo 'all tests passed'\n");
const JSON_STEP: (&str, &str) = (".amp-stub/json.sh", "printf -- '--json\\n' >> FLAGS\n");

async fn story(extra: &[(&str, &str)], files: &[(&str, &str)]) -> Story {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut all = vec![("README.md", "# widgets\n")];
    all.extend_from_slice(files);
    story_with(db, extra, &all).await
}

/// The manifest's permissions without `statuses`: an installation made before the App asked for
/// it, whose owner has not accepted the new request.
const WITHOUT_STATUSES: &[(&str, &str)] = &[
    ("contents", "write"),
    ("issues", "write"),
    ("pull_requests", "write"),
    ("checks", "read"),
    ("actions", "read"),
    ("metadata", "read"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_draft_pull_requests_a_marked_regular_one_is_opened_and_made_ready() {
    let s = story(&[], &[PASSING_CI, JSON_STEP]).await;
    let repo = s.sim.update_repo(&s.repo, |r| {
        r.private = true;
        r.drafts = false;
    });
    s.sim.comment(&repo, 31, "writer", "/amp add json").await;
    let task = s.wait_for_state("succeeded", 120).await;

    let pulls = s.sim.pulls();
    assert_eq!(pulls.len(), 1);
    let pull = &pulls[0];
    assert!(!pull.draft);
    assert!(
        pull.body.contains("does not support draft pull requests"),
        "{}",
        pull.body
    );
    // Ready for review: the mark is gone from the title, a comment says so, the requester is
    // asked to review; no GraphQL call for a pull request that was never a draft.
    assert!(!pull.title.starts_with("[WIP]"), "{}", pull.title);
    assert_eq!(pull.reviewers, ["writer"]);
    eventually(10, "one comment saying it is ready", || async {
        let said = s.sim.app_comments(&repo, pull.number);
        (said.len() == 1 && said[0].body.contains("Ready for review")).then_some(())
    })
    .await;
    assert!(s.sim.requests("POST", "/graphql").is_empty());
    assert_eq!(task.pr_number, Some(pull.number));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_the_app_may_not_read_end_the_wait_with_the_reason() {
    let s = story(&[], &[PASSING_CI, JSON_STEP]).await;
    s.sim
        .set_installation_permissions(s.repo.installation_id, WITHOUT_STATUSES);
    s.sim.comment(&s.repo, 32, "writer", "/amp add json").await;
    let task = s.wait_for_state("needs_human", 120).await;
    let note = task.status_note.clone().unwrap_or_default();
    assert!(note.contains("GitHub refused to show"), "{note}");
    assert!(
        note.contains("Resource not accessible by integration"),
        "{note}"
    );
    // Said on the issue too, and the pull request stays a draft.
    s.status_saying(32, "GitHub refused to show").await;
    assert!(s.sim.pulls()[0].draft);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_that_does_not_start_is_a_failure_with_its_reason() {
    let workflow = (
        ".github/workflows/ci.yml",
        "# sim: startup_failure\non: push\njobs: {}\n",
    );
    let s = story(&[("MAX_CI_ROUNDS", "1")], &[workflow, JSON_STEP]).await;
    s.sim.comment(&s.repo, 33, "writer", "/amp add json").await;
    let task = s.wait_for_state("needs_human", 120).await;
    let suites = s.sim.check_suites();
    assert_eq!(suites[0].conclusion, "startup_failure");
    assert!(suites[0].runs.is_empty());
    let rounds = task_round::Entity::find()
        .filter(task_round::Column::TaskId.eq(task.id))
        .all(&s.conn)
        .await
        .unwrap();
    assert_eq!(rounds.len(), 1, "{rounds:?}");
    assert!(
        rounds[0].prompt.contains("startup_failure"),
        "{}",
        rounds[0].prompt
    );
    assert!(
        rounds[0].prompt.contains("did not start"),
        "{}",
        rounds[0].prompt
    );
    assert!(s.sim.pulls()[0].draft, "never taken for a pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_workflow_files_is_kept_on_the_task_page_not_pushed() {
    let step = (
        ".amp-stub/release.sh",
        "mkdir -p .github/workflows && printf 'on: push\\n' > .github/workflows/release.yml\n",
    );
    let s = story(&[], &[PASSING_CI, step]).await;
    s.sim
        .comment(&s.repo, 34, "writer", "/amp add a release workflow")
        .await;
    let task = s.wait_for_state("needs_human", 120).await;
    let note = task.status_note.clone().unwrap_or_default();
    assert!(note.contains("`.github/workflows/release.yml`"), "{note}");
    assert!(note.contains("`workflows` permission"), "{note}");
    // Nothing was pushed and no pull request opened.
    let bare = s.sim.bare_repo(&s.repo);
    let branches = git(&bare, &["branch", "--format=%(refname:short)"]);
    assert_eq!(branches, "main");
    assert!(s.sim.pulls().is_empty());
    // The change is on the task page, as a patch.
    let events = eventually(10, "the patch among the task's events", || async {
        let events = s.events(task.id).await;
        events
            .iter()
            .any(|e| e.data.contains("git apply") && e.data.contains("release.yml"))
            .then_some(events)
    })
    .await;
    assert!(!events.is_empty());
    let page = s
        .service
        .http
        .get(format!("{}/tasks/{}", s.service.base, task.public_id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("+on: push"), "the patch is on the task page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_pull_requests_and_deleted_forks_are_refused_with_the_reason() {
    let s = story(&[], &[PASSING_CI, JSON_STEP]).await;
    let merged = s.sim.open_pull(&s.repo, "done", None, ("X", "x\n"));
    s.sim.close_pull(merged, true, "writer").await;
    s.sim
        .pr_comment(&s.repo, merged, "writer", "/amp add json")
        .await;
    let task = s.wait_for_state("failed", 60).await;
    let reason = task.error_message.clone().unwrap_or_default();
    assert!(reason.contains(&format!("#{merged} is closed")), "{reason}");

    let orphan = s
        .sim
        .open_pull(&s.repo, "patch-2", Some("someone/widgets"), ("Y", "y\n"));
    s.sim.delete_head_repo(orphan);
    s.sim
        .pr_comment(&s.repo, orphan, "writer", "/amp add json")
        .await;
    let task = eventually(60, "the second task fails", || async {
        let t = s.wait_for_state("failed", 60).await;
        (t.issue_number == orphan).then_some(t)
    })
    .await;
    let reason = task.error_message.clone().unwrap_or_default();
    assert!(reason.contains("no longer exists"), "{reason}");
    assert!(s.sim.pulls().iter().all(|p| p.reviewers.is_empty()));
}
