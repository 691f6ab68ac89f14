//! The public endpoints of the links in emails: `GET /c/TOKEN` (a tracked link: 302 to the
//! URL the email held, and an `email_clicked` event), `GET /o/TOKEN.gif` (the open pixel)
//! and `GET`/`POST /a/TOKEN` (a survey answer and its comment).
//!
//! A token that does not open is a 400 and changes nothing; it never redirects, so the
//! endpoint cannot be made to send anyone anywhere the email did not. `HEAD` answers as
//! `GET` would and records nothing (link checkers and scanners use it). A link whose email
//! is gone (its customer forgotten) still goes where it went, and records nothing.

use std::sync::Arc;

use axum::body::Bytes;
use std::net::IpAddr;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{TimeDelta, Utc};

pub use super::api::Tracking;
use super::api::{Api, Link, refused};
use super::pages;
use super::serve::Peer;
use crate::links::{Answer, Click, Open, Token};
use crate::store::engagement::{SentEmail, Visit};

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// The longest comment kept.
const MAX_COMMENT: usize = 2_000;

fn visit(api: &Api, headers: &HeaderMap, peer: Option<Extension<Peer>>) -> Visit {
    let header = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(300).collect::<String>())
    };
    let agent = header(header::USER_AGENT);
    let client = api.tracking.store_client.then(|| {
        let address = peer.map(|Extension(Peer(ip))| client_address(&api.tracking, ip, headers));
        let address = address.map(|a| a.to_string()).unwrap_or_default();
        format!("{address}\t{}", agent.as_deref().unwrap_or(""))
    });
    Visit {
        at: Utc::now(),
        agent,
        client,
    }
}

/// Who the client is: the peer, unless the peer is a trusted proxy; then the nearest
/// address in `X-Forwarded-For` that is not one (each proxy appends the address it saw, so
/// what is left of the last trusted one is only what the client claims).
fn client_address(tracking: &Tracking, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |ip: &IpAddr| tracking.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers.get_all("x-forwarded-for").iter().rev();
    for value in hops.filter_map(|v| v.to_str().ok()) {
        for hop in value.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = ip;
            if !trusted(&ip) {
                return client;
            }
        }
    }
    client
}

/// The email a token names, or `None` (it is gone, or the store cannot say just now: the
/// customer is sent on either way).
async fn email_of(api: &Api, delivery: &str) -> Option<SentEmail> {
    match api.store.sent_email(delivery).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "a link's email could not be read; the visit is not recorded");
            None
        }
    }
}

pub async fn click(
    State(api): State<Arc<Api>>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    Path(token): Path<String>,
) -> Response {
    let link = match Click::open(&api.signer, &token) {
        Ok(l) => l,
        Err(e) => return refused(Link::Tracked, &e),
    };
    let location = as_uri(&link.url);
    if method != Method::HEAD
        && !link.proof
        && let Some(email) = email_of(&api, &link.delivery).await
    {
        let seen = visit(&api, &headers, peer);
        let window = api.tracking.machine_window;
        match api
            .store
            .record_click(&email, &link.url, &seen, window)
            .await
        {
            Ok(_) => api.wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, "a click could not be recorded"),
        }
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response()
}

