//! amp-orchestrator: a GitHub App that runs the Amp coding agent in Docker when someone comments
//! `/amp <prompt>` on an issue, and drives the resulting pull request to green CI.

pub mod agent;
pub mod app;
pub mod bus;
pub mod ci;
pub mod command;
pub mod config;
pub mod db;
pub mod dispatch;
pub mod docker;
pub mod entities;
pub mod github;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod inbox;
pub mod metrics;
pub mod notify;
pub mod pages;
pub mod recovery;
pub mod redact;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod webhook;
pub mod worker;
