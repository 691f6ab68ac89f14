//! The journey tables: events waiting to be processed, enrollments and the outbox.
//!
//! These functions take a connection, not the pool, so that the engine can advance an
//! enrollment and write its delivery intent in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

use super::{StoreError, customers, from_millis, millis};
use crate::customer::{Customer, Event};
use crate::workflow::expr::EventHistory;

/// An event as stored, with the customer changes it carries.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: Event,
    pub customer_id: String,
    pub set: Map<String, Value>,
}

/// One customer's place in one workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRow {
    pub id: String,
    pub workflow: String,
    pub customer_id: String,
    pub trigger_key: String,
    pub state: String,
    /// The id of the next step to run; `None` once the journey has ended.
    pub step: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub entered_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub exit_reason: Option<String>,
    pub event_id: Option<String>,
    pub orders_count_at_entry: i64,
    pub total_spent_at_entry: f64,
    pub error: Option<String>,
    /// Bumped on every save; a save that finds another version lost a race.
    pub version: i64,
}

/// A message to send (an email or a webhook call), written before it leaves.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// The idempotency key: workflow, customer, enrollment and step.
    pub id: String,
    pub channel: &'static str,
    pub enrollment_id: String,
    pub workflow: String,
    pub customer_id: String,
    pub step: String,
    pub class: &'static str,
    pub mode: &'static str,
    pub recipient: String,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub payload: Option<String>,
    pub coupon: Option<(String, DateTime<Utc>)>,
    pub message_id: String,
    pub due_at: DateTime<Utc>,
}

pub async fn pending_events(
    conn: &mut AnyConnection,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT * FROM events WHERE processed_at IS NULL AND at <= $1 ORDER BY at, id LIMIT {limit}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(until.timestamp_millis())
        .fetch_all(conn)
        .await?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<StoredEvent, StoreError> {
    let corrupt = |w: &str| StoreError::Corrupt(w.to_string());
    let properties: String = r.try_get("properties")?;
    let changes: String = r.try_get("changes")?;
    let changes: Map<String, Value> =
        serde_json::from_str(&changes).map_err(|_| corrupt("event changes"))?;
    let set = match changes.get("set") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    Ok(StoredEvent {
        event: Event {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            at: from_millis(Some(r.try_get("at")?)).ok_or_else(|| corrupt("event time"))?,
            properties: serde_json::from_str(&properties)
                .map_err(|_| corrupt("event properties"))?,
        },
        customer_id: r.try_get("customer_id")?,
        set,
    })
}

pub async fn event(conn: &mut AnyConnection, id: &str) -> Result<Option<Event>, StoreError> {
    let row = sqlx::query("SELECT * FROM events WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row
        .map(|r| event_from_row(&r))
        .transpose()?
        .map(|e| e.event))
}

pub async fn mark_event_processed(
    conn: &mut AnyConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    mark_events_processed(conn, &[id], at).await
}

/// Marks events processed, a few hundred per statement.
pub async fn mark_events_processed(
    conn: &mut AnyConnection,
    ids: &[&str],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = "UPDATE events SET processed_at = $1 WHERE id IN ({list})";
    super::fetch_in(
        conn,
        sql,
        &[super::Lead::Millis(at.timestamp_millis())],
        ids,
    )
    .await?;
    Ok(())
}

/// When the customer's events happened, by name: what `event_count` reads.
pub async fn history(
    conn: &mut AnyConnection,
    customer_id: &str,
    until: DateTime<Utc>,
) -> Result<EventHistory, StoreError> {
    let rows =
        sqlx::query("SELECT name, at FROM events WHERE customer_id = $1 AND at <= $2 ORDER BY at")
            .bind(customer_id)
            .bind(until.timestamp_millis())
            .fetch_all(conn)
            .await?;
    let mut map: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        if let Some(at) = from_millis(Some(r.try_get(1)?)) {
            map.entry(name).or_default().push(at);
        }
    }
    Ok(EventHistory(map))
}

