//! One handler module per kind of webhook.

pub mod check_suite;
pub mod comment;
pub mod installation;
