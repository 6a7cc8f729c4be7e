//! A task: one `/amp` prompt, driven through the states in [`TaskState`].

use sea_orm::entity::prelude::*;

use crate::domain::{CommitSha, RepoRef, TaskId, TaskState, ThreadId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tasks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: TaskId,
    /// The capability in status links: at least 128 random bits, never derived from `id`.
    #[sea_orm(unique)]
    pub public_id: String,
    pub installation_id: i64,
    pub repo_id: i64,
    pub repo_full_name: String,
    pub clone_url: String,
    pub default_branch: String,
    pub issue_number: i64,
    pub is_pull_request: bool,
    pub issue_title: String,
    pub issue_body: String,
    pub requester_login: String,
    pub requester_id: i64,
    pub comment_id: i64,
    pub delivery_id: Option<String>,
    pub prompt: String,
    pub state: TaskState,
    /// The sequence number of the newest event in `task_events` (0 = none yet).
    pub last_seq: i64,
    pub status_comment_id: Option<i64>,
    pub branch: Option<String>,
    pub pr_number: Option<i64>,
    pub head_sha: Option<CommitSha>,
    pub thread_id: Option<ThreadId>,
    pub ci_round: i32,
    pub error_message: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    /// When a `/amp stop` asked the replica running the task to stop it.
    pub stop_requested_at: Option<i64>,
    /// Why the stop was asked for, for the status comment (none: `/amp stop`'s own words).
    pub stop_note: Option<String>,
    /// When the task last started waiting for CI.
    pub awaiting_since: Option<i64>,
    /// The delivery whose `/amp retry` or follow-up last queued the task again.
    pub command_delivery_id: Option<String>,
    /// What the status comment says under the state (see the `status_note` migration).
    pub status_note: Option<String>,
    /// The connections the sandbox refused ([`crate::domain::BlockedEgress`] as JSON; see the
    /// `egress_blocked` migration).
    pub egress_blocked: Option<String>,
    /// The repository's `.github/amp.toml` on its default branch when the task was asked for
    /// (`None`: it had none); see the `repo_config` migration.
    pub repo_config: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::task_event::Entity")]
    Events,
}

impl Related<super::task_event::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Events.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// The repository the task works on.
    pub fn repo(&self) -> RepoRef {
        RepoRef {
            installation_id: self.installation_id,
            repo_id: self.repo_id,
            full_name: self.repo_full_name.clone(),
        }
    }

    /// The pull request the task works on: the one commented on, or the one it opened.
    pub fn pull_number(&self) -> Option<i64> {
        if self.is_pull_request {
            Some(self.issue_number)
        } else {
            self.pr_number
        }
    }
}
