//! Tasks and their append-only event log.
//!
//! Sequence numbers come from `tasks.last_seq`, bumped in the same transaction that inserts the
//! event, so they are handed out gap-free and strictly increasing per task even with several
//! writers (the row update serialises them); only the oldest of the agent's output is ever
//! removed, when a task's log is over its bounds ([`super::task_log`]). State changes are
//! compare-and-set on the current state, so two actors (a worker finishing, a user's `/amp stop`)
//! can never both win. Only [`crate::lifecycle`] changes a task's state; it calls [`transition`]
//! here.

use base64::Engine;
use rand::RngCore;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::rounds::{self, NewRound};
use super::stmt;
use crate::db::now_ms;
use crate::domain::{
    BlockedEgress, CommitSha, EventPayload, StateChange, TaskId, TaskState, ThreadId,
};
use crate::entities::{task, task_event, task_round};

/// Random bytes in a public id: 144 bits, beyond guessing.
const PUBLIC_ID_BYTES: usize = 18;

/// The channel replicas listen on for claimable work (see [`crate::notify`]), and what it says
/// when a draining replica hands a running task back.
pub const WORK_CHANNEL: &str = "amp_work";
pub const HANDED_BACK: &str = "handed-back";
/// The channel a stored task event is announced on (by a trigger; see the migrations).
pub const EVENTS_CHANNEL: &str = "amp_task_events";

