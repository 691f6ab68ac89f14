//! Where each customer stands in the lifecycle: the `stage` columns of `customers`, and the
//! `stage_entered` events a change records.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

use crate::customer::Customer;
use crate::store::{StoreError, customer_from_row, journeys};

/// The event a change of stage records, with `from` and `to` in its properties.
pub const STAGE_ENTERED: &str = "stage_entered";

/// A page of customers after `after_id` with their current stage, for the daily sweep.
pub async fn page(
    conn: &mut AnyConnection,
    after_id: &str,
    limit: i64,
) -> Result<Vec<(Customer, Option<String>)>, StoreError> {
    let rows = sqlx::query("SELECT * FROM customers WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after_id.to_string())
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((customer_from_row(r)?, r.try_get("stage")?)))
        .collect()
}

pub async fn current(conn: &mut AnyConnection, id: &str) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query("SELECT stage FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|r| r.try_get::<Option<String>, _>(0))
        .transpose()?
        .flatten())
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
    let moved = sqlx::query(
        "UPDATE customers SET stage = $1, stage_since = $2 WHERE id = $3 AND COALESCE(stage, '') = $4",
    )
    .bind(to)
    .bind(at.timestamp_millis())
    .bind(id)
    .bind(from.unwrap_or(""))
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if moved {
        journeys::insert_event(
            conn,
            &format!("{STAGE_ENTERED}:{id}:{to}:{}", at.timestamp_millis()),
            id,
            STAGE_ENTERED,
            at,
            &serde_json::json!({ "from": from, "to": to }),
        )
        .await?;
    }
    Ok(moved)
}
