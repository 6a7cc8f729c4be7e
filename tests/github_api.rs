//! Every GitHub operation the service uses, called through the real client against the
//! simulator: typed answers, credentials checked, git over smart HTTP, and CI on push.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use amp_orchestrator::config::Config;
use amp_orchestrator::github::{GitHub, Options, RepoRef};
use common::eventually;
use common::github_sim::{APP_ID, GitHubSim, app_private_key};
use secrecy::ExposeSecret;

fn client(sim: &GitHubSim) -> Arc<GitHub> {
    client_with(
        sim,
        Options {
            backoff: Duration::from_millis(10),
            ..Options::default()
        },
    )
}

fn client_with(sim: &GitHubSim, options: Options) -> Arc<GitHub> {
    let env = [
        ("WEBHOOK_SECRET", "unused"),
        ("APP_ID", &APP_ID.to_string()),
        ("PRIVATE_KEY", &app_private_key()),
        ("GITHUB_API_URL", &sim.api_url()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config =
        Config::from_lookup(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .unwrap();
    GitHub::new(&config, options, None).unwrap()
}

/// Run git in `dir`, returning whether it succeeded and its stderr.
fn git(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Amp")
        .env("GIT_AUTHOR_EMAIL", "amp@example.com")
        .env("GIT_COMMITTER_NAME", "Amp")
        .env("GIT_COMMITTER_EMAIL", "amp@example.com")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_token(url: &str, token: &str) -> String {
    url.replacen("http://", &format!("http://x-access-token:{token}@"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_against_the_simulator() {
    let sim = GitHubSim::start("unused").await;
    let repo = sim.add_repo_with_files(
        "octo-org/gadgets",
        91,
        &[("writer", "write")],
        &[
            ("README.md", "# gadgets\n"),
            (
                "ci.sh",
                "echo building\necho '::error file=src/lib.rs,line=3::the answer is not 42'\nexit 1\n",
            ),
        ],
    );
    let other = sim.add_repo("octo-org/other", 91, &[]);
    let gh = client(&sim);
    let r = RepoRef {
        installation_id: 91,
        repo_id: repo.id,
        full_name: repo.full_name(),
    };

    let fetched = gh.repository(&r).await.unwrap();
    assert_eq!(fetched.default_branch, "main");
    assert_eq!(
        gh.collaborator_role(&r, "writer").await.unwrap(),
        amp_orchestrator::github::Role::Write
    );

    // Git over smart HTTP: only with a valid token for this repository.
    let work = tempfile::tempdir().unwrap();
    let url = sim.clone_url(&repo);
    let (ok, _) = git(work.path(), &["clone", "-q", &url, "anonymous"]);
    assert!(!ok, "cloning without a token is refused");
    let (ok, _) = git(
        work.path(),
        &["clone", "-q", &with_token(&url, "ghs_wrong"), "wrong"],
    );
    assert!(!ok, "cloning with a wrong token is refused");
    let other_token = gh
        .repo_token(&RepoRef {
            installation_id: 91,
            repo_id: other.id,
            full_name: other.full_name(),
        })
        .await
        .unwrap();
    let (ok, _) = git(
        work.path(),
        &[
            "clone",
            "-q",
            &with_token(&url, other_token.expose_secret()),
            "other",
        ],
    );
    assert!(!ok, "a token scoped to another repository is refused");
    let token = gh.repo_token(&r).await.unwrap();
    let authed = with_token(&url, token.expose_secret());
    let (ok, err) = git(work.path(), &["clone", "-q", &authed, "checkout"]);
    assert!(ok, "{err}");
    let checkout = work.path().join("checkout");
    let main_sha = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&checkout)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();

    // A branch pushed with the token runs CI.
    std::fs::write(checkout.join("answer.txt"), "41\n").unwrap();
    for args in [
        &["checkout", "-q", "-b", "amp/task-1", &main_sha][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "Answer"],
        &["push", "-q", "origin", "amp/task-1"],
    ] {
        let (ok, err) = git(&checkout, args);
        assert!(ok, "git {args:?}: {err}");
    }
    let head_sha = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&checkout)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    eventually(60, "CI reports on the pushed commit", || async {
        sim.check_suites()
            .into_iter()
            .find(|s| s.head_sha == head_sha)
    })
    .await;

    let pr = gh
        .open_pull(
            &r,
            "amp/task-1",
            "main",
            "Answer the question",
            "Closes #1",
            true,
        )
        .await
        .unwrap();
    assert_eq!(pr.draft, Some(true));
    assert_eq!(pr.head.sha, head_sha);
    gh.request_reviewer(&r, pr.number, "writer").await.unwrap();
    assert_eq!(sim.pulls()[0].reviewers, ["writer"]);
    let fetched = gh.get_pull(&r, pr.number).await.unwrap();
    assert_eq!(fetched.head.branch, "amp/task-1");
    assert_eq!(fetched.head.sha, head_sha);
    assert_eq!(
        fetched.head.repo.map(|r| r.full_name).as_deref(),
        Some(r.full_name.as_str())
    );
    assert!(matches!(
        gh.get_pull(&r, 999_999).await,
        Err(amp_orchestrator::github::GitHubError::Status { status: 404, .. })
    ));

    let suites = gh.check_suites(&r, &head_sha).await.unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0].conclusion.as_deref(), Some("failure"));
    let runs = gh.check_runs(&r, &head_sha).await.unwrap();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.output.title.as_deref(), Some("ci.sh failed (exit 1)"));
    let annotations = gh.check_run_annotations(&r, run.id).await.unwrap();
    assert_eq!(annotations.len(), 1);
    assert_eq!(annotations[0].path, "src/lib.rs");
    assert_eq!(annotations[0].start_line, Some(3));
    assert_eq!(
        annotations[0].message.as_deref(),
        Some("the answer is not 42")
    );
    let log = gh.job_log(&r, run.id).await.unwrap();
    assert!(log.contains("building"), "{log}");
    // The log comes from another host, which never sees the App's credentials.
    assert_eq!(sim.state.lock().unwrap().blob_requests_with_credentials, 0);
    // A log over the size limit keeps its end.
    let capped = client_with(
        &sim,
        Options {
            max_log_bytes: 12,
            ..Options::default()
        },
    );
    let cut = capped.job_log(&r, run.id).await.unwrap();
    assert!(cut.starts_with("[… the start of this log was cut"), "{cut}");
    assert!(
        log.trim_end()
            .ends_with(cut.trim_end().lines().last().unwrap()),
        "{cut}"
    );
    // A log that goes on past the most that is read is not read to its end.
    let stopped = client_with(
        &sim,
        Options {
            max_log_bytes: 12,
            max_log_read: 40,
            ..Options::default()
        },
    );
    let read = stopped.job_log(&r, run.id).await.unwrap();
    let (note, rest) = read.split_once('\n').unwrap();
    assert!(note.contains("longer than 40 bytes"), "{read}");
    assert_eq!(rest, &log[28..40], "{read}");

    gh.mark_ready_for_review(&r, &pr.node_id).await.unwrap();
    assert!(!sim.pulls()[0].draft);

    // Expired credentials: git is refused, like the API.
    sim.expire_tokens();
    let (ok, _) = git(
        &checkout,
        &["push", "-q", "origin", "HEAD:refs/heads/amp/late"],
    );
    assert!(!ok, "an expired token cannot push");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_read_from_a_branch_through_the_contents_api() {
    let sim = GitHubSim::start("unused").await;
    let config = "image = \"rust:1-bookworm\"\n# ünïcode & a line longer than sixty characters, which GitHub's base64 breaks\n";
    let repo = sim.add_repo_with_files(
        "octo-org/configured",
        91,
        &[],
        &[
            ("README.md", "# configured\n"),
            (".github/amp.toml", config),
        ],
    );
    let gh = client(&sim);
    let r = repo_ref(&repo);
    let read = gh.file_at(&r, ".github/amp.toml", "main").await.unwrap();
    assert_eq!(read.as_deref(), Some(config.as_bytes()));
    // No such file, no such branch: nothing, not an error.
    assert_eq!(
        gh.file_at(&r, ".github/none.toml", "main").await.unwrap(),
        None
    );
    assert_eq!(
        gh.file_at(&r, ".github/amp.toml", "gone").await.unwrap(),
        None
    );
    // A directory is not a file.
    let e = gh.file_at(&r, ".github", "main").await.unwrap_err();
    assert!(e.to_string().contains("not a file"), "{e}");
}

fn repo_ref(repo: &common::github_sim::Repo) -> RepoRef {
    RepoRef {
        installation_id: repo.installation_id,
        repo_id: repo.id,
        full_name: repo.full_name(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_read_to_their_end_and_checks_are_the_latest_runs() {
    let sim = GitHubSim::start("unused").await;
    let repo = sim.add_repo("octo-org/gadgets", 91, &[]);
    let gh = client(&sim);
    let r = repo_ref(&repo);
    let sha = "a".repeat(40);
    // More suites than GitHub's default page of 30.
    for i in 0..35 {
        sim.add_check_run(
            &repo,
            &sha,
            None,
            &format!("check-{i}"),
            "completed",
            "success",
        );
    }
    assert_eq!(gh.check_suites(&r, &sha).await.unwrap().len(), 35);
    assert_eq!(gh.check_runs(&r, &sha).await.unwrap().len(), 35);
    // A re-run replaces its check's earlier run; a queued run has no conclusion yet.
    let other = "b".repeat(40);
    let suite = sim.add_check_run(&repo, &other, None, "test", "completed", "failure");
    sim.add_check_run(&repo, &other, Some(suite), "test", "queued", "");
    let runs = gh.check_runs(&r, &other).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status.as_deref(), Some("queued"));
    assert_eq!(runs[0].conclusion, None);

    // Webhook deliveries: every page the `Link` cursor leads to (one failed delivery, older
    // than 150 that succeeded).
    {
        let mut s = sim.state.lock().unwrap();
        // Older than GitHub's three days of redelivery: left out.
        let id = s.next();
        s.hook_deliveries.push(common::github_sim::HookDelivery {
            id,
            guid: "too-old".into(),
            event: "issue_comment".into(),
            action: Some("created".into()),
            status_code: 502,
            redelivery: false,
            payload: serde_json::json!({}),
            installation_id: Some(91),
            repository_id: Some(repo.id),
            delivered_at: common::github_sim::now() - 4 * 24 * 3600,
        });
        for i in 0..151 {
            let id = s.next();
            s.hook_deliveries.push(common::github_sim::HookDelivery {
                id,
                guid: format!("guid-{i}"),
                event: "issue_comment".into(),
                action: Some("created".into()),
                status_code: if i == 0 { 502 } else { 200 },
                redelivery: false,
                payload: serde_json::json!({}),
                installation_id: Some(91),
                repository_id: Some(repo.id),
                delivered_at: common::github_sim::now(),
            });
        }
    }
    let deliveries = gh.hook_deliveries().await.unwrap();
    assert_eq!(deliveries.len(), 151, "the old one is left out");
    assert_eq!(deliveries.last().unwrap().guid, "guid-0");
    assert_eq!(sim.requests("GET", "/app/hook/deliveries").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_installation_s_permissions_bound_what_the_app_can_do() {
    let sim = GitHubSim::start("unused").await;
    let repo = sim.add_repo_with_files(
        "octo-org/gadgets",
        91,
        &[("ops", "ci-manager=write"), ("auditor", "auditor=read")],
        &[("README.md", "# gadgets\n")],
    );
    // An installation that has not accepted `statuses: read`.
    sim.set_installation_permissions(
        91,
        &[
            ("contents", "write"),
            ("issues", "write"),
            ("pull_requests", "write"),
            ("checks", "read"),
            ("actions", "read"),
            ("metadata", "read"),
        ],
    );
    let gh = client(&sim);
    let r = repo_ref(&repo);
    let sha = "c".repeat(40);
    let refused = gh.commit_statuses(&r, &sha).await.unwrap_err();
    assert_eq!(refused.status(), Some(403));
    assert_eq!(
        refused.github_message(),
        Some("Resource not accessible by integration")
    );
    assert!(gh.check_runs(&r, &sha).await.is_ok());

    // Custom repository roles: the base role they build on counts.
    use amp_orchestrator::github::Role;
    assert_eq!(gh.collaborator_role(&r, "ops").await.unwrap(), Role::Write);
    assert_eq!(
        gh.collaborator_role(&r, "auditor").await.unwrap(),
        Role::Read
    );

    // Without `workflows`, GitHub refuses a push that touches a workflow file.
    assert!(!gh.may_write(&r, "workflows").await.unwrap());
    let work = tempfile::tempdir().unwrap();
    let token = gh.repo_token(&r).await.unwrap();
    let url = with_token(&sim.clone_url(&repo), token.expose_secret());
    let (ok, err) = git(work.path(), &["clone", "-q", &url, "checkout"]);
    assert!(ok, "{err}");
    let checkout = work.path().join("checkout");
    std::fs::create_dir_all(checkout.join(".github/workflows")).unwrap();
    std::fs::write(checkout.join(".github/workflows/ci.yml"), "on: push\n").unwrap();
    for args in [
        &["checkout", "-q", "-b", "amp/workflow"][..],
        &["add", "-A"],
        &["commit", "-q", "-m", "Add a workflow"],
    ] {
        let (ok, err) = git(&checkout, args);
        assert!(ok, "git {args:?}: {err}");
    }
    let (ok, err) = git(&checkout, &["push", "-q", "origin", "amp/workflow"]);
    assert!(!ok, "a workflow file was pushed without the permission");
    assert!(err.contains("without `workflows` permission"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_cannot_be_read_is_not_repeated() {
    let sim = GitHubSim::start("unused").await;
    let repo = sim.add_repo("octo-org/gadgets", 91, &[]);
    let gh = client(&sim);
    let r = repo_ref(&repo);
    sim.inject(
        http::Method::POST,
        "/comments",
        common::github_sim::Fault::Reshaped(201, r#"{"unexpected": true}"#.into()),
    );
    let error = gh.create_comment(&r, 3, "hello").await.unwrap_err();
    assert!(
        matches!(
            error,
            amp_orchestrator::github::GitHubError::Unreadable { .. }
        ),
        "{error:?}"
    );
    assert!(
        error.is_permanent(),
        "a write that GitHub did is not done again"
    );
    assert_eq!(sim.comments_on(&repo, 3).len(), 1);
    // A read that cannot be parsed may be tried again.
    sim.inject(
        http::Method::GET,
        "/pulls/",
        common::github_sim::Fault::Reshaped(200, "[]".into()),
    );
    let error = gh.get_pull(&r, 1).await.unwrap_err();
    assert!(!error.is_permanent(), "{error:?}");
}