/// A fresh capability id for status links (URL-safe base64, 24 characters).
pub fn new_public_id() -> String {
    let mut bytes = [0u8; PUBLIC_ID_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a task is created from.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub installation_id: i64,
    pub repo_id: i64,
    pub repo_full_name: String,
    pub clone_url: String,
    pub default_branch: String,
    pub issue_number: i64,
    pub is_pull_request: bool,
    pub issue_title: String,
    pub issue_body: String,
    pub requester_login: String,
    pub requester_id: i64,
    pub comment_id: i64,
    /// The delivery that asked for it; a second attempt at the same delivery finds this task.
    pub delivery_id: Option<String>,
    pub prompt: String,
    /// The repository's `.github/amp.toml` as read for this task (`None`: there was none).
    pub repo_config: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task {0} not found")]
    NotFound(TaskId),
    #[error("task {task_id} is {actual}, not {expected}: cannot become {to}")]
    Conflict {
        task_id: TaskId,
        expected: TaskState,
        actual: TaskState,
        to: TaskState,
    },
    #[error("a task cannot go from {from} to {to}")]
    IllegalTransition { from: TaskState, to: TaskState },
    #[error(transparent)]
    Db(#[from] DbErr),
}

/// Create a task in `queued`, with its first event. Returns `None` when the task for this delivery
/// already exists (the delivery is being processed a second time).
pub async fn create(
    db: &DatabaseConnection,
    new: NewTask,
) -> Result<Option<(task::Model, task_event::Model)>, DbErr> {
    if let Some(delivery_id) = &new.delivery_id
        && get_by_delivery(db, delivery_id).await?.is_some()
    {
        return Ok(None);
    }
    let now = now_ms();
    let txn = db.begin().await?;
    let model = task::ActiveModel {
        public_id: Set(new_public_id()),
        installation_id: Set(new.installation_id),
        repo_id: Set(new.repo_id),
        repo_full_name: Set(new.repo_full_name),
        clone_url: Set(new.clone_url),
        default_branch: Set(new.default_branch),
        issue_number: Set(new.issue_number),
        is_pull_request: Set(new.is_pull_request),
        issue_title: Set(new.issue_title),
        issue_body: Set(new.issue_body),
        requester_login: Set(new.requester_login),
        requester_id: Set(new.requester_id),
        comment_id: Set(new.comment_id),
        delivery_id: Set(new.delivery_id),
        prompt: Set(new.prompt),
        repo_config: Set(new.repo_config),
        state: Set(TaskState::Queued),
        last_seq: Set(0),
        ci_round: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    let inserted = task::Entity::insert(model).exec(&txn).await?;
    let id = inserted.last_insert_id;
    let event = append_event(
        &txn,
        id,
        &EventPayload::State(StateChange {
            from: None,
            to: TaskState::Queued,
            reason: Some("task created".into()),
        }),
    )
    .await?;
    txn.commit().await?;
    let task = task::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("task {id}")))?;
    Ok(Some((task, event)))
}

/// Append an event to a task's log and return it with its sequence number. Call it inside a
/// transaction when it must commit together with other changes.
pub async fn append_event(
    db: &impl ConnectionTrait,
    task_id: TaskId,
    payload: &EventPayload,
) -> Result<task_event::Model, DbErr> {
    let now = now_ms();
    let row = db
        .query_one_raw(stmt(
            db,
            "UPDATE tasks SET last_seq = last_seq + 1, updated_at = $2 WHERE id = $1 \
             RETURNING last_seq",
            [task_id.into(), now.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("task {task_id}")))?;
    let seq: i64 = row.try_get_by_index(0)?;
    let data = payload.to_json();
    let inserted = task_event::Entity::insert(task_event::ActiveModel {
        task_id: Set(task_id),
        seq: Set(seq),
        kind: Set(payload.kind()),
        data: Set(data.clone()),
        created_at: Set(now),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(task_event::Model {
        id: inserted.last_insert_id,
        task_id,
        seq,
        kind: payload.kind(),
        data,
        created_at: now,
    })
}

/// Append an event in its own transaction.
pub async fn log_event(
    db: &DatabaseConnection,
    task_id: TaskId,
    payload: &EventPayload,
) -> Result<task_event::Model, DbErr> {
    let txn = db.begin().await?;
    let event = append_event(&txn, task_id, payload).await?;
    txn.commit().await?;
    Ok(event)
}

/// A state change as the store applies it (the lifecycle decides what goes in it).
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub from: TaskState,
    pub to: TaskState,
    /// On the state event (the timeline). For a task that ends badly it is also the task's error
    /// message; going back to the queue clears that.
    pub reason: Option<&'a str>,
    /// What the status comment shows under the new state (`None` shows nothing).
    pub note: Option<&'a str>,
    /// Only while the task's head commit is this one: a decision about one commit never lands on
    /// a task that has since pushed another.
    pub head: Option<&'a CommitSha>,
    /// The task's CI round counter afterwards (`None` leaves it).
    pub ci_round: Option<i32>,
    /// The delivery of the command that asked for the change, stored with it so the same delivery
    /// handled again is recognized.
    pub command_delivery: Option<&'a str>,
}

impl Change<'_> {
    pub fn new(from: TaskState, to: TaskState) -> Self {
        Change {
            from,
            to,
            reason: None,
            note: None,
            head: None,
            ci_round: None,
            command_delivery: None,
        }
    }
}

/// What a change stored: its state event, and the round started with it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub event: task_event::Model,
    pub round: Option<task_round::Model>,
}

/// Move a task from `change.from` to `change.to` (compare-and-set), record it as a `state` event
/// and start `round` with it, all in one transaction.
pub async fn transition(
    db: &DatabaseConnection,
    task_id: TaskId,
    change: &Change<'_>,
    round: Option<NewRound>,
) -> Result<Applied, TaskError> {
    let (from, to) = (change.from, change.to);
    if !from.can_become(to) {
        return Err(TaskError::IllegalTransition { from, to });
    }
    let ends_badly = matches!(
        to,
        TaskState::Failed | TaskState::TimedOut | TaskState::Cancelled | TaskState::NeedsHuman
    );
    // Whoever takes the task up next (a worker claiming it, a CI decision) needs no lease.
    let lets_go = matches!(
        to,
        TaskState::Queued | TaskState::AwaitingCi | TaskState::Fixing
    );
    let now = now_ms();
    let txn = db.begin().await?;
    let result = txn
        .execute_raw(stmt(
            &txn,
            "UPDATE tasks SET state = $1, updated_at = $2, \
               started_at = CASE WHEN $3 AND started_at IS NULL THEN $2 ELSE started_at END, \
               finished_at = CASE WHEN $4 THEN $2 ELSE NULL END, \
               stop_requested_at = CASE WHEN $4 OR $1 = 'queued' THEN NULL ELSE stop_requested_at END, \
               stop_note = CASE WHEN $4 OR $1 = 'queued' THEN NULL ELSE stop_note END, \
               error_message = CASE WHEN $1 = 'queued' THEN NULL \
                 WHEN $7 THEN COALESCE($8, error_message) ELSE error_message END, \
               lease_owner = CASE WHEN $11 THEN NULL ELSE lease_owner END, \
               awaiting_since = CASE WHEN $1 = 'awaiting_ci' THEN $2 ELSE awaiting_since END, \
               command_delivery_id = COALESCE($10, command_delivery_id), \
               ci_round = COALESCE($12, ci_round), status_note = $13 \
             WHERE id = $5 AND state = $6 AND ($9 IS NULL OR head_sha = $9)",
            [
                to.into(),
                now.into(),
                (to == TaskState::Preparing).into(),
                to.is_terminal().into(),
                task_id.into(),
                from.into(),
                ends_badly.into(),
                change.reason.map(str::to_string).into(),
                change.head.map(|h| h.0.clone()).into(),
                change.command_delivery.map(str::to_string).into(),
                lets_go.into(),
                change.ci_round.into(),
                change.note.map(str::to_string).into(),
            ],
        ))
        .await?;
    if result.rows_affected() != 1 {
        txn.rollback().await?;
        return Err(conflict(db, task_id, from, to).await);
    }
    let round = match round {
        Some(new) => {
            let requests = new.requests.clone();
            let round = rounds::insert(&txn, task_id, new, now).await?;
            if !super::requests::take(&txn, round.id, &requests).await? {
                // Another round took a request first: this change is someone else's to make.
                txn.rollback().await?;
                return Err(conflict(db, task_id, from, to).await);
            }
            Some(round)
        }
        None => None,
    };
    let event = append_event(
        &txn,
        task_id,
        &EventPayload::State(StateChange {
            from: Some(from),
            to,
            reason: change.reason.map(str::to_string),
        }),
    )
    .await?;
    txn.commit().await?;
    Ok(Applied { event, round })
}

/// A change from `from` to `to` that did not apply: the state the task is in instead.
async fn conflict(
    db: &DatabaseConnection,
    task_id: TaskId,
    from: TaskState,
    to: TaskState,
) -> TaskError {
    match get(db, task_id).await {
        Ok(Some(task)) => TaskError::Conflict {
            task_id,
            expected: from,
            actual: task.state,
            to,
        },
        Ok(None) => TaskError::NotFound(task_id),
        Err(e) => TaskError::Db(e),
    }
}

pub async fn get(db: &DatabaseConnection, task_id: TaskId) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find_by_id(task_id).one(db).await
}