pub async fn customer(conn: &mut AnyConnection, id: &str) -> Result<Option<Customer>, StoreError> {
    let row = sqlx::query("SELECT * FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| customers::from_row(&r)).transpose()
}

/// A customer read in a transaction that may write them back: on PostgreSQL the row is
/// locked until it commits, so that an unsubscribe (or an API upsert) committed meanwhile
/// is not overwritten by this transaction's older copy. (On SQLite the write transaction
/// already holds the database's one write lock.)
pub async fn customer_for_update(
    conn: &mut AnyConnection,
    backend: super::Backend,
    id: &str,
) -> Result<Option<Customer>, StoreError> {
    let sql = match backend {
        super::Backend::Postgres => "SELECT * FROM customers WHERE id = $1 FOR UPDATE",
        super::Backend::Sqlite => "SELECT * FROM customers WHERE id = $1",
    };
    let row = sqlx::query(sql).bind(id).fetch_optional(conn).await?;
    row.map(|r| customers::from_row(&r)).transpose()
}

/// Writes every field of a customer back (after an event's `set` or an `update` step).
pub async fn save_customer(
    conn: &mut AnyConnection,
    c: &Customer,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE customers SET email = $1, first_name = $2, last_name = $3, locale = $4, timezone = $5, birthday = $6, created_at = $7, last_order_at = $8, orders_count = $9, total_spent = $10, tags = $11, unsubscribed_at = $12, attributes = $13, updated_at = $14 WHERE id = $15",
    )
    .bind(c.email.clone())
    .bind(c.first_name.clone())
    .bind(c.last_name.clone())
    .bind(c.locale.clone())
    .bind(c.timezone.clone())
    .bind(c.birthday.map(|d| d.to_string()))
    .bind(millis(c.created_at))
    .bind(millis(c.last_order_at))
    .bind(c.orders_count)
    .bind(c.total_spent)
    .bind(serde_json::to_string(&c.tags).unwrap_or_else(|_| "[]".into()))
    .bind(millis(c.unsubscribed_at))
    .bind(Value::Object(c.attributes.clone()).to_string())
    .bind(now.timestamp_millis())
    .bind(c.id.clone())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn is_suppressed(conn: &mut AnyConnection, email: &str) -> Result<bool, StoreError> {
    Ok(sqlx::query("SELECT 1 FROM suppressions WHERE email = $1")
        .bind(email.to_lowercase())
        .fetch_optional(conn)
        .await?
        .is_some())
}

/// The customers with these ids, by id, read in a transaction that may write them back
/// (locked on PostgreSQL, in id order so that two workers lock shared customers alike).
pub async fn customers_for_update(
    conn: &mut AnyConnection,
    backend: super::Backend,
    ids: &[&str],
) -> Result<HashMap<String, Customer>, StoreError> {
    let sql = match backend {
        super::Backend::Postgres => {
            "SELECT * FROM customers WHERE id IN ({list}) ORDER BY id FOR UPDATE"
        }
        super::Backend::Sqlite => "SELECT * FROM customers WHERE id IN ({list}) ORDER BY id",
    };
    let sql = customers::select(&*conn, sql);
    let rows = super::fetch_in(&mut *conn, &sql, &[], ids).await?;
    Ok(customers::decode(conn, &rows)
        .await?
        .into_iter()
        .map(|(c, _)| (c.id.clone(), c))
        .collect())
}

/// Which of these addresses are on the suppression list (lowercased), each with why.
pub async fn suppressed_among(
    conn: &mut AnyConnection,
    emails: &[&str],
) -> Result<HashMap<String, String>, StoreError> {
    let lower: BTreeSet<String> = emails.iter().map(|e| e.to_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let sql = "SELECT email, reason FROM suppressions WHERE email IN ({list})";
    super::fetch_in(conn, sql, &[], &lower)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// When each of these customers last entered the workflow (those who never did are
/// absent), for the re-entry rule.
pub async fn last_entries(
    conn: &mut AnyConnection,
    workflow: &str,
    ids: &[&str],
) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
    let sql = "SELECT customer_id, MAX(entered_at) FROM enrollments WHERE workflow = $1 AND customer_id IN ({list}) GROUP BY customer_id";
    let mut out = HashMap::new();
    for row in super::fetch_in(conn, sql, &[super::Lead::Text(workflow)], ids).await? {
        if let Some(at) = from_millis(row.try_get::<Option<i64>, _>(1)?) {
            out.insert(row.try_get::<String, _>(0)?, at);
        }
    }
    Ok(out)
}

/// When the customer last entered the workflow, for the re-entry rule.
pub async fn last_entry(
    conn: &mut AnyConnection,
    workflow: &str,
    customer_id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = sqlx::query(
        "SELECT MAX(entered_at) FROM enrollments WHERE workflow = $1 AND customer_id = $2",
    )
    .bind(workflow)
    .bind(customer_id)
    .fetch_one(conn)
    .await?;
    Ok(from_millis(row.try_get::<Option<i64>, _>(0)?))
}

/// Inserts enrollments, a hundred per statement; returns how many were new (a customer
/// this trigger enrolled before is skipped).
pub async fn insert_enrollments(
    conn: &mut AnyConnection,
    rows: &[EnrollmentRow],
) -> Result<u64, StoreError> {
    let sql = "INSERT INTO enrollments (id, workflow, customer_id, trigger_key, state, step, due_at, entered_at, event_id, orders_count_at_entry, total_spent_at_entry, version) VALUES {values} ON CONFLICT DO NOTHING";
    let inserted = super::count_rows(conn, sql, 11, ", 0", rows, |q, e| {
        q.bind(e.id.clone())
            .bind(e.workflow.clone())
            .bind(e.customer_id.clone())
            .bind(e.trigger_key.clone())
            .bind(e.state.clone())
            .bind(e.step.clone())
            .bind(millis(e.due_at))
            .bind(e.entered_at.timestamp_millis())
            .bind(e.event_id.clone())
            .bind(e.orders_count_at_entry)
            .bind(e.total_spent_at_entry)
    })
    .await?;
    Ok(inserted)
}

/// Who may take a due journey, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// The wall clock now (leases are about processes, not a pass's virtual time).
    pub now: DateTime<Utc>,
    /// Until when the claim holds.
    pub until: DateTime<Utc>,
    /// The only worker on this store (SQLite): any lease left is a stopped run's, and
    /// lapses at once.
    pub sole: bool,
}

/// Claims up to `limit` active enrollments due by `due_by`, oldest first, that no live
/// lease holds. On PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so replicas
/// claiming at once take different rows without waiting for each other. Each claim bumps
/// the row's version — the fencing token `save_enrollment` checks — so a worker that
/// outlives its lease cannot commit over the one that took the row after it.
pub async fn claim_due(
    conn: &mut AnyConnection,
    backend: super::Backend,
    due_by: DateTime<Utc>,
    limit: i64,
    lease: Lease,
) -> Result<Vec<EnrollmentRow>, StoreError> {
    let lock = match backend {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE enrollments SET lease_until = $1, version = version + 1 WHERE id IN (SELECT id FROM enrollments WHERE state = 'active' AND due_at <= $2 AND (lease_until IS NULL OR lease_until < $3) ORDER BY due_at, id LIMIT {limit}{lock}) RETURNING *"
    );
    let free_after = if lease.sole {
        i64::MAX
    } else {
        lease.now.timestamp_millis()
    };
    // The statement's text is fixed here but for the lock clause.
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(lease.until.timestamp_millis())
        .bind(due_by.timestamp_millis())
        .bind(free_after)
        .fetch_all(conn)
        .await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(EnrollmentRow {
                id: r.try_get("id")?,
                workflow: r.try_get("workflow")?,
                customer_id: r.try_get("customer_id")?,
                trigger_key: r.try_get("trigger_key")?,
                state: r.try_get("state")?,
                step: r.try_get("step")?,
                due_at: from_millis(r.try_get("due_at")?),
                entered_at: from_millis(Some(r.try_get("entered_at")?)).unwrap_or_default(),
                ended_at: from_millis(r.try_get("ended_at")?),
                exit_reason: r.try_get("exit_reason")?,
                event_id: r.try_get("event_id")?,
                orders_count_at_entry: r.try_get("orders_count_at_entry")?,
                total_spent_at_entry: r.try_get("total_spent_at_entry")?,
                error: r.try_get("error")?,
                version: r.try_get("version")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    out.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    Ok(out)
}

/// Saves an enrollment if nobody else did since it was read; `false` means it lost.
pub async fn save_enrollment(
    conn: &mut AnyConnection,
    e: &EnrollmentRow,
) -> Result<bool, StoreError> {
    Ok(save_enrollments(conn, std::slice::from_ref(e)).await? == 1)
}

/// Saves enrollments, a hundred per statement, each only if nobody else saved it since it
/// was read (its `version` is unchanged); returns how many were saved.
pub async fn save_enrollments(
    conn: &mut AnyConnection,
    rows: &[EnrollmentRow],
) -> Result<u64, StoreError> {
    // A `VALUES` list names its columns column1, column2, … on SQLite and PostgreSQL.
    let sql = "UPDATE enrollments SET state = v.column2, step = v.column3, due_at = v.column4, ended_at = v.column5, exit_reason = v.column6, error = v.column7, version = version + 1, lease_until = NULL FROM (VALUES {values}) AS v WHERE enrollments.id = v.column1 AND enrollments.version = v.column8";
    let saved = super::count_rows(conn, sql, 8, "", rows, |q, e| {
        q.bind(e.id.clone())
            .bind(e.state.clone())
            .bind(e.step.clone())
            .bind(millis(e.due_at))
            .bind(millis(e.ended_at))
            .bind(e.exit_reason.clone())
            .bind(e.error.clone())
            .bind(e.version)
    })
    .await?;
    Ok(saved)
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
    let sql = "INSERT INTO deliveries (id, channel, enrollment_id, workflow, customer_id, step, class, mode, recipient, subject, coupon_code, message_id, due_at, created_at, state, attempts) VALUES {values} ON CONFLICT DO NOTHING RETURNING id";
    let written = super::for_rows(conn, sql, 14, ", 'pending', 0", ds, |q, d| {
        q.bind(d.id.clone())
            .bind(d.channel)
            .bind(d.enrollment_id.clone())
            .bind(d.workflow.clone())
            .bind(d.customer_id.clone())
            .bind(d.step.clone())
            .bind(d.class)
            .bind(d.mode)
            .bind(d.recipient.clone())
            .bind(d.subject.clone())
            .bind(d.coupon.as_ref().map(|c| c.0.clone()))
            .bind(d.message_id.clone())
            .bind(d.due_at.timestamp_millis())
            .bind(d.due_at.timestamp_millis())
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
    pub channel: String,
    pub workflow: String,
    pub customer_id: String,
    pub step: String,
    pub recipient: String,
    pub subject: Option<String>,
    pub html: Option<String>,
    pub text: Option<String>,
    pub coupon_code: Option<String>,
    pub message_id: String,
    pub state: String,
    pub due_at: DateTime<Utc>,
    pub class: String,
    pub payload: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub mode: String,
    pub created_at: DateTime<Utc>,
}

/// Records an event the store itself raises (an unsubscribe, a change of stage), to be
/// processed by the next pass like any other; an id seen before is not recorded again.
pub async fn insert_event(
    conn: &mut AnyConnection,
    id: &str,
    customer_id: &str,
    name: &str,
    at: DateTime<Utc>,
    properties: &Value,
) -> Result<(), StoreError> {
    let event = RaisedEvent {
        id: id.to_string(),
        customer_id,
        name,
        at,
        properties: properties.to_string(),
    };
    insert_events(conn, &[event]).await
}

/// An event the store raises itself, as [`insert_events`] writes it.
pub struct RaisedEvent<'a> {
    pub id: String,
    pub customer_id: &'a str,
    pub name: &'a str,
    pub at: DateTime<Utc>,
    /// A JSON object.
    pub properties: String,
}

/// Records events the store raises, a hundred per statement (see [`insert_event`]).
pub async fn insert_events(
    conn: &mut AnyConnection,
    events: &[RaisedEvent<'_>],
) -> Result<(), StoreError> {
    let sql = "INSERT INTO events (id, customer_id, name, at, properties, recorded_at, changes) VALUES {values} ON CONFLICT (id) DO NOTHING";
    super::count_rows(conn, sql, 6, ", '{}'", events, |q, e| {
        q.bind(e.id.clone())
            .bind(e.customer_id)
            .bind(e.name)
            .bind(e.at.timestamp_millis())
            .bind(e.properties.clone())
            .bind(e.at.timestamp_millis())
    })
    .await?;
    Ok(())
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

/// The emails sent so far, in the order they left.
pub async fn sent_emails(conn: &mut AnyConnection) -> Result<Vec<SentEmail>, StoreError> {
    let rows = sqlx::query("SELECT id, step, customer_id, recipient, subject, coupon_code, sent_at FROM deliveries WHERE channel = 'email' AND state = 'sent' ORDER BY sent_at, id")
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
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(conn)
        .await?;
    delivery_rows(&rows)
}

pub(crate) fn delivery_rows(rows: &[sqlx::any::AnyRow]) -> Result<Vec<DeliveryRow>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(DeliveryRow {
                id: r.try_get("id")?,
                channel: r.try_get("channel")?,
                workflow: r.try_get("workflow")?,
                customer_id: r.try_get("customer_id")?,
                step: r.try_get("step")?,
                recipient: r.try_get("recipient")?,
                subject: r.try_get("subject")?,
                html: r.try_get("html")?,
                text: r.try_get("text")?,
                coupon_code: r.try_get("coupon_code")?,
                message_id: r.try_get("message_id")?,
                state: r.try_get("state")?,
                due_at: from_millis(Some(r.try_get("due_at")?)).unwrap_or_default(),
                class: r.try_get("class")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
                mode: r.try_get("mode")?,
                created_at: from_millis(Some(r.try_get("created_at")?)).unwrap_or_default(),
            })
        })
        .collect()
}

/// Every enrollment, for tests and `status`.
pub async fn enrollments(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String, String, Option<String>, Option<String>)>, StoreError> {
    let rows = sqlx::query("SELECT workflow, customer_id, state, exit_reason, error FROM enrollments ORDER BY workflow, customer_id, entered_at")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
            ))
        })
        .collect()
}

