//! Installations of the App, kept current from `installation` webhooks.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

use crate::db::now_ms;
use crate::entities::installation;

/// The installation as GitHub last described it.
#[derive(Debug, Clone)]
pub struct InstallationInfo<'a> {
    pub id: i64,
    pub account_login: &'a str,
    pub account_type: &'a str,
    pub repository_selection: Option<&'a str>,
    pub suspended: bool,
    pub deleted: bool,
}

/// Insert or update an installation.
pub async fn upsert(db: &impl ConnectionTrait, info: InstallationInfo<'_>) -> Result<(), DbErr> {
    let now = now_ms();
    let model = installation::ActiveModel {
        id: Set(info.id),
        account_login: Set(info.account_login.to_string()),
        account_type: Set(info.account_type.to_string()),
        repository_selection: Set(info.repository_selection.map(str::to_string)),
        suspended_at: Set(info.suspended.then_some(now)),
        deleted_at: Set(info.deleted.then_some(now)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    installation::Entity::insert(model)
        .on_conflict(
            OnConflict::column(installation::Column::Id)
                .update_columns([
                    installation::Column::AccountLogin,
                    installation::Column::AccountType,
                    installation::Column::RepositorySelection,
                    installation::Column::SuspendedAt,
                    installation::Column::DeletedAt,
                    installation::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn get(db: &impl ConnectionTrait, id: i64) -> Result<Option<installation::Model>, DbErr> {
    installation::Entity::find_by_id(id).one(db).await
}
