//! A pass's look at the store: whether it has work left, in one statement asked at every
//! pass — and, for a rehearsal, what its sender and its clock would ask next, in the same
//! statement, since most of a rehearsal's passes find nothing.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::enrollments::Lease;
use super::outbox::{DueQueues, due_queue_columns};
use super::{Store, StoreError};

/// What a pass has left to do by `due_by`: events not yet applied, and journeys due that
/// no live lease holds; and, when asked for, what lies [`Ahead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkDue {
    pub events: bool,
    pub journeys: bool,
    pub ahead: Option<Ahead>,
}

/// What a rehearsal asks after its engine is done at a moment: the email queues its
/// sender (which runs after the engine, not beside it) finds due, and the next moment
/// something falls due after this one, where its clock goes next. Sending changes
/// neither: it ends emails due by now and writes nothing due later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ahead {
    pub emails: DueQueues,
    pub next: Option<DateTime<Utc>>,
}

/// When the next event to process, journey step and email fall due after `$1`: three
/// columns.
const NEXT_DUE: &str = "(SELECT MIN(at) FROM events WHERE processed_at IS NULL AND at > $1), \
     (SELECT MIN(due_at) FROM enrollments WHERE state = 'active' AND due_at > $1), \
     (SELECT MIN(due_at) FROM deliveries WHERE state = 'pending' AND due_at > $1)";

/// Asks in one statement whether a pass has events or journeys left, where looking for
/// them took four (a read, and a claim in its own transaction) and found nothing in most
/// passes; with `ahead`, also what lies ahead.
pub async fn work_due(
    conn: &mut AnyConnection,
    due_by: DateTime<Utc>,
    lease: Lease,
    ahead: bool,
) -> Result<WorkDue, StoreError> {
    let mut sql = String::from(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM events WHERE processed_at IS NULL AND at <= $1) THEN 1 ELSE 0 END, \
         CASE WHEN EXISTS (SELECT 1 FROM enrollments WHERE state = 'active' AND due_at <= $1 AND (lease_until IS NULL OR lease_until < $2)) THEN 1 ELSE 0 END",
    );
    if ahead {
        sql.push_str(&format!(
            ", {}, {NEXT_DUE}",
            due_queue_columns("'email'", "$1")
        ));
    }
    // The statement's text is fixed here.
    let row = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(due_by.timestamp_millis())
        .bind(lease.free_after())
        .fetch_one(conn)
        .await?;
    let ahead = match ahead {
        true => Some(Ahead {
            emails: DueQueues::read(&row, 2)?,
            next: earliest(&row, 6)?,
        }),
        false => None,
    };
    Ok(WorkDue {
        events: row.try_get::<i64, _>(0)? == 1,
        journeys: row.try_get::<i64, _>(1)? == 1,
        ahead,
    })
}

/// The earliest moment after `now` at which the store has something due: an event to
/// process, a journey's next step, an email to send — where a rehearsal's clock jumps.
pub async fn next_due(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    // The statement's text is fixed here.
    let sql = format!("SELECT {NEXT_DUE}");
    let row = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(now.timestamp_millis())
        .fetch_one(&store.pool)
        .await?;
    earliest(&row, 0)
}

/// The earliest of [`NEXT_DUE`]'s three columns, read from `row` starting at `first`.
fn earliest(row: &sqlx::any::AnyRow, first: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut next: Option<DateTime<Utc>> = None;
    for i in first..first + 3 {
        if let Some(t) = row
            .try_get::<Option<i64>, _>(i)?
            .and_then(DateTime::from_timestamp_millis)
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    }
    Ok(next)
}
