//! Persistence: the delivery inbox, installations, tasks and task events (the agent's output in
//! bulk, within bounds, in [`task_log`]).
//!
//! Hot or concurrency-sensitive statements (claims with leases, sequence numbers) are written as SQL
//! that runs on both backends; the rest goes through sea-orm entities.

pub mod commands;
pub mod deliveries;
pub mod delivery_writer;
pub mod github_app;
pub mod installations;
pub mod requests;
pub mod rounds;
pub mod snapshots;
pub mod task_log;
pub mod tasks;

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};

/// Build a statement from SQL written with PostgreSQL's `$1, $2, …` placeholders. SQLite gets the
/// same numbered placeholders as `?1, ?2, …`, which it binds by number too, so a query is written
/// once for both backends.
pub(crate) fn stmt(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Statement {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => sql.replace('$', "?"),
        _ => sql.to_string(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}
