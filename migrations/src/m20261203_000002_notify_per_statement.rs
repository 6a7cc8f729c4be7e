//! A stored task event is announced once per statement rather than once per row: the agent's
//! output is stored many lines to a statement, and a notification per line would cost every
//! replica a message per line of a flooding agent. `amp_task_events` now carries
//! `"<task_id> <lowest new seq>"` for each task a statement added events to; a listener reads
//! from there on until it has caught up. PostgreSQL only, like the notifications themselves.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
DROP TRIGGER IF EXISTS task_events_notify ON task_events;

CREATE OR REPLACE FUNCTION amp_notify_task_events() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('amp_task_events', task_id::text || ' ' || MIN(seq)::text)
    FROM inserted GROUP BY task_id;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER task_events_notify AFTER INSERT ON task_events
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION amp_notify_task_events();
"#;

const DOWN: &str = r#"
DROP TRIGGER IF EXISTS task_events_notify ON task_events;
DROP FUNCTION IF EXISTS amp_notify_task_events();

CREATE TRIGGER task_events_notify AFTER INSERT ON task_events
  FOR EACH ROW EXECUTE FUNCTION amp_notify_task_event();
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
