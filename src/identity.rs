//! Who the service is on GitHub: the App client and the webhook secrets it accepts.
//!
//! Three ways to get one, in order: `APP_ID`/`PRIVATE_KEY`/`WEBHOOK_SECRET` in the environment;
//! an App registered earlier through the manifest flow and kept in the database (its credentials
//! encrypted with `SECRET_KEY`; when they do not decrypt, the service does not act as it); or
//! none yet, which is **setup mode**: `GET /` offers to register an App, and once the callback
//! stores its credentials every replica switches to them without a restart (the one that took
//! the callback at once, the others at their next look at the database).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::DatabaseConnection;
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, error, info, warn};

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
    /// Why the App stored in the database cannot be used (its credentials do not decrypt with
    /// the keys configured, or are no App's), when it cannot.
    unusable: RwLock<Option<String>>,
}

impl IdentityCell {
    /// The identity the environment gives.
    pub fn from_config(
        config: Arc<Config>,
        options: github::Options,
        redactor: Arc<Redactor>,
    ) -> anyhow::Result<IdentityCell> {
        let github = match config.app_id {
            Some(_) => Some(GitHub::new(
                &config,
                options.clone(),
                Some(redactor.clone()),
            )?),
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
            unusable: RwLock::new(None),
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
    /// environment, still accepted); its secrets are masked like the configured ones. Fails
    /// when its credentials do not decrypt with `SECRET_KEY` or `SECRET_KEY_PREVIOUS`.
    pub fn adopt(&self, app: &github_app::Model) -> anyhow::Result<()> {
        let credentials = crate::store::github_app::credentials(app, &self.config.secret_keys)?;
        let github = GitHub::for_app(
            &self.config.github_api_url,
            Some(app.app_id as u64),
            Some(&credentials.private_key),
            self.options.clone(),
            Some(self.redactor.clone()),
        )?;
        let mut webhook_secrets = vec![credentials.webhook_secret.clone()];
        webhook_secrets.extend(self.config.webhook_secrets.iter().cloned());
        for secret in [
            &credentials.private_key,
            &credentials.webhook_secret,
            &credentials.client_secret,
        ] {
            self.redactor.add(secret.expose_secret());
        }
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
                    self.set_unusable(None);
                    info!(app_id = app.app_id, slug = %app.slug, "using the GitHub App registered through setup");
                    true
                }
                Err(e) => {
                    let problem = format!("{e:#}");
                    // Said once at error level; the looks every few seconds repeat it quietly.
                    if self.unusable().as_deref() == Some(problem.as_str()) {
                        debug!(app_id = app.app_id, error = %problem, "the registered GitHub App's credentials are unusable");
                    } else {
                        error!(app_id = app.app_id, error = %problem, "the registered GitHub App's credentials are unusable; the service does not act as it");
                    }
                    self.set_unusable(Some(problem));
                    false
                }
            },
            Ok(None) => {
                self.set_unusable(None);
                false
            }
            Err(e) => {
                warn!(error = %e, "reading the registered GitHub App failed");
                false
            }
        }
    }

    /// Why the App stored in the database cannot be used, as of the last look for it.
    pub fn unusable(&self) -> Option<String> {
        self.unusable
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_unusable(&self, problem: Option<String>) {
        *self
            .unusable
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = problem;
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
