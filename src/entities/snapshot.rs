//! An image saved after a repository's setup succeeded (see the `snapshots` migration).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "snapshots")]
pub struct Model {
    /// What the snapshot was made from, hashed (see `worker::snapshot`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    pub repo_id: i64,
    /// The image's name on the Docker engine.
    pub image: String,
    pub bytes: i64,
    pub created_at: i64,
    pub used_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
