//! A turn of the agent after a task's first: a CI failure fed back (`ci`), a follow-up prompt on
//! the task's pull request (`follow_up`), or `/amp retry` after the CI loop gave up (`retry`).
//! The CI loop also records the failure it gave up on (`outcome = "gave_up"`), so a retry has the
//! report to start from.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "task_rounds")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub task_id: i64,
    /// The task's CI round number for `ci` rounds; 0 for the others.
    pub round: i32,
    pub kind: String,
    /// The commit whose checks failed.
    pub head_sha: Option<String>,
    /// JSON: `[{"name", "conclusion"}]`.
    pub failed_checks: String,
    /// Failed check names and first error lines: the same twice in a row means no progress.
    pub fingerprint: Option<String>,
    /// What the agent is (or would be) given.
    pub prompt: String,
    pub requested_by: Option<String>,
    /// `pushed`, `no_changes`, `failed`, `gave_up`; `None` while pending.
    pub outcome: Option<String>,
    /// The commit the round pushed.
    pub result_sha: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::task::Entity",
        from = "Column::TaskId",
        to = "super::task::Column::Id",
        on_delete = "Cascade"
    )]
    Task,
}

impl Related<super::task::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Task.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// What the round was, in words; `code` marks up a check's name (Markdown, or nothing).
    pub fn label(&self, code: impl Fn(&str) -> String) -> String {
        let checks: Vec<String> =
            serde_json::from_str::<Vec<serde_json::Value>>(&self.failed_checks)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| {
                    Some(format!(
                        "{} ({})",
                        code(c["name"].as_str()?),
                        c["conclusion"].as_str().unwrap_or("failed")
                    ))
                })
                .collect();
        match self.kind.as_str() {
            "ci" => format!("CI round {}: {} failed", self.round, checks.join(", ")),
            "retry" => format!("Retried with {}", code("/amp retry")),
            _ => format!(
                "Follow-up from @{}",
                self.requested_by.as_deref().unwrap_or("someone")
            ),
        }
    }

    /// How the round came out, in words.
    pub fn result(&self) -> String {
        match (self.outcome.as_deref(), &self.result_sha) {
            (Some("pushed"), Some(sha)) => format!("pushed {}", &sha[..sha.len().min(7)]),
            (Some("no_changes"), _) => "Amp made no change".into(),
            (Some("gave_up"), _) => "not sent to Amp: the loop gave up".into(),
            (Some("superseded"), _) => "replaced by a later request".into(),
            (Some(other), _) => other.replace('_', " "),
            (None, _) => "Amp is working on it".into(),
        }
    }
}
