//! A task is born: from an `/amp` comment or from the admin API, the same way.

use sea_orm::DbErr;
use tracing::info;

use super::Lifecycle;
use crate::domain::RepoRef;
use crate::entities::task;
use crate::store::tasks::{self, NewTask};

/// What a task is asked for with.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub repo: RepoRef,
    pub clone_url: String,
    pub default_branch: String,
    pub issue_number: i64,
    pub is_pull_request: bool,
    pub issue_title: String,
    pub issue_body: String,
    pub requester_login: String,
    /// 0 when not known (a requester named through the admin API).
    pub requester_id: i64,
    /// The comment that asked (0 for the admin API).
    pub comment_id: i64,
    /// The webhook delivery that asked; the same delivery handled again finds its task.
    pub delivery_id: Option<String>,
    pub prompt: String,
    /// The repository's `.github/amp.toml`, read and found valid when the task was asked for.
    pub repo_config: Option<String>,
}

/// What asking for a task came to.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new task, queued.
    New(task::Model),
    /// The task this same delivery created before (it is being handled a second time).
    Again(task::Model),
    /// A task is still active on the issue; nothing was created.
    Busy(task::Model),
}

impl Lifecycle {
    /// Queue a task, unless one is still active on the same issue.
    pub async fn create_task(&self, request: TaskRequest) -> Result<Created, DbErr> {
        if let Some(delivery_id) = &request.delivery_id
            && let Some(task) = tasks::get_by_delivery(&self.db, delivery_id).await?
        {
            return Ok(Created::Again(task));
        }
        if let Some(active) =
            tasks::active_for_issue(&self.db, request.repo.repo_id, request.issue_number).await?
        {
            info!(task_id = %active.id, "a task is already active on this issue");
            return Ok(Created::Busy(active));
        }
        let delivery_id = request.delivery_id.clone();
        let new = NewTask {
            installation_id: request.repo.installation_id,
            repo_id: request.repo.repo_id,
            repo_full_name: request.repo.full_name,
            clone_url: request.clone_url,
            default_branch: request.default_branch,
            issue_number: request.issue_number,
            is_pull_request: request.is_pull_request,
            issue_title: request.issue_title,
            issue_body: request.issue_body,
            requester_login: request.requester_login,
            requester_id: request.requester_id,
            comment_id: request.comment_id,
            delivery_id: request.delivery_id,
            prompt: request.prompt,
            repo_config: request.repo_config,
        };
        match tasks::create(&self.db, new).await? {
            Some((task, event)) => {
                info!(task_id = %task.id, public_id = %task.public_id, repo = %task.repo_full_name, issue = task.issue_number, "task queued");
                self.publish(&event);
                self.wakeups.worker.notify_one();
                Ok(Created::New(task))
            }
            // Created meanwhile by the same delivery, handled twice at once.
            None => {
                let delivery_id = delivery_id.unwrap_or_default();
                tasks::get_by_delivery(&self.db, &delivery_id)
                    .await?
                    .map(Created::Again)
                    .ok_or_else(|| DbErr::RecordNotFound(format!("the task of {delivery_id}")))
            }
        }
    }
}
