//! What `tidings results` counts, per workflow and variant (`SPLIT/VARIANT`, `holdout`,
//! or none for a workflow without an experiment): journeys entered, emailed, clicked by a
//! person, converted (a goal credited to them), their revenue, and coupons redeemed. Every
//! count is of journeys that entered since a moment.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::StoreError;

/// One workflow's variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Arm {
    pub workflow: String,
    pub variant: Option<String>,
    pub entered: u64,
    pub emailed: u64,
    pub clicked: u64,
    pub converted: u64,
    pub revenue: f64,
    pub redeemed: u64,
}

type Key = (String, Option<String>);

/// A count's statement and the field of [`Arm`] it fills.
type Count = (&'static str, fn(&mut Arm, u64));

/// Every workflow's arms, journeys entered since `since`, ordered by workflow and variant.
pub async fn arms(conn: &mut AnyConnection, since: DateTime<Utc>) -> Result<Vec<Arm>, StoreError> {
    let since = since.timestamp_millis();
    let mut arms: BTreeMap<Key, Arm> = BTreeMap::new();
    let counts: [Count; 5] = [
        (
            "SELECT e.workflow, e.variant, COUNT(*) FROM enrollments e WHERE e.entered_at >= $1 GROUP BY e.workflow, e.variant",
            |a, n| a.entered = n,
        ),
        (
            "SELECT e.workflow, e.variant, COUNT(DISTINCT d.enrollment_id) FROM deliveries d JOIN enrollments e ON e.id = d.enrollment_id WHERE d.channel = 'email' AND d.state = 'sent' AND e.entered_at >= $1 GROUP BY e.workflow, e.variant",
            |a, n| a.emailed = n,
        ),
        (
            "SELECT e.workflow, e.variant, COUNT(DISTINCT g.enrollment_id) FROM engagements g JOIN enrollments e ON e.id = g.enrollment_id WHERE g.kind = 'click' AND g.machine = 0 AND e.entered_at >= $1 GROUP BY e.workflow, e.variant",
            |a, n| a.clicked = n,
        ),
        (
            "SELECT e.workflow, e.variant, COUNT(DISTINCT c.enrollment_id) FROM conversions c JOIN enrollments e ON e.id = c.enrollment_id WHERE e.entered_at >= $1 GROUP BY e.workflow, e.variant",
            |a, n| a.converted = n,
        ),
        (
            "SELECT e.workflow, e.variant, COUNT(*) FROM coupons c JOIN deliveries d ON d.id = c.delivery_id JOIN enrollments e ON e.id = d.enrollment_id WHERE c.redeemed_at IS NOT NULL AND e.entered_at >= $1 GROUP BY e.workflow, e.variant",
            |a, n| a.redeemed = n,
        ),
    ];
    for (sql, set) in counts {
        for r in super::sql::query(sql)
            .bind(since)
            .fetch_all(&mut *conn)
            .await?
        {
            let key: Key = (r.try_get(0)?, r.try_get(1)?);
            let n = r.try_get::<i64, _>(2)?.max(0) as u64;
            set(arm(&mut arms, key), n);
        }
    }
    let rows = super::sql::query("SELECT e.workflow, e.variant, SUM(c.value) FROM conversions c JOIN enrollments e ON e.id = c.enrollment_id WHERE e.entered_at >= $1 GROUP BY e.workflow, e.variant")
        .bind(since)
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let key: Key = (r.try_get(0)?, r.try_get(1)?);
        arm(&mut arms, key).revenue = r.try_get::<Option<f64>, _>(2)?.unwrap_or(0.0);
    }
    Ok(arms.into_values().collect())
}

fn arm(arms: &mut BTreeMap<Key, Arm>, key: Key) -> &mut Arm {
    arms.entry(key.clone()).or_insert_with(|| Arm {
        workflow: key.0,
        variant: key.1,
        ..Arm::default()
    })
}