pub async fn get_by_public_id(
    db: &DatabaseConnection,
    public_id: &str,
) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::PublicId.eq(public_id))
        .one(db)
        .await
}

/// The `queued` tasks of an installation.
pub async fn queued_for_installation(
    db: &DatabaseConnection,
    installation_id: i64,
) -> Result<Vec<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::InstallationId.eq(installation_id))
        .filter(task::Column::State.eq(TaskState::Queued))
        .all(db)
        .await
}

/// The PostgreSQL advisory lock that serializes task claims across replicas.
const CLAIM_LOCK: i64 = 0x616d_7063_6c61_696d; // "ampclaim"

/// A task a worker claimed, and the `preparing` event of a claim from the queue.
pub struct Claimed {
    pub task: task::Model,
    pub event: Option<task_event::Model>,
}

/// Claim the oldest task waiting for a worker: a `queued` task whose issue has no other task in
/// progress (it becomes `preparing`), or a `fixing` task with a round no worker holds yet (it
/// stays `fixing`). Leased to `owner` until `now + lease_ms`. Atomic across replicas.
pub async fn claim_next(
    db: &DatabaseConnection,
    owner: &str,
    lease_ms: i64,
) -> Result<Option<Claimed>, DbErr> {
    let busy: Vec<String> = TaskState::active()
        .filter(|s| *s != TaskState::Queued)
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let lock = if crate::db::is_postgres(db) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let now = now_ms();
    let txn = db.begin().await?;
    if crate::db::is_postgres(db) {
        // Claims from every replica take turns: otherwise two replicas could each claim one of
        // two tasks queued on the same issue, neither seeing the other's claim yet. The lock
        // ends with the transaction, and the statement below reads what committed before it.
        // A claim stuck behind it fails after a while (and is tried again) rather than
        // stalling every replica.
        txn.execute_unprepared(&format!(
            "SET LOCAL lock_timeout = '10s'; SELECT pg_advisory_xact_lock({CLAIM_LOCK})"
        ))
        .await?;
    }
    let sql = format!(
        "UPDATE tasks SET state = CASE WHEN state = 'queued' THEN 'preparing' ELSE state END, \
           lease_owner = $1, lease_until = $2, \
           started_at = COALESCE(started_at, $3), updated_at = $3 \
         WHERE id = (SELECT t.id FROM tasks t WHERE (t.state = 'queued' \
             AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.repo_id = t.repo_id \
               AND o.issue_number = t.issue_number AND o.state IN ({busy}))) \
             OR (t.state = 'fixing' AND t.lease_owner IS NULL) \
             ORDER BY t.id LIMIT 1{lock}) \
           AND (state = 'queued' OR (state = 'fixing' AND lease_owner IS NULL)) \
         RETURNING id, state",
        busy = busy.join(", ")
    );
    let row = txn
        .query_one_raw(stmt(
            &txn,
            &sql,
            [owner.into(), (now + lease_ms).into(), now.into()],
        ))
        .await?;
    let Some(row) = row else {
        txn.commit().await?;
        return Ok(None);
    };
    let id = TaskId(row.try_get_by_index(0)?);
    let state: String = row.try_get_by_index(1)?;
    let event = if state == TaskState::Preparing.as_str() {
        Some(
            append_event(
                &txn,
                id,
                &EventPayload::State(StateChange {
                    from: Some(TaskState::Queued),
                    to: TaskState::Preparing,
                    reason: None,
                }),
            )
            .await?,
        )
    } else {
        None
    };
    txn.commit().await?;
    let task = get(db, id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("task {id}")))?;
    Ok(Some(Claimed { task, event }))
}

