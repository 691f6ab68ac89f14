//! The daemon's HTTP side: the endpoints (`api`: customers, events, bounce reports, the
//! unsubscribe page, health, metrics) and the accept loop that keeps them answerable
//! (`serve`) — and its life (`life`): the passes, reloads and signals around them.

pub mod api;
mod clients;
pub mod engagement;
pub mod life;
pub mod metrics;
mod pages;
pub mod preferences;
pub mod serve;
mod shop;
pub mod sources;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

/// Every endpoint, each a handler of `api` (the API and the unsubscribe page),
/// `engagement` (links in emails) or `metrics`.
pub fn router(state: Arc<api::Api>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/u/{token}", get(preferences::show).post(preferences::save))
        .route("/c/{token}", get(engagement::click))
        .route("/o/{file}", get(engagement::open))
        .route(
            "/a/{token}",
            get(engagement::answer).post(engagement::comment),
        )
        .route("/v1/suppressions", post(api::suppressions))
        .route("/v1/customers", post(api::customers))
        .route("/v1/customers/{id}", delete(api::forget))
        .route("/v1/events", post(api::events))
        .route("/v1/orders", post(shop::orders))
        .route("/v1/segment", post(shop::segment))
        .route("/openapi.json", get(api::openapi))
        .layer(DefaultBodyLimit::max(api::MAX_BODY))
        .layer(axum::middleware::from_fn(api::length_required))
        .with_state(state)
}
