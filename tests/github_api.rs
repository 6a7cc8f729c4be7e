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
    GitHub::new(
        &config,
        Options {
            backoff: Duration::from_millis(10),
            ..Options::default()
        },
    )
    .unwrap()
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
    assert_eq!(fetched.default_branch.as_deref(), Some("main"));
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
        .open_draft_pr(&r, "amp/task-1", "main", "Answer the question", "Closes #1")
        .await
        .unwrap();
    assert_eq!(pr.draft, Some(true));
    assert_eq!(pr.head.sha, head_sha);
    let pr = gh
        .request_reviewer(&r, pr.number as i64, "writer")
        .await
        .unwrap();
    let reviewers: Vec<String> = pr
        .requested_reviewers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.login)
        .collect();
    assert_eq!(reviewers, ["writer"]);
    let fetched = gh.get_pull(&r, pr.number as i64).await.unwrap();
    assert_eq!(fetched.head.ref_field, "amp/task-1");
    assert_eq!(fetched.head.sha, head_sha);
    assert_eq!(
        fetched.head.repo.and_then(|r| r.full_name).as_deref(),
        Some(r.full_name.as_str())
    );
    assert!(matches!(
        gh.get_pull(&r, 999_999).await,
        Err(amp_orchestrator::github::GitHubError::Status { status: 404, .. })
    ));

    let suites = gh.check_suites(&r, &head_sha).await.unwrap();
    assert_eq!(suites.check_suites.len(), 1);
    assert_eq!(
        suites.check_suites[0].conclusion.as_deref(),
        Some("failure")
    );
    let runs = gh.check_runs(&r, &head_sha).await.unwrap();
    assert_eq!(runs.check_runs.len(), 1);
    let run = &runs.check_runs[0];
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

    gh.mark_ready_for_review(&r, pr.node_id.as_deref().unwrap())
        .await
        .unwrap();
    assert!(!sim.pulls()[0].draft);

    // Expired credentials: git is refused, like the API.
    sim.expire_tokens();
    let (ok, _) = git(
        &checkout,
        &["push", "-q", "origin", "HEAD:refs/heads/amp/late"],
    );
    assert!(!ok, "an expired token cannot push");
}
