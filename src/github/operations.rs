//! One typed function per operation the service uses. Answers are read into the narrow structs of
//! [`super::models`]: only the fields the service uses, optional wherever GitHub's schema lets
//! them be absent or null.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::models::*;
use super::{Auth, Cut, GitHub, GitHubError, Keep, RepoRef, Role};

/// Pages read at most from a paginated list (100 items each).
const MAX_PAGES: u32 = 10;

/// How far back webhook deliveries are read: GitHub redelivers nothing older than three days.
const DELIVERIES_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

impl GitHub {
    /// A write whose answer the service does not need: its success is all that counts, whatever
    /// the body GitHub answers with.
    async fn write(
        &self,
        auth: Auth<'_>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), GitHubError> {
        self.call_raw(auth, method, path, body).await.map(drop)
    }

    /// React to an issue comment (`+1`, `eyes`, `rocket`, …). GitHub answers 200 with the existing
    /// reaction when the App already reacted, so this is safe to repeat.
    pub async fn react_to_comment(
        &self,
        repo: &RepoRef,
        comment_id: i64,
        content: &str,
    ) -> Result<(), GitHubError> {
        self.write(
            Auth::Repo(repo),
            Method::POST,
            &format!(
                "/repos/{}/issues/comments/{comment_id}/reactions",
                repo.full_name
            ),
            Some(&json!({ "content": content })),
        )
        .await
    }

