//! A task's log in bulk: the agent's output stored many lines to a statement, the oldest of it
//! dropped when the task's log is over its bounds, and the pieces the status page reads (the
//! newest lines, the timeline, the turns' results) without loading the whole log.
//!
//! The agent's output is `agent` events; among them only the turns' results (`result` lines,
//! which the page sums for usage) are never dropped. State changes and the service's own lines
//! are never dropped either.

use sea_orm::{
    ActiveEnum, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::stmt;
use crate::db::now_ms;
use crate::domain::{AgentLine, EventKind, EventPayload, TaskId};
use crate::entities::task_event;

/// SQL that holds for the agent events that may be dropped (everything but turn results).
fn droppable() -> String {
    format!(
        "kind = 'agent' AND data NOT LIKE '{}%'",
        AgentLine::RESULT_PREFIX
    )
}

/// Append events of one kind (each given as its stored JSON) with one statement, however many
/// they are: the payloads go as one JSON array, which the database unpacks. The sequence
/// number of the first; the rest follow it without gaps. Call it inside a transaction.
pub async fn append_many(
    db: &impl ConnectionTrait,
    task_id: TaskId,
    kind: EventKind,
    data: &[String],
) -> Result<i64, DbErr> {
    let n = data.len() as i64;
    let now = now_ms();
    let row = db
        .query_one_raw(stmt(
            db,
            "UPDATE tasks SET last_seq = last_seq + $3, updated_at = $2 WHERE id = $1 \
             RETURNING last_seq",
            [task_id.into(), now.into(), n.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("task {task_id}")))?;
    let last: i64 = row.try_get_by_index(0)?;
    let first = last - n + 1;
    if data.is_empty() {
        return Ok(first);
    }
    let array = serde_json::to_string(data).map_err(|e| DbErr::Custom(e.to_string()))?;
    let unpacked = if db.get_database_backend() == DbBackend::Postgres {
        "SELECT $1, $2 + j.n - 1, $3, j.value, $4 \
         FROM json_array_elements_text($5::json) WITH ORDINALITY AS j(value, n)"
    } else {
        "SELECT $1, $2 + j.key, $3, j.value, $4 FROM json_each($5) AS j"
    };
    db.execute_raw(stmt(
        db,
        &format!(
            "INSERT INTO task_events (task_id, seq, kind, data, created_at) {unpacked} \
             ORDER BY 2"
        ),
        [
            task_id.into(),
            first.into(),
            kind.to_value().into(),
            now.into(),
            array.into(),
        ],
    ))
    .await?;
    Ok(first)
}

/// A droppable agent event as the log's bounds count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub seq: i64,
    /// Its stored size in bytes.
    pub bytes: u64,
}

/// What a task's log holds of the agent's output that may be dropped, oldest first, and the
/// marker of what was dropped before, when there is one (it is then the oldest).
pub async fn agent_output(
    db: &DatabaseConnection,
    task_id: TaskId,
) -> Result<(Vec<Kept>, Option<(i64, AgentLine)>), DbErr> {
    let size = if crate::db::is_postgres(db) {
        "CAST(OCTET_LENGTH(data) AS BIGINT)"
    } else {
        "LENGTH(CAST(data AS BLOB))"
    };
    let rows = db
        .query_all_raw(stmt(
            db,
            &format!(
                "SELECT seq, {size}, CASE WHEN data LIKE '{marker}%' THEN data END \
                 FROM task_events WHERE task_id = $1 AND {droppable} ORDER BY seq",
                marker = AgentLine::DROPPED_PREFIX,
                droppable = droppable(),
            ),
            [task_id.into()],
        ))
        .await?;
    let mut kept = Vec::with_capacity(rows.len());
    let mut marker = None;
    for row in rows {
        let seq: i64 = row.try_get_by_index(0)?;
        let bytes: i64 = row.try_get_by_index(1)?;
        let data: Option<String> = row.try_get_by_index(2)?;
        if let Some(EventPayload::Agent(line @ AgentLine::Dropped { .. })) =
            data.map(|d| EventPayload::decode(EventKind::Agent, &d))
        {
            marker = Some((seq, line));
        }
        kept.push(Kept {
            seq,
            bytes: bytes.max(0) as u64,
        });
    }
    Ok((kept, marker))
}

/// Drop the agent's output before `at` (turn results stay) and put `marker` in the place of
/// the event at `at`: the log then says, where the dropped lines were, how many went. One
/// statement each, whatever their number. Call it inside a transaction.
pub async fn drop_agent_output(
    db: &impl ConnectionTrait,
    task_id: TaskId,
    at: i64,
    marker: &AgentLine,
) -> Result<u64, DbErr> {
    let deleted = db
        .execute_raw(stmt(
            db,
            &format!(
                "DELETE FROM task_events WHERE task_id = $1 AND seq < $2 AND {}",
                droppable()
            ),
            [task_id.into(), at.into()],
        ))
        .await?
        .rows_affected();
    db.execute_raw(stmt(
        db,
        "UPDATE task_events SET data = $3 WHERE task_id = $1 AND seq = $2",
        [
            task_id.into(),
            at.into(),
            EventPayload::Agent(marker.clone()).to_json().into(),
        ],
    ))
    .await?;
    Ok(deleted)
}

/// A page of the log (everything but state changes), newest first: at most `limit` events
/// before sequence number `before` (or the newest).
pub async fn lines_before(
    db: &DatabaseConnection,
    task_id: TaskId,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<task_event::Model>, DbErr> {
    let mut query = task_event::Entity::find()
        .filter(task_event::Column::TaskId.eq(task_id))
        .filter(task_event::Column::Kind.ne(EventKind::State));
    if let Some(before) = before {
        query = query.filter(task_event::Column::Seq.lt(before));
    }
    query
        .order_by_desc(task_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await
}

/// The newest `limit` state changes, oldest first.
pub async fn timeline(
    db: &DatabaseConnection,
    task_id: TaskId,
    limit: u64,
) -> Result<Vec<task_event::Model>, DbErr> {
    let mut events = task_event::Entity::find()
        .filter(task_event::Column::TaskId.eq(task_id))
        .filter(task_event::Column::Kind.eq(EventKind::State))
        .order_by_desc(task_event::Column::Seq)
        .limit(limit)
        .all(db)
        .await?;
    events.reverse();
    Ok(events)
}

/// Every turn's result (`result` lines), oldest first.
pub async fn turn_results(
    db: &DatabaseConnection,
    task_id: TaskId,
) -> Result<Vec<task_event::Model>, DbErr> {
    task_event::Entity::find()
        .filter(task_event::Column::TaskId.eq(task_id))
        .filter(task_event::Column::Kind.eq(EventKind::Agent))
        .filter(task_event::Column::Data.starts_with(AgentLine::RESULT_PREFIX))
        .order_by_asc(task_event::Column::Seq)
        .all(db)
        .await
}
