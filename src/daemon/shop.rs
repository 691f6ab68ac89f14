//! The shop's own data over HTTP: `POST /v1/orders` (orders upserted by id) and
//! `POST /v1/segment` (Segment's Tracking API messages, as Segment, RudderStack and Jitsu
//! send them — which authenticate with HTTP Basic, the token as the user name).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::Utc;
use serde_json::{Value, json};

use super::api::{
    Api, Json, authorize, authorized_rows, body_items, problem, row_problems, row_problems_under,
    unavailable, whole,
};
use crate::import::RowError;

/// Upserts orders by `id`: all or none. A new order records `order_placed`, a cancellation
/// or refund its event, once each; the customers' order figures follow.
pub(super) async fn orders(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (rows, list) = match authorized_rows(&api, &headers, body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let rows = crate::import::orders_of(&rows);
    match api
        .store
        .import_orders(rows.into_iter(), false, Utc::now())
        .await
    {
        Ok(report) if !report.errors.is_empty() => row_problems(&report.errors, list),
        Ok(report) => {
            let c = &report.counts;
            if c.events > 0 {
                api.wake.notify_one();
            }
            Json(json!({
                "stored": c.new + c.changed,
                "new": c.new,
                "changed": c.changed,
                "unchanged": c.unchanged,
                "events": c.events,
            }))
            .into_response()
        }
        Err(_) => unavailable(),
    }
}

/// Segment's messages, one or `{"batch": [...]}`: all kept or none.
pub(super) async fn segment(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &basic_as_bearer(&headers)) {
        return r;
    }
    let body = match whole(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (mut items, list) = match body_items(&body) {
        Ok(v) => v,
        Err((e, Some(at))) => return problem(StatusCode::UNPROCESSABLE_ENTITY, &e, Some(&at)),
        Err((e, None)) => return problem(StatusCode::BAD_REQUEST, &e, None),
    };
    if list {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "send one message, or `{\"batch\": [...]}`",
            Some(""),
        );
    }
    // `{"batch": [...]}` is Segment's batch endpoint's body; anything else is one message.
    let (messages, batched) = match items.pop() {
        Some(Value::Object(mut m)) if m.contains_key("batch") => match m.remove("batch") {
            Some(Value::Array(b)) => (b, true),
            _ => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "`batch` must be a list of messages",
                    Some("/batch"),
                );
            }
        },
        one => (one.into_iter().collect(), false),
    };
    let rows = crate::import::segment::segment(&messages, Utc::now());
    if !rows.errors.is_empty() {
        return refused(&rows.errors, batched);
    }
    let ignored = rows.ignored;
    match api
        .store
        .record_batch(rows.customers, rows.orders, rows.events)
        .await
    {
        Ok(report) if !report.errors.is_empty() => refused(&report.errors, batched),
        Ok(report) => {
            if report.events + report.orders.events > 0 {
                api.wake.notify_one();
            }
            Json(json!({
                "success": true,
                "customers": report.customers,
                "events": report.events,
                "orders": report.orders.new + report.orders.changed,
                "ignored": ignored,
            }))
            .into_response()
        }
        Err(_) => unavailable(),
    }
}

/// A refused Segment body: each problem at `/batch/i/field` (or `/field`); nothing kept.
fn refused(errors: &[RowError], batched: bool) -> Response {
    match batched {
        true => row_problems_under(errors, true, "/batch"),
        false => row_problems(errors, false),
    }
}

/// `Authorization: Basic base64(TOKEN:)`, as Segment's destinations send the write key, read
/// as `Bearer TOKEN`; any other header is left as it is.
fn basic_as_bearer(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some((scheme, encoded)) = given.and_then(|v| v.trim().split_once(' ')) else {
        return out;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return out;
    }
    let user = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(|pair| pair.split(':').next().unwrap_or_default().to_string());
    match user.and_then(|u| HeaderValue::from_str(&format!("Bearer {u}")).ok()) {
        Some(bearer) => {
            out.insert(header::AUTHORIZATION, bearer);
        }
        None => {
            out.remove(header::AUTHORIZATION);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_carries_the_token_as_its_user_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic c2VjcmV0Og=="), // "secret:"
        );
        assert_eq!(basic_as_bearer(&h)[header::AUTHORIZATION], "Bearer secret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer other"),
        );
        assert_eq!(basic_as_bearer(&h)[header::AUTHORIZATION], "Bearer other");
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!"));
        assert!(!basic_as_bearer(&h).contains_key(header::AUTHORIZATION));
    }
}
