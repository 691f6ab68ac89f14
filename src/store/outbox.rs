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
    due_from(
        conn,
        channel.as_ref(),
        (now, limit),
        &QUEUED,
        WITH_BODIES,
        "",
    )
    .await
}

/// Deliveries of a channel due by `now` in the `states` named, oldest first, up to `limit`:
/// `SELECT {source} WHERE … {condition}`, one state at a time, named in the text — each has
/// an index of its own.
async fn due_from(
    conn: &mut AnyConnection,
    channel: &str,
    (now, limit): (DateTime<Utc>, i64),
    states: &[&str],
    source: &str,
    condition: &str,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let mut rows = Vec::new();
    for state in states {
        // The statement's text is fixed in this module but for the state.
        let sql = format!(
            "SELECT {source} WHERE channel = $1{condition} AND state = '{state}' AND due_at <= $2 ORDER BY due_at, id LIMIT {limit}"
        );
        let found = super::sql::query(sqlx::AssertSqlSafe(sql))
            .bind(channel.to_string())
            .bind(now.timestamp_millis())
            .fetch_all(&mut *conn)
            .await?;
        rows.extend(delivery_rows(&found)?);
    }
    rows.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(rows)
}

/// Which queues of a channel hold deliveries due by `now`: a state ([`QUEUED`]) in a mode.
/// Most passes send nothing, and most batches come from one queue: one statement says
/// which to read, where claiming and reading each of the four found nothing in most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueQueues {
    /// `at_least_once` mail, by state in the order of [`QUEUED`].
    pub at_least_once: [bool; 2],
    /// `at_most_once` mail, likewise.
    pub at_most_once: [bool; 2],
}

impl DueQueues {
    pub fn any(&self) -> bool {
        self.at_least_once.contains(&true) || self.at_most_once.contains(&true)
    }

    /// The queues from the four columns [`due_queue_columns`] gives, read from `row`
    /// starting at column `first`.
    pub(super) fn read(row: &sqlx::any::AnyRow, first: usize) -> Result<Self, StoreError> {
        let due = |i: usize| -> Result<bool, StoreError> {
            Ok(sqlx::Row::try_get::<i64, _>(row, first + i)? == 1)
        };
        Ok(DueQueues {
            at_least_once: [due(0)?, due(1)?],
            at_most_once: [due(2)?, due(3)?],
        })
    }
}

/// The modes in the order [`due_queue_columns`] asks about them.
const MODES: [&str; 2] = ["at_least_once", "at_most_once"];

/// Four columns, 1 where a queue ([`DueQueues`]) of the channel `channel` (an SQL
/// expression) holds a delivery due by `now` (another): each `EXISTS` is a seek in its
/// state's partial index, its mode named so the seek reaches the due times.
pub(super) fn due_queue_columns(channel: &str, now: &str) -> String {
    let exists: Vec<String> = MODES
        .iter()
        .flat_map(|mode| {
            QUEUED.map(|state| {
                format!(
                    "CASE WHEN EXISTS (SELECT 1 FROM deliveries WHERE channel = {channel} AND mode = '{mode}' AND state = '{state}' AND due_at <= {now}) THEN 1 ELSE 0 END"
                )
            })
        })
        .collect();
    exists.join(", ")
}

/// Which queues hold deliveries of a channel due by `now`, in one statement.
pub async fn due_queues(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
) -> Result<DueQueues, StoreError> {
    // The statement's text is fixed here but for the states and modes.
    let sql = format!("SELECT {}", due_queue_columns("$1", "$2"));
    let row = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(channel.as_ref().to_string())
        .bind(now.timestamp_millis())
        .fetch_one(conn)
        .await?;
    DueQueues::read(&row, 0)
}

/// Whether any delivery of a channel is due by `now`, in either mode.
pub async fn any_due(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(due_queues(conn, channel, now).await?.any())
}

/// The states of a delivery waiting to go, those waiting for a retry first. Each has a
/// partial index (`deliveries_retrying`, `deliveries_queued`, migration 9) holding only its
/// rows, by channel, mode and due time: a claim reads them in order and stops at its limit,
/// where one `state IN (…)` sorted every queued email, and a sent email leaves the index.
const QUEUED: [&str; 2] = ["retrying", "pending"];

