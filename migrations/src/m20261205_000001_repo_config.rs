//! `tasks.repo_config`: the text of the repository's `.github/amp.toml` as it was on the default
//! branch when the task was asked for (absent: the repository had none). The task runs with it
//! throughout, whatever the branch holds later.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Tasks {
    Table,
    RepoConfig,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .add_column(text_null(Tasks::RepoConfig))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Tasks::Table)
                    .drop_column(Tasks::RepoConfig)
                    .to_owned(),
            )
            .await
    }
}
