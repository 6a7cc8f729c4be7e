//! The setup snapshots the service keeps, and which to let go of.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

use crate::db::now_ms;
use crate::entities::snapshot;

/// The snapshot made for `key`, if there is one.
pub async fn by_key(
    db: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<snapshot::Model>, DbErr> {
    snapshot::Entity::find_by_id(key.to_string()).one(db).await
}

/// Record a new snapshot (one made again for the same key replaces it).
pub async fn record(
    db: &impl ConnectionTrait,
    key: &str,
    repo_id: i64,
    image: &str,
    bytes: i64,
) -> Result<(), DbErr> {
    let now = now_ms();
    snapshot::Entity::insert(snapshot::ActiveModel {
        key: Set(key.to_string()),
        repo_id: Set(repo_id),
        image: Set(image.to_string()),
        bytes: Set(bytes),
        created_at: Set(now),
        used_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(snapshot::Column::Key)
            .update_columns([
                snapshot::Column::Image,
                snapshot::Column::Bytes,
                snapshot::Column::CreatedAt,
                snapshot::Column::UsedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await
    .map(drop)
}

/// A task starts from the snapshot now.
pub async fn used(db: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    snapshot::Entity::update_many()
        .col_expr(
            snapshot::Column::UsedAt,
            sea_orm::sea_query::Expr::value(now_ms()),
        )
        .filter(snapshot::Column::Key.eq(key))
        .exec(db)
        .await
        .map(drop)
}

/// Every snapshot (of `repo_id` when given), least recently used first.
pub async fn least_recently_used(
    db: &impl ConnectionTrait,
    repo_id: Option<i64>,
) -> Result<Vec<snapshot::Model>, DbErr> {
    let mut find = snapshot::Entity::find();
    if let Some(repo_id) = repo_id {
        find = find.filter(snapshot::Column::RepoId.eq(repo_id));
    }
    find.order_by_asc(snapshot::Column::UsedAt)
        .order_by_asc(snapshot::Column::Key)
        .all(db)
        .await
}

pub async fn forget(db: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    snapshot::Entity::delete_by_id(key.to_string())
        .exec(db)
        .await
        .map(drop)
}
