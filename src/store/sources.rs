//! What tidings has read of each source: a feed's cursor (the last row's `updated_at` and
//! id, as the shop's database gave them) moved in the transaction that writes the rows it
//! covers, how many rows were read and refused, the last error, and when the feed last
//! caught up — what `status` and `/metrics` show.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;

use super::orders::{OrderCounts, write_orders};
use super::{Store, StoreError, from_millis};
use crate::import::{CustomerRow, OrderRow, RowError};

/// Where a feed has read up to: the last row's keys, each as the shop's database gave it
/// (a text in its own format, or a number), to be bound back as the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub updated_at: Value,
    pub id: Value,
}

/// A page of rows read from a source, checked.
#[derive(Debug)]
pub enum SourceRows {
    Customers(Vec<CustomerRow>),
    Orders(Vec<OrderRow>),
}

/// What writing a page did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageWritten {
    pub customers: u64,
    pub orders: OrderCounts,
    /// Rows the store refused (an order of a customer nobody imported, a new customer
    /// without an address).
    pub errors: Vec<RowError>,
    /// Whether a row of this page was refused: the cursor stopped before it.
    pub held: bool,
}

/// A page to write and where its feed's cursor goes with it.
pub struct SourcePage<'a> {
    pub source: &'a str,
    pub feed: &'a str,
    pub rows: SourceRows,
    /// Each row's position, in the order read (a row's `line` is its index plus one).
    pub positions: &'a [Position],
    /// The rows refused before the store saw them, by index.
    pub refused: Vec<usize>,
    /// A row was refused earlier in this run: the cursor stays where it is.
    pub held: bool,
    pub now: DateTime<Utc>,
}

/// The transaction pages are written in: one per page, or one for a whole dry run (which
/// ends rolled back, so that an order sees the customers read before it).
pub struct SourceTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    events: u64,
    /// SQLite: the connection's own page cache size, given back at the end.
    cache: Option<i64>,
}

/// The page cache a sync's transaction has on SQLite, in KiB.
const SYNC_CACHE_KIB: u32 = 32 * 1024;

/// A feed as `status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedStatus {
    pub source: String,
    pub feed: String,
    pub position: Option<Position>,
    pub rows_read: i64,
    pub rows_refused: i64,
    pub last_run_at: Option<DateTime<Utc>>,
    pub caught_up_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