/// Tasks in the middle of a run whose lease has expired: their worker is gone.
pub async fn abandoned(db: &DatabaseConnection) -> Result<Vec<task::Model>, DbErr> {
    let mid_run: Vec<TaskState> = TaskState::ALL
        .into_iter()
        .filter(|s| s.is_mid_run())
        .collect();
    // A `fixing` task that no worker has claimed yet waits for one; it is not abandoned.
    task::Entity::find()
        .filter(task::Column::State.is_in(mid_run))
        .filter(
            sea_orm::Condition::any()
                .add(task::Column::LeaseUntil.is_null())
                .add(task::Column::LeaseUntil.lt(now_ms())),
        )
        .filter(
            sea_orm::Condition::any()
                .add(task::Column::State.ne(TaskState::Fixing))
                .add(task::Column::LeaseOwner.is_not_null()),
        )
        .all(db)
        .await
}

/// Hand a task back: its lease ends now, so another replica (or this one's next start) takes it
/// over at once, in its container. `false` when this owner no longer held it.
pub async fn release_lease(
    db: &DatabaseConnection,
    task_id: TaskId,
    owner: &str,
) -> Result<bool, DbErr> {
    let result = db
        .execute_raw(stmt(
            db,
            "UPDATE tasks SET lease_until = 0 WHERE id = $1 AND lease_owner = $2",
            [task_id.into(), owner.into()],
        ))
        .await?;
    if result.rows_affected() == 1 && crate::db::is_postgres(db) {
        db.execute_unprepared(&format!(
            "SELECT pg_notify('{WORK_CHANNEL}', '{HANDED_BACK}')"
        ))
        .await?;
    }
    Ok(result.rows_affected() == 1)
}