    /// Post a comment on an issue or pull request.
    pub async fn create_comment(
        &self,
        repo: &RepoRef,
        issue_number: i64,
        body: &str,
    ) -> Result<CommentRef, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!("/repos/{}/issues/{issue_number}/comments", repo.full_name),
            Some(&json!({ "body": body })),
        )
        .await
    }

    /// Replace a comment's text (the task's status comment).
    pub async fn update_comment(
        &self,
        repo: &RepoRef,
        comment_id: i64,
        body: &str,
    ) -> Result<(), GitHubError> {
        self.write(
            Auth::Repo(repo),
            Method::PATCH,
            &format!("/repos/{}/issues/comments/{comment_id}", repo.full_name),
            Some(&json!({ "body": body })),
        )
        .await
    }

    /// The repository (clone URL, default branch, archived flag).
    pub async fn repository(&self, repo: &RepoRef) -> Result<RepoDetails, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// A user's role on the repository (`admin`, `maintain`, `write`, `triage`, `read`; a user
    /// who is not a collaborator gets `read` on a public repository and `none` otherwise).
    pub async fn collaborator_role(
        &self,
        repo: &RepoRef,
        login: &str,
    ) -> Result<Role, GitHubError> {
        let permission: CollaboratorPermission = self
            .call(
                Auth::Repo(repo),
                Method::GET,
                &format!("/repos/{}/collaborators/{login}/permission", repo.full_name),
                None::<&Value>,
            )
            .await?;
        Ok(permission.role())
    }

    /// Open a pull request from `head` into `base`, as a draft when `draft`.
    pub async fn open_pull(
        &self,
        repo: &RepoRef,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
        draft: bool,
    ) -> Result<PullDetails, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!("/repos/{}/pulls", repo.full_name),
            Some(&json!({
                "title": title, "head": head, "base": base, "body": body,
                "draft": draft, "maintainer_can_modify": true,
            })),
        )
        .await
    }

    /// Change a pull request's title.
    pub async fn retitle_pull(
        &self,
        repo: &RepoRef,
        number: i64,
        title: &str,
    ) -> Result<(), GitHubError> {
        self.write(
            Auth::Repo(repo),
            Method::PATCH,
            &format!("/repos/{}/pulls/{number}", repo.full_name),
            Some(&json!({ "title": title })),
        )
        .await
    }

    /// The open pull request from `branch` of the repository itself, if there is one.
    pub async fn find_open_pull(
        &self,
        repo: &RepoRef,
        branch: &str,
    ) -> Result<Option<PullDetails>, GitHubError> {
        let owner = repo.full_name.split('/').next().unwrap_or_default();
        let found: Vec<PullDetails> = self
            .call(
                Auth::Repo(repo),
                Method::GET,
                &format!(
                    "/repos/{}/pulls?state=open&head={owner}:{branch}",
                    repo.full_name
                ),
                None::<&Value>,
            )
            .await?;
        Ok(found.into_iter().next())
    }

    /// Find a repository the App is installed on by its name: its installation (as the App),
    /// then its id (from a token minted for that one repository by name), then its details.
    pub async fn locate_repo(
        &self,
        full_name: &str,
    ) -> Result<(RepoRef, RepoDetails), GitHubError> {
        let Some((_, name)) = full_name.split_once('/') else {
            return Err(GitHubError::Other(format!(
                "{full_name:?} is not a repository name (owner/name)"
            )));
        };
        let installation: IdOnly = self
            .call(
                Auth::App,
                Method::GET,
                &format!("/repos/{full_name}/installation"),
                None::<&Value>,
            )
            .await?;
        let minted: MintedToken = self
            .call(
                Auth::App,
                Method::POST,
                &format!("/app/installations/{}/access_tokens", installation.id),
                Some(&json!({ "repositories": [name], "permissions": {"metadata": "read"} })),
            )
            .await?;
        let repo_id =
            minted.repositories.first().map(|r| r.id).ok_or_else(|| {
                GitHubError::Other(format!("{full_name} is not in the installation"))
            })?;
        let repo = RepoRef {
            installation_id: installation.id,
            repo_id,
            full_name: full_name.to_string(),
        };
        let details = self.repository(&repo).await?;
        Ok((repo, details))
    }

    /// The App's webhook deliveries of the last three days (newest first), every page GitHub's
    /// `Link` cursor leads to, up to [`MAX_PAGES`] of 100.
    pub async fn hook_deliveries(&self) -> Result<Vec<HookDelivery>, GitHubError> {
        let oldest_wanted = chrono::Utc::now() - DELIVERIES_WINDOW;
        let mut all: Vec<HookDelivery> = Vec::new();
        let mut path = "/app/hook/deliveries?per_page=100".to_string();
        for _ in 0..MAX_PAGES {
            let (headers, bytes) = self
                .call_raw(Auth::App, Method::GET, &path, None::<&Value>)
                .await?;
            let page: Vec<HookDelivery> = self.parse(&Method::GET, &path, &bytes)?;
            let reached_window_end = page.is_empty()
                || page
                    .iter()
                    .any(|d| d.delivered_at().is_some_and(|at| at < oldest_wanted));
            // GitHub redelivers nothing older than the window: those are left out.
            all.extend(
                page.into_iter()
                    .filter(|d| d.delivered_at().is_none_or(|at| at >= oldest_wanted)),
            );
            let next = next_cursor(&headers);
            match next {
                Some(cursor) if !reached_window_end => {
                    path = format!("/app/hook/deliveries?per_page=100&cursor={cursor}");
                }
                _ => break,
            }
        }
        Ok(all)
    }

    /// Turn the one-time code of the manifest flow into the new App's credentials. The code
    /// authorizes the call; it expires after an hour and works once.
    pub async fn convert_manifest(&self, code: &str) -> Result<AppRegistration, GitHubError> {
        if code.is_empty()
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(GitHubError::Other(
                "the code GitHub sent back is not a manifest code".into(),
            ));
        }
        self.call(
            Auth::Anonymous,
            Method::POST,
            &format!("/app-manifests/{code}/conversions"),
            None::<&Value>,
        )
        .await
    }

    /// An installation of this App as GitHub has it now; `None` when it is gone (uninstalled).
    pub async fn installation(
        &self,
        installation_id: i64,
    ) -> Result<Option<InstallationNow>, GitHubError> {
        match self
            .call(
                Auth::App,
                Method::GET,
                &format!("/app/installations/{installation_id}"),
                None::<&Value>,
            )
            .await
        {
            Ok(now) => Ok(Some(now)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Ask GitHub to deliver a webhook delivery again.
    pub async fn redeliver(&self, delivery_id: i64) -> Result<(), GitHubError> {
        self.write(
            Auth::App,
            Method::POST,
            &format!("/app/hook/deliveries/{delivery_id}/attempts"),
            None::<&Value>,
        )
        .await
    }

    /// Open an issue.
    pub async fn create_issue(
        &self,
        repo: &RepoRef,
        title: &str,
        body: &str,
    ) -> Result<IssueDetails, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::POST,
            &format!("/repos/{}/issues", repo.full_name),
            Some(&json!({ "title": title, "body": body })),
        )
        .await
    }

    /// An issue (or a pull request, seen as an issue).
    pub async fn get_issue(
        &self,
        repo: &RepoRef,
        number: i64,
    ) -> Result<IssueDetails, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}/issues/{number}", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// What GitHub's contents API says of `path` on `git_ref` (an object for a file, a list for a
    /// directory); `None` when there is no such path or ref (404).
    async fn contents(
        &self,
        repo: &RepoRef,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Value>, GitHubError> {
        let url = format!(
            "/repos/{}/contents/{}?ref={}",
            repo.full_name,
            path.split('/')
                .map(query_escape)
                .collect::<Vec<_>>()
                .join("/"),
            query_escape(git_ref)
        );
        match self
            .call(Auth::Repo(repo), Method::GET, &url, None::<&Value>)
            .await
        {
            Ok(answer) => Ok(Some(answer)),
            Err(GitHubError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The content of the file at `path` on `git_ref` (a branch name), or `None` when there is
    /// no such file there (GitHub's contents API answers 404). A directory at `path`, or a file
    /// larger than the API's 1 MB, is an error.
    pub async fn file_at(
        &self,
        repo: &RepoRef,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<Vec<u8>>, GitHubError> {
        let Some(answer) = self.contents(repo, path, git_ref).await? else {
            return Ok(None);
        };
        let file: RepoFile = serde_json::from_value(answer)
            .map_err(|_| GitHubError::Other(format!("{path} on {git_ref} is not a file")))?;
        file.decoded()
            .map(Some)
            .map_err(|why| GitHubError::Other(format!("{path} on {git_ref} cannot be read: {why}")))
    }

    /// The id of the file `path` on `git_ref` (its git blob, which changes with its content);
    /// `None` when there is no such file or ref.
    pub async fn file_sha(
        &self,
        repo: &RepoRef,
        path: &str,
        git_ref: &str,
    ) -> Result<Option<String>, GitHubError> {
        let Some(answer) = self.contents(repo, path, git_ref).await? else {
            return Ok(None);
        };
        // A directory is a list, not a file: it keys nothing.
        Ok(answer["sha"]
            .as_str()
            .filter(|_| answer["type"] == "file")
            .map(str::to_string))
    }

    /// A pull request (its head branch and the repository that holds it, its state).
    pub async fn get_pull(&self, repo: &RepoRef, number: i64) -> Result<PullDetails, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!("/repos/{}/pulls/{number}", repo.full_name),
            None::<&Value>,
        )
        .await
    }

    /// Mark a draft pull request ready for review (GraphQL only; `pr_node_id` is its `node_id`).
    pub async fn mark_ready_for_review(
        &self,
        repo: &RepoRef,
        pr_node_id: &str,
    ) -> Result<(), GitHubError> {
        let answer: Value = self
            .call(
                Auth::Repo(repo),
                Method::POST,
                "/graphql",
                Some(&json!({
                    "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }",
                    "variables": { "id": pr_node_id },
                })),
            )
            .await?;
        if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
            return Err(GitHubError::Status {
                status: 422,
                method: Method::POST,
                path: "/graphql".into(),
                message: errors
                    .iter()
                    .filter_map(|e| e["message"].as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
        Ok(())
    }

    /// Ask `login` to review a pull request.
    pub async fn request_reviewer(
        &self,
        repo: &RepoRef,
        pr_number: i64,
        login: &str,
    ) -> Result<(), GitHubError> {
        self.write(
            Auth::Repo(repo),
            Method::POST,
            &format!(
                "/repos/{}/pulls/{pr_number}/requested_reviewers",
                repo.full_name
            ),
            Some(&json!({ "reviewers": [login] })),
        )
        .await
    }

    /// The check suites of a commit (every page).
    pub async fn check_suites(
        &self,
        repo: &RepoRef,
        sha: &str,
    ) -> Result<Vec<CheckSuite>, GitHubError> {
        let path = format!("/repos/{}/commits/{sha}/check-suites", repo.full_name);
        self.all_pages(repo, &path, |page: CheckSuites| {
            (page.total_count, page.check_suites)
        })
        .await
    }

    /// The latest check run of each check of a commit (every page).
    pub async fn check_runs(
        &self,
        repo: &RepoRef,
        sha: &str,
    ) -> Result<Vec<CheckRun>, GitHubError> {
        let path = format!(
            "/repos/{}/commits/{sha}/check-runs?filter=latest",
            repo.full_name
        );
        self.all_pages(repo, &path, |page: CheckRuns| {
            (page.total_count, page.check_runs)
        })
        .await
    }

    /// The legacy commit statuses of a commit, the newest per context (every page).
    pub async fn commit_statuses(
        &self,
        repo: &RepoRef,
        sha: &str,
    ) -> Result<Vec<CommitStatus>, GitHubError> {
        let path = format!("/repos/{}/commits/{sha}/status", repo.full_name);
        self.all_pages(repo, &path, |page: CombinedStatus| {
            (page.total_count, page.statuses)
        })
        .await
    }

    /// Read a list GitHub pages with a `total_count` beside the items, up to [`MAX_PAGES`].
    async fn all_pages<P: serde::de::DeserializeOwned, T>(
        &self,
        repo: &RepoRef,
        path: &str,
        split: impl Fn(P) -> (u64, Vec<T>),
    ) -> Result<Vec<T>, GitHubError> {
        let joiner = if path.contains('?') { '&' } else { '?' };
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let got: P = self
                .call(
                    Auth::Repo(repo),
                    Method::GET,
                    &format!("{path}{joiner}per_page=100&page={page}"),
                    None::<&Value>,
                )
                .await?;
            let (total, items) = split(got);
            let empty = items.is_empty();
            all.extend(items);
            if empty || all.len() as u64 >= total {
                break;
            }
        }
        Ok(all)
    }

    /// A check run's annotations (file, lines, message).
    pub async fn check_run_annotations(
        &self,
        repo: &RepoRef,
        check_run_id: u64,
    ) -> Result<Vec<Annotation>, GitHubError> {
        self.call(
            Auth::Repo(repo),
            Method::GET,
            &format!(
                "/repos/{}/check-runs/{check_run_id}/annotations?per_page=100",
                repo.full_name
            ),
            None::<&Value>,
        )
        .await
    }

    /// A GitHub Actions job's log as text: its end when it is longer than `max_log_bytes`, and
    /// the end of its first `max_log_read` bytes when it goes on past them (it is read as it
    /// downloads, and never held whole). GitHub answers with a redirect to short-lived storage
    /// on another host, which is followed without the App's credentials.
    pub async fn job_log(&self, repo: &RepoRef, job_id: u64) -> Result<String, GitHubError> {
        let path = format!("/repos/{}/actions/jobs/{job_id}/logs", repo.full_name);
        let keep = Keep {
            tail: self.options.max_log_bytes,
            read: self.options.max_log_read.max(self.options.max_log_bytes),
        };
        let answer = self
            .send(
                Auth::Repo(repo),
                Method::GET,
                &path,
                None::<&Value>,
                Some(keep),
            )
            .await?;
        let text = String::from_utf8_lossy(&answer.bytes);
        Ok(match answer.cut {
            Cut::Whole => text.into_owned(),
            Cut::Start => format!(
                "[… the start of this log was cut: only its last {} bytes were kept …]\n{text}",
                keep.tail
            ),
            Cut::Unread => format!(
                "[… this log is longer than {} bytes: it was read that far, and these are the \
                 last {} bytes read; its end was not read …]\n{text}",
                keep.read, keep.tail
            ),
        })
    }
}

/// The `cursor` of the `rel="next"` link in GitHub's `Link` header, if there is a next page.
fn next_cursor(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get(http::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let url = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let (_, query) = url.split_once('?')?;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("cursor="))
            .filter(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.%=".contains(&b))
            })
            .map(str::to_string)
    })
}

/// `value` as one percent-encoded component of a URL (everything but unreserved characters).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{next_cursor, query_escape};

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(next_cursor(&headers), None);
        headers.insert(
            http::header::LINK,
            "<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_cursor(&headers).as_deref(), Some("v1_12077215967"));
        headers.insert(
            http::header::LINK,
            "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?cursor=a%3D&per_page=100>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_cursor(&headers).as_deref(), Some("a%3D"));
        headers.insert(
            http::header::LINK,
            "<https://api.github.com/x?cursor=abc>; rel=\"prev\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_cursor(&headers), None);
    }

    #[test]
    fn a_branch_name_is_escaped_for_the_query() {
        assert_eq!(query_escape("main"), "main");
        assert_eq!(query_escape("feat/a&b#c+d"), "feat%2Fa%26b%23c%2Bd");
        assert_eq!(query_escape("amp.toml"), "amp.toml");
    }
}
