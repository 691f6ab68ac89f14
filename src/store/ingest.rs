//! Customers and events coming in (imports and the API): upserted or recorded in one
//! transaction, all or none, an event's id telling a retry from a new event.

use super::{Backend, Store, StoreError, millis};
use crate::import::{CustomerRow, EventId, EventRow, RowError};
use crate::model::customer::FieldValue;
use chrono::Utc;
use serde_json::{Map, Value};

/// Customers of a file or a body written together (a hundred per statement).
const IMPORT_PAGE: usize = 1_000;

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub written: u64,
    /// Bad rows, with every problem of each.
    pub errors: Vec<RowError>,
    /// Whether the good rows were kept (`--skip-invalid`, or no errors at all).
    pub committed: bool,
}

impl Store {
    /// Upserts customers by id in one transaction. With `skip_invalid` false, one bad row
    /// means nothing is written; with it true, the good rows are kept.
    pub async fn import_customers(
        &self,
        rows: impl Iterator<Item = Result<CustomerRow, Vec<RowError>>>,
        skip_invalid: bool,
    ) -> Result<ImportReport, StoreError> {
        let mut report = ImportReport::default();
        let mut tx = self.write_tx().await?;
        let now = Utc::now().timestamp_millis();
        // A second row for one id would silently replace the first: the file is refused.
        let mut lines: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        // Good rows are written a page at a time; a bad row writes those before it first,
        // so that what is written and reported is as if each row were written in turn.
        let mut page: Vec<CustomerRow> = Vec::new();
        for row in rows {
            let bad = match row {
                Ok(row) => match lines.insert(row.customer.id.clone(), row.line) {
                    Some(first) => vec![RowError {
                        line: row.line,
                        column: None,
                        field: "id".into(),
                        message: format!(
                            "`{}` appears more than once (also at line {first}); keep one row per customer",
                            row.customer.id
                        ),
                    }],
                    // Once a row is bad nothing will be kept: the rest are only read, to
                    // report every bad row.
                    None if !report.errors.is_empty() && !skip_invalid => continue,
                    None => {
                        page.push(row);
                        if page.len() >= IMPORT_PAGE {
                            self.import_customer_page(&mut tx, &mut page, now, &mut report)
                                .await?;
                        }
                        continue;
                    }
                },
                Err(errors) => errors,
            };
            self.import_customer_page(&mut tx, &mut page, now, &mut report)
                .await?;
            report.errors.extend(bad);
        }
        self.import_customer_page(&mut tx, &mut page, now, &mut report)
            .await?;
        finish_import(tx, report, skip_invalid).await
    }

    /// Writes the page of good rows (emptying it) into the report.
    async fn import_customer_page(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        page: &mut Vec<CustomerRow>,
        now: i64,
        report: &mut ImportReport,
    ) -> Result<(), StoreError> {
        let rows = std::mem::take(page);
        for result in self.upsert_customer_page(tx, &rows, now).await? {
            match result {
                Ok(()) => report.written += 1,
                Err(error) => report.errors.push(error),
            }
        }
        Ok(())
    }

    pub(super) async fn upsert_customer(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        row: &CustomerRow,
        now: i64,
    ) -> Result<Result<(), RowError>, StoreError> {
        let c = &row.customer;
        // Without an address the row can only change a customer who already has one.
        let update_only = !row.present.contains(&"email");
        if update_only && !self.has_customer(tx, &c.id).await? {
            return Ok(Err(RowError {
                line: row.line,
                column: None,
                field: "email".into(),
                message: "a new customer needs an email address".into(),
            }));
        }
        let columns = given_columns(row);
        // One row: the insert's `{values}` is this row's placeholders.
        let one = format!("({})", super::sql::placeholders(1, columns.len() + 3));
        let sql = upsert_sql(self.backend, &columns, update_only).replace("{values}", &one);
        super::known::customers_written();
        let q = super::sql::query(sqlx::AssertSqlSafe(sql));
        bind_customer(q, row, &columns, now)
            .execute(&mut **tx)
            .await?;
        if let Some(topics) = &row.unsubscribed_topics {
            super::topics::replace(tx, &c.id, topics, now).await?;
        }
        Ok(Ok(()))
    }

    async fn has_customer(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: &str,
    ) -> Result<bool, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let sql = format!("SELECT 1 FROM customers WHERE id = $1{lock}");
        let row = super::sql::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.is_some())
    }

    /// Records events in one transaction; an id seen before is ignored (a retried import or
    /// POST records one event). Returns how many were new. An event for an unknown customer
    /// is a row error.
    pub async fn record_events(
        &self,
        rows: impl Iterator<Item = Result<EventRow, Vec<RowError>>>,
        skip_invalid: bool,
    ) -> Result<ImportReport, StoreError> {
        let mut report = ImportReport::default();
        let mut tx = self.write_tx().await?;
        events_in(&mut tx, rows, &mut report).await?;
        if report.written > 0 && (report.errors.is_empty() || skip_invalid) {
            super::wake::announce_in(self, &mut tx).await?;
        }
        let report = finish_import(tx, report, skip_invalid).await?;
        if report.committed && report.written > 0 {
            super::wake::announce_after(self);
        }
        Ok(report)
    }
}

