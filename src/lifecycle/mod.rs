//! One owner for a task's life.
//!
//! Every change of a task's state goes through [`Lifecycle::transition`], which does the whole of
//! it, in this order: the compare-and-set in the store (with the reason, the status note and the
//! round that goes with it, in one transaction), the state event published to live viewers, a
//! wake-up for whoever acts next (a worker for queued work and new rounds, the CI loop for a task
//! that starts waiting for CI), the removal of a finished task's containers, and the status comment
//! brought in line with the store. Handlers, the CI loop, the admin API and the worker ask for
//! transitions; nothing else writes a task's state or edits its status comment.

mod cleanup;
pub mod create;
pub mod local_runs;
pub mod requests;
pub mod status_comment;

use std::sync::Arc;

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{Notify, mpsc};
use tracing::warn;

use crate::bus::{EventBus, Published};
use crate::config::Config;
use crate::domain::{CommitSha, EventPayload, LogLine, TaskId, TaskState};
use crate::entities::{task, task_event};
use crate::identity::IdentityCell;
use crate::redact::Redactor;
use crate::store::rounds::NewRound;
use crate::store::tasks::{self, Applied, Change, TaskError};
use crate::texts;

pub use create::{Created, TaskRequest};
pub use local_runs::LocalRuns;

/// Who acts next, woken by the lifecycle.
pub struct Wakeups {
    /// Rung when a worker has something to claim: a task queued, a round to run.
    pub worker: Notify,
    /// Tasks that have just started waiting for CI: the CI loop decides on them at once, in case
    /// their checks finished before the wait began.
    ci: mpsc::UnboundedSender<TaskId>,
}

/// A change of state, as asked for.
#[derive(Debug, Clone)]
pub struct Move<'a> {
    pub to: TaskState,
    /// On the timeline; for a task that ends badly, also its error message.
    pub reason: Option<&'a str>,
    /// What the status comment shows under the new state.
    pub note: Option<&'a str>,
    /// Only while the task's head commit is still this one.
    pub head: Option<&'a CommitSha>,
    /// The task's CI round counter afterwards.
    pub ci_round: Option<i32>,
    /// The command's delivery, stored with the change (a delivery handled twice acts once).
    pub command_delivery: Option<&'a str>,
    /// A round that starts with the change.
    pub round: Option<NewRound>,
}

