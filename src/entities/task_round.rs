//! A turn of the agent after a task's first (see [`RoundKind`]). The CI loop also records the
//! failure it gave up on (outcome [`RoundOutcome::GaveUp`]), so a retry has the report to start
//! from.

use sea_orm::entity::prelude::*;

use crate::domain::round::FailedCheck;
use crate::domain::{CommitSha, RoundKind, RoundOutcome, TaskId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_rounds")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: TaskId,
    /// The task's CI round number for CI rounds; 0 for the others.
    pub round: i32,
    pub kind: RoundKind,
    /// The commit whose checks failed.
    pub head_sha: Option<CommitSha>,
    /// JSON: `[{"name", "conclusion"}]` (see [`Model::failed_checks`]).
    pub failed_checks: String,
    /// Failed check names and first error lines: the same twice in a row means no progress.
    pub fingerprint: Option<String>,
    /// What the agent is (or would be) given.
    pub prompt: String,
    pub requested_by: Option<String>,
    /// `None` while the round is pending.
    pub outcome: Option<RoundOutcome>,
    /// The commit the round pushed.
    pub result_sha: Option<CommitSha>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::task::Entity",
        from = "Column::TaskId",
        to = "super::task::Column::Id",
        on_delete = "Cascade"
    )]
    Task,
}

impl Related<super::task::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Task.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The checks whose failure started the round (none for a follow-up).
    pub fn failed_checks(&self) -> Vec<FailedCheck> {
        serde_json::from_str(&self.failed_checks).unwrap_or_else(|e| {
            tracing::warn!(round = self.id, error = %e, "a round's failed checks do not decode");
            Vec::new()
        })
    }
}
