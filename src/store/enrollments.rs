//! Journeys (enrollments): entered, keyed by their trigger; claimed when due under a lease,
//! fenced by a version, and saved a group at a time.

use super::deliveries::{NewDelivery, insert_delivery};
use super::{StoreError, from_millis, millis};
use crate::model::states::JourneyState;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};

/// One customer's place in one workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRow {
    pub id: String,
    pub workflow: String,
    pub customer_id: String,
    pub trigger_key: String,
    pub state: JourneyState,
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
    /// What the journey waits for, when it waits for an event (`wait: {for, at_most}`).
    pub waiting: Option<Waiting>,
    /// `SPLIT/VARIANT` the journey was sent down, or `holdout`.
    pub variant: Option<String>,
}

/// A journey waiting for an event: its name, and since when (an earlier event of that
/// name does not count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub event: String,
    pub since: DateTime<Utc>,
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

/// Which of these enrollment ids are stored already.
pub async fn existing(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, StoreError> {
    let sql = "SELECT id FROM enrollments WHERE id IN ({list})";
    let mut out = std::collections::HashSet::new();
    for row in super::fetch_in(conn, sql, &[], ids).await? {
        out.insert(row.try_get::<String, _>(0)?);
    }
    Ok(out)
}

/// When the customer last entered the workflow, for the re-entry rule.
pub async fn last_entry(
    conn: &mut AnyConnection,
    workflow: &str,
    customer_id: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = super::sql::query(
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
    let sql = "INSERT INTO enrollments (id, workflow, customer_id, trigger_key, state, step, due_at, entered_at, event_id, orders_count_at_entry, total_spent_at_entry, ended_at, exit_reason, variant, version) VALUES {values} ON CONFLICT DO NOTHING";
    let inserted = super::count_rows(conn, sql, 14, ", 0", rows, |q, e| {
        q.bind(e.id.clone())
            .bind(e.workflow.clone())
            .bind(e.customer_id.clone())
            .bind(e.trigger_key.clone())
            .bind(e.state.as_str())
            .bind(e.step.clone())
            .bind(millis(e.due_at))
            .bind(e.entered_at.timestamp_millis())
            .bind(e.event_id.clone())
            .bind(e.orders_count_at_entry)
            .bind(e.total_spent_at_entry)
            .bind(millis(e.ended_at))
            .bind(e.exit_reason.clone())
            .bind(e.variant.clone())
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

impl Lease {
    /// Leases that lapsed before this are free to take.
    pub(super) fn free_after(&self) -> i64 {
        if self.sole {
            i64::MAX
        } else {
            self.now.timestamp_millis()
        }
    }
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
    let free_after = lease.free_after();
    // The statement's text is fixed here but for the lock clause.
    let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
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
                state: r.try_get::<String, _>("state")?.parse()?,
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
                waiting: match (
                    r.try_get::<Option<String>, _>("waiting_for")?,
                    from_millis(r.try_get("waiting_since")?),
                ) {
                    (Some(event), Some(since)) => Some(Waiting { event, since }),
                    _ => None,
                },
                variant: r.try_get("variant")?,
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
    let sql = "UPDATE enrollments SET state = v.column2, step = v.column3, due_at = v.column4, ended_at = v.column5, exit_reason = v.column6, error = v.column7, waiting_for = v.column9, waiting_since = v.column10, variant = v.column11, version = version + 1, lease_until = NULL FROM (VALUES {values}) AS v WHERE enrollments.id = v.column1 AND enrollments.version = v.column8";
    let saved = super::count_rows(conn, sql, 11, "", rows, |q, e| {
        q.bind(e.id.clone())
            .bind(e.state.as_str())
            .bind(e.step.clone())
            .bind(millis(e.due_at))
            .bind(millis(e.ended_at))
            .bind(e.exit_reason.clone())
            .bind(e.error.clone())
            .bind(e.version)
            .bind(e.waiting.as_ref().map(|w| w.event.clone()))
            .bind(e.waiting.as_ref().map(|w| w.since.timestamp_millis()))
            .bind(e.variant.clone())
    })
    .await?;
    Ok(saved)
}

/// Run for each event some journey may wait for, so it must find them by the customer
/// (`enrollments_waiting`). `due_at + 0`: without statistics SQLite would otherwise take
/// `enrollments_due` for the range on `due_at`, and read every running journey due later.
pub const RESUME_SQL: &str = "UPDATE enrollments SET due_at = $1, waiting_for = NULL, waiting_since = NULL WHERE customer_id = $2 AND waiting_for = $3 AND state = 'active' AND waiting_since <= $1 AND due_at + 0 > $1";

/// Resumes the customer's journeys that wait for an event of this name since before `at`
/// (and whose wait has not run out): they fall due at `at`. Returns how many.
pub async fn resume_waiting(
    conn: &mut AnyConnection,
    customer_id: &str,
    event: &str,
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let at = at.timestamp_millis();
    let n = super::sql::query(RESUME_SQL)
        .bind(at)
        .bind(customer_id)
        .bind(event)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n)
}

/// The variant of the customer's latest journey in the workflow: `None` without one.
pub async fn variant_of(
    conn: &mut AnyConnection,
    workflow: &str,
    customer_id: &str,
) -> Result<Option<Option<String>>, StoreError> {
    let row = super::sql::query("SELECT variant FROM enrollments WHERE workflow = $1 AND customer_id = $2 ORDER BY entered_at DESC, id DESC LIMIT 1")
        .bind(workflow)
        .bind(customer_id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
}

/// Every enrollment, for tests and `status`.
pub async fn enrollments(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String, String, Option<String>, Option<String>)>, StoreError> {
    let rows = super::sql::query("SELECT workflow, customer_id, state, exit_reason, error FROM enrollments ORDER BY workflow, customer_id, entered_at")
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

/// Records an audience that failed for one customer, so the error is seen, not lost.
pub async fn insert_failed_enrollment(
    conn: &mut AnyConnection,
    e: &EnrollmentRow,
) -> Result<bool, StoreError> {
    let n = super::sql::query(
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
        super::sql::query("UPDATE deliveries SET state = 'skipped', last_error = $1 WHERE id = $2")
            .bind(reason)
            .bind(d.id.clone())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Running enrollments per workflow and step id (`(start)` for one that has not begun).
pub async fn running_steps(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, BTreeMap<String, u64>>, StoreError> {
    let rows = super::sql::query(
        "SELECT workflow, step, COUNT(*) FROM enrollments WHERE state = 'active' GROUP BY workflow, step",
    )
    .fetch_all(conn)
    .await?;
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for r in rows {
        let workflow: String = r.try_get(0)?;
        let step: Option<String> = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        *out.entry(workflow)
            .or_default()
            .entry(step.unwrap_or_else(|| "(start)".into()))
            .or_default() += n.max(0) as u64;
    }
    Ok(out)
}
