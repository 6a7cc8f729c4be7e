//! Ids and names that are easy to mix up when they are all integers or strings.

use sea_orm::DeriveValueType;

/// Whether `name` can be a GitHub login (a user or an organization): letters, digits and
/// hyphens, not starting with one, at most 39 characters.
pub fn is_login(name: &str) -> bool {
    (1..=39).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
}

/// Whether `name` can be a repository's `owner/name`: a login and a name of letters, digits,
/// `.`, `-` and `_` (not `.` or `..`). Anything else could steer the API paths it is put into.
pub fn is_repo_full_name(name: &str) -> bool {
    let Some((owner, repo)) = name.split_once('/') else {
        return false;
    };
    is_login(owner)
        && (1..=100).contains(&repo.len())
        && repo
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && repo != "."
        && repo != ".."
}

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

#[cfg(test)]
mod name_tests {
    use super::{is_login, is_repo_full_name};

    #[test]
    fn logins_are_checked() {
        assert!(is_login("octo-org"));
        assert!(!is_login("-octo"));
        assert!(!is_login("a/b"));
        assert!(!is_login(""));
        assert!(!is_login(&"a".repeat(40)));
    }

    #[test]
    fn repository_names_are_checked() {
        for good in ["octo-org/widgets", "a/b.c_d-e", "o/.github"] {
            assert!(is_repo_full_name(good), "{good}");
        }
        for bad in [
            "a/../../app/installation",
            "widgets",
            "a/b/c",
            "a/..",
            "a/.",
            "/b",
            "a/",
            "a b/c",
            "a/b?x=1",
            "a/b%2F",
        ] {
            assert!(!is_repo_full_name(bad), "{bad}");
        }
    }
}
