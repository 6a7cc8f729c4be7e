//! The agent's turns after a task's first (see [`crate::entities::task_round`]). A round starts
//! with the task's state change, in its transaction (see [`super::tasks::transition`]).

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder,
};

use super::stmt;
use crate::db::now_ms;
use crate::domain::round::FailedCheck;
use crate::domain::{CommitSha, RoundKind, RoundOutcome, TaskId};
use crate::entities::task_round;

/// What a round is started with.
#[derive(Debug, Clone)]
pub struct NewRound {
    pub kind: RoundKind,
    pub round: i32,
    pub head_sha: Option<CommitSha>,
    pub failed_checks: Vec<FailedCheck>,
    pub fingerprint: Option<String>,
    pub prompt: String,
    pub requested_by: Option<String>,
    /// Set for a round recorded already finished (the failure the CI loop gave up on).
    pub outcome: Option<RoundOutcome>,
    /// The queued requests (see [`super::requests`]) the round takes; the change fails as a
    /// conflict when another round took one first.
    pub requests: Vec<i64>,
}

impl NewRound {
    pub fn new(kind: RoundKind, prompt: String) -> NewRound {
        NewRound {
            kind,
            round: 0,
            head_sha: None,
            failed_checks: Vec::new(),
            fingerprint: None,
            prompt,
            requested_by: None,
            outcome: None,
            requests: Vec::new(),
        }
    }
}

/// Store a round (inside the transaction of the state change it goes with).
pub(super) async fn insert(
    txn: &impl ConnectionTrait,
    task_id: TaskId,
    new: NewRound,
    now: i64,
) -> Result<task_round::Model, DbErr> {
    let finished_at = new.outcome.map(|_| now);
    let failed_checks =
        serde_json::to_string(&new.failed_checks).map_err(|e| DbErr::Custom(e.to_string()))?;
    let inserted = task_round::Entity::insert(task_round::ActiveModel {
        task_id: Set(task_id),
        round: Set(new.round),
        kind: Set(new.kind),
        head_sha: Set(new.head_sha.clone()),
        failed_checks: Set(failed_checks.clone()),
        fingerprint: Set(new.fingerprint.clone()),
        prompt: Set(new.prompt.clone()),
        requested_by: Set(new.requested_by.clone()),
        outcome: Set(new.outcome),
        result_sha: Set(None),
        created_at: Set(now),
        finished_at: Set(finished_at),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(task_round::Model {
        id: inserted.last_insert_id,
        task_id,
        round: new.round,
        kind: new.kind,
        head_sha: new.head_sha,
        failed_checks,
        fingerprint: new.fingerprint,
        prompt: new.prompt,
        requested_by: new.requested_by,
        outcome: new.outcome,
        result_sha: None,
        created_at: now,
        finished_at,
    })
}

/// The task's rounds, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    task_id: TaskId,
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
    task_id: TaskId,
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
    outcome: RoundOutcome,
    result_sha: Option<&CommitSha>,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db,
        "UPDATE task_rounds SET outcome = $1, result_sha = $2, finished_at = $3 \
         WHERE id = $4 AND finished_at IS NULL",
        [
            outcome.into(),
            result_sha.map(|s| s.0.clone()).into(),
            now_ms().into(),
            round_id.into(),
        ],
    ))
    .await?;
    Ok(())
}
