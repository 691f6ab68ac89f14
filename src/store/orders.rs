//! The shop's orders, upserted by id a page at a time: the events an order records (placed
//! once, cancelled or refunded once), and each customer's order figures derived from the
//! counted orders in the same transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;

use super::{Lead, Store, StoreError, count_rows, fetch_in};
use crate::import::{OrderRow, RowError};
use crate::model::order::{ORDER_PLACED, Standing};

/// How many orders one pass of [`write_orders`] takes: every statement it makes covers
/// the whole page.
pub const ORDER_PAGE: usize = 1_000;

/// What writing orders did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OrderCounts {
    /// Orders seen for the first time.
    pub new: u64,
    /// Orders that were kept before and say something else now.
    pub changed: u64,
    /// Orders seen again as they were kept: nothing written.
    pub unchanged: u64,
    /// Events recorded: `order_placed`, `order_cancelled`, `order_refunded`.
    pub events: u64,
}

impl OrderCounts {
    pub fn add(&mut self, other: &OrderCounts) {
        self.new += other.new;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.events += other.events;
    }
}

/// What an order import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct OrderReport {
    pub counts: OrderCounts,
    pub errors: Vec<RowError>,
    /// Whether the good rows were kept (`--skip-invalid`, or no errors at all).
    pub committed: bool,
}

impl Store {
    /// Upserts orders by id in one transaction, as of `now` (a rehearsal's clock). With `skip_invalid` false, one bad row (or
    /// an order of a customer nobody imported) means nothing is written.
    pub async fn import_orders(
        &self,
        rows: impl Iterator<Item = Result<OrderRow, Vec<RowError>>>,
        skip_invalid: bool,
        now: DateTime<Utc>,
    ) -> Result<OrderReport, StoreError> {
        let mut report = OrderReport::default();
        let mut tx = self.write_tx().await?;
        let mut lines: HashMap<String, u64> = HashMap::new();
        let mut page = Vec::new();
        for row in rows {
            match row {
                Ok(row) => {
                    if let Some(first) = lines.insert(row.order.id.clone(), row.line) {
                        report.errors.push(RowError {
                            line: row.line,
                            column: None,
                            field: "id".into(),
                            message: format!(
                                "order `{}` appears more than once (also at line {first}); keep one row per order",
                                row.order.id
                            ),
                        });
                        continue;
                    }
                    page.push(row);
                }
                Err(mut errors) => report.errors.append(&mut errors),
            }
            if page.len() >= ORDER_PAGE {
                self.import_page(&mut tx, &mut page, now, skip_invalid, &mut report)
                    .await?;
            }
        }
        self.import_page(&mut tx, &mut page, now, skip_invalid, &mut report)
            .await?;
        if report.errors.is_empty() || skip_invalid {
            if report.counts.events > 0 {
                super::wake::announce_in(self, &mut tx).await?;
            }
            tx.commit().await?;
            report.committed = true;
            if report.counts.events > 0 {
                super::wake::announce_after(self);
            }
        } else {
            tx.rollback().await?;
            report.counts = OrderCounts::default();
        }
        Ok(report)
    }

    async fn import_page(
        &self,
        tx: &mut sqlx::AnyConnection,
        page: &mut Vec<OrderRow>,
        now: DateTime<Utc>,
        skip_invalid: bool,
        report: &mut OrderReport,
    ) -> Result<(), StoreError> {
        let rows = std::mem::take(page);
        // Nothing will be kept: the rows are still checked against the store, so that
        // every bad row is reported in one go.
        let (counts, mut errors) = write_orders(tx, &rows, now).await?;
        if report.errors.is_empty() || skip_invalid {
            report.counts.add(&counts);
        }
        report.errors.append(&mut errors);
        Ok(())
    }
}

