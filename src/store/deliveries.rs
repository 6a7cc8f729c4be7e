//! The durable webhook inbox.
//!
//! A verified delivery is inserted here before GitHub gets its 2xx, keyed by GitHub's delivery id
//! so a redelivery is recognised. Workers claim pending deliveries with a lease: a process that
//! dies mid-delivery leaves a lease that expires, and the delivery is claimed again. Processing is
//! idempotent per delivery (a task remembers the delivery that created it), so a second attempt
//! after a crash never doubles the work.

use std::collections::HashMap;

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
pub async fn insert(db: &DatabaseConnection, d: NewDelivery<'_>) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let stored = insert_many(&txn, &[d]).await?;
    txn.commit().await?;
    Ok(stored[0])
}

/// Store several deliveries with one statement for the rows and one for the bodies; call it in a
/// transaction. Returns, for each delivery, whether it was stored: `false` for an id already
/// stored, and for the later copy of an id that appears twice in `batch`.
pub async fn insert_many(
    db: &impl ConnectionTrait,
    batch: &[NewDelivery<'_>],
) -> Result<Vec<bool>, DbErr> {
    const COLUMNS: usize = 7;
    let now = now_ms();
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut values: Vec<Value> = Vec::with_capacity(batch.len() * COLUMNS);
    let mut rows = Vec::new();
    for (i, d) in batch.iter().enumerate() {
        if first_of.contains_key(d.delivery_id) {
            continue;
        }
        first_of.insert(d.delivery_id, i);
        rows.push(placeholders(values.len(), COLUMNS));
        values.extend([
            d.delivery_id.into(),
            d.event.into(),
            d.action.map(str::to_string).into(),
            d.installation_id.into(),
            d.status.as_str().into(),
            d.error.map(str::to_string).into(),
            now.into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO deliveries (delivery_id, event, action, installation_id, status, error, \
         received_at) VALUES {} ON CONFLICT (delivery_id) DO NOTHING RETURNING id, delivery_id",
        rows.join(", ")
    );
    let inserted = db.query_all_raw(stmt(db, &sql, values)).await?;
    let mut stored = vec![false; batch.len()];
    let mut bodies: Vec<Value> = Vec::new();
    let mut body_rows = Vec::new();
    for row in inserted {
        let id: i64 = row.try_get_by_index(0)?;
        let delivery_id: String = row.try_get_by_index(1)?;
        let Some(&i) = first_of.get(delivery_id.as_str()) else {
            continue;
        };
        stored[i] = true;
        if !batch[i].payload.is_empty() {
            body_rows.push(placeholders(bodies.len(), 2));
            bodies.extend([id.into(), batch[i].payload.to_vec().into()]);
        }
    }
    if !body_rows.is_empty() {
        let sql = format!(
            "INSERT INTO delivery_payloads (delivery_id, body) VALUES {}",
            body_rows.join(", ")
        );
        db.execute_raw(stmt(db, &sql, bodies)).await?;
    }
    Ok(stored)
}

/// `($n+1, $n+2, …)` for a row of `columns` values after `n` values already bound.
fn placeholders(n: usize, columns: usize) -> String {
    let list: Vec<String> = (1..=columns).map(|c| format!("${}", n + c)).collect();
    format!("({})", list.join(", "))
}

/// The stored body of a delivery (empty when none was kept).
pub async fn payload(db: &impl ConnectionTrait, id: i64) -> Result<Vec<u8>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            db,
            "SELECT body FROM delivery_payloads WHERE delivery_id = $1",
            [id.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index(0))
        .transpose()?
        .unwrap_or_default())
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

/// Claim up to `limit` deliveries that are pending (and due) or whose lease expired, oldest first
/// but taking turns between installations: each installation's oldest, then each one's second,
/// and so on, so a storm of deliveries for one installation does not fill every batch.
pub async fn claim(
    db: &DatabaseConnection,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Claimed>, DbErr> {
    const DUE: &str = "((status = 'pending' AND (lease_until IS NULL OR lease_until <= $3)) \
         OR (status = 'processing' AND lease_until < $3))";
    let now = now_ms();
    let lock = if is_postgres(db) {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE deliveries SET status = 'processing', lease_owner = $1, lease_until = $2, \
         attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM deliveries WHERE id IN (\
           SELECT id FROM (SELECT id, ROW_NUMBER() OVER (\
               PARTITION BY COALESCE(installation_id, 0) ORDER BY id) AS turn \
             FROM deliveries WHERE {DUE}) AS ranked \
           ORDER BY turn, id LIMIT $4) AND {DUE}{lock}) \
         RETURNING id, delivery_id, event, attempts"
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
                payload: Vec::new(),
                attempts: row.try_get_by_index(3)?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    // RETURNING does not promise an order; process oldest first.
    claimed.sort_by_key(|c| c.id);
    if !claimed.is_empty() {
        let list: Vec<String> = (1..=claimed.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT delivery_id, body FROM delivery_payloads WHERE delivery_id IN ({})",
            list.join(", ")
        );
        let rows = db
            .query_all_raw(stmt(db, &sql, claimed.iter().map(|c| Value::from(c.id))))
            .await?;
        for row in rows {
            let id: i64 = row.try_get_by_index(0)?;
            if let Ok(i) = claimed.binary_search_by_key(&id, |c| c.id) {
                claimed[i].payload = row.try_get_by_index(1)?;
            }
        }
    }
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
    /// Not handled yet and not failed: put back until `due_in_ms` from now (GitHub's rate limit
    /// resets then), without using up an attempt.
    Later {
        reason: String,
        due_in_ms: i64,
    },
}

/// (status, error, lease_until, processed_at, attempts given back): rows sharing one are updated
/// by one statement.
type FinishKey = (&'static str, Option<String>, Option<i64>, Option<i64>, i32);

/// Record the outcomes of a batch in one transaction (one commit on SQLite), with one statement
/// per distinct outcome (usually one for the whole batch). Only rows still leased by `owner` are
/// touched, so a worker that lost its lease cannot overwrite another's work.
pub async fn finish(
    db: &DatabaseConnection,
    owner: &str,
    outcomes: &[(i64, Outcome)],
) -> Result<(), DbErr> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let mut groups: Vec<(FinishKey, Vec<i64>)> = Vec::new();
    for (id, outcome) in outcomes {
        let key = match outcome {
            Outcome::Done => ("done", None, None, Some(now), 0),
            Outcome::Ignored(reason) => ("ignored", Some(reason.clone()), None, Some(now), 0),
            Outcome::Error {
                message,
                give_up: true,
                ..
            } => ("failed", Some(message.clone()), None, Some(now), 0),
            Outcome::Error {
                message,
                retry_after_ms,
                give_up: false,
            } => (
                "pending",
                Some(message.clone()),
                Some(now + retry_after_ms),
                None,
                0,
            ),
            Outcome::Later { reason, due_in_ms } => (
                "pending",
                Some(reason.clone()),
                Some(now + due_in_ms),
                None,
                1,
            ),
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(*id),
            None => groups.push((key, vec![*id])),
        }
    }
    let txn = db.begin().await?;
    for ((status, error, lease_until, processed_at, given_back), ids) in groups {
        let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 7)).collect();
        let sql = format!(
            "UPDATE deliveries SET status = $1, error = $2, lease_owner = NULL, lease_until = $3, \
             processed_at = $4, attempts = attempts - $6 WHERE lease_owner = $5 AND id IN ({})",
            placeholders.join(", ")
        );
        let mut values: Vec<Value> = vec![
            status.into(),
            error.into(),
            lease_until.into(),
            processed_at.into(),
            owner.into(),
            given_back.into(),
        ];
        values.extend(ids.into_iter().map(Value::from));
        txn.execute_raw(stmt(&txn, &sql, values)).await?;
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
