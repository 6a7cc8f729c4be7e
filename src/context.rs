//! What every handler, page and background worker shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::config::Config;
use crate::github::{self, GitHub};
use crate::identity::{Identity, IdentityCell};
use crate::lifecycle::Lifecycle;
use crate::redact::Redactor;
use crate::store::delivery_writer::DeliveryWriter;

/// Timings and bounds that are not configuration, with production defaults; tests shorten them.
#[derive(Debug, Clone)]
pub struct Tunables {
    pub github: github::Options,
    /// The first wait before a failed delivery is tried again; doubled per attempt.
    pub inbox_retry_base: Duration,
    /// How often an idle live-log stream gets a keep-alive comment (proxies close silent ones).
    pub sse_keep_alive: Duration,
    /// How long a webhook waits for one of the `MAX_CONCURRENT_WEBHOOK_BODIES` slots before it
    /// is answered `503`; well within the 10 s GitHub waits for an answer.
    pub webhook_body_wait: Duration,
    /// How much of an agent's output is taken in and kept.
    pub agent_output: crate::agent::limits::OutputLimits,
}

impl Default for Tunables {
    fn default() -> Self {
        Tunables {
            github: github::Options::default(),
            inbox_retry_base: Duration::from_secs(1),
            sse_keep_alive: Duration::from_secs(15),
            webhook_body_wait: Duration::from_secs(3),
            agent_output: Default::default(),
        }
    }
}

pub struct AppContext {
    pub config: Arc<Config>,
    pub db: DatabaseConnection,
    /// The App the service acts as (setup replaces it).
    pub identity: Arc<IdentityCell>,
    pub tunables: Tunables,
    /// Secrets to mask in every stored or shown line.
    pub redactor: Arc<Redactor>,
    /// New task events, for live viewers.
    pub bus: Arc<EventBus>,
    /// Every change of a task's state.
    pub lifecycle: Arc<Lifecycle>,
    /// The agents' sandbox (`None` with `AGENT_EGRESS=open`).
    pub sandbox: Option<Arc<crate::sandbox::Sandbox>>,
    /// Labels this deployment's containers (a hash of the database's identity).
    pub store_label: String,
    /// Group-commits intake's deliveries.
    pub deliveries: DeliveryWriter,
    /// Names this process in leases, so one replica never overwrites another's claim.
    pub instance_id: String,
    /// Rung by intake when a delivery is stored.
    pub inbox_wakeup: Notify,
    /// Set when another replica handed a running task back: look for it before the next claim.
    pub reconcile_soon: AtomicBool,
    /// Cancelled when a draining replica's grace time is up: the tasks still running here are
    /// handed back.
    pub handoff: CancellationToken,
    /// Cancelled on SIGTERM/SIGINT: stop accepting work, finish what is in hand.
    pub shutdown: CancellationToken,
    /// Wrong admin tokens tried lately (guessing is slowed down).
    pub wrong_admin_tokens: crate::pages::guard::WrongTokens,
    /// The Docker engine's last answer to `/readyz`, reused for a few seconds.
    pub docker_probe: crate::http::DockerProbe,
    /// The store's figures last shown by `/metrics`, reused for a few seconds.
    pub store_figures: crate::pages::metrics::StoreFigures,
}

pub type Ctx = Arc<AppContext>;

impl AppContext {
    /// The GitHub client, when the service has an App.
    pub fn github(&self) -> Option<Arc<GitHub>> {
        self.identity.github()
    }

    /// The id of the App the service acts as.
    pub fn app_id(&self) -> Option<u64> {
        self.identity.app_id()
    }

    pub fn identity(&self) -> Arc<Identity> {
        self.identity.current()
    }

    /// Whether the service still waits to be given an App (see [`crate::identity`]).
    pub fn in_setup(&self) -> bool {
        self.identity.in_setup()
    }

    /// In setup mode, switch to an App another replica registered meanwhile.
    pub async fn look_for_registered_app(&self) -> bool {
        self.identity.look_for_registered_app(&self.db).await
    }

    /// Whether this replica runs tasks (`MAX_CONCURRENT_TASKS` above 0).
    pub fn runs_tasks(&self) -> bool {
        self.config.max_concurrent_tasks > 0
    }

    /// How long a task claim lasts without renewal, in milliseconds.
    pub fn lease_ms(&self) -> i64 {
        self.config.task_lease.as_millis() as i64
    }
}
