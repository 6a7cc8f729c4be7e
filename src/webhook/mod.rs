//! GitHub webhooks: signature checks, the event types, and the intake route.

pub mod body;
pub mod events;
pub mod intake;
pub mod signature;
