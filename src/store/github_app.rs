//! The App registered through the manifest flow, and the setup page's one-time states.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};

use crate::db::now_ms;
use crate::entities::{github_app, setup_state};

/// How long a setup page's `state` stays valid (GitHub's manifest codes last an hour).
pub const STATE_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// The most recently registered App, if any.
pub async fn current(db: &impl ConnectionTrait) -> Result<Option<github_app::Model>, DbErr> {
    github_app::Entity::find()
        .order_by_desc(github_app::Column::CreatedAt)
        .one(db)
        .await
}

/// Store a registered App (replacing a row with the same id).
pub async fn save(db: &impl ConnectionTrait, app: github_app::Model) -> Result<(), DbErr> {
    let model = github_app::ActiveModel {
        id: Set(app.id),
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
            OnConflict::column(github_app::Column::Id)
                .update_columns([
                    github_app::Column::Slug,
                    github_app::Column::Name,
                    github_app::Column::OwnerLogin,
                    github_app::Column::HtmlUrl,
                    github_app::Column::ClientId,
                    github_app::Column::ClientSecret,
                    github_app::Column::WebhookSecret,
                    github_app::Column::PrivateKey,
                    github_app::Column::CreatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
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
