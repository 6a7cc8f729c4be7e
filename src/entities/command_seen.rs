//! An `/amp` comment the service acted on, by the key of what GitHub signed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "commands_seen")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub command_key: String,
    /// The delivery that brought it first (handling that same delivery again goes on).
    pub delivery_id: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