/// Writes a page of orders (the last row of an id wins): new and changed orders upserted,
/// their events recorded, their customers' figures derived again. An order whose customer
/// the store does not have is refused, and so is nothing else; the rest are written.
pub async fn write_orders(
    conn: &mut sqlx::AnyConnection,
    rows: &[OrderRow],
    now: DateTime<Utc>,
) -> Result<(OrderCounts, Vec<RowError>), StoreError> {
    let mut counts = OrderCounts::default();
    let mut errors = Vec::new();
    let mut last: HashMap<&str, &OrderRow> = HashMap::new();
    for row in rows {
        last.insert(&row.order.id, row);
    }
    let mut rows: Vec<&OrderRow> = last.into_values().collect();
    rows.sort_by_key(|r| r.line);
    known_customers(conn, &mut rows, &mut errors).await?;
    let kept = kept_orders(conn, &rows).await?;
    let mut writes: Vec<(&OrderRow, String)> = Vec::new();
    let mut events: Vec<OrderEvent> = Vec::new();
    let mut touched: Vec<String> = Vec::new();
    for row in rows {
        let o = &row.order;
        // What its events carry, and what tells a change: written out once.
        let properties = Value::Object(o.properties()).to_string();
        let fingerprint = o.fingerprint(&properties);
        let earlier = kept.get(&o.id);
        match earlier {
            Some(k) if k.fingerprint == fingerprint => {
                counts.unchanged += 1;
                continue;
            }
            Some(k) => {
                counts.changed += 1;
                touched.push(k.customer_id.clone());
            }
            None => {
                counts.new += 1;
                events.push(OrderEvent::of(row, &properties, ORDER_PLACED, o.placed_at));
            }
        }
        let standing = o.standing();
        if let Some(name) = standing.event()
            && earlier.is_none_or(|k| k.standing != standing)
        {
            // A change the shop dated is dated so; one seen first as cancelled is as old
            // as the order; one seen only now happened by now.
            let at = match (earlier, row.updated_at) {
                (_, Some(t)) => t,
                (None, None) => o.placed_at,
                (Some(_), None) => now,
            };
            events.push(OrderEvent::of(row, &properties, name, at));
        }
        touched.push(o.customer_id.clone());
        writes.push((row, fingerprint));
    }
    upsert(conn, &writes, now).await?;
    counts.events = record(conn, &events, now).await?;
    derive_figures(conn, &touched, now).await?;
    Ok((counts, errors))
}

/// Refuses (into `errors`) the rows whose customer the store does not have.
async fn known_customers(
    conn: &mut sqlx::AnyConnection,
    rows: &mut Vec<&OrderRow>,
    errors: &mut Vec<RowError>,
) -> Result<(), StoreError> {
    let customers: Vec<&str> = unique(rows.iter().map(|r| r.order.customer_id.as_str()));
    let known: HashSet<String> = fetch_in(
        conn,
        "SELECT id FROM customers WHERE id IN ({list})",
        &[],
        &customers,
    )
    .await?
    .iter()
    .map(|r| r.try_get::<String, _>(0))
    .collect::<Result<_, _>>()?;
    rows.retain(|r| {
        let ok = known.contains(&r.order.customer_id);
        if !ok {
            errors.push(RowError {
                line: r.line,
                column: None,
                field: "customer_id".into(),
                message: format!(
                    "order `{}`: no customer has the id `{}`; import the customer first",
                    r.order.id, r.order.customer_id
                ),
            });
        }
        ok
    });
    Ok(())
}

/// What the store holds of these orders already, by id.
async fn kept_orders(
    conn: &mut sqlx::AnyConnection,
    rows: &[&OrderRow],
) -> Result<HashMap<String, Kept>, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.order.id.as_str()).collect();
    let mut kept = HashMap::new();
    for r in fetch_in(
        conn,
        "SELECT id, customer_id, status, fingerprint FROM orders WHERE id IN ({list})",
        &[],
        &ids,
    )
    .await?
    {
        let status: String = r.try_get("status")?;
        kept.insert(
            r.try_get("id")?,
            Kept {
                customer_id: r.try_get("customer_id")?,
                standing: Standing::of(&status),
                fingerprint: r.try_get("fingerprint")?,
            },
        );
    }
    Ok(kept)
}

