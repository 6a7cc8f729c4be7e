//! A webhook delivery in the durable inbox.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// GitHub's `X-GitHub-Delivery` GUID; unique, so a redelivery is recognised.
    #[sea_orm(unique)]
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    /// One of [`crate::store::deliveries::DeliveryStatus`].
    pub status: String,
    pub error: Option<String>,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub received_at: i64,
    pub processed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_one = "super::delivery_payload::Entity")]
    Payload,
}

impl Related<super::delivery_payload::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Payload.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
