//! Dropping what the store no longer needs to send: the outbox is a queue, not an archive.
//! A body is kept for `retention.bodies` after its email is done, then dropped; the
//! delivery row stays for the statistics.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use super::StoreError;
use super::deliveries::{DeliveryRow, WITH_BODIES, delivery_rows};

/// Bodies dropped per statement: a page, so that a week of a large shop's mail never
/// becomes one transaction.
pub const BODIES_PAGE: i64 = 1000;

/// The states whose body is never needed again: the mail is done and no command sends it
/// again (`outbox retry` takes `failed` and `unknown` mail, whose bodies are kept).
const DONE: &str = "'sent', 'suppressed', 'cancelled', 'skipped'";

/// Drops up to [`BODIES_PAGE`] bodies of mail done before `before` (sent then, or, never
/// sent, due then); returns how many. The scan runs over the bodies still kept — at most
/// the retention's worth of mail — oldest first, each joined to its row by key.
pub async fn drop_bodies(
    conn: &mut AnyConnection,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = format!(
        "DELETE FROM delivery_bodies WHERE delivery_id IN (SELECT b.delivery_id FROM delivery_bodies b JOIN deliveries d ON d.id = b.delivery_id WHERE d.state IN ({DONE}) AND COALESCE(d.sent_at, d.due_at) < $1 LIMIT {BODIES_PAGE})"
    );
    // The statement's text is fixed here but for its constants.
    let done = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(before.timestamp_millis())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// One delivery as `outbox show` tells it.
pub struct Shown {
    pub row: DeliveryRow,
    /// When it was sent (or the call made).
    pub sent_at: Option<DateTime<Utc>>,
    /// Whether its body is still kept.
    pub body_kept: bool,
}

/// The delivery `id`, with its body when it is still kept.
pub async fn shown(conn: &mut AnyConnection, id: &str) -> Result<Option<Shown>, StoreError> {
    let sql = format!("SELECT {WITH_BODIES} WHERE deliveries.id = $1");
    let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    let Some(row) = delivery_rows(&rows)?.into_iter().next() else {
        return Ok(None);
    };
    let facts = super::sql::query(
        "SELECT sent_at, CASE WHEN EXISTS (SELECT 1 FROM delivery_bodies WHERE delivery_id = $1) THEN 1 ELSE 0 END FROM deliveries WHERE id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(Some(Shown {
        row,
        sent_at: super::from_millis(facts.try_get::<Option<i64>, _>(0)?),
        body_kept: facts.try_get::<i64, _>(1)? == 1,
    }))
}
