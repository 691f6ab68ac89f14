//! A case's orders: `orders:` fixtures (the customer's history before the case starts) and
//! `order:` steps (an order placed now), read as `tidings import orders` reads a row — so a
//! test gives the shop's orders, and tidings keeps the customer's order figures itself.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json};
use yaml_serde::Value;

use super::reader::Reader;
use crate::import::{self, RowError};
use crate::source::yaml::Route;

/// An order for the import reader: `customer` defaults to the only fixture customer,
/// `id` to `default_id`, `placed_at` to `at` when given (a step's is
/// set when it runs), `total` to 0.
pub(super) fn order_row(
    r: &mut Reader<'_>,
    value: &Value,
    route: &Route,
    ids: &[String],
    at: Option<DateTime<Utc>>,
    default_id: String,
) -> Option<Map<String, Json>> {
    let mut obj = r.json_object(value, route, "an order")?;
    r.time_field(&mut obj, "placed_at", route, at)?;
    r.owner(&mut obj, route, ids)?;
    obj.entry("id").or_insert(Json::String(default_id));
    obj.entry("total").or_insert(Json::from(0));
    // Checked with a stand-in time where the step's own comes when it runs.
    let mut checked = obj.clone();
    checked
        .entry("placed_at")
        .or_insert_with(|| Json::String(at.unwrap_or_default().to_rfc3339()));
    let errors: Vec<RowError> = import::orders_of(std::slice::from_ref(&checked))
        .into_iter()
        .filter_map(Result::err)
        .flatten()
        .collect();
    r.clean(errors, route)?;
    Some(obj)
}

/// A case's `orders:`: each needs its `placed_at` (the history before the case starts).
pub(super) fn fixture_orders(
    r: &mut Reader<'_>,
    list: Option<&Value>,
    route: &Route,
    ids: &[String],
    start: Option<DateTime<Utc>>,
) -> Vec<Map<String, Json>> {
    let example = "{ total: 25.0, placed_at: 2026-01-10T12:00:00Z }";
    r.items(list, route, "orders", example, |r, o, at, i| {
        let row = order_row(r, o, at, ids, start, format!("order-{}", i + 1))?;
        if !row.contains_key("placed_at") {
            r.error(
                at,
                "a fixture order needs `placed_at`",
                format!("e.g. `- {example}`"),
            );
            return None;
        }
        Some(row)
    })
}
