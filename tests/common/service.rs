//! The real service (router, database, workers) started in-process on a loopback port.

use std::collections::HashMap;

use amp_orchestrator::app::{self, Running};
use amp_orchestrator::config::Config;
use amp_orchestrator::webhook::signature::sign;

use super::db::TestDb;

pub const SECRET: &str = "test-webhook-secret";

pub struct TestService {
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
}

/// The environment a test service starts with; tests add or override variables.
pub fn test_env(db: &TestDb) -> HashMap<String, String> {
    HashMap::from([
        ("WEBHOOK_SECRET".to_string(), SECRET.to_string()),
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("HOST".to_string(), "127.0.0.1".to_string()),
        ("PORT".to_string(), "0".to_string()),
        ("LOG_LEVEL".to_string(), "warn".to_string()),
        // Tests of intake and replies leave tasks queued: this replica runs none. The worker's
        // own tests set a number.
        ("MAX_CONCURRENT_TASKS".to_string(), "0".to_string()),
    ])
}

/// The installation the webhook examples' repository (`Codertocat/Hello-World`) has in
/// [`TestService::start_with_github`].
pub const FIXTURE_INSTALLATION: i64 = 42;
/// The repository id the webhook examples carry (`Codertocat/Hello-World`).
pub const FIXTURE_REPOSITORY: i64 = 186853002;

impl TestService {
    /// The service without a GitHub App: webhooks are verified and stored, and no command is acted
    /// on (nobody's access can be checked).
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(test_env(db)).await
    }

    /// The service with the GitHub simulator as its App, where the webhook examples' repository
    /// is installed ([`FIXTURE_INSTALLATION`]) and their commenters (`Codertocat`, `octocat`) may
    /// write, so the examples' commands are acted on.
    pub async fn start_with_github(db: &TestDb) -> (Self, super::github_sim::GitHubSim) {
        let sim = super::github_sim::GitHubSim::start(SECRET).await;
        sim.add_repo_numbered(
            "Codertocat/Hello-World",
            FIXTURE_REPOSITORY,
            FIXTURE_INSTALLATION,
            &[("Codertocat", "admin"), ("octocat", "write")],
            &[("README.md", "# Hello-World\n")],
        );
        let mut env = test_env(db);
        env.extend(sim.service_env());
        let service = Self::start_full(env, super::story::tunables()).await;
        (service, sim)
    }

    pub async fn start_with(env: HashMap<String, String>) -> Self {
        Self::start_full(env, amp_orchestrator::context::Tunables::default()).await
    }

    /// Start with timings shortened for tests.
    pub async fn start_full(
        env: HashMap<String, String>,
        tunables: amp_orchestrator::context::Tunables,
    ) -> Self {
        amp_orchestrator::telemetry::init(
            env.get("LOG_LEVEL").map(String::as_str).unwrap_or("warn"),
            amp_orchestrator::config::LogFormat::Pretty,
        );
        let config = Config::from_lookup(|name| env.get(name).cloned())
            .and_then(|c| c.with_repo_secrets(env.clone()))
            .expect("test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = app::start_with(config, listener, tunables)
            .await
            .expect("service starts");
        let base = format!("http://{}", running.addr);
        TestService {
            running: Some(running),
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn ctx(&self) -> &amp_orchestrator::context::Ctx {
        &self.running.as_ref().unwrap().ctx
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Send a webhook signed with the test secret, as GitHub would.
    pub async fn webhook(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> (u16, serde_json::Value) {
        self.webhook_signed(event, delivery, body, &sign(SECRET, body))
            .await
    }

    pub async fn webhook_signed(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: &str,
    ) -> (u16, serde_json::Value) {
        let response = self
            .http
            .post(self.url("/api/github/webhooks"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", signature)
            .header("user-agent", "GitHub-Hookshot/test")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
    }
}

/// A queued task on `octo-org/widgets` issue 21, stored directly (for page and stream tests).
pub async fn new_task(
    ctx: &amp_orchestrator::context::Ctx,
) -> amp_orchestrator::entities::task::Model {
    amp_orchestrator::store::tasks::create(
        &ctx.db,
        amp_orchestrator::store::tasks::NewTask {
            installation_id: 77,
            repo_id: 9,
            repo_full_name: "octo-org/widgets".into(),
            clone_url: "https://github.com/octo-org/widgets.git".into(),
            default_branch: "main".into(),
            issue_number: 21,
            is_pull_request: false,
            issue_title: "Add a flag".into(),
            issue_body: String::new(),
            requester_login: "octocat".into(),
            requester_id: 1,
            comment_id: 5,
            delivery_id: None,
            prompt: "add a --json flag".into(),
            repo_config: None,
        },
    )
    .await
    .unwrap()
    .unwrap()
    .0
}

/// Append a log line to a task, as the service does (stored and published); its sequence number.
pub async fn log_line(
    ctx: &amp_orchestrator::context::Ctx,
    task_id: amp_orchestrator::domain::TaskId,
    text: &str,
) -> i64 {
    ctx.lifecycle
        .log(task_id, amp_orchestrator::domain::LogLine::info(text))
        .await
        .unwrap()
}

/// Move a task from `from` to `to` through the lifecycle, as the service does.
pub async fn move_task(
    ctx: &amp_orchestrator::context::Ctx,
    task_id: amp_orchestrator::domain::TaskId,
    from: amp_orchestrator::domain::TaskState,
    to: amp_orchestrator::domain::TaskState,
) {
    let task = amp_orchestrator::store::tasks::get(&ctx.db, task_id)
        .await
        .unwrap()
        .unwrap();
    ctx.lifecycle
        .transition_from(&task, from, amp_orchestrator::lifecycle::Move::to(to))
        .await
        .unwrap()
        .expect("the task was where the test left it");
}
