//! The topics a customer opted out of (`topics:` of tidings.yaml): marketing mail of such a
//! topic is not sent to them, while the rest still is.

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, BTreeSet};

use super::{Store, StoreError};

fn id(customer_id: &str, topic: &str) -> String {
    format!("{customer_id}\n{topic}")
}

/// The topics the customer opted out of.
pub async fn opted_out(
    conn: &mut AnyConnection,
    customer_id: &str,
) -> Result<BTreeSet<String>, StoreError> {
    let rows = super::sql::query("SELECT topic FROM topic_optouts WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// The topics each of a page of customers opted out of (none: not in the map).
pub async fn opted_out_among(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<BTreeMap<String, BTreeSet<String>>, StoreError> {
    let sql = "SELECT customer_id, topic FROM topic_optouts WHERE customer_id IN ({list})";
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in super::fetch_in(conn, sql, &[], ids).await? {
        out.entry(r.try_get(0)?).or_default().insert(r.try_get(1)?);
    }
    Ok(out)
}

/// Makes `topics` the customer's opt-outs, in the caller's transaction (an import row's
/// `unsubscribed_topics`).
pub(super) async fn replace(
    conn: &mut AnyConnection,
    customer_id: &str,
    topics: &[String],
    at: i64,
) -> Result<(), StoreError> {
    super::sql::query("DELETE FROM topic_optouts WHERE customer_id = $1")
        .bind(customer_id)
        .execute(&mut *conn)
        .await?;
    for topic in topics {
        super::sql::query("INSERT INTO topic_optouts (id, customer_id, topic, at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(id(customer_id, topic))
            .bind(customer_id)
            .bind(topic)
            .bind(at)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Customers opted out, per topic (for `status`).
pub async fn counts(conn: &mut AnyConnection) -> Result<BTreeMap<String, i64>, StoreError> {
    let rows = super::sql::query("SELECT topic, COUNT(*) FROM topic_optouts GROUP BY topic")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

impl Store {
    /// The topics the customer opted out of.
    pub async fn topics_opted_out(
        &self,
        customer_id: &str,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        opted_out(&mut conn, customer_id).await
    }

    /// Sets which of `topics` the customer opted out of (the others they get again), in one
    /// transaction; `false` when there is no such customer.
    ///
    /// A new opt-out is an unsubscribe from that topic, credited to the email whose link
    /// was used (`delivery`), as an unsubscribe from everything is.
    pub async fn set_topics(
        &self,
        customer_id: &str,
        topics: &[String],
        out: &BTreeSet<String>,
        (delivery, at): (Option<&str>, DateTime<Utc>),
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        // The customer's row is held until this save commits (on SQLite the write
        // transaction already holds the one write lock): saves made at once apply one after
        // the other, and the last one's choices stand, not a mix of several.
        let lock = match self.backend {
            super::Backend::Postgres => "SELECT 1 FROM customers WHERE id = $1 FOR UPDATE",
            super::Backend::Sqlite => "SELECT 1 FROM customers WHERE id = $1",
        };
        let known = super::sql::query(lock)
            .bind(customer_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !known {
            return Ok(false);
        }
        for topic in topics {
            if out.contains(topic) {
                let added = super::sql::query("INSERT INTO topic_optouts (id, customer_id, topic, at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
                    .bind(id(customer_id, topic))
                    .bind(customer_id)
                    .bind(topic)
                    .bind(at.timestamp_millis())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if added > 0 && delivery.is_some() {
                    let kind = crate::model::states::EngagementKind::Unsubscribe;
                    super::engagement::credit(&mut tx, kind, customer_id, delivery, at).await?;
                }
            } else {
                super::sql::query("DELETE FROM topic_optouts WHERE id = $1")
                    .bind(id(customer_id, topic))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }
}
