//! Setup mode: the first run without an App (no `APP_ID`, none registered yet).
//!
//! `GET /` (and `GET /setup`) shows a button that posts this deployment's App manifest to
//! GitHub's "new App" page, for the signed-in account or, with `?organization=`, for an
//! organization. GitHub creates the App and sends the browser back to `GET /setup/callback`
//! with a one-time code, which is exchanged for the App's id, private key and webhook secret
//! (`POST /app-manifests/{code}/conversions`). They are stored in the database, encrypted with
//! `SECRET_KEY`, and the service acts as the new App at once; the page then links to the App's
//! installation page. Without `SECRET_KEY` the page says how to make one and offers nothing to
//! register, and a callback is refused before its code is exchanged (GitHub hands the
//! credentials over once; what cannot be stored would be lost).
//!
//! Whoever registers the App owns it on GitHub, so the setup page needs `ADMIN_TOKEN` (as the
//! Basic password a browser asks for); without one configured it only says how to go on. A
//! `state` value handed out with the page and checked on the way back ties the callback to a
//! setup page this deployment served. A deployment has one App: a registration that finishes
//! second is told its App is not used. Once the service has an App the setup page is gone
//! (404), and the callback only shows the registered App.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::context::Ctx;
use crate::domain::ids::is_login;
use crate::entities::github_app;
use crate::github::GitHub;

/// The manifest as shipped in the repository; URLs are filled in per deployment.
const MANIFEST: &str = include_str!("../../app-manifest.json");

/// This deployment's App manifest: the shipped one with its webhook, callback and home URLs
/// pointed at `public_url`.
pub fn manifest(public_url: &str) -> Value {
    let base = public_url.trim_end_matches('/');
    let mut manifest: Value =
        serde_json::from_str(MANIFEST).expect("app-manifest.json is valid JSON");
    manifest["url"] = Value::String(format!("{base}/"));
    manifest["hook_attributes"]["url"] = Value::String(format!("{base}/api/github/webhooks"));
    manifest["redirect_url"] = Value::String(format!("{base}/setup/callback"));
    manifest["setup_url"] = Value::String(format!("{base}/"));
    manifest
}

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub version: &'static str,
    pub action: String,
    pub manifest: String,
    pub organization: String,
    pub error: Option<String>,
    pub webhook_url: String,
    pub permissions: Vec<(String, String)>,
    /// `SECRET_KEY` is not set: nothing can be stored, so no registration is offered.
    pub needs_key: bool,
    /// An App is stored already but its credentials cannot be used (why): none is offered
    /// either, as it would not replace that one.
    pub unusable: Option<String>,
}

/// Setup mode without `ADMIN_TOKEN`: how to go on.
#[derive(Template, WebTemplate)]
#[template(path = "setup_token.html")]
pub struct NeedsToken {
    pub version: &'static str,
}

