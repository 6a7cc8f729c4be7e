//! `tasks.command_delivery_id`: the webhook delivery whose `/amp retry` or follow-up prompt last
//! queued the task again, stored with that state change. A delivery handled a second time (its
//! worker died before recording the outcome) finds itself there and does nothing, rather than
//! running the task once more.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    CommandDeliveryId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(string_null(Tasks::CommandDeliveryId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::CommandDeliveryId)
                    .to_owned(),
            )
            .await
    }
}
