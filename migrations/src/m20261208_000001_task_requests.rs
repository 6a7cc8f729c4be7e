//! `task_requests`: what people asked of a task while a round of it ran, kept in order until
//! the next round takes them (`round_id` set in the transaction that starts that round), so
//! nothing said during a round is refused or lost.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum TaskRequests {
    Table,
    Id,
    TaskId,
    Login,
    Prompt,
    CommentId,
    CreatedAt,
    RoundId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TaskRequests::Table)
                    .if_not_exists()
                    .col(big_pk_auto(TaskRequests::Id))
                    .col(big_integer(TaskRequests::TaskId))
                    .col(string(TaskRequests::Login))
                    .col(text(TaskRequests::Prompt))
                    .col(big_integer(TaskRequests::CommentId))
                    .col(big_integer(TaskRequests::CreatedAt))
                    .col(big_integer_null(TaskRequests::RoundId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(TaskRequests::Table, TaskRequests::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_task_requests_task")
                    .table(TaskRequests::Table)
                    .col(TaskRequests::TaskId)
                    .col(TaskRequests::Id)
                    .to_owned(),
            )
            .await?;
        // One comment is one request, however often its delivery is handled.
        manager
            .create_index(
                Index::create()
                    .name("idx_task_requests_comment")
                    .table(TaskRequests::Table)
                    .col(TaskRequests::TaskId)
                    .col(TaskRequests::CommentId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(TaskRequests::Table).to_owned())
            .await
    }
}
