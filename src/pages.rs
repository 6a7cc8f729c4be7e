//! Server-rendered pages (askama templates in `templates/`).

use askama::Template;
use askama_web::WebTemplate;

/// The landing page: what the app does and its commands.
#[derive(Template, WebTemplate)]
#[template(path = "index.html")]
pub struct Index {
    pub version: &'static str,
}

pub async fn index() -> Index {
    Index {
        version: env!("CARGO_PKG_VERSION"),
    }
}
