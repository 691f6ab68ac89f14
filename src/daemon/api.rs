//! The daemon's HTTP endpoints (axum): the unsubscribe link of every marketing email, the
//! bounce and complaint webhook of the mail provider, and a health check.
//!
//! `POST /v1/customers` upserts customers and `POST /v1/events` records events (each a JSON
//! object or a list of them, with the bearer token; an event's `id`, or the
//! `Idempotency-Key` header for a single one, makes a retried POST record it once).
//!
//! `GET /u/{token}` only shows a confirmation page — mail scanners follow links, and a GET
//! must not unsubscribe anyone. `POST /u/{token}` is RFC 8058's one-click unsubscribe (and
//! the page's button). `POST /v1/suppressions` takes `{"email", "type": "bounce" |
//! "complaint", "reason"?}`, or a list of them, with the bearer token of `server.token`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::store::{MailReport, Store, Unsubscribed};
use crate::unsubscribe::{Signer, TokenError};
use crate::workflow::templates::escape_html;

/// Request bodies larger than this are refused with 413 before they are read.
pub const MAX_BODY: usize = 1024 * 1024;

/// What the handlers share.
pub struct Api {
    pub store: Store,
    pub signer: Signer,
    /// The bearer token write endpoints require; `None` turns them off.
    pub token: Option<String>,
    /// Shown on the unsubscribe pages: who is writing.
    pub sender: String,
    /// What the daemon runs, for `/healthz`.
    pub health: std::sync::RwLock<Health>,
    /// What the passes did, for `/metrics`.
    pub passes: std::sync::Mutex<PassMetrics>,
    /// What the engine and the sender count as they work (the hand-off histogram).
    pub meter: Arc<crate::progress::Meter>,
    /// Rung when events arrive, so that the daemon runs a pass at once.
    pub wake: Arc<tokio::sync::Notify>,
    /// How clicks, opens and answers are told apart from machines and what is kept.
    pub tracking: Tracking,
    /// `topics:` of tidings.yaml: with any, `/u/TOKEN` is a preference centre.
    pub topics: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// What the endpoints are told by `tracking:` in tidings.yaml.
#[derive(Debug, Clone)]
pub struct Tracking {
    /// A click or open this soon after the email left is a scanner's.
    pub machine_window: chrono::TimeDelta,
    /// Keep the client's address and agent with what it did.
    pub store_client: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Tracking {
    fn default() -> Self {
        Self {
            machine_window: crate::robots::DEFAULT_WINDOW,
            store_client: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Counters the daemon's loop keeps.
#[derive(Debug, Clone, Default)]
pub struct PassMetrics {
    pub passes: u64,
    pub failed_passes: u64,
    pub seconds_total: f64,
    pub last_seconds: f64,
    pub emails_sent: u64,
    pub emails_failed: u64,
    pub emails_retried: u64,
    pub steps: u64,
}

/// The running workflow set and the last reload's failure, if the last one failed.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub workflows: Vec<String>,
    pub reload_error: Option<String>,
}

/// The checked-in description of these endpoints (`docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub(super) async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// 200 while the daemon serves; `degraded` while a changed workflow set is refused (the
/// previous set keeps running). The listener faces the internet: which workflows run and
/// the refusal (paths, audience lines) are told only to a holder of the API token.
pub(super) async fn healthz(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let health = api.health.read().map(|h| h.clone()).unwrap_or_default();
    let status = if health.reload_error.is_some() {
        "degraded"
    } else {
        "ok"
    };
    if authorize(&api, &headers).is_err() {
        return Json(json!({ "status": status })).into_response();
    }
    Json(json!({
        "status": status,
        "workflows": health.workflows,
        "reload_error": health.reload_error,
    }))
    .into_response()
}

/// A JSON response (axum's `Json` extractor is not used for bodies: its rejections do not
/// say where in the document the problem is).
pub(super) struct Json(pub(super) Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        (
            [(header::CONTENT_TYPE, "application/json")],
            self.0.to_string(),
        )
            .into_response()
    }
}

pub(super) fn problem(status: StatusCode, message: &str, pointer: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(p) = pointer {
        body["pointer"] = json!(p);
    }
    (status, Json(body)).into_response()
}

pub(super) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\n<body style=\"font-family:sans-serif;max-width:36em;margin:3em auto\"><h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    (status, Html(html)).into_response()
}

/// Which link was refused: each says what did not happen.
#[derive(Debug, Clone, Copy)]
pub(super) enum Link {
    Unsubscribe,
    Tracked,
    Answer,
}

/// The page for a link that cannot be used; nothing has changed.
pub(super) fn refused(link: Link, e: &TokenError) -> Response {
    let status = match e {
        TokenError::Expired(_) => StatusCode::GONE,
        _ => StatusCode::BAD_REQUEST,
    };
    let what = match link {
        Link::Unsubscribe => {
            "Nothing was changed. Use the link in a recent email, or reply to it to be removed."
        }
        Link::Tracked => {
            "It does not lead anywhere and nothing was recorded. Use the link in the email itself."
        }
        Link::Answer => "Your answer was not recorded. Use the link in the email itself.",
    };
    page(
        status,
        "This link cannot be used",
        &format!("<p>{}. {what}</p>", escape_html(&e.to_string())),
    )
}

/// `a•••@example.com`: enough for the reader to recognise the address, not enough to
/// disclose it to whoever holds a forwarded link.
fn masked(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}•••@{domain}")
        }
        None => "your address".into(),
    }
}

