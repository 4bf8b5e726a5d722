//! # Herald
//!
//! A self-hosted bulk campaign scheduler and sender engine. A tour, from the inside out:
//!
//! - [`domain`] holds the rules with no I/O: the campaign state machine, a message's lifecycle
//!   and the counters derived from it, `<<variable>>` templates, E.164 phones, pacing settings
//!   and API-key tokens.
//! - [`store`] holds all SQL, as small functions over a connection or a transaction, written once
//!   for SQLite and PostgreSQL; every change others react to appends to the event log in its
//!   transaction, read in order through [`eventlog`].
//! - [`service`] holds the rules every caller goes through; [`providers`] one module per
//!   platform; [`engine`] the sender lanes, launches at their time, imports, and provider events.
//! - [`http`] is the axum API (parse, call a service, present); [`cli`] the `herald` command;
//!   [`app`] builds the application that both `herald serve` and the tests run.
//!
//! No module imports one that imports it back: the domain imports nothing of Herald's, the
//! store and providers only the domain, services the store, the engine services and providers,
//! the HTTP layer services and the engine.
//!
//! `../shared/DESIGN.md` describes the architecture and its invariants.

/// Building and running the application.
pub mod app;
/// `herald bench`: the end-to-end load benchmark.
pub mod bench;
/// The `herald` command line.
pub mod cli;
/// Time as an injectable dependency.
pub mod clock;
/// Typed settings from defaults, a file and the environment.
pub mod config;
/// `herald demo`: a campaign through the sandbox, shown live.
pub mod demo;
/// Rules with no I/O.
pub mod domain;
/// Launch, sender lanes, pacing and callbacks.
pub mod engine;
/// Reading the event log in order, by named consumers that resume where they stopped.
pub mod eventlog;
/// The HTTP API.
pub mod http;
/// Prometheus metrics of the engine, the webhooks and the callbacks.
pub mod metrics;
/// Where messages leave Herald: one module per platform.
pub mod providers;
/// Templates rendered per recipient: a campaign's compiled once, a single message's at once.
pub mod render;
/// The rules every caller goes through: HTTP, CLI, demo and bench alike.
pub mod service;
/// All SQL, for both dialects.
pub mod store;
/// The private-address guard on every URL a user gives Herald to call.
pub mod url_guard;
/// Outbound webhooks: the event log fanned out to endpoints, delivered, signed and retried.
pub mod webhooks;
