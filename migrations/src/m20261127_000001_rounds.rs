//! What the CI loop needs, and stops across replicas:
//!
//! - `task_rounds`: every turn of the agent after the first (a CI failure fed back, a follow-up
//!   prompt, a retry) with what it was given and what came of it. A round with no
//!   `finished_at` is the task's pending round, which a worker picks up.
//! - `tasks.awaiting_since`: when the task last started waiting for CI (the no-CI timeout counts
//!   from it).
//! - `tasks.stop_requested_at`: a `/amp stop` taken by a replica that does not run the task; the
//!   replica that runs it sees the request at its next check and stops the task.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    StopRequestedAt,
    AwaitingSince,
}

#[derive(DeriveIden)]
enum TaskRounds {
    Table,
    Id,
    TaskId,
    Round,
    Kind,
    HeadSha,
    FailedChecks,
    Fingerprint,
    Prompt,
    RequestedBy,
    Outcome,
    ResultSha,
    CreatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Tasks::StopRequestedAt, Tasks::AwaitingSince] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tasks::Table)
                        .add_column(big_integer_null(column))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(TaskRounds::Table)
                    .if_not_exists()
                    .col(big_pk_auto(TaskRounds::Id))
                    .col(big_integer(TaskRounds::TaskId))
                    .col(integer(TaskRounds::Round))
                    .col(string(TaskRounds::Kind))
                    .col(string_null(TaskRounds::HeadSha))
                    .col(text(TaskRounds::FailedChecks))
                    .col(string_null(TaskRounds::Fingerprint))
                    .col(text(TaskRounds::Prompt))
                    .col(string_null(TaskRounds::RequestedBy))
                    .col(string_null(TaskRounds::Outcome))
                    .col(string_null(TaskRounds::ResultSha))
                    .col(big_integer(TaskRounds::CreatedAt))
                    .col(big_integer_null(TaskRounds::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(TaskRounds::Table, TaskRounds::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_task_rounds_task")
                    .table(TaskRounds::Table)
                    .col(TaskRounds::TaskId)
                    .col(TaskRounds::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskRounds::Table).to_owned())
            .await?;
        for column in [Tasks::StopRequestedAt, Tasks::AwaitingSince] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Tasks::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