pub(super) async fn confirm(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    let checked = match api.signer.verify(&token, Utc::now()) {
        Ok(c) => c,
        Err(e) => return refused(Link::Unsubscribe, &e),
    };
    let who = match api.store.customer(&checked.customer_id).await {
        Ok(Some(c)) => masked(&c.email),
        _ => "your address".into(),
    };
    page(
        StatusCode::OK,
        "Unsubscribe?",
        &format!(
            "<p>Stop marketing email from {} to {}? Receipts and other emails about your orders still arrive.</p>\n<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>",
            escape_html(&api.sender),
            escape_html(&who)
        ),
    )
}

pub(super) async fn unsubscribe(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
) -> Response {
    let checked = match api.signer.verify(&token, Utc::now()) {
        Ok(c) => c,
        Err(e) => return refused(Link::Unsubscribe, &e),
    };
    let source = format!("link in `{}`", checked.workflow);
    match api
        .store
        .unsubscribe(
            &checked.customer_id,
            &source,
            checked.delivery.as_deref(),
            Utc::now(),
        )
        .await
    {
        Ok(Unsubscribed::Now | Unsubscribed::Already) => {
            // In the customer's language, as the preference page that led here was.
            let locale = match api.store.customer(&checked.customer_id).await {
                Ok(Some(c)) => c.locale,
                _ => None,
            };
            let words = super::pages::words(locale.as_deref());
            let body = format!("<p>{}</p>", escape_html(words.all_gone));
            Html(super::pages::page(words, words.unsubscribed, &body)).into_response()
        }
        Ok(Unsubscribed::NoSuchCustomer) => page(
            StatusCode::NOT_FOUND,
            "Unknown subscriber",
            "<p>This address is not on our list any more; nothing will be sent to it.</p>",
        ),
        Err(_) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again",
            "<p>We could not record your request just now. Nothing was changed; please try again in a minute.</p>",
        ),
    }
}

