//! Counts for `tidings status`: customers per stage, journeys and emails per workflow.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use crate::store::StoreError;

/// Where things stand.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Emails and webhook calls waiting to go (pending or retrying).
    pub queued: i64,
    /// Stage (`None`: not placed yet) to customers.
    pub stages: BTreeMap<Option<String>, i64>,
    /// Workflow to journey state to count.
    pub journeys: BTreeMap<String, BTreeMap<String, i64>>,
    /// Workflow to email state to count.
    pub emails: BTreeMap<String, BTreeMap<String, i64>>,
    /// (workflow, step) to webhook calls given up on: the journey went on without them,
    /// so only this says they failed.
    pub failed_webhooks: BTreeMap<(String, String), i64>,
    /// Event name to events that were too old when first seen to start a journey.
    pub too_old: BTreeMap<String, i64>,
}

pub async fn counts(conn: &mut AnyConnection) -> Result<Counts, StoreError> {
    let mut c = Counts::default();
    for r in super::sql::query("SELECT stage, COUNT(*) FROM customers GROUP BY stage")
        .fetch_all(&mut *conn)
        .await?
    {
        c.stages.insert(r.try_get(0)?, r.try_get(1)?);
    }
    for (sql, into) in [
        (
            "SELECT workflow, state, COUNT(*) FROM enrollments GROUP BY workflow, state",
            &mut c.journeys,
        ),
        (
            "SELECT workflow, state, COUNT(*) FROM deliveries WHERE channel = 'email' GROUP BY workflow, state",
            &mut c.emails,
        ),
    ] {
        for r in super::sql::query(sql).fetch_all(&mut *conn).await? {
            into.entry(r.try_get(0)?)
                .or_default()
                .insert(r.try_get(1)?, r.try_get(2)?);
        }
    }
    for r in super::sql::query("SELECT workflow, step, COUNT(*) FROM deliveries WHERE channel = 'webhook' AND state = 'failed' GROUP BY workflow, step")
        .fetch_all(&mut *conn)
        .await?
    {
        c.failed_webhooks
            .insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
    }
    for r in super::sql::query("SELECT name, COUNT(*) FROM events WHERE too_old = 1 GROUP BY name")
        .fetch_all(&mut *conn)
        .await?
    {
        c.too_old.insert(r.try_get(0)?, r.try_get(1)?);
    }
    c.queued = super::sql::query(
        "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'retrying', 'sending')",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    Ok(c)
}
