//! Why a task could not go on, split by who the words are for.
//!
//! A person who asked for a task sees a failure in a public comment and on the task page. What they
//! are shown is either written for them (they can act on it) or, for a fault on the service's side,
//! one short line saying what failed; the raw detail (hosts, addresses, database errors)
//! goes to the service's logs only. See [`crate::texts::failures`] for the words.

/// A failure, worded for whom it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Written for the person who asked: what happened and what they can do. Shown as it is.
    User(String),
    /// Something failed that the person cannot act on. `summary` says what in a few words
    /// ("cloning the repository failed", "the Docker engine cannot be reached"); `detail` is for
    /// the logs only.
    Internal { summary: String, detail: String },
}

impl Failure {
    pub fn user(text: impl Into<String>) -> Failure {
        Failure::User(text.into())
    }

    pub fn internal(summary: impl Into<String>, detail: impl std::fmt::Display) -> Failure {
        Failure::Internal {
            summary: summary.into(),
            detail: detail.to_string(),
        }
    }
}