/// Checks `Authorization: Bearer <server.token>`, comparing in constant time.
#[allow(clippy::result_large_err)] // a Response is the error: it goes straight back
pub(super) fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = &api.token else {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "write endpoints are off: set `server.token` in tidings.yaml (e.g. `token: ${TIDINGS_API_TOKEN}`)",
            None,
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let refused = |message: &str, error: &str| {
        let mut response = problem(StatusCode::UNAUTHORIZED, message, None);
        if let Ok(challenge) =
            header::HeaderValue::from_str(&format!("Bearer realm=\"tidings\", error=\"{error}\""))
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    };
    match given {
        Some(g) if same_secret(g, expected) => Ok(()),
        Some(_) => Err(refused(
            "the bearer token is not the one in `server.token`",
            "invalid_token",
        )),
        None => Err(refused(
            "send `Authorization: Bearer <token>` with the token of `server.token`",
            "invalid_request",
        )),
    }
}

/// The token of `Bearer TOKEN`; the scheme's name is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares without leaking where they differ: HMAC tags of both, checked by ring in
/// constant time.
fn same_secret(given: &str, expected: &str) -> bool {
    use ring::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"tidings bearer token");
    hmac::verify(
        &key,
        given.as_bytes(),
        hmac::sign(&key, expected.as_bytes()).as_ref(),
    )
    .is_ok()
}

/// Reads `{"email", "type", "reason"?}` or a list of them; an error names the field by
/// JSON pointer (`None`: the body is not JSON).
fn reports(body: &[u8]) -> Result<Vec<MailReport>, (String, Option<String>)> {
    let (items, list) = body_items(body)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| pointer(list, i, field);
        let Value::Object(map) = item else {
            return Err((
                "expected an object like {\"email\": \"a@example.com\", \"type\": \"bounce\"}"
                    .into(),
                Some(at("")),
            ));
        };
        let email = match map.get("email") {
            Some(Value::String(e)) if e.contains('@') && !e.contains(char::is_whitespace) => {
                e.trim().to_lowercase()
            }
            Some(_) => return Err(("`email` must be an email address".into(), Some(at("email")))),
            None => return Err(("`email` is missing".into(), Some(at("email")))),
        };
        let complaint = match map.get("type").and_then(Value::as_str) {
            Some("bounce") => false,
            Some("complaint") => true,
            _ => {
                return Err((
                    "`type` must be \"bounce\" or \"complaint\"".into(),
                    Some(at("type")),
                ));
            }
        };
        let kind = if complaint { "complaint" } else { "bounce" };
        let reason = match map.get("reason") {
            None | Some(Value::Null) => kind.to_string(),
            Some(Value::String(r)) if r.is_empty() => kind.to_string(),
            Some(Value::String(r)) => {
                format!("{kind}: {}", r.chars().take(500).collect::<String>())
            }
            Some(_) => return Err(("`reason` must be a string".into(), Some(at("reason")))),
        };
        out.push(MailReport {
            email,
            complaint,
            reason,
        });
    }
    Ok(out)
}

/// A bounce suppresses the address (nothing more is sent to it); a complaint unsubscribes
/// its customers from marketing (receipts still go), or suppresses an address no customer
/// has. All are checked before any is stored, and stored in one transaction.
pub(super) async fn suppressions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(r) = authorize(&api, &headers) {
        return r;
    }
    let body = match whole(body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let reports = match reports(&body) {
        Ok(r) => r,
        Err((message, pointer)) => {
            let status = if pointer.is_some() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            return problem(status, &message, pointer.as_deref());
        }
    };
    match api.store.record_reports(&reports, Utc::now()).await {
        Ok((suppressed, unsubscribed)) => Json(
            json!({ "received": reports.len(), "suppressed": suppressed, "unsubscribed": unsubscribed }),
        )
        .into_response(),
        Err(_) => unavailable(),
    }
}

