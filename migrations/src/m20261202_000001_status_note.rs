//! `tasks.status_note`: the sentence the task's status comment shows under its state (the agent's
//! summary, why it ended, what CI said). It is written with the state change it belongs to, so the
//! comment is always rendered from the row and whoever edits it last shows what the store says.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    StatusNote,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(text_null(Tasks::StatusNote))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::StatusNote)
                    .to_owned(),
            )
            .await
    }
}
