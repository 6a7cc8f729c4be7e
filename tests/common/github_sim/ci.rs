//! The repositories' CI: on every push (or when a test asks) it runs a repository's `ci.sh`,
//! records a check suite with one check run, and sends the `check_suite` webhook.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::GitHubSim;
use super::git::git;
use super::json::repo_json;
use super::state::{CheckRun, CheckSuite, Repo, Shared, now};
use super::webhooks::send_webhook_with;
use crate::common::fixtures::fixture;

/// GitHub Actions-style annotations in a log: `::error file=src/x.rs,line=3::message`.
pub fn annotations(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("::")?;
            let (level, rest) = rest.split_once(' ')?;
            let (props, message) = rest.split_once("::")?;
            let mut path = String::new();
            let mut line_no = 1u64;
            for prop in props.split(',') {
                match prop.split_once('=') {
                    Some(("file", v)) => path = v.to_string(),
                    Some(("line", v)) => line_no = v.parse().unwrap_or(1),
                    _ => {}
                }
            }
            let level = match level {
                "error" => "failure",
                "warning" => "warning",
                _ => "notice",
            };
            Some(json!({
                "path": path, "start_line": line_no, "end_line": line_no,
                "start_column": null, "end_column": null,
                "annotation_level": level, "title": "ci.sh", "message": message,
                "raw_details": null,
                "blob_href": format!("https://github.com/blob/{path}"),
            }))
        })
        .collect()
}

/// Check out `sha`, run `ci.sh` (when the repository has one), record a check suite with one
/// check run, and send `check_suite` `completed` to the service.
pub async fn run_ci(state: Shared, repo: Repo, bare: PathBuf, branch: String, sha: String) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("checkout");
    git(
        work.path(),
        &["clone", "-q", bare.to_str().unwrap(), "checkout"],
    );
    git(
        &dir,
        &["-c", "advice.detachedHead=false", "checkout", "-q", &sha],
    );
    if workflow_does_not_start(&dir) {
        record_suite(&state, &repo, &branch, &sha, "startup_failure", vec![]).await;
        return;
    }
    if !dir.join("ci.sh").exists() {
        return;
    }
    let run = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("sh")
            .args(["-c", "sh ci.sh 2>&1"])
            .current_dir(&dir)
            .output(),
    )
    .await;
    let (code, log) = match run {
        Ok(Ok(out)) => (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
        ),
        Ok(Err(e)) => (-1, format!("ci.sh could not run: {e}")),
        Err(_) => (-1, "ci.sh timed out after 120 s".to_string()),
    };
    let conclusion = if code == 0 { "success" } else { "failure" };
    let tail: Vec<&str> = log
        .lines()
        .rev()
        .take(20)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let run_id = state.lock().unwrap().next();
    let runs = vec![CheckRun {
        id: run_id,
        name: "ci".into(),
        status: "completed".into(),
        conclusion: conclusion.into(),
        title: if code == 0 {
            "ci.sh passed".into()
        } else {
            format!("ci.sh failed (exit {code})")
        },
        summary: tail.join("\n"),
        annotations: annotations(&log),
        log: log.clone(),
    }];
    record_suite(&state, &repo, &branch, &sha, conclusion, runs).await;
}

/// A workflow file of the commit that GitHub cannot start (the simulator's stand-in for YAML
/// that does not parse): one holding the line `# sim: startup_failure`.
fn workflow_does_not_start(checkout: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(checkout.join(".github/workflows")) else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read_to_string(e.path())
            .is_ok_and(|text| text.lines().any(|l| l.trim() == "# sim: startup_failure"))
    })
}

/// Record a completed check suite and send its `check_suite` `completed` webhook.
async fn record_suite(
    state: &Shared,
    repo: &Repo,
    branch: &str,
    sha: &str,
    conclusion: &str,
    runs: Vec<CheckRun>,
) {
    let (suite, webhook) = {
        let mut s = state.lock().unwrap();
        let suite = CheckSuite {
            id: s.next(),
            repo: repo.full_name(),
            head_branch: branch.to_string(),
            head_sha: sha.to_string(),
            status: "completed".into(),
            conclusion: conclusion.into(),
            runs,
            created_at: now(),
        };
        s.check_suites.push(suite.clone());
        (suite, s.webhook_url.clone())
    };
    if webhook.is_some() {
        let payload = check_suite_payload(state, repo, &suite, "completed");
        send_webhook_with(state, "check_suite", &payload).await;
    }
}

/// GitHub's `check_suite` webhook for `suite`, built from the real example.
pub fn check_suite_payload(state: &Shared, repo: &Repo, suite: &CheckSuite, action: &str) -> Value {
    let mut payload = fixture("webhooks/check_suite/completed.payload.json");
    payload["action"] = action.into();
    payload["check_suite"]["id"] = suite.id.into();
    payload["check_suite"]["head_branch"] = suite.head_branch.clone().into();
    payload["check_suite"]["head_sha"] = suite.head_sha.clone().into();
    payload["check_suite"]["after"] = suite.head_sha.clone().into();
    if action == "completed" {
        payload["check_suite"]["status"] = "completed".into();
        payload["check_suite"]["conclusion"] = suite.conclusion.clone().into();
    } else {
        payload["check_suite"]["status"] = "queued".into();
        payload["check_suite"]["conclusion"] = Value::Null;
    }
    payload["check_suite"]["pull_requests"] = json!([]);
    payload["repository"] = repo_json(&state.lock().unwrap(), repo);
    payload["installation"] =
        json!({"id": repo.installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="});
    payload
}

impl GitHubSim {
    /// Send the `check_suite` webhook of suite `id` again, with `action` (GitHub delivers
    /// `requested`, `rerequested` and `completed`; deliveries can repeat and come out of order).
    pub async fn resend_check_suite(&self, id: i64, action: &str) {
        let (repo, suite) = {
            let s = self.state.lock().unwrap();
            let suite = s.check_suites.iter().find(|c| c.id == id).unwrap().clone();
            let repo = s
                .repos
                .iter()
                .find(|r| r.full_name() == suite.repo)
                .unwrap()
                .clone();
            (repo, suite)
        };
        let payload = check_suite_payload(&self.state, &repo, &suite, action);
        send_webhook_with(&self.state, "check_suite", &payload).await;
    }

    /// Run the repository's CI on the head of `branch`, as a push would.
    pub async fn run_ci_on(&self, repo: &Repo, branch: &str) {
        let bare = self.bare_repo(repo);
        let sha = git(&bare, &["rev-parse", branch]);
        run_ci(
            self.state.clone(),
            repo.clone(),
            bare,
            branch.to_string(),
            sha,
        )
        .await;
    }
}
