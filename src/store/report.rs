//! What `tidings report` draws beyond `status`'s counts: moves between stages by week,
//! emailed journeys per workflow, and sends per day.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use sqlx::{AnyConnection, Row};

use crate::model::customer::STAGE_ENTERED;
use crate::store::StoreError;

const DAY_MS: i64 = 86_400_000;

/// A stage move: from, to (`None`: not placed).
type Move = (Option<String>, Option<String>);

/// The history a report charts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct History {
    /// Week (its Monday, UTC) to stage to customers who entered it that week.
    pub stage_flow: BTreeMap<NaiveDate, BTreeMap<String, i64>>,
    /// Workflow to journeys that sent at least one email.
    pub emailed: BTreeMap<String, i64>,
    /// Day (UTC) to workflow to emails sent.
    pub sends: BTreeMap<NaiveDate, BTreeMap<String, i64>>,
}

/// The Monday of the week `day` falls in.
pub fn week_of(day: NaiveDate) -> NaiveDate {
    day - TimeDelta::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Customers per stage as they stood at `at` (`None`: not placed yet), for a report as of
/// a past moment: each customer's stage now, unless they moved after `at` — then the stage
/// their moves since started from. The start is found by the moves' chain (`from` → `to`),
/// not by their times: a pass dates a placement at its own moment and a move at its
/// event's, so the moves of one pass need not be in time order.
pub async fn stages_as_of(
    conn: &mut AnyConnection,
    at: DateTime<Utc>,
) -> Result<BTreeMap<Option<String>, i64>, StoreError> {
    let at = at.timestamp_millis();
    let rows = super::sql::query(
        "SELECT customer_id, properties FROM events WHERE name = $1 AND at > $2 ORDER BY at, id",
    )
    .bind(STAGE_ENTERED)
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    // Each customer's moves after `at`, as (from, to).
    let mut moves: BTreeMap<String, Vec<Move>> = BTreeMap::new();
    for r in rows {
        let properties: String = r.try_get(1)?;
        let p = serde_json::from_str::<serde_json::Value>(&properties).unwrap_or_default();
        let stage = |k: &str| p.get(k).and_then(|t| t.as_str()).map(str::to_string);
        moves
            .entry(r.try_get(0)?)
            .or_default()
            .push((stage("from"), stage("to")));
    }
    // The stage before them: where their chain starts (the move whose `from` no other move
    // led to), else the earliest.
    let mut then: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (customer, list) in moves {
        let start = list
            .iter()
            .enumerate()
            .find(|(i, (from, _))| {
                !list
                    .iter()
                    .enumerate()
                    .any(|(j, (_, to))| j != *i && to == from)
            })
            .map(|(_, m)| m)
            .or(list.first());
        if let Some((from, _)) = start {
            then.insert(customer, from.clone());
        }
    }
    let rows = super::sql::query(
        "SELECT id, stage FROM customers WHERE created_at IS NULL OR created_at <= $1",
    )
    .bind(at)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<Option<String>, i64> = BTreeMap::new();
    for r in rows {
        let id: String = r.try_get(0)?;
        let stage = match then.remove(&id) {
            Some(before) => before,
            None => r.try_get(1)?,
        };
        *out.entry(stage).or_default() += 1;
    }
    Ok(out)
}

/// Stage moves since `flow_since` and sends since `sends_since`.
pub async fn history(
    conn: &mut AnyConnection,
    flow_since: DateTime<Utc>,
    sends_since: DateTime<Utc>,
) -> Result<History, StoreError> {
    let mut h = History::default();
    let rows = super::sql::query("SELECT at, properties FROM events WHERE name = $1 AND at >= $2")
        .bind(STAGE_ENTERED)
        .bind(flow_since.timestamp_millis())
        .fetch_all(&mut *conn)
        .await?;
    for r in rows {
        let Some(at) = DateTime::from_timestamp_millis(r.try_get(0)?) else {
            continue;
        };
        let properties: String = r.try_get(1)?;
        let to = serde_json::from_str::<serde_json::Value>(&properties)
            .ok()
            .and_then(|p| p.get("to").and_then(|t| t.as_str()).map(str::to_string));
        if let Some(to) = to {
            *h.stage_flow
                .entry(week_of(at.date_naive()))
                .or_default()
                .entry(to)
                .or_default() += 1;
        }
    }
    for r in super::sql::query(
        "SELECT workflow, COUNT(DISTINCT enrollment_id) FROM deliveries WHERE channel = 'email' AND state = 'sent' GROUP BY workflow",
    )
    .fetch_all(&mut *conn)
    .await?
    {
        h.emailed.insert(r.try_get(0)?, r.try_get(1)?);
    }
    // Whole days since the epoch: integer division reads the same on both databases.
    for r in super::sql::query(
        "SELECT workflow, sent_at / 86400000, COUNT(*) FROM deliveries WHERE channel = 'email' AND state = 'sent' AND sent_at >= $1 GROUP BY workflow, sent_at / 86400000",
    )
    .bind(sends_since.timestamp_millis())
    .fetch_all(&mut *conn)
    .await?
    {
        let day: i64 = r.try_get(1)?;
        let Some(day) = DateTime::from_timestamp_millis(day * DAY_MS) else {
            continue;
        };
        h.sends
            .entry(day.date_naive())
            .or_default()
            .insert(r.try_get(0)?, r.try_get(2)?);
    }
    Ok(h)
}
