//! The durable webhook inbox.
//!
//! A verified delivery is inserted here before GitHub gets its 2xx, keyed by GitHub's delivery id
//! so a redelivery is recognised. Workers claim pending deliveries with a lease: a process that
//! dies mid-delivery leaves a lease that expires, and the delivery is claimed again. Processing is
//! idempotent per delivery (a task remembers the delivery that created it), so a second attempt
//! after a crash never doubles the work.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value};

use super::stmt;
use crate::db::{is_postgres, now_ms};

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Stored, waiting for a worker (or for its retry time).
    Pending,
    /// Claimed by a worker whose lease has not expired.
    Processing,
    Done,
    /// An event or action the service does not act on.
    Ignored,
    /// The body did not parse; kept for inspection.
    Invalid,
    /// Processing failed too many times; kept with the last error.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Processing => "processing",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Ignored => "ignored",
            DeliveryStatus::Invalid => "invalid",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// A delivery as received, about to be stored.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub delivery_id: &'a str,
    pub event: &'a str,
    pub action: Option<&'a str>,
    pub installation_id: Option<i64>,
    pub status: DeliveryStatus,
    pub payload: &'a [u8],
    pub error: Option<&'a str>,
}

/// Store a delivery. Returns `false` when a delivery with that id is already stored.
pub async fn insert(db: &impl ConnectionTrait, d: NewDelivery<'_>) -> Result<bool, DbErr> {
    let result = db
        .execute_raw(stmt(
            db,
            "INSERT INTO deliveries (delivery_id, event, action, installation_id, status, payload, \
             error, attempts, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8) \
             ON CONFLICT (delivery_id) DO NOTHING",
            [
                d.delivery_id.into(),
                d.event.into(),
                d.action.map(str::to_string).into(),
                d.installation_id.into(),
                d.status.as_str().into(),
                d.payload.to_vec().into(),
                d.error.map(str::to_string).into(),
                now_ms().into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// A delivery claimed for processing.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub delivery_id: String,
    pub event: String,
    pub payload: Vec<u8>,
    /// How many times it has been claimed, this time included.
    pub attempts: i32,
}

/// Claim up to `limit` deliveries that are pending (and due) or whose lease expired, oldest first.
pub async fn claim(
    db: &DatabaseConnection,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Claimed>, DbErr> {
    let now = now_ms();
    let lock = if is_postgres(db) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE deliveries SET status = 'processing', lease_owner = $1, lease_until = $2, \
         attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM deliveries \
           WHERE (status = 'pending' AND (lease_until IS NULL OR lease_until <= $3)) \
              OR (status = 'processing' AND lease_until < $3) \
           ORDER BY id LIMIT $4{lock}) \
         RETURNING id, delivery_id, event, payload, attempts"
    );
    let rows = db
        .query_all_raw(stmt(
            db,
            &sql,
            [
                owner.into(),
                (now + lease_ms).into(),
                now.into(),
                (limit as i64).into(),
            ],
        ))
        .await?;
    let mut claimed = rows
        .into_iter()
        .map(|row| {
            Ok(Claimed {
                id: row.try_get_by_index(0)?,
                delivery_id: row.try_get_by_index(1)?,
                event: row.try_get_by_index(2)?,
                payload: row.try_get_by_index(3)?,
                attempts: row.try_get_by_index(4)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    // RETURNING does not promise an order; process oldest first.
    claimed.sort_by_key(|c| c.id);
    Ok(claimed)
}

/// What became of a claimed delivery.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done,
    Ignored(String),
    /// Try again after `retry_after_ms`, or give up as failed when `give_up` is set.
    Error {
        message: String,
        retry_after_ms: i64,
        give_up: bool,
    },
}

/// Record the outcomes of a batch in one transaction (one commit on SQLite). Only rows still
/// leased by `owner` are touched, so a worker that lost its lease cannot overwrite another's work.
pub async fn finish(
    db: &DatabaseConnection,
    owner: &str,
    outcomes: &[(i64, Outcome)],
) -> Result<(), DbErr> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let txn = db.begin().await?;
    for (id, outcome) in outcomes {
        let (status, error, lease_until, processed_at): (&str, Option<String>, Value, Value) =
            match outcome {
                Outcome::Done => ("done", None, Value::BigInt(None), now.into()),
                Outcome::Ignored(reason) => (
                    "ignored",
                    Some(reason.clone()),
                    Value::BigInt(None),
                    now.into(),
                ),
                Outcome::Error {
                    message,
                    give_up: true,
                    ..
                } => (
                    "failed",
                    Some(message.clone()),
                    Value::BigInt(None),
                    now.into(),
                ),
                Outcome::Error {
                    message,
                    retry_after_ms,
                    give_up: false,
                } => (
                    "pending",
                    Some(message.clone()),
                    (now + retry_after_ms).into(),
                    Value::BigInt(None),
                ),
            };
        txn.execute_raw(stmt(
            &txn,
            "UPDATE deliveries SET status = $1, error = $2, lease_owner = NULL, lease_until = $3, \
             processed_at = $4 WHERE id = $5 AND lease_owner = $6",
            [
                status.into(),
                error.into(),
                lease_until,
                processed_at,
                (*id).into(),
                owner.into(),
            ],
        ))
        .await?;
    }
    txn.commit().await
}

/// How many deliveries are waiting (pending or leased) — the inbox depth.
pub async fn backlog(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'processing')",
            [],
        ))
        .await?;
    Ok(row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0))
}
