//! The service's own webhook event type.
//!
//! Only the fields the service uses are modelled, so GitHub adding fields never breaks parsing, while
//! a payload missing a field the service needs fails loudly with the JSON path that was wrong
//! (`serde_path_to_error`), e.g. `comment.id: missing field`.

use serde::Deserialize;

use crate::command::{self, Command};
use crate::domain::RepoRef;

/// A webhook the service acts on, parsed from its JSON body.
#[derive(Debug, Clone)]
pub enum WebhookEvent {
    Ping,
    IssueComment(IssueCommentEvent),
    CheckSuite(CheckSuiteEvent),
    Installation(InstallationEvent),
    InstallationRepositories(InstallationRepositoriesEvent),
    PullRequest(PullRequestEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {event} payload at `{path}`: {message}")]
pub struct PayloadError {
    pub event: String,
    /// The JSON path of the offending value (`.` for the document itself).
    pub path: String,
    pub message: String,
}

/// Parse `body` as event `event`. `Ok(None)` means the service does not handle that event at all.
pub fn parse(event: &str, body: &[u8]) -> Result<Option<WebhookEvent>, PayloadError> {
    fn de<T: for<'de> Deserialize<'de>>(event: &str, body: &[u8]) -> Result<T, PayloadError> {
        // Path tracking costs time on every field; only a payload that fails pays for it.
        if let Ok(value) = serde_json::from_slice(body) {
            return Ok(value);
        }
        let mut json = serde_json::Deserializer::from_slice(body);
        let value: T = serde_path_to_error::deserialize(&mut json).map_err(|e| PayloadError {
            event: event.to_string(),
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
        json.end().map_err(|e| PayloadError {
            event: event.to_string(),
            path: ".".into(),
            message: e.to_string(),
        })?;
        Ok(value)
    }
    Ok(Some(match event {
        "ping" => {
            de::<serde::de::IgnoredAny>(event, body)?;
            WebhookEvent::Ping
        }
        "issue_comment" => WebhookEvent::IssueComment(de(event, body)?),
        "check_suite" => WebhookEvent::CheckSuite(de(event, body)?),
        "installation" => WebhookEvent::Installation(de(event, body)?),
        "installation_repositories" => WebhookEvent::InstallationRepositories(de(event, body)?),
        "pull_request" => WebhookEvent::PullRequest(de(event, body)?),
        _ => return Ok(None),
    }))
}

impl WebhookEvent {
    pub fn action(&self) -> Option<&str> {
        match self {
            WebhookEvent::Ping => None,
            WebhookEvent::IssueComment(e) => Some(e.action.as_str()),
            WebhookEvent::CheckSuite(e) => Some(e.action.as_str()),
            WebhookEvent::Installation(e) => Some(e.action.as_str()),
            WebhookEvent::InstallationRepositories(e) => Some(e.action.as_str()),
            WebhookEvent::PullRequest(e) => Some(e.action.as_str()),
        }
    }

    pub fn installation_id(&self) -> Option<i64> {
        match self {
            WebhookEvent::Ping => None,
            WebhookEvent::IssueComment(e) => e.installation.as_ref().map(|i| i.id),
            WebhookEvent::CheckSuite(e) => e.installation.as_ref().map(|i| i.id),
            WebhookEvent::Installation(e) => Some(e.installation.id),
            WebhookEvent::InstallationRepositories(e) => Some(e.installation.id),
            WebhookEvent::PullRequest(e) => e.installation.as_ref().map(|i| i.id),
        }
    }

    /// Whether the service does something with this event and action. Others are acknowledged
    /// and recorded as ignored, without keeping their body.
    pub fn is_actionable(&self) -> bool {
        match self {
            WebhookEvent::Ping => false,
            // Most comments are not commands; those need no processing and their bodies are
            // not kept.
            WebhookEvent::IssueComment(e) => !e.commands().is_empty(),
            WebhookEvent::CheckSuite(e) => e.action.is(CheckSuiteAction::Completed),
            WebhookEvent::Installation(_) | WebhookEvent::InstallationRepositories(_) => true,
            // A closed pull request may end the task working on it.
            WebhookEvent::PullRequest(e) => e.action.is(PullRequestAction::Closed),
        }
    }
}

/// An event's `action`: one the service knows (`T`), or any other, kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<T> {
    Known(T),
    Other(String),
}

/// The actions of one event the service tells apart.
pub trait KnownActions: Sized + Copy {
    fn parse(name: &str) -> Option<Self>;
    fn as_str(self) -> &'static str;
}

impl<T: KnownActions + PartialEq> Action<T> {
    pub fn is(&self, action: T) -> bool {
        matches!(self, Action::Known(known) if *known == action)
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::Known(known) => known.as_str(),
            Action::Other(name) => name,
        }
    }
}

impl<T: KnownActions + PartialEq> std::fmt::Display for Action<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de, T: KnownActions> Deserialize<'de> for Action<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match T::parse(&name) {
            Some(known) => Action::Known(known),
            None => Action::Other(name),
        })
    }
}

