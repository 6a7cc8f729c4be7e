//! Where a repository's configuration comes from: its file on the default branch, read through
//! GitHub when a command arrives, and kept on the task it starts (so a task runs with the rules
//! it was started under, whatever its own branch changes).

use super::{Bounds, Effective, PATH, Problem, RepoConfig, effective, parse};
use crate::entities::task;
use crate::github::{GitHub, GitHubError, RepoRef};

/// The repository's file as found on its default branch.
#[derive(Debug, Clone)]
pub enum Found {
    /// There is no `.github/amp.toml`.
    Absent,
    /// A valid file: its text (kept on the task) and what it says.
    Valid { text: String, config: RepoConfig },
    /// A file with problems: no task starts until it is fixed.
    Invalid(Vec<Problem>),
}

impl Found {
    /// The file's text as a task keeps it (`None`: there is none, or it is invalid).
    pub fn text(&self) -> Option<&str> {
        match self {
            Found::Valid { text, .. } => Some(text),
            Found::Absent | Found::Invalid(_) => None,
        }
    }

    /// What tasks run with: the file's values over the service's defaults (the defaults alone
    /// for an invalid file, which starts nothing).
    pub fn effective(&self, bounds: &Bounds) -> Effective {
        match self {
            Found::Valid { config, .. } => effective(Some(config), bounds),
            Found::Absent | Found::Invalid(_) => effective(None, bounds),
        }
    }
}

/// Read and check the file on `branch` (the repository's default branch). A file that is not
/// UTF-8 is a problem with the file; GitHub failing to answer is an error.
pub async fn read(
    github: &GitHub,
    repo: &RepoRef,
    branch: &str,
    bounds: &Bounds,
) -> Result<Found, GitHubError> {
    let Some(bytes) = github.file_at(repo, PATH, branch).await? else {
        return Ok(Found::Absent);
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Ok(Found::Invalid(vec![Problem::at(
            "",
            0,
            "the file is not UTF-8 text".to_string(),
        )]));
    };
    Ok(match parse(&text, bounds) {
        Ok(config) => Found::Valid { text, config },
        Err(problems) => Found::Invalid(problems),
    })
}

/// What `task` runs with, for the parts of the service that read one setting (the CI loop, the
/// status comment): as [`of_task`], with the service's defaults where the file no longer fits
/// today's bounds (the task's next run then ends saying why).
pub fn settings_of(task: &task::Model, config: &crate::config::Config) -> Effective {
    let bounds = Bounds::from_config(config);
    of_task(task, &bounds).unwrap_or_else(|_| effective(None, &bounds))
}

/// What `task` runs with: the file it was started with, within today's `bounds` (an operator who
/// lowered a bound since makes the file's value a problem, named as such).
pub fn of_task(task: &task::Model, bounds: &Bounds) -> Result<Effective, Vec<Problem>> {
    match task.repo_config.as_deref() {
        None => Ok(effective(None, bounds)),
        Some(text) => parse(text, bounds).map(|config| effective(Some(&config), bounds)),
    }
}
