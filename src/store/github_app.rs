//! The App registered through the manifest flow, and the setup page's one-time states.
//!
//! The App's private key, webhook secret and client secret are stored sealed with `SECRET_KEY`
//! (see [`crate::sealed`]): [`save`] seals them, [`credentials`] opens them, and [`reseal`]
//! brings stored values under the current key after a rotation (or seals plain text stored
//! before encryption existed).

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use secrecy::{ExposeSecret, SecretString};

use crate::db::now_ms;
use crate::entities::{github_app, setup_state};
use crate::sealed::{Keyring, SealError, SecretKey};

/// The sealed columns, by the names their values are bound to.
pub const PRIVATE_KEY: &str = "github_app.private_key";
pub const WEBHOOK_SECRET: &str = "github_app.webhook_secret";
pub const CLIENT_SECRET: &str = "github_app.client_secret";

/// A stored App's credentials, opened.
pub struct Credentials {
    pub private_key: SecretString,
    pub webhook_secret: SecretString,
    pub client_secret: SecretString,
    /// Some of them are stored as plain text (from before `SECRET_KEY`).
    pub plain_text: bool,
}

/// Open the credentials of a stored App with `keys`.
pub fn credentials(app: &github_app::Model, keys: &Keyring) -> Result<Credentials, SealError> {
    let private_key = keys.open(PRIVATE_KEY, &app.private_key)?;
    let webhook_secret = keys.open(WEBHOOK_SECRET, &app.webhook_secret)?;
    let client_secret = keys.open(CLIENT_SECRET, &app.client_secret)?;
    let plain_text = [&private_key, &webhook_secret, &client_secret]
        .iter()
        .any(|o| o.key_id.is_none());
    Ok(Credentials {
        private_key: private_key.plain,
        webhook_secret: webhook_secret.plain,
        client_secret: client_secret.plain,
        plain_text,
    })
}

/// How long a setup page's `state` stays valid (GitHub's manifest codes last an hour).
pub const STATE_LIFETIME_MS: i64 = 60 * 60 * 1000;

/// The registered App, if any.
pub async fn current(db: &impl ConnectionTrait) -> Result<Option<github_app::Model>, DbErr> {
    github_app::Entity::find_by_id(1).one(db).await
}

/// Store a registered App unless one is stored already; the App stored afterwards (this one,
/// or the one another registration stored first), its credentials sealed.
///
/// `app` carries its credentials in plain text; they are stored sealed with `key`.
pub async fn save(
    db: &impl ConnectionTrait,
    app: github_app::Model,
    key: &SecretKey,
) -> Result<github_app::Model, DbErr> {
    let app = github_app::Model {
        private_key: key.seal(PRIVATE_KEY, &app.private_key),
        webhook_secret: key.seal(WEBHOOK_SECRET, &app.webhook_secret),
        client_secret: key.seal(CLIENT_SECRET, &app.client_secret),
        ..app
    };
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

/// What [`reseal`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resealed {
    /// No App stored, or its credentials are sealed with `SECRET_KEY` already.
    Unchanged,
    /// Sealed with `SECRET_KEY` now; `from` says what they were before (plain text, or the
    /// ids of older keys).
    Sealed { from: Vec<String> },
    /// Stored as plain text, and there is no `SECRET_KEY` to seal them with.
    PlainTextWithoutKey,
    /// They do not open with the keys configured; left as they are.
    Unopenable(SealError),
    /// Another replica changed them meanwhile; left to it.
    ChangedMeanwhile,
}

/// Seal the stored App's credentials with `SECRET_KEY` where they are not yet: plain text
/// from before encryption existed, or values sealed with a key from `SECRET_KEY_PREVIOUS`.
/// Run once at start, after migrations.
pub async fn reseal(db: &impl ConnectionTrait, keys: &Keyring) -> Result<Resealed, DbErr> {
    let Some(app) = current(db).await? else {
        return Ok(Resealed::Unchanged);
    };
    let stored = [&app.private_key, &app.webhook_secret, &app.client_secret];
    let Some(key) = &keys.current else {
        let opened = credentials(&app, keys);
        return Ok(match opened {
            Ok(c) if c.plain_text => Resealed::PlainTextWithoutKey,
            _ => Resealed::Unchanged,
        });
    };
    if !stored.iter().any(|value| keys.needs_sealing(value)) {
        return Ok(Resealed::Unchanged);
    }
    let mut from = Vec::new();
    let mut sealed = Vec::new();
    for (column, value) in [PRIVATE_KEY, WEBHOOK_SECRET, CLIENT_SECRET]
        .into_iter()
        .zip(stored)
    {
        let opened = match keys.open(column, value) {
            Ok(opened) => opened,
            Err(e) => return Ok(Resealed::Unopenable(e)),
        };
        let was = match opened.key_id {
            None => "plain text".to_string(),
            Some(id) => format!("key {id}"),
        };
        if !from.contains(&was) && keys.needs_sealing(value) {
            from.push(was);
        }
        sealed.push(if keys.needs_sealing(value) {
            key.seal(column, opened.plain.expose_secret())
        } else {
            value.clone()
        });
    }
    // Only over the values read: a replica that changed them meanwhile wins.
    let updated = github_app::Entity::update_many()
        .col_expr(
            github_app::Column::PrivateKey,
            Expr::value(sealed[0].clone()),
        )
        .col_expr(
            github_app::Column::WebhookSecret,
            Expr::value(sealed[1].clone()),
        )
        .col_expr(
            github_app::Column::ClientSecret,
            Expr::value(sealed[2].clone()),
        )
        .filter(github_app::Column::Slot.eq(app.slot))
        .filter(github_app::Column::PrivateKey.eq(app.private_key.as_str()))
        .filter(github_app::Column::WebhookSecret.eq(app.webhook_secret.as_str()))
        .filter(github_app::Column::ClientSecret.eq(app.client_secret.as_str()))
        .exec(db)
        .await?;
    Ok(if updated.rows_affected == 1 {
        Resealed::Sealed { from }
    } else {
        Resealed::ChangedMeanwhile
    })
}

/// The state for the setup page to hand out: the one handed out last while it has at least half
/// its lifetime left, else `fresh()`, remembered. Reloading the page, however often, keeps at most
/// a few states in the table.
pub async fn state_to_hand_out(
    db: &impl ConnectionTrait,
    fresh: impl FnOnce() -> String,
) -> Result<String, DbErr> {
    let recent = setup_state::Entity::find()
        .filter(setup_state::Column::CreatedAt.gte(now_ms() - STATE_LIFETIME_MS / 2))
        .order_by_desc(setup_state::Column::CreatedAt)
        .one(db)
        .await?;
    if let Some(recent) = recent {
        return Ok(recent.state);
    }
    let state = fresh();
    issue_state(db, &state).await?;
    Ok(state)
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