/// A page of customers after `after_id`, in id order: how triggers stream the whole table
/// without holding it, or a read cursor, in memory.
pub async fn customers_page(
    conn: &mut AnyConnection,
    after_id: &str,
    limit: i64,
    filter: &CustomerFilter,
    audience: &crate::workflow::expr::pushdown::SqlFilter,
) -> Result<Vec<Customer>, StoreError> {
    let (condition, values): (String, Vec<String>) = match filter {
        CustomerFilter::All => (String::new(), Vec::new()),
        CustomerFilter::Zone(None) => (" AND timezone IS NULL".into(), Vec::new()),
        CustomerFilter::Zone(Some(z)) => (" AND timezone = $2".into(), vec![z.clone()]),
        CustomerFilter::BirthdayOn(zones) => {
            let mut values = Vec::new();
            let mut mark = |v: &str| {
                values.push(v.to_string());
                format!("${}", values.len() + 1)
            };
            // Every day at once first, which the birthday index answers; then each zone's.
            let mut days: Vec<&String> = zones.iter().flat_map(|(_, d)| d).collect();
            days.sort();
            days.dedup();
            let any_day: Vec<String> = days.into_iter().map(|d| mark(d)).collect();
            let each_zone: Vec<String> = zones
                .iter()
                .map(|(zone, days)| {
                    let zone = match zone {
                        None => "timezone IS NULL".to_string(),
                        Some(z) => format!("timezone = {}", mark(z)),
                    };
                    let days: Vec<String> = days.iter().map(|d| mark(d)).collect();
                    format!(
                        "({zone} AND substr(birthday, 6, 5) IN ({}))",
                        days.join(", ")
                    )
                })
                .collect();
            let condition = match each_zone.is_empty() {
                true => " AND 1 = 0".to_string(),
                false => format!(
                    " AND substr(birthday, 6, 5) IN ({}) AND ({})",
                    any_day.join(", "),
                    each_zone.join(" OR ")
                ),
            };
            (condition, values)
        }
    };
    let (pushed, pushed_values) = audience.clause(2 + values.len());
    // The conditions' text comes from this function and `SqlFilter` only; values are bound.
    let sql = customers::select(
        conn,
        &format!(
            "SELECT * FROM customers WHERE id > $1{condition}{pushed} ORDER BY id LIMIT {limit}"
        ),
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after_id.to_string());
    for v in values {
        q = q.bind(v);
    }
    for v in pushed_values {
        q = match v {
            crate::workflow::expr::pushdown::SqlValue::Int(n) => q.bind(n),
            crate::workflow::expr::pushdown::SqlValue::Float(f) => q.bind(f),
            crate::workflow::expr::pushdown::SqlValue::Text(t) => q.bind(t),
        };
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let page = customers::decode(conn, &rows).await?;
    Ok(page.into_iter().map(|(c, _)| c).collect())
}

/// Which customers a trigger needs to look at: the part of its rule the database can
/// answer, so that a pass does not read every customer to find today's birthdays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerFilter {
    All,
    /// Customers whose `timezone` is this (`None`: customers without one).
    Zone(Option<String>),
    /// Customers in each of these zones (`None`: without one) whose birthday falls on one
    /// of its `MM-DD` days, in any year; nobody when there are none.
    BirthdayOn(Vec<(Option<String>, Vec<String>)>),
}

