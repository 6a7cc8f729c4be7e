//! Ids and names that are easy to mix up when they are all integers or strings.

use sea_orm::DeriveValueType;

/// A task's row id (never shown: the public id is the task's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, DeriveValueType)]
pub struct TaskId(pub i64);

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A git commit's full SHA.
#[derive(Debug, Clone, PartialEq, Eq, Hash, DeriveValueType, serde::Serialize)]
#[serde(transparent)]
pub struct CommitSha(pub String);

impl CommitSha {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first seven characters, as people quote commits.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(7)]
    }
}

impl std::fmt::Display for CommitSha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Amp thread (`T-<uuid>`): follow-up turns continue it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, DeriveValueType, serde::Serialize)]
#[serde(transparent)]
pub struct ThreadId(pub String);

impl ThreadId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ThreadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The repository a GitHub call is for, under the installation that gave access to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub installation_id: i64,
    pub repo_id: i64,
    /// `owner/name`.
    pub full_name: String,
}

impl RepoRef {
    /// The owner's login (the part before the slash).
    pub fn owner(&self) -> &str {
        self.full_name.split('/').next().unwrap_or_default()
    }
}
