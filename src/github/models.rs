//! GitHub's answers, read into narrow structs of only the fields the service uses. A field is
//! optional wherever GitHub's published schema lets it be absent or null, and an enumeration is a
//! string, so a value GitHub adds later does not make an answer unreadable.

use crate::domain::Role;

/// The id of what GitHub answered with (an installation, a repository).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IdOnly {
    pub id: i64,
}

/// An installation as GitHub has it now (`GET /app/installations/{id}`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct InstallationNow {
    pub id: i64,
    /// Set while the installation is suspended.
    #[serde(default)]
    pub suspended_at: Option<String>,
}

/// A comment the App posted.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CommentRef {
    pub id: i64,
}

/// An installation token (`POST /app/installations/{id}/access_tokens`).
#[derive(serde::Deserialize)]
pub struct MintedToken {
    pub token: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The repositories the token is for, when it was asked for some.
    #[serde(default)]
    pub repositories: Vec<IdOnly>,
    /// What the token may do: `contents` → `write`, … (a value GitHub does not describe as a
    /// string is left out).
    #[serde(default, deserialize_with = "permission_levels")]
    pub permissions: std::collections::HashMap<String, String>,
}

/// What the service needs of a repository.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RepoDetails {
    pub clone_url: String,
    pub default_branch: String,
    #[serde(default)]
    pub archived: bool,
}

/// A file as GitHub's contents API gives it (a directory is a list instead, and does not parse).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RepoFile {
    #[serde(rename = "type")]
    pub kind: String,
    /// `base64`; `none` for a file over 1 MB, whose content is then left out.
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
}

impl RepoFile {
    /// The file's bytes.
    pub fn decoded(&self) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        if self.kind != "file" {
            return Err(format!("it is a {}, not a file", self.kind));
        }
        match (self.encoding.as_deref(), &self.content) {
            (Some("base64"), Some(content)) => {
                // GitHub breaks the base64 into lines.
                let joined: String = content
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .map_err(|e| format!("its content is not base64: {e}"))
            }
            (Some("none"), _) => {
                Err("it is larger than the 1 MB GitHub's contents API gives".into())
            }
            (encoding, _) => Err(format!(
                "its content comes in an unknown encoding {encoding:?}"
            )),
        }
    }
}

/// A user's permission on a repository.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CollaboratorPermission {
    /// One of the base roles `admin`, `write`, `read` (GitHub folds `maintain` into `write` and
    /// `triage` into `read` here), or `none`.
    #[serde(default)]
    pub permission: Option<String>,
    /// The assigned role's name: a base role (`admin`, `maintain`, `write`, `triage`, `read`)
    /// or an organization's custom role (`ci-manager`).
    #[serde(default)]
    pub role_name: Option<String>,
}

impl CollaboratorPermission {
    /// The user's role: `role_name` when it is a base role (it tells `maintain` and `triage`
    /// apart), otherwise `permission`, the base role a custom role builds on.
    pub fn role(&self) -> Role {
        self.role_name
            .as_deref()
            .and_then(Role::base)
            .or_else(|| self.permission.as_deref().and_then(Role::base))
            .unwrap_or(Role::None)
    }
}

/// An issue (or a pull request seen as an issue).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IssueDetails {
    pub number: i64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde::de::IgnoredAny>,
}

/// A pull request.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PullDetails {
    pub number: i64,
    pub node_id: String,
    pub html_url: String,
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub merged: Option<bool>,
    /// Who merged it (a merge queue's merges included).
    #[serde(default)]
    pub merged_by: Option<Account>,
    pub head: PullHead,
    pub base: PullBase,
}

impl PullDetails {
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }
}

/// The head of a pull request: its branch, commit, and the repository that holds them (null
/// when that repository, a fork, was deleted).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PullHead {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
    #[serde(default)]
    pub repo: Option<RepoName>,
}

/// The base of a pull request.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PullBase {
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct RepoName {
    pub full_name: String,
}

/// A new App, as GitHub describes it after the manifest flow: its id and the credentials it
/// will never show again.
#[derive(Clone, serde::Deserialize)]
pub struct AppRegistration {
    pub id: u64,
    /// Optional in GitHub's schema; [`AppRegistration::slug`] falls back to the App's URL.
    #[serde(default, rename = "slug")]
    pub given_slug: Option<String>,
    pub name: String,
    #[serde(default)]
    pub owner: Option<Account>,
    pub html_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Null when the manifest asked for no webhook; this App's manifest always asks for one.
    pub webhook_secret: Option<String>,
    pub pem: String,
}

/// The account that owns an App.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Account {
    /// A user's or organization's login (an enterprise owner has none).
    #[serde(default)]
    pub login: Option<String>,
}

/// Never prints the credentials.
impl std::fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRegistration")
            .field("id", &self.id)
            .field("slug", &self.given_slug)
            .finish_non_exhaustive()
    }
}

