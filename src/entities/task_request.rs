//! What someone asked of a task while a round of it ran, waiting for the next round (see the
//! `task_requests` migration).

use sea_orm::entity::prelude::*;

use crate::domain::TaskId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_requests")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: TaskId,
    /// Who asked.
    pub login: String,
    /// What they asked, as the command gave it.
    pub prompt: String,
    /// The comment it came in.
    pub comment_id: i64,
    pub created_at: i64,
    /// The round that took it; `None` while it waits.
    pub round_id: Option<i64>,
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
