//! `snapshots`: the images saved after a repository's setup succeeded, one per key (the image,
//! the setup commands, the working directory, the variables and the content of the cache key's
//! files), so the next task with the same key starts from it and skips setup. `used_at` orders
//! them for eviction (least recently used first); `bytes` is the image's size on the engine.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Snapshots {
    Table,
    Key,
    RepoId,
    Image,
    Bytes,
    CreatedAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Snapshots::Table)
                    .if_not_exists()
                    .col(string(Snapshots::Key).primary_key())
                    .col(big_integer(Snapshots::RepoId))
                    .col(string(Snapshots::Image))
                    .col(big_integer(Snapshots::Bytes))
                    .col(big_integer(Snapshots::CreatedAt))
                    .col(big_integer(Snapshots::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_snapshots_repo")
                    .table(Snapshots::Table)
                    .col(Snapshots::RepoId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Snapshots::Table).to_owned())
            .await
    }
}
