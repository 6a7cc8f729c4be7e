//! Connecting to the database and running migrations.
//!
//! SQLite is the zero-setup default (one file, WAL, one replica); PostgreSQL is for production and
//! several replicas. The same migrations and queries run on both.

use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};

use crate::config::{redact_url, sqlite_path};

/// Open a connection pool for `url`, creating the SQLite file (and its directory) when needed.
/// The SQLite file is readable by its owner only (it holds the App's credentials, sealed, and
/// the tasks' logs); SQLite gives its `-wal` and `-shm` files the same mode.
pub async fn connect(url: &str) -> anyhow::Result<DatabaseConnection> {
    let mut url = url.to_string();
    if url.starts_with("sqlite:") {
        if let Some(path) = sqlite_path(&url) {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("creating the database directory {}", dir.display())
                })?;
            }
            let creates = !url.contains("mode=") || url.contains("mode=rwc");
            owner_only(&path, creates)?;
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
                    // Space freed in a page is zeroed when the page is written anyway, so a
                    // value replaced (credentials sealed after a change of key) leaves no copy.
                    .pragma("secure_delete", "fast")
            });
    } else {
        options.max_connections(16).min_connections(1);
    }
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact_url(&url)))
}

/// Make the SQLite database at `path` readable and writable by its owner only: created with
/// mode 0600 when it does not exist yet (and `create`), its mode (and its `-wal`, `-shm` and
/// `-journal` files') narrowed to 0600 when it does. A file the service may not change (owned
/// by another user) is left as it is, with a warning.
#[cfg(unix)]
fn owner_only(path: &std::path::Path, create: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if create && !path.exists() {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            // Created meanwhile (another replica starting): narrowed below.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating the database {}", path.display()));
            }
        }
    }
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut sibling = path.as_os_str().to_owned();
        sibling.push(suffix);
        files.push(sibling.into());
    }
    for file in files {
        let Ok(metadata) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        if mode & 0o077 == 0 {
            continue;
        }
        if let Err(e) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(
                file = %file.display(),
                mode = format!("{:o}", mode & 0o777),
                error = %e,
                "the database file is readable by others and its mode cannot be changed"
            );
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_path: &std::path::Path, _create: bool) -> anyhow::Result<()> {
    Ok(())
}

/// On SQLite, copy the write-ahead log into the database and empty it, so no earlier version
/// of a changed row stays in it. Nothing on PostgreSQL; a failure only logs.
pub async fn checkpoint(db: &DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    if let Err(e) = db
        .execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
    {
        tracing::warn!(error = %e, "checkpointing the SQLite write-ahead log failed");
    }
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
