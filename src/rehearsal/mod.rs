//! Rehearsals: the workflows run on a virtual clock over a scratch store, nothing sent —
//! `simulate`, the forecast that `plan` shows, and the behaviour tests of `tidings test`.

pub mod forecast;
pub mod simulate;
pub mod tempdir;
pub mod workflow_tests;
