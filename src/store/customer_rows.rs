//! Customers as the engine reads and changes them: one, a group for a batch of journeys
//! (locked on PostgreSQL), a page for an audience, and the zones customers live in.

use super::{StoreError, customers, millis};
use crate::model::customer::Customer;
use crate::model::filter::{ColumnFilter, Comparison, FilterValue};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::AnyConnection;
use std::collections::HashMap;

pub async fn customer(conn: &mut AnyConnection, id: &str) -> Result<Option<Customer>, StoreError> {
    let row = super::sql::query("SELECT * FROM customers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.map(|r| customers::from_row(&r)).transpose()
}

/// A customer read in a transaction that may write them back: on PostgreSQL the row is
/// locked until it commits, so that an unsubscribe (or an API upsert) committed meanwhile
/// is not overwritten by this transaction's older copy. (On SQLite the write transaction
/// already holds the database's one write lock.)
pub async fn customer_for_update(
    conn: &mut AnyConnection,
    backend: super::Backend,
    id: &str,
) -> Result<Option<Customer>, StoreError> {
    let sql = match backend {
        super::Backend::Postgres => "SELECT * FROM customers WHERE id = $1 FOR UPDATE",
        super::Backend::Sqlite => "SELECT * FROM customers WHERE id = $1",
    };
    let row = super::sql::query(sql).bind(id).fetch_optional(conn).await?;
    row.map(|r| customers::from_row(&r)).transpose()
}

/// Writes every field of a customer back (after an event's `set` or an `update` step).
pub async fn save_customer(
    conn: &mut AnyConnection,
    c: &Customer,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    save_customers(conn, &[(c, now)]).await
}

/// Writes customers back, each as of its moment, a hundred per statement.
pub async fn save_customers(
    conn: &mut AnyConnection,
    customers: &[(&Customer, DateTime<Utc>)],
) -> Result<(), StoreError> {
    super::known::customers_written();
    // A `VALUES` list names its columns column1, column2, … on SQLite and PostgreSQL.
    let sql = "UPDATE customers SET email = v.column2, first_name = v.column3, last_name = v.column4, locale = v.column5, timezone = v.column6, birthday = v.column7, created_at = v.column8, last_order_at = v.column9, orders_count = v.column10, total_spent = v.column11, tags = v.column12, unsubscribed_at = v.column13, attributes = v.column14, updated_at = v.column15, first_order_at = v.column16 FROM (VALUES {values}) AS v WHERE customers.id = v.column1";
    super::count_rows(conn, sql, 16, "", customers, |q, (c, now)| {
        q.bind(c.id.clone())
            .bind(c.email.clone())
            .bind(c.first_name.clone())
            .bind(c.last_name.clone())
            .bind(c.locale.clone())
            .bind(c.timezone.clone())
            .bind(c.birthday.map(|d| d.to_string()))
            .bind(millis(c.created_at))
            .bind(millis(c.last_order_at))
            .bind(c.orders_count)
            .bind(c.total_spent)
            .bind(serde_json::to_string(&c.tags).unwrap_or_else(|_| "[]".into()))
            .bind(millis(c.unsubscribed_at))
            .bind(Value::Object(c.attributes.clone()).to_string())
            .bind(now.timestamp_millis())
            .bind(millis(c.first_order_at))
    })
    .await?;
    Ok(())
}

/// The customers with these ids, by id, read in a transaction that may write them back
/// (locked on PostgreSQL, in id order so that two workers lock shared customers alike).
pub async fn customers_for_update(
    conn: &mut AnyConnection,
    backend: super::Backend,
    ids: &[&str],
) -> Result<HashMap<String, Customer>, StoreError> {
    let sql = match backend {
        super::Backend::Postgres => {
            "SELECT * FROM customers WHERE id IN ({list}) ORDER BY id FOR UPDATE"
        }
        super::Backend::Sqlite => "SELECT * FROM customers WHERE id IN ({list}) ORDER BY id",
    };
    let sql = customers::select(&*conn, sql);
    let rows = super::fetch_in(&mut *conn, &sql, &[], ids).await?;
    Ok(customers::decode(conn, &rows)
        .await?
        .into_iter()
        .map(|(c, _)| (c.id.clone(), c))
        .collect())
}

/// A page of customers after `after_id`, in id order: how triggers stream the whole table
/// without holding it, or a read cursor, in memory.
pub async fn customers_page(
    conn: &mut AnyConnection,
    after_id: &str,
    limit: i64,
    filter: &CustomerFilter,
    audience: &ColumnFilter,
) -> Result<Vec<Customer>, StoreError> {
    let (condition, values): (String, Vec<String>) = match filter {
        CustomerFilter::All => (String::new(), Vec::new()),
        CustomerFilter::Zone(None) => (" AND timezone IS NULL".into(), Vec::new()),
        CustomerFilter::Zone(Some(z)) => (" AND timezone = $2".into(), vec![z.clone()]),
        CustomerFilter::BirthdayOn(zones) => {
            let mut values = Vec::new();
            let mut mark = |v: &str| {
                values.push(v.to_string());
                format!("${}", values.len() + 1)
            };
            // Every day at once first, which the birthday index answers; then each zone's.
            let mut days: Vec<&String> = zones.iter().flat_map(|(_, d)| d).collect();
            days.sort();
            days.dedup();
            let any_day: Vec<String> = days.into_iter().map(|d| mark(d)).collect();
            let each_zone: Vec<String> = zones
                .iter()
                .map(|(zone, days)| {
                    let zone = match zone {
                        None => "timezone IS NULL".to_string(),
                        Some(z) => format!("timezone = {}", mark(z)),
                    };
                    let days: Vec<String> = days.iter().map(|d| mark(d)).collect();
                    format!(
                        "({zone} AND substr(birthday, 6, 5) IN ({}))",
                        days.join(", ")
                    )
                })
                .collect();
            let condition = match each_zone.is_empty() {
                true => " AND 1 = 0".to_string(),
                false => format!(
                    " AND substr(birthday, 6, 5) IN ({}) AND ({})",
                    any_day.join(", "),
                    each_zone.join(" OR ")
                ),
            };
            (condition, values)
        }
    };
    let (pushed, pushed_values) = column_clause(audience, 2 + values.len());
    // The conditions' text comes from this file only; values are bound.
    let sql = customers::select(
        conn,
        &format!(
            "SELECT * FROM customers WHERE id > $1{condition}{pushed} ORDER BY id LIMIT {limit}"
        ),
    );
    let mut q = super::sql::query(sqlx::AssertSqlSafe(sql)).bind(after_id.to_string());
    for v in values {
        q = q.bind(v);
    }
    for v in pushed_values {
        q = match v {
            FilterValue::Int(n) => q.bind(n),
            FilterValue::Float(f) => q.bind(f),
            FilterValue::Text(t) => q.bind(t),
        };
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let page = customers::decode(conn, &rows).await?;
    Ok(page.into_iter().map(|(c, _)| c).collect())
}

/// ` AND ...` for a `WHERE` clause whose bound values start at `$first`, and the values.
fn column_clause(filter: &ColumnFilter, first: usize) -> (String, Vec<FilterValue>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (i, c) in filter.conditions.iter().enumerate() {
        let mark = format!("${}", first + i);
        let op = match c.op {
            Comparison::Eq => "=",
            Comparison::Ne => "<>",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        };
        // Rhai's `!=` holds for a missing value (`()` equals no literal); SQL's `<>` is
        // NULL there.
        if c.op == Comparison::Ne && c.nullable {
            sql.push_str(&format!(
                " AND ({col} IS NULL OR {col} <> {mark})",
                col = c.column
            ));
        } else {
            sql.push_str(&format!(" AND {} {op} {mark}", c.column));
        }
        values.push(c.value.clone());
    }
    (sql, values)
}

/// Which customers a trigger needs to look at: the part of its rule the database can
/// answer, so that a pass does not read every customer to find today's birthdays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerFilter {
    All,
    /// Customers whose `timezone` is this (`None`: customers without one).
    Zone(Option<String>),
    /// Customers in each of these zones (`None`: without one) whose birthday falls on one
    /// of its `MM-DD` days, in any year; nobody when there are none.
    BirthdayOn(Vec<(Option<String>, Vec<String>)>),
}

impl CustomerFilter {
    /// A filter no customer passes: reading a page for it would be a statement for nothing.
    pub fn is_nobody(&self) -> bool {
        matches!(self, CustomerFilter::BirthdayOn(zones) if zones.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // The audience's text as the compiler reads it, into this file's SQL.
    use crate::workflow::expr::pushdown::pushed;

    fn clause(audience: &str) -> String {
        column_clause(&pushed(audience), 3).0
    }

    /// What is pushed and what is not, by shape, as the SQL says it.
    #[test]
    fn only_a_leading_run_of_simple_comparisons_is_pushed() {
        assert_eq!(
            clause("customer.orders_count >= 3 && customer.locale == \"en-GB\""),
            " AND orders_count >= $3 AND locale = $4"
        );
        assert_eq!(
            clause("1 < customer.orders_count"),
            " AND orders_count > $3"
        );
        assert_eq!(
            clause("customer.first_name != \"Ada\""),
            " AND (first_name IS NULL OR first_name <> $3)"
        );
        assert_eq!(
            clause(
                "customer.total_spent > -5 && has_tag(customer, \"vip\") && customer.orders_count > 1"
            ),
            " AND total_spent > $3",
            "only the leading run"
        );
        for nothing in [
            "customer.orders_count > 1 || customer.orders_count == 0",
            "has_tag(customer, \"vip\") && customer.orders_count > 1",
            "customer.first_name < \"M\"",
            "customer.orders_count == \"3\"",
            "customer.orders_count + 1 > 3",
            "customer.email == \"a\\\"b\"",
            "!customer.orders_count > 1",
            "customer.orders_count > 0x10",
        ] {
            assert_eq!(clause(nothing), "", "{nothing}");
        }
        assert_eq!(
            column_clause(
                &pushed("(customer.orders_count > 1 || x) && customer.orders_count > 2"),
                1
            )
            .0,
            "",
            "a parenthesised first condition is not a comparison"
        );
        assert_eq!(
            column_clause(
                &pushed("customer.orders_count > 2 && (customer.orders_count > 1 || true)"),
                1
            )
            .0,
            " AND orders_count > $1",
            "`||` inside parentheses binds only there"
        );
    }
}
