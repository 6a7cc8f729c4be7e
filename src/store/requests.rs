//! What people asked of a task while a round of it ran (see [`crate::entities::task_request`]):
//! queued in order, taken by the next round in the transaction that starts it.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};

use super::stmt;
use crate::db::now_ms;
use crate::domain::TaskId;
use crate::entities::task_request;

/// Queue `prompt` from `login` (in comment `comment_id`) for the task's next round. A comment
/// queued already (its delivery handled again) is not queued twice.
pub async fn queue(
    db: &DatabaseConnection,
    task_id: TaskId,
    login: &str,
    prompt: &str,
    comment_id: i64,
) -> Result<(), DbErr> {
    let queued = task_request::Entity::find()
        .filter(task_request::Column::TaskId.eq(task_id))
        .filter(task_request::Column::CommentId.eq(comment_id))
        .one(db)
        .await?;
    if queued.is_some() {
        return Ok(());
    }
    task_request::Entity::insert(task_request::ActiveModel {
        task_id: Set(task_id),
        login: Set(login.to_string()),
        prompt: Set(prompt.to_string()),
        comment_id: Set(comment_id),
        created_at: Set(now_ms()),
        round_id: Set(None),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// The task's requests no round has taken yet, in the order they were made: by comment id,
/// which GitHub hands out in order (deliveries are handled concurrently, so rows may be stored
/// in another order).
pub async fn waiting(
    db: &DatabaseConnection,
    task_id: TaskId,
) -> Result<Vec<task_request::Model>, DbErr> {
    task_request::Entity::find()
        .filter(task_request::Column::TaskId.eq(task_id))
        .filter(task_request::Column::RoundId.is_null())
        .order_by_asc(task_request::Column::CommentId)
        .order_by_asc(task_request::Column::Id)
        .all(db)
        .await
}

/// Drop the task's waiting requests (the task was stopped, or its pull request closed); how many.
pub async fn drop_waiting(db: &DatabaseConnection, task_id: TaskId) -> Result<u64, DbErr> {
    let result = task_request::Entity::delete_many()
        .filter(task_request::Column::TaskId.eq(task_id))
        .filter(task_request::Column::RoundId.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Mark requests `ids` as taken by round `round_id` (inside the transaction that starts it);
/// whether all of them were still waiting.
pub(super) async fn take(
    txn: &impl ConnectionTrait,
    round_id: i64,
    ids: &[i64],
) -> Result<bool, DbErr> {
    if ids.is_empty() {
        return Ok(true);
    }
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    let result = txn
        .execute_raw(stmt(
            txn,
            &format!(
                "UPDATE task_requests SET round_id = $1 WHERE round_id IS NULL AND id IN ({})",
                list.join(", ")
            ),
            [round_id.into()],
        ))
        .await?;
    Ok(result.rows_affected() == ids.len() as u64)
}
