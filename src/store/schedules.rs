//! When each schedule last fired, written once its enrollments are.

use super::{StoreError, from_millis};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

/// The last fire time (or date-trigger pass) recorded for a schedule key.
pub async fn last_fire(
    conn: &mut AnyConnection,
    key: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let row = super::sql::query("SELECT MAX(fire_at) FROM schedule_fires WHERE workflow = $1")
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
    super::sql::query("INSERT INTO schedule_fires (workflow, fire_at, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(key)
        .bind(at.timestamp_millis())
        .bind(now.timestamp_millis())
        .execute(conn)
        .await?;
    Ok(())
}
