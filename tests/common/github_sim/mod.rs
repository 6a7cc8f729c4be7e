//! A stateful fake GitHub on a loopback port, for end-to-end stories.
//!
//! It checks credentials the way GitHub does (the App JWT's RS256 signature, issuer and lifetime;
//! installation tokens' expiry and repository scope), answers with bodies shaped like GitHub's
//! (built from the real webhook examples' user, repository and comment objects, which share the
//! REST shapes), records what the service did, sends signed webhooks built from the real examples,
//! and injects faults on request. A request it does not know is recorded, answered 404, and
//! fails the test when the simulator is dropped.
//!
//! This module holds [`GitHubSim`]: starting it, its routes, and setting repositories up. The
//! rest is by resource:
//!
//! - [`state`]: what the simulator knows and records, behind one lock;
//! - [`auth`]: the App JWT, installation tokens, and the extractor for an authorized repository;
//! - [`apps`]: the App, installation tokens, and the manifest flow that creates the App;
//! - [`webhooks`]: signed deliveries to the service, their record and redelivery;
//! - [`issues`]: the repository, issues, comments, reactions and permissions;
//! - [`pulls`]: refs, pull requests, reviewers and ready-for-review;
//! - [`checks`]: check suites and runs, annotations, commit statuses and job logs;
//! - [`ci`]: the CI that runs on a push and reports a check suite;
//! - [`git`]: bare repositories served over git's smart HTTP;
//! - [`faults`]: injected faults, the request log and unknown requests;
//! - [`recording`]: the record of the API's exchanges, checked against GitHub's published schemas;
//! - [`json`]: bodies shaped like GitHub's.
#![allow(clippy::result_large_err)]

mod apps;
mod auth;
mod checks;
mod ci;
mod faults;
pub mod git;
mod issues;
mod json;
mod pulls;
mod recording;
mod state;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, patch, post};

pub use apps::{APP_ID, APP_SLUG, app_private_key};
pub use faults::Fault;
pub use json::{github_error, repo_json, rfc3339, user_json};
pub use state::{
    CheckRun, CheckSuite, Comment, HookDelivery, Logged, Pull, Reaction, Repo, Shared, SimState,
    now,
};
pub use webhooks::send_webhook_with;

pub struct GitHubSim {
    pub addr: SocketAddr,
    pub state: Shared,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    _root: tempfile::TempDir,
}

