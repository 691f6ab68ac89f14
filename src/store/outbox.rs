//! The outbox's send-side states: a pending email is claimed (`sending`, with a lease), then
//! ends `sent`, `retrying` (at a later `due_at`), `failed`, `suppressed`, or — for
//! `at_most_once` mail whose sender died mid-send — `unknown`.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use sqlx::AnyConnection;

use super::StoreError;
use super::deliveries::DeliveryRow;
use super::deliveries::WITH_BODIES;
use super::deliveries::delivery_rows;
use super::deliveries::fill_bodies;
use crate::model::states::DeliveryState;
use crate::model::states::MailClass;

/// Puts back the emails a dead sender left in `sending`: those whose lease ran out before
/// `expired_before` (every one, when the caller is the only sender). `at_least_once` mail
/// goes back to the queue and will be sent again with the same Message-ID;
/// `at_most_once` mail becomes `unknown` and is not sent again. Returns (requeued, unknown).
pub async fn recover_interrupted(
    conn: &mut AnyConnection,
    expired_before: Option<DateTime<Utc>>,
) -> Result<(u64, u64), StoreError> {
    let bound = expired_before.map_or(i64::MAX, |t| t.timestamp_millis());
    // One statement for both kinds: it runs at every dispatch and nearly always finds
    // nothing.
    let rows = super::sql::query("UPDATE deliveries SET state = CASE WHEN mode = 'at_most_once' THEN 'unknown' ELSE 'retrying' END, last_error = CASE WHEN mode = 'at_most_once' THEN 'the sender stopped while this email was being sent; with `delivery: at_most_once` it is not sent again' ELSE 'the sender stopped while this email was being sent; sent again with the same Message-ID' END WHERE state = 'sending' AND lease_until < $1 RETURNING state")
        .bind(bound)
        .fetch_all(conn)
        .await?;
    let mut unknown = 0;
    for r in &rows {
        if sqlx::Row::try_get::<String, _>(r, 0)? == "unknown" {
            unknown += 1;
        }
    }
    let requeued = rows.len() as u64 - unknown;
    Ok((requeued, unknown))
}

/// Deliveries of a channel (`email`, `webhook`) due by `now` and waiting to go (new or to
/// be retried), oldest first.
pub async fn due(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    due_where(conn, channel, now, limit, "").await
}

/// [`due`], narrowed by a condition of this module's own.
async fn due_where(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
    limit: i64,
    condition: &'static str,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut rows = Vec::new();
    for state in QUEUED {
        // One state at a time, named in the text: each has an index of its own.
        let sql = format!(
            "SELECT {WITH_BODIES} WHERE channel = $1 AND state = '{state}' AND due_at <= $2{condition} ORDER BY due_at, id LIMIT {limit}"
        );
        let found = super::sql::query(sqlx::AssertSqlSafe(sql))
            .bind(channel.as_ref().to_string())
            .bind(now.timestamp_millis())
            .fetch_all(&mut *conn)
            .await?;
        rows.extend(delivery_rows(&found)?);
    }
    rows.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(rows)
}

/// Whether any delivery of a channel is due by `now`, in either mode: one statement, where
/// claiming finds nothing in four (two states, two modes). Most passes send nothing; each
/// `EXISTS` is a seek in its state's partial index, its mode named so the seek reaches the
/// due times.
pub async fn any_due(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let exists: Vec<String> = QUEUED
        .iter()
        .flat_map(|state| {
            ["at_least_once", "at_most_once"].map(|mode| {
                format!(
                    "EXISTS (SELECT 1 FROM deliveries WHERE channel = $1 AND mode = '{mode}' AND state = '{state}' AND due_at <= $2)"
                )
            })
        })
        .collect();
    // The statement's text is fixed here but for the states and modes.
    let sql = format!("SELECT CASE WHEN {} THEN 1 ELSE 0 END", exists.join(" OR "));
    let due: i64 = super::sql::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(channel.as_ref().to_string())
        .bind(now.timestamp_millis())
        .fetch_one(conn)
        .await?;
    Ok(due == 1)
}

/// The states of a delivery waiting to go, those waiting for a retry first. Each has a
/// partial index (`deliveries_retrying`, `deliveries_queued`, migration 9) holding only its
/// rows, by channel, mode and due time: a claim reads them in order and stops at its limit,
/// where one `state IN (…)` sorted every queued email, and a sent email leaves the index.
const QUEUED: [&str; 2] = ["retrying", "pending"];

