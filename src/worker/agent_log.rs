//! The agent's output on its way into the task's log: lines gathered into batches (one
//! transaction and one statement per batch, not per line), secrets masked, published to live
//! viewers once stored, and the log kept within its bounds.
//!
//! A task keeps at most [`OutputLimits::task_lines`] lines and [`OutputLimits::task_bytes`] of
//! the agent's output. When a batch takes it over either, the oldest output goes, down to nine
//! tenths of the bounds so that dropping happens now and then in bulk, and one marker takes the
//! place of the dropped lines saying how many went (see [`task_log::drop_agent_output`]). State
//! changes, the service's own lines and the turns' results are never dropped. Only the worker
//! that holds a task's lease writes its agent output, so the bounds are counted here, in memory,
//! from what the store held when the turn began.

use std::collections::VecDeque;

use sea_orm::{DbErr, TransactionTrait};
use tracing::warn;

use crate::agent::limits::OutputLimits;
use crate::bus::Published;
use crate::context::Ctx;
use crate::domain::{AgentLine, EventKind, EventPayload, TaskId};
use crate::store::task_log::{self, Kept};

/// Lines stored together (in one transaction) at most. A batch is stored whenever no more
/// output is waiting, so live viewers see a line as it comes; an agent that prints faster than
/// the database commits gets large batches, and few commits.
const BATCH_LINES: usize = 5000;
/// Bytes (as stored) of a batch at most.
const BATCH_BYTES: usize = 2 * 1024 * 1024;

/// The droppable part of a task's log, as counted for its bounds.
#[derive(Debug, Default)]
pub struct Budget {
    /// Oldest first; when there is a marker, it is the first.
    kept: VecDeque<Kept>,
    bytes: u64,
    /// The marker's sequence number.
    marker: Option<i64>,
    /// Everything dropped so far (what the marker says).
    dropped_lines: u64,
    dropped_bytes: u64,
}

/// What to drop: everything droppable before `at`, and the event at `at` becomes `marker`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trim {
    pub at: i64,
    pub marker: AgentLine,
}

impl Budget {
    /// The bounds as the store holds them.
    pub fn from_store(kept: Vec<Kept>, marker: Option<(i64, AgentLine)>) -> Budget {
        let mut budget = Budget {
            bytes: kept.iter().map(|k| k.bytes).sum(),
            kept: kept.into(),
            ..Default::default()
        };
        if let Some((seq, AgentLine::Dropped { lines, bytes })) = marker
            && budget.kept.front().is_some_and(|k| k.seq == seq)
        {
            budget.marker = Some(seq);
            budget.dropped_lines = lines;
            budget.dropped_bytes = bytes;
        }
        budget
    }

    pub fn lines(&self) -> usize {
        self.kept.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn add(&mut self, kept: Kept) {
        self.bytes += kept.bytes;
        self.kept.push_back(kept);
    }

    /// Whether the bounds are exceeded, and what to drop then. The budget counts the drop as
    /// done; the caller stores it (or reloads the budget when that fails).
    pub fn over(&mut self, limits: &OutputLimits) -> Option<Trim> {
        if self.kept.len() <= limits.task_lines && self.bytes <= limits.task_bytes {
            return None;
        }
        // Down to nine tenths, the marker included.
        let lines_to = (limits.task_lines / 10 * 9).max(1);
        let bytes_to = limits.task_bytes / 10 * 9;
        let marker_bytes = 64;
        let mut n = 0;
        let mut freed = 0u64;
        while n < self.kept.len()
            && (self.kept.len() - n + 1 > lines_to || self.bytes - freed + marker_bytes > bytes_to)
        {
            freed += self.kept[n].bytes;
            n += 1;
        }
        let n = n.max(1);
        let gone: Vec<Kept> = self.kept.drain(..n).collect();
        for k in &gone {
            if Some(k.seq) != self.marker {
                self.dropped_lines += 1;
                self.dropped_bytes += k.bytes;
            }
            self.bytes -= k.bytes;
        }
        let at = gone.last().map(|k| k.seq).unwrap_or_default();
        let marker = AgentLine::Dropped {
            lines: self.dropped_lines,
            bytes: self.dropped_bytes,
        };
        let stored = EventPayload::Agent(marker.clone()).to_json().len() as u64;
        self.kept.push_front(Kept {
            seq: at,
            bytes: stored,
        });
        self.bytes += stored;
        self.marker = Some(at);
        Some(Trim { at, marker })
    }
}

/// The agent's output of one task, on its way into the log.
pub struct AgentLog {
    ctx: Ctx,
    task_id: TaskId,
    limits: OutputLimits,
    pending: Vec<EventPayload>,
    pending_bytes: usize,
    budget: Budget,
}

impl AgentLog {
    pub async fn open(ctx: &Ctx, task_id: TaskId) -> Result<AgentLog, DbErr> {
        let (kept, marker) = task_log::agent_output(&ctx.db, task_id).await?;
        Ok(AgentLog {
            ctx: ctx.clone(),
            task_id,
            limits: ctx.tunables.agent_output.clone(),
            pending: Vec::new(),
            pending_bytes: 0,
            budget: Budget::from_store(kept, marker),
        })
    }

    pub fn limits(&self) -> &OutputLimits {
        &self.limits
    }