impl Drop for GitHubSim {
    fn drop(&mut self) {
        self.server.abort();
        let (unknown, recorder) = {
            let state = self.state.lock().unwrap();
            (state.unknown.clone(), state.recorder.clone())
        };
        if let Some(Err(e)) = recorder.map(|r| r.flush()) {
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
        if !unknown.is_empty() && !std::thread::panicking() {
            panic!("the service made requests the GitHub simulator does not know: {unknown:?}");
        }
    }
}

impl GitHubSim {
    pub async fn start(webhook_secret: &str) -> GitHubSim {
        let root = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Job logs are served by a second host, as GitHub's storage is.
        let blobs = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let blob_addr = blobs.local_addr().unwrap();
        let state: Shared = Arc::new(Mutex::new(SimState {
            token_lifetime: Duration::from_secs(3600),
            next_id: 1000,
            root: root.path().to_path_buf(),
            base_url: format!("http://{addr}"),
            blob_base_url: format!("http://{blob_addr}"),
            webhook_secret: webhook_secret.to_string(),
            recorder: recording::Recorder::from_env(addr.port()),
            ..Default::default()
        }));
        let app = Router::new()
            .route(
                "/app/installations/{installation}/access_tokens",
                post(apps::create_token),
            )
            .route(
                "/app/installations/{installation}",
                get(apps::get_installation),
            )
            .route("/settings/apps/new", post(apps::new_app_for_user))
            .route(
                "/organizations/{org}/settings/apps/new",
                post(apps::new_app_for_org),
            )
            .route(
                "/app-manifests/{code}/conversions",
                post(apps::convert_manifest),
            )
            .route("/app/hook/deliveries", get(webhooks::list_hook_deliveries))
            .route(
                "/app/hook/deliveries/{id}/attempts",
                post(webhooks::redeliver),
            )
            .route("/repos/{owner}/{repo}", get(issues::get_repo))
            .route(
                "/repos/{owner}/{repo}/contents/{*path}",
                get(git::get_contents),
            )
            .route(
                "/repos/{owner}/{repo}/installation",
                get(apps::get_repo_installation),
            )
            .route("/repos/{owner}/{repo}/issues", post(issues::create_issue))
            .route(
                "/repos/{owner}/{repo}/issues/{number}",
                get(issues::get_issue),
            )
            .route(
                "/repos/{owner}/{repo}/collaborators/{login}/permission",
                get(issues::get_permission),
            )
            .route(
                "/repos/{owner}/{repo}/issues/{number}/comments",
                post(issues::create_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}",
                patch(issues::update_comment),
            )
            .route(
                "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
                post(issues::create_reaction),
            )
            .route("/repos/{owner}/{repo}/git/refs", post(pulls::create_ref))
            .route(
                "/repos/{owner}/{repo}/pulls",
                post(pulls::create_pull).get(pulls::list_pulls),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}",
                get(pulls::get_pull).patch(pulls::update_pull),
            )
            .route(
                "/repos/{owner}/{repo}/pulls/{number}/requested_reviewers",
                post(pulls::request_reviewers),
            )
            .route("/graphql", post(pulls::graphql))
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/status",
                get(checks::combined_status),
            )
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/check-suites",
                get(checks::list_check_suites),
            )
            .route(
                "/repos/{owner}/{repo}/commits/{sha}/check-runs",
                get(checks::list_check_runs),
            )
            .route(
                "/repos/{owner}/{repo}/check-runs/{id}/annotations",
                get(checks::list_annotations),
            )
            .route(
                "/repos/{owner}/{repo}/actions/jobs/{id}/logs",
                get(checks::job_log_redirect),
            )
            .route(
                "/git/{owner}/{repo}/{*rest}",
                get(git::git_http).post(git::git_http),
            )
            .fallback(faults::unknown)
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                faults::faults_and_log,
            ))
            .with_state(state.clone());
        let storage = Router::new()
            .route("/_blobs/job-logs/{id}", get(checks::job_log_blob))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let api = axum::serve(listener, app);
            let storage = axum::serve(blobs, storage);
            let (api, storage) = tokio::join!(api, storage);
            api.unwrap();
            storage.unwrap();
        });
        GitHubSim {
            addr,
            state,
            http: reqwest::Client::new(),
            server,
            _root: root,
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment the service needs to talk to this simulator as the App.
    pub fn service_env(&self) -> Vec<(String, String)> {
        vec![
            ("APP_ID".into(), APP_ID.to_string()),
            ("PRIVATE_KEY".into(), app_private_key()),
            ("GITHUB_API_URL".into(), self.api_url()),
            ("PUBLIC_URL".into(), "https://amp.example.test".into()),
        ]
    }

    /// A repository with the App installed; `collaborators` are (login, role). Its git
    /// repository has one commit on `main` with a README.
    pub fn add_repo(
        &self,
        full_name: &str,
        installation_id: i64,
        collaborators: &[(&str, &str)],
    ) -> Repo {
        self.add_repo_with_files(
            full_name,
            installation_id,
            collaborators,
            &[("README.md", "# widgets\n")],
        )
    }

    /// `login` becomes a collaborator of `repo` with `role`.
    pub fn add_collaborator(&self, repo: &Repo, login: &str, role: &str) {
        let mut s = self.state.lock().unwrap();
        let stored = s.repos.iter_mut().find(|r| r.id == repo.id).unwrap();
        stored.collaborators.insert(login.into(), role.into());
    }

    /// Like [`GitHubSim::add_repo`], with the first commit's files given.
    pub fn add_repo_with_files(
        &self,
        full_name: &str,
        installation_id: i64,
        collaborators: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Repo {
        let id = self.state.lock().unwrap().id();
        self.add_repo_numbered(full_name, id, installation_id, collaborators, files)
    }

    /// Like [`GitHubSim::add_repo_with_files`], under a given repository id: the one a recorded
    /// webhook example names, so the example's repository is this one.
    pub fn add_repo_numbered(
        &self,
        full_name: &str,
        id: i64,
        installation_id: i64,
        collaborators: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> Repo {
        let (owner, name) = full_name.split_once('/').unwrap();
        let mut state = self.state.lock().unwrap();
        let repo = Repo {
            id,
            owner: owner.into(),
            name: name.into(),
            installation_id,
            default_branch: "main".into(),
            archived: false,
            private: false,
            drafts: true,
            collaborators: collaborators
                .iter()
                .map(|(l, r)| (l.to_string(), r.to_string()))
                .collect(),
        };
        state.repos.push(repo.clone());
        git::init_bare(&state.root, &repo, files);
        repo
    }

    /// Change a repository's settings (privacy, plan); returns it as changed.
    pub fn update_repo(&self, repo: &Repo, change: impl FnOnce(&mut Repo)) -> Repo {
        let mut state = self.state.lock().unwrap();
        let stored = state.repos.iter_mut().find(|r| r.id == repo.id).unwrap();
        change(stored);
        stored.clone()
    }

    /// The bare repository behind `repo` (for assertions with git).
    pub fn bare_repo(&self, repo: &Repo) -> std::path::PathBuf {
        git::bare_path(&self.state.lock().unwrap().root, repo)
    }

    /// The URL to clone `repo` from (`clone_url` in its payloads).
    pub fn clone_url(&self, repo: &Repo) -> String {
        format!("http://{}/git/{}.git", self.addr, repo.full_name())
    }
}
