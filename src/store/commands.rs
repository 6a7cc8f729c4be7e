//! Comments acted on (so a replay does nothing) and refusals replied (so a storm gets one reply).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

use super::stmt;
use crate::db::now_ms;
use crate::entities::command_seen;

/// Whether a comment's command is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// First seen in this delivery (or this delivery is being handled again): act on it.
    First,
    /// Acted on already, from another delivery (a replay, or GitHub's second copy).
    Before { delivery_id: String },
}

/// Record that `delivery_id` brings the command keyed `key`, unless another delivery did.
pub async fn first_seen(
    db: &impl ConnectionTrait,
    key: &str,
    delivery_id: &str,
) -> Result<Seen, DbErr> {
    command_seen::Entity::insert(command_seen::ActiveModel {
        command_key: Set(key.to_string()),
        delivery_id: Set(delivery_id.to_string()),
        created_at: Set(now_ms()),
    })
    .on_conflict(
        OnConflict::column(command_seen::Column::CommandKey)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let row = command_seen::Entity::find_by_id(key.to_string())
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the command just recorded".into()))?;
    Ok(if row.delivery_id == delivery_id {
        Seen::First
    } else {
        Seen::Before {
            delivery_id: row.delivery_id,
        }
    })
}

/// Claim the right to tell `login` on an issue that they may not run commands: true at most once
/// per `every_ms` for the same repository, issue and login.
pub async fn refusal_due(
    db: &impl ConnectionTrait,
    repo_id: i64,
    issue_number: i64,
    login: &str,
    every_ms: i64,
) -> Result<bool, DbErr> {
    let now = now_ms();
    let claimed = db
        .execute_raw(stmt(
            db,
            "INSERT INTO refusal_replies (repo_id, issue_number, login, replied_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo_id, issue_number, login) DO UPDATE SET replied_at = $4 \
             WHERE refusal_replies.replied_at <= $5",
            [
                repo_id.into(),
                issue_number.into(),
                login.to_string().into(),
                now.into(),
                (now - every_ms).into(),
            ],
        ))
        .await?;
    Ok(claimed.rows_affected() == 1)
}
