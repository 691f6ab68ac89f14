//! The outbox as the engine writes it: deliveries with their bodies, in the transaction
//! that moves the journey on; and the reads of what was sent.

use super::{StoreError, from_millis};
use crate::model::payload::Payload;
use crate::model::states::{Channel, DeliveryState};
use crate::model::states::{DeliveryMode, MailClass};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};
use std::collections::{HashMap, HashSet};

/// A message to send (an email or a webhook call), written before it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The idempotency key: workflow, customer, enrollment and step.
    pub id: String,
    pub channel: Channel,
    pub enrollment_id: String,
    pub workflow: String,
    pub customer_id: String,
    pub step: String,
    pub class: MailClass,
    pub mode: DeliveryMode,
    pub recipient: String,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub payload: Option<Payload>,
    pub coupon: Option<(String, DateTime<Utc>)>,
    pub message_id: String,
    pub due_at: DateTime<Utc>,
    /// When the event that made it due at once was accepted; `None` for anything else.
    pub accepted_at: Option<DateTime<Utc>>,
    /// `SPLIT/VARIANT` of the journey when it was composed (`X-Tidings-Variant`).
    pub variant: Option<String>,
}

/// Writes a delivery and reserves its coupon; `false` when the key was written before.
pub async fn insert_delivery(
    conn: &mut AnyConnection,
    d: &NewDelivery,
) -> Result<bool, StoreError> {
    Ok(!insert_deliveries(conn, std::slice::from_ref(d))
        .await?
        .is_empty())
}

/// Writes deliveries, a hundred per statement, and reserves their coupons; returns the ids
/// that were new (a key written before is left as it was). A delivery is created at the
/// moment it is due: the step that queued it ran then, on the pass's clock.
pub async fn insert_deliveries(
    conn: &mut AnyConnection,
    ds: &[NewDelivery],
) -> Result<HashSet<String>, StoreError> {
    let sql = "INSERT INTO deliveries (id, channel, enrollment_id, workflow, customer_id, step, class, mode, recipient, subject, coupon_code, message_id, due_at, created_at, accepted_at, variant, state, attempts) VALUES {values} ON CONFLICT DO NOTHING RETURNING id";
    let written = super::for_rows(conn, sql, 16, ", 'pending', 0", ds, |q, d| {
        q.bind(d.id.clone())
            .bind(d.channel.as_str())
            .bind(d.enrollment_id.clone())
            .bind(d.workflow.clone())
            .bind(d.customer_id.clone())
            .bind(d.step.clone())
            .bind(d.class.as_str())
            .bind(d.mode.as_str())
            .bind(d.recipient.clone())
            .bind(d.subject.clone())
            .bind(d.coupon.as_ref().map(|c| c.0.clone()))
            .bind(d.message_id.clone())
            .bind(d.due_at.timestamp_millis())
            .bind(d.due_at.timestamp_millis())
            .bind(super::millis(d.accepted_at))
            .bind(d.variant.clone())
    })
    .await?;
    let new = written
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<HashSet<_>, _>>()?;
    let new_ones: Vec<&NewDelivery> = ds.iter().filter(|d| new.contains(&d.id)).collect();
    insert_bodies(conn, &new_ones).await?;
    let coupons: Vec<(&NewDelivery, &(String, DateTime<Utc>))> = new_ones
        .iter()
        .filter_map(|d| Some((*d, d.coupon.as_ref()?)))
        .collect();
    let sql = "INSERT INTO coupons (code, delivery_id, customer_id, workflow, expires_at, state) VALUES {values}";
    super::count_rows(
        conn,
        sql,
        5,
        ", 'reserved'",
        &coupons,
        |q, (d, (code, expires))| {
            q.bind(code.as_str())
                .bind(d.id.as_str())
                .bind(d.customer_id.as_str())
                .bind(d.workflow.as_str())
                .bind(expires.timestamp_millis())
        },
    )
    .await?;
    Ok(new)
}

/// A delivery as the tests and `outbox` read it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub channel: Channel,
    pub workflow: String,
    pub customer_id: String,
    pub step: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub coupon_code: Option<String>,
    pub message_id: String,
    pub state: DeliveryState,
    pub due_at: DateTime<Utc>,
    pub class: MailClass,
    pub payload: Option<Payload>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub mode: DeliveryMode,
    pub created_at: DateTime<Utc>,
    /// See [`NewDelivery::accepted_at`].
    pub accepted_at: Option<DateTime<Utc>>,
    pub variant: Option<String>,
}

/// One email a test case sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentEmail {
    pub id: String,
    pub step: String,
    /// The template, filled in by the caller from the plan (the outbox keeps the step).
    pub template: String,
    pub customer_id: String,
    pub to: String,
    pub subject: String,
    pub coupon: Option<String>,
    pub at: DateTime<Utc>,
}