impl AppRegistration {
    /// The App's slug (`https://github.com/apps/<slug>`): as GitHub gave it, or the last part of
    /// its URL.
    pub fn slug(&self) -> String {
        match &self.given_slug {
            Some(slug) if !slug.is_empty() => slug.clone(),
            _ => self
                .html_url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// One attempt at delivering a webhook, as GitHub lists them for the App.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HookDelivery {
    pub id: i64,
    /// The `X-GitHub-Delivery` of the delivery (the same for its redeliveries).
    pub guid: String,
    #[serde(default)]
    pub redelivery: bool,
    #[serde(default)]
    pub status_code: u16,
    #[serde(default)]
    pub event: String,
    /// When it was delivered (RFC 3339).
    #[serde(default)]
    pub delivered_at: Option<String>,
}

impl HookDelivery {
    pub fn delivered_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let at = self.delivered_at.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// The check suites of a commit.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckSuites {
    pub total_count: u64,
    pub check_suites: Vec<CheckSuite>,
}

/// A check suite, with what deciding on CI needs (octocrab's model leaves out its app).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckSuite {
    pub id: u64,
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub app: Option<AppRef>,
    /// Absent when GitHub does not say: not taken for "no runs".
    #[serde(default)]
    pub latest_check_runs_count: Option<u64>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AppRef {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub slug: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckRuns {
    pub total_count: u64,
    pub check_runs: Vec<CheckRun>,
}

/// A check run, with its status and app (octocrab's model leaves them out).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CheckRun {
    pub id: u64,
    pub name: String,
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub output: CheckRunOutput,
    #[serde(default)]
    pub app: Option<AppRef>,
    #[serde(default)]
    pub check_suite: Option<IdRef>,
    #[serde(default)]
    pub details_url: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CheckRunOutput {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub annotations_count: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct IdRef {
    pub id: u64,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CombinedStatus {
    #[serde(default)]
    pub total_count: u64,
    #[serde(default)]
    pub statuses: Vec<CommitStatus>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct CommitStatus {
    pub context: String,
    /// `error`, `failure`, `pending` or `success`.
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

/// A check run annotation (GitHub's `GET …/check-runs/{id}/annotations`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
pub struct Annotation {
    pub path: String,
    pub start_line: Option<u64>,
    pub end_line: Option<u64>,
    pub annotation_level: Option<String>,
    pub title: Option<String>,
    pub message: Option<String>,
    pub raw_details: Option<String>,
}

/// A token's permissions, keeping those whose level is a string.
fn permission_levels<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::collections::HashMap<String, String>, D::Error> {
    let raw: Option<std::collections::HashMap<String, serde_json::Value>> =
        serde::Deserialize::deserialize(deserializer)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, level)| level.as_str().map(|l| (name, l.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn answers_with_what_github_s_schema_lets_be_absent_or_null() {
        let issue: IssueDetails = read(json!({
            "number": 7, "title": "Flag", "body": null, "user": null, "labels": [], "state": "open"
        }));
        assert_eq!(
            (issue.number, issue.body, issue.pull_request.is_none()),
            (7, None, true)
        );

        let pull: PullDetails = read(json!({
            "number": 9, "node_id": "PR_x", "html_url": "https://github.com/o/r/pull/9",
            "title": "T", "state": "closed", "user": null,
            "head": {"ref": "patch-1", "sha": "abc", "repo": null},
            "base": {"ref": "main", "sha": "def"}
        }));
        assert!(!pull.is_open());
        assert!(pull.head.repo.is_none() && pull.draft.is_none() && pull.merged.is_none());

        let app: AppRegistration = read(json!({
            "id": 1, "name": "amp", "owner": {"slug": "enterprise"},
            "html_url": "https://github.com/apps/amp-orchestrator-7", "client_id": "c",
            "client_secret": "s", "webhook_secret": null, "pem": "k"
        }));
        assert_eq!(app.slug(), "amp-orchestrator-7");
        assert!(app.owner.unwrap().login.is_none());

        let token: MintedToken = read(json!({
            "token": "ghs_x", "expires_at": "2026-01-01T00:00:00Z",
            "permissions": {"contents": "write", "future_thing": {"nested": true}}
        }));
        assert_eq!(token.permissions.len(), 1);

        let role: CollaboratorPermission =
            read(json!({"permission": "write", "role_name": "ci-manager", "user": null}));
        assert_eq!(role.role(), Role::Write);
        let role: CollaboratorPermission =
            read(json!({"permission": "write", "role_name": "maintain", "user": null}));
        assert_eq!(role.role(), Role::Maintain);

        let suite: CheckSuite = read(json!({
            "id": 3, "head_sha": "abc", "status": "queued", "conclusion": null, "app": null
        }));
        assert_eq!(suite.latest_check_runs_count, None);

        let delivery: HookDelivery = read(json!({"id": 1, "guid": "g"}));
        assert!(delivery.delivered_at().is_none());
    }

    #[test]
    fn a_file_from_the_contents_api_is_decoded() {
        let file: RepoFile = serde_json::from_value(json!({
            "type": "file", "encoding": "base64", "size": 12,
            "content": "aW1hZ2UgPSAi\ncnVzdCIK\n",
        }))
        .unwrap();
        assert_eq!(file.decoded().unwrap(), b"image = \"rust\"\n");
        let large: RepoFile = serde_json::from_value(json!({
            "type": "file", "encoding": "none", "size": 2_000_000, "content": "",
        }))
        .unwrap();
        assert!(large.decoded().unwrap_err().contains("1 MB"));
        let link: RepoFile =
            serde_json::from_value(json!({"type": "symlink", "target": "x"})).unwrap();
        assert!(link.decoded().is_err());
    }
}
