//! tidings: lifecycle-marketing workflows kept in git.
//!
//! The modules follow the data flow, and depend only on those above them:
//!
//! - `source`: files, positions, YAML routes and the diagnostics a user reads;
//!   `time`: durations, cron, zones; `ids`: stable and random ids; `customer`: the model
//!   every stage shares; `config`: `tidings.yaml`; `robots`: telling a person's click or
//!   open from a link scanner's.
//! - `workflow`: a YAML file (`raw`) compiled, with every check, into a `plan`.
//! - `import`: customers and events from files and the API, checked row by row.
//! - `store`: SQLite or PostgreSQL — customers, events, journeys, the outbox; all the SQL.
//! - `sync`: the shop's own database read after each source's cursor, into the store.
//! - `unsubscribe`: the tokens of the links in every email;
//!   `links`: tracked links, open pixels and answer links, sealed with the same key.
//! - `engine`: a pass — triggers, journeys and their steps, what each email says.
//! - `delivery`: the outbox leaves — SMTP, `.eml` files, webhooks; retries and pacing.
//! - `pass`: one pass of the engine and the senders, for `run` and the daemon.
//! - `rehearsal`: the same on a virtual clock over a scratch store (`simulate`, `plan`'s
//!   forecast, `tidings test`).
//! - `analysis`: what the store's numbers mean — the verdict of an experiment, the counts
//!   as a reader groups them, the report's page and charts.
//! - `daemon`: the HTTP endpoints, their accept loop, and the daemon's life of passes.
//! - `cli`: the commands a person or CI runs; `progress`: what a run shows while it runs.

pub mod analysis;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod engine;
pub mod import;
pub mod links;
pub mod model;
pub mod pass;
pub mod progress;
pub mod rehearsal;
pub mod robots;
pub mod source;
pub mod stats;
pub mod store;
pub mod sync;
pub mod time;
pub mod unsubscribe;
pub mod workflow;