#[derive(Template, WebTemplate)]
#[template(path = "setup_done.html")]
pub struct SetupDone {
    pub version: &'static str,
    pub name: String,
    pub app_url: String,
    pub install_url: String,
    /// An App created by a registration that finished second, which is not used.
    pub unused: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SetupQuery {
    #[serde(default)]
    organization: Option<String>,
}

/// `GET /` in setup mode and `GET /setup`.
pub async fn page(ctx: &Ctx, headers: &HeaderMap, query: SetupQuery) -> Response {
    // Whoever registers the App owns it on GitHub and could sign webhooks for this service: the
    // page is for the operator only.
    if ctx.config.admin_token.is_none() {
        return NeedsToken {
            version: env!("CARGO_PKG_VERSION"),
        }
        .into_response();
    }
    if let Some(refused) = super::admin::refusal(ctx, headers) {
        return refused;
    }
    let web = ctx.config.web_url();
    let manifest = manifest(&ctx.config.public_url);
    let permissions = manifest["default_permissions"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.replace('_', " "), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let webhook_url = manifest["hook_attributes"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Nothing to register: say why, and hand out no state.
    let unusable = ctx.identity.unusable();
    let needs_key = ctx.config.secret_keys.current.is_none();
    if unusable.is_some() || needs_key {
        return SetupPage {
            version: env!("CARGO_PKG_VERSION"),
            action: String::new(),
            manifest: String::new(),
            organization: String::new(),
            error: None,
            webhook_url,
            permissions,
            needs_key,
            unusable,
        }
        .into_response();
    }
    let organization = query.organization.unwrap_or_default().trim().to_string();
    let (organization, error) = if organization.is_empty() || is_login(&organization) {
        (organization, None)
    } else {
        (
            String::new(),
            Some(format!(
                "{organization:?} is not an organization name (letters, digits and hyphens)"
            )),
        )
    };
    let fresh = || {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    };
    let state = match crate::store::github_app::state_to_hand_out(&ctx.db, fresh).await {
        Ok(state) => state,
        Err(e) => return super::internal_error(e),
    };
    let action = if organization.is_empty() {
        format!("{web}/settings/apps/new?state={state}")
    } else {
        format!("{web}/organizations/{organization}/settings/apps/new?state={state}")
    };
    let page = SetupPage {
        version: env!("CARGO_PKG_VERSION"),
        action,
        webhook_url,
        manifest: manifest.to_string(),
        organization,
        error,
        permissions,
        needs_key: false,
        unusable: None,
    };
    let mut response = page.into_response();
    // The form posts to GitHub, which the site-wide policy (`form-action 'self'`) forbids.
    if let Ok(policy) = HeaderValue::from_str(
        &super::SECURITY_HEADERS[0]
            .1
            .replace("form-action 'self'", &format!("form-action 'self' {web}")),
    ) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

/// `GET /setup`: the setup page, while there is no App.
pub async fn show(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(query): Query<SetupQuery>,
) -> Response {
    if !ctx.in_setup() {
        return super::not_found();
    }
    page(&ctx, &headers, query).await
}

#[derive(Deserialize, Default)]
pub struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

fn done(registered: &crate::identity::Registered, unused: Option<String>) -> Response {
    SetupDone {
        version: env!("CARGO_PKG_VERSION"),
        name: registered.name.clone(),
        app_url: registered.html_url.clone(),
        install_url: registered.install_url(),
        unused,
    }
    .into_response()
}

/// `GET /setup/callback?code=…&state=…`: GitHub sends the browser here after creating the App.
pub async fn callback(State(ctx): State<Ctx>, Query(callback): Query<Callback>) -> Response {
    // Registered meanwhile (here, or through another replica): a reload of the finished page
    // shows it again, and nothing is exchanged twice.
    if ctx.look_for_registered_app().await {
        return match &ctx.identity().registered {
            Some(registered) => done(registered, None),
            None => super::not_found(),
        };
    }
    // Refused before the code is exchanged: GitHub hands the credentials over once, and what
    // cannot be stored would be lost. The state is not used up either, so a reload once the
    // service is fixed (within the hour the code lasts) goes on.
    if let Some(problem) = ctx.identity.unusable() {
        warn!(
            "an App registration came back, but an App whose credentials cannot be used is stored already; its code was not exchanged"
        );
        return message(
            StatusCode::CONFLICT,
            &format!(
                "This deployment has a GitHub App stored already, whose credentials cannot be \
                 used: {problem}. The new App's credentials were not fetched from GitHub. Fix the \
                 key and restart, or delete the stored App; then reload this page within the hour \
                 (or delete the new App on GitHub and start again from the home page)."
            ),
        );
    }
    let Some(key) = ctx.config.secret_keys.current.clone() else {
        warn!(
            "an App registration came back, but SECRET_KEY is not set; its code was not exchanged"
        );
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "SECRET_KEY is not set, so the new App's credentials could not be stored encrypted; \
             they were not fetched from GitHub. Set SECRET_KEY (make one with `openssl rand \
             -base64 32`), restart the service and reload this page within the hour (or delete \
             the App on GitHub and start again from the home page).",
        );
    };
    let (Some(code), Some(state)) = (callback.code, callback.state) else {
        return message(
            StatusCode::BAD_REQUEST,
            "GitHub's answer is missing its code or state; start again from the home page.",
        );
    };
    match crate::store::github_app::take_state(&ctx.db, &state).await {
        Ok(true) => {}
        Ok(false) => {
            warn!("an App registration came back with an unknown or expired state");
            return message(
                StatusCode::BAD_REQUEST,
                "This registration did not start on this deployment's setup page, or it is more \
                 than an hour old, or it was already used; start again from the home page.",
            );
        }
        Err(e) => return super::internal_error(e),
    }
    // The code works once: a retried call could only fail, and lose the credentials' only copy.
    let options = crate::github::Options {
        max_attempts: 1,
        ..ctx.tunables.github.clone()
    };
    let client = match GitHub::for_app(&ctx.config.github_api_url, None, None, options, None) {
        Ok(client) => client,
        Err(e) => return super::internal_error(format!("{e:#}")),
    };
    let app = match client.convert_manifest(&code).await {
        Ok(app) => app,
        Err(e) => {
            warn!(error = %e, "exchanging the App manifest code failed");
            return message(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "GitHub did not hand over the new App's credentials ({e}). The App may \
                     exist on GitHub already: delete it there, then start again from the home page."
                ),
            );
        }
    };
    let Some(webhook_secret) = app.webhook_secret.clone() else {
        return message(
            StatusCode::BAD_GATEWAY,
            "GitHub created the App without a webhook secret; delete it on GitHub and start again.",
        );
    };
    let model = github_app::Model {
        slot: 1,
        app_id: app.id as i64,
        slug: app.slug(),
        name: app.name.clone(),
        owner_login: app
            .owner
            .as_ref()
            .and_then(|o| o.login.clone())
            .unwrap_or_default(),
        html_url: app.html_url.clone(),
        client_id: app.client_id.clone(),
        client_secret: app.client_secret.clone(),
        webhook_secret,
        private_key: app.pem.clone(),
        created_at: crate::db::now_ms(),
    };
    // One App per deployment: when another registration was stored first, that one is used.
    let stored = match crate::store::github_app::save(&ctx.db, model, &key).await {
        Ok(stored) => stored,
        Err(e) => return super::internal_error(e),
    };
    if let Err(e) = ctx.identity.adopt(&stored) {
        return super::internal_error(format!("{e:#}"));
    }
    let unused = (stored.app_id != app.id as i64).then(|| app.name.clone());
    match &unused {
        None => {
            info!(app_id = stored.app_id, slug = %stored.slug, owner = %stored.owner_login, "GitHub App registered; webhooks are now verified with its secret")
        }
        Some(_) => {
            warn!(
                app_id = app.id,
                kept = stored.app_id,
                "another registration finished first; the App just created is not used"
            )
        }
    }
    match &ctx.identity().registered {
        Some(registered) => done(registered, unused),
        None => super::internal_error("the registered App was not adopted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_points_at_this_deployment() {
        let m = manifest("https://amp.example.com/");
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://amp.example.com/api/github/webhooks"
        );
        assert_eq!(m["redirect_url"], "https://amp.example.com/setup/callback");
        assert_eq!(m["url"], "https://amp.example.com/");
        assert_eq!(
            m["default_events"],
            serde_json::json!(["issue_comment", "check_suite", "pull_request"])
        );
        assert_eq!(m["default_permissions"]["contents"], "write");
    }
}
