//! Where a task's work goes: a new branch from the default branch for an issue, or the head branch
//! of the pull request it works on, which must be in the repository itself (the App cannot push
//! to forks).

use super::job::github_failure;
use crate::domain::Failure;
use crate::entities::task;
use crate::github::GitHub;
use crate::texts::failures;

/// Where a task's work goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The branch the agent works on and the service pushes.
    pub branch: String,
    /// The branch to clone.
    pub clone_branch: String,
    /// On a pull request: its number (no new pull request is opened).
    pub pull: Option<i64>,
}

pub async fn resolve(github: &GitHub, task: &task::Model) -> Result<Target, Failure> {
    let Some(number) = task.pull_number() else {
        return Ok(Target {
            branch: task.branch.clone().unwrap_or_else(|| {
                branch_name(task.issue_number, &task.issue_title, &task.public_id)
            }),
            clone_branch: task.default_branch.clone(),
            pull: None,
        });
    };
    let pull = github
        .get_pull(&task.repo(), number)
        .await
        .map_err(|e| github_failure(&format!("reading pull request #{number} failed"), &e))?;
    if !pull.is_open() {
        return Err(failures::pull_closed(number));
    }
    let head_repo = pull.head.repo.as_ref().map(|r| r.full_name.clone());
    if head_repo.as_deref() != Some(task.repo_full_name.as_str()) {
        return Err(failures::pull_from_fork(
            number,
            head_repo.as_deref(),
            &task.repo_full_name,
        ));
    }
    Ok(Target {
        branch: pull.head.branch.clone(),
        clone_branch: pull.head.branch.clone(),
        pull: Some(number),
    })
}

/// A branch name from the issue: `amp/<issue>-<slug of the title>-<tag of the task>`.
pub fn branch_name(issue_number: i64, title: &str, public_id: &str) -> String {
    let mut slug = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_matches('-');
    let tag: String = public_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(6)
        .collect::<String>()
        .to_lowercase();
    if slug.is_empty() {
        format!("amp/{issue_number}-{tag}")
    } else {
        format!("amp/{issue_number}-{slug}-{tag}")
    }
}

#[cfg(test)]
mod tests {
    use super::branch_name;

    #[test]
    fn branch_names() {
        assert_eq!(
            branch_name(21, "Add a --json flag!", "q5bV8m1dXJ0tC2hRk9LwZa3Y"),
            "amp/21-add-a-json-flag-q5bv8m"
        );
        assert_eq!(branch_name(3, "🚀", "AbC-_dEf123"), "amp/3-abcdef");
        let long = branch_name(4, &"word ".repeat(30), "abcdef");
        assert!(long.len() < 60, "{long}");
    }
}