/// The coupons reserved by the emails of these delivery keys: code and expiry
/// (milliseconds), by key. An email shows an earlier step's coupon (`coupons.deal.code`) by
/// its email's key, so a rehearsal that did not copy the old email still finds its coupon.
pub async fn coupons_by_key(
    conn: &mut AnyConnection,
    keys: &[&str],
) -> Result<HashMap<String, (String, i64)>, StoreError> {
    let sql = "SELECT delivery_id, code, expires_at FROM coupons WHERE delivery_id IN ({list})";
    let rows = super::fetch_in(conn, sql, &[], keys).await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
        .collect()
}

/// A coupon as a template sees it: `{ "code", "expires_at" }` (the expiry's date).
pub fn coupon_value(code: &str, expires_ms: i64) -> serde_json::Value {
    let expires = super::from_millis(Some(expires_ms))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    serde_json::json!({ "code": code, "expires_at": expires })
}

/// What an email said: its HTML and text bodies.
pub async fn bodies(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let row = super::sql::query("SELECT html, text FROM delivery_bodies WHERE delivery_id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => (r.try_get(0)?, r.try_get(1)?),
        None => (None, None),
    })
}

/// The emails sent so far, in the order they left.
pub async fn sent_emails(conn: &mut AnyConnection) -> Result<Vec<SentEmail>, StoreError> {
    let rows = super::sql::query("SELECT id, step, customer_id, recipient, subject, coupon_code, sent_at FROM deliveries WHERE channel = 'email' AND state = 'sent' ORDER BY sent_at, id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SentEmail {
                id: r.try_get(0)?,
                step: r.try_get(1)?,
                template: String::new(),
                customer_id: r.try_get(2)?,
                to: r.try_get(3)?,
                subject: r.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
                coupon: r.try_get(5)?,
                at: r
                    .try_get::<Option<i64>, _>(6)?
                    .and_then(DateTime::from_timestamp_millis)
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub async fn deliveries(conn: &mut AnyConnection) -> Result<Vec<DeliveryRow>, StoreError> {
    let sql = format!("SELECT {WITH_BODIES} ORDER BY due_at, id");
    let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?;
    delivery_rows(&rows)
}

pub(crate) fn delivery_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<DeliveryRow>, StoreError> {
    rows.iter()
        .map(|r| {
            let channel: Channel = r.try_get::<String, _>("channel")?.parse()?;
            let payload: Option<String> = r.try_get("payload")?;
            Ok(DeliveryRow {
                id: r.try_get("id")?,
                channel,
                workflow: r.try_get("workflow")?,
                customer_id: r.try_get("customer_id")?,
                step: r.try_get("step")?,
                recipient: r.try_get("recipient")?,
                subject: r.try_get("subject")?,
                html: r.try_get("html")?,
                text: r.try_get("text")?,
                coupon_code: r.try_get("coupon_code")?,
                message_id: r.try_get("message_id")?,
                state: r.try_get::<String, _>("state")?.parse()?,
                due_at: from_millis(Some(r.try_get("due_at")?)).unwrap_or_default(),
                class: r.try_get::<String, _>("class")?.parse()?,
                payload: payload.map(|p| Payload::from_json(channel, &p)),
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                mode: r.try_get::<String, _>("mode")?.parse()?,
                created_at: from_millis(Some(r.try_get("created_at")?)).unwrap_or_default(),
                accepted_at: from_millis(r.try_get("accepted_at")?),
                variant: r.try_get("variant")?,
            })
        })
        .collect()
}

/// When the customer's marketing emails were (or will be) sent since `since`, oldest
/// first: what the frequency cap counts.
pub async fn marketing_sends_since(
    conn: &mut AnyConnection,
    customer_id: &str,
    since: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let rows = super::sql::query(
        "SELECT due_at FROM deliveries WHERE customer_id = $1 AND channel = 'email' AND class = 'marketing' AND state IN ('pending', 'sending', 'sent', 'retrying', 'unknown') AND due_at > $2 ORDER BY due_at",
    )
    .bind(customer_id)
    .bind(since.timestamp_millis())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            from_millis(Some(r.try_get(0)?))
                .ok_or_else(|| StoreError::Corrupt("delivery time".into()))
        })
        .collect()
}

/// Writes what new deliveries carry (HTML, text, a webhook's payload).
pub(super) async fn insert_bodies(
    conn: &mut AnyConnection,
    ds: &[&NewDelivery],
) -> Result<(), StoreError> {
    let sql = "INSERT INTO delivery_bodies (delivery_id, html, text, payload) VALUES {values}";
    super::count_rows(conn, sql, 4, "", ds, |q, d| {
        q.bind(d.id.clone())
            .bind(d.html.clone())
            .bind(d.text.clone())
            .bind(d.payload.as_ref().and_then(Payload::to_json))
    })
    .await?;
    Ok(())
}

/// What a delivery carries lives beside it in `delivery_bodies`: `SELECT {WITH_BODIES}
/// WHERE …` reads both, as [`delivery_rows`] expects.
pub(crate) const WITH_BODIES: &str = "deliveries.*, b.html, b.text, b.payload FROM deliveries LEFT JOIN delivery_bodies b ON b.delivery_id = deliveries.id";
