//! amp-orchestrator: a GitHub App that runs the Amp coding agent in Docker when someone comments
//! `/amp <prompt>` on an issue, and drives the resulting pull request to green CI.
//!
//! Data flows one way: webhook intake → the durable inbox → dispatch → the handlers and the CI
//! loop → the lifecycle → the store. The worker runs tasks and reports to the lifecycle too; the
//! pages read the store and the event bus.

pub mod agent;
pub mod app;
pub mod bus;
pub mod ci;
pub mod command;
pub mod config;
pub mod context;
pub mod db;
pub mod dispatch;
pub mod docker;
pub mod domain;
pub mod entities;
pub mod gateway;
pub mod github;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod inbox;
pub mod lifecycle;
pub mod metrics;
pub mod notify;
pub mod pages;
pub mod redact;
pub mod redelivery;
pub mod repo_config;
pub mod sandbox;
pub mod sealed;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod text;
pub mod texts;
pub mod webhook;
pub mod worker;
