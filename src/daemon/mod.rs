//! The daemon's HTTP side: the endpoints (`api`: customers, events, bounce reports, the
//! unsubscribe page, health, metrics) and the accept loop that keeps them answerable
//! (`serve`). The loop of passes is the `daemon` command's (`cli::daemon`).

pub mod api;
pub mod engagement;
pub mod metrics;
mod pages;
pub mod serve;
