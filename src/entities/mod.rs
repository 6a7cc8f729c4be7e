//! sea-orm entities, one module per table (see `migrations/` for the schema and its reasons).

pub mod command_seen;
pub mod delivery;
pub mod delivery_payload;
pub mod github_app;
pub mod installation;
pub mod refusal_reply;
pub mod setup_state;
pub mod snapshot;
pub mod task;
pub mod task_event;
pub mod task_request;
pub mod task_round;
