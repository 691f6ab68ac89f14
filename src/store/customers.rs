//! Reading customer rows, one at a time or a page at a time.
//!
//! On SQLite, sqlx steps a statement on its own worker thread and hands every row to the
//! async runtime through a channel, copying it into an `AnyRow` (a vector of columns per
//! row) on the way, most of its cost threads waking each other (BENCHMARKS.md). The daily
//! stage sweep reads every customer, so that was most of a rehearsal. A page of customers
//! is therefore read on SQLite as one row: a JSON array SQLite builds, parsed here.
//! PostgreSQL's driver runs on the runtime itself and reads its rows as they are.

use std::str::FromStr;

use chrono::NaiveDate;
use serde::Deserialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::{StoreError, from_millis};
use crate::model::customer::Customer;

/// A customer as read, with the lifecycle stage the store holds for them.
pub type StagedCustomer = (Customer, Option<String>);

/// The statement that reads the customers `select` reads (`SELECT * FROM customers …`), in
/// the form [`decode`] takes: on SQLite, one row holding them all as JSON.
pub fn select(conn: &AnyConnection, select: &str) -> String {
    if conn.backend_name() != "SQLite" {
        return select.to_string();
    }
    // SQLite's JSON prints a REAL with 15 significant digits, which loses the last bits of
    // a sum such as 0.1 + 0.2. Its printf with 17 gives back the same `f64` for every value
    // tried within 1e±80 (and for none far beyond); outside 1e±15 the amount is left out
    // and read on its own (`exact_amounts`).
    format!(
        "SELECT json_group_array(json_array(c.id, c.email, c.first_name, c.last_name, \
         c.locale, c.timezone, c.birthday, c.created_at, c.last_order_at, c.orders_count, \
         CASE WHEN c.total_spent = 0 OR abs(c.total_spent) BETWEEN 1e-15 AND 1e15 \
         THEN printf('%!.17g', c.total_spent) END, \
         c.tags, c.unsubscribed_at, c.attributes, c.stage, c.first_order_at)) AS page FROM ({select}) AS c"
    )
}

/// The customers in rows read by a statement [`select`] made, in id order.
pub async fn decode(
    conn: &mut AnyConnection,
    rows: &[AnyRow],
) -> Result<Vec<StagedCustomer>, StoreError> {
    let mut out = Vec::new();
    let mut inexact = Vec::new();
    for row in rows {
        if row.columns().len() == 1 && row.try_column("page").is_ok() {
            let page: String = row.try_get("page")?;
            let listed: Vec<Listed> = serde_json::from_str(&page)
                .map_err(|e| StoreError::Corrupt(format!("customer page: {e}")))?;
            for l in listed {
                let (customer, exact) = l.customer()?;
                if !exact {
                    inexact.push(out.len());
                }
                out.push(customer);
            }
        } else {
            out.push((from_row(row)?, row.try_get("stage")?));
        }
    }
    if !inexact.is_empty() {
        exact_amounts(conn, &mut out, &inexact).await?;
    }
    // SQLite's aggregate keeps the subquery's order in practice, not by promise.
    if !out.is_sorted_by(|a, b| a.0.id <= b.0.id) {
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    }
    Ok(out)
}

/// Reads `total_spent` as a REAL for the customers at `at` in `customers`: amounts a page
/// did not carry.
async fn exact_amounts(
    conn: &mut AnyConnection,
    customers: &mut [StagedCustomer],
    at: &[usize],
) -> Result<(), StoreError> {
    let ids: Vec<&str> = at.iter().map(|&i| customers[i].0.id.as_str()).collect();
    let sql = "SELECT id, total_spent FROM customers WHERE id IN ({list})";
    let amounts: std::collections::HashMap<String, f64> = super::fetch_in(conn, sql, &[], &ids)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, StoreError>>()?;
    for &i in at {
        let c = &mut customers[i].0;
        c.total_spent = *amounts
            .get(&c.id)
            .ok_or_else(|| StoreError::Corrupt(format!("customer `{}` went missing", c.id)))?;
    }
    Ok(())
}

/// One customer's row, read by column name (`SELECT *`).
pub fn from_row(r: &AnyRow) -> Result<Customer, StoreError> {
    let birthday: Option<String> = r.try_get("birthday")?;
    Ok(Customer {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        locale: r.try_get("locale")?,
        timezone: r.try_get("timezone")?,
        birthday: birthday.as_deref().map(parse_birthday).transpose()?,
        created_at: from_millis(r.try_get("created_at")?),
        last_order_at: from_millis(r.try_get("last_order_at")?),
        first_order_at: from_millis(r.try_get("first_order_at")?),
        orders_count: r.try_get("orders_count")?,
        total_spent: r.try_get("total_spent")?,
        tags: parse_json(&r.try_get::<String, _>("tags")?, "tags")?,
        unsubscribed_at: from_millis(r.try_get("unsubscribed_at")?),
        attributes: parse_json(&r.try_get::<String, _>("attributes")?, "attributes")?,
    })
}

/// One element of a JSON page, in [`select`]'s column order.
#[derive(Deserialize)]
struct Listed(
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<String>,
    String,
    Option<i64>,
    String,
    Option<String>,
    Option<i64>,
);

impl Listed {
    /// The customer, and whether the page carried their `total_spent` (else it is 0 here).
    fn customer(self) -> Result<(StagedCustomer, bool), StoreError> {
        let exact = self.10.is_some();
        let total_spent = match &self.10 {
            Some(text) => f64::from_str(text)
                .map_err(|_| StoreError::Corrupt(format!("total_spent `{text}`")))?,
            None => 0.0,
        };
        let customer = Customer {
            id: self.0,
            email: self.1,
            first_name: self.2,
            last_name: self.3,
            locale: self.4,
            timezone: self.5,
            birthday: self.6.as_deref().map(parse_birthday).transpose()?,
            created_at: from_millis(self.7),
            last_order_at: from_millis(self.8),
            first_order_at: from_millis(self.15),
            orders_count: self.9,
            total_spent,
            tags: parse_json(&self.11, "tags")?,
            unsubscribed_at: from_millis(self.12),
            attributes: parse_json(&self.13, "attributes")?,
        };
        Ok(((customer, self.14), exact))
    }
}

fn parse_birthday(text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::from_str(text).map_err(|_| StoreError::Corrupt("birthday".into()))
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(what.into()))
}