/// Extend the lease of a task this process runs; `false` when another owner holds it now.
pub async fn renew_lease(
    db: &DatabaseConnection,
    task_id: TaskId,
    owner: &str,
    lease_ms: i64,
) -> Result<bool, DbErr> {
    let result = db
        .execute_raw(stmt(
            db,
            "UPDATE tasks SET lease_until = $1 WHERE id = $2 AND lease_owner = $3",
            [(now_ms() + lease_ms).into(), task_id.into(), owner.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Take over a task whose lease has expired (its worker is gone) and that is still in `state`:
/// `true` when this owner holds it now. Two replicas racing for it cannot both win.
pub async fn take_over(
    db: &DatabaseConnection,
    task_id: TaskId,
    state: TaskState,
    owner: &str,
    lease_ms: i64,
) -> Result<bool, DbErr> {
    let now = now_ms();
    let result = db
        .execute_raw(stmt(
            db,
            "UPDATE tasks SET lease_owner = $1, lease_until = $2, updated_at = $3 \
             WHERE id = $4 AND state = $5 AND (lease_until IS NULL OR lease_until < $3)",
            [
                owner.into(),
                (now + lease_ms).into(),
                now.into(),
                task_id.into(),
                state.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Ask whichever replica runs the task to stop it, saying why (`note`, for its status comment;
/// the first request's reason stands). Only a task in the middle of a run takes the request
/// (`false` otherwise): one queued or waiting for CI is ended by the one who asks, and a request
/// left on it would stop its next round. A request a run missed while it wound up into
/// `awaiting_ci` is acted on by that run, which looks for one after it has ended.
pub async fn request_stop(
    db: &DatabaseConnection,
    task_id: TaskId,
    note: Option<&str>,
) -> Result<bool, DbErr> {
    let mid_run: Vec<String> = TaskState::ALL
        .into_iter()
        .filter(|s| s.is_mid_run())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let now = now_ms();
    let result = db
        .execute_raw(stmt(
            db,
            &format!(
                "UPDATE tasks SET stop_note = CASE WHEN stop_requested_at IS NULL THEN $3 \
                   ELSE stop_note END, \
                 stop_requested_at = COALESCE(stop_requested_at, $1), updated_at = $1 \
                 WHERE id = $2 AND state IN ({})",
                mid_run.join(", ")
            ),
            [now.into(), task_id.into(), note.map(str::to_string).into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Whether a stop was asked for the task (see [`request_stop`]).
pub async fn stop_requested(db: &DatabaseConnection, task_id: TaskId) -> Result<bool, DbErr> {
    Ok(get(db, task_id)
        .await?
        .is_some_and(|t| t.stop_requested_at.is_some()))
}

/// What a running task has produced so far; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub branch: Option<String>,
    pub pr_number: Option<i64>,
    pub head_sha: Option<CommitSha>,
    pub thread_id: Option<ThreadId>,
}

pub async fn record_progress(
    db: &DatabaseConnection,
    task_id: TaskId,
    p: Progress,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db,
        "UPDATE tasks SET branch = COALESCE($1, branch), pr_number = COALESCE($2, pr_number), \
           head_sha = COALESCE($3, head_sha), thread_id = COALESCE($4, thread_id), \
           updated_at = $5 WHERE id = $6",
        [
            p.branch.into(),
            p.pr_number.into(),
            p.head_sha.map(|s| s.0).into(),
            p.thread_id.map(|t| t.0).into(),
            now_ms().into(),
            task_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Record what the sandbox refused for the task so far (the gateway's counts replace the
/// stored ones).
pub async fn record_blocked_egress(
    db: &DatabaseConnection,
    task_id: TaskId,
    blocked: &[BlockedEgress],
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db,
        "UPDATE tasks SET egress_blocked = $1, updated_at = $2 WHERE id = $3",
        [
            BlockedEgress::to_stored(blocked).into(),
            now_ms().into(),
            task_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The task a delivery created, if any.
pub async fn get_by_delivery(
    db: &DatabaseConnection,
    delivery_id: &str,
) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::DeliveryId.eq(delivery_id))
        .one(db)
        .await
}

/// Remember the task's status comment, so it is edited from now on and never posted twice.
pub async fn set_status_comment(
    db: &DatabaseConnection,
    task_id: TaskId,
    comment_id: i64,
) -> Result<(), DbErr> {
    db.execute_raw(stmt(
        db,
        "UPDATE tasks SET status_comment_id = $1, updated_at = $2 WHERE id = $3",
        [comment_id.into(), now_ms().into(), task_id.into()],
    ))
    .await?;
    Ok(())
}

/// Events with `seq > after`, oldest first, at most `limit`.
pub async fn events_after(
    db: &DatabaseConnection,
    task_id: TaskId,
    after: i64,
    limit: u64,
) -> Result<Vec<task_event::Model>, DbErr> {
    task_event::Entity::find()
        .filter(task_event::Column::TaskId.eq(task_id))
        .filter(task_event::Column::Seq.gt(after))
        .order_by_asc(task_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// The newest task on an issue or pull request that has not finished, if any.
pub async fn active_for_issue(
    db: &DatabaseConnection,
    repo_id: i64,
    issue_number: i64,
) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::RepoId.eq(repo_id))
        .filter(task::Column::IssueNumber.eq(issue_number))
        .filter(task::Column::State.is_in(TaskState::active()))
        .order_by_desc(task::Column::Id)
        .one(db)
        .await
}

/// The newest task on an issue or pull request, finished or not.
pub async fn latest_for_issue(
    db: &DatabaseConnection,
    repo_id: i64,
    issue_number: i64,
) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::RepoId.eq(repo_id))
        .filter(task::Column::IssueNumber.eq(issue_number))
        .order_by_desc(task::Column::Id)
        .one(db)
        .await
}

/// The task whose pushed head is `sha` (the newest, if several).
pub async fn by_head_sha(
    db: &DatabaseConnection,
    repo_id: i64,
    sha: &CommitSha,
) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::RepoId.eq(repo_id))
        .filter(task::Column::HeadSha.eq(sha.clone()))
        .order_by_desc(task::Column::Id)
        .one(db)
        .await
}

/// The newest task working on pull request `number` (opened by it, or asked on it).
pub async fn by_pull(
    db: &DatabaseConnection,
    repo_id: i64,
    number: i64,
) -> Result<Option<task::Model>, DbErr> {
    task::Entity::find()
        .filter(task::Column::RepoId.eq(repo_id))
        .filter(task::Column::PrNumber.eq(number))
        .order_by_desc(task::Column::Id)
        .one(db)
        .await
}

/// Tasks that have waited for CI since before `cutoff` (Unix ms).
pub async fn awaiting_ci_since(
    db: &DatabaseConnection,
    cutoff: i64,
) -> Result<Vec<task::Model>, DbErr> {
    // Tasks from before `awaiting_since` existed count from their last update.
    task::Entity::find()
        .filter(task::Column::State.eq(TaskState::AwaitingCi))
        .filter(
            sea_orm::Condition::any()
                .add(task::Column::AwaitingSince.lt(cutoff))
                .add(
                    sea_orm::Condition::all()
                        .add(task::Column::AwaitingSince.is_null())
                        .add(task::Column::UpdatedAt.lt(cutoff)),
                ),
        )
        .all(db)
        .await
}

/// The newest tasks, at most `limit`, optionally only those in `state` or of `repo`.
pub async fn recent(
    db: &DatabaseConnection,
    state: Option<TaskState>,
    repo: Option<&str>,
    limit: u64,
) -> Result<Vec<task::Model>, DbErr> {
    let mut query = task::Entity::find();
    if let Some(state) = state {
        query = query.filter(task::Column::State.eq(state));
    }
    if let Some(repo) = repo {
        query = query.filter(task::Column::RepoFullName.eq(repo));
    }
    query
        .order_by_desc(task::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_are_long_random_and_url_safe() {
        let a = new_public_id();
        let b = new_public_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