/// A body of one JSON object or a list of them: the items, and whether it was a list
/// (which decides how a JSON pointer names an item). Not JSON: the message alone (400);
/// JSON this API cannot take — a number beyond what a double holds, a NUL character in
/// any text or key, which PostgreSQL cannot store — the message and its pointer (422), the
/// same on every store.
pub(super) fn body_items(body: &[u8]) -> Result<(Vec<Value>, bool), (String, Option<String>)> {
    // Checked first: a JSON parser that skips a value does not look inside its strings.
    if let Err(e) = std::str::from_utf8(body) {
        let at = e.valid_up_to();
        return Err((format!("the body is not UTF-8 text (byte {at})"), None));
    }
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err((format!("the body is not JSON: {e}"), None));
    }
    let value: Value =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(body))
            .map_err(|e| (format!("{}", e.inner()), Some(json_pointer(e.path()))))?;
    if let Some(at) = nul_in(&value, &mut String::new()) {
        return Err((
            "text may not contain a NUL character (\\u0000)".into(),
            Some(at),
        ));
    }
    Ok(match value {
        Value::Array(items) => (items, true),
        one => (vec![one], false),
    })
}

/// The RFC 6901 pointer of a place serde went through.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    path.iter()
        .map(|segment| match segment {
            Segment::Seq { index } => format!("/{index}"),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                format!("/{}", key.replace('~', "~0").replace('/', "~1"))
            }
            Segment::Unknown => "/?".to_string(),
        })
        .collect()
}

/// The pointer to the first string or key holding a NUL character, if any.
fn nul_in(value: &Value, at: &mut String) -> Option<String> {
    let escaped = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match value {
        Value::String(s) if s.contains('\0') => Some(at.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let mut here = format!("{at}/{i}");
            nul_in(v, &mut here)
        }),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let mut here = format!("{at}/{}", escaped(k));
            if k.contains('\0') {
                return Some(here);
            }
            nul_in(v, &mut here)
        }),
        _ => None,
    }
}

/// The JSON pointer to item `index`'s `field` (`""`: the item itself).
fn pointer(list: bool, index: usize, field: &str) -> String {
    let base = if list {
        format!("/{index}")
    } else {
        String::new()
    };
    if field.is_empty() {
        // RFC 6901: the whole document is "", not "/".
        base
    } else {
        format!("{base}/{field}")
    }
}

/// A body of import rows: one JSON object or a list of them.
#[allow(clippy::result_large_err)] // a Response is the error: it goes straight back
fn rows_of(body: &[u8]) -> Result<(Vec<Map<String, Value>>, bool), Response> {
    let (items, list) = body_items(body).map_err(|(e, at)| match at {
        Some(at) => problem(StatusCode::UNPROCESSABLE_ENTITY, &e, Some(&at)),
        None => problem(StatusCode::BAD_REQUEST, &e, None),
    })?;
    let mut rows = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(row) = item else {
            return Err(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "expected a JSON object",
                Some(&pointer(list, i, "")),
            ));
        };
        rows.push(row);
    }
    Ok((rows, list))
}

/// The rows of a write endpoint's body, once the token is checked and the body read: the
/// refusal otherwise, in the API's JSON shape.
#[allow(clippy::result_large_err)] // a Response is the error: it goes straight back
pub(super) fn authorized_rows(
    api: &Api,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Vec<Map<String, Value>>, bool), Response> {
    authorize(api, headers)?;
    rows_of(&whole(body)?)
}

/// Import row errors as a 422 naming each bad field; nothing was stored.
pub(super) fn row_problems(errors: &[crate::import::RowError], list: bool) -> Response {
    row_problems_under(errors, list, "")
}

