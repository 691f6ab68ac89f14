//! When each schedule last fired, written once its enrollments are: one mark per schedule
//! key (a schedule, a schedule's zone, a date trigger), read and written for all keys of a
//! pass at once.

use std::collections::HashMap;

use super::{Lead, StoreError, from_millis};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

/// The last fire time (or date-trigger pass) recorded for each of `keys`; a key never
/// recorded is absent.
pub async fn last_fires(
    conn: &mut AnyConnection,
    keys: &[&str],
) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
    let sql = "SELECT workflow, MAX(fire_at) FROM schedule_fires WHERE workflow IN ({list}) GROUP BY workflow";
    let mut out = HashMap::new();
    for r in super::fetch_in(conn, sql, &[], keys).await? {
        if let Some(at) = from_millis(r.try_get::<Option<i64>, _>(1)?) {
            out.insert(r.try_get(0)?, at);
        }
    }
    Ok(out)
}

/// Records that a pass saw every fire time of `keys` up to `now` (their enrollments are
/// written), and, with `forget_older`, forgets their older marks: only the latest is ever
/// read. Recording it twice, as two replicas may, is harmless.
pub async fn record_fires(
    conn: &mut AnyConnection,
    keys: &[&str],
    now: DateTime<Utc>,
    forget_older: bool,
) -> Result<(), StoreError> {
    let now = now.timestamp_millis();
    let sql = "INSERT INTO schedule_fires (workflow, fire_at, processed_at) VALUES {values} ON CONFLICT DO NOTHING";
    super::count_rows(conn, sql, 3, "", keys, |q, key| {
        q.bind(*key).bind(now).bind(now)
    })
    .await?;
    if forget_older {
        let sql = "DELETE FROM schedule_fires WHERE fire_at < $1 AND workflow IN ({list})";
        super::fetch_in(conn, sql, &[Lead::Millis(now)], keys).await?;
    }
    Ok(())
}
