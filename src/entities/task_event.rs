//! One entry of a task's append-only log: a state change or a log line.

use sea_orm::entity::prelude::*;

use crate::domain::{EventKind, EventPayload, TaskId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: TaskId,
    /// Strictly increasing per task, starting at 1, handed out with no gaps: SSE ids and
    /// resumption use it. The oldest of the agent's output may be dropped later (see
    /// [`crate::store::task_log`]); readers skip the numbers that are gone.
    pub seq: i64,
    pub kind: EventKind,
    /// The payload as JSON text (see [`EventPayload`]).
    pub data: String,
    pub created_at: i64,
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
    /// The event's payload, typed.
    pub fn payload(&self) -> EventPayload {
        EventPayload::decode(self.kind, &self.data)
    }
}