/// Records events in a transaction that may write more: an event for a customer the
/// store does not have is a row error.
async fn events_in(
    tx: &mut sqlx::AnyConnection,
    rows: impl Iterator<Item = Result<EventRow, Vec<RowError>>>,
    report: &mut ImportReport,
) -> Result<(), StoreError> {
    let now = Utc::now().timestamp_millis();
    for row in rows {
        let row = match row {
            Ok(r) => r,
            Err(mut e) => {
                report.errors.append(&mut e);
                continue;
            }
        };
        let known = super::sql::query("SELECT 1 FROM customers WHERE id = $1")
            .bind(&row.customer_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !known {
            report.errors.push(RowError {
                line: row.line,
                column: None,
                field: "customer_id".into(),
                message: format!(
                    "no customer has the id `{}`; import the customer first",
                    row.customer_id
                ),
            });
            continue;
        }
        insert_event(tx, &row, now, report).await?;
    }
    Ok(())
}

/// What a batch of customers, events and orders did (`POST /v1/segment`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub customers: u64,
    pub events: u64,
    pub orders: super::orders::OrderCounts,
    pub errors: Vec<RowError>,
}

impl Store {
    /// Customers, then orders, then events, in one transaction: all or none (a row error
    /// anywhere keeps nothing). A batch sent twice leaves the store as once.
    pub async fn record_batch(
        &self,
        customers: Vec<CustomerRow>,
        orders: Vec<crate::import::OrderRow>,
        events: Vec<EventRow>,
    ) -> Result<BatchReport, StoreError> {
        let mut out = BatchReport::default();
        let mut tx = self.write_tx().await?;
        let now = Utc::now();
        for row in &customers {
            match self
                .upsert_customer(&mut tx, row, now.timestamp_millis())
                .await?
            {
                Ok(()) => out.customers += 1,
                Err(e) => out.errors.push(e),
            }
        }
        let (counts, mut errors) = super::orders::write_orders(&mut tx, &orders, now).await?;
        out.orders = counts;
        out.errors.append(&mut errors);
        let mut report = ImportReport::default();
        events_in(&mut tx, events.into_iter().map(Ok), &mut report).await?;
        out.events = report.written;
        out.errors.append(&mut report.errors);
        let woken = out.events + out.orders.events > 0;
        if !out.errors.is_empty() {
            tx.rollback().await?;
            return Ok(out);
        }
        if woken {
            super::wake::announce_in(self, &mut tx).await?;
        }
        tx.commit().await?;
        if woken {
            super::wake::announce_after(self);
        }
        Ok(out)
    }
}

/// The columns a row gives (an upsert leaves the others as they were), the attributes
/// aside.
fn given_columns(row: &CustomerRow) -> Vec<&'static str> {
    let mut columns: Vec<&str> = row
        .present
        .iter()
        .copied()
        .filter(|f| *f != "id" && *f != "attributes")
        .collect();
    columns.dedup();
    columns
}

/// A customer's values in the order [`upsert_sql`] takes them: the id, each column, the
/// attributes to merge, the time. Column names come from the fixed customer field list,
/// never from a file; every value is a bound parameter.
fn bind_customer<'q>(
    mut q: super::sql::AnyQuery<'q>,
    row: &CustomerRow,
    columns: &[&str],
    now: i64,
) -> super::sql::AnyQuery<'q> {
    let c = &row.customer;
    q = q.bind(c.id.clone());
    for col in columns {
        let Some(f) = crate::model::customer::field(col) else {
            continue;
        };
        q = match (f.get)(c) {
            FieldValue::Text(t) => q.bind(t.map(str::to_string)),
            FieldValue::Date(d) => q.bind(d.map(|d| d.to_string())),
            FieldValue::Time(t) => q.bind(millis(t)),
            FieldValue::Count(n) => q.bind(n),
            FieldValue::Amount(n) => q.bind(n),
            FieldValue::Tags(t) => q.bind(serde_json::to_string(t).unwrap_or_else(|_| "[]".into())),
            FieldValue::Attributes(_) => q,
        };
    }
    q.bind(Value::Object(c.attributes.clone()).to_string())
        .bind(now)
}