/// The last fire time (or date-trigger pass) recorded for a schedule key.
pub async fn last_fire(
    conn: &mut AnyConnection,
    key: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = sqlx::query("SELECT MAX(fire_at) FROM schedule_fires WHERE workflow = $1")
        .bind(key)
        .fetch_one(conn)
        .await?;
    Ok(from_millis(row.try_get::<Option<i64>, _>(0)?))
}

/// Records that a fire time's enrollments are written (or that a pass saw up to `at`);
/// recording it twice, as two replicas may, is harmless.
pub async fn record_fire(
    conn: &mut AnyConnection,
    key: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO schedule_fires (workflow, fire_at, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(key)
        .bind(at.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Records an audience that failed for one customer, so the error is seen, not lost.
pub async fn insert_failed_enrollment(
    conn: &mut AnyConnection,
    e: &EnrollmentRow,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "INSERT INTO enrollments (id, workflow, customer_id, trigger_key, state, entered_at, ended_at, orders_count_at_entry, total_spent_at_entry, error, version) VALUES ($1, $2, $3, $4, 'failed', $5, $5, $6, $7, $8, 0) ON CONFLICT DO NOTHING",
    )
    .bind(e.id.clone())
    .bind(e.workflow.clone())
    .bind(e.customer_id.clone())
    .bind(e.trigger_key.clone())
    .bind(e.entered_at.timestamp_millis())
    .bind(e.orders_count_at_entry)
    .bind(e.total_spent_at_entry)
    .bind(e.error.clone())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// The distinct zones customers are in (`None` for customers without one).
pub async fn customer_zones(conn: &mut AnyConnection) -> Result<Vec<Option<String>>, StoreError> {
    // Zone by zone along the `customers (timezone)` index, a seek each, where `DISTINCT`
    // read the whole index: every pass asks, and a store holds few zones and many customers.
    let rows = sqlx::query(
        "WITH RECURSIVE zones (tz) AS (
            SELECT (SELECT timezone FROM customers WHERE timezone IS NOT NULL ORDER BY timezone LIMIT 1)
            UNION ALL
            SELECT (SELECT timezone FROM customers WHERE timezone > zones.tz ORDER BY timezone LIMIT 1) FROM zones WHERE zones.tz IS NOT NULL
        )
        SELECT tz FROM zones WHERE tz IS NOT NULL
        UNION ALL
        SELECT NULL WHERE EXISTS (SELECT 1 FROM customers WHERE timezone IS NULL)",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<Option<String>, _>(0)?))
        .collect()
}

/// When the customer's marketing emails were (or will be) sent since `since`, oldest
/// first: what the frequency cap counts.
pub async fn marketing_sends_since(
    conn: &mut AnyConnection,
    customer_id: &str,
    since: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    let rows = sqlx::query(
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
async fn insert_bodies(conn: &mut AnyConnection, ds: &[&NewDelivery]) -> Result<(), StoreError> {
    let sql = "INSERT INTO delivery_bodies (delivery_id, html, text, payload) VALUES {values}";
    super::count_rows(conn, sql, 4, "", ds, |q, d| {
        q.bind(d.id.clone())
            .bind(d.html.clone())
            .bind(d.text.clone())
            .bind(d.payload.clone())
    })
    .await?;
    Ok(())
}

/// What a delivery carries lives beside it in `delivery_bodies`: `SELECT {WITH_BODIES}
/// WHERE …` reads both, as [`delivery_rows`] expects.
pub(crate) const WITH_BODIES: &str = "deliveries.*, b.html, b.text, b.payload FROM deliveries LEFT JOIN delivery_bodies b ON b.delivery_id = deliveries.id";

/// Fills in what claimed deliveries carry (a claim's `RETURNING` cannot join).
pub(crate) async fn fill_bodies(
    conn: &mut AnyConnection,
    rows: &mut [DeliveryRow],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let found = super::fetch_in(
        conn,
        "SELECT delivery_id, html, text, payload FROM delivery_bodies WHERE delivery_id IN ({list})",
        &[],
        &ids,
    )
    .await?;
    let mut bodies = HashMap::new();
    for r in found {
        let id: String = r.try_get(0)?;
        bodies.insert(id, (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
    }
    for row in rows {
        if let Some((html, text, payload)) = bodies.remove(&row.id) {
            (row.html, row.text, row.payload) = (html, text, payload);
        }
    }
    Ok(())
}

/// Records an email step that a rule skipped, so that it shows in reports instead of
/// vanishing.
pub async fn insert_skipped(
    conn: &mut AnyConnection,
    d: &NewDelivery,
    reason: &str,
) -> Result<(), StoreError> {
    let mut skipped = d.clone();
    skipped.coupon = None;
    if insert_delivery(conn, &skipped).await? {
        sqlx::query("UPDATE deliveries SET state = 'skipped', last_error = $1 WHERE id = $2")
            .bind(reason)
            .bind(d.id.clone())
            .execute(conn)
            .await?;
    }
    Ok(())
}
