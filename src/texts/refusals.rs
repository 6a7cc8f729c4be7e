//! What the service answers over HTTP when it refuses a request a person (or their script) made:
//! the admin pages and API, and the limits on what anyone may send.

/// No admin token, or a wrong one. `basic_given` is set when the JSON API got another kind of
/// credentials than a Bearer token.
pub fn admin_token_missing(basic_given: bool) -> String {
    if basic_given {
        "The API takes the admin token only as `Authorization: Bearer <token>`.\n".into()
    } else {
        "The admin token is missing or wrong.\n".into()
    }
}

/// Too many wrong admin tokens lately.
pub fn too_many_wrong_tokens(seconds: u64) -> String {
    format!("Too many wrong admin tokens were tried; admin requests are refused for {seconds} s.\n")
}

/// A state-changing request another site made the browser send.
pub fn cross_site() -> String {
    "Requests from other sites are refused: use this service's own pages, or the API with a \
     Bearer token.\n"
        .into()
}

/// The JSON API got something other than JSON.
pub fn json_only(content_type: Option<&str>) -> String {
    match content_type {
        Some(given) => format!(
            "The API takes `Content-Type: application/json`, not `{}`.",
            given.chars().take(100).collect::<String>()
        ),
        None => "The API takes `Content-Type: application/json`.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals() {
        let all = [
            admin_token_missing(false),
            admin_token_missing(true),
            too_many_wrong_tokens(3),
            cross_site(),
            json_only(Some("text/plain")),
            json_only(None),
        ]
        .join("\n---\n");
        insta::assert_snapshot!("refusals", all);
    }
}
