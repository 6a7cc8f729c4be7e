//! Connecting to the database and running migrations.
//!
//! SQLite is the zero-setup default (one file, WAL, one replica); PostgreSQL is for production and
//! several replicas. The same migrations and queries run on both.

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

use crate::config::{redact_url, sqlite_path};

/// Open a connection pool for `url`, creating the SQLite file (and its directory) when needed.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut url = url.to_string();
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(&url)
            && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the database directory {}", dir.display()))?;
        }
        if !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
    }
    let mut options = ConnectOptions::new(url.clone());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        // WAL lets readers (status pages) proceed while a writer commits; NORMAL sync is durable
        // across process crashes in WAL mode (only an OS crash can lose the last commits). Writers
        // queue on the busy timeout instead of failing.
        options
            .max_connections(8)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true)
            });
    } else {
        options.max_connections(16).min_connections(1);
    }
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact_url(&url)))
}

/// Bring the schema up to date. Safe to run on every start and from several replicas in turn.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None)
        .await
        .context("running database migrations")
}

/// `true` for PostgreSQL, where queries use row locks (`FOR UPDATE SKIP LOCKED`) that SQLite
/// neither has nor needs.
pub fn is_postgres(db: &DatabaseConnection) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Milliseconds since the Unix epoch: the one timestamp format stored in the database.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
