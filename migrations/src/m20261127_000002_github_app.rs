//! The GitHub App this deployment registered through the manifest flow (first run without
//! `APP_ID`), and the one-time `state` values that tie a registration's callback to the setup
//! page that started it.
//!
//! The credentials live in the database rather than a file so every replica sees them, and a
//! deploy that replaces the machine keeps them. `APP_ID`/`PRIVATE_KEY`/`WEBHOOK_SECRET` in the
//! environment still take precedence.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GithubApp {
    Table,
    Slot,
    AppId,
    Slug,
    Name,
    OwnerLogin,
    HtmlUrl,
    ClientId,
    ClientSecret,
    WebhookSecret,
    PrivateKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SetupStates {
    Table,
    State,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GithubApp::Table)
                    .if_not_exists()
                    // Always 1: one App per deployment, so two registrations finishing at once
                    // cannot both be stored.
                    .col(integer(GithubApp::Slot).primary_key())
                    .col(big_integer(GithubApp::AppId))
                    .col(string(GithubApp::Slug))
                    .col(string(GithubApp::Name))
                    .col(string(GithubApp::OwnerLogin))
                    .col(string(GithubApp::HtmlUrl))
                    .col(string(GithubApp::ClientId))
                    .col(text(GithubApp::ClientSecret))
                    .col(text(GithubApp::WebhookSecret))
                    .col(text(GithubApp::PrivateKey))
                    .col(big_integer(GithubApp::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SetupStates::Table)
                    .if_not_exists()
                    .col(string(SetupStates::State).primary_key())
                    .col(big_integer(SetupStates::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SetupStates::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(GithubApp::Table).to_owned())
            .await
    }
}
