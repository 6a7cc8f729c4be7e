//! The task's one status comment on its issue: posted when the task is announced, then always
//! rendered from the store (state, note, pull request, rounds), so whoever edits it last shows what
//! the store says.

use tracing::warn;

use super::Lifecycle;
use crate::domain::{BlockedEgress, TaskId};
use crate::entities::task;
use crate::github::GitHubError;
use crate::store::{rounds, tasks};
use crate::texts::{TaskView, comments};

/// Edits made at most to bring the comment in line while the task keeps moving.
const MAX_EDITS: usize = 5;

/// Why a task's status comment could not be posted.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error("remembering the status comment failed: {0}")]
    Store(#[from] sea_orm::DbErr),
}

impl Lifecycle {
    /// Post the task's status comment on its issue, unless it has one, and bring it up to date
    /// (a worker may have moved the task on, even finished it, before the comment existed).
    pub async fn announce(&self, task: &task::Model) -> Result<(), AnnounceError> {
        let Some(github) = self.identity.github() else {
            return Ok(());
        };
        if task.status_comment_id.is_some() {
            return Ok(());
        }
        let body = self.render(task).await;
        let comment = github
            .create_comment(&task.repo(), task.issue_number, &body)
            .await?;
        tasks::set_status_comment(&self.db, task.id, comment.id).await?;
        self.converge_from(task.id, Some(body)).await;
        Ok(())
    }

    /// Edit the status comment until it shows what the store says (each edit may race another
    /// actor's, so it is checked again after each).
    pub(super) async fn converge_status_comment(&self, task_id: TaskId) {
        self.converge_from(task_id, None).await;
    }

    async fn converge_from(&self, task_id: TaskId, mut shown: Option<String>) {
        let Some(github) = self.identity.github() else {
            return;
        };
        for _ in 0..MAX_EDITS {
            let task = match tasks::get(&self.db, task_id).await {
                Ok(Some(task)) => task,
                Ok(None) => return,
                Err(e) => {
                    warn!(%task_id, error = %e, "reading the task for its status comment failed");
                    return;
                }
            };
            // Not posted yet: whoever posts it brings it up to date.
            let Some(comment_id) = task.status_comment_id else {
                return;
            };
            let body = self.render(&task).await;
            if shown.as_deref() == Some(body.as_str()) {
                return;
            }
            if let Err(e) = github.update_comment(&task.repo(), comment_id, &body).await {
                warn!(%task_id, error = %e, "editing the status comment failed");
                return;
            }
            shown = Some(body);
        }
    }

    /// The status comment for the task as stored.
    async fn render(&self, task: &task::Model) -> String {
        let rounds = rounds::list(&self.db, task.id).await.unwrap_or_else(|e| {
            warn!(task_id = %task.id, error = %e, "reading the task's rounds failed");
            Vec::new()
        });
        let max_rounds = crate::repo_config::settings_of(task, &self.config)
            .max_rounds
            .value;
        let rounds = comments::rounds_section(&rounds, max_rounds);
        let pr_url = task.pull_number().map(|n| {
            format!(
                "[#{n}]({}/{}/pull/{n})",
                self.config.web_url(),
                task.repo_full_name
            )
        });
        let blocked =
            comments::blocked_section(&BlockedEgress::from_stored(task.egress_blocked.as_deref()));
        comments::status_comment(&TaskView {
            pr_url: pr_url.as_deref(),
            note: task.status_note.as_deref(),
            rounds: rounds.as_deref(),
            blocked: blocked.as_deref(),
            ..TaskView::of(task, &self.config.public_url)
        })
    }
}
