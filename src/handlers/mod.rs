//! One handler module per kind of webhook.

pub mod comment;
pub mod installation;
pub mod pull_request;
