//! tidings: lifecycle-marketing workflows kept in git.
//!
//! The data flows one way, and the modules follow it:
//! `workflow` (the YAML as written) → `compile` (every check, into a `plan::Plan`) →
//! the engine and delivery, which run from the plan. `yaml`, `source` and `diagnostic`
//! carry positions from the files to the messages a user reads.

pub mod charts;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod config;
pub mod cron;
pub mod customer;
pub mod delivery;
pub mod deployed;
pub mod diagnostic;
pub mod duration;
pub mod engine;
pub mod expr;
pub mod forecast;
pub mod ids;
pub mod import;
pub mod pacing;
pub mod pass;
pub mod plan;
pub mod progress;
pub mod pushdown;
pub mod serve;
pub mod server;
pub mod simulate;
pub mod smtp;
pub mod source;
pub mod stages;
pub mod store;
pub mod tempdir;
pub mod templates;
pub mod testing;
pub mod tls;
pub mod unsubscribe;
pub mod webhook;
pub mod workflow;
pub mod yaml;