/// A link as a `Location` may carry it: every byte a URI cannot hold as it is (controls,
/// spaces, anything outside ASCII, `"<>\^`{|}`) percent-encoded, so the header is always
/// valid and goes exactly where the email pointed.
fn as_uri(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn open(
    State(api): State<Arc<Api>>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    Path(file): Path<String>,
) -> Response {
    let Some(token) = file.strip_suffix(".gif") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let pixel = match Open::open(&api.signer, token) {
        Ok(p) => p,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    if method != Method::HEAD
        && !pixel.proof
        && let Some(email) = email_of(&api, &pixel.delivery).await
    {
        let seen = visit(&api, &headers, peer);
        let window = api.tracking.machine_window;
        match api.store.record_open(&email, &seen, window).await {
            Ok(_) => api.wake.notify_one(),
            Err(e) => tracing::warn!(error = %e, "an open could not be recorded"),
        }
    }
    (
        [
            (header::CONTENT_TYPE, "image/gif"),
            (header::CACHE_CONTROL, "no-store, max-age=0"),
        ],
        PIXEL,
    )
        .into_response()
}

/// The answer a link stands for, shown as the customer would read it.
fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The answer a token stands for and its email; else the response: 400 for a token that
/// does not open, a "survey closed" page for an email that is gone.
async fn answered(api: &Api, token: &str) -> Result<(Answer, SentEmail), Response> {
    let given = Answer::open(&api.signer, token).map_err(|e| refused(Link::Answer, &e))?;
    if given.proof {
        // A proof's answer: the page as the customer would see it, saying that nothing
        // was recorded (and no box for a comment that would not be kept).
        let words = pages::words(None);
        let body = format!(
            "<p class=\"answer\">{}</p>\n<p role=\"status\"><strong>{}</strong></p>",
            crate::workflow::templates::escape_html(&shown(&given.value)),
            crate::workflow::templates::escape_html(words.proof)
        );
        return Err(Html(pages::page(words, words.your_answer, &body)).into_response());
    }
    let Some(email) = email_of(api, &given.delivery).await else {
        let words = pages::words(None);
        let html = pages::page(words, words.closed, "");
        return Err((StatusCode::NOT_FOUND, Html(html)).into_response());
    };
    Ok((given, email))
}

pub async fn answer(
    State(api): State<Arc<Api>>,
    method: Method,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    Path(token): Path<String>,
) -> Response {
    let (given, email) = match answered(&api, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let words = pages::words(email.locale.as_deref());
    if method != Method::HEAD {
        let seen = visit(&api, &headers, peer);
        let window = api.tracking.machine_window;
        let recorded = api
            .store
            .record_answer(&email, &given.question, &given.value, &seen, window)
            .await;
        match recorded {
            Ok(true) => api.wake.notify_one(),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "an answer could not be recorded");
                return unavailable(words);
            }
        }
    }
    // The comment already saved for this answer, if any, stays in its box.
    let saved = match api.store.answer(&email.delivery, &given.question).await {
        Ok(Some(a)) if a.value == given.value => a.comment,
        _ => None,
    };
    Html(pages::answer_page(
        words,
        &shown(&given.value),
        saved.as_deref(),
    ))
    .into_response()
}

pub async fn comment(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let (given, email) = match answered(&api, &token).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let words = pages::words(email.locale.as_deref());
    // A form without the field (not ours) changes nothing; NUL, which PostgreSQL's text
    // cannot hold, is dropped; a comment longer than the box allows is refused whole.
    let Some(comment) = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "comment")
        .map(|(_, v)| v.trim().replace('\0', ""))
    else {
        let html = pages::answer_page(words, &shown(&given.value), None);
        return (StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response();
    };
    if comment.chars().count() > MAX_COMMENT {
        let body = format!(
            "<p role=\"alert\">{}</p>",
            crate::workflow::templates::escape_html(
                &words.too_long.replace("{max}", &MAX_COMMENT.to_string())
            )
        );
        let html = pages::page(words, words.your_answer, &body);
        return (StatusCode::PAYLOAD_TOO_LARGE, Html(html)).into_response();
    }
    let saved = api
        .store
        .comment_answer(&email, &given.question, &comment)
        .await;
    match saved {
        Ok(true) => {
            let body = format!(
                "<p>{}</p>",
                crate::workflow::templates::escape_html(words.comment_saved)
            );
            Html(pages::page(words, words.thanks, &body)).into_response()
        }
        // The comment came before any answer was kept (the GET was a HEAD): keep the
        // answer now, with it.
        Ok(false) => {
            let seen = Visit {
                at: Utc::now(),
                ..Visit::default()
            };
            let store = &api.store;
            let kept = async {
                store
                    .record_answer(
                        &email,
                        &given.question,
                        &given.value,
                        &seen,
                        TimeDelta::zero(),
                    )
                    .await?;
                store
                    .comment_answer(&email, &given.question, &comment)
                    .await
            };
            match kept.await {
                Ok(_) => {
                    api.wake.notify_one();
                    let html = pages::answer_page(words, &shown(&given.value), Some(&comment));
                    Html(html).into_response()
                }
                Err(_) => unavailable(words),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "a comment could not be saved");
            unavailable(words)
        }
    }
}

fn unavailable(words: &pages::Words) -> Response {
    let html = pages::page(words, "503", "<p>Please try again in a minute.</p>");
    (StatusCode::SERVICE_UNAVAILABLE, Html(html)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_always_a_uri() {
        assert_eq!(
            as_uri("https://shop.example/a?b=1#c"),
            "https://shop.example/a?b=1#c"
        );
        assert_eq!(
            as_uri("https://shop.example/a b\r\nSet-Cookie: x"),
            "https://shop.example/a%20b%0D%0ASet-Cookie:%20x"
        );
        assert_eq!(
            as_uri("https://shop.example/müsli%20"),
            "https://shop.example/m%C3%BCsli%20"
        );
        assert!(axum::http::HeaderValue::from_str(&as_uri("https://x.example/\u{7}\"<>")).is_ok());
    }
}
