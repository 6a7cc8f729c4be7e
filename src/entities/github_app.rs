//! The GitHub App registered through the manifest flow, with its credentials.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "github_app")]
pub struct Model {
    /// Always 1: a deployment has one App.
    #[sea_orm(primary_key, auto_increment = false)]
    pub slot: i32,
    /// GitHub's App id.
    pub app_id: i64,
    pub slug: String,
    pub name: String,
    pub owner_login: String,
    pub html_url: String,
    pub client_id: String,
    /// The three credentials are stored sealed with `SECRET_KEY` (`enc:v1:…`, see
    /// [`crate::sealed`]); [`crate::store::github_app::credentials`] opens them.
    pub client_secret: String,
    pub webhook_secret: String,
    pub private_key: String,
    pub created_at: i64,
}

/// Never prints the credentials.
impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("app_id", &self.app_id)
            .field("slug", &self.slug)
            .field("owner_login", &self.owner_login)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