impl Store {
    /// The feed's cursor: `None` before its first page.
    pub async fn source_position(
        &self,
        source: &str,
        feed: &str,
    ) -> Result<Option<Position>, StoreError> {
        let text: Option<Option<String>> = super::sql::query_scalar(
            "SELECT position FROM source_cursors WHERE source = $1 AND feed = $2",
        )
        .bind(source)
        .bind(feed)
        .fetch_optional(&self.pool)
        .await?;
        text.flatten()
            .map(|t| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("cursor of {source}/{feed}: {e}")))
            })
            .transpose()
    }

    pub async fn source_tx(&self) -> Result<SourceTx, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut cache = None;
        if self.backend == super::Backend::Sqlite {
            // The pages of a sync touch the indexes of customers, orders and events at
            // random: a larger cache while they are written keeps each index page read once
            // per transaction. The connection's own size comes back before it commits.
            let own: i64 = super::sql::query_scalar("PRAGMA cache_size")
                .fetch_one(&mut *tx)
                .await?;
            super::sql::query(sqlx::AssertSqlSafe(format!(
                "PRAGMA cache_size = -{SYNC_CACHE_KIB}"
            )))
            .execute(&mut *tx)
            .await?;
            cache = Some(own);
        }
        Ok(SourceTx {
            tx,
            events: 0,
            cache,
        })
    }

    /// Commits what the pages wrote (waking the daemons when they recorded events), or
    /// rolls it back.
    pub async fn end_source_tx(&self, mut t: SourceTx, keep: bool) -> Result<(), StoreError> {
        if let Some(own) = t.cache {
            // Shrinking frees no page the transaction holds; the pages over it are
            // released as the commit lets them go.
            super::sql::query(sqlx::AssertSqlSafe(format!("PRAGMA cache_size = {own}")))
                .execute(&mut *t.tx)
                .await?;
        }
        if !keep {
            t.tx.rollback().await?;
            return Ok(());
        }
        if t.events > 0 {
            super::wake::announce_in(self, &mut t.tx).await?;
        }
        t.tx.commit().await?;
        if t.events > 0 {
            super::wake::announce_after(self);
        }
        Ok(())
    }

    /// Writes a page's good rows and moves the cursor with them.
    pub async fn write_source_page(
        &self,
        t: &mut SourceTx,
        page: SourcePage<'_>,
    ) -> Result<PageWritten, StoreError> {
        let mut out = PageWritten::default();
        let tx = &mut t.tx;
        let now_ms = page.now.timestamp_millis();
        match &page.rows {
            SourceRows::Customers(rows) => {
                for result in self.upsert_customer_page(tx, rows, now_ms).await? {
                    match result {
                        Ok(()) => out.customers += 1,
                        Err(e) => out.errors.push(e),
                    }
                }
            }
            SourceRows::Orders(rows) => {
                let (counts, errors) = write_orders(tx, rows, page.now).await?;
                out.orders = counts;
                out.errors = errors;
            }
        }
        let refused = page.refused.len() + out.errors.len();
        // The cursor stops before the first row refused, by either.
        let first = (page.refused.iter().copied())
            .chain(out.errors.iter().map(|e| e.line.saturating_sub(1) as usize))
            .min();
        out.held = first.is_some();
        let position = match first {
            _ if page.held => None,
            None => page.positions.last(),
            Some(0) => None,
            Some(i) => page.positions.get(i - 1),
        };
        let position = match position {
            Some(p) => {
                Some(serde_json::to_string(p).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            None => None,
        };
        super::sql::query(
            "INSERT INTO source_cursors (source, feed, position, rows_read, rows_refused, last_run_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, feed) DO UPDATE SET position = COALESCE(excluded.position, source_cursors.position), \
             rows_read = source_cursors.rows_read + excluded.rows_read, rows_refused = source_cursors.rows_refused + excluded.rows_refused, \
             last_run_at = excluded.last_run_at",
        )
        .bind(page.source)
        .bind(page.feed)
        .bind(position)
        .bind(page.positions.len() as i64)
        .bind(refused as i64)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
        t.events += out.orders.events;
        Ok(out)
    }

    /// Records how a feed's run ended: caught up (every row read, none refused) or not,
    /// and the error that stopped it, if one did (a clean run clears the last one).
    pub async fn source_run_ended(
        &self,
        source: &str,
        feed: &str,
        caught_up: bool,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let now = now.timestamp_millis();
        let caught_up = caught_up.then_some(now);
        let error_at = error.map(|_| now);
        super::sql::query(
            "INSERT INTO source_cursors (source, feed, last_run_at, caught_up_at, last_error, last_error_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (source, feed) DO UPDATE SET last_run_at = excluded.last_run_at, \
             caught_up_at = COALESCE(excluded.caught_up_at, source_cursors.caught_up_at), \
             last_error = excluded.last_error, last_error_at = COALESCE(excluded.last_error_at, source_cursors.last_error_at)",
        )
        .bind(source)
        .bind(feed)
        .bind(now)
        .bind(caught_up)
        .bind(error.map(|e| e.chars().take(1_000).collect::<String>()))
        .bind(error_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every feed the store has a record of, by source and feed.
    pub async fn source_status(&self) -> Result<Vec<FeedStatus>, StoreError> {
        let rows = super::sql::query("SELECT * FROM source_cursors ORDER BY source, feed")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let position: Option<String> = r.try_get("position")?;
                Ok(FeedStatus {
                    source: r.try_get("source")?,
                    feed: r.try_get("feed")?,
                    position: position.and_then(|p| serde_json::from_str(&p).ok()),
                    rows_read: r.try_get("rows_read")?,
                    rows_refused: r.try_get("rows_refused")?,
                    last_run_at: from_millis(r.try_get("last_run_at")?),
                    caught_up_at: from_millis(r.try_get("caught_up_at")?),
                    last_error: r.try_get("last_error")?,
                    last_error_at: from_millis(r.try_get("last_error_at")?),
                })
            })
            .collect()
    }
}