/// Claims, in one commit, up to `limit` due `at_least_once` deliveries of a channel for
/// sending until `lease_until`: those waiting for a retry first, then new ones, each oldest
/// first, a statement each (see [`QUEUED`]). A claimed email that dies with
/// its sender goes back to the queue and is sent again with the same Message-ID, so a claim
/// need not be committed right before each send; `at_most_once` mail is claimed one email
/// at a time instead ([`claim`]), since what it leaves in `sending` is never sent again.
/// `attempts` in the rows returned counts the attempts before this one.
pub async fn claim_due(
    conn: &mut AnyConnection,
    backend: super::Backend,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
    limit: i64,
    lease_until: DateTime<Utc>,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let lock = match backend {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    let mut rows = Vec::new();
    for state in QUEUED {
        let room = limit - rows.len() as i64;
        if room <= 0 {
            break;
        }
        // The statement's text is fixed here but for the state and the lock clause.
        let sql = format!(
            "UPDATE deliveries SET state = 'sending', lease_until = $1, attempts = attempts + 1 WHERE id IN (SELECT id FROM deliveries WHERE channel = $2 AND mode = 'at_least_once' AND state = '{state}' AND due_at <= $3 ORDER BY due_at, id LIMIT {room}{lock}) RETURNING *, CAST(NULL AS TEXT) AS html, CAST(NULL AS TEXT) AS text, CAST(NULL AS TEXT) AS payload"
        );
        let claimed = super::sql::query(sqlx::AssertSqlSafe(sql))
            .bind(lease_until.timestamp_millis())
            .bind(channel.as_ref().to_string())
            .bind(now.timestamp_millis())
            .fetch_all(&mut *conn)
            .await?;
        rows.extend(delivery_rows(&claimed)?);
    }
    for row in &mut rows {
        row.attempts -= 1;
    }
    fill_bodies(conn, &mut rows).await?;
    rows.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    Ok(rows)
}

/// Deliveries of a channel in `at_most_once` mode due by `now`, oldest first: each is
/// claimed on its own right before it leaves.
pub async fn due_at_most_once(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    due_where(conn, channel, now, limit, " AND mode = 'at_most_once'").await
}

/// Records many claimed emails as sent in one statement per few hundred.
pub async fn finish_sent(
    conn: &mut AnyConnection,
    ids: &[String],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = "UPDATE deliveries SET state = 'sent', last_error = NULL, sent_at = $1, lease_until = NULL WHERE id IN ({list})";
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    super::fetch_in(
        conn,
        sql,
        &[super::Lead::Millis(at.timestamp_millis())],
        &ids,
    )
    .await?;
    Ok(())
}

/// Claims one email for sending until `lease_until`; `false` when another sender has it.
pub async fn claim(
    conn: &mut AnyConnection,
    id: &str,
    lease_until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = super::sql::query("UPDATE deliveries SET state = 'sending', lease_until = $1, attempts = attempts + 1 WHERE id = $2 AND state IN ('pending', 'retrying')")
        .bind(lease_until.timestamp_millis())
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Records how a claimed email ended. `retry_at` moves a `retrying` email's due time.
pub async fn finish(
    conn: &mut AnyConnection,
    id: &str,
    state: DeliveryState,
    error: Option<&str>,
    at: DateTime<Utc>,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    super::sql::query("UPDATE deliveries SET state = $1, last_error = $2, sent_at = CASE WHEN $1 = 'sent' THEN $3 ELSE sent_at END, due_at = COALESCE($4, due_at), lease_until = NULL WHERE id = $5")
        .bind(state.as_str())
        .bind(error)
        .bind(at.timestamp_millis())
        .bind(retry_at.map(|t| t.timestamp_millis()))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if state == DeliveryState::Failed {
        // A code that never reached the customer is free again.
        super::sql::query("UPDATE coupons SET state = 'released' WHERE delivery_id = $1")
            .bind(id)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Adds an address to the suppression list (a hard bounce, a complaint, a 5xx); returns
/// whether it was not there yet.
pub async fn suppress(
    conn: &mut AnyConnection,
    email: &str,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    super::suppressions::suppress(conn, email, reason, at).await
}

/// Why each of these emails may not go now, by delivery id, for those that may not: the
/// address is suppressed, or (for marketing mail) the customer has unsubscribed — checked
/// at send time, a batch at a time, so an unsubscribe that commits while emails are queued
/// stops every one not yet on its way.
pub async fn send_blockers(
    conn: &mut AnyConnection,
    rows: &[DeliveryRow],
) -> Result<HashMap<String, String>, StoreError> {
    use sqlx::Row;
    let addresses: Vec<&str> = rows.iter().map(|d| d.recipient.as_str()).collect();
    let suppressed = super::suppressions::suppressed_among(conn, &addresses).await?;
    let marketing: BTreeSet<&str> = rows
        .iter()
        .filter(|d| d.class == MailClass::Marketing)
        .map(|d| d.customer_id.as_str())
        .collect();
    let marketing: Vec<&str> = marketing.into_iter().collect();
    let sql = "SELECT id FROM customers WHERE unsubscribed_at IS NOT NULL AND id IN ({list})";
    let unsubscribed = super::fetch_in(conn, sql, &[], &marketing)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>(0))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let mut blocked = HashMap::new();
    for d in rows {
        if let Some(reason) = suppressed.get(&d.recipient.to_lowercase()) {
            blocked.insert(
                d.id.clone(),
                format!("the address is suppressed ({reason})"),
            );
        } else if d.class == MailClass::Marketing && unsubscribed.contains(&d.customer_id) {
            blocked.insert(d.id.clone(), "the customer has unsubscribed".into());
        }
    }
    Ok(blocked)
}

/// Which outbox rows an operator command acts on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub workflow: Option<String>,
    pub customer_id: Option<String>,
    pub states: Vec<DeliveryState>,
}

impl Selection {
    /// The `WHERE` clause (from `$first` on) and its values, all bound.
    fn clause(&self, first: usize) -> (String, Vec<String>) {
        let mut parts = vec!["channel = 'email'".to_string()];
        let mut values = Vec::new();
        let mut next = first;
        let mut mark = |v: String, values: &mut Vec<String>| {
            values.push(v);
            next += 1;
            format!("${}", next - 1)
        };
        if let Some(w) = &self.workflow {
            let m = mark(w.clone(), &mut values);
            parts.push(format!("workflow = {m}"));
        }
        if let Some(c) = &self.customer_id {
            let m = mark(c.clone(), &mut values);
            parts.push(format!("customer_id = {m}"));
        }
        if !self.states.is_empty() {
            let marks: Vec<String> = self
                .states
                .iter()
                .map(|s| mark(s.as_str().to_string(), &mut values))
                .collect();
            parts.push(format!("state IN ({})", marks.join(", ")));
        }
        (parts.join(" AND "), values)
    }
}

/// The selected emails, newest first.
pub async fn list(
    conn: &mut AnyConnection,
    selection: &Selection,
    limit: i64,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let (clause, values) = selection.clause(1);
    let sql = format!("SELECT {WITH_BODIES} WHERE {clause} ORDER BY due_at DESC, id LIMIT {limit}");
    let mut q = super::sql::query(sqlx::AssertSqlSafe(sql));
    for v in values {
        q = q.bind(v);
    }
    delivery_rows(&q.fetch_all(conn).await?)
}

/// Queues the selected `failed`, `unknown` or `retrying` emails to go at `now` (a
/// suppressed address stays suppressed: the send-time check still applies).
pub async fn retry(
    conn: &mut AnyConnection,
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let (clause, values) = selection.clause(2);
    let sql = format!(
        "UPDATE deliveries SET state = 'pending', due_at = CASE WHEN due_at > $1 THEN $1 ELSE due_at END, last_error = NULL WHERE {clause} AND state IN ('failed', 'unknown', 'retrying')"
    );
    let mut q = super::sql::query(sqlx::AssertSqlSafe(sql)).bind(now.timestamp_millis());
    for v in values {
        q = q.bind(v);
    }
    Ok(q.execute(conn).await?.rows_affected())
}

/// Cancels the selected emails that have not left (`pending`, `retrying`) and releases
/// their coupon codes.
pub async fn cancel(conn: &mut AnyConnection, selection: &Selection) -> Result<u64, StoreError> {
    let (clause, values) = selection.clause(1);
    let release = format!(
        "UPDATE coupons SET state = 'released' WHERE delivery_id IN (SELECT id FROM deliveries WHERE {clause} AND state IN ('pending', 'retrying'))"
    );
    let mut q = super::sql::query(sqlx::AssertSqlSafe(release));
    for v in &values {
        q = q.bind(v.clone());
    }
    q.execute(&mut *conn).await?;
    let sql = format!(
        "UPDATE deliveries SET state = 'cancelled', last_error = 'cancelled by an operator' WHERE {clause} AND state IN ('pending', 'retrying')"
    );
    let mut q = super::sql::query(sqlx::AssertSqlSafe(sql));
    for v in values {
        q = q.bind(v);
    }
    Ok(q.execute(conn).await?.rows_affected())
}
