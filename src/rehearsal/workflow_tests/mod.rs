//! `tidings test`: behaviour tests for workflows, written beside them in YAML and run on a
//! virtual clock — so a pull request shows that a welcome series stops at the first order,
//! not only that its YAML parses.

pub mod report;
pub mod runner;
pub mod spec;