    /// Queue a line of the agent's output (stored at the next [`AgentLog::flush`]).
    pub fn push(&mut self, line: AgentLine) {
        let mut payload = EventPayload::Agent(line);
        payload.rewrite_texts(&|text| self.ctx.redactor.redact(text));
        self.pending_bytes += approximate_size(&payload);
        self.pending.push(payload);
    }

    /// Whether the queued lines make a batch.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= BATCH_LINES || self.pending_bytes >= BATCH_BYTES
    }

    /// Store the queued lines (in one transaction, dropping the oldest output when the log is
    /// over its bounds) and publish them. A failure to store is logged, as for any log line:
    /// the lines are lost, the task goes on.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let payloads = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let lines = payloads.len();
        if let Err(e) = self.store(payloads).await {
            warn!(task_id = %self.task_id, error = %e, lines, "storing the agent's output failed");
            // What the store holds is the count from now on.
            match task_log::agent_output(&self.ctx.db, self.task_id).await {
                Ok((kept, marker)) => self.budget = Budget::from_store(kept, marker),
                Err(e) => {
                    warn!(task_id = %self.task_id, error = %e, "reading the log's size failed")
                }
            }
        }
    }

    async fn store(&mut self, payloads: Vec<EventPayload>) -> Result<(), DbErr> {
        let rows: Vec<String> = payloads.iter().map(EventPayload::to_json).collect();
        let txn = self.ctx.db.begin().await?;
        let first = task_log::append_many(&txn, self.task_id, EventKind::Agent, &rows).await?;
        for (i, (payload, data)) in payloads.iter().zip(&rows).enumerate() {
            if droppable(payload) {
                self.budget.add(Kept {
                    seq: first + i as i64,
                    bytes: data.len() as u64,
                });
            }
        }
        if let Some(trim) = self.budget.over(&self.limits) {
            task_log::drop_agent_output(&txn, self.task_id, trim.at, &trim.marker).await?;
        }
        txn.commit().await?;
        for (i, payload) in payloads.into_iter().enumerate() {
            self.ctx.bus.publish(Published {
                task_id: self.task_id,
                seq: first + i as i64,
                payload,
            });
        }
        Ok(())
    }
}

/// Whether the log's bounds may drop this line: everything but a turn's result.
fn droppable(payload: &EventPayload) -> bool {
    matches!(payload, EventPayload::Agent(line) if !matches!(line, AgentLine::Result { .. }))
}

/// Roughly what a line takes stored (to cut batches; the bounds use the exact size).
fn approximate_size(payload: &EventPayload) -> usize {
    let text = match payload {
        EventPayload::Agent(
            AgentLine::Text { text }
            | AgentLine::Raw { text }
            | AgentLine::Stderr { text }
            | AgentLine::Setup { text }
            | AgentLine::Result { text, .. },
        ) => text.len(),
        _ => 0,
    };
    text + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(lines: usize, bytes: u64) -> OutputLimits {
        OutputLimits {
            task_lines: lines,
            task_bytes: bytes,
            ..Default::default()
        }
    }

    fn kept(seq: i64, bytes: u64) -> Kept {
        Kept { seq, bytes }
    }

    #[test]
    fn over_the_line_bound_the_oldest_go_and_a_marker_counts_them() {
        let limits = limits(100, 1 << 30);
        let mut budget = Budget::default();
        for seq in 1..=100 {
            budget.add(kept(seq, 10));
        }
        assert_eq!(budget.over(&limits), None);
        budget.add(kept(101, 10));
        let drop = budget.over(&limits).unwrap();
        // Down to 90 lines: the marker and the 89 newest.
        assert_eq!(budget.lines(), 90);
        assert_eq!(drop.at, 12);
        assert_eq!(
            drop.marker,
            AgentLine::Dropped {
                lines: 12,
                bytes: 120
            }
        );
        // The next drop takes the marker along and adds to its count.
        for seq in 102..=112 {
            budget.add(kept(seq, 10));
        }
        let drop = budget.over(&limits).unwrap();
        assert_eq!(budget.lines(), 90);
        assert_eq!(drop.at, 23);
        assert_eq!(
            drop.marker,
            AgentLine::Dropped {
                lines: 23,
                bytes: 230
            }
        );
    }

    #[test]
    fn over_the_byte_bound_the_oldest_go() {
        let limits = limits(1000, 10_000);
        let mut budget = Budget::default();
        for seq in 1..=10 {
            budget.add(kept(seq, 1000));
        }
        assert_eq!(budget.over(&limits), None);
        budget.add(kept(11, 1000));
        let drop = budget.over(&limits).unwrap();
        assert!(budget.bytes() <= 9000, "{}", budget.bytes());
        assert_eq!(drop.at, 3);
        assert!(matches!(
            drop.marker,
            AgentLine::Dropped {
                lines: 3,
                bytes: 3000
            }
        ));
    }

    #[test]
    fn a_budget_read_back_goes_on_counting_from_its_marker() {
        let marker = AgentLine::Dropped {
            lines: 500,
            bytes: 5000,
        };
        let mut budget = Budget::from_store(
            (600..=700).map(|s| kept(s, 10)).collect(),
            Some((600, marker)),
        );
        let drop = budget.over(&limits(100, 1 << 30)).unwrap();
        // The old marker and 11 lines went: 511 in all.
        assert_eq!(drop.at, 611);
        assert!(matches!(drop.marker, AgentLine::Dropped { lines: 511, .. }));
    }
}