/// What the store held of an order before this page.
struct Kept {
    customer_id: String,
    standing: Standing,
    fingerprint: String,
}

/// An event an order records, with the id that makes it once per order (also its
/// fingerprint: the id says all that tells it from another).
struct OrderEvent {
    id: String,
    customer_id: String,
    name: &'static str,
    at: DateTime<Utc>,
    properties: String,
}

impl OrderEvent {
    fn of(row: &OrderRow, properties: &str, name: &'static str, at: DateTime<Utc>) -> Self {
        let o = &row.order;
        Self {
            id: format!("order:{}:{name}", o.id),
            customer_id: o.customer_id.clone(),
            name,
            at,
            properties: properties.to_string(),
        }
    }
}

fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(*i)).collect()
}

async fn upsert(
    conn: &mut sqlx::AnyConnection,
    writes: &[(&OrderRow, String)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let sql = "INSERT INTO orders (id, customer_id, total, currency, status, coupon, placed_at, lines, extra, counted, fingerprint, recorded_at, updated_at) VALUES {values} \
        ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, total = excluded.total, currency = excluded.currency, status = excluded.status, coupon = excluded.coupon, placed_at = excluded.placed_at, lines = excluded.lines, extra = excluded.extra, counted = excluded.counted, fingerprint = excluded.fingerprint, updated_at = excluded.updated_at";
    let now = now.timestamp_millis();
    count_rows(conn, sql, 13, "", writes, |q, (row, fingerprint)| {
        let o = &row.order;
        q.bind(o.id.clone())
            .bind(o.customer_id.clone())
            .bind(o.total)
            .bind(o.currency.clone())
            .bind(o.status.clone())
            .bind(o.coupon.clone())
            .bind(o.placed_at.timestamp_millis())
            .bind(o.lines.to_string())
            .bind(Value::Object(o.extra.clone()).to_string())
            .bind(i32::from(o.standing() == Standing::Counted))
            .bind(fingerprint.clone())
            .bind(now)
            .bind(now)
    })
    .await?;
    Ok(())
}

/// Records the events; one recorded before (the same order and name) is not recorded again.
async fn record(
    conn: &mut sqlx::AnyConnection,
    events: &[OrderEvent],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let sql = "INSERT INTO events (id, customer_id, name, at, properties, changes, recorded_at, fingerprint) VALUES {values} ON CONFLICT (id) DO NOTHING";
    let now = now.timestamp_millis();
    count_rows(conn, sql, 8, "", events, |q, e| {
        q.bind(e.id.clone())
            .bind(e.customer_id.clone())
            .bind(e.name)
            .bind(e.at.timestamp_millis())
            .bind(e.properties.clone())
            .bind("{}")
            .bind(now)
            .bind(e.id.clone())
    })
    .await
}

/// Each named customer's `orders_count`, `total_spent`, `first_order_at` and
/// `last_order_at`, from their counted orders.
async fn derive_figures(
    conn: &mut sqlx::AnyConnection,
    customers: &[String],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if customers.is_empty() {
        return Ok(());
    }
    super::known::customers_written();
    let ids = unique(customers.iter().map(String::as_str));
    // One look at a customer's counted orders gives all four (a row value).
    let sql = "UPDATE customers SET (orders_count, total_spent, first_order_at, last_order_at) = \
         (SELECT COUNT(*), COALESCE(SUM(o.total), 0), MIN(o.placed_at), MAX(o.placed_at) \
         FROM orders o WHERE o.customer_id = customers.id AND o.counted = 1), \
         updated_at = $1 WHERE id IN ({list})";
    fetch_in(conn, sql, &[Lead::Millis(now.timestamp_millis())], &ids).await?;
    Ok(())
}