impl Store {
    /// Upserts a page of customers (a source's), a hundred per statement where rows give
    /// the same columns with an address (as a query's rows do); the others one at a time.
    /// The result of each row, in order.
    pub(super) async fn upsert_customer_page(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        rows: &[CustomerRow],
        now: i64,
    ) -> Result<Vec<Result<(), RowError>>, StoreError> {
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        let columns = given_columns(first);
        let mut seen = std::collections::HashSet::new();
        let together = |r: &CustomerRow| {
            r.present.contains(&"email")
                && r.unsubscribed_topics.is_none()
                && given_columns(r) == columns
        };
        // The last row of an id wins, as it would one at a time.
        let mut batch: Vec<&CustomerRow> = Vec::new();
        for r in rows.iter().rev() {
            if together(r) && seen.insert(r.customer.id.as_str()) {
                batch.push(r);
            }
        }
        batch.reverse();
        if !batch.is_empty() {
            super::known::customers_written();
            let sql = upsert_sql(self.backend, &columns, false);
            super::count_rows(tx, &sql, columns.len() + 3, "", &batch, |q, r| {
                bind_customer(q, r, &columns, now)
            })
            .await?;
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(match together(r) {
                true => Ok(()),
                false => self.upsert_customer(tx, r, now).await?,
            });
        }
        Ok(out)
    }
}

/// `$1` is the id, then one parameter per column, the attributes to merge and the time;
/// an insert's rows stand at `{values}` (one row's, or a page's: `sql::multi_row`).
/// A row without an address updates (an INSERT would break `email NOT NULL` before any
/// conflict is seen).
fn upsert_sql(backend: Backend, columns: &[&str], update_only: bool) -> String {
    let merge = |old: &str, new: &str| match backend {
        Backend::Sqlite => format!("attributes = json_patch({old}, {new})"),
        Backend::Postgres => format!("attributes = ({old}::jsonb || {new}::jsonb)::text"),
    };
    let n = columns.len();
    if update_only {
        let mut set: Vec<String> = (columns.iter().enumerate())
            .map(|(i, c)| format!("{c} = ${}", i + 2))
            .collect();
        set.push(merge("customers.attributes", &format!("${}", n + 2)));
        set.push(format!("updated_at = ${}", n + 3));
        return format!("UPDATE customers SET {} WHERE id = $1", set.join(", "));
    }
    let mut names = vec!["id"];
    names.extend(columns);
    names.extend(["attributes", "updated_at"]);
    let mut updates: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    updates.push(merge("customers.attributes", "excluded.attributes"));
    updates.push("updated_at = excluded.updated_at".into());
    format!(
        "INSERT INTO customers ({}) VALUES {{values}} ON CONFLICT (id) DO UPDATE SET {}",
        names.join(", "),
        updates.join(", ")
    )
}

/// Keeps an import's rows when all were good (or bad ones may be skipped), else none.
pub(super) async fn finish_import(
    tx: sqlx::Transaction<'_, sqlx::Any>,
    mut report: ImportReport,
    skip_invalid: bool,
) -> Result<ImportReport, StoreError> {
    if report.errors.is_empty() || skip_invalid {
        tx.commit().await?;
        report.committed = true;
    } else {
        tx.rollback().await?;
        report.written = 0;
    }
    Ok(report)
}

/// One checked event row into the store (a new id when it has none); a given id seen before
/// is a retry, recorded once — or, for a different event, an error.
async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    row: &EventRow,
    now: i64,
    report: &mut ImportReport,
) -> Result<(), StoreError> {
    let changes = if row.set.is_empty() {
        "{}".to_string()
    } else {
        let mut m = Map::new();
        m.insert("set".into(), Value::Object(row.set.clone()));
        Value::Object(m).to_string()
    };
    let id = match &row.id {
        EventId::Given(id) | EventId::Row(id) => id.clone(),
        EventId::None => super::events::fresh_event_id()?,
    };
    let inserted = super::sql::query(
        "INSERT INTO events (id, customer_id, name, at, properties, changes, recorded_at, fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(&row.customer_id)
    .bind(&row.name)
    .bind(row.at.timestamp_millis())
    .bind(Value::Object(row.properties.clone()).to_string())
    .bind(changes)
    .bind(now)
    .bind(&row.fingerprint)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    report.written += inserted;
    if inserted == 0 && matches!(row.id, EventId::Given(_)) {
        // Seen before: a retry of the same event, or a key reused for another.
        let earlier: Option<String> =
            super::sql::query_scalar("SELECT fingerprint FROM events WHERE id = $1")
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        if earlier.is_some_and(|f| f != row.fingerprint) {
            report.errors.push(RowError {
                line: row.line,
                column: None,
                field: "id".into(),
                message: "this id (or Idempotency-Key) was recorded before for a different event; give a new event a new key".into(),
            });
        }
    }
    Ok(())
}
