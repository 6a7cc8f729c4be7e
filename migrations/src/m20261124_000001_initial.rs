//! Deliveries (the durable webhook inbox), installations, tasks and their append-only event log.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    DeliveryId,
    Event,
    Action,
    InstallationId,
    Status,
    Error,
    Attempts,
    LeaseOwner,
    LeaseUntil,
    ReceivedAt,
    ProcessedAt,
}

/// Bodies live apart from the inbox rows: the row is updated as the delivery moves through the
/// inbox, and on SQLite an update rewrites the whole row, a 25 MiB body included.
#[derive(DeriveIden)]
enum DeliveryPayloads {
    Table,
    DeliveryId,
    Body,
}

#[derive(DeriveIden)]
enum Installations {
    Table,
    Id,
    AccountLogin,
    AccountType,
    RepositorySelection,
    SuspendedAt,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    Id,
    PublicId,
    InstallationId,
    RepoId,
    RepoFullName,
    CloneUrl,
    DefaultBranch,
    IssueNumber,
    IsPullRequest,
    IssueTitle,
    IssueBody,
    RequesterLogin,
    RequesterId,
    CommentId,
    DeliveryId,
    Prompt,
    State,
    LastSeq,
    StatusCommentId,
    Branch,
    PrNumber,
    HeadSha,
    ThreadId,
    CiRound,
    ErrorMessage,
    LeaseOwner,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum TaskEvents {
    Table,
    Id,
    TaskId,
    Seq,
    Kind,
    Data,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Deliveries::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Deliveries::Id))
                    .col(string_uniq(Deliveries::DeliveryId))
                    .col(string(Deliveries::Event))
                    .col(string_null(Deliveries::Action))
                    .col(big_integer_null(Deliveries::InstallationId))
                    .col(string(Deliveries::Status))
                    .col(text_null(Deliveries::Error))
                    .col(integer(Deliveries::Attempts).default(0))
                    .col(string_null(Deliveries::LeaseOwner))
                    .col(big_integer_null(Deliveries::LeaseUntil))
                    .col(big_integer(Deliveries::ReceivedAt))
                    .col(big_integer_null(Deliveries::ProcessedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deliveries_status_id")
                    .table(Deliveries::Table)
                    .col(Deliveries::Status)
                    .col(Deliveries::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(DeliveryPayloads::Table)
                    .if_not_exists()
                    .col(big_integer(DeliveryPayloads::DeliveryId).primary_key())
                    .col(blob(DeliveryPayloads::Body))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_delivery_payloads_delivery")
                            .from(DeliveryPayloads::Table, DeliveryPayloads::DeliveryId)
                            .to(Deliveries::Table, Deliveries::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Installations::Table)
                    .if_not_exists()
                    .col(big_integer(Installations::Id).primary_key())
                    .col(string(Installations::AccountLogin))
                    .col(string(Installations::AccountType))
                    .col(string_null(Installations::RepositorySelection))
                    .col(big_integer_null(Installations::SuspendedAt))
                    .col(big_integer_null(Installations::DeletedAt))
                    .col(big_integer(Installations::CreatedAt))
                    .col(big_integer(Installations::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tasks::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Tasks::Id))
                    .col(string_uniq(Tasks::PublicId))
                    .col(big_integer(Tasks::InstallationId))
                    .col(big_integer(Tasks::RepoId))
                    .col(string(Tasks::RepoFullName))
                    .col(text(Tasks::CloneUrl))
                    .col(string(Tasks::DefaultBranch))
                    .col(big_integer(Tasks::IssueNumber))
                    .col(boolean(Tasks::IsPullRequest))
                    .col(text(Tasks::IssueTitle))
                    .col(text(Tasks::IssueBody))
                    .col(string(Tasks::RequesterLogin))
                    .col(big_integer(Tasks::RequesterId))
                    .col(big_integer(Tasks::CommentId))
                    .col(string_null(Tasks::DeliveryId))
                    .col(text(Tasks::Prompt))
                    .col(string(Tasks::State))
                    .col(big_integer(Tasks::LastSeq).default(0))
                    .col(big_integer_null(Tasks::StatusCommentId))
                    .col(string_null(Tasks::Branch))
                    .col(big_integer_null(Tasks::PrNumber))
                    .col(string_null(Tasks::HeadSha))
                    .col(string_null(Tasks::ThreadId))
                    .col(integer(Tasks::CiRound).default(0))
                    .col(text_null(Tasks::ErrorMessage))
                    .col(string_null(Tasks::LeaseOwner))
                    .col(big_integer_null(Tasks::LeaseUntil))
                    .col(big_integer(Tasks::CreatedAt))
                    .col(big_integer(Tasks::UpdatedAt))
                    .col(big_integer_null(Tasks::StartedAt))
                    .col(big_integer_null(Tasks::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_issue")
                    .table(Tasks::Table)
                    .col(Tasks::RepoId)
                    .col(Tasks::IssueNumber)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_delivery")
                    .table(Tasks::Table)
                    .col(Tasks::DeliveryId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tasks_state")
                    .table(Tasks::Table)
                    .col(Tasks::State)
                    .col(Tasks::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TaskEvents::Table)
                    .if_not_exists()
                    .col(big_pk_auto(TaskEvents::Id))
                    .col(big_integer(TaskEvents::TaskId))
                    .col(big_integer(TaskEvents::Seq))
                    .col(string(TaskEvents::Kind))
                    .col(text(TaskEvents::Data))
                    .col(big_integer(TaskEvents::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_task_events_task")
                            .from(TaskEvents::Table, TaskEvents::TaskId)
                            .to(Tasks::Table, Tasks::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_task_events_task_seq")
                    .table(TaskEvents::Table)
                    .col(TaskEvents::TaskId)
                    .col(TaskEvents::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            TaskEvents::Table.into_iden(),
            Tasks::Table.into_iden(),
            Installations::Table.into_iden(),
            DeliveryPayloads::Table.into_iden(),
            Deliveries::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
