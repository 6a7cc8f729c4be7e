//! The real GitHub payload examples in `tests/fixtures/github` (octokit/webhooks and octocrab, MIT).

use std::path::PathBuf;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github")
}

/// The bytes of `tests/fixtures/github/<path>`.
pub fn fixture_bytes(path: &str) -> Vec<u8> {
    let full = fixtures_dir().join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// A fixture as JSON, to have ids, bodies and names replaced before it is sent.
pub fn fixture(path: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture_bytes(path)).unwrap()
}

/// The `issue_comment.created` example with the given body, commenter and installation.
pub fn issue_comment(action: &str, body: &str, installation_id: Option<i64>) -> serde_json::Value {
    let mut payload = fixture(&format!("webhooks/issue_comment/{action}.payload.json"));
    payload["comment"]["body"] = body.into();
    if let Some(id) = installation_id {
        payload["installation"] =
            serde_json::json!({"id": id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="});
    }
    payload
}
