//! Every text a person (or the agent) reads, each built by a pure function and snapshot-tested,
//! so wording changes show up in review: comments on GitHub, what the agent is told, the commit
//! and pull request the App writes, the notes a status comment shows, and how failures are
//! explained.

pub mod comments;
pub mod failures;
pub mod notes;
pub mod prompts;
pub mod refusals;
pub mod repo_config;

pub use comments::TaskView;
