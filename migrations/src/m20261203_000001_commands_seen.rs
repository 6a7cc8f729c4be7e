//! Two small tables that make comments safe to receive twice and cheap to flood:
//!
//! - `commands_seen`: one row per `/amp` comment acted on, keyed by what GitHub signed (the
//!   repository, issue, comment id, action, `updated_at` and body), so the same signed comment
//!   replayed under a new delivery id finds its row and does nothing;
//! - `refusal_replies`: when a user without access was last told so on an issue, so a storm of
//!   their comments gets one reply an hour, not one each.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CommandsSeen {
    Table,
    CommandKey,
    DeliveryId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RefusalReplies {
    Table,
    RepoId,
    IssueNumber,
    Login,
    RepliedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CommandsSeen::Table)
                    .if_not_exists()
                    .col(string(CommandsSeen::CommandKey).primary_key())
                    .col(string(CommandsSeen::DeliveryId))
                    .col(big_integer(CommandsSeen::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefusalReplies::Table)
                    .if_not_exists()
                    .col(big_integer(RefusalReplies::RepoId))
                    .col(big_integer(RefusalReplies::IssueNumber))
                    .col(string(RefusalReplies::Login))
                    .col(big_integer(RefusalReplies::RepliedAt))
                    .primary_key(
                        Index::create()
                            .col(RefusalReplies::RepoId)
                            .col(RefusalReplies::IssueNumber)
                            .col(RefusalReplies::Login),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefusalReplies::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(CommandsSeen::Table).to_owned())
            .await
    }
}
