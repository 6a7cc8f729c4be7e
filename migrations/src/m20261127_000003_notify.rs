//! PostgreSQL only: notifications that let several replicas share one database.
//!
//! - `amp_task_events` carries `"<task_id> <seq>"` for every stored task event, so a replica
//!   whose viewers watch a task that runs on another replica reads the new events and streams
//!   them (the store stays the record; a missed notification only delays a viewer until the
//!   next one shows the gap).
//! - `amp_work` carries `queued` when a task becomes claimable (queued, or a CI round waiting
//!   for a worker), so an idle replica claims it at once rather than at its next sweep.
//!
//! SQLite is the single-replica default and needs neither.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE OR REPLACE FUNCTION amp_notify_task_event() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('amp_task_events', NEW.task_id::text || ' ' || NEW.seq::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER task_events_notify AFTER INSERT ON task_events
  FOR EACH ROW EXECUTE FUNCTION amp_notify_task_event();

CREATE OR REPLACE FUNCTION amp_notify_work() RETURNS trigger AS $$
BEGIN
  IF NEW.state = 'queued' OR (NEW.state = 'fixing' AND NEW.lease_owner IS NULL) THEN
    PERFORM pg_notify('amp_work', 'queued');
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER tasks_notify_work AFTER INSERT OR UPDATE OF state, lease_owner ON tasks
  FOR EACH ROW EXECUTE FUNCTION amp_notify_work();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS tasks_notify_work ON tasks;
DROP FUNCTION IF EXISTS amp_notify_work();
DROP TRIGGER IF EXISTS task_events_notify ON task_events;
DROP FUNCTION IF EXISTS amp_notify_task_event();
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(UP).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}