/// An enum of the actions of one event, with their names on the wire.
macro_rules! known_actions {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($variant),*
        }

        impl KnownActions for $name {
            fn parse(name: &str) -> Option<Self> {
                match name {
                    $($text => Some(Self::$variant),)*
                    _ => None,
                }
            }

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),*
                }
            }
        }
    };
}

known_actions!(
    /// `issue_comment` actions.
    CommentAction { Created = "created", Edited = "edited", Deleted = "deleted" }
);
known_actions!(
    /// `check_suite` actions.
    CheckSuiteAction { Completed = "completed", Requested = "requested", Rerequested = "rerequested" }
);
known_actions!(
    /// `installation` actions.
    InstallationAction {
        Created = "created",
        Deleted = "deleted",
        Suspend = "suspend",
        Unsuspend = "unsuspend",
        NewPermissionsAccepted = "new_permissions_accepted",
    }
);
known_actions!(
    /// `pull_request` actions the service tells apart (there are many more).
    PullRequestAction { Opened = "opened", Closed = "closed", Reopened = "reopened", Synchronize = "synchronize" }
);
known_actions!(
    /// `installation_repositories` actions.
    RepositoriesAction { Added = "added", Removed = "removed" }
);

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
    pub id: i64,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

impl User {
    /// Bots never trigger work: GitHub marks them `type: Bot` and `login` ends in `[bot]`.
    pub fn is_bot(&self) -> bool {
        self.kind == "Bot" || self.login.ends_with("[bot]")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstallationRef {
    pub id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub id: i64,
    pub name: String,
    pub full_name: String,
    pub owner: User,
    #[serde(default)]
    pub private: bool,
    pub clone_url: String,
    /// `https://github.com/owner/name` (or the GitHub Enterprise equivalent).
    #[serde(default)]
    pub html_url: Option<String>,
    pub default_branch: String,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub fork: bool,
}

impl Repository {
    /// The repository as GitHub calls name it, under the installation that sent the webhook.
    pub fn repo_ref(&self, installation_id: i64) -> RepoRef {
        RepoRef {
            installation_id,
            repo_id: self.id,
            full_name: self.full_name.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AppRef {
    pub id: i64,
    #[serde(default)]
    pub slug: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct IssueCommentEvent {
    pub action: Action<CommentAction>,
    #[serde(default)]
    pub changes: Option<CommentChanges>,
    pub issue: Issue,
    pub comment: Comment,
    pub repository: Repository,
    pub sender: User,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommentChanges {
    #[serde(default)]
    pub body: Option<ChangedFrom>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChangedFrom {
    pub from: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Issue {
    pub number: i64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub locked: bool,
    pub user: User,
    /// Present (with URLs) when the "issue" is a pull request.
    #[serde(default)]
    pub pull_request: Option<serde_json::Value>,
}

impl Issue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Comment {
    pub id: i64,
    pub body: String,
    pub user: User,
    pub html_url: String,
    /// Set when an App posted the comment (this one included).
    #[serde(default)]
    pub performed_via_github_app: Option<AppRef>,
    /// Changes with every edit; part of what makes one version of a comment one command.
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl IssueCommentEvent {
    /// The comment body before an edit, when GitHub reports it.
    pub fn previous_body(&self) -> Option<&str> {
        self.changes
            .as_ref()
            .and_then(|c| c.body.as_ref())
            .map(|b| b.from.as_str())
    }

    /// What identifies this version of the comment, from what GitHub signed: the repository,
    /// issue, comment id, action, `updated_at` and body. The same comment delivered again (under
    /// any delivery id) has the same key; an edit has a new one.
    pub fn command_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for part in [
            self.repository.id.to_string().as_str(),
            self.issue.number.to_string().as_str(),
            self.comment.id.to_string().as_str(),
            self.action.as_str(),
            self.comment.updated_at.as_deref().unwrap_or(""),
            self.comment.body.as_str(),
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        hex::encode(digest.finalize())
    }

    /// The `/amp` commands this event brings: all of a new comment's, and only those an edit
    /// added (fixing a typo must not run a prompt again).
    pub fn commands(&self) -> Vec<Command> {
        match self.action {
            Action::Known(CommentAction::Created) => command::parse(&self.comment.body),
            Action::Known(CommentAction::Edited) => {
                command::new_commands(self.previous_body().unwrap_or(""), &self.comment.body)
            }
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuiteEvent {
    pub action: Action<CheckSuiteAction>,
    pub check_suite: CheckSuite,
    pub repository: Repository,
    pub sender: User,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuite {
    pub id: i64,
    #[serde(default)]
    pub head_branch: Option<String>,
    pub head_sha: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub app: Option<AppRef>,
    #[serde(default)]
    pub pull_requests: Vec<PullRequestRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestRef {
    pub number: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    pub action: Action<PullRequestAction>,
    pub number: i64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    pub sender: User,
    #[serde(default)]
    pub installation: Option<InstallationRef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub number: i64,
    /// `open` or `closed`.
    pub state: String,
    /// Whether a `closed` pull request was merged.
    #[serde(default)]
    pub merged: Option<bool>,
    pub html_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstallationEvent {
    pub action: Action<InstallationAction>,
    pub installation: Installation,
    #[serde(default)]
    pub repositories: Option<Vec<RepositoryRef>>,
    pub sender: User,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: i64,
    pub account: User,
    #[serde(default)]
    pub repository_selection: Option<String>,
    #[serde(default)]
    pub app_id: Option<i64>,
    #[serde(default)]
    pub suspended_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RepositoryRef {
    pub id: i64,
    pub name: String,
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InstallationRepositoriesEvent {
    pub action: Action<RepositoriesAction>,
    pub installation: Installation,
    #[serde(default)]
    pub repository_selection: Option<String>,
    #[serde(default)]
    pub repositories_added: Vec<RepositoryRef>,
    #[serde(default)]
    pub repositories_removed: Vec<RepositoryRef>,
    pub sender: User,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_events_are_not_parsed() {
        assert!(parse("push", b"not even json").unwrap().is_none());
        assert!(parse("workflow_job", b"{}").unwrap().is_none());
    }

    #[test]
    fn errors_name_the_json_path() {
        let err = parse(
            "issue_comment",
            br#"{"action":"created","issue":{"number":"seven"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "issue.number");
        assert!(err.message.contains("invalid type"), "{err}");

        let err = parse("check_suite", b"{\"action\":").unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");

        let err = parse("ping", b"{} trailing").unwrap_err();
        assert_eq!(err.path, ".");
    }

    #[test]
    fn bots_are_recognised() {
        let bot = User {
            login: "amp-orchestrator[bot]".into(),
            id: 1,
            kind: "Bot".into(),
        };
        assert!(bot.is_bot());
        let person = User {
            login: "octocat".into(),
            id: 2,
            kind: "User".into(),
        };
        assert!(!person.is_bot());
    }
}
