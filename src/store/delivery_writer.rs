//! Group commit for webhook intake.
//!
//! Every acknowledged delivery must be committed first, and a commit is the expensive part: an
//! fsync on PostgreSQL, the single write lock on SQLite. Requests hand their delivery to a writer
//! task instead of committing alone; the writer takes every delivery that is waiting (up to
//! [`MAX_BATCH`]), inserts them in one transaction (one statement for the rows, one for the bodies) and answers each request once that transaction
//! has committed. Under load, one commit covers many deliveries; a lone delivery is written at
//! once, without waiting for company. Durability is unchanged: no request is answered before its
//! row is committed.

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::deliveries::{self, DeliveryStatus, NewDelivery};
use crate::db::is_postgres;

/// The most deliveries one transaction carries.
pub const MAX_BATCH: usize = 128;
/// How many requests may wait for a writer before intake itself waits.
const QUEUE: usize = 4096;

/// A delivery to store, owned so it can cross to the writer task.
#[derive(Debug, Clone)]
pub struct OwnedDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub status: DeliveryStatus,
    pub payload: Vec<u8>,
    pub error: Option<String>,
}

impl OwnedDelivery {
    fn borrowed(&self) -> NewDelivery<'_> {
        NewDelivery {
            delivery_id: &self.delivery_id,
            event: &self.event,
            action: self.action.as_deref(),
            installation_id: self.installation_id,
            status: self.status,
            payload: &self.payload,
            error: self.error.as_deref(),
        }
    }
}

struct Job {
    delivery: OwnedDelivery,
    done: oneshot::Sender<Result<bool, DbErr>>,
}

/// The handle intake uses; cheap to clone.
#[derive(Clone)]
pub struct DeliveryWriter {
    jobs: mpsc::Sender<Job>,
}

/// The running writer tasks; [`WriterTasks::stop`] lets them finish what was handed to them.
pub struct WriterTasks {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl WriterTasks {
    /// Write everything already queued, then end. Call once no request can enqueue any more.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl DeliveryWriter {
    /// Start the writers: one on SQLite (which has one writer anyway), a few on PostgreSQL so one
    /// batch is being built while another commits.
    pub fn start(db: DatabaseConnection) -> (DeliveryWriter, WriterTasks) {
        let writers = if is_postgres(&db) { 4 } else { 1 };
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let stop = CancellationToken::new();
        let tasks = (0..writers)
            .map(|_| tokio::spawn(write_loop(db.clone(), rx.clone(), stop.clone())))
            .collect();
        (DeliveryWriter { jobs: tx }, WriterTasks { stop, tasks })
    }

    /// Store a delivery; `Ok(false)` when one with the same id is already stored. Returns once
    /// the row is committed.
    pub async fn insert(&self, delivery: OwnedDelivery) -> Result<bool, DbErr> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job { delivery, done })
            .await
            .map_err(|_| DbErr::Custom("the delivery writer has stopped".into()))?;
        result
            .await
            .map_err(|_| DbErr::Custom("the delivery writer stopped before committing".into()))?
    }
}

async fn write_loop(
    db: DatabaseConnection,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    stop: CancellationToken,
) {
    loop {
        let batch = {
            let mut rx = rx.lock().await;
            let first = tokio::select! {
                biased;
                job = rx.recv() => job,
                _ = stop.cancelled() => rx.try_recv().ok(),
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        write_batch(&db, batch).await;
    }
}

async fn write_batch(db: &DatabaseConnection, batch: Vec<Job>) {
    match insert_all(db, &batch).await {
        Ok(stored) => {
            for (job, stored) in batch.into_iter().zip(stored) {
                let _ = job.done.send(Ok(stored));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(job) = batch.into_iter().next() {
                let _ = job.done.send(Err(e));
            }
        }
        Err(e) => {
            // One bad row must not fail the others: store them one by one.
            warn!(error = %e, deliveries = batch.len(), "batched insert failed; inserting one by one");
            for job in batch {
                let result = deliveries::insert(db, job.delivery.borrowed()).await;
                let _ = job.done.send(result);
            }
        }
    }
}

async fn insert_all(db: &DatabaseConnection, batch: &[Job]) -> Result<Vec<bool>, DbErr> {
    let rows: Vec<NewDelivery<'_>> = batch.iter().map(|j| j.delivery.borrowed()).collect();
    let txn = db.begin().await?;
    let stored = deliveries::insert_many(&txn, &rows).await?;
    txn.commit().await?;
    Ok(stored)
}
