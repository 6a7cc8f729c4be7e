//! The App registered through the manifest flow, and the setup page's one-time states.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::db::now_ms;
use crate::entities::{github_app, setup_state};

/// How long a setup page's `state` stays valid (GitHub's manifest codes last an hour).
pub const STATE_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// The registered App, if any.
pub async fn current(db: &impl ConnectionTrait) -> Result<Option<github_app::Model>, DbErr> {
    github_app::Entity::find_by_id(1).one(db).await
}

/// Store a registered App unless one is stored already; the App stored afterwards (this one,
/// or the one another registration stored first).
pub async fn save(
    db: &impl ConnectionTrait,
    app: github_app::Model,
) -> Result<github_app::Model, DbErr> {
    let model = github_app::ActiveModel {
        slot: Set(1),
        app_id: Set(app.app_id),
        slug: Set(app.slug),
        name: Set(app.name),
        owner_login: Set(app.owner_login),
        html_url: Set(app.html_url),
        client_id: Set(app.client_id),
        client_secret: Set(app.client_secret),
        webhook_secret: Set(app.webhook_secret),
        private_key: Set(app.private_key),
        created_at: Set(app.created_at),
    };
    github_app::Entity::insert(model)
        .on_conflict(
            OnConflict::column(github_app::Column::Slot)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    current(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the registered GitHub App".into()))
}

/// Remember a state handed out by the setup page.
pub async fn issue_state(db: &impl ConnectionTrait, state: &str) -> Result<(), DbErr> {
    let now = now_ms();
    // Old states are of no use to anyone; dropping them here keeps the table small.
    setup_state::Entity::delete_many()
        .filter(setup_state::Column::CreatedAt.lt(now - STATE_LIFETIME_MS))
        .exec(db)
        .await?;
    setup_state::Entity::insert(setup_state::ActiveModel {
        state: Set(state.to_string()),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Use up a state: true when it was handed out within its lifetime and not used before.
pub async fn take_state(db: &impl ConnectionTrait, state: &str) -> Result<bool, DbErr> {
    let deleted = setup_state::Entity::delete_many()
        .filter(setup_state::Column::State.eq(state))
        .filter(setup_state::Column::CreatedAt.gte(now_ms() - STATE_LIFETIME_MS))
        .exec(db)
        .await?;
    Ok(deleted.rows_affected == 1)
}
