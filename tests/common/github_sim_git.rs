//! The simulator's repositories: bare git repositories served over smart HTTP by
//! `git http-backend` (clone and push need an installation token, as on GitHub), and CI that runs
//! a repository's `ci.sh` on every push and reports a check suite.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::github_sim::{
    CheckRun, CheckSuite, Repo, Shared, github_error, now, repo_json, token_allows,
};

/// Run git, panicking with its stderr on failure (simulator set-up must not fail silently).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Octo Cat")
        .env("GIT_AUTHOR_EMAIL", "octocat@example.com")
        .env("GIT_COMMITTER_NAME", "Octo Cat")
        .env("GIT_COMMITTER_EMAIL", "octocat@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Create the bare repository with one commit on `main` holding `files`.
pub fn init_bare(root: &Path, repo: &Repo, files: &[(&str, &str)]) {
    let bare = bare_path(root, repo);
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", &repo.default_branch]);
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "-b", &repo.default_branch]);
    for (path, content) in files {
        let file = work.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
    }
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "Initial commit"]);
    git(
        work.path(),
        &["push", "-q", bare.to_str().unwrap(), &repo.default_branch],
    );
}

pub fn bare_path(root: &Path, repo: &Repo) -> PathBuf {
    root.join(&repo.owner).join(format!("{}.git", repo.name))
}

/// `refs/heads/…` → sha.
pub fn branches(bare: &Path) -> Vec<(String, String)> {
    git(
        bare,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(r, s)| (r.to_string(), s.to_string()))
    .collect()
}

/// The installation token from HTTP Basic auth (`x-access-token:<token>`, as GitHub takes it).
fn basic_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// One smart-HTTP request, as the router received it.
pub struct GitRequest {
    pub owner: String,
    pub repo_git: String,
    pub rest: String,
    pub method: Method,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// `GET/POST /git/{owner}/{name}.git/...`: git's smart HTTP protocol through `git http-backend`.
pub async fn serve(state: Shared, request: GitRequest) -> Response {
    let GitRequest {
        owner,
        repo_git,
        rest,
        method,
        query,
        headers,
        body,
    } = request;
    let name = repo_git.trim_end_matches(".git").to_string();
    let (repo, root) = {
        let s = state.lock().unwrap();
        let Some(repo) = s
            .repos
            .iter()
            .find(|r| r.owner == owner && r.name == name)
            .cloned()
        else {
            return github_error(StatusCode::NOT_FOUND, "Repository not found.");
        };
        (repo, s.root.clone())
    };
    let authorized = basic_token(&headers)
        .map(|token| token_allows(&state.lock().unwrap(), &token, &repo))
        .unwrap_or(false);
    if !authorized {
        let mut response =
            (StatusCode::UNAUTHORIZED, "Invalid username or token.\n").into_response();
        response.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"GitHub\"".parse().unwrap(),
        );
        return response;
    }
    let bare = bare_path(&root, &repo);
    let pushing = rest == "git-receive-pack";
    let before = if pushing { branches(&bare) } else { vec![] };

    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{owner}/{name}.git/{rest}"))
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query.unwrap_or_default())
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = body.to_vec();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let output = child.wait_with_output().await.unwrap();
    let _ = writer.await;
    let raw = output.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
            .into_response();
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut response = Response::builder().status(200);
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("status") {
                let code: u16 = v
                    .split_whitespace()
                    .next()
                    .unwrap_or("200")
                    .parse()
                    .unwrap_or(200);
                response = response.status(code);
            } else {
                response = response.header(k, v);
            }
        }
    }
    let response = response
        .body(axum::body::Body::from(raw[end + sep..].to_vec()))
        .unwrap();

    if pushing {
        let after = branches(&bare);
        for (refname, sha) in after {
            if before.iter().any(|(r, s)| *r == refname && *s == sha) {
                continue;
            }
            let branch = refname.trim_start_matches("refs/heads/").to_string();
            tokio::spawn(run_ci(
                state.clone(),
                repo.clone(),
                bare.clone(),
                branch,
                sha,
            ));
        }
    }
    response
}

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
    let (suite, webhook) = {
        let mut s = state.lock().unwrap();
        let suite_id = s.next();
        let run_id = s.next();
        let suite = CheckSuite {
            id: suite_id,
            repo: repo.full_name(),
            head_branch: branch.clone(),
            head_sha: sha.clone(),
            conclusion: conclusion.into(),
            runs: vec![CheckRun {
                id: run_id,
                name: "ci".into(),
                conclusion: conclusion.into(),
                title: if code == 0 {
                    "ci.sh passed".into()
                } else {
                    format!("ci.sh failed (exit {code})")
                },
                summary: tail.join("\n"),
                annotations: annotations(&log),
                log: log.clone(),
            }],
            created_at: now(),
        };
        s.check_suites.push(suite.clone());
        (suite, s.webhook_url.clone())
    };
    if webhook.is_some() {
        let payload = check_suite_payload(&state, &repo, &suite, "completed");
        super::github_sim::send_webhook_with(&state, "check_suite", &payload).await;
    }
}

/// GitHub's `check_suite` webhook for `suite`, built from the real example.
pub fn check_suite_payload(state: &Shared, repo: &Repo, suite: &CheckSuite, action: &str) -> Value {
    let mut payload = super::fixtures::fixture("webhooks/check_suite/completed.payload.json");
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
