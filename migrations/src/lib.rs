//! Database schema for amp-orchestrator, as ordered sea-orm migrations.
//!
//! The same migrations run on SQLite (the single-replica default) and PostgreSQL. Every id is a
//! 64-bit integer and every timestamp is Unix milliseconds in a `BIGINT`, so both backends store and
//! compare them the same way (no text-vs-timestamptz differences in lease arithmetic).

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_initial;
mod m20261127_000001_rounds;
mod m20261127_000002_github_app;
mod m20261127_000003_notify;
mod m20261127_000004_command_delivery;
mod m20261202_000001_status_note;
mod m20261203_000001_commands_seen;
mod m20261203_000002_notify_per_statement;
mod m20261204_000001_egress_blocked;
mod m20261205_000001_repo_config;
mod m20261206_000001_snapshots;
mod m20261207_000001_stop_note;
mod m20261208_000001_task_requests;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_initial::Migration),
            Box::new(m20261127_000001_rounds::Migration),
            Box::new(m20261127_000002_github_app::Migration),
            Box::new(m20261127_000003_notify::Migration),
            Box::new(m20261127_000004_command_delivery::Migration),
            Box::new(m20261202_000001_status_note::Migration),
            Box::new(m20261203_000001_commands_seen::Migration),
            Box::new(m20261203_000002_notify_per_statement::Migration),
            Box::new(m20261204_000001_egress_blocked::Migration),
            Box::new(m20261205_000001_repo_config::Migration),
            Box::new(m20261206_000001_snapshots::Migration),
            Box::new(m20261207_000001_stop_note::Migration),
            Box::new(m20261208_000001_task_requests::Migration),
        ]
    }
}
