//! Wiring: the shared context, the HTTP router and the background workers, started and stopped
//! together.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use tracing::info;

use crate::bus::EventBus;
use crate::config::{Config, redact_url};
use crate::context::{AppContext, Ctx, Tunables};
use crate::identity::IdentityCell;
use crate::lifecycle::Lifecycle;
use crate::redact::Redactor;
use crate::store::delivery_writer::{DeliveryWriter, WriterTasks};
use crate::{db, http, inbox, pages, webhook};

/// A short, stable name for the task store behind `url` (credentials excluded).
pub fn store_label(url: &str) -> String {
    use sha2::Digest;
    let redacted = redact_url(url);
    let digest = sha2::Sha256::digest(redacted.as_bytes());
    hex::encode(&digest[..8])
}

fn instance_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{:08x}", rand::rng().next_u32())
}

/// The most of a request body any route but the webhook reads (axum's default is 2 MiB). The
/// admin form and API take a prompt and a few fields, and read them before the token is checked.
pub const MAX_OTHER_BODY_BYTES: usize = 64 * 1024;

/// The HTTP routes.
pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/github/webhooks", webhook::intake::route(&ctx))
        .route("/", get(pages::index))
        .route("/setup", get(pages::setup::show))
        .route("/setup/callback", get(pages::setup::callback))
        .route("/tasks", get(pages::admin::list).post(pages::admin::submit))
        .route("/tasks/new", get(pages::admin::form))
        .route("/api/tasks", post(pages::admin::api_create))
        .route("/api/tasks/{public_id}", get(pages::admin::api_show))
        .route(
            "/api/snapshots",
            get(pages::setup_snapshots::api_list)
                .delete(pages::setup_snapshots::api_remove_for_repo),
        )
        .route(
            "/api/snapshots/{key}",
            axum::routing::delete(pages::setup_snapshots::api_remove),
        )
        .route("/tasks/{public_id}", get(pages::task::show))
        .route("/tasks/{public_id}/events", get(pages::sse::events))
        .route("/static/style.css", get(pages::style))
        .route("/static/task.js", get(pages::script))
        .route("/metrics", get(pages::metrics::metrics))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .fallback(pages::fallback)
        .layer(DefaultBodyLimit::max(MAX_OTHER_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        // Request spans name the path only: a query can carry a one-time code (the setup
        // callback's), which must not reach the logs.
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path()
                )
            }),
        )
        .with_state(ctx)
}

async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    let headers = response.headers_mut();
    for (name, value) in pages::SECURITY_HEADERS {
        if !headers.contains_key(name) {
            headers.insert(name, axum::http::HeaderValue::from_static(value));
        }
    }
    response
}

/// Bring the stored App's credentials under `SECRET_KEY`: plain text from before encryption
/// existed, or values sealed with a key now in `SECRET_KEY_PREVIOUS`. Once, at start.
async fn seal_stored_credentials(
    db: &sea_orm::DatabaseConnection,
    config: &Config,
) -> anyhow::Result<()> {
    use crate::store::github_app::{Resealed, reseal};
    let keys = &config.secret_keys;
    let key_id = keys.current.as_ref().map(|k| k.id()).unwrap_or_default();
    match reseal(db, keys)
        .await
        .context("sealing the registered App's credentials")?
    {
        Resealed::Unchanged | Resealed::ChangedMeanwhile => {}
        Resealed::Sealed { from } => {
            info!(key_id, from = %from.join(", "), "the registered GitHub App's credentials are now encrypted with SECRET_KEY");
            if from.iter().any(|f| f == "plain text") {
                // Leave no copy of the plain text in SQLite's write-ahead log.
                db::checkpoint(db).await;
            }
        }
        Resealed::PlainTextWithoutKey => tracing::warn!(
            "the registered GitHub App's credentials are stored unencrypted: set SECRET_KEY \
             (make one with `openssl rand -base64 32`) and restart to encrypt them"
        ),
        // Adopting the App reports it, with the same reason.
        Resealed::Unopenable(e) => {
            tracing::debug!(error = %e, "the stored credentials were not resealed")
        }
    }
    Ok(())
}

/// A started service.
pub struct Running {
    pub addr: SocketAddr,
    pub ctx: Ctx,
    server: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<()>>,
    writer: WriterTasks,
}

impl Running {
    /// Ask the service to stop and wait until it has: in-flight requests finish, workers finish
    /// the work in hand.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.ctx.shutdown.cancel();
        self.wait().await
    }

    /// Wait until the service stops (after [`AppContext::shutdown`] is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        let served = self.server.await.context("the HTTP server panicked")?;
        // No request can hand over a delivery any more; commit what was handed over.
        self.writer.stop().await;
        for worker in self.workers {
            worker.await.context("a worker panicked")?;
        }
        served.context("the HTTP server failed")
    }
}

/// Connect to the database, migrate, and start serving on `config.host:config.port`.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    start_on(config, listener).await
}