/// Import row errors as a 422, the items of the list at `base` (`/batch` in a Segment
/// batch); nothing was stored.
pub(super) fn row_problems_under(
    errors: &[crate::import::RowError],
    list: bool,
    base: &str,
) -> Response {
    let at = |e: &crate::import::RowError| {
        let within = pointer(list, e.line as usize - 1, &e.field);
        format!("{base}{within}")
    };
    let all: Vec<Value> = errors
        .iter()
        .map(|e| json!({ "pointer": at(e), "error": e.message }))
        .collect();
    let first = &errors[0];
    let mut body = json!({ "error": first.message, "pointer": at(first), "errors": all });
    body["stored"] = json!(0);
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

/// `DELETE /v1/customers/{id}`: the customer and everything kept about them are gone
/// (204), or there was no such customer (404).
pub(super) async fn forget(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorize(&api, &headers) {
        return refused;
    }
    match api.store.forget_customer(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => problem(
            StatusCode::NOT_FOUND,
            &format!("no customer has the id `{id}`"),
            None,
        ),
        Err(_) => unavailable(),
    }
}

/// Upserts customers by `id`: all or none.
pub(super) async fn customers(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (rows, list) = match authorized_rows(&api, &headers, body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let rows = crate::import::customers_of(&rows);
    match api.store.import_customers(rows.into_iter(), false).await {
        Ok(report) if !report.errors.is_empty() => row_problems(&report.errors, list),
        Ok(report) => Json(json!({ "stored": report.written })).into_response(),
        Err(_) => unavailable(),
    }
}

/// Records events: all or none; an event seen before (same `id`) is not recorded again.
pub(super) async fn events(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (rows, list) = match authorized_rows(&api, &headers, body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    // A single event may carry its idempotency key in the header instead of `id`.
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|_| !list);
    let rows = crate::import::events_posted(&rows, Utc::now(), key);
    match api.store.record_events(rows.into_iter(), false).await {
        Ok(report) if !report.errors.is_empty() => row_problems(&report.errors, list),
        Ok(report) => {
            if report.written > 0 {
                api.wake.notify_one();
            }
            Json(json!({ "stored": report.written })).into_response()
        }
        Err(_) => unavailable(),
    }
}

/// Every body must say its length up front. A chunked body announces sizes one chunk at a
/// time (up to 2^64 bytes each), so a client could hold a request open announcing more
/// than any limit and sending nothing; none of these endpoints takes a stream, and a 411
/// tells the client, at once, what to change.
pub(super) async fn length_required(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !request.headers().contains_key(header::TRANSFER_ENCODING) {
        return next.run(request).await;
    }
    let mut refused = problem(
        StatusCode::LENGTH_REQUIRED,
        "send the body with a Content-Length header; a chunked body is not taken",
        None,
    );
    refused.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    refused
}

/// The body, or the refusal in the API's JSON shape (axum's own is plain text).
#[allow(clippy::result_large_err)] // a Response is the error: it goes straight back
pub(super) fn whole(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Response> {
    body.map_err(|e| {
        let message = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the body is larger than {} MB; send fewer rows at a time",
                MAX_BODY / (1024 * 1024)
            )
        } else {
            e.body_text()
        };
        problem(e.status(), &message, None)
    })
}

pub(super) fn unavailable() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "the store could not record this; nothing was stored, send it again",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_reports_are_checked_with_a_pointer_to_the_bad_field() {
        let ok = reports(br#"[{"email":"Ada@Example.com","type":"bounce","reason":"550 5.1.1"},{"email":"b@x.org","type":"complaint"}]"#).unwrap();
        assert_eq!(ok[0].email, "ada@example.com");
        assert!(!ok[0].complaint && ok[1].complaint);
        assert_eq!(
            reports(br#"[{"email":"a@x.org","type":"bounce"},{"email":"a@x.org","type":"soft"}]"#),
            Err((
                "`type` must be \"bounce\" or \"complaint\"".into(),
                Some("/1/type".into())
            ))
        );
        assert_eq!(
            reports(br#"{"type":"bounce"}"#).unwrap_err().1.as_deref(),
            Some("/email")
        );
        assert_eq!(
            reports(br#"{"email":"nobody","type":"bounce"}"#)
                .unwrap_err()
                .1
                .as_deref(),
            Some("/email")
        );
        assert_eq!(reports(b"[1]").unwrap_err().1.as_deref(), Some("/0"));
        assert!(
            reports(b"{nope")
                .unwrap_err()
                .0
                .starts_with("the body is not JSON")
        );
        assert_eq!(masked("ada@example.com"), "a•••@example.com");
    }
}
