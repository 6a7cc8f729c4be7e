//! The simulator's repositories: bare git repositories served over smart HTTP by
//! `git http-backend` (clone and push need an installation token, as on GitHub; a push runs the
//! repository's CI), and the `git` runner the simulator and the tests set repositories up with.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

use super::auth::{AuthorizedRepo, basic_token, check_installation_token, grants};
use super::ci::run_ci;
use super::json::github_error;
use super::state::{Repo, Shared, find_repo};

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
    install_workflow_guard(&bare);
}

/// GitHub refuses a push from an App without the `workflows` permission that adds, changes or
/// removes a file under `.github/workflows/`, with this message, for the whole push. The
/// server-side hook sees `SIM_WORKFLOWS_ALLOWED=1` when the pushing token has it.
const WORKFLOW_GUARD: &str = r#"#!/bin/sh
[ "$SIM_WORKFLOWS_ALLOWED" = 1 ] && exit 0
zero=0000000000000000000000000000000000000000
while read old new ref; do
  [ "$new" = "$zero" ] && continue
  if [ "$old" = "$zero" ]; then
    files=$(git log --name-only --format= "$new" --not --all -- .github/workflows)
  else
    files=$(git log --name-only --format= "$old..$new" -- .github/workflows)
  fi
  for f in $files; do
    echo "refusing to allow a GitHub App to create or update workflow \`$f\` without \`workflows\` permission" >&2
    exit 1
  done
done
exit 0
"#;

fn install_workflow_guard(bare: &Path) {
    let hook = bare.join("hooks").join("pre-receive");
    std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
    std::fs::write(&hook, WORKFLOW_GUARD).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `GET /repos/{owner}/{repo}/contents/{path}?ref=`: a file on a branch (the default branch
/// without `ref`) as GitHub's contents API gives it: its content in base64, broken into lines,
/// and `encoding: none` with no content over 1 MB; a directory as a list of its entries; 404
/// for a path or a ref that is not there.
pub(super) async fn get_contents(
    State(state): State<Shared>,
    axum::extract::Path(params): axum::extract::Path<std::collections::HashMap<String, String>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    AuthorizedRepo(repo): AuthorizedRepo,
) -> Response {
    use base64::Engine as _;
    let (root, base_url) = {
        let s = state.lock().unwrap();
        (s.root.clone(), s.base_url.clone())
    };
    let bare = bare_path(&root, &repo);
    let path = params.get("path").cloned().unwrap_or_default();
    let git_ref = query
        .get("ref")
        .cloned()
        .unwrap_or_else(|| repo.default_branch.clone());
    let not_found = || github_error(StatusCode::NOT_FOUND, "Not Found");
    let object = format!("{git_ref}:{path}");
    let Some(kind) = git_try(&bare, &["cat-file", "-t", &object]) else {
        return not_found();
    };
    let full_name = repo.full_name();
    let url = |p: &str| format!("{base_url}/repos/{full_name}/contents/{p}?ref={git_ref}");
    match kind.as_str() {
        "blob" => {
            let sha = git(&bare, &["rev-parse", &object]);
            let content = std::process::Command::new("git")
                .args(["cat-file", "blob", &object])
                .current_dir(&bare)
                .output()
                .unwrap()
                .stdout;
            let size = content.len();
            let (encoding, content) = if size > 1024 * 1024 {
                ("none", String::new())
            } else {
                let encoded = base64::engine::general_purpose::STANDARD.encode(&content);
                let lines: Vec<&str> = encoded
                    .as_bytes()
                    .chunks(60)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                ("base64", lines.join("\n") + "\n")
            };
            let name = path.rsplit('/').next().unwrap_or_default();
            axum::Json(serde_json::json!({
                "type": "file",
                "encoding": encoding,
                "size": size,
                "name": name,
                "path": path,
                "content": content,
                "sha": sha,
                "url": url(&path),
                "git_url": format!("{base_url}/repos/{full_name}/git/blobs/{sha}"),
                "html_url": format!("https://github.com/{full_name}/blob/{git_ref}/{path}"),
                "download_url": format!("https://raw.githubusercontent.com/{full_name}/{git_ref}/{path}"),
                "_links": {"self": url(&path), "git": null, "html": null},
            }))
            .into_response()
        }
        "tree" => {
            let listing = git(&bare, &["ls-tree", &object]);
            let entries: Vec<serde_json::Value> = listing
                .lines()
                .filter_map(|line| {
                    let (meta, name) = line.split_once('\t')?;
                    let mut meta = meta.split(' ');
                    let (_, kind, sha) = (meta.next()?, meta.next()?, meta.next()?);
                    let child = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}/{name}")
                    };
                    let dir = kind == "tree";
                    // GitHub gives a directory's size as 0 and no download link.
                    let size = if dir {
                        0
                    } else {
                        git(&bare, &["cat-file", "-s", sha]).parse::<u64>().ok()?
                    };
                    let (git_kind, html_kind) = if dir {
                        ("trees", "tree")
                    } else {
                        ("blobs", "blob")
                    };
                    let git_url = format!("{base_url}/repos/{full_name}/git/{git_kind}/{sha}");
                    let html_url =
                        format!("https://github.com/{full_name}/{html_kind}/{git_ref}/{child}");
                    let download_url = (!dir).then(|| {
                        format!("https://raw.githubusercontent.com/{full_name}/{git_ref}/{child}")
                    });
                    Some(serde_json::json!({
                        "type": if dir { "dir" } else { "file" },
                        "size": size, "name": name, "path": child, "sha": sha, "url": url(&child),
                        "git_url": git_url, "html_url": html_url, "download_url": download_url,
                        "_links": {"self": url(&child), "git": git_url, "html": html_url},
                    }))
                })
                .collect();
            axum::Json(entries).into_response()
        }
        _ => not_found(),
    }
}

/// Run git; its stdout when it succeeds, `None` when it fails.
fn git_try(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
        let Some(repo) = find_repo(&s, &owner, &name) else {
            return github_error(StatusCode::NOT_FOUND, "Repository not found.");
        };
        (repo, s.root.clone())
    };
    let token = basic_token(&headers)
        .and_then(|token| check_installation_token(&state.lock().unwrap(), &token, &repo).ok());
    let Some(token) = token else {
        let mut response =
            (StatusCode::UNAUTHORIZED, "Invalid username or token.\n").into_response();
        response.headers_mut().insert(
            "www-authenticate",
            "Basic realm=\"GitHub\"".parse().unwrap(),
        );
        return response;
    };
    // A push needs `contents: write`, a fetch `contents: read` (the service `info/refs` names
    // which it is about to be).
    let wants_push =
        rest == "git-receive-pack" || query.as_deref() == Some("service=git-receive-pack");
    let level = if wants_push { "write" } else { "read" };
    if !grants(&token.permissions, "contents", level) {
        return (
            StatusCode::FORBIDDEN,
            "Permission to this repository denied: the token lacks contents permission.\n",
        )
            .into_response();
    }
    let workflows_allowed = grants(&token.permissions, "workflows", "write");
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
        .env(
            "SIM_WORKFLOWS_ALLOWED",
            if workflows_allowed { "1" } else { "0" },
        )
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

/// The route for git's smart HTTP: `GET/POST /git/{owner}/{name}.git/...`.
pub(super) async fn git_http(
    State(state): State<Shared>,
    axum::extract::Path((owner, repo_git, rest)): axum::extract::Path<(String, String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(
        state,
        GitRequest {
            owner,
            repo_git,
            rest,
            method,
            query: uri.query().map(str::to_string),
            headers,
            body,
        },
    )
    .await
}
