//! The task domain as types: states, rounds, event payloads, roles, ids and failures. Nothing here
//! does I/O; everything else speaks in these types.

pub mod egress;
pub mod event;
pub mod failure;
pub mod ids;
pub mod role;
pub mod round;
pub mod state;

pub use egress::BlockedEgress;
pub use event::{AgentLine, EventKind, EventPayload, LogLevel, LogLine, StateChange};
pub use failure::Failure;
pub use ids::{CommitSha, RepoRef, TaskId, ThreadId};
pub use role::Role;
pub use round::{RoundKind, RoundOutcome};
pub use state::TaskState;
