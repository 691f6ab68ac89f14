//! `/u/TOKEN` when tidings.yaml names `topics:`: a preference centre in the customer's
//! language, a box per topic and "unsubscribe from everything", saved at once by a plain
//! form POST (no script). The one-click POST of RFC 8058 from an email opts out of that
//! email's topic only; without topics, the page is the plain confirmation it was.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;

use super::api::{self, Api, Link, refused};
use super::pages;
use crate::unsubscribe::Unsubscribe;

pub async fn show(state: State<Arc<Api>>, token: Path<String>) -> Response {
    let checked = match state.signer.verify(&token.0, Utc::now()) {
        Ok(c) => c,
        Err(e) => return refused(Link::Unsubscribe, &e),
    };
    if checked.proof {
        return proof(&state, &checked).await;
    }
    if state.topics.is_empty() {
        return api::confirm(state, token).await;
    }
    render(&state, &checked, None).await
}

/// What a proof's link opens: the page as the customer would see it, saying that it is a
/// proof, and nothing changed.
async fn proof(api: &Api, checked: &Unsubscribe) -> Response {
    if api.topics.is_empty() {
        let words = pages::words(None);
        let body = format!(
            "<p role=\"status\"><strong>{}</strong></p>",
            crate::workflow::templates::escape_html(words.proof)
        );
        return Html(pages::page(words, words.prefs_title, &body)).into_response();
    }
    let locale = match api.store.customer(&checked.customer_id).await {
        Ok(Some(c)) => c.locale,
        _ => None,
    };
    render(api, checked, Some(pages::words(locale.as_deref()).proof)).await
}

/// The page with the customer's choices as they stand.
async fn render(api: &Api, checked: &Unsubscribe, notice: Option<&str>) -> Response {
    let customer = match api.store.customer(&checked.customer_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let Ok(out) = api.store.topics_opted_out(&customer.id).await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let words = pages::words(customer.locale.as_deref());
    let everything_off = customer.unsubscribed_at.is_some();
    let topics: Vec<(String, String, bool)> = api
        .topics
        .iter()
        .map(|(name, labels)| {
            let label = labels
                .get(words.lang)
                .or_else(|| labels.get("en"))
                .cloned()
                .unwrap_or_else(|| name.clone());
            (name.clone(), label, !everything_off && !out.contains(name))
        })
        .collect();
    let notice = notice.or(everything_off.then_some(words.all_gone));
    Html(pages::preferences_page(words, &topics, notice)).into_response()
}

/// What the POST asked for.
enum Asked {
    /// RFC 8058's one-click, from the email: its topic, or everything.
    OneClick,
    Everything,
    /// The topics ticked on the page.
    Keep(BTreeSet<String>),
}

fn asked(body: &[u8]) -> Asked {
    let mut action = None;
    let mut ticked = BTreeSet::new();
    let mut one_click = body.is_empty();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "List-Unsubscribe" if v == "One-Click" => one_click = true,
            "action" => action = Some(v.into_owned()),
            "topic" => {
                ticked.insert(v.into_owned());
            }
            _ => {}
        }
    }
    match action.as_deref() {
        Some("everything") => Asked::Everything,
        Some(_) => Asked::Keep(ticked),
        None if one_click => Asked::OneClick,
        None => Asked::Keep(ticked),
    }
}

pub async fn save(state: State<Arc<Api>>, token: Path<String>, body: Bytes) -> Response {
    let checked = match state.signer.verify(&token.0, Utc::now()) {
        Ok(c) => c,
        Err(e) => return refused(Link::Unsubscribe, &e),
    };
    if checked.proof {
        return proof(&state, &checked).await;
    }
    let topic = checked
        .topic
        .clone()
        .filter(|t| state.topics.contains_key(t));
    let (topics, out): (Vec<String>, BTreeSet<String>) = match (asked(&body), topic) {
        (Asked::Everything, _) | (Asked::OneClick, None) => {
            return api::unsubscribe(state, token).await;
        }
        (Asked::OneClick, Some(t)) => (vec![t.clone()], BTreeSet::from([t])),
        (Asked::Keep(ticked), _) => {
            let all: Vec<String> = state.topics.keys().cloned().collect();
            let out = all
                .iter()
                .filter(|t| !ticked.contains(*t))
                .cloned()
                .collect();
            (all, out)
        }
    };
    let api = &state.0;
    match api
        .store
        .set_topics(
            &checked.customer_id,
            &topics,
            &out,
            (checked.delivery.as_deref(), Utc::now()),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => return StatusCode::NOT_FOUND.into_response(),
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
    let words = match api.store.customer(&checked.customer_id).await {
        Ok(Some(c)) => pages::words(c.locale.as_deref()),
        _ => pages::words(None),
    };
    render(api, &checked, Some(words.saved)).await
}
