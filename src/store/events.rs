//! Events: those a pass has yet to process, a customer's history for `event_count`, and
//! the events the store raises itself (a stage entered, an unsubscribe).

use super::{StoreError, from_millis};
use crate::model::customer::Event;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{AnyConnection, Row};

/// An event as stored, with the customer changes it carries.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: Event,
    pub customer_id: String,
    pub set: Map<String, Value>,
}

pub async fn pending_events(
    conn: &mut AnyConnection,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT * FROM events WHERE processed_at IS NULL AND at <= $1 ORDER BY at, id LIMIT {limit}"
    );
    let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(until.timestamp_millis())
        .fetch_all(conn)
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// The events of one name in `[since, until]`, in time order, a page after `after` (the
/// last page's final time and id): what a backfill replays.
pub async fn named_between(
    conn: &mut AnyConnection,
    name: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    after: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let (after_at, after_id) = after.map_or((i64::MIN, ""), |(at, id)| (at.timestamp_millis(), id));
    let sql = format!(
        "SELECT * FROM events WHERE name = $1 AND at >= $2 AND at <= $3 \
         AND (at > $4 OR (at = $4 AND id > $5)) ORDER BY at, id LIMIT {limit}"
    );
    let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(name)
        .bind(since.timestamp_millis())
        .bind(until.timestamp_millis())
        .bind(after_at)
        .bind(after_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) fn event_from_row(r: &sqlx::any::AnyRow) -> Result<StoredEvent, StoreError> {
    let corrupt = |w: &str| StoreError::Corrupt(w.to_string());
    let properties: String = r.try_get("properties")?;
    let changes: String = r.try_get("changes")?;
    let changes: Map<String, Value> =
        serde_json::from_str(&changes).map_err(|_| corrupt("event changes"))?;
    let set = match changes.get("set") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    Ok(StoredEvent {
        event: Event {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            at: from_millis(Some(r.try_get("at")?)).ok_or_else(|| corrupt("event time"))?,
            properties: serde_json::from_str(&properties)
                .map_err(|_| corrupt("event properties"))?,
            recorded_at: from_millis(r.try_get("recorded_at")?),
        },
        customer_id: r.try_get("customer_id")?,
        set,
    })
}

/// The events a group of journeys answer, by id, in one statement per few hundred.
pub async fn events_by_id(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, Event>, StoreError> {
    let rows = super::fetch_in(conn, "SELECT * FROM events WHERE id IN ({list})", &[], ids).await?;
    rows.iter()
        .map(|r| {
            let e = event_from_row(r)?.event;
            Ok((e.id.clone(), e))
        })
        .collect()
}

pub async fn event(conn: &mut AnyConnection, id: &str) -> Result<Option<Event>, StoreError> {
    let row = super::sql::query("SELECT * FROM events WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row
        .map(|r| event_from_row(&r))
        .transpose()?
        .map(|e| e.event))
}

pub async fn mark_event_processed(
    conn: &mut AnyConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    mark_events_processed(conn, &[id], at).await
}

/// Marks an event processed that was too old when first seen to start any journey.
pub async fn mark_processed_too_old(
    conn: &mut AnyConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    super::sql::query("UPDATE events SET too_old = 1, processed_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at.timestamp_millis())
        .execute(conn)
        .await?;
    Ok(())
}

/// Marks events processed, a few hundred per statement.
pub async fn mark_events_processed(
    conn: &mut AnyConnection,
    ids: &[&str],
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = "UPDATE events SET processed_at = $1 WHERE id IN ({list})";
    super::fetch_in(
        conn,
        sql,
        &[super::Lead::Millis(at.timestamp_millis())],
        ids,
    )
    .await?;
    Ok(())
}

/// Records an event the store itself raises (an unsubscribe, a change of stage), to be
/// processed by the next pass like any other; an id seen before is not recorded again.
pub async fn insert_event(
    conn: &mut AnyConnection,
    id: &str,
    customer_id: &str,
    name: &str,
    at: DateTime<Utc>,
    properties: &Value,
) -> Result<(), StoreError> {
    let event = RaisedEvent {
        id: id.to_string(),
        customer_id,
        name,
        at,
        properties: properties.to_string(),
    };
    insert_events(conn, &[event]).await
}

/// An event the store raises itself, as [`insert_events`] writes it.
pub struct RaisedEvent<'a> {
    pub id: String,
    pub customer_id: &'a str,
    pub name: &'a str,
    pub at: DateTime<Utc>,
    /// A JSON object.
    pub properties: String,
}

/// Records events the store raises, a hundred per statement (see [`insert_event`]).
pub async fn insert_events(
    conn: &mut AnyConnection,
    events: &[RaisedEvent<'_>],
) -> Result<(), StoreError> {
    let sql = "INSERT INTO events (id, customer_id, name, at, properties, recorded_at, changes) VALUES {values} ON CONFLICT (id) DO NOTHING";
    super::count_rows(conn, sql, 6, ", '{}'", events, |q, e| {
        q.bind(e.id.clone())
            .bind(e.customer_id)
            .bind(e.name)
            .bind(e.at.timestamp_millis())
            .bind(e.properties.clone())
            .bind(e.at.timestamp_millis())
    })
    .await?;
    Ok(())
}

/// An id for an event that came without one: a new event, never taken for another.
pub(super) fn fresh_event_id() -> Result<String, StoreError> {
    let random = crate::model::ids::random_secret()
        .map_err(|_| StoreError::Corrupt("no random source for an event id".into()))?;
    Ok(format!("ev:{}", &random[..32]))
}