/// Claims, in one commit, up to `limit` due `at_least_once` deliveries of a channel for
/// sending until `lease_until`: those waiting for a retry first, then new ones, each oldest
/// first, a statement for each queue `due` holds (see [`QUEUED`]). A claimed email that
/// dies with its sender goes back to the queue and is sent again with the same Message-ID,
/// so a claim need not be committed right before each send; `at_most_once` mail is claimed
/// one email at a time instead ([`claim`]), since what it leaves in `sending` is never sent
/// again. `attempts` in the rows returned counts the attempts before this one. The rows
/// come without what they carry: [`send_needs`] reads it with the rest a batch needs.
pub async fn claim_due(
    conn: &mut AnyConnection,
    backend: super::Backend,
    channel: impl AsRef<str>,
    (now, limit): (DateTime<Utc>, i64),
    lease_until: DateTime<Utc>,
    due: DueQueues,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let lock = match backend {
        super::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        super::Backend::Sqlite => "",
    };
    let mut rows = Vec::new();
    for (state, _) in QUEUED.iter().zip(due.at_least_once).filter(|(_, d)| *d) {
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
    rows.sort_by(|a, b| (a.due_at, &a.id).cmp(&(b.due_at, &b.id)));
    Ok(rows)
}

/// Deliveries of a channel in `at_most_once` mode due by `now`, oldest first, from the
/// queues `due` holds: each is claimed on its own right before it leaves. Like a claim's,
/// the rows come without what they carry ([`send_needs`]).
pub async fn due_at_most_once(
    conn: &mut AnyConnection,
    channel: impl AsRef<str>,
    page: (DateTime<Utc>, i64),
    due: DueQueues,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let states: Vec<&str> = (QUEUED.iter().zip(due.at_most_once))
        .filter_map(|(state, due)| due.then_some(*state))
        .collect();
    let source = "*, CAST(NULL AS TEXT) AS html, CAST(NULL AS TEXT) AS text, CAST(NULL AS TEXT) AS payload FROM deliveries";
    let condition = " AND mode = 'at_most_once'";
    due_from(conn, channel.as_ref(), page, &states, source, condition).await
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

/// Claims many `at_most_once` emails at once for a sender whose mail goes nowhere (a
/// rehearsal's): what it leaves in `sending` is never observed twice. Returns those it got.
pub async fn claim_all(
    conn: &mut AnyConnection,
    ids: &[&str],
    lease_until: DateTime<Utc>,
) -> Result<BTreeSet<String>, StoreError> {
    use sqlx::Row;
    let sql = "UPDATE deliveries SET state = 'sending', lease_until = $1, attempts = attempts + 1 WHERE id IN ({list}) AND state IN ('pending', 'retrying') RETURNING id";
    let lead = [super::Lead::Millis(lease_until.timestamp_millis())];
    super::fetch_in(conn, sql, &lead, ids)
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
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

/// Reads what a claimed batch needs to go, a statement per few hundred emails: each
/// email's body (filled into `rows`), and why each may not go now, by delivery id, for
/// those that may not — the address is suppressed, or (for marketing mail) the customer has
/// unsubscribed. Checked at send time, a batch at a time, so an unsubscribe that commits
/// while emails are queued stops every one not yet on its way.
pub async fn send_needs(
    conn: &mut AnyConnection,
    rows: &mut [DeliveryRow],
) -> Result<HashMap<String, String>, StoreError> {
    let mut blocked = HashMap::new();
    for chunk in rows.chunks_mut(super::sql::IN_LIST) {
        needs_of(conn, chunk, &mut blocked).await?;
    }
    Ok(blocked)
}

/// [`send_needs`] for one statement's worth of emails: bodies, suppressed addresses and
/// unsubscribed customers come back as rows of one `UNION ALL`, told apart by their first
/// column.
async fn needs_of(
    conn: &mut AnyConnection,
    rows: &mut [DeliveryRow],
    blocked: &mut HashMap<String, String>,
) -> Result<(), StoreError> {
    use super::suppressions::address_key;
    use sqlx::Row;
    let ids: Vec<&str> = rows.iter().map(|d| d.id.as_str()).collect();
    let row_keys: Vec<String> = rows.iter().map(|d| address_key(&d.recipient)).collect();
    let keys: BTreeSet<&str> = row_keys.iter().map(String::as_str).collect();
    let marketing: BTreeSet<&str> = rows
        .iter()
        .filter(|d| d.class == MailClass::Marketing)
        .map(|d| d.customer_id.as_str())
        .collect();
    let mut next = 1;
    let mut list = |n: usize| {
        let marks = super::sql::placeholders(next, n);
        next += n;
        marks
    };
    let mut sql = format!(
        "SELECT 'body', delivery_id, html, text, payload FROM delivery_bodies WHERE delivery_id IN ({}) UNION ALL SELECT 'suppressed', email, reason, NULL, NULL FROM suppressions WHERE email IN ({})",
        list(ids.len()),
        list(keys.len())
    );
    if !marketing.is_empty() {
        sql.push_str(&format!(
            " UNION ALL SELECT 'unsubscribed', id, NULL, NULL, NULL FROM customers WHERE unsubscribed_at IS NOT NULL AND id IN ({})",
            list(marketing.len())
        ));
    }
    // The statement's text is fixed here but for its placeholders; every value is bound.
    let mut q = super::sql::query(sqlx::AssertSqlSafe(super::sql::positional(conn, sql)));
    for v in ids.iter().chain(&keys) {
        q = q.bind(v);
    }
    for v in &marketing {
        q = q.bind(*v);
    }
    let mut bodies = HashMap::new();
    let mut suppressed = HashMap::new();
    let mut unsubscribed = BTreeSet::new();
    for r in q.fetch_all(&mut *conn).await? {
        let key: String = r.try_get(1)?;
        match r.try_get::<String, _>(0)?.as_str() {
            "body" => {
                let body: (Option<String>, Option<String>, Option<String>) =
                    (r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
                bodies.insert(key, body);
            }
            "suppressed" => {
                suppressed.insert(key, r.try_get::<String, _>(2)?);
            }
            _ => {
                unsubscribed.insert(key);
            }
        }
    }
    for (d, key) in rows.iter_mut().zip(&row_keys) {
        if let Some((html, text, payload)) = bodies.remove(&d.id) {
            d.payload = payload.map(|p| crate::model::payload::Payload::from_json(d.channel, &p));
            (d.html, d.text) = (html, text);
        }
        if let Some(reason) = suppressed.get(key) {
            blocked.insert(
                d.id.clone(),
                format!("the address is suppressed ({reason})"),
            );
        } else if d.class == MailClass::Marketing && unsubscribed.contains(&d.customer_id) {
            blocked.insert(d.id.clone(), "the customer has unsubscribed".into());
        }
    }
    Ok(())
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
