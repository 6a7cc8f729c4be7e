//! When a user without access was last told so on an issue.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refusal_replies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub repo_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub issue_number: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub login: String,
    pub replied_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
