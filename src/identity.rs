//! Who the service is on GitHub: the App client and the webhook secrets it accepts.
//!
//! Three ways to get one, in order: `APP_ID`/`PRIVATE_KEY`/`WEBHOOK_SECRET` in the environment;
//! an App registered earlier through the manifest flow and kept in the database; or none yet,
//! which is **setup mode**: `GET /` offers to register an App, and once the callback stores its
//! credentials every replica switches to them without a restart (the one that took the
//! callback at once, the others at their next look at the database).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use tracing::{info, warn};

use crate::config::Config;
use crate::entities::github_app;
use crate::github::{self, GitHub};
use crate::redact::Redactor;

/// How often a replica in setup mode looks for an App registered through another replica.
pub const SETUP_POLL: Duration = Duration::from_secs(5);

/// The App the service acts as.
#[derive(Default)]
pub struct Identity {
    /// `None` in setup mode, and when only `WEBHOOK_SECRET` is set (commands are then recorded
    /// but nothing is posted to GitHub).
    pub github: Option<Arc<GitHub>>,
    /// A webhook signed with any of these is accepted; none means webhooks cannot be verified
    /// yet and are refused.
    pub webhook_secrets: Vec<SecretString>,
    /// Set when the App came from the manifest flow.
    pub registered: Option<Registered>,
}

/// What the pages show about an App registered through the manifest flow.
#[derive(Debug, Clone)]
pub struct Registered {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub html_url: String,
}

impl Registered {
    /// Where an account installs the App.
    pub fn install_url(&self) -> String {
        format!("{}/installations/new", self.html_url.trim_end_matches('/'))
    }
}

/// The service's identity, replaced in place when the setup flow registers an App. Cheap to
/// read: every reader gets the current [`Identity`] as an `Arc`.
pub struct IdentityCell {
    current: RwLock<Arc<Identity>>,
    config: Arc<Config>,
    options: github::Options,
    redactor: Arc<Redactor>,
}

impl IdentityCell {
    /// The identity the environment gives.
    pub fn from_config(
        config: Arc<Config>,
        options: github::Options,
        redactor: Arc<Redactor>,
    ) -> anyhow::Result<IdentityCell> {
        let github = match config.app_id {
            Some(_) => Some(GitHub::new(&config, options.clone())?),
            None => None,
        };
        let identity = Identity {
            github,
            webhook_secrets: config.webhook_secrets.clone(),
            registered: None,
        };
        Ok(IdentityCell {
            current: RwLock::new(Arc::new(identity)),
            config,
            options,
            redactor,
        })
    }

    pub fn current(&self) -> Arc<Identity> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The GitHub client, when the service has an App.
    pub fn github(&self) -> Option<Arc<GitHub>> {
        self.current().github.clone()
    }

    /// The id of the App the service acts as (from `APP_ID` or the setup flow).
    pub fn app_id(&self) -> Option<u64> {
        self.github().map(|g| g.app_id()).filter(|id| *id > 0)
    }

    /// Whether `GET /` shows the setup page: no `APP_ID` in the environment and no App
    /// registered yet.
    pub fn in_setup(&self) -> bool {
        self.config.app_id.is_none() && self.current().github.is_none()
    }

    /// Act as the App stored in the database from now on (plus any `WEBHOOK_SECRET` from the
    /// environment, still accepted); its secrets are masked like the configured ones.
    pub fn adopt(&self, app: &github_app::Model) -> anyhow::Result<()> {
        let key = SecretString::from(app.private_key.clone());
        let github = GitHub::for_app(
            &self.config.github_api_url,
            Some(app.app_id as u64),
            Some(&key),
            self.options.clone(),
        )?;
        let mut webhook_secrets = vec![SecretString::from(app.webhook_secret.clone())];
        webhook_secrets.extend(self.config.webhook_secrets.iter().cloned());
        self.redactor.add(&app.private_key);
        self.redactor.add(&app.webhook_secret);
        self.redactor.add(&app.client_secret);
        let identity = Identity {
            github: Some(github),
            webhook_secrets,
            registered: Some(Registered {
                id: app.app_id as u64,
                slug: app.slug.clone(),
                name: app.name.clone(),
                html_url: app.html_url.clone(),
            }),
        };
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(identity);
        Ok(())
    }

    /// In setup mode, switch to an App another replica registered meanwhile; true when the
    /// service has an App afterwards.
    pub async fn look_for_registered_app(&self, db: &DatabaseConnection) -> bool {
        if !self.in_setup() {
            return true;
        }
        match crate::store::github_app::current(db).await {
            Ok(Some(app)) => match self.adopt(&app) {
                Ok(()) => {
                    info!(app_id = app.app_id, slug = %app.slug, "using the GitHub App registered through setup");
                    true
                }
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "the registered GitHub App's credentials are unusable");
                    false
                }
            },
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "reading the registered GitHub App failed");
                false
            }
        }
    }

    /// While in setup mode, look for an App registered through another replica; ends once there
    /// is one (or when `stop` is cancelled).
    pub async fn watch(&self, db: &DatabaseConnection, stop: &tokio_util::sync::CancellationToken) {
        while self.in_setup() {
            tokio::select! {
                _ = tokio::time::sleep(SETUP_POLL) => {}
                _ = stop.cancelled() => return,
            }
            self.look_for_registered_app(db).await;
        }
    }
}
