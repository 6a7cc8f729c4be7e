//! What the simulator knows and records: repositories, issues, comments, reactions, pull requests,
//! check suites, commit statuses, installation tokens, webhook deliveries, injected faults and the
//! request log, all behind one lock ([`Shared`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;
use serde_json::Value;

use super::faults::Fault;
use super::recording::Recorder;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub id: i64,
    pub owner: String,
    pub name: String,
    pub installation_id: i64,
    pub default_branch: String,
    pub archived: bool,
    pub private: bool,
    /// The owner's plan has draft pull requests (GitHub Free has none on private repositories).
    pub drafts: bool,
    /// login → role: a base role (`admin`, `maintain`, `write`, `triage`, `read`) or a custom
    /// one with the base role it builds on (`ci-manager=write`).
    pub collaborators: HashMap<String, String>,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: i64,
    pub repo: String,
    pub issue_number: i64,
    pub author: String,
    pub body: String,
    /// Earlier bodies, oldest first.
    pub edits: Vec<String>,
    pub via_app: bool,
}

#[derive(Debug, Clone)]
pub struct Reaction {
    pub comment_id: i64,
    pub content: String,
    pub by: String,
}

/// An installation token the simulator issued.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) installation_id: i64,
    pub(super) repo_ids: Vec<i64>,
    pub(super) expires_at: u64,
    /// What the token may do: permission → `read` or `write`.
    pub(super) permissions: Permissions,
}

/// GitHub App permissions: name (`contents`, `checks`, …) → `read` or `write`.
pub type Permissions = HashMap<String, String>;

/// The permissions `app-manifest.json` asks for: what an installation grants unless a test says
/// otherwise.
pub fn manifest_permissions() -> Permissions {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("app-manifest.json");
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    manifest["default_permissions"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// One request the simulator answered.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub number: i64,
    pub node_id: String,
    pub repo: String,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub draft: bool,
    /// `open` or `closed`.
    pub state: String,
    pub merged: bool,
    pub reviewers: Vec<String>,
    /// Where the head branch lives when it is not `repo`: a fork's full name.
    pub head_repo: Option<String>,
    /// The fork holding the head branch was deleted (`head.repo` is null).
    pub head_repo_deleted: bool,
    /// Who closed (or merged) it.
    pub closed_by: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub id: i64,
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Empty while the run has not completed (`null` on GitHub).
    pub conclusion: String,
    pub title: String,
    pub summary: String,
    pub annotations: Vec<Value>,
    /// Served as the job's log.
    pub log: String,
}

#[derive(Debug, Clone)]
pub struct CheckSuite {
    pub id: i64,
    pub repo: String,
    pub head_branch: String,
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// Empty while the suite has not completed.
    pub conclusion: String,
    pub runs: Vec<CheckRun>,
    pub created_at: u64,
}

/// A webhook delivery attempt, as GitHub lists it for the App.
#[derive(Debug, Clone)]
pub struct HookDelivery {
    pub id: i64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub status_code: u16,
    pub redelivery: bool,
    pub payload: Value,
    pub installation_id: Option<i64>,
    pub repository_id: Option<i64>,
    /// Seconds since the epoch.
    pub delivered_at: u64,
}

#[derive(Default)]
pub struct SimState {
    /// Where the bare repositories live.
    pub root: std::path::PathBuf,
    pub base_url: String,
    pub webhook_url: Option<String>,
    /// Several services behind one App (replicas behind a load balancer): deliveries go to
    /// each in turn.
    pub round_robin: Vec<String>,
    pub(super) round_robin_next: usize,
    pub webhook_secret: String,
    pub(super) deliveries: u64,
    pub pulls: Vec<Pull>,
    pub check_suites: Vec<CheckSuite>,
    /// Webhook delivery attempts (GitHub's record, for redelivery).
    pub hook_deliveries: Vec<HookDelivery>,
    /// Issues opened through the API: (repository, number, title, body).
    pub issues: Vec<(String, i64, String, String)>,
    /// Legacy commit statuses: (repository, commit, the status as GitHub returns it).
    pub statuses: Vec<(String, String, Value)>,
    pub repos: Vec<Repo>,
    pub comments: Vec<Comment>,
    pub reactions: Vec<Reaction>,
    pub(super) tokens: HashMap<String, Token>,
    /// Installations whose permissions differ from the manifest's (an installation that has
    /// not accepted newly requested ones): installation id → its permissions.
    pub installation_permissions: HashMap<i64, Permissions>,
    /// Installations suspended by their owner: installation id → when (GitHub's time format).
    pub suspended_installations: HashMap<i64, String>,
    /// Installations removed by their owner (their repositories stay, for assertions).
    pub uninstalled: std::collections::HashSet<i64>,
    /// Where job logs are stored: a second host, as GitHub's are.
    pub blob_base_url: String,
    /// Log downloads that came with an `Authorization` header (GitHub's storage must never
    /// see the App's credentials).
    pub blob_requests_with_credentials: usize,
    pub tokens_minted: usize,
    /// Lifetime of minted installation tokens (GitHub: one hour).
    pub token_lifetime: Duration,
    pub(super) faults: VecDeque<(Method, String, Fault)>,
    pub log: Vec<Logged>,
    pub unknown: Vec<String>,
    pub(super) next_id: i64,
    /// Job id → the signature its log's download URL carries.
    pub(super) log_links: HashMap<i64, String>,
    /// Apps created from a manifest whose code has not been exchanged yet: code → (manifest,
    /// owner).
    pub(super) manifest_codes: HashMap<String, (Value, String)>,
    /// Codes exchanged for an App's credentials (each works once).
    pub manifest_conversions: usize,
    /// The client secret handed over with the last App created from a manifest.
    pub client_secret: String,
    /// Where the API's exchanges are recorded, when they are.
    pub(super) recorder: Option<Arc<Recorder>>,
}

impl SimState {
    pub(super) fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn next(&mut self) -> i64 {
        self.id()
    }

    /// The permissions installation `installation_id` grants.
    pub fn installation_grants(&self, installation_id: i64) -> Permissions {
        self.installation_permissions
            .get(&installation_id)
            .cloned()
            .unwrap_or_else(manifest_permissions)
    }

    pub(super) fn next_delivery(&mut self) -> String {
        self.deliveries += 1;
        format!(
            "sim-delivery-{}-{}",
            self.base_url.rsplit(':').next().unwrap_or(""),
            self.deliveries
        )
    }
}

pub type Shared = Arc<Mutex<SimState>>;

pub(super) fn find_repo(state: &SimState, owner: &str, name: &str) -> Option<Repo> {
    state
        .repos
        .iter()
        .find(|r| r.owner == owner && r.name == name)
        .cloned()
}
