//! Where each customer stands in the lifecycle: the `stage` columns of `customers`, and the
//! `stage_entered` events a change records.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use crate::model::customer::Customer;
use std::collections::HashSet;

use crate::model::customer::STAGE_ENTERED;
use crate::store::events::RaisedEvent;
use crate::store::{StoreError, customers};

/// A page of customers after `after_id` with their current stage, for the daily sweep.
pub async fn page(
    conn: &mut AnyConnection,
    after_id: &str,
    limit: i64,
) -> Result<Vec<(Customer, Option<String>)>, StoreError> {
    page_of(conn, after_id, limit, false).await
}

/// As [`page`], of the customers in no stage yet.
pub async fn unplaced_page(
    conn: &mut AnyConnection,
    after_id: &str,
    limit: i64,
) -> Result<Vec<(Customer, Option<String>)>, StoreError> {
    page_of(conn, after_id, limit, true).await
}

async fn page_of(
    conn: &mut AnyConnection,
    after_id: &str,
    limit: i64,
    unplaced_only: bool,
) -> Result<Vec<(Customer, Option<String>)>, StoreError> {
    let only = if unplaced_only {
        "stage IS NULL AND "
    } else {
        ""
    };
    let sql = customers::select(
        conn,
        &format!("SELECT * FROM customers WHERE {only}id > $1 ORDER BY id LIMIT {limit}"),
    );
    let rows = super::sql::query(sqlx::AssertSqlSafe(sql))
        .bind(after_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    customers::decode(conn, &rows).await
}

pub async fn current(conn: &mut AnyConnection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(
        super::sql::query("SELECT stage FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()?
            .flatten(),
    )
}

/// Moves a customer from `from` to `to` and records `stage_entered`, unless another pass
/// moved them first (the update checks `from`). Returns whether it moved them.
pub async fn enter(
    conn: &mut AnyConnection,
    id: &str,
    from: Option<&str>,
    to: &str,
    at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    Ok(enter_all(conn, &[Move { id, from, to }], at).await? == 1)
}

/// A change of stage: the customer, the stage they were read in, the stage they enter.
#[derive(Debug, Clone, Copy)]
pub struct Move<'a> {
    pub id: &'a str,
    pub from: Option<&'a str>,
    pub to: &'a str,
}

/// Makes many moves as [`enter`] does, a hundred per statement; returns how many were made.
pub async fn enter_all(
    conn: &mut AnyConnection,
    moves: &[Move<'_>],
    at: DateTime<Utc>,
) -> Result<u64, StoreError> {
    // A `VALUES` list names its columns column1, column2, … on SQLite and PostgreSQL.
    let sql = "UPDATE customers SET stage = v.column2, stage_since = v.column4 FROM (VALUES {values}) AS v WHERE customers.id = v.column1 AND COALESCE(customers.stage, '') = v.column3 RETURNING id";
    let since = at.timestamp_millis();
    let moved: HashSet<String> = super::for_rows(conn, sql, 4, "", moves, |q, m| {
        q.bind(m.id)
            .bind(m.to)
            .bind(m.from.unwrap_or(""))
            .bind(since)
    })
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect::<Result<_, _>>()?;
    let events: Vec<RaisedEvent> = moves
        .iter()
        .filter(|m| moved.contains(m.id))
        .map(|m| RaisedEvent {
            id: format!("{STAGE_ENTERED}:{}:{}:{since}", m.id, m.to),
            customer_id: m.id,
            name: STAGE_ENTERED,
            at,
            properties: serde_json::json!({ "from": m.from, "to": m.to }).to_string(),
        })
        .collect();
    super::events::insert_events(conn, &events).await?;
    Ok(moved.len() as u64)
}