impl<'a> Move<'a> {
    pub fn to(to: TaskState) -> Move<'a> {
        Move {
            to,
            reason: None,
            note: None,
            head: None,
            ci_round: None,
            command_delivery: None,
            round: None,
        }
    }

    /// The same words on the timeline and in the status comment.
    pub fn saying(self, text: &'a str) -> Move<'a> {
        Move {
            reason: Some(text),
            note: Some(text),
            ..self
        }
    }

    pub fn reason(self, reason: &'a str) -> Move<'a> {
        Move {
            reason: Some(reason),
            ..self
        }
    }

    pub fn note(self, note: &'a str) -> Move<'a> {
        Move {
            note: Some(note),
            ..self
        }
    }

    pub fn at_head(self, head: &'a CommitSha) -> Move<'a> {
        Move {
            head: Some(head),
            ..self
        }
    }

    pub fn ci_round(self, ci_round: i32) -> Move<'a> {
        Move {
            ci_round: Some(ci_round),
            ..self
        }
    }

    pub fn by_command(self, delivery_id: &'a str) -> Move<'a> {
        Move {
            command_delivery: Some(delivery_id),
            ..self
        }
    }

    pub fn with_round(self, round: NewRound) -> Move<'a> {
        Move {
            round: Some(round),
            ..self
        }
    }
}

/// Whether a task in `state` may have containers: one that is neither waiting in the queue nor
/// over.
fn holds_containers(state: TaskState) -> bool {
    !state.is_terminal() && state != TaskState::Queued
}

/// What `/amp stop` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was running: the task ended here.
    Ended,
    /// It runs (here or on another replica), which was asked to stop it.
    Asked,
    /// It had ended already.
    Over,
}

pub struct Lifecycle {
    db: DatabaseConnection,
    bus: Arc<EventBus>,
    identity: Arc<IdentityCell>,
    redactor: Arc<Redactor>,
    config: Arc<Config>,
    /// Labels this deployment's containers (see [`crate::docker::LABEL_STORE`]).
    store_label: String,
    pub wakeups: Wakeups,
    /// The tasks this process runs.
    pub local: LocalRuns,
}

impl Lifecycle {
    /// The lifecycle, and the queue of tasks that started waiting for CI (for the CI loop).
    pub fn new(
        db: DatabaseConnection,
        bus: Arc<EventBus>,
        identity: Arc<IdentityCell>,
        redactor: Arc<Redactor>,
        config: Arc<Config>,
        store_label: String,
    ) -> (Lifecycle, mpsc::UnboundedReceiver<TaskId>) {
        let (ci, started_waiting) = mpsc::unbounded_channel();
        let lifecycle = Lifecycle {
            db,
            bus,
            identity,
            redactor,
            config,
            store_label,
            wakeups: Wakeups {
                worker: Notify::new(),
                ci,
            },
            local: LocalRuns::default(),
        };
        (lifecycle, started_waiting)
    }

    /// Move `task` from its stored state (see [`Lifecycle::transition_from`]).
    pub async fn transition(
        &self,
        task: &task::Model,
        mv: Move<'_>,
    ) -> Result<Option<Applied>, TaskError> {
        self.transition_from(task, task.state, mv).await
    }

    /// Move `task` from `from` as `mv` says, and carry out everything that goes with it. `None`
    /// when the task was no longer in `from` (or no longer at `mv.head`): someone else moved it
    /// first, and nothing was done.
    pub async fn transition_from(
        &self,
        task: &task::Model,
        from: TaskState,
        mv: Move<'_>,
    ) -> Result<Option<Applied>, TaskError> {
        let to = mv.to;
        let change = Change {
            from,
            to,
            reason: mv.reason,
            note: mv.note,
            head: mv.head,
            ci_round: mv.ci_round,
            command_delivery: mv.command_delivery,
        };
        let applied = match tasks::transition(&self.db, task.id, &change, mv.round).await {
            Ok(applied) => applied,
            Err(TaskError::Conflict { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.publish(&applied.event);
        match to {
            TaskState::Queued => self.wakeups.worker.notify_one(),
            TaskState::Fixing if applied.round.is_some() => self.wakeups.worker.notify_one(),
            TaskState::AwaitingCi => {
                let _ = self.wakeups.ci.send(task.id);
            }
            _ => {}
        }
        if holds_containers(from) && !holds_containers(to) {
            cleanup::remove_task_containers(&self.config, &self.store_label, &task.public_id).await;
        }
        // Brief steps the comment need not show.
        if !matches!(to, TaskState::Preparing | TaskState::Pushing) {
            self.converge_status_comment(task.id).await;
        }
        Ok(Some(applied))
    }

    /// Claim the next task a worker can run (see [`tasks::claim_next`]).
    pub async fn claim_next(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<task::Model>, DbErr> {
        let Some(claimed) = tasks::claim_next(&self.db, owner, lease_ms).await? else {
            return Ok(None);
        };
        if let Some(event) = &claimed.event {
            self.publish(event);
        }
        Ok(Some(claimed.task))
    }

    /// `/amp stop`: a queued task is cancelled, and one waiting for CI ends, here (nothing runs
    /// for them); a running one is stopped where it runs, this process or another replica. A
    /// stop asked for earlier with its own reason (see [`Lifecycle::pull_closed`]) keeps it.
    pub async fn stop(&self, task: &task::Model) -> Result<Stopped, TaskError> {
        let asked_before = task.stop_note.clone();
        self.end_or_stop(
            task,
            |state| {
                let note = match (&asked_before, state) {
                    (Some(note), _) => note.clone(),
                    (None, TaskState::Queued) => texts::notes::stopped_before_start(),
                    (None, _) => texts::notes::stopped(),
                };
                (TaskState::Cancelled, note)
            },
            None,
        )
        .await
    }

    /// The task's pull request was closed (merged or not) by `by`: a task waiting for CI ends,
    /// `succeeded` when merged and `cancelled` when not, and a queued one is cancelled, here; a
    /// running one is stopped as `/amp stop` stops it, its status comment saying why. GitHub's
    /// own answer says `merged`.
    pub async fn pull_closed(
        &self,
        task: &task::Model,
        merged: bool,
        by: &str,
    ) -> Result<Stopped, TaskError> {
        let note = texts::notes::pull_closed(task.pr_number.unwrap_or_default(), merged, by);
        let stopped = self
            .end_or_stop(
                task,
                |state| {
                    let to = if merged && state == TaskState::AwaitingCi {
                        TaskState::Succeeded
                    } else {
                        TaskState::Cancelled
                    };
                    (to, note.clone())
                },
                Some(&note),
            )
            .await?;
        if stopped == Stopped::Asked {
            self.log(task.id, LogLine::info(&note)).await;
        }
        Ok(stopped)
    }

    /// End `task` here as `end` says for its state when it is queued or waiting for CI (nothing
    /// runs for it then); when it is mid-run, ask whoever runs it to stop it, for `stop_note`'s
    /// reason (none: `/amp stop`'s own).
    async fn end_or_stop(
        &self,
        task: &task::Model,
        end: impl Fn(TaskState) -> (TaskState, String),
        stop_note: Option<&str>,
    ) -> Result<Stopped, TaskError> {
        // What was asked for the next round goes with the task's work: dropped first, so that
        // nothing takes it into a round once the task has ended.
        let dropped = crate::store::requests::drop_waiting(&self.db, task.id).await?;
        if dropped > 0 {
            let line = texts::notes::requests_dropped(dropped);
            self.log(task.id, LogLine::info(&line)).await;
        }
        self.end_or_stop_run(task, end, stop_note).await
    }

    async fn end_or_stop_run(
        &self,
        task: &task::Model,
        end: impl Fn(TaskState) -> (TaskState, String),
        stop_note: Option<&str>,
    ) -> Result<Stopped, TaskError> {
        let mut task = task.clone();
        for _ in 0..3 {
            let done = match task.state {
                TaskState::Queued | TaskState::AwaitingCi => {
                    let (to, note) = end(task.state);
                    self.transition(&task, Move::to(to).saying(&note))
                        .await?
                        .is_some()
                }
                state if state.is_terminal() => return Ok(Stopped::Over),
                // Stored first, so that the run, here or on another replica, ends saying why.
                _ if tasks::request_stop(&self.db, task.id, stop_note).await? => {
                    if !self.local.stop(task.id) {
                        // Another replica runs it (or a worker is about to): it sees the
                        // request at its next check.
                        tracing::info!(task_id = %task.id, "the task runs elsewhere; stop requested through the database");
                    }
                    return Ok(Stopped::Asked);
                }
                _ => false,
            };
            if done {
                return Ok(Stopped::Ended);
            }
            // Moved on meanwhile (claimed, a CI round started, or a run ended): look again.
            match tasks::get(&self.db, task.id).await? {
                Some(fresh) => task = fresh,
                None => return Ok(Stopped::Over),
            }
        }
        // Still moving after three looks: the run it is in sees the request.
        Ok(
            if tasks::request_stop(&self.db, task.id, stop_note).await? {
                self.local.stop(task.id);
                Stopped::Asked
            } else {
                Stopped::Over
            },
        )
    }

    /// Cancel the queued tasks of an installation that was removed or suspended; how many.
    pub async fn cancel_queued(
        &self,
        installation_id: i64,
        suspended: bool,
    ) -> Result<usize, TaskError> {
        let reason = texts::notes::installation_gone(suspended);
        let mut cancelled = 0;
        for task in tasks::queued_for_installation(&self.db, installation_id).await? {
            // One a worker took meanwhile finds the installation gone when it calls GitHub.
            if self
                .transition(&task, Move::to(TaskState::Cancelled).saying(&reason))
                .await?
                .is_some()
            {
                cancelled += 1;
            }
        }
        Ok(cancelled)
    }

    /// Store an event in the task's log (secrets masked) and publish it to live viewers; its
    /// sequence number, or `None` (logged) when it could not be stored.
    pub async fn record(&self, task_id: TaskId, mut payload: EventPayload) -> Option<i64> {
        payload.rewrite_texts(&|text| self.redactor.redact(text));
        match tasks::log_event(&self.db, task_id, &payload).await {
            Ok(stored) => {
                self.bus.publish(Published {
                    task_id,
                    seq: stored.seq,
                    payload,
                });
                Some(stored.seq)
            }
            Err(e) => {
                warn!(%task_id, error = %e, "storing a task event failed");
                None
            }
        }
    }

    /// A log line of the service's own in the task's log.
    pub async fn log(&self, task_id: TaskId, line: LogLine) -> Option<i64> {
        self.record(task_id, EventPayload::Log(line)).await
    }

    /// The log of one task, for the code that runs it.
    pub fn journal(self: &Arc<Self>, task_id: TaskId) -> Journal {
        Journal::new(self.clone(), task_id)
    }

    fn publish(&self, event: &task_event::Model) {
        self.bus.publish(Published::of(event));
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}

/// A task's log, for the code that runs it: every line is masked, stored and published.
#[derive(Clone)]
pub struct Journal {
    lifecycle: Arc<Lifecycle>,
    task_id: TaskId,
}

impl Journal {
    pub fn new(lifecycle: Arc<Lifecycle>, task_id: TaskId) -> Journal {
        Journal { lifecycle, task_id }
    }

    /// `text` with every secret masked.
    pub fn redact(&self, text: &str) -> String {
        self.lifecycle.redactor.redact(text)
    }

    /// A step the service took (also logged by the service).
    pub async fn info(&self, text: &str) {
        tracing::info!("{text}");
        self.lifecycle.log(self.task_id, LogLine::info(text)).await;
    }

    pub async fn error(&self, text: &str) {
        self.lifecycle.log(self.task_id, LogLine::error(text)).await;
    }

    pub async fn line(&self, line: LogLine) {
        self.lifecycle.log(self.task_id, line).await;
    }

    /// A line of the agent's output.
    pub async fn agent(&self, line: crate::domain::AgentLine) {
        self.lifecycle
            .record(self.task_id, EventPayload::Agent(line))
            .await;
    }
}
