//! The agent's turns after a task's first (see [`crate::entities::task_round`]). A round starts
//! with the task's state change in one transaction, compare-and-set on the state (and on the head
//! commit, for CI rounds): of two deliveries deciding the same thing, one acts.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, TransactionTrait,
};
use serde_json::json;

use super::stmt;
use super::tasks::{append_event, kind};
use crate::db::now_ms;
use crate::entities::{task_event, task_round};
use crate::state::TaskState;

pub mod round_kind {
    pub const CI: &str = "ci";
    pub const FOLLOW_UP: &str = "follow_up";
    pub const RETRY: &str = "retry";
}

/// What a round is started with.
#[derive(Debug, Clone, Default)]
pub struct NewRound {
    pub kind: &'static str,
    pub round: i32,
    pub head_sha: Option<String>,
    pub failed_checks: serde_json::Value,
    pub fingerprint: Option<String>,
    pub prompt: String,
    pub requested_by: Option<String>,
    /// Set for a round recorded already finished (the failure the CI loop gave up on).
    pub outcome: Option<&'static str>,
}

/// The state change that goes with a round.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub from: TaskState,
    pub to: TaskState,
    pub reason: &'a str,
    /// Only when the task's head commit is still this one.
    pub head_sha: Option<&'a str>,
    /// The task's CI round counter afterwards (`None` leaves it).
    pub ci_round: Option<i32>,
    /// The delivery of the command that asked for the round (stored with the change, so the
    /// same delivery handled again is recognized).
    pub delivery_id: Option<&'a str>,
}

/// Change the task's state and record the round, together; `None` when the task is no longer
/// in `change.from` (or has moved to another commit).
pub async fn start(
    db: &DatabaseConnection,
    task_id: i64,
    change: Change<'_>,
    new: NewRound,
) -> Result<Option<(task_round::Model, task_event::Model)>, DbErr> {
    if !change.from.can_become(change.to) {
        return Err(DbErr::Custom(format!(
            "a task cannot go from {} to {}",
            change.from, change.to
        )));
    }
    let now = now_ms();
    let txn = db.begin().await?;
    let updated = txn
        .execute_raw(stmt(
            &txn,
            "UPDATE tasks SET state = $1, updated_at = $2, lease_owner = NULL, \
               ci_round = COALESCE($3, ci_round), \
               finished_at = CASE WHEN $4 THEN $2 ELSE NULL END, \
               error_message = CASE WHEN $4 THEN $5 ELSE NULL END, \
               stop_requested_at = CASE WHEN $1 = 'queued' THEN NULL ELSE stop_requested_at END, \
               command_delivery_id = COALESCE($9, command_delivery_id) \
             WHERE id = $6 AND state = $7 AND ($8 IS NULL OR head_sha = $8)",
            [
                change.to.as_str().into(),
                now.into(),
                change.ci_round.into(),
                change.to.is_terminal().into(),
                change.reason.into(),
                task_id.into(),
                change.from.as_str().into(),
                change.head_sha.map(str::to_string).into(),
                change.delivery_id.map(str::to_string).into(),
            ],
        ))
        .await?;
    if updated.rows_affected() != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    let inserted = task_round::Entity::insert(task_round::ActiveModel {
        task_id: Set(task_id),
        round: Set(new.round),
        kind: Set(new.kind.to_string()),
        head_sha: Set(new.head_sha.clone()),
        failed_checks: Set(new.failed_checks.to_string()),
        fingerprint: Set(new.fingerprint.clone()),
        prompt: Set(new.prompt.clone()),
        requested_by: Set(new.requested_by.clone()),
        outcome: Set(new.outcome.map(str::to_string)),
        result_sha: Set(None),
        created_at: Set(now),
        finished_at: Set(new.outcome.map(|_| now)),
        ..Default::default()
    })
    .exec(&txn)
    .await?;
    let event = append_event(
        &txn,
        task_id,
        kind::STATE,
        &json!({"from": change.from, "to": change.to, "reason": change.reason}),
    )
    .await?;
    txn.commit().await?;
    let round = task_round::Entity::find_by_id(inserted.last_insert_id)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the round just inserted".into()))?;
    Ok(Some((round, event)))
}

/// The task's rounds, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    task_id: i64,
) -> Result<Vec<task_round::Model>, DbErr> {
    task_round::Entity::find()
        .filter(task_round::Column::TaskId.eq(task_id))
        .order_by_asc(task_round::Column::Id)
        .all(db)
        .await
}

/// The round a worker has yet to run, if any.
pub async fn pending(
    db: &DatabaseConnection,
    task_id: i64,
) -> Result<Option<task_round::Model>, DbErr> {
    task_round::Entity::find()
        .filter(task_round::Column::TaskId.eq(task_id))
        .filter(task_round::Column::FinishedAt.is_null())
        .order_by_desc(task_round::Column::Id)
        .one(db)
        .await
}

/// Record how a round ended.
pub async fn finish(
    db: &DatabaseConnection,
    round_id: i64,
    outcome: &str,
    result_sha: Option<&str>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db,
        "UPDATE task_rounds SET outcome = $1, result_sha = $2, finished_at = $3 \
         WHERE id = $4 AND finished_at IS NULL",
        [
            outcome.into(),
            result_sha.map(str::to_string).into(),
            now_ms().into(),
            round_id.into(),
        ],
    ))
    .await?;
    Ok(())
}