/// Like [`start`], on a listener the caller bound (tests bind port 0).
pub async fn start_on(config: Config, listener: TcpListener) -> anyhow::Result<Running> {
    start_with(config, listener, Tunables::default()).await
}

/// Like [`start_on`], with timings chosen by the caller.
pub async fn start_with(
    config: Config,
    listener: TcpListener,
    tunables: Tunables,
) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let redactor = Arc::new(Redactor::new());
    {
        use secrecy::ExposeSecret;
        for secret in config.webhook_secrets.iter().chain(&config.redact_values) {
            redactor.add(secret.expose_secret());
        }
        for value in config.repo_secrets.values() {
            redactor.add(value);
        }
        for secret in [
            &config.amp_api_key,
            &config.private_key,
            &config.admin_token,
        ]
        .into_iter()
        .flatten()
        {
            redactor.add(secret.expose_secret());
        }
        let keys = &config.secret_keys;
        for key in keys.current.iter().chain(&keys.previous) {
            for spelling in key.spellings() {
                redactor.add(&spelling);
            }
        }
    }
    let identity = Arc::new(IdentityCell::from_config(
        config.clone(),
        tunables.github.clone(),
        redactor.clone(),
    )?);
    let db = db::connect(&config.database_url).await?;
    db::migrate(&db).await?;
    seal_stored_credentials(&db, &config).await?;
    let (deliveries, writer) = DeliveryWriter::start(db.clone());
    let store_label = store_label(&config.database_url);
    let bus = Arc::new(EventBus::new());
    let (lifecycle, started_waiting) = Lifecycle::new(
        db.clone(),
        bus.clone(),
        identity.clone(),
        redactor.clone(),
        config.clone(),
        store_label.clone(),
    );
    let sandbox = crate::sandbox::Sandbox::new(&config, &store_label);
    if !config.egress.mode.is_sandboxed() {
        tracing::warn!(
            "AGENT_EGRESS=open: agents run without the sandbox, on AGENT_NETWORK with the Amp key in their environment; whatever can steer an agent can reach what that network reaches and take the key"
        );
    }
    let ctx = Arc::new(AppContext {
        sandbox,
        config,
        db,
        identity,
        tunables,
        redactor,
        bus,
        lifecycle: Arc::new(lifecycle),
        store_label,
        deliveries,
        instance_id: instance_id(),
        inbox_wakeup: Notify::new(),
        reconcile_soon: std::sync::atomic::AtomicBool::new(false),
        handoff: CancellationToken::new(),
        shutdown: CancellationToken::new(),
        wrong_admin_tokens: Default::default(),
        docker_probe: Default::default(),
        store_figures: Default::default(),
    });
    if ctx.config.app_id.is_none() && !ctx.look_for_registered_app().await {
        if ctx.config.webhook_secrets.is_empty() {
            tracing::warn!(
                "no GitHub App yet: open {}/ to register one (webhooks are refused until then)",
                ctx.config.public_url
            );
        } else {
            tracing::warn!(
                "APP_ID is not set: commands are recorded but nothing is posted to GitHub; open {}/ to register an App",
                ctx.config.public_url
            );
        }
    }
    let addr = listener.local_addr()?;
    info!(
        %addr,
        database = %redact_url(&ctx.config.database_url),
        instance = %ctx.instance_id,
        "amp-orchestrator listening"
    );
    let app = router(ctx.clone());
    let shutdown = ctx.shutdown.clone();
    let limits = crate::server::Limits::from_config(&ctx.config);
    let server = tokio::spawn(async move {
        use axum::serve::ListenerExt;
        // Live events are small writes: send them at once rather than waiting to fill a packet.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "setting TCP_NODELAY failed");
            }
        });
        crate::server::serve(listener, app, limits, shutdown.cancelled_owned()).await
    });
    let mut workers = vec![
        tokio::spawn(inbox::run(ctx.clone())),
        tokio::spawn(crate::redelivery::watch(ctx.clone())),
        tokio::spawn(crate::notify::listen(ctx.clone())),
        tokio::spawn(crate::ci::watch(ctx.clone(), started_waiting)),
    ];
    if ctx.in_setup() {
        let ctx = ctx.clone();
        workers.push(tokio::spawn(async move {
            ctx.identity.watch(&ctx.db, &ctx.shutdown).await
        }));
    }
    if ctx.runs_tasks() {
        workers.push(tokio::spawn(crate::worker::run(ctx.clone())));
        if let Some(sandbox) = ctx.sandbox.clone() {
            // The gateway (and its image) made ready now rather than by the first task; a task
            // tries again if this fails.
            let docker_host = ctx.config.docker_host.clone();
            tokio::spawn(async move {
                let ready = match crate::docker::Engine::connect(docker_host.as_deref()).await {
                    Ok(engine) => sandbox.gateway(&engine).await.map(drop),
                    Err(e) => Err(e),
                };
                if let Err(e) = ready {
                    tracing::warn!(error = %e, "the egress gateway is not ready yet; the first task will try again");
                }
            });
        }
    }
    Ok(Running {
        addr,
        ctx,
        server,
        workers,
        writer,
    })
}
