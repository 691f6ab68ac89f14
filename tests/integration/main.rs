//! The one integration-test binary: the `tidings` command run as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod architecture;
mod audience;
mod campaign;
mod common;
mod daemon;
mod dkim;
mod engagement;
mod experiments;
mod plan;
mod preview;
mod realtime;
mod report;
mod restart;
mod schedule;
mod simulate;
mod smtp;
mod status;
mod store;
mod takeover;
mod topics;
mod trust;
mod validate;
mod webhook;
mod workflow_tests;
